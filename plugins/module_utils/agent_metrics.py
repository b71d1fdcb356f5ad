# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's memory between runs (a state file) and its Prometheus metrics.

The state file (``<state_dir>/state.json``) keeps, per operation and tenant,
the last run, the last success and its figures, so that a failed run does not
erase when the tenant last succeeded. Metrics are rendered from it in the
node_exporter textfile format, one file per operation
(``<metrics_dir>/lifeboat_<operation>.prom``), written to a temporary file
and renamed into place so that node_exporter never reads half a file.
"""

import json
import os
import re
import time

from . import naming
from .errors import LifeboatError
from .files import write_atomic

STATE_NAME = "state.json"
STATE_VERSION = 1


def atomic_write(path, data, mode=0o644):
    """Write ``data`` (bytes) to ``path`` with ``mode`` through files.write_atomic (temporary file, fsync, rename)."""
    write_atomic(path, data, mode)


class State(object):
    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, STATE_NAME)
        self.data = {"version": STATE_VERSION, "operations": {}}

    def load(self):
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict) and isinstance(data.get("operations"), dict):
                self.data = data
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            # A damaged state file costs only the "last success" history: start over.
            pass
        return self

    def tenants(self, operation):
        return self.data["operations"].setdefault(operation, {})

    def record(self, operation, label, ok, when, seconds, figures=None, error=None, skipped=False):
        entry = self.tenants(operation).setdefault(label, {})
        entry["last_run"] = when
        entry["last_status"] = "skipped" if skipped else ("ok" if ok else "failed")
        entry["duration_seconds"] = round(seconds, 3)
        entry["error"] = error
        if ok:
            entry["last_success"] = when
            for key, value in (figures or {}).items():
                entry[key] = value
        return entry

    def save(self):
        directory = os.path.dirname(self.path)
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700, exist_ok=True)
            atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode("utf-8") + b"\n", 0o600)
        except OSError as e:
            raise LifeboatError("Cannot write the agent's state file %s: %s. Check state_dir in lifeboat.yml."
                                % (self.path, e.strerror), option="state_dir")


def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


# metric suffix, help, type, entry key (or a function of the entry)
_PER_TENANT = (
    ("last_run_timestamp_seconds", "When the last %s of the tenant finished (Unix time).", "gauge", "last_run"),
    ("last_success_timestamp_seconds", "When the last successful %s of the tenant finished (Unix time).",
     "gauge", "last_success"),
    ("duration_seconds", "How long the last %s of the tenant took.", "gauge", "duration_seconds"),
    ("status", "1 when the last %s of the tenant succeeded (or had nothing to do), 0 when it failed.", "gauge",
     lambda e: 1 if e.get("last_status") in ("ok", "skipped") else 0),
)
_FIGURES = {
    "backup": (("size_bytes", "Stored size of the newest artifact written by a successful backup (bytes).",
                "size_stored"),
               ("raw_size_bytes", "Size before compression and encryption of that artifact (bytes).", "size_raw"),
               ("warnings", "Warnings of the tenant's last backup that succeeded or had nothing to do: S3 housekeeping "
                "that failed, a guarantee the store lacks (the journal's warnings= says which); 0 when none.",
                "warning_count")),
    "verify": (("artifact_timestamp_seconds", "Snapshot time of the artifact that the last successful verification "
                "of the tenant passed (Unix time).", "artifact_time"),),
    "anonymize": (("rows_scrubbed", "Rows scrubbed by the last successful anonymize run.", "rows_scrubbed"),
                  ("cutoff_timestamp_seconds", "Rows older than this had no personal data left after the last "
                   "successful anonymize run of the tenant (Unix time).", "cutoff_time"),
                  ("pii_budget_seconds", "How old personal data may get before anonymize scrubs it (older_than_days, "
                   "PII_DAYS), as of the last successful run.", "pii_budget")),
    "prune": (("artifacts_deleted", "Artifacts deleted by the last successful prune run.", "deleted"),),
}

# Figures of a whole run (``run_info``): suffix, help, key.
_RUN_FIGURES = {
    "verify": (("budget_seconds", "How old the newest verified artifact of a tenant may get (verify.budget in "
                "lifeboat.yml).", "budget"),),
}


def artifact_time(name):
    """The snapshot time (Unix seconds) in an artifact's name or path (verify reports a path), or None."""
    parsed = naming.parse_artifact_name(os.path.basename(name or ""))
    return naming.parse_stamp(parsed["stamp"]).timestamp() if parsed else None


