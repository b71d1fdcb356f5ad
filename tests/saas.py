"""A schema-per-tenant database shaped like a customer's, for the tests.

``build(cluster)`` makes database ``saas`` with what real multi-tenant SaaS
databases keep beside their tenant schemas: extensions in ``public`` (citext,
hstore, pgcrypto, btree_gist, uuid-ossp), shared tables that tenant tables
reference (``public.plans``, ``public.countries``), a shared function and a
shared domain, a non-tenant schema (``audit``) with its own table, and an
application role. Each tenant schema holds tables that use the extensions'
types, foreign keys into ``public``, an identity and a generated column, an
enum, a partitioned table, a view over a shared function, a trigger with its
plpgsql function, a GIN and a partial index, a sequence advanced past its data,
a comment and grants. Rows are deterministic per tenant (``seed``).
"""

SHARED = r"""
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'saas_app') THEN CREATE ROLE saas_app; END IF;
END $$;
CREATE DOMAIN public.positive_cents AS bigint CHECK (VALUE >= 0);
CREATE TABLE public.plans (id int PRIMARY KEY, name text NOT NULL UNIQUE, monthly public.positive_cents NOT NULL);
INSERT INTO public.plans VALUES (1, 'free', 0), (2, 'team', 2900), (3, 'enterprise', 99000);
CREATE TABLE public.countries (code char(2) PRIMARY KEY, name text NOT NULL);
INSERT INTO public.countries VALUES ('DE', 'Germany'), ('FR', 'France'), ('US', 'United States'), ('JP', 'Japan');
CREATE FUNCTION public.slugify(t text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $f$ SELECT regexp_replace(lower(t), '[^a-z0-9]+', '-', 'g') $f$;
CREATE SCHEMA audit;
CREATE TABLE audit.events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text);
INSERT INTO audit.events (what) SELECT 'boot ' || g FROM generate_series(1, 5) g;
"""

TENANT = r"""
CREATE SCHEMA {s};
COMMENT ON SCHEMA {s} IS 'tenant {name}';
CREATE TYPE {s}.order_state AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE TABLE {s}.customers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email public.citext NOT NULL UNIQUE,
  attrs public.hstore,
  plan_id int NOT NULL REFERENCES public.plans (id),
  country char(2) REFERENCES public.countries (code),
  api_key uuid NOT NULL DEFAULT public.uuid_generate_v4(),
  secret bytea NOT NULL DEFAULT public.gen_random_bytes(8),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {s}.customers USING gin (attrs);
CREATE TABLE {s}.orders (
  id bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES {s}.customers (id) DEFERRABLE INITIALLY DEFERRED,
  state {s}.order_state NOT NULL DEFAULT 'new',
  net_cents public.positive_cents NOT NULL,
  vat_cents bigint GENERATED ALWAYS AS (net_cents * 19 / 100) STORED,
  placed tstzrange,
  title text,
  slug text,
  EXCLUDE USING gist (customer_id WITH =, placed WITH &&)
);
CREATE INDEX ON {s}.orders (customer_id) WHERE state <> 'cancelled';
CREATE FUNCTION {s}.set_slug() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN NEW.slug := public.slugify(NEW.title); RETURN NEW; END $f$;
CREATE TRIGGER orders_slug BEFORE INSERT OR UPDATE ON {s}.orders FOR EACH ROW EXECUTE FUNCTION {s}.set_slug();
CREATE TABLE {s}.events (id bigint NOT NULL, at date NOT NULL, payload jsonb) PARTITION BY RANGE (at);
CREATE TABLE {s}.events_2026 PARTITION OF {s}.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE {s}.events_other PARTITION OF {s}.events DEFAULT;
CREATE VIEW {s}.customer_slugs AS SELECT id, public.slugify(email::text) AS slug FROM {s}.customers;
CREATE SEQUENCE {s}.invoice_no START 1000;
GRANT USAGE ON SCHEMA {s} TO saas_app;
GRANT SELECT, INSERT ON {s}.customers, {s}.orders TO saas_app;
INSERT INTO {s}.customers (email, attrs, plan_id, country, created_at)
  SELECT 'User' || g || '@{name}.example', hstore(ARRAY['seat', g::text, 'tenant', '{name}']),
         1 + (g + {seed}) % 3, (ARRAY['DE','FR','US','JP'])[1 + (g + {seed}) % 4],
         timestamptz '2026-01-01' + g * interval '1 hour'
    FROM generate_series(1, {rows}) g;
INSERT INTO {s}.orders (customer_id, state, net_cents, placed, title)
  SELECT c.id, (ARRAY['new','paid','shipped','cancelled']::{s}.order_state[])[1 + (c.id + k) % 4], 100 * (c.id + k),
         tstzrange(timestamptz '2026-02-01' + k * interval '1 day', timestamptz '2026-02-01' + (k + 1) * interval '1 day'),
         'Order ' || k || ' of {name}'
    FROM {s}.customers c, generate_series(1, 3) k;
INSERT INTO {s}.events SELECT g, date '2025-12-30' + (g % 10), jsonb_build_object('n', g) FROM generate_series(1, {rows}) g;
SELECT setval('{sq}.invoice_no', 1000 + {rows} * 7);
"""


def ident(name):
    return '"%s"' % name.replace('"', '""')


def tenant_sql(schema, rows=40, seed=0, name=None):
    name = name or schema
    return TENANT.format(s=ident(schema), sq=ident(schema).replace("'", "''"), name=name.replace("'", "''"),
                         rows=int(rows), seed=int(seed))


def build(cluster, db="saas", tenants=("acme", "globex"), rows=40):
    """Create ``db`` with its shared part and ``tenants`` (schema names); returns the database name."""
    cluster.psql("CREATE DATABASE %s" % ident(db))
    cluster.psql(SHARED, db=db)
    for i, schema in enumerate(tenants):
        add_tenant(cluster, schema, db=db, rows=rows, seed=i)
    return db


def add_tenant(cluster, schema, db="saas", rows=40, seed=0):
    cluster.psql(tenant_sql(schema, rows=rows, seed=seed), db=db)


def schema_dump(cluster, db, schema):
    """``pg_dump -s -n schema`` as text, without the random \\restrict lines of pg_dump 15.14 and later."""
    import subprocess

    out = subprocess.run([cluster.bin("pg_dump"), "-h", cluster.socket_dir, "-p", str(cluster.port), "-U", "postgres",
                          "-s", "-n", ident(schema), db], capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines()
                     if not line.startswith("\\restrict") and not line.startswith("\\unrestrict"))
