# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema tenants of one database in one pass, and the database's shared part.

Every ``pg_dump`` reads the whole catalog, so one ``pg_dump -n`` per schema tenant
costs tenants x catalog. Here the schema tenants of one database are dumped by a few
``pg_dump -n s1 -n s2 ...`` runs that all share ONE exported snapshot; each run's
custom-format stream is split on the fly (``pgarchive``) into one archive per
schema, which goes through zstd and age into its own artifact with its own
manifest and row counts, exactly like a per-tenant backup (restorable by hand with
``age -d | zstd -d | pg_restore``). The runs are sized so that the tables one
``pg_dump`` locks fit the server's lock table (``max_locks_per_transaction``).

The shared part (everything in the database that is not a tenant schema:
extensions, ``public`` tables the tenants reference, shared functions and types,
other schemas, large objects) is dumped on the same snapshot first, as the
pseudo-tenant ``_shared_<database>``; each tenant's manifest names the shared
artifact it was taken with and what of it the tenant depends on.

A schema whose data blocks do not arrive in one piece in its group's stream is
dumped on its own (``pg_dump -n``, same snapshot): the split never holds data in
memory or on disk.
"""

import threading

from . import naming, postgres
from .errors import LifeboatError

# Relations whose lock pg_dump takes (AccessShareLock, held until it exits).
_LOCKED_RELKINDS = ("r", "p", "m", "f")
COUNT_BATCH = 250  # tables counted per transaction: the counter's locks are released after each batch

_SCHEMA_FACTS = """
SELECT n.nspname,
       count(c.oid) FILTER (WHERE c.relkind IN ('r', 'p', 'm', 'f')),
       coalesce(sum(pg_catalog.pg_relation_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')), 0)::bigint
  FROM pg_catalog.pg_namespace n
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
 GROUP BY n.nspname
"""

_LOCK_CAPACITY = """
SELECT current_setting('max_locks_per_transaction')::int
       * (current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int)
"""

# What the objects of a schema depend on outside it (system schemas aside): types of its columns,
# tables its foreign keys reference, functions its defaults, triggers and views call; and the
# extensions those belong to.
_DEPENDENCIES = """
WITH ns AS (SELECT oid, nspname, pg_catalog.quote_ident(nspname) AS quoted
              FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(schemas)s)),
mine AS (
  SELECT 'pg_catalog.pg_class'::regclass AS classid, c.oid AS objid, c.relnamespace AS nsp
    FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT 'pg_catalog.pg_type'::regclass, t.oid, t.typnamespace
    FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
  UNION ALL
  SELECT 'pg_catalog.pg_proc'::regclass, p.oid, p.pronamespace
    FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
  UNION ALL
  SELECT 'pg_catalog.pg_constraint'::regclass, o.oid, o.connamespace
    FROM pg_catalog.pg_constraint o JOIN ns ON ns.oid = o.connamespace
  UNION ALL
  SELECT 'pg_catalog.pg_attrdef'::regclass, a.oid, c.relnamespace
    FROM pg_catalog.pg_attrdef a JOIN pg_catalog.pg_class c ON c.oid = a.adrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT 'pg_catalog.pg_trigger'::regclass, g.oid, c.relnamespace
    FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT 'pg_catalog.pg_rewrite'::regclass, r.oid, c.relnamespace
    FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT 'pg_catalog.pg_policy'::regclass, y.oid, c.relnamespace
    FROM pg_catalog.pg_policy y JOIN pg_catalog.pg_class c ON c.oid = y.polrelid JOIN ns ON ns.oid = c.relnamespace
),
refs AS (
  SELECT DISTINCT m.nsp, d.refclassid, d.refobjid
    FROM mine m JOIN pg_catalog.pg_depend d ON d.classid = m.classid AND d.objid = m.objid
   WHERE d.deptype IN ('n', 'a')
)
SELECT ns.nspname, o.type, o.schema, o.identity, e.extname  -- o.schema is quoted like an identifier
  FROM refs r
  JOIN ns ON ns.oid = r.nsp
  CROSS JOIN LATERAL pg_catalog.pg_identify_object(r.refclassid, r.refobjid, 0) o
  LEFT JOIN pg_catalog.pg_depend x ON x.classid = r.refclassid AND x.objid = r.refobjid AND x.deptype = 'e'
  LEFT JOIN pg_catalog.pg_extension e ON e.oid = x.refobjid
 WHERE o.schema IS NOT NULL
   AND o.schema NOT IN ('pg_catalog', 'information_schema')
   AND NOT EXISTS (SELECT 1 FROM ns n2 WHERE n2.quoted = o.schema)
 ORDER BY 1, 2, 4
"""

_DEPENDS_LIMIT = 200  # objects listed per tenant manifest (the extensions are always all listed)


def dependencies(conn, schemas):
    """{schema: {"extensions": [...], "objects": [{"type", "identity"}, ...]}} of what lies outside them.

    Dependencies between two tenant schemas are not listed: a tenant's schema never holds
    another tenant's objects, and such a reference is reported by the caller.
    """
    out = dict((s, {"extensions": [], "objects": []}) for s in schemas)
    for nsp, kind, _schema, identity, ext in conn.execute(_DEPENDENCIES, {"schemas": list(schemas)}).fetchall():
        entry = out[nsp]
        if ext and ext not in entry["extensions"]:
            entry["extensions"].append(ext)
        if not ext and len(entry["objects"]) < _DEPENDS_LIMIT:
            item = {"type": kind, "identity": identity}
            if item not in entry["objects"]:
                entry["objects"].append(item)
    for entry in out.values():
        entry["extensions"].sort()
    return out


def schema_facts(conn, schemas=None):
    """{schema: (locked relations, bytes)} for ``schemas`` that exist (every schema: None); the missing are absent."""
    wanted = None if schemas is None else set(schemas)
    return dict((row[0], (int(row[1]), int(row[2]))) for row in conn.execute(_SCHEMA_FACTS).fetchall()
                if wanted is None or row[0] in wanted)


def lock_capacity(conn):
    return int(conn.execute(_LOCK_CAPACITY).fetchone()[0])


def groups_within(schemas, facts, budget):
    """Split ``schemas`` (in dump order) into runs whose locked relations stay within ``budget``.

    A schema larger than the budget alone gets a run of its own (pg_dump then reports the
    lock-table error, which the caller turns into a message that names the setting).
    """
    groups, current, used = [], [], 0
    for schema in schemas:
        need = facts.get(schema, (0, 0))[0]
        if current and used + need > budget:
            groups.append(current)
            current, used = [], 0
        current.append(schema)
        used += need
    if current:
        groups.append(current)
    return groups


def dump_order(schemas):
    """pg_dump sorts objects of one kind by namespace name, byte-wise (strcmp)."""
    return sorted(schemas, key=lambda s: s.encode("utf-8"))


class PassCounter(object):
    """Exact row counts of many tables, in the pass's snapshot, beside the dumps.

    A connection of its own imports the exported snapshot once per batch of tables and
    commits after each, so that its locks never pile up in the server's lock table (a
    single transaction over 18,000 tables would exhaust it). Counts are handed out per
    schema as soon as that schema is counted (``wait_for``).
    """

    def __init__(self, connection, database, snapshot_id, tables, app):
        self.connection = connection
        self.database = database
        self.snapshot_id = snapshot_id
        self.tables = tables  # [(schema, table)] in the order the dumps need them
        self.counted_schemas = set(s for s, _t in tables)
        self.app = app
        self.counts = {}
        self.errors = {}  # schema -> LifeboatError (a table its tenant's backup cannot read)
        self.done_schemas = set()
        self.error = None
        self.cond = threading.Condition()
        self._cancel = False
        self.conn = None
        self.thread = threading.Thread(target=self._run, name="lifeboat-pass-counter")
        self.thread.daemon = True

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        try:
            self.conn = self.connection.connect(self.database, app=self.app, option="database")
            try:
                remaining = {}
                for schema, _table in self.tables:
                    remaining[schema] = remaining.get(schema, 0) + 1
                for i in range(0, len(self.tables), COUNT_BATCH):
                    if self._cancel:
                        return
                    self._batch(self.tables[i:i + COUNT_BATCH], remaining)
            finally:
                self.conn.close()
        except BaseException as e:  # handed to the main thread by wait_for()
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def _count(self, tables):
        """{index: rows} of ``tables`` in one transaction on the pass's snapshot (50 per query)."""
        sql = postgres.sql
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        try:
            self.conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot_id)))
            found = {}
            for j in range(0, len(tables), 50):
                part = tables[j:j + 50]
                query = sql.SQL(" UNION ALL ").join(
                    sql.SQL("SELECT {}::int, count(*) FROM {}.{}").format(sql.Literal(k), sql.Identifier(s), sql.Identifier(t))
                    for k, (s, t) in enumerate(part, j))
                for k, n in self.conn.execute(query).fetchall():
                    found[k] = int(n)
            return found
        finally:
            self.conn.execute("ROLLBACK")

    def _batch(self, batch, remaining):
        try:
            found = self._count(batch)
        except postgres.psycopg.errors.InsufficientPrivilege:
            # A table this role may not read: count table by table, so that only its tenant fails.
            found = {}
            for k, (schema, table) in enumerate(batch):
                try:
                    found[k] = self._count([(schema, table)])[0]
                except postgres.psycopg.errors.InsufficientPrivilege as e:
                    self.errors.setdefault(schema, postgres.unreadable_table(
                        e, self.database, self.conn.info.user, schema, table))
        with self.cond:
            for k, (schema, table) in enumerate(batch):
                if k in found:
                    self.counts.setdefault(schema, {})["%s.%s" % (schema, table)] = found[k]
                remaining[schema] -= 1
                if remaining[schema] == 0:
                    self.done_schemas.add(schema)
            self.cond.notify_all()

    def wait_for(self, schema):
        """The row counts of ``schema`` ({"schema.table": n}); waits until they are counted."""
        with self.cond:
            while True:
                if self.error is not None:
                    if postgres.psycopg is not None and isinstance(self.error, postgres.psycopg.Error):
                        raise LifeboatError(
                            "Counting the rows of database %r in the backup's snapshot failed: %s"
                            % (self.database, postgres.first_line(str(self.error))), option="database")
                    raise self.error
                if schema in self.errors:
                    raise self.errors[schema]
                if schema in self.done_schemas or schema not in self.counted_schemas:
                    return dict(self.counts.get(schema, {}))
                self.cond.wait(1.0)

    def cancel(self):
        self._cancel = True
        conn = self.conn
        if conn is not None:
            try:
                conn.cancel()
            except Exception:
                pass
        if self.thread.is_alive():
            self.thread.join(30)


