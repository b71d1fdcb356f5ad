# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A verification's checks: their statuses, one check timed, the user's queries run as checks,
row counts compared, one tenant's report."""

import time

from .. import postgres
from ..errors import LifeboatError
from ..restore_common import compare_counts


PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"


class Check(object):
    def __init__(self, name):
        self.name = name
        self.status = None
        self.detail = ""
        self.t0 = time.monotonic()
        self.seconds = 0.0

    def done(self, status, detail=""):
        self.status = status
        self.detail = detail
        self.seconds = round(time.monotonic() - self.t0, 3)
        return self

    def as_dict(self):
        return {"name": self.name, "status": self.status, "seconds": self.seconds, "detail": self.detail}


def skip(name, why):
    return Check(name).done(SKIP, why)


def validate_queries(queries):
    out = []
    for i, q in enumerate(queries or []):
        where = "queries[%d]" % i
        if isinstance(q, str):
            q = {"query": q, "min": 1}
        if not isinstance(q, dict) or not isinstance(q.get("query"), str) or not q["query"].strip():
            raise LifeboatError("%s must be a dict with a query (SQL returning one number) and min, max or equals."
                                % where, option="queries")
        unknown = sorted(set(q) - {"query", "min", "max", "equals", "name"})
        if unknown:
            raise LifeboatError("%s has unknown key(s) %s: use query, min, max, equals, name." % (where, ", ".join(unknown)),
                                option="queries")
        if ";" in q["query"].strip().rstrip(";"):
            raise LifeboatError("%s must be a single SQL statement." % where, option="queries")
        for k in ("min", "max", "equals"):
            if k in q and (not isinstance(q[k], (int, float)) or isinstance(q[k], bool)):
                raise LifeboatError("%s.%s must be a number." % (where, k), option="queries")
        if not any(k in q for k in ("min", "max", "equals")):
            raise LifeboatError("%s needs an expectation: min, max or equals." % where, option="queries")
        out.append(q)
    return out


def _expect(q, value):
    problems = []
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "returned %r, not a number" % (value,)
    if "min" in q and value < q["min"]:
        problems.append("%s < min %s" % (value, q["min"]))
    if "max" in q and value > q["max"]:
        problems.append("%s > max %s" % (value, q["max"]))
    if "equals" in q and value != q["equals"]:
        problems.append("%s != %s" % (value, q["equals"]))
    return "; ".join(problems) or None


def run_queries(ctx, execute):
    """One check per query; ``execute(sql)`` returns the single value."""
    checks = []
    for i, q in enumerate(ctx.queries):
        c = Check("query %s" % q.get("name", i))
        try:
            value = execute(q["query"])
        except Exception as e:  # a broken query is a FAIL of that check, not a crash
            checks.append(c.done(FAIL, "the query failed: %s" % postgres.first_line(str(e))))
            continue
        problem = _expect(q, value)
        checks.append(c.done(FAIL if problem else PASS, problem or "returned %s" % value))
    return checks


def counts_check(expected, actual):
    c = Check("row_counts")
    problems = compare_counts(expected, actual)
    if problems:
        return c.done(FAIL, "; ".join(problems[:5]) + (" (and %d more)" % (len(problems) - 5) if len(problems) > 5 else ""))
    return c.done(PASS, "%d tables, %d rows, as in the manifest" % (len(actual), sum(actual.values())))


def tenant_report(tenant, artifact, checks):
    statuses = [c.status for c in checks]
    status = FAIL if FAIL in statuses else PASS
    return {"tenant": tenant, "artifact": artifact, "status": status,
            "warnings": [c.name for c in checks if c.status == WARN],
            "failed_checks": [c.name for c in checks if c.status == FAIL],
            "checks": [c.as_dict() for c in checks]}
