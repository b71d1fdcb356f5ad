-- Large objects (database tenants; a schema tenant's are in its database's shared part): a table
-- that points to them, a comment on one, a grant on one.
CREATE TABLE documents (id int PRIMARY KEY, title text NOT NULL, body oid NOT NULL);
INSERT INTO documents
  SELECT g, 'Document ' || g, lo_from_bytea(0, convert_to(repeat('page ' || g || ' ', 40 * g), 'UTF8'))
    FROM generate_series(1, 6) g;
DO $$ BEGIN
  EXECUTE format('COMMENT ON LARGE OBJECT %s IS %L', (SELECT body FROM documents WHERE id = 1), 'the first page');
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO zoo_app', (SELECT body FROM documents WHERE id = 2));
END $$;
