# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tenant_anonymize on a SQLite file.

Names reach SQL only after they were found in the catalog (``sqlite_master``,
``pragma_table_xinfo``), spelled as the catalog spells them and quoted by
``ident()``; values only as parameters. SQL selects the rule's rows (its
``where``) in key order; Python decides, once per row, the row's age and which
values still need scrubbing, with the same code that scrubs them, so the count,
the batches and the final check cannot disagree.

Time stamps are ISO 8601 texts (UTC unless they carry an offset) or numbers
of Unix seconds; a value that is neither is reported before anything is
written. Check mode opens the file read-only (``mode=ro``); a real run plans
under ``PRAGMA query_only``, reads each batch of rows without a write lock,
and only when some of them need scrubbing reads them again and updates them
in one short ``BEGIN IMMEDIATE`` transaction.
"""

import os
import sqlite3
import time
from urllib.parse import quote

from . import anonymize_scrub as scrub
from . import sqlite as sqlite_engine
from .anonymize_rules import Tenant, new_entry, q, rules_error
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


class SqliteTenant(Tenant):
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
        except sqlite3.Error as e:
            raise LifeboatError("Cannot open the SQLite file %s: %s (path)." % (self.req.path, e), option="path")
        return self

    # -- catalog -----------------------------------------------------------------

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

    # -- rows --------------------------------------------------------------------
    def _select(self, plan, ranged=None, after=False):
        """Key, time stamp and the personal-data columns of the rule's rows (its where only: the age and
        what needs scrubbing are decided in Python, once per row, by the same code that scrubs).

        ``ranged``: None (all rows), "from" (the next :lb_limit rows in key order after :lb_last when
        ``after``), "between" (keys after :lb_last when ``after``, up to :lb_upto)."""
        key = ident(plan.key)
        cols = ", ".join([key, ident(plan.timestamp)] + [ident(name) for _c, name in plan.columns])
        query = "SELECT %s FROM %s WHERE %s" % (cols, ident(plan.table),
                                                "(%s)" % plan.rule.where if plan.rule.where else "1")
        if ranged is None:
            return query
        if after:
            query += " AND %s > :lb_last" % key
        if ranged == "from":
            return query + " ORDER BY %s LIMIT :lb_limit" % key
        return query + " AND %s <= :lb_upto" % key

    @staticmethod
    def _classify(plan, row, at):
        """(state, flags): state is 'no_ts', 'bad_ts', 'young' or 'aged'; flags tell which columns need scrubbing."""
        if row[1] is None:
            return "no_ts", None
        seconds = scrub.epoch_seconds(row[1])
        if seconds is None:
            return "bad_ts", None
        if seconds >= at:
            return "young", None
        return "aged", [not col.strategy.is_scrubbed(v) for (col, _n), v in zip(plan.columns, row[2:])]

    def _rows(self, query, args, plan):
        try:
            cur = self.conn.execute(query, args)
            while True:
                chunk = cur.fetchmany(2000)
                if not chunk:
                    return
                yield from chunk
        except sqlite3.Error as e:
            raise _QueryError(e)

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
            values = [0] * len(plan.columns)
            bad_dates = [0] * len(plan.columns)
            bad_ts = null_keys = 0
            try:
                for row in self._rows(self._select(plan, None), {}, plan):
                    state, flags = self._classify(plan, row, at)
                    if state == "no_ts":
                        entry["rows_without_timestamp"] += 1
                    elif state == "bad_ts":
                        bad_ts += 1
                    elif state == "aged":
                        entry["rows_in_scope"] += 1
                        if any(flags):
                            entry["rows_to_scrub"] += 1
                            null_keys += row[0] is None
                        for i, ((col, _n), flag, v) in enumerate(zip(plan.columns, flags, row[2:])):
                            values[i] += flag
                            if flag and col.strategy.name == "truncate_date" and scrub.truncate_text(v, col.strategy.unit) is None:
                                bad_dates[i] += 1
            except _QueryError as e:
                problems.append(self._error(plan, e.error, "counting the rows"))
                continue
            entry["rows_remaining"] = entry["rows_to_scrub"]
            for (col, _name), n in zip(plan.columns, values):
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
            for (col, _name), n in zip(plan.columns, bad_dates):
                if n:
                    problems.append((col.path, "%s: %d values older than the cut-off are not ISO 8601 dates "
                                               "(YYYY-MM-DD...), so truncate_date cannot cut them; fix them or use "
                                               "null" % (col.path, n)))
        if problems:
            raise rules_error(problems)
        return entries

    def verify(self, plans, cutoff, entries):
        at = cutoff.timestamp()
        for plan, entry in zip(plans, entries):
            if not entry["rows_to_scrub"]:
                continue  # the count a moment ago found nothing to scrub
            remaining = 0
            for row in self._rows(self._select(plan, None), {}, plan):
                state, flags = self._classify(plan, row, at)
                remaining += state == "aged" and any(flags)
            entry["rows_remaining"] = remaining

    # -- scrubbing -----------------------------------------------------------------
    def scrub(self, plan, cutoff, batch_size, entry, progress=None):
        self.conn.execute("PRAGMA query_only = OFF")
        try:
            self._scrub(plan, cutoff, batch_size, entry, progress)
        finally:
            self.conn.execute("PRAGMA query_only = ON")

    def _scrub(self, plan, cutoff, batch_size, entry, progress):
        """Read up to batch_size rows of the rule in key order without a write lock; when some need
        scrubbing, take the write lock (BEGIN IMMEDIATE), read the same key range again, and update
        the rows that need it in that one short transaction."""
        at = cutoff.timestamp()
        secret = self.req.secret
        update = "UPDATE %s SET %s WHERE %s = ?" % (
            ident(plan.table), ", ".join("%s = ?" % ident(name) for _c, name in plan.columns), ident(plan.key))
        last = None
        t0 = time.monotonic()
        while True:
            args = {"lb_last": last, "lb_limit": batch_size}
            try:
                chunk = list(self._rows(self._select(plan, "from", last is not None), args, plan))
            except _QueryError as e:
                raise self._batch_error(plan, entry, e.error)
            if not chunk:
                break
            upto = chunk[-1][0]
            if any(self._needs(plan, row, at) for row in chunk):
                changed = self._write(plan, update, self._select(plan, "between", last is not None),
                                      dict(args, lb_upto=upto), at, secret, entry)
                if changed:
                    entry["batches"] += 1
                    entry["rows_scrubbed"] += changed
                    elapsed = time.monotonic() - t0
                    entry["seconds"] = round(elapsed, 3)
                    entry["rows_per_second"] = round(entry["rows_scrubbed"] / elapsed, 1) if elapsed > 0 else 0.0
                    if progress:
                        progress(entry["rows_scrubbed"])
            last = upto
            if len(chunk) < batch_size:
                break
        entry["seconds"] = round(time.monotonic() - t0, 3)

    def _needs(self, plan, row, at):
        state, flags = self._classify(plan, row, at)
        return state == "aged" and any(flags)

    def _write(self, plan, update, select, args, at, secret, entry):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                updates = []
                counts = [0] * len(plan.columns)
                for row in self._rows(select, args, plan):
                    state, flags = self._classify(plan, row, at)
                    if state != "aged" or not any(flags):
                        continue
                    new = []
                    for i, ((col, _n), flag, v) in enumerate(zip(plan.columns, flags, row[2:])):
                        new.append(col.strategy.scrub(v, secret) if flag else v)
                        counts[i] += flag
                    updates.append(tuple(new) + (row[0],))
                before = self.conn.total_changes
                self.conn.executemany(update, updates)
                if self.conn.total_changes - before != len(updates):
                    raise LifeboatError("the update changed %d rows instead of %d"
                                        % (self.conn.total_changes - before, len(updates)))
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except _QueryError as e:
            raise self._batch_error(plan, entry, e.error)
        except (sqlite3.Error, LifeboatError, ValueError) as e:
            raise self._batch_error(plan, entry, e)
        for (col, _name), n in zip(plan.columns, counts):
            entry["columns"][col.name]["values_scrubbed"] += n
        return len(updates)

    @staticmethod
    def _batch_error(plan, entry, e):
        text = e.msg if isinstance(e, LifeboatError) else str(e)
        return LifeboatError(
            "Anonymizing table %s (%s) failed in batch %d, which was rolled back: %s. %d batches (%d rows) "
            "of this table were committed before it."
            % (q(plan.table), plan.rule.label, entry["batches"] + 1, text, entry["batches"], entry["rows_scrubbed"]),
            option=plan.rule.label,
            details={"table": plan.table, "batches_committed": entry["batches"], "rows_scrubbed": entry["rows_scrubbed"]},
        )


class _QueryError(Exception):
    def __init__(self, error):
        super(_QueryError, self).__init__(str(error))
        self.error = error
