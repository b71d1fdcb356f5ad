# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet playbooks' reports: the plain-text table every summary prints, and the
rows of the dr_restore and drill reports, built from the modules' registered results.

Pure functions of their arguments (the clock can be passed in), so that unit tests
reach every branch; the playbooks call them as lifeboat.backup.report_table,
lifeboat.backup.dr_choice, lifeboat.backup.dr_rows and lifeboat.backup.drill_row; sizes are shown by
lifeboat.backup.human_size (the engine's naming.human_size), in tables and reports alike.
"""

from __future__ import annotations

import datetime
import os
import re

from ansible_collections.lifeboat.backup.plugins.module_utils.naming import human_size

_STAMP = re.compile(r"-([0-9]{8}T[0-9]{6}Z)\.")
_BUDGET = re.compile(r"^([0-9]+)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_ISO_MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"
_COMPACT = "%Y%m%dT%H%M%SZ"
_TRUNCATE_LEEWAY = 5  # as Jinja's truncate filter


# -- the table ---------------------------------------------------------------------

def report_table(rows, columns):
    """The lines of a plain-text table for tired eyes.

    ``columns``: ``[{key, title}]``; ``rows``: dicts. A column is as wide as its title
    and the text of its values (a missing value counts as empty, None as "None"); a
    cell shows an empty, zero, false or missing value as empty. Lines carry no
    trailing blanks; the second line underlines each column with dashes.
    """
    rows = [_formatted(row, columns) for row in rows or []]
    widths = []
    for col in columns:
        cells = [len(str(row.get(col["key"], ""))) for row in rows]
        widths.append(max([len(col["title"])] + cells))
    lines = ["  ".join(col["title"].ljust(w) for col, w in zip(columns, widths)).strip(),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(str(row.get(col["key"]) or "").ljust(w) for col, w in zip(columns, widths)).strip())
    return "\n".join(lines).splitlines()


# A column's ``format``: one way to show a size (decimal units, as the engine's messages) or a
# duration, in every table of every playbook.
_FORMATS = {"size": human_size, "seconds": lambda value: "%.2f" % float(value)}


def _formatted(row, columns):
    row = dict(row)
    for col in columns:
        fmt = col.get("format")
        if fmt is None:
            continue
        if fmt not in _FORMATS:
            raise ValueError("report_table: unknown column format %r (one of %s)" % (fmt, ", ".join(sorted(_FORMATS))))
        value = row.get(col["key"])
        if value is not None and value != "":
            row[col["key"]] = _FORMATS[fmt](value)
    return row


# -- helpers -----------------------------------------------------------------------

def _failed(result):
    return bool((result or {}).get("failed", False))


def _skipped(result):
    return bool((result or {}).get("skipped", False))


def _stamp(artifact):
    """The snapshot stamp in an artifact's file name (acme-20260101T030000Z.pgdump.zst.age), or ''."""
    match = _STAMP.search(artifact or "")
    return match.group(1) if match else ""


def _truncate(text, length=300, end="..."):
    if len(text) <= length + _TRUNCATE_LEEWAY:
        return text
    return text[:length - len(end)].rsplit(" ", 1)[0] + end


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _budget_seconds(text):
    match = _BUDGET.search(text)
    number, unit = match.groups() if match else ("0", "")
    return int(number) * _UNITS[unit]


# -- dr_restore ----------------------------------------------------------------------

def dr_choice(tenants, info, allow_unverified=False):
    """What dr_restore restores for each tenant: ``{name: {artifact, location, verified,
    verified_at, snapshot, server_version, pg_major, note}}`` from backup_info's result.

    The newest verified artifact; with ``allow_unverified`` the newest complete one when
    none is verified; else artifact '' and a note that says what to do.
    """
    out = {}
    for tenant in tenants:
        i = info["tenants"][tenant["name"]]
        if i.get("erased"):  # erased on purpose (tenant_erase): an ERASED row, nothing to restore
            out[tenant["name"]] = {"artifact": "", "location": "", "verified": False, "verified_at": "", "snapshot": "",
                                   "server_version": "", "pg_major": 0, "erased": True,
                                   "note": "ERASED: %s Remove it from lifeboat_tenants." % i.get("latest_verified_error")}
            continue
        lv = i.get("latest_verified")
        pick = lv if lv else (i.get("latest") if allow_unverified else None)
        if lv:
            skipped = lv.get("skipped") or []
            note = "newest verified artifact (verified %s)%s" % (
                lv["verified_at"], (", %d newer artifact(s) not verified, passed over" % len(skipped)) if skipped else "")
        elif pick:
            note = ("NOT VERIFIED: restored the newest complete artifact because dr_allow_unverified=true (%s)"
                    % i.get("latest_verified_error"))
        else:
            note = "%s%s" % (i.get("latest_verified_error"),
                             " Or re-run with -e dr_allow_unverified=true to restore the newest complete artifact, unverified."
                             if i.get("latest") else "")
        out[tenant["name"]] = {
            "artifact": pick["artifact"] if pick else "",
            "location": pick["location"] if pick else "",
            "verified": lv is not None,
            "verified_at": lv["verified_at"] if lv else "",
            "snapshot": pick["stamp"] if pick else "",
            "server_version": ((pick.get("manifest_summary") or {}).get("source_server_version") or "") if pick else "",
            "pg_major": pick["pg_major_needed"] if pick else 0,
            "note": note,
        }
    return out


def _dr_tenant_row(host, tenant, choice, restores, incident):
    c = choice[tenant["name"]]
    r = next((x for x in restores if isinstance(x.get("item"), dict) and x["item"].get("name") == tenant["name"]), {})
    artifact = os.path.basename(r.get("artifact") or c["artifact"])
    stamp = _stamp(artifact)
    ok = "changed" in r and not r.get("failed", False)
    rpo = None
    if stamp:
        rpo = int((datetime.datetime.strptime(incident, _ISO) - datetime.datetime.strptime(stamp, _COMPACT)).total_seconds())
    if ok:
        shared = (r.get("shared_part") or {}).get("artifact")
        message = c["note"] + ("; the shared part %s restored first" % os.path.basename(shared) if shared else "")
    else:
        message = r.get("msg") or c["note"] or "not restored"
    return {"host": host, "what": "tenant", "tenant": tenant["name"], "artifact": artifact, "snapshot": stamp,
            "verified_at": c["verified_at"] if c["artifact"] == artifact else "",
            "server_version": c["server_version"] if c["artifact"] == artifact else "",
            "rpo_seconds": rpo, "rows": r.get("rows"),
            "status": "OK" if ok else ("ERASED" if c.get("erased") else "FAILED"), "message": message}


def _dr_globals_row(host, result):
    done = result.get("globals")
    done = done if isinstance(done, dict) else None
    failed = _failed(result)
    if failed:
        message = result.get("msg", "")
    else:
        message = "roles created: " + ", ".join((done or {}).get("roles_created") or [])
    return {"host": host, "what": "globals", "tenant": "(roles and grants)",
            "artifact": os.path.basename(done.get("artifact", "")) if done is not None else "",
            "status": "FAILED" if failed else "OK", "message": message}


def _dr_bundle_row(host, result, info, repository):
    name = result["item"]["name"]
    if _skipped(result):
        return {"host": host, "what": "bundle", "tenant": name, "artifact": "", "status": "FAILED",
                "message": "no complete bundle artifact %s in %s" % (name, repository)}
    i = info["tenants"][name]
    verified = i.get("latest_verified")
    art = verified or i.get("latest")
    failed = _failed(result)
    return {"host": host, "what": "bundle", "tenant": name, "artifact": art["artifact"],
            "verified_at": art["verified_at"] if verified else "",
            "status": "FAILED" if failed else "OK",
            "message": result.get("msg", "") if failed
            else "to %s%s" % (result["item"]["path"], "" if verified else " (NOT VERIFIED: no verified bundle artifact)")}


def _dr_step_rows(host, kind, registered):
    rows = []
    for r in (registered or {}).get("results") or []:
        if _skipped(r):
            continue
        failed = _failed(r)
        rows.append({"host": host, "what": kind, "tenant": r.get("item"), "artifact": "",
                     "status": "FAILED" if failed else "OK",
                     "message": _truncate(r.get("stderr") or r.get("msg", "")) if failed else ""})
    return rows


def dr_rows(tenants, host, choice, restores, globals_result, bundles, info, steps, incident, repository):
    """One host's rows of the dr_restore report.

    ``tenants``: the host's tenants; ``choice``: dr_choice's result; ``restores``,
    ``globals_result``, ``bundles``: what the restore tasks registered; ``steps``:
    ``[[kind, registered], ...]`` for the migrations, health checks and timers (each
    item a row); ``incident``: the incident time (2026-01-01T02:40:00Z), from which each
    tenant's data-loss window (rpo_seconds) is counted back to its snapshot.
    """
    results = (restores or {}).get("results") or []
    rows = [_dr_tenant_row(host, t, choice, results, incident) for t in tenants]
    if not _skipped(globals_result):
        rows.append(_dr_globals_row(host, globals_result or {}))
    rows.extend(_dr_bundle_row(host, r, info, repository) for r in (bundles or {}).get("results") or [])
    for kind, registered in steps:
        rows.extend(_dr_step_rows(host, kind, registered))
    return rows


# -- drill -------------------------------------------------------------------------

def _moment(text):
    """A UTC time as the drill writes it (with a fraction: batch rows have milliseconds) or without one."""
    for fmt in (_ISO_MICRO, _ISO):
        try:
            return datetime.datetime.strptime(str(text or ""), fmt)
        except ValueError:
            continue
    return None


def drill_row(tenant, verify, started=None, host=None, rto="4h", rpo="24h", now=None):
    """One tenant's row of the restore drill, measured against its budgets.

    ``tenant``: the tenant (its own ``rto`` and ``rpo`` win over the drill's defaults);
    ``verify``: the tenant's row of backup_verify's ``rows`` (with ``tenants``), which holds
    ``started`` and ``finished``, the start and end of the tenant's verification; or what a
    single backup_verify call registered, with ``started``, when the tenant's drill began
    (2026-01-01T02:40:00.123456Z). RTO runs from the start to the end (``finished``, else
    ``now``, else the clock), RPO from the restored artifact's snapshot to the start.
    Budgets are seconds or a number with s, m, h, d or w.
    """
    verify = verify or {}
    if started is None:
        started, now = verify.get("started"), _moment(verify.get("finished")) or now
    t0 = _moment(started)
    if t0 is None:
        raise ValueError("drill_row: started must be a UTC time such as 2026-01-01T02:40:00.123Z, or the "
                         "verification's row must hold started (got %r)" % (started,))
    now = now if now is not None else _utcnow()
    rto_text = str(tenant.get("rto", rto))
    rpo_text = str(tenant.get("rpo", rpo))
    rto_budget = _budget_seconds(rto_text)
    rpo_budget = _budget_seconds(rpo_text)
    rto_seconds = round((now - t0).total_seconds(), 1)
    report = (verify.get("tenants") or [None])[0] or {}
    artifact = os.path.basename(report.get("artifact") or "")
    stamp = _stamp(artifact)
    rpo_seconds = int(round((t0 - datetime.datetime.strptime(stamp, _COMPACT)).total_seconds(), 0)) if stamp else None
    status = report.get("status", "FAIL")
    problems = []
    if not (status == "PASS" and not _failed(verify)):
        why = verify.get("msg", "") if _failed(verify) else ",".join(report.get("failed_checks") or [])
        problems.append("verify FAILED: " + why)
    if rto_budget <= 0 or rpo_budget <= 0:
        problems.append("budgets are malformed (use seconds or a number with s, m, h, d or w)")
    if rto_seconds > rto_budget:
        problems.append("RTO %s s over its budget %s" % (rto_seconds, rto_text))
    if rpo_seconds is not None and rpo_seconds > rpo_budget:
        problems.append("RPO %s s over its budget %s" % (rpo_seconds, rpo_text))
    return {"host": host, "tenant": tenant["name"], "artifact": artifact, "snapshot": stamp, "started": started,
            "rto_seconds": float(rto_seconds), "rto_budget": rto_text, "rto_budget_seconds": rto_budget,
            "rpo_seconds": rpo_seconds, "rpo_budget": rpo_text, "rpo_budget_seconds": rpo_budget,
            "verify": status, "status": "PASS" if not problems else "FAIL", "problems": problems,
            # for the HTML report (report_html): the verification's checks and the verify records it wrote
            "checks": [{"name": c.get("name"), "status": c.get("status"), "seconds": c.get("seconds")}
                       for c in report.get("checks") or [] if isinstance(c, dict)],
            "records": list(verify.get("records") or [])}


class FilterModule(object):
    """lifeboat.backup's report filters."""

    def filters(self):
        return {
            "report_table": report_table,
            "human_size": human_size,
            "dr_choice": dr_choice,
            "dr_rows": dr_rows,
            "drill_row": drill_row,
        }
