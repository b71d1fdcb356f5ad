-- plpgsql and SQL functions, a procedure, an aggregate, triggers (row, statement with a transition
-- table, a deferrable constraint trigger, a disabled one, one with WHEN), views over functions
-- (security_barrier, security_invoker, WITH CHECK OPTION, recursive), materialized views (one
-- populated with a unique index, one WITH NO DATA).
CREATE TABLE audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tbl text NOT NULL, op text NOT NULL,
                        rows_changed int NOT NULL, note text);

CREATE FUNCTION customer_label(c_id bigint) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $f$
DECLARE label text;
BEGIN
  SELECT name || ' <' || email || '>' INTO label FROM customers WHERE id = c_id;
  RETURN coalesce(label, '(gone)');
END $f$;
COMMENT ON FUNCTION customer_label(bigint) IS 'name <email> of a customer';

CREATE FUNCTION booking_nights(b bookings) RETURNS int LANGUAGE sql IMMUTABLE
  AS $f$ SELECT extract(day FROM upper(b.during) - lower(b.during))::int $f$;

CREATE FUNCTION touch_name() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  NEW.name := btrim(NEW.name);
  RETURN NEW;
END $f$;
CREATE TRIGGER customers_trim BEFORE INSERT OR UPDATE OF name ON customers
  FOR EACH ROW WHEN (NEW.name IS DISTINCT FROM btrim(NEW.name)) EXECUTE FUNCTION touch_name();

CREATE FUNCTION log_statement() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$
BEGIN
  INSERT INTO audit_log (tbl, op, rows_changed) SELECT TG_TABLE_NAME, TG_OP, count(*) FROM new_rows;
  RETURN NULL;
END $f$;
CREATE TRIGGER bookings_audit AFTER INSERT ON bookings REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION log_statement();

CREATE FUNCTION check_balance() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF NEW.balance > 1000000 THEN RAISE EXCEPTION 'balance of % too large', NEW.id; END IF;
  RETURN NULL;
END $f$;
CREATE CONSTRAINT TRIGGER customers_balance AFTER INSERT OR UPDATE ON customers
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_balance();
CREATE TRIGGER customers_never BEFORE DELETE ON customers FOR EACH ROW EXECUTE FUNCTION touch_name();
ALTER TABLE customers DISABLE TRIGGER customers_never;

CREATE PROCEDURE add_room(label text) LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$
BEGIN
  INSERT INTO rooms (label) VALUES (label);
END $f$;

CREATE FUNCTION cents_sum_step(acc bigint, v bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
  AS $f$ SELECT acc + coalesce(v, 0) $f$;
CREATE AGGREGATE total_cents (bigint) (SFUNC = cents_sum_step, STYPE = bigint, INITCOND = '0');

INSERT INTO bookings (customer_id, room_id, during, net)
  SELECT min(id), 5, tstzrange('2027-01-01 00:00:00+00', '2027-01-03 00:00:00+00'), 5000 FROM customers;

CREATE VIEW customer_labels AS SELECT id, customer_label(id) AS label FROM customers;
CREATE VIEW booking_nights_v WITH (security_barrier) AS
  SELECT b.id, booking_nights(b) AS nights, total_cents(b.net) OVER (PARTITION BY b.customer_id) AS spent
    FROM bookings b;
CREATE VIEW happy_customers WITH (security_invoker = true) AS
  SELECT id, email, mood FROM customers WHERE mood = 'happy' WITH CHECK OPTION;
CREATE RECURSIVE VIEW countdown_v (n) AS SELECT 5 UNION ALL SELECT n - 1 FROM countdown_v WHERE n > 1;
COMMENT ON VIEW customer_labels IS 'a view over a plpgsql function';

CREATE MATERIALIZED VIEW spend_by_customer AS
  SELECT customer_id, total_cents(net) AS spent, count(*) AS bookings FROM bookings GROUP BY customer_id;
CREATE UNIQUE INDEX spend_by_customer_id ON spend_by_customer (customer_id);
CREATE MATERIALIZED VIEW mood_counts AS SELECT mood, count(*) AS n FROM customers GROUP BY mood WITH NO DATA;
COMMENT ON MATERIALIZED VIEW spend_by_customer IS 'refreshed nightly';
