# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Large objects that tables point to (``oid`` or ``lo`` columns, what Hibernate's ``@Lob`` makes).

Large objects belong to the database, not to a schema: ``pg_dump --schema`` leaves them out. A
schema tenant backed up alone (without the database's shared part, which holds them) would lose
them behind a success, so such a backup is refused naming the columns. Every backup records the
columns that point to large objects (``source.large_objects`` in the manifest), and verification
checks that each value of those columns points to a large object in the restored copy.
"""

from . import postgres
from .errors import LifeboatError

_COLUMNS = """
SELECT n.nspname, c.relname, a.attname
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
 WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
   AND (a.atttypid = 'pg_catalog.oid'::pg_catalog.regtype OR t.typbasetype = 'pg_catalog.oid'::pg_catalog.regtype)
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
   AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
 ORDER BY 1, 2, 3
"""


def _count(conn, nsp, rel, col, missing):
    sql = postgres.sql
    query = sql.SQL("SELECT count(*) FROM {}.{} t WHERE t.{} IS NOT NULL AND {} EXISTS "
                    "(SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = t.{}::pg_catalog.oid)").format(
        sql.Identifier(nsp), sql.Identifier(rel), sql.Identifier(col), sql.SQL("NOT" if missing else ""),
        sql.Identifier(col))
    return int(conn.execute(query).fetchone()[0])


def referenced(conn, schema=None):
    """[{schema, table, column, count}] of columns whose values point to existing large objects."""
    out = []
    for nsp, rel, col in conn.execute(_COLUMNS, {"schema": schema}).fetchall():
        n = _count(conn, nsp, rel, col, missing=False)
        if n:
            out.append({"schema": nsp, "table": rel, "column": col, "count": n})
    return out


def describe(entries, limit=5):
    return ", ".join("%s.%s.%s (%d)" % (e["schema"], e["table"], e["column"], e["count"]) for e in entries[:limit])


def missing(conn, recorded):
    """The recorded columns whose values point to no large object in the database of ``conn``."""
    out = []
    for e in recorded or []:
        try:
            n = _count(conn, e["schema"], e["table"], e["column"], missing=True)
        except (KeyError, TypeError):
            continue
        if n:
            out.append(dict(e, count=n))
    return out


def refuse_schema_backup(conn, database, schema):
    """A schema tenant backed up alone must not lose the large objects its tables point to."""
    refs = referenced(conn, schema)
    if refs:
        raise LifeboatError(
            "Schema %r of database %r has columns that point to large objects (%s), and large objects belong to the "
            "database, not to a schema: a backup of the schema alone would not hold them. Nothing was written. Back "
            "up the schema tenants of %r with their shared part (pg_backup with schemas and database, or the agent), "
            "which holds the large objects, or back up the whole database as a tenant."
            % (schema, database, describe(refs), database), option="schema")
    return refs
