# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tenant_anonymize on a SQLite file.

Names reach SQL only after they were found in the catalog (``sqlite_master``,
``pragma_table_xinfo``), spelled as the catalog spells them and quoted by
``ident()``; values only as parameters. The strategies run as Python
functions registered on the connection (the same code that decides whether a
value is already scrubbed scrubs it), so SQL and Python cannot disagree.

Time stamps are ISO 8601 texts (UTC unless they carry an offset) or numbers
of Unix seconds; a value that is neither is reported before anything is
written. Check mode opens the file read-only (``mode=ro``); a real run plans
under ``PRAGMA query_only`` and writes each batch in its own
``BEGIN IMMEDIATE`` transaction.
"""

import os
import sqlite3
import time
from urllib.parse import quote

from . import anonymize_scrub as scrub
from . import sqlite as sqlite_engine
from .anonymize_rules import new_entry, q, rules_error
from .errors import LifeboatError


def ident(name):
    """A catalog name as a quoted SQLite identifier (never anything else)."""
    if not isinstance(name, str) or "\0" in name:
        raise ValueError("not a catalog name")
    return '"%s"' % name.replace('"', '""')


def affinity(declared):
    """SQLite's column affinity of a declared type (https://sqlite.org/datatype3.html 3.1)."""
    t = (declared or "").upper()
    if "INT" in t:
        return "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL"
    return "NUMERIC"


def open_tenant(req, check_mode):
    return SqliteTenant(req, check_mode)


class TablePlan(object):
    def __init__(self, rule, table, key, timestamp):
        self.rule = rule
        self.table = table          # catalog spelling
        self.key = key
        self.timestamp = timestamp
        self.columns = []           # (Column, catalog name)
        self.fn = "lb%d" % rule.index