def render(operation, entries, run_info):
    """The textfile for ``operation``: ``entries`` is {tenant: state entry}."""
    if not re.match(r"^[a-z_]+$", operation):
        raise ValueError("operation")
    lines = []
    prefix = "lifeboat_%s_" % operation
    for suffix, helptext, kind, key in _PER_TENANT:
        name = prefix + suffix
        lines.append("# HELP %s %s" % (name, helptext % operation))
        lines.append("# TYPE %s %s" % (name, kind))
        for tenant in sorted(entries):
            entry = entries[tenant]
            value = key(entry) if callable(key) else entry.get(key)
            if value is None:
                continue
            lines.append('%s{tenant="%s"} %s' % (name, _label(tenant), _number(value)))
    for suffix, helptext, key in _FIGURES.get(operation, ()):
        name = prefix + suffix
        lines.append("# HELP %s %s" % (name, helptext))
        lines.append("# TYPE %s gauge" % name)
        for tenant in sorted(entries):
            value = entries[tenant].get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append('%s{tenant="%s"} %s' % (name, _label(tenant), _number(value)))
    for suffix, helptext, key in _RUN_FIGURES.get(operation, ()):
        if run_info.get(key) is not None:
            lines += ["# HELP %s%s %s" % (prefix, suffix, helptext), "# TYPE %s%s gauge" % (prefix, suffix),
                      "%s%s %s" % (prefix, suffix, _number(run_info[key]))]
    name = prefix + "run_timestamp_seconds"
    lines.append("# HELP %s When the agent's last %s run finished (Unix time)." % (name, operation))
    lines.append("# TYPE %s gauge" % name)
    lines.append("%s %s" % (name, _number(run_info["finished"])))
    name = prefix + "tenants"
    lines.append("# HELP %s Tenants of the agent's last %s run, by result." % (name, operation))
    lines.append("# TYPE %s gauge" % name)
    for status in ("ok", "skipped", "failed"):
        lines.append('%s{status="%s"} %d' % (name, status, run_info.get(status, 0)))
    return "\n".join(lines) + "\n"


def _write_textfile(metrics_dir, stem, text):
    path = os.path.join(metrics_dir, "lifeboat_%s.prom" % stem)
    try:
        atomic_write(path, text.encode("utf-8"), 0o644)
    except OSError as e:
        raise LifeboatError("Cannot write the metrics file %s: %s. Make metrics_dir in lifeboat.yml writable by "
                            "the agent's user (or set it to null to write no metrics)." % (path, e.strerror),
                            option="metrics_dir")
    return path


def write(metrics_dir, operation, entries, run_info):
    """Write ``lifeboat_<operation>.prom`` atomically; returns its path."""
    return _write_textfile(metrics_dir, operation, render(operation, entries, run_info))


PROTECTION = "protection"


def render_protection(entries, run_info):
    """``lifeboat_protection.prom``: which tenants, databases and schemas are unprotected, and why.

    ``entries`` are discovery.protection's: every tenant (listed or discovered) and every object of
    the server that no listing or rule covers, each with ``unprotected`` and ``reason``.
    ``run_info``: ``finished``, ``operation``, and ``discovery`` (None when no discover rules are
    configured, else {"ok", "discovered"}).
    """
    lines = []
    name = "lifeboat_tenant_unprotected"
    lines.append("# HELP %s 1 when the tenant (or a database or schema of the server) has no complete artifact "
                 "within its RPO or is not backed up at all (reason: no-artifact, late, not-covered, invalid-name, "
                 "conflict), 0 when it is protected." % name)
    lines.append("# TYPE %s gauge" % name)
    seen = set()
    for e in sorted(entries, key=lambda x: (x.get("tenant") or "", x.get("database") or "", x.get("schema") or "")):
        labels = (("tenant", e.get("tenant") or ""), ("found", e.get("found") or ""),
                  ("database", e.get("database") or ""), ("schema", e.get("schema") or ""),
                  ("reason", e.get("reason") or ""))
        key = labels[0][1], labels[2][1], labels[3][1]
        if key in seen:
            continue
        seen.add(key)
        text = ",".join('%s="%s"' % (k, _label(v)) for k, v in labels)
        lines.append("%s{%s} %d" % (name, text, 1 if e.get("unprotected") else 0))
    count = len([e for e in entries if e.get("unprotected")])
    name = "lifeboat_unprotected_tenants"
    lines.append("# HELP %s Tenants, databases and schemas that are unprotected (see lifeboat_tenant_unprotected)."
                 % name)
    lines.append("# TYPE %s gauge" % name)
    lines.append("%s %d" % (name, count))
    erased = sorted(set(e["tenant"] for e in entries if e.get("erased") and e.get("tenant")))
    if erased:  # tenant_erase erased them on purpose: reason="erased" above, and no newest artifact, so no RPO alert
        name = "lifeboat_tenant_erased"
        lines += ["# HELP %s 1 for a tenant erased on purpose (tenant_erase wrote its erasure record): it has no "
                  "backups by design; remove it from TENANTS." % name, "# TYPE %s gauge" % name]
        lines += ['%s{tenant="%s"} 1' % (name, _label(t)) for t in erased]
    for suffix, helptext, key in (
            ("rpo_seconds", "The tenant's RPO: how old its newest complete artifact may get (rpo in lifeboat.yml, or "
             "its discover rule's).", "rpo_seconds"),
            ("newest_artifact_timestamp_seconds", "Snapshot time of the tenant's newest complete artifact (Unix time); "
             "no sample when it has none.", "newest_time")):
        name = "lifeboat_tenant_" + suffix
        lines += ["# HELP %s %s" % (name, helptext), "# TYPE %s gauge" % name]
        done = set()
        for e in sorted(entries, key=lambda x: x.get("tenant") or ""):
            if e.get(key) is not None and e.get("tenant") not in done:
                done.add(e.get("tenant"))
                lines.append('%s{tenant="%s"} %s' % (name, _label(e["tenant"]), _number(e[key])))
    disc = run_info.get("discovery")
    if disc is not None:
        name = "lifeboat_discovery_status"
        lines.append("# HELP %s 1 when the last discovery of tenants (discover rules) succeeded, 0 when it failed "
                     "(see the agent's journal: event=discovery)." % name)
        lines.append("# TYPE %s gauge" % name)
        lines.append("%s %d" % (name, 1 if disc.get("ok") else 0))
        name = "lifeboat_discovered_tenants"
        lines.append("# HELP %s Tenants found by the discover rules in the last discovery." % name)
        lines.append("# TYPE %s gauge" % name)
        lines.append("%s %d" % (name, disc.get("discovered") or 0))
    name = "lifeboat_protection_timestamp_seconds"
    lines.append("# HELP %s When the agent last checked which tenants are protected (Unix time)." % name)
    lines.append("# TYPE %s gauge" % name)
    lines.append('%s{op="%s"} %s' % (name, _label(run_info.get("operation") or ""), _number(run_info["finished"])))
    return "\n".join(lines) + "\n"


