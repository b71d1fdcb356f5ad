-- Cluster-wide roles the zoo's tenants grant to and are owned by (what a globals artifact carries).
-- zoo_owner owns the tenants' objects, zoo_app and zoo_readonly are application roles,
-- zoo_backup is a backup role that is NOT a superuser (see unreadable.sql).
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['zoo_owner', 'zoo_app', 'zoo_readonly'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'zoo_backup') THEN
    CREATE ROLE zoo_backup LOGIN;
  END IF;
END $$;
GRANT zoo_readonly TO zoo_app;
