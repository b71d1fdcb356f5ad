# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tenant_anonymize on PostgreSQL (a database tenant or a schema tenant).

Names reach SQL only as ``psycopg.sql.Identifier`` after they were found in
the catalog; values (cut-off, patterns, redact text, hashed values, keys)
only as parameters. The session runs with ``TimeZone=UTC`` (so dates and
time stamps compare and truncate the same everywhere) and
``row_security=off`` (a table whose row-level security would hide rows
fails loudly instead of being scrubbed in part). Check mode sets
``default_transaction_read_only``: the server itself refuses any write.

A batch locks its rows (``SELECT ... ORDER BY key LIMIT n FOR UPDATE``),
computes keyed hashes in Python (the secret never reaches the server), and
writes them with one ``UPDATE ... FROM unnest(...)``; ``null``, ``redact``
and ``truncate_date`` are computed by the server in the same statement.
Where a batch of 1000 rows spent its time (200,000 rows, measured): the
UPDATE 15 ms when the planner hashed the whole table for every batch (now
bounded to the batch's key range: 5 ms), of which 2.5 ms was the arrays in
text format (now binary); Python 5 ms (hashing about 3); the SELECT ... FOR
UPDATE 1.5 ms; the commit 4 ms on a server that flushes its WAL (see below);
round trips well under 1 ms. Larger batches did not scrub measurably faster.

Batches commit with ``synchronous_commit=off``: the server confirms a commit
before its WAL reaches the disk, so no batch waits for a flush. The last
commit of each table (``_durable``), also when a batch failed, runs at the
session's own setting and so waits until the WAL of every batch before it is
flushed (and, with synchronous replication, on the standbys). Only a server
crash in between can lose batches already reported: those of the last
three ``wal_writer_delay`` (600 ms by default), lost whole, never in part; their rows are unscrubbed again and the next run scrubs them. The
counts a crashed run reported may then be too high; the data stays
consistent, and idempotency (decided from the data) makes the next run right.
"""

import contextlib
import time

from . import anonymize_scrub as scrub
from . import postgres
from .anonymize_rules import Tenant, new_entry, q, rules_error
from .errors import LifeboatError

APP = "lifeboat-anonymize"
TIME_TYPES = ("date", "timestamp", "timestamptz")

_REL = """
SELECT c.oid, c.relkind, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = %s
"""

_COLUMNS = """
SELECT a.attnum, a.attname, a.attnotnull, a.attgenerated <> '' AS generated,
       bt.typname AS base, bt.typcategory AS category,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
       tn.nspname AS type_schema, t.typname AS type_name,
       format_type(a.atttypid, a.atttypmod) AS type_label,
       has_column_privilege(a.attrelid, a.attnum, 'SELECT') AS can_select,
       has_column_privilege(a.attrelid, a.attnum, 'UPDATE') AS can_update
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_namespace tn ON tn.oid = t.typnamespace
  JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""

_UNIQUE = """
SELECT i.indisprimary, i.indkey[0], i.indnkeyatts, i.indpred IS NULL AND i.indexprs IS NULL AS plain,
       i.indkey::int2[] AS attnums
  FROM pg_index i
 WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid
"""

_KINDS = {"v": "a view", "m": "a materialized view", "f": "a foreign table", "i": "an index", "S": "a sequence",
          "c": "a composite type", "I": "a partitioned index", "t": "a TOAST table"}


class TablePlan(object):
    """A rule checked against the catalog: real names, types, limits."""

    def __init__(self, rule, schema):
        self.rule = rule
        self.schema = schema
        self.table = rule.table
        self.key = None
        self.key_type = None
        self.timestamp = rule.timestamp
        self.columns = []  # (Column, info)


def open_tenant(req, check_mode):
    return PgTenant(req, check_mode)


def _first_line(e):
    return postgres.first_line(str(e)) or e.__class__.__name__


class PgTenant(Tenant):
    def __init__(self, req, check_mode):
        super(PgTenant, self).__init__(req, check_mode)
        self.schema_name = req.schema
        self.sql = None

    # -- session -----------------------------------------------------------------
    def __enter__(self):
        postgres.require_psycopg()
        self.sql = postgres.sql
        self.conn = postgres.Connection.from_params(self.req.p).connect(self.req.database, app=APP, option="database")
        try:
            self.conn.execute("SELECT set_config('TimeZone', 'UTC', false), set_config('row_security', 'off', false)")
            if self.check_mode:
                self.conn.execute("SELECT set_config('default_transaction_read_only', 'on', false)")
            if self.req.schema:
                if not postgres.schema_exists(self.conn, self.req.schema):
                    raise LifeboatError(
                        "The schema %s does not exist in database %s. Check the schema option (a schema tenant's "
                        "schema) or leave it unset for a database tenant." % (q(self.req.schema), q(self.req.database)),
                        option="schema",
                    )
            else:
                self.schema_name = self.conn.execute("SELECT current_schema()").fetchone()[0]
                if self.schema_name is None:
                    raise LifeboatError("The database %s has no current schema (search_path is empty): set the "
                                        "schema option." % q(self.req.database), option="schema")
        except BaseException:
            self.conn.close()
            raise
        return self

    # -- catalog -----------------------------------------------------------------
    @contextlib.contextmanager
    def _catalog(self):
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION READ ONLY")
            yield

    def _plan_rule(self, rule, problems):
        label = rule.label
        where = "schema %s of database %s" % (q(self.schema_name), q(self.req.database))
        rel = self.conn.execute(_REL, (self.schema_name, rule.table)).fetchone()
        if rel is None:
            problems.append((label + ".table", "%s.table: table %s does not exist in %s"
                             % (label, q(rule.table), where)))
            return None
        oid, kind, _name = rel
        if kind not in ("r", "p"):
            problems.append((label + ".table", "%s.table: %s in %s is %s, not a table"
                             % (label, q(rule.table), where, _KINDS.get(kind, "not a table"))))
            return None
        cols = dict((r[1], r) for r in self.conn.execute(_COLUMNS, (oid,)).fetchall())
        uniques = self.conn.execute(_UNIQUE, (oid,)).fetchall()
        plan = TablePlan(rule, self.schema_name)
        ok = True
        tname = q(rule.table)

        # key: a NOT NULL-able unique column, by default the primary key
        if rule.key is None:
            pk = [u for u in uniques if u[0]]
            if not pk or pk[0][2] != 1:
                problems.append((label + ".key", "%s.key: table %s has no single-column primary key; set key to a "
                                                 "unique column" % (label, tname)))
                ok = False
            else:
                attnum = pk[0][1]
                plan.key = [name for name, r in cols.items() if r[0] == attnum][0]
        elif rule.key not in cols:
            problems.append((label + ".key", "%s.key: column %s does not exist in table %s" % (label, q(rule.key), tname)))
            ok = False
        elif not any(u[2] == 1 and u[3] and u[1] == cols[rule.key][0] for u in uniques):
            problems.append((label + ".key", "%s.key: column %s of table %s is not unique (no primary key or unique "
                                             "index on it alone); batches need a unique key, usually the primary key"
                             % (label, q(rule.key), tname)))
            ok = False
        else:
            plan.key = rule.key
        if plan.key is not None:
            info = cols[plan.key]
            plan.key_type = (info[7], info[8])
            if not info[10]:
                problems.append((label + ".key", "%s.key: login_user may not read column %s of table %s"
                                 % (label, q(plan.key), tname)))
                ok = False

        # time stamp deciding age
        if rule.timestamp not in cols:
            problems.append((label + ".timestamp", "%s.timestamp: column %s does not exist in table %s"
                             % (label, q(rule.timestamp), tname)))
            ok = False
        else:
            info = cols[rule.timestamp]
            if info[4] not in TIME_TYPES:
                problems.append((label + ".timestamp", "%s.timestamp: column %s of table %s is %s; the column that "
                                 "decides age must be date, timestamp or timestamptz"
                                 % (label, q(rule.timestamp), tname, info[9])))
                ok = False
            elif not info[10]:
                problems.append((label + ".timestamp", "%s.timestamp: login_user may not read column %s of table %s"
                                 % (label, q(rule.timestamp), tname)))
                ok = False

        in_unique = set()
        for u in uniques:
            in_unique.update(u[4])
        for col in rule.columns:
            problem = self._check_column(col, cols.get(col.name), tname, in_unique)
            if problem:
                problems.append((col.path, "%s: %s" % (col.path, problem)))
                ok = False
                continue
            info = cols[col.name]
            maxlen = info[6] - 4 if (info[4] in ("varchar", "bpchar") and info[6] > 4) else None
            if info[4] == "name":
                maxlen = 63
            plan.columns.append((col, {"base": info[4], "maxlen": maxlen, "type": info[9],
                                       "python": col.strategy.needs_secret}))
        return plan if ok else None

    def _check_column(self, col, info, tname, in_unique):
        s = col.strategy
        if info is None:
            return "column %s does not exist in table %s" % (q(col.name), tname)
        attnum, _name, notnull, generated, base, category, typmod, _tn, _tt, label, can_select, can_update = info
        if generated:
            return "column %s of table %s is generated; scrub the columns it is computed from" % (q(col.name), tname)
        if not can_select or (not can_update and not self.check_mode):
            return "login_user may not %s column %s of table %s; grant SELECT and UPDATE on it" % (
                "read" if not can_select else "update", q(col.name), tname)
        if s.name == "null":
            if notnull:
                return ("column %s of table %s is NOT NULL, so the null strategy cannot apply; use redact or hash"
                        % (q(col.name), tname))
            return None
        if s.name == "truncate_date":
            if base not in TIME_TYPES:
                return ("column %s of table %s is %s; truncate_date needs date, timestamp or timestamptz"
                        % (q(col.name), tname, label))
            return None
        # text strategies
        if category != "S":
            return ("column %s of table %s is %s; %s writes text and needs a text column (text, varchar, char)"
                    % (q(col.name), tname, label, s.name))
        maxlen = typmod - 4 if (base in ("varchar", "bpchar") and typmod > 4) else (63 if base == "name" else None)
        if maxlen is not None and maxlen < s.min_length:
            what = "the redact text" if s.name == "redact" else "a scrubbed %s value" % s.name
            return ("column %s of table %s is %s, too short for %s (%d characters); widen it or choose another "
                    "strategy" % (q(col.name), tname, label, what, s.min_length))
        if s.name == "redact" and attnum in in_unique:
            return ("column %s of table %s is in a unique index: redact would give many rows the same value; use "
                    "hash or null" % (q(col.name), tname))
        return None

    # -- SQL -----------------------------------------------------------------------
    def _id(self, *names):
        """A quoted identifier, safe inside a query that also has parameters.

        psycopg leaves a ``%`` inside ``sql.Identifier`` as it is, so a column
        named ``a%sb`` would be read as a placeholder; double it here."""
        return self.sql.SQL(self.sql.Identifier(*names).as_string(self.conn).replace("%", "%%"))

    def _parts(self, plan):
        """(table, key, ts, aged, where, [needs per column], params) as composable SQL."""
        S, I = self.sql.SQL, self._id
        table = I(plan.schema, plan.table)
        key, ts = I(plan.key), I(plan.timestamp)
        params = {}
        needs = []
        for i, (col, info) in enumerate(plan.columns):
            c = I(col.name)
            s = col.strategy
            p = "p%d" % i
            if s.name == "null":
                needs.append(S("({} IS NOT NULL)").format(c))
            elif s.name == "redact":
                params[p] = s.text
                needs.append(S("({c} IS NOT NULL AND {c} <> %({p})s)").format(c=c, p=S(p)))
            elif s.name == "truncate_date":
                params[p] = s.unit
                needs.append(S("({c} IS NOT NULL AND {c} <> {t})").format(c=c, t=self._trunc(c, info, p)))
            else:
                needs.append(S("({c} IS NOT NULL AND NOT ({t}))").format(c=c, t=self._marked(s.name, c, p, params)))
        where = S("(" + plan.rule.where.replace("%", "%%") + ")") if plan.rule.where else S("true")
        aged = S("({} < %(cutoff)s)").format(ts)
        return table, key, ts, aged, where, needs, params

    def _marked(self, name, c, p, params):
        """SQL true when ``c`` already has the scrubbed form of ``name`` (see anonymize_scrub).

        The Python patterns as length, prefix and suffix checks plus one short regular expression
        for the hex digits: PostgreSQL took seconds per 100,000 rows on ``[0-9a-f]{64}``. The casts
        to text keep the tests case-sensitive on citext columns, as in Python."""
        S = self.sql.SQL
        params["hexdigits"] = "^[0-9a-f]*$"
        if name == "hash":
            params.update({p + "n": scrub.HASH_LENGTH, p + "a": scrub.HASH_PREFIX})
            sql = ("length({c}::text) = %({p}n)s AND left({c}::text, 5) = %({p}a)s "
                   "AND substr({c}::text, 6) ~ %(hexdigits)s")
        elif name == "email":
            params.update({p + "n": scrub.EMAIL_LENGTH, p + "a": scrub.EMAIL_PREFIX, p + "d": "@" + scrub.FAKE_DOMAIN})
            sql = ("length({c}::text) = %({p}n)s AND left({c}::text, 5) = %({p}a)s AND right({c}::text, 19) = %({p}d)s "
                   "AND substr({c}::text, 6, 24) ~ %(hexdigits)s")
        else:  # keep_domain: "anon-", 24 hex digits and "@" are the first 30 characters
            params.update({p + "a": scrub.EMAIL_PREFIX})
            sql = ("length({c}::text) >= 30 AND left({c}::text, 5) = %({p}a)s AND substr({c}::text, 30, 1) = '@' "
                   "AND substr({c}::text, 6, 24) ~ %(hexdigits)s")
        return S(sql).format(c=c, p=S(p))

    def _trunc(self, ref, info, p):
        S = self.sql.SQL
        if info["base"] == "date":
            return S("date_trunc(%({p})s::text, {c}::timestamp)::date").format(c=ref, p=S(p))
        return S("date_trunc(%({p})s::text, {c})").format(c=ref, p=S(p))

    @staticmethod
    def _describe(e):
        return _first_line(e)

    # -- counting ------------------------------------------------------------------
    def count(self, plans, cutoff):
        S = self.sql.SQL
        problems = []
        entries = []
        for plan in plans:
            entry = new_entry(plan.rule, plan.schema, self.check_mode)
            entry["key"] = plan.key
            entries.append(entry)
            table, key, ts, aged, where, needs, params = self._parts(plan)
            params["cutoff"] = cutoff
            # Each test once per row: flags in a subquery that OFFSET 0 keeps from being folded back.
            flags = [S("{} AS lb_a").format(aged), S("{} IS NULL AS lb_t").format(ts), S("{} IS NULL AS lb_k").format(key)]
            flags += [S("{} AS lb_n%d" % i).format(n) for i, n in enumerate(needs)]
            any_need = S(" OR ").join(S("lb_n%d" % i) for i in range(len(needs)))
            exprs = [S("count(*) FILTER (WHERE lb_a)"),
                     S("count(*) FILTER (WHERE lb_a AND ({}))").format(any_need),
                     S("count(*) FILTER (WHERE lb_t)"),
                     S("count(*) FILTER (WHERE lb_a AND ({}) AND lb_k)").format(any_need)]
            exprs += [S("count(*) FILTER (WHERE lb_a AND lb_n%d)" % i) for i in range(len(needs))]
            query = S("SELECT {} FROM (SELECT {} FROM {} WHERE {} OFFSET 0) AS lb_s").format(
                S(", ").join(exprs), S(", ").join(flags), table, where)
            try:
                with self.conn.transaction():
                    self.conn.execute("SET TRANSACTION READ ONLY")
                    row = self.conn.execute(query, params).fetchone()
            except postgres.psycopg.Error as e:
                problems.append(self._error(plan, e, "counting the rows"))
                continue
            entry["rows_in_scope"], entry["rows_to_scrub"], entry["rows_without_timestamp"], null_keys = row[:4]
            entry["rows_remaining"] = entry["rows_to_scrub"]
            for (col, info), n in zip(plan.columns, row[4:]):
                d = col.strategy.describe()
                d.update({"values_to_scrub": n, "values_scrubbed": 0})
                entry["columns"][col.name] = d
            if null_keys:
                problems.append((plan.rule.label + ".key", "%s.key: %d rows older than the cut-off have a NULL %s; "
                                 "they cannot be batched: choose a NOT NULL unique key (the primary key)"
                                 % (plan.rule.label, null_keys, q(plan.key))))
        if problems:
            raise rules_error(problems)
        return entries

    def verify(self, plans, cutoff, entries):
        """Count again: rows older than the cut-off still holding unscrubbed values."""
        S = self.sql.SQL
        for plan, entry in zip(plans, entries):
            if not entry["rows_to_scrub"]:
                continue  # the count a moment ago found nothing to scrub
            table, key, ts, aged, where, needs, params = self._parts(plan)
            params["cutoff"] = cutoff
            query = S("SELECT count(*) FROM {} WHERE {} AND {} AND ({})").format(table, where, aged, S(" OR ").join(needs))
            with self.conn.transaction():
                self.conn.execute("SET TRANSACTION READ ONLY")
                entry["rows_remaining"] = self.conn.execute(query, params).fetchone()[0]

    # -- scrubbing -----------------------------------------------------------------
    def scrub(self, plan, cutoff, batch_size, entry, progress=None):
        S, I = self.sql.SQL, self._id
        table, key, ts, aged, where, needs, params = self._parts(plan)
        params["cutoff"] = cutoff
        py = [(i, col, info) for i, (col, info) in enumerate(plan.columns) if info["python"]]
        select_list = [key] + needs + [I(col.name) for _i, col, _info in py]
        base = S("SELECT {} FROM {} WHERE {} AND {} AND ({})").format(
            S(", ").join(select_list), table, aged, where, S(" OR ").join(needs))
        first = S("{} ORDER BY {} LIMIT %(limit)s FOR UPDATE").format(base, key)
        later = S("{} AND {} > %(last)s ORDER BY {} LIMIT %(limit)s FOR UPDATE").format(base, key, key)

        sets = []
        # The arrays go in binary: 1000 values in text format cost the client and the server more
        # than the update of the 1000 rows itself.
        unnest = [S("%(keys)b::{}[]").format(I(*plan.key_type))]
        names = [S("lb_k")]
        text_type = I("pg_catalog", "text")
        for i, (col, info) in enumerate(plan.columns):
            c = I(col.name)
            ref = S("lb_t.{}").format(c)
            s = col.strategy
            if info["python"]:
                alias = S("lb_c%d" % i)
                unnest.append(S("%(v{})b::{}[]").format(S(str(i)), text_type))
                names.append(alias)
                sets.append(S("{} = coalesce(lb_v.{}, {})").format(c, alias, ref))
            elif s.name == "null":
                sets.append(S("{} = NULL").format(c))
            elif s.name == "redact":
                sets.append(S("{c} = CASE WHEN {r} IS NULL THEN NULL ELSE %(p{i})s END").format(c=c, r=ref, i=S(str(i))))
            else:
                sets.append(S("{} = {}").format(c, self._trunc(ref, info, "p%d" % i)))
        # The key range of the batch keeps the plan on the key's index: without it the planner may hash the
        # whole table for every batch (it did, on a table of 50,000 rows).
        key_type = I(*plan.key_type)
        update = S("UPDATE {t} AS lb_t SET {s} FROM unnest({u}) AS lb_v({n}) WHERE lb_t.{k} = lb_v.lb_k "
                   "AND lb_t.{k} >= %(lo)s::{kt} AND lb_t.{k} <= %(hi)s::{kt}").format(
            t=table, s=S(", ").join(sets), u=S(", ").join(unnest), n=S(", ").join(names), k=key, kt=key_type)

        lock_ms = str(int(self.req.lock_timeout) * 1000)
        last = None
        t0 = time.monotonic()
        n_needs = len(needs)
        # (column number, index of its flag in a row, index of its value, scrub function)
        scrubbers = [(i, 1 + i, 1 + n_needs + j, col.strategy.scrubber(self.req.secret, info["maxlen"]))
                     for j, (i, col, info) in enumerate(py)]
        committed = 0  # batches of this call, to make durable at the end
        while True:
            try:
                with self.conn.transaction():
                    # Batches commit without waiting for the WAL flush; _durable() waits once per table.
                    self.conn.execute("SELECT set_config('lock_timeout', %s, true), "
                                      "set_config('synchronous_commit', 'off', true)", (lock_ms,))
                    args = dict(params, limit=batch_size)
                    if last is not None:
                        args["last"] = last
                    rows = self.conn.execute(later if last is not None else first, args).fetchall()
                    if not rows:
                        break
                    uargs = dict(params, keys=[r[0] for r in rows], lo=rows[0][0], hi=rows[-1][0])
                    for i, flag, value, fn in scrubbers:
                        uargs["v%d" % i] = [fn(r[value]) if r[flag] else None for r in rows]
                    cur = self.conn.execute(update, uargs)
                    if cur.rowcount != len(rows):
                        raise LifeboatError("the update matched %d rows instead of %d" % (cur.rowcount, len(rows)))
            except (postgres.psycopg.Error, LifeboatError) as e:
                text = e.msg if isinstance(e, LifeboatError) else _first_line(e)
                durable = not committed or self._durable() is None
                raise LifeboatError(
                    "Anonymizing table %s (%s) failed in batch %d, which was rolled back: %s. %d batches (%d rows) "
                    "of this table were committed before it%s."
                    % (q(plan.table), plan.rule.label, entry["batches"] + 1, text, entry["batches"], entry["rows_scrubbed"],
                       "" if durable else " (the server did not confirm that the last of them reached its disk: "
                       "after a server crash they are lost, and the next run scrubs them)"),
                    option=plan.rule.label,
                    details={"table": plan.table, "batches_committed": entry["batches"],
                             "rows_scrubbed": entry["rows_scrubbed"]},
                )
            committed += 1
            entry["batches"] += 1
            entry["rows_scrubbed"] += len(rows)
            for i, (col, _info) in enumerate(plan.columns):
                entry["columns"][col.name]["values_scrubbed"] += sum(1 for r in rows if r[1 + i])
            elapsed = time.monotonic() - t0
            entry["seconds"] = round(elapsed, 3)
            entry["rows_per_second"] = round(entry["rows_scrubbed"] / elapsed, 1) if elapsed > 0 else 0.0
            if progress:
                progress(entry["rows_scrubbed"])
            # A short batch does not end the loop: rows another run had locked come back only once it
            # committed; the loop ends on a batch that finds nothing (one more cheap SELECT).
            last = rows[-1][0]
        problem = self._durable() if committed else None
        if problem:
            raise LifeboatError(
                "Anonymizing table %s (%s): the last commit, which waits until the %d batches (%d rows) before it "
                "are on disk, failed: %s. After a server crash the last of them may be lost; run again (scrubbed "
                "rows are recognized and skipped)." % (q(plan.table), plan.rule.label, entry["batches"],
                                                       entry["rows_scrubbed"], problem),
                option=plan.rule.label,
                details={"table": plan.table, "batches_committed": entry["batches"],
                         "rows_scrubbed": entry["rows_scrubbed"]},
            )
        entry["seconds"] = round(time.monotonic() - t0, 3)

    def _durable(self):
        """Wait until the batches committed so far are on disk (and on synchronous standbys).

        The batches commit with ``synchronous_commit=off``: the server confirms a commit before
        its WAL is flushed, so a batch does not wait for a disk flush. This transaction takes a
        transaction id, so its commit writes a WAL record, and commits at the session's own
        ``synchronous_commit``: the server confirms it once the WAL up to it, which holds every
        earlier batch, is flushed. None when confirmed, else what failed."""
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT txid_current()")
        except postgres.psycopg.Error as e:
            return _first_line(e)
        return None
