-- What belongs to a database tenant's database rather than to a schema, made by a superuser: an event
-- trigger, a publication, and the database's own comment, grants and setting.
CREATE FUNCTION public.zoo_no_drop() RETURNS event_trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF current_setting('zoo.block_drops', true) = 'on' THEN RAISE EXCEPTION 'drops are blocked'; END IF;
END $f$;
CREATE EVENT TRIGGER zoo_guard ON sql_drop EXECUTE FUNCTION public.zoo_no_drop();
CREATE PUBLICATION zoo_pub FOR TABLE public.customers, public.bookings WITH (publish = 'insert, update');
DO $$ BEGIN
  EXECUTE format('COMMENT ON DATABASE %I IS %L', current_database(), 'the zoo''s database tenant');
  EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO zoo_app, zoo_backup', current_database());
  EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L', current_database(), '5min');
END $$;
