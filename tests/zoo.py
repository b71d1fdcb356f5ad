"""A zoo of tenants that use what production schemas use (issue 17), and how to compare a copy with its source.

The zoo is plain SQL in ``tests/zoo/``, so that a script, psql or Ansible can load it too:

- ``roles.sql``: the cluster's roles (``zoo_owner`` owns the tenants' objects, ``zoo_app`` and
  ``zoo_readonly`` are application roles, ``zoo_backup`` a backup role that is no superuser);
- ``extensions.sql``: citext, hstore, pgcrypto, btree_gist, uuid-ossp in ``public``;
- ``NN_*.sql`` up to 75: one tenant's objects and rows, with unqualified names, run as ``zoo_owner``
  with ``search_path`` set to the tenant's schema, then ``public`` (``public`` alone for a database
  tenant), so that the same files make a database tenant and a schema tenant;
- ``80_large_objects.sql`` (as ``zoo_owner``) and ``90_database.sql`` (as a superuser): what only a
  database tenant has;
- ``backup_role.sql``: grants ``zoo_backup`` every table of the current schema but ``payroll``.

``python3 tests/zoo.py database`` and ``python3 tests/zoo.py schema NAME`` print the script for
``psql -v ON_ERROR_STOP=1 -f -`` in the tenant's database (run ``roles.sql`` first, in any database,
and, for a database tenant, ``CREATE DATABASE ... OWNER zoo_owner``). ``load_database`` and
``load_schema`` do all of it on a cluster of ``tests/lbtest.py``.

The comparisons (``checksums``, ``sequences``, ``large_objects``, ``schema_dump``) take a psycopg
connection or a cluster, and never the collection's code.
"""

import hashlib
import os
import subprocess
import sys

ZOO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo")
TENANT_FILES = ("10_types.sql", "20_tables.sql", "30_partitions.sql", "35_inheritance.sql", "40_sequences.sql",
                "50_code.sql", "60_security.sql", "70_names.sql", "75_unlogged.sql")
OWNER = "zoo_owner"


def ident(name):
    return '"%s"' % name.replace('"', '""')


def read(name):
    with open(os.path.join(ZOO, name)) as f:
        return f.read()


def _as_owner(search_path, files):
    return "SET ROLE %s;\nSET search_path = %s;\n%s\nRESET ROLE;\nRESET search_path;\n" % (
        OWNER, search_path, "\n".join(read(f) for f in files))


def database_script():
    """The SQL that fills a database tenant's (empty, owned by zoo_owner) database."""
    return "%s\n%s\n%s" % (read("extensions.sql"), _as_owner("public", TENANT_FILES + ("80_large_objects.sql",)),
                           read("90_database.sql"))


def schema_script(schema):
    """The SQL that adds the schema tenant ``schema`` to a database that has extensions.sql."""
    return "CREATE SCHEMA %s AUTHORIZATION %s;\nCOMMENT ON SCHEMA %s IS 'zoo tenant %s';\n%s" % (
        ident(schema), OWNER, ident(schema), schema.replace("'", "''"),
        _as_owner("%s, public" % ident(schema), TENANT_FILES))


def backup_role_script(schema="public", password=None):
    """Grants for zoo_backup on the tenant in ``schema`` (every table but payroll), and its password."""
    text = "SET search_path = %s;\n%s\nRESET search_path;\n" % (ident(schema), read("backup_role.sql"))
    if password:
        text += "ALTER ROLE zoo_backup PASSWORD '%s';\n" % password.replace("'", "''")
    return text


def run_sql(cluster, script, db="postgres"):
    """``psql -f -`` as postgres over the cluster's socket: one statement at a time, stop at the first error."""
    res = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", cluster.socket_dir, "-p",
                          str(cluster.port), "-U", "postgres", "-d", db, "-f", "-"],
                         input=script, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError("psql failed in database %s: %s" % (db, res.stderr))
    return res.stdout


def load_database(cluster, db):
    """A database tenant ``db`` with the whole zoo."""
    run_sql(cluster, read("roles.sql"))
    run_sql(cluster, "CREATE DATABASE %s OWNER %s" % (ident(db), OWNER))
    run_sql(cluster, database_script(), db=db)
    return db


def load_schema(cluster, db, schema):
    """A schema tenant ``schema`` with the zoo in the existing database ``db`` (given its extensions)."""
    run_sql(cluster, read("roles.sql"))
    run_sql(cluster, read("extensions.sql"), db=db)
    run_sql(cluster, schema_script(schema), db=db)
    return schema


