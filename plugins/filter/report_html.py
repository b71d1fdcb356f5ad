# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML page of the drill and dr_restore reports, and what dr_restore records for it.

lifeboat.backup.report_html renders the JSON report dict of drill.yml or dr_restore.yml
as one self-contained page (the engine's report_html.render); lifeboat.backup.dr_timeline
turns the times dr_restore.yml notes at the end of each phase, and what each phase's
tasks registered, into the host's ``timeline`` entry of that report;
lifeboat.backup.duration_seconds reads a budget (3600, 90s, 30m, 4h, 2d, 1w).
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.lifeboat.backup.plugins.module_utils.errors import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils.naming import parse_duration
from ansible_collections.lifeboat.backup.plugins.module_utils.report_html import render

_ISO_MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_DELTA = re.compile(r"^(\d+):(\d\d):(\d\d(?:\.\d+)?)$")


def report_html(report):
    """The HTML page (a str) of a drill or dr_restore JSON report (a dict)."""
    return render(report)


def duration_seconds(value):
    """A budget in seconds: 3600, '90s', '30m', '4h', '2d', '1w'; 0 when it is malformed (a report shows it as such)."""
    try:
        return parse_duration(value, "budget") or 0
    except LifeboatError:
        return 0


def _moment(text):
    for fmt in (_ISO_MICRO, _ISO):
        try:
            return datetime.datetime.strptime(str(text), fmt)
        except ValueError:
            continue
    return None


def _seconds(result):
    """A task result's duration: the lifeboat modules' ``seconds``, a command's ``delta`` (0:00:01.25)."""
    if isinstance(result.get("seconds"), (int, float)):
        return float(result["seconds"])
    match = _DELTA.match(str(result.get("delta") or ""))
    if match:
        return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))
    return None


def _status(result):
    if result.get("skipped"):
        return "SKIPPED"
    return "FAILED" if result.get("failed") else "OK"


def _items(kind, registered):
    """A task's items: one per item of its loop (skipped ones left out), or the task itself."""
    if not isinstance(registered, dict) or registered.get("skipped"):
        return []
    if registered.get("results") is None:
        return [{"kind": kind, "name": kind, "seconds": _seconds(registered), "status": _status(registered)}]
    out = []
    for r in registered["results"]:
        if not isinstance(r, dict) or r.get("skipped"):
            continue
        item = r.get("item")
        name = item.get("name", "") if isinstance(item, dict) else ("" if item is None else str(item))
        out.append({"kind": kind, "name": name, "seconds": _seconds(r), "status": _status(r)})
    return out


def _phase(name, started, finished, parts):
    """A phase from when it started and ended and what its tasks registered (``[[kind, registered], ...]``)."""
    items = [i for kind, registered in parts or [] for i in _items(kind, registered)]
    if any(i["status"] == "FAILED" for i in items):
        status = "FAILED"
    elif parts and not items:
        status = "SKIPPED"
    else:
        status = "OK"
    seconds = (finished - started).total_seconds() if started and finished else None
    return {"name": name, "started": started.strftime(_ISO_MICRO) if started else "",
            "finished": finished.strftime(_ISO_MICRO) if finished else "",
            "seconds": round(seconds, 3) if seconds is not None else None, "status": status, "items": items}


def dr_timeline(marks, host, started, results, tenants, info, rpo="24h"):
    """One rebuilt host's ``timeline`` entry of the dr_restore report.

    ``marks``: ``[[phase, when], ...]`` noted at the end of each phase, in order (when:
    2026-01-01T03:10:00.123456Z); ``started``: when the rebuild began (the first phase starts
    there, each next one where the previous ended); ``results``: ``{phase: [[kind, registered],
    ...]}``, what the phase's tasks registered: each item of a loop (or the task itself) is an
    item of the phase, with its kind, its seconds when the task says them, and its status;
    ``tenants``: the host's tenants (a tenant's own ``rpo`` wins over ``rpo``); ``info``:
    backup_info's result, for the verify record of each tenant's newest verified artifact.
    """
    results = results or {}
    phases = []
    begin = _moment(started)
    for name, when in marks or []:
        end = _moment(when)
        phases.append(_phase(name, begin, end, results.get(name)))
        begin = end
    known = (info or {}).get("tenants") or {}
    out = []
    for tenant in tenants or []:
        verified = (known.get(tenant["name"]) or {}).get("latest_verified") or {}
        budget = str(tenant.get("rpo", rpo))
        out.append({"tenant": tenant["name"], "rpo_budget": budget, "rpo_budget_seconds": duration_seconds(budget),
                    "verify_record": verified.get("verify_record") or "", "verify_status": verified.get("verify_status") or "",
                    "verified_at": verified.get("verified_at") or ""})
    return {"host": host, "started": started, "phases": phases, "tenants": out}


class FilterModule(object):
    """lifeboat.backup's HTML report filters."""

    def filters(self):
        return {
            "report_html": report_html,
            "dr_timeline": dr_timeline,
            "duration_seconds": duration_seconds,
        }
