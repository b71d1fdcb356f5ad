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


def relations(database, schema):
    """Every table, partitioned table and materialized view of ``schema`` (quoted names too), checksummed."""
    result = {}
    listed = psql(database, "SELECT CASE WHEN c.relispopulated THEN 't' ELSE 'f' END || ' ' || format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '%s' "
                            "AND c.relkind IN ('r', 'p', 'm') ORDER BY format('%%I.%%I', n.nspname, c.relname)" % schema)
    for line in listed:
        populated, name = line.split(" ", 1)
        if populated != "t":  # a materialized view WITH NO DATA cannot be read, and must stay so
            result[name] = "not populated"
            continue
        rows = psql(database, "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                              "FROM %s t" % name)
        result[name] = rows[0]
    return result


def fidelity(database, schema):
    """A zoo tenant: its relations, its sequences' values, and (a database tenant) its large objects and extensions."""
    out = {"relations": relations(database, schema),
           "sequences": psql(database, "SELECT format('%%I.%%I', schemaname, sequencename) || ' ' || "
                                       "coalesce(last_value::text, 'never called') FROM pg_sequences "
                                       "WHERE schemaname = '%s' ORDER BY 1" % schema)}
    if schema == "public":
        out["large_objects"] = psql(database, "SELECT oid || ' ' || md5(lo_get(oid)) FROM pg_largeobject_metadata "
                                              "ORDER BY 1")
        out["extensions"] = psql(database, "SELECT extname FROM pg_extension ORDER BY 1")
    return out


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
        "zoo": fidelity("zoo", "public"),
        "zoo_s": fidelity("saas", "zoo_s"),
        "zoo_roles": psql("postgres", "SELECT rolname FROM pg_roles WHERE rolname LIKE 'zoo%' ORDER BY 1"),
        "roles": psql("postgres", "SELECT rolname || ' login=' || rolcanlogin FROM pg_roles "
                                  "WHERE rolname IN ('app', 'reporting') ORDER BY 1"),
        "grants": grants,
        "owners": owners,
    }
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