# -- comparing a copy with its source ----------------------------------------------------------------------

_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind, c.relispopulated
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_%%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype = 'e')
   AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
 ORDER BY 1, 2
"""


def relations(conn, schema=None):
    """[(schema, name, relkind, populated)] of the user's tables, materialized views and views."""
    return conn.execute(_RELATIONS, {"schema": schema}).fetchall()


def checksums(conn, schema=None):
    """{schema.relation: (kind, rows, md5 of the rows in a stable order)} of tables (each read ONLY),
    materialized views (None for one WITH NO DATA) and views (their rows prove the functions they call work)."""
    from psycopg import sql

    out = {}
    for nsp, rel, kind, populated in relations(conn, schema):
        if not populated:
            out["%s.%s" % (nsp, rel)] = (kind, None, None)
            continue
        query = sql.SQL("SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
                        "FROM ONLY {}.{} t").format(sql.Identifier(nsp), sql.Identifier(rel))
        out["%s.%s" % (nsp, rel)] = (kind,) + tuple(conn.execute(query).fetchone())
    return out


def row_counts(conn, schema=None):
    """Rows per ordinary table as a manifest's row_counts has them: ``count(*)``, so that an inheritance
    parent's count includes its children's rows (``checksums`` reads each table ONLY)."""
    from psycopg import sql

    return dict(("%s.%s" % (nsp, rel), conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(nsp), sql.Identifier(rel))).fetchone()[0]) for nsp, rel, kind, _p in relations(conn, schema)
        if kind == "r")


def sequences(conn, schema=None):
    """{schema.sequence: (last_value, is_called)} of every sequence (identity and serial ones too)."""
    from psycopg import sql

    rows = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind = 'S' AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text) "
                        "ORDER BY 1, 2", {"schema": schema}).fetchall()
    return dict(("%s.%s" % (nsp, rel), tuple(conn.execute(sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
        sql.Identifier(nsp), sql.Identifier(rel))).fetchone())) for nsp, rel in rows)


def large_objects(conn, owners=False):
    """{oid: (md5 of the bytes, comment[, owner, grants])} of every large object."""
    out = {}
    for oid, owner, acl, comment in conn.execute(
            "SELECT oid, pg_get_userbyid(lomowner), lomacl::text, obj_description(oid, 'pg_largeobject') "
            "FROM pg_largeobject_metadata ORDER BY oid").fetchall():
        data = conn.execute("SELECT lo_get(%s)", (oid,)).fetchone()[0]
        out[oid] = (hashlib.md5(data).hexdigest(), comment) + ((owner, acl) if owners else ())
    return out


def database_properties(conn, owners=False):
    """The current database's comment, connection limit and settings (and with ``owners`` its owner and grants)."""
    row = conn.execute(
        "SELECT shobj_description(d.oid, 'pg_database'), d.datconnlimit, pg_get_userbyid(d.datdba), d.datacl::text, "
        "(SELECT array_agg(array_to_string(s.setconfig, ',') ORDER BY s.setrole) FROM pg_db_role_setting s "
        "WHERE s.setdatabase = d.oid) FROM pg_database d WHERE d.datname = current_database()").fetchone()
    return (row[0], row[1], row[4]) + ((row[2], row[3]) if owners else ())


def schema_dump(cluster, db, *args):
    """``pg_dump -s`` (with ``args``) as text, without the random \\restrict lines of pg_dump 15.14 and later."""
    out = subprocess.run([cluster.bin("pg_dump"), "-h", cluster.socket_dir, "-p", str(cluster.port), "-U", "postgres",
                          "-s"] + list(args) + [db], capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def pgbench_sums(conn):
    """The four sums pgbench keeps equal in every consistent snapshot, and the number of history rows."""
    return conn.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches), "
                        "(SELECT sum(tbalance) FROM pgbench_tellers), (SELECT coalesce(sum(delta), 0) FROM pgbench_history), "
                        "(SELECT count(*) FROM pgbench_history)").fetchone()


def main(argv):
    if argv[:1] == ["database"] and len(argv) == 1:
        sys.stdout.write(database_script())
    elif argv[:1] == ["schema"] and len(argv) == 2:
        sys.stdout.write(schema_script(argv[1]))
    elif argv[:1] == ["roles"] and len(argv) == 1:
        sys.stdout.write(read("roles.sql"))
    else:
        sys.stderr.write("usage: zoo.py roles | database | schema NAME  (prints SQL for psql -v ON_ERROR_STOP=1 -f -)\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
