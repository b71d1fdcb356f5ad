# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's backup of schema tenants: one pass per database (backup_pass), one outcome per tenant.

The schema tenants of one database (on one connection) are backed up by one job that runs
``backup_pass.run`` (one snapshot, a few ``pg_dump`` runs, the shared part first); its result
is turned back into one outcome per tenant, and one for ``_shared_<database>``, so that the
journal, the state, the metrics and the exit code stay per tenant as for any other backup.
"""

import json

from . import naming
from .agent_runner import Outcome


def split_schema_tenants(names, params_of):
    """(names backed up alone, passes): a pass is {database, connection, members, label} per database."""
    alone, passes = [], {}
    for name in names:
        params = params_of(name)
        if params.get("engine") == "postgresql" and params.get("schema"):
            connection = dict((k, v) for k, v in params.items()
                              if k.startswith("login_") or k == "pg_bin_dir")
            key = (params.get("database"), json.dumps(connection, sort_keys=True))
            entry = passes.setdefault(key, {"database": params.get("database"), "connection": connection,
                                            "members": []})
            entry["members"].append({"tenant": name, "schema": params["schema"]})
        else:
            alone.append(name)
    out = []
    for entry in passes.values():
        entry["label"] = "%s (%d schema tenant%s)" % (entry["database"], len(entry["members"]),
                                                      "" if len(entry["members"]) == 1 else "s")
        out.append(entry)
    return alone, out


def glob_literal(name):
    """``name`` as a shell-style pattern that matches only itself (for shared_exclude)."""
    return "".join("[%s]" % c if c in "*?[" else c for c in name)


def summarize_pass(result):
    """Small, secret-free: one entry per artifact of the pass (each tenant's, the shared part's)."""
    tenants = []
    for a in result.get("artifacts") or []:
        status = {"written": "ok", "skip": "skipped", "would write": "ok"}.get(a.get("action"), "failed")
        tenants.append({"tenant": a.get("tenant"), "status": status, "artifact": a.get("artifact"),
                        "size_stored": a.get("size_stored"), "size_raw": a.get("size_raw"), "rows": a.get("rows"),
                        "bytes": a.get("size_raw") or 0, "reason": a.get("reason"), "error": a.get("error"),
                        "skipped": status == "skipped", "warnings": "; ".join(a.get("warnings") or []) or None,
                        "warning_count": len(a.get("warnings") or [])})
    return {"pass_tenants": tenants, "pg_dump_runs": result.get("pg_dump_runs"), "seconds": result.get("seconds"),
            "skipped": bool(result.get("skipped"))}


def expand(outcomes, passes):
    """Replace each pass's outcome by one outcome per tenant it covered (and its shared part)."""
    by_label = dict((p["label"], p) for p in passes)
    out = []
    for o in outcomes:
        entry = by_label.get(o.label)
        if entry is None:
            out.append(o)
            continue
        reported = dict((t["tenant"], t) for t in (o.info or {}).get("pass_tenants") or [])
        names = [m["tenant"] for m in entry["members"]]
        shared = naming.shared_tenant(entry["database"])
        if shared in reported:
            names.insert(0, shared)
        for name in names:
            t = reported.get(name)
            one = Outcome(name)
            one.started, one.finished = o.started, o.finished
            if t is None:  # the pass itself failed (a connection refused, a bad option): every tenant did
                one.status = "failed" if not o.ok else "skipped"
                one.error = o.error or "not reached by the backup pass of database %s" % entry["database"]
                one.option = o.option
            else:
                one.status = t["status"]
                one.error = t.get("error")
                one.info = dict((k, v) for k, v in t.items() if k not in ("tenant", "status", "error") and v is not None)
                one.bytes = t.get("bytes") or 0
            out.append(one)
    return out
