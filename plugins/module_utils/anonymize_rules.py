# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tenant_anonymize rules: parsing and checks that need no database.

Shared by ``anonymize`` and its backends (``anonymize_pg``,
``anonymize_sqlite``). Every problem names its place in the rules
(``rules[2].columns.email``) and what to do about it.
"""

import contextlib
import re

from . import anonymize_scrub as scrub
from .errors import LifeboatError

MAX_WHERE = 4000
RULE_KEYS = ("table", "timestamp", "key", "columns", "where")
STRATEGY_KEYS = ("strategy", "text", "unit")


# -- small helpers ----------------------------------------------------------------

def q(name):
    """A name as it appears in messages: double-quoted, escapes visible."""
    text = str(name)
    if re.match(r"\A[A-Za-z0-9_ .$-]*\Z", text):
        return '"%s"' % text
    return '"%s"' % text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def column_path(label, column):
    if re.match(r"\A[A-Za-z_][A-Za-z0-9_]*\Z", column):
        return "%s.columns.%s" % (label, column)
    return "%s.columns[%s]" % (label, q(column))


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# -- where ------------------------------------------------------------------------

def check_where(text, engine):
    """Return a problem text, or None when ``text`` is one SQL expression we accept.

    ``where`` is trusted configuration (like a playbook); this check keeps it
    to a single expression that cannot end the statement or hide the rest of
    it: no ``;``, no comments, balanced parentheses, closed quotes, and no
    placeholders (values are parameters of the statements around it).
    """
    if not isinstance(text, str) or not text.strip():
        return "must be a non-empty SQL expression, for example kind = 'guest'"
    if len(text) > MAX_WHERE:
        return "is longer than %d characters" % MAX_WHERE
    if "\0" in text:
        return "contains a NUL byte"
    quotes = {"'": "'", '"': '"'}
    if engine == "sqlite":
        quotes.update({"`": "`", "[": "]"})
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in quotes:
            close = quotes[c]
            j = i + 1
            while True:
                j = text.find(close, j)
                if j < 0:
                    return "has an unterminated %s quote" % c
                if close in ("'", '"', "`") and j + 1 < n and text[j + 1] == close:
                    j += 2  # doubled quote inside
                    continue
                break
            i = j + 1
            continue
        two = text[i:i + 2]
        if c == ";":
            return "contains ';': give one expression, not statements"
        if two in ("--", "/*", "*/"):
            return "contains a comment (%s): remove it" % two
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return "has a ')' without its '('"
        elif engine == "postgresql" and c == "$":
            return "contains '$' outside quotes (dollar quoting or a $n parameter): use single-quoted strings"
        elif engine == "sqlite" and (c == "?" or (c in ":@$" and i + 1 < n and (text[i + 1].isalnum() or text[i + 1] == "_"))):
            return "contains a parameter placeholder (%s): write values as literals" % text[i:i + 2]
        elif engine == "postgresql" and c == "\\":
            return "contains a backslash outside quotes"
        i += 1
    if depth:
        return "has %d unclosed '('" % depth
    return None


# -- rules ------------------------------------------------------------------------

class Column(object):
    def __init__(self, name, strategy, path):
        self.name = name
        self.strategy = strategy
        self.path = path


class Rule(object):
    def __init__(self, index, table, timestamp, key, columns, where):
        self.index = index
        self.label = "rules[%d]" % index
        self.table = table
        self.timestamp = timestamp
        self.key = key
        self.columns = columns
        self.where = where


def _check_name(value, path, engine, problems, what):
    if not isinstance(value, str) or not value:
        problems.append((path, "%s: give the %s name as a non-empty string" % (path, what)))
        return None
    if "\0" in value:
        problems.append((path, "%s: the %s name contains a NUL byte" % (path, what)))
        return None
    if engine == "postgresql" and len(value.encode("utf-8")) > 63:
        problems.append((path, "%s: %s is longer than PostgreSQL's 63-byte limit for names, so no %s can be "
                               "named so" % (path, q(value), what)))
        return None
    return value


def _parse_strategy(spec, path, problems):
    if spec is None:
        spec = "null"  # YAML `email: null` or `email: ~` means the null strategy
    if isinstance(spec, str):
        spec = {"strategy": spec}
    if not isinstance(spec, dict):
        problems.append((path, "%s: give a strategy (%s) or a dict with strategy and its settings"
                               % (path, ", ".join(scrub.STRATEGIES))))
        return None
    unknown = sorted(str(k) for k in spec if k not in STRATEGY_KEYS)
    if unknown:
        problems.append((path, "%s: unknown setting(s) %s; known: %s" % (path, ", ".join(unknown), ", ".join(STRATEGY_KEYS))))
        return None
    name = spec.get("strategy")
    if name not in scrub.STRATEGIES:
        problems.append((path, "%s: unknown strategy %r; use one of %s" % (path, name, ", ".join(scrub.STRATEGIES))))
        return None
    text, unit = spec.get("text"), spec.get("unit")
    if text is not None and name != "redact":
        problems.append((path, "%s: text applies to the redact strategy only" % path))
        return None
    if unit is not None and name != "truncate_date":
        problems.append((path, "%s: unit applies to the truncate_date strategy only" % path))
        return None
    if name == "redact" and text is not None and (not isinstance(text, str) or "\0" in text):
        problems.append((path, "%s: text must be a string (the fixed text that replaces the value)" % path))
        return None
    if name == "truncate_date" and unit is not None and unit not in scrub.UNITS:
        problems.append((path, "%s: unknown unit %r; use %s" % (path, unit, ", ".join(scrub.UNITS))))
        return None
    return scrub.Strategy(name, text=text, unit=unit)


def parse_rules(rules, engine):
    """Rules as given (a list of dicts) -> list of Rule, or a LifeboatError naming every problem."""
    if not isinstance(rules, list) or not rules:
        raise LifeboatError(
            "rules is required: a list of rules, each with table, timestamp, columns (column: strategy) and "
            "optionally key and where.", option="rules")
    problems = []
    parsed = []
    seen = {}
    for i, rule in enumerate(rules):
        label = "rules[%d]" % i
        if not isinstance(rule, dict):
            problems.append((label, "%s: each rule must be a dict with table, timestamp and columns" % label))
            continue
        unknown = sorted(str(k) for k in rule if k not in RULE_KEYS)
        if unknown:
            problems.append((label, "%s: unknown key(s) %s; known: %s" % (label, ", ".join(unknown), ", ".join(RULE_KEYS))))
            continue
        table = _check_name(rule.get("table"), label + ".table", engine, problems, "table")
        ts = _check_name(rule.get("timestamp"), label + ".timestamp", engine, problems, "column")
        key = rule.get("key")
        if key is not None:
            key = _check_name(key, label + ".key", engine, problems, "column")
        where = rule.get("where")
        if where is not None:
            problem = check_where(where, engine)
            if problem:
                problems.append((label + ".where", "%s.where %s (where is trusted SQL: one boolean expression "
                                                   "over the table's columns)" % (label, problem)))
        columns = rule.get("columns")
        cols = []
        if not isinstance(columns, dict) or not columns:
            problems.append((label + ".columns", "%s.columns: give the personal-data columns as a dict "
                                                 "column: strategy (%s)" % (label, ", ".join(scrub.STRATEGIES))))
        else:
            for name, spec in columns.items():
                path = column_path(label, name) if isinstance(name, str) else "%s.columns" % label
                name = _check_name(name, path, engine, problems, "column")
                strategy = _parse_strategy(spec, path, problems)
                if name is None or strategy is None:
                    continue
                for other, what in ((ts, "timestamp"), (key, "key")):
                    if other is not None and _same(engine, name, other):
                        problems.append((path, "%s: %s is the rule's %s column; it cannot also be scrubbed "
                                               "(the run needs it to find and batch rows)" % (path, q(name), what)))
                        strategy = None
                if strategy is None:
                    continue
                if table is not None:
                    ident = (_fold(engine, table), _fold(engine, name))
                    if ident in seen and seen[ident][1].describe() != strategy.describe():
                        problems.append((path, "%s: column %s of table %s already has strategy %s in %s; two "
                                               "strategies for one column would undo each other on every run"
                                               % (path, q(name), q(table), seen[ident][1].name, seen[ident][0])))
                        continue
                    seen.setdefault(ident, (path, strategy))
                cols.append(Column(name, strategy, path))
        if table is not None and ts is not None and cols and (key is not None or rule.get("key") is None):
            parsed.append(Rule(i, table, ts, key, cols, where))
    if problems:
        raise rules_error(problems)
    return parsed


def _fold(engine, name):
    return name.lower() if engine == "sqlite" else name


def _same(engine, a, b):
    return _fold(engine, a) == _fold(engine, b)


def rules_error(problems):
    """One error for all problems found in the rules (nothing was changed)."""
    texts = [p[1] for p in problems]
    if len(texts) == 1:
        msg = "%s. Nothing was changed." % texts[0]
    else:
        msg = "%d problems in the rules; nothing was changed:\n- %s" % (len(texts), "\n- ".join(texts))
    return LifeboatError(msg, option=problems[0][0], details={"problems": texts})


def new_entry(rule, schema, check_mode):
    return {
        "rule": rule.index,
        "table": rule.table,
        "schema": schema,
        "key": rule.key,
        "timestamp": rule.timestamp,
        "rows_in_scope": 0,
        "rows_without_timestamp": 0,
        "rows_to_scrub": 0,
        "rows_scrubbed": 0,
        "rows_remaining": 0,
        "batches": 0,
        "seconds": 0.0,
        "rows_per_second": 0.0,
        "columns": {},
        "check_mode": bool(check_mode),
    }


class Tenant(object):
    """What the PostgreSQL and SQLite tenants of tenant_anonymize share: the connection's end,
    planning the rules against the catalog, and the message of a failed statement."""

    schema_name = None

    def __init__(self, req, check_mode):
        self.req = req
        self.check_mode = check_mode
        self.conn = None

    def __exit__(self, *exc):
        if self.conn is not None:
            self.conn.close()
        return False

    def _catalog(self):
        """The context the catalog is read in (PostgreSQL: one read-only transaction)."""
        return contextlib.nullcontext()

    def plan(self, rules):
        """One table plan per rule; every problem of every rule at once (``rules_error``)."""
        problems = []
        plans = []
        with self._catalog():
            for rule in rules:
                plan = self._plan_rule(rule, problems)
                if plan is not None:
                    plans.append(plan)
        if problems:
            raise rules_error(problems)
        return plans

    def _plan_rule(self, rule, problems):
        raise NotImplementedError

    @staticmethod
    def _describe(e):
        return str(e)

    def _error(self, plan, e, what):
        rule = plan.rule
        hint = " Check %s.where." % rule.label if rule.where else ""
        option = rule.label + (".where" if rule.where else ".table")
        return (option, "%s: %s of table %s failed: %s.%s" % (rule.label, what, q(plan.table), self._describe(e), hint))
