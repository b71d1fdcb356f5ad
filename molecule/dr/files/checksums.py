"""Per-table checksums of the DR scenario's tenants, printed as JSON.

Runs on the database host, before the disaster and after the rebuild; the
two outputs must be equal. PostgreSQL tables are read with psql as the
postgres user (rows as text, sorted, hashed), the SQLite tenant with Python's
sqlite3 (rows sorted, hashed). Also reports the roles and grants that the
globals artifact must bring back.
"""
import hashlib
import json
import sqlite3
import subprocess
import sys


def psql(database, sql):
    out = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                          "-d", database, "-c", sql], check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


def pg_tables(database, schema):
    result = {}
    for table in psql(database, "SELECT tablename FROM pg_tables WHERE schemaname = '%s' ORDER BY 1" % schema):
        rows = psql(database, "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                              "FROM %s.%s t" % (schema, table))
        result["%s.%s" % (schema, table)] = rows[0]
    return result


def sqlite_tables(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    result = {}
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1"):
        rows = sorted(repr(r) for r in db.execute('SELECT * FROM "%s"' % table))
        result[table] = "%d %s" % (len(rows), hashlib.md5("|".join(rows).encode()).hexdigest())
    return result


def main():
    grants = psql("acme", "SELECT grantee || ' ' || privilege_type || ' ' || table_name "
                          "FROM information_schema.role_table_grants WHERE grantee = 'reporting' ORDER BY 1")
    grants += psql("saas", "SELECT grantee || ' ' || privilege_type || ' ' || table_schema || '.' || table_name "
                           "FROM information_schema.role_table_grants WHERE grantee = 'reporting' ORDER BY 1")
    owners = psql("acme", "SELECT 'acme ' || tablename || ' ' || tableowner FROM pg_tables "
                          "WHERE schemaname = 'public' ORDER BY 1")
    owners += psql("saas", "SELECT 'globex ' || tablename || ' ' || tableowner FROM pg_tables "
                           "WHERE schemaname = 'globex' ORDER BY 1")
    out = {
        "acme": pg_tables("acme", "public"),
        "globex": pg_tables("saas", "globex"),
        # the shared part of saas (not the tenant's): a table the tenant references, another schema, an extension
        "saas_shared": dict(pg_tables("saas", "public"), **pg_tables("saas", "other")),
        "saas_extensions": psql("saas", "SELECT extname FROM pg_extension ORDER BY 1"),
        "initech": sqlite_tables("/srv/app/initech.db"),
        "roles": psql("postgres", "SELECT rolname || ' login=' || rolcanlogin FROM pg_roles "
                                  "WHERE rolname IN ('app', 'reporting') ORDER BY 1"),
        "grants": grants,
        "owners": owners,
    }
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
