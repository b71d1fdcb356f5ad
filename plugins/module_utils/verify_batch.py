# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify with ``tenants``: many tenants verified in one call, ``parallel`` at a time.

Each entry is one single-tenant verification (``verify.run`` with ``tenant`` and the entry's own
keys over the shared options) in its own worker process (batch.py): its scratch database is named
by a hash of the tenant, the artifact's stamp and a random token (never shared with another
worker), and it has its own janitor, which drops it if that worker is killed. The verify record is
written per tenant, as by the single call. A FAIL verdict is that tenant's row (``status: FAIL``,
and ``failed`` too unless ``fail_on_error`` is false); an error (no such artifact, an identity that
cannot be read) is ``failed`` with ``msg``; the other tenants go on either way.
"""

import functools

from . import batch, naming, selection
from .errors import LifeboatError
from .files import atomic_write_json

# What an entry of ``tenants`` may hold besides ``tenant``: the single call's per-tenant options.
# No ``identity``: an entry is not no_log, so a secret in it would be logged; its file (identity_file), or the
# call's identity (no_log: every tenant's identities, each artifact opened by the one that matches) or identity_dir.
ENTRY_KEYS = ("artifact", "identity_file", "max_age", "queries", "size_anomaly_ratio", "record")
# Options of the single call that the list replaces.
REPLACED = ("tenant", "legacy_glob")


def jobs(params, context, now=None):
    """[(tenant, single-call params)] for ``params["tenants"]``, each checked before anything runs.

    ``context(params, now)`` is the single call's option check (verify.Context); an error it finds in
    an entry names that entry (``tenants[2].max_age``).
    """
    for option in REPLACED:
        if params.get(option):
            raise LifeboatError("tenants and %s are mutually exclusive: tenants lists the tenants to verify (each "
                                "with its own options), %s is the single call's. Nothing was done; give one of them."
                                % (option, option), option=option)
    batch.parallel_of(params)
    items = batch.entries(params, ENTRY_KEYS)
    if not items:
        raise LifeboatError("tenants is empty: nothing to verify. Nothing was done; list the tenants to verify, or "
                            "leave tenants out to verify every tenant of the repository.", option="tenants")
    shared = batch.common(params, drop=("report",) + REPLACED)
    out = []
    for i, item in enumerate(items):
        single = dict(shared, **item)
        try:
            _artifact_of_tenant(single)
            context(single, now)
        except LifeboatError as e:
            raise batch.entry_error(e, i, item, own=e.option in item or e.option in (None, "tenant"))
        out.append((item["tenant"], single))
    return out


def _artifact_of_tenant(single):
    """An entry that names an artifact (a file name or a path) names one of its own tenant."""
    spec = single.get("artifact") or "latest"
    if spec in selection.SELECTORS:
        return
    info = naming.parse_artifact_name(spec.rsplit("/", 1)[-1])
    if not info or info["tenant"] != single["tenant"]:
        raise LifeboatError("artifact %s is not an artifact of tenant %s (an artifact's file name starts with its "
                            "tenant's name)." % (spec, single["tenant"]), option="artifact")


def run(single_run, context, params, check_mode=False, now=None):
    """Verify each entry of ``params["tenants"]`` with ``single_run``; the result has one row per tenant."""
    work = jobs(params, context, now)
    rows = batch.run(functools.partial(single_run, now=now), work, batch.parallel_of(params), check_mode=check_mode)
    fail_on_error = params.get("fail_on_error", True) is not False
    for row in rows:
        if row.get("status") == "FAIL" and fail_on_error:
            row["failed"] = True
    reports = [t for r in rows for t in r.get("tenants") or []]
    bad = [r for r in rows if r.get("failed") or r.get("status") == "FAIL"]
    result = {
        "changed": any(r.get("changed") for r in rows),
        "status": "FAIL" if bad else "PASS",
        "rows": rows,
        "tenants": reports,
        "records": [rec for r in rows for rec in r.get("records") or []],
        "msg": summary(rows, check_mode),
    }
    if params.get("report"):
        atomic_write_json(params["report"], result)
        result["report_path"] = params["report"]
    return result


def _reason(row):
    if "tenants" not in row:  # the verification stopped with an error: its message
        return row.get("msg") or "failed (no message)"
    fails = [c for t in row["tenants"] for c in t.get("checks") or [] if c.get("status") == "FAIL"]
    return "FAIL (%s)" % "; ".join("%s: %s" % (c["name"], c.get("detail", "")) for c in fails)


def summary(rows, check_mode=False):
    """The module's ``msg``: how many tenants FAILED, the first few with their reason, and what to do."""
    bad = [r for r in rows if r.get("failed") or r.get("status") == "FAIL"]
    counts = {}
    for r in rows:
        if r not in bad:
            counts[r.get("status") or "PASS"] = counts.get(r.get("status") or "PASS", 0) + 1
    verdicts = ", ".join("%d %s" % (n, status) for status, n in sorted(counts.items(), key=lambda c: (c[0] != "PASS", c[0])))
    note = " (check mode: no record written)" if check_mode else ""
    if not bad:
        warned = [r["tenant"] for r in rows if any(t.get("warnings") for t in r.get("tenants") or [])]
        return "All %d tenant(s) verified: %s%s%s." % (
            len(rows), verdicts, "; with WARN: " + ", ".join(warned) if warned else "", note)
    return ("%d of %d tenant(s) FAILED verification: %s. The others: %s%s; each row of the result says what "
            "happened. Do not count on a failed artifact: fix the cause, take a new backup (pg_backup) and verify it."
            % (len(bad), len(rows), batch.first_few(bad, _reason), verdicts or "none", note))
