-- The non-superuser backup role zoo_backup (roles.sql) may read everything of the tenant in the
-- current schema but the payroll table: a backup as zoo_backup must fail naming payroll and the grant.
ALTER ROLE zoo_backup BYPASSRLS;
DO $$ BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO zoo_backup', current_schema());
  EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO zoo_backup', current_schema());
  EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO zoo_backup', current_schema());
END $$;
REVOKE SELECT ON payroll FROM zoo_backup;