def write_protection(metrics_dir, entries, run_info):
    """Write ``lifeboat_protection.prom`` atomically; returns its path."""
    return _write_textfile(metrics_dir, PROTECTION, render_protection(entries, run_info))


REFUSALS = ("locked", "config-error")


def render_start(operation, refused, when, holder_since=None):
    """``lifeboat_agent_<operation>.prom``: whether the agent's last ``operation`` could start.

    ``refused``: None (it ran), "locked" (another run held the host lock) or "config-error" (the
    configuration stopped it before any tenant ran). ``holder_since``: when the lock's holder took it.
    """
    if not re.match(r"^[a-z_]+$", operation):
        raise ValueError("operation")
    op = _label(operation)
    name = "lifeboat_agent_refused"
    lines = ["# HELP %s 1 when the agent's last run of the operation did nothing (reason: locked, another run held "
             "the host lock; config-error, the configuration stopped it), 0 when it started." % name,
             "# TYPE %s gauge" % name]
    lines += ['%s{op="%s",reason="%s"} %d' % (name, op, r, 1 if r == refused else 0) for r in REFUSALS]
    name = "lifeboat_agent_start_timestamp_seconds"
    lines += ["# HELP %s When the agent last tried to run the operation (Unix time)." % name,
              "# TYPE %s gauge" % name, '%s{op="%s"} %s' % (name, op, _number(when))]
    if refused == "locked" and holder_since is not None:
        name = "lifeboat_agent_lock_holder_since_timestamp_seconds"
        lines += ["# HELP %s Since when the run that held the host lock had held it (Unix time)." % name,
                  "# TYPE %s gauge" % name, '%s{op="%s"} %s' % (name, op, _number(holder_since))]
    return "\n".join(lines) + "\n"


def write_start(metrics_dir, operation, refused, when, holder_since=None):
    """Write ``lifeboat_agent_<operation>.prom`` atomically; returns its path."""
    return _write_textfile(metrics_dir, "agent_" + operation, render_start(operation, refused, when, holder_since))


# lifeboat_drill_<suffix>{host,tenant}: a drill row's key, or a function of the row.
_DRILL = (
    ("rto_seconds", "Time from the start of the tenant's last restore drill to verified data.", "rto_seconds"),
    ("rto_budget_seconds", "The tenant's RTO budget in its last drill.", "rto_budget_seconds"),
    ("rpo_seconds", "Age of the data the tenant's last drill restored (from the artifact's snapshot to the drill).",
     "rpo_seconds"),
    ("rpo_budget_seconds", "The tenant's RPO budget in its last drill.", "rpo_budget_seconds"),
    ("status", "1 when the tenant passed its last drill (verified, within both budgets), 0 when it failed.",
     lambda r: 1 if r.get("status") == "PASS" else 0),
)


def render_drill(rows, finished):
    """``lifeboat_drill.prom``: the last restore drill's rows (drill.yml, the drill_row filter) per host and tenant."""
    lines = []
    for suffix, helptext, key in _DRILL:
        name = "lifeboat_drill_" + suffix
        lines += ["# HELP %s %s" % (name, helptext), "# TYPE %s gauge" % name]
        for r in sorted(rows, key=lambda x: (str(x.get("host")), str(x.get("tenant")))):
            value = key(r) if callable(key) else r.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append('%s{host="%s",tenant="%s"} %s' % (name, _label(r.get("host") or ""),
                                                               _label(r.get("tenant") or ""), _number(value)))
    name = "lifeboat_drill_timestamp_seconds"
    lines += ["# HELP %s When the last restore drill finished (Unix time)." % name, "# TYPE %s gauge" % name,
              "%s %s" % (name, _number(finished))]
    return "\n".join(lines) + "\n"


def now():
    return time.time()
