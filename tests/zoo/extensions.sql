-- The contrib extensions the zoo's tenants use, in public (a database tenant's own, or the shared part
-- of a database of schema tenants).
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
COMMENT ON EXTENSION hstore IS 'key/value attributes of customers';