class SqliteTenant(object):
    schema_name = None

    def __init__(self, req, check_mode):
        self.req = req
        self.check_mode = check_mode
        self.conn = None

    def __enter__(self):
        sqlite_engine.check_source(self.req.path)
        timeout = max(1, self.req.lock_timeout)
        try:
            if self.check_mode:
                self.conn = sqlite3.connect("file:%s?mode=ro" % quote(os.path.abspath(self.req.path)), uri=True,
                                            timeout=timeout, isolation_level=None)
            else:
                self.conn = sqlite3.connect(self.req.path, timeout=timeout, isolation_level=None)
                self.conn.execute("PRAGMA query_only = ON")
            self.conn.create_function("lb_epoch", 1, scrub.epoch_seconds, deterministic=True)
        except sqlite3.Error as e:
            raise LifeboatError("Cannot open the SQLite file %s: %s (path)." % (self.req.path, e), option="path")
        return self

    def __exit__(self, *exc):
        if self.conn is not None:
            self.conn.close()
        return False

    # -- catalog -----------------------------------------------------------------
    def plan(self, rules):
        problems = []
        plans = []
        for rule in rules:
            plan = self._plan_rule(rule, problems)
            if plan is not None:
                plans.append(plan)
        if problems:
            raise rules_error(problems)
        for plan in plans:
            self._register(plan)
        return plans

    def _plan_rule(self, rule, problems):
        label = rule.label
        row = self.conn.execute(
            "SELECT name, type, sql FROM sqlite_master WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE",
            (rule.table,)).fetchone()
        if row is None or row[0].lower().startswith("sqlite_"):
            problems.append((label + ".table", "%s.table: table %s does not exist in %s"
                             % (label, q(rule.table), self.req.path)))
            return None
        table, kind, ddl = row
        tname = q(table)
        if kind != "table" or (ddl or "").lstrip().upper().startswith("CREATE VIRTUAL"):
            problems.append((label + ".table", "%s.table: %s is %s, not a table" % (
                label, tname, "a view" if kind == "view" else "a virtual table")))
            return None
        cols = {}
        for name, declared, notnull, pk, hidden in self.conn.execute(
                'SELECT name, type, "notnull", pk, hidden FROM pragma_table_xinfo(?)', (table,)):
            cols[name.lower()] = {"name": name, "declared": declared or "", "notnull": bool(notnull), "pk": pk,
                                  "generated": hidden in (2, 3), "hidden": hidden == 1}
        pk = [c for c in cols.values() if c["pk"]]
        unique_single = set(c["name"].lower() for c in pk) if len(pk) == 1 else set()
        in_unique = set(c["name"].lower() for c in pk)
        for idx_name, unique, partial in self.conn.execute(
                'SELECT name, "unique", partial FROM pragma_index_list(?)', (table,)).fetchall():
            if not unique:
                continue
            members = [r[0] for r in self.conn.execute("SELECT name FROM pragma_index_info(?)", (idx_name,))]
            in_unique.update(m.lower() for m in members if m)
            if len(members) == 1 and members[0] and not partial:
                unique_single.add(members[0].lower())
        ok = True

        key = None
        if rule.key is None:
            if len(pk) != 1:
                problems.append((label + ".key", "%s.key: table %s has no single-column primary key; set key to a "
                                                 "unique column" % (label, tname)))
                ok = False
            else:
                key = pk[0]["name"]
        elif rule.key.lower() not in cols or cols[rule.key.lower()]["hidden"]:
            problems.append((label + ".key", "%s.key: column %s does not exist in table %s" % (label, q(rule.key), tname)))
            ok = False
        elif rule.key.lower() not in unique_single:
            problems.append((label + ".key", "%s.key: column %s of table %s is not unique (no primary key or unique "
                                             "index on it alone); batches need a unique key, usually the primary key"
                             % (label, q(rule.key), tname)))
            ok = False
        else:
            key = cols[rule.key.lower()]["name"]

        ts = cols.get(rule.timestamp.lower())
        if ts is None or ts["hidden"]:
            problems.append((label + ".timestamp", "%s.timestamp: column %s does not exist in table %s"
                             % (label, q(rule.timestamp), tname)))
            ok = False
        elif affinity(ts["declared"]) == "BLOB" and ts["declared"]:
            problems.append((label + ".timestamp", "%s.timestamp: column %s of table %s is declared %s; the column "
                             "that decides age holds ISO 8601 dates or Unix seconds"
                             % (label, q(rule.timestamp), tname, ts["declared"])))
            ok = False

        plan = TablePlan(rule, table, key, ts["name"] if ts else None)
        for col in rule.columns:
            info = cols.get(col.name.lower())
            problem = self._check_column(col, info, tname, in_unique)
            if problem:
                problems.append((col.path, "%s: %s" % (col.path, problem)))
                ok = False
                continue
            plan.columns.append((col, info["name"]))
        return plan if ok else None

    @staticmethod
    def _check_column(col, info, tname, in_unique):
        s = col.strategy
        if info is None or info["hidden"]:
            return "column %s does not exist in table %s" % (q(col.name), tname)
        if info["generated"]:
            return "column %s of table %s is generated; scrub the columns it is computed from" % (q(col.name), tname)
        declared = info["declared"] or "(no type)"
        aff = affinity(info["declared"])
        if s.name == "null":
            if info["notnull"]:
                return ("column %s of table %s is NOT NULL, so the null strategy cannot apply; use redact or hash"
                        % (q(col.name), tname))
            return None
        if s.name == "truncate_date":
            upper = info["declared"].upper()
            if aff in ("INTEGER", "REAL") and "DATE" not in upper and "TIME" not in upper:
                return ("column %s of table %s is declared %s; truncate_date needs ISO 8601 date texts "
                        "(declared DATE, DATETIME, TIMESTAMP or TEXT)" % (q(col.name), tname, declared))
            return None
        if aff not in ("TEXT", "BLOB"):
            return ("column %s of table %s is declared %s; %s writes text and needs a text column (TEXT, VARCHAR, "
                    "or no declared type)" % (q(col.name), tname, declared, s.name))
        if s.name == "redact" and info["name"].lower() in in_unique:
            return ("column %s of table %s is in a unique index: redact would give many rows the same value; use "
                    "hash or null" % (q(col.name), tname))
        return None

    def _register(self, plan):
        """Functions lbR_nI (needs scrubbing), lbR_sI (scrubbed value), lbR_bI (not a date) per column."""
        secret = self.req.secret
        for i, (col, _name) in enumerate(plan.columns):
            s = col.strategy

            def needs(value, s=s):
                return 0 if s.is_scrubbed(value) else 1

            def scrubbed(value, s=s):
                return s.scrub(value, secret)

            def bad_date(value, s=s):
                return 1 if (value is not None and scrub.truncate_text(value, s.unit) is None) else 0

            self.conn.create_function("%s_n%d" % (plan.fn, i), 1, needs, deterministic=True)
            self.conn.create_function("%s_s%d" % (plan.fn, i), 1, scrubbed, deterministic=True)
            self.conn.create_function("%s_b%d" % (plan.fn, i), 1, bad_date, deterministic=True)

    # -- SQL -----------------------------------------------------------------------
    def _parts(self, plan):
        table, key, ts = ident(plan.table), ident(plan.key), ident(plan.timestamp)
        needs = ["%s_n%d(%s)" % (plan.fn, i, ident(name)) for i, (_c, name) in enumerate(plan.columns)]
        where = "(%s)" % plan.rule.where if plan.rule.where else "1"
        aged = "(lb_epoch(%s) < :lb_cutoff)" % ts
        return table, key, ts, aged, where, needs

    def _error(self, plan, e, what):
        rule = plan.rule
        hint = " Check %s.where." % rule.label if rule.where else ""
        option = rule.label + (".where" if rule.where else ".table")
        return (option, "%s: %s of table %s failed: %s.%s" % (rule.label, what, q(plan.table), e, hint))

    # -- counting ------------------------------------------------------------------
    def count(self, plans, cutoff):
        problems = []
        entries = []
        at = cutoff.timestamp()
        for plan in plans:
            entry = new_entry(plan.rule, None, self.check_mode)
            entry["table"] = plan.table
            entry["key"] = plan.key
            entries.append(entry)
            table, key, ts, aged, where, needs = self._parts(plan)
            any_need = " OR ".join(needs)
            exprs = ["sum(CASE WHEN %s THEN 1 ELSE 0 END)" % aged,
                     "sum(CASE WHEN %s AND (%s) THEN 1 ELSE 0 END)" % (aged, any_need),
                     "sum(CASE WHEN %s IS NULL THEN 1 ELSE 0 END)" % ts,
                     "sum(CASE WHEN %s AND (%s) AND %s IS NULL THEN 1 ELSE 0 END)" % (aged, any_need, key),
                     "sum(CASE WHEN %s IS NOT NULL AND lb_epoch(%s) IS NULL THEN 1 ELSE 0 END)" % (ts, ts)]
            exprs += ["sum(CASE WHEN %s AND %s THEN 1 ELSE 0 END)" % (aged, n) for n in needs]
            bad = [(col, "sum(CASE WHEN %s AND %s_b%d(%s) THEN 1 ELSE 0 END)" % (aged, plan.fn, i, ident(name)))
                   for i, (col, name) in enumerate(plan.columns) if col.strategy.name == "truncate_date"]
            exprs += [b[1] for b in bad]
            query = "SELECT %s FROM %s WHERE %s" % (", ".join(exprs), table, where)
            try:
                row = [v or 0 for v in self.conn.execute(query, {"lb_cutoff": at}).fetchone()]
            except sqlite3.Error as e:
                problems.append(self._error(plan, e, "counting the rows"))
                continue
            entry["rows_in_scope"], entry["rows_to_scrub"], entry["rows_without_timestamp"], null_keys, bad_ts = row[:5]
            entry["rows_remaining"] = entry["rows_to_scrub"]
            n_cols = len(plan.columns)
            for (col, _name), n in zip(plan.columns, row[5:5 + n_cols]):
                d = col.strategy.describe()
                d.update({"values_to_scrub": n, "values_scrubbed": 0})
                entry["columns"][col.name] = d
            label = plan.rule.label
            if bad_ts:
                problems.append((label + ".timestamp", "%s.timestamp: %d values of %s in table %s are neither ISO 8601 "
                                 "dates nor Unix seconds, so their age is unknown; fix them (or narrow the rule with "
                                 "where)" % (label, bad_ts, q(plan.timestamp), q(plan.table))))
            if null_keys:
                problems.append((label + ".key", "%s.key: %d rows older than the cut-off have a NULL %s; they cannot "
                                 "be batched: choose a NOT NULL unique key" % (label, null_keys, q(plan.key))))
            for (col, _expr), n in zip(bad, row[5 + n_cols:]):
                if n:
                    problems.append((col.path, "%s: %d values older than the cut-off are not ISO 8601 dates "
                                               "(YYYY-MM-DD...), so truncate_date cannot cut them; fix them or use "
                                               "null" % (col.path, n)))
        if problems:
            raise rules_error(problems)
        return entries

    def verify(self, plans, cutoff, entries):
        for plan, entry in zip(plans, entries):
            table, key, ts, aged, where, needs = self._parts(plan)
            query = "SELECT count(*) FROM %s WHERE %s AND %s AND (%s)" % (table, where, aged, " OR ".join(needs))
            entry["rows_remaining"] = self.conn.execute(query, {"lb_cutoff": cutoff.timestamp()}).fetchone()[0]

    # -- scrubbing -----------------------------------------------------------------
    def scrub(self, plan, cutoff, batch_size, entry, progress=None):
        self.conn.execute("PRAGMA query_only = OFF")
        try:
            self._scrub(plan, cutoff, batch_size, entry, progress)
        finally:
            self.conn.execute("PRAGMA query_only = ON")

    def _scrub(self, plan, cutoff, batch_size, entry, progress):
        table, key, ts, aged, where, needs = self._parts(plan)
        scope = "%s AND %s AND (%s)" % (aged, where, " OR ".join(needs))
        sets = ", ".join(
            "%s = CASE WHEN %s THEN %s_s%d(%s) ELSE %s END" % (ident(name), needs[i], plan.fn, i, ident(name), ident(name))
            for i, (_c, name) in enumerate(plan.columns))
        counts = ", ".join(["count(*)"] + ["coalesce(sum(%s), 0)" % n for n in needs])
        at = cutoff.timestamp()
        last = None
        t0 = time.monotonic()
        while True:
            lower = "" if last is None else " AND %s > :lb_last" % key
            args = {"lb_cutoff": at, "lb_last": last, "lb_skip": batch_size - 1}
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    upper_row = self.conn.execute(
                        "SELECT %s FROM %s WHERE %s%s ORDER BY %s LIMIT 1 OFFSET :lb_skip" % (key, table, scope, lower, key),
                        args).fetchone()
                    upper = None if upper_row is None else upper_row[0]
                    rng = lower + ("" if upper_row is None else " AND %s <= :lb_upper" % key)
                    args["lb_upper"] = upper
                    got = self.conn.execute("SELECT %s FROM %s WHERE %s%s" % (counts, table, scope, rng), args).fetchone()
                    if got[0]:
                        cur = self.conn.execute("UPDATE %s SET %s WHERE %s%s" % (table, sets, scope, rng), args)
                        if cur.rowcount != got[0]:
                            raise LifeboatError("the update matched %d rows instead of %d" % (cur.rowcount, got[0]))
                    self.conn.execute("COMMIT")
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, LifeboatError) as e:
                text = e.msg if isinstance(e, LifeboatError) else str(e)
                raise LifeboatError(
                    "Anonymizing table %s (%s) failed in batch %d, which was rolled back: %s. %d batches (%d rows) "
                    "of this table were committed before it."
                    % (q(plan.table), plan.rule.label, entry["batches"] + 1, text, entry["batches"], entry["rows_scrubbed"]),
                    option=plan.rule.label,
                    details={"table": plan.table, "batches_committed": entry["batches"],
                             "rows_scrubbed": entry["rows_scrubbed"]},
                )
            if got[0]:
                entry["batches"] += 1
                entry["rows_scrubbed"] += got[0]
                for (col, _name), n in zip(plan.columns, got[1:]):
                    entry["columns"][col.name]["values_scrubbed"] += n
                elapsed = time.monotonic() - t0
                entry["seconds"] = round(elapsed, 3)
                entry["rows_per_second"] = round(entry["rows_scrubbed"] / elapsed, 1) if elapsed > 0 else 0.0
                if progress:
                    progress(dict(entry))
            if upper_row is None:
                break
            last = upper
        entry["seconds"] = round(time.monotonic() - t0, 3)