def validate_members(members, option="schemas"):
    """``[{tenant, schema}]`` -> [(tenant, schema)], checked: names valid, no duplicates."""
    if not isinstance(members, list) or not members:
        raise LifeboatError("%s must be a non-empty list of {tenant, schema} (schema defaults to the tenant's name)."
                            % option, option=option)
    out, tenants, schemas = [], set(), set()
    for item in members:
        if isinstance(item, str):
            item = {"tenant": item}
        if not isinstance(item, dict) or not item.get("tenant"):
            raise LifeboatError("Each entry of %s needs a tenant (and optionally its schema): got %r." % (option, item),
                                option=option)
        unknown = sorted(set(item) - {"tenant", "schema"})
        if unknown:
            raise LifeboatError("Unknown key(s) %s in an entry of %s: use tenant and schema."
                                % (", ".join(unknown), option), option=option)
        tenant = naming.validate_tenant(item["tenant"], option)
        schema = item.get("schema") or tenant
        if not isinstance(schema, str) or "\0" in schema or len(schema.encode("utf-8")) > 63:
            raise LifeboatError("Invalid schema %r for tenant %s in %s: a PostgreSQL name of 1 to 63 bytes."
                                % (schema, tenant, option), option=option)
        if schema in ("public", "information_schema") or schema.startswith("pg_"):
            raise LifeboatError("Schema %r cannot be a tenant (tenant %s in %s): it belongs to the database, and "
                                "is backed up with its shared part." % (schema, tenant, option), option=option)
        if tenant in tenants:
            raise LifeboatError("Tenant %s is named twice in %s." % (tenant, option), option=option)
        if schema in schemas:
            raise LifeboatError("Schema %r is named twice in %s: one schema is one tenant." % (schema, option),
                                option=option)
        tenants.add(tenant)
        schemas.add(schema)
        out.append((tenant, schema))
    return out
