-- Row-level security (enabled and forced, permissive and restrictive policies), grants to the
-- application roles (tables, columns, sequences, functions, types, the schema, WITH GRANT OPTION),
-- default privileges, and a payroll table only its owner may read (backup_role.sql gives the
-- non-superuser backup role every other table, but not this one).
CREATE TABLE notes (id int PRIMARY KEY, owner_role name NOT NULL DEFAULT current_user, body text NOT NULL,
                    confidential boolean NOT NULL DEFAULT false);
CREATE POLICY notes_own ON notes USING (owner_role = current_user) WITH CHECK (owner_role = current_user);
CREATE POLICY notes_readonly ON notes FOR SELECT TO zoo_readonly USING (true);
CREATE POLICY notes_not_confidential ON notes AS RESTRICTIVE TO zoo_app USING (NOT confidential);
INSERT INTO notes (id, owner_role, body, confidential)
  SELECT g, (ARRAY['zoo_owner', 'zoo_app', 'zoo_readonly'])[1 + g % 3], 'note ' || g, g % 5 = 0
    FROM generate_series(1, 20) g;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;

CREATE TABLE payroll (id int PRIMARY KEY, employee text NOT NULL, salary_cents cents);
INSERT INTO payroll SELECT g, 'Employee ' || g, 500000 + g FROM generate_series(1, 8) g;
REVOKE ALL ON payroll FROM PUBLIC;

DO $$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %I TO zoo_app, zoo_readonly', current_schema()); END $$;
GRANT SELECT, INSERT, UPDATE ON customers, bookings, rooms TO zoo_app;
GRANT SELECT ON customers, bookings, events, vehicles, customer_labels, spend_by_customer TO zoo_readonly;
GRANT SELECT (id, email), UPDATE (mood) ON customers TO zoo_readonly;
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO zoo_app WITH GRANT OPTION;
GRANT SELECT ON notes TO zoo_readonly;
GRANT USAGE ON SEQUENCE invoice_no TO zoo_app;
GRANT USAGE ON TYPE mood TO zoo_app;
REVOKE EXECUTE ON FUNCTION customer_label(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION customer_label(bigint) TO zoo_app;
GRANT EXECUTE ON PROCEDURE add_room(text) TO zoo_app;
DO $$ BEGIN
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO zoo_readonly', current_schema());
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC', current_schema());
END $$;
COMMENT ON POLICY notes_own ON notes IS 'each role sees its own notes';
