# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``lifeboat status`` (each tenant's newest artifact against its RPO, its last verification)
and ``lifeboat check-config``."""

import json
import os
import sys
import time

from .. import agent_config, agent_metrics, discovery, erasure, naming
from ..agent_output import human_age, table
from ..errors import LifeboatError
from ..repository import open_repository
from .params import connection_params, globals_label, repo_options, wants_globals
from .session import EXIT_LATE, EXIT_OK


def _verify_result(record):
    if not isinstance(record, dict):
        return None
    status = record.get("status")
    if status is None and "ok" in record:
        status = "PASS" if record["ok"] else "FAIL"
    return str(status).upper() if status is not None else None


def tenant_status(repo, name, rpo, now, state_entry=None):
    row = {"tenant": name, "rpo_seconds": rpo, "newest": None, "age_seconds": None, "rpo": "NONE",
           "verified": None, "verified_artifact": None, "verified_at": None, "last_backup_run": None,
           "last_backup_status": None}
    names = None
    try:
        names = repo.names(name)  # listed once: for the artifacts and for an erasure record
        arts = repo.artifacts(name, names)
    except LifeboatError as e:
        row["error"] = e.msg
        arts = []
    row["erased"] = erasure.find_record(repo, name, names) if not row.get("error") else None
    if row["erased"]:  # erased on purpose (tenant_erase): no RPO, nothing to verify, never a problem
        row.update(rpo=erasure.ERASED, newest=erasure.describe(row["erased"]))
        return row
    complete = [a for a in arts if a["complete"]]
    if complete:
        newest = complete[-1]
        age = (now - naming.parse_stamp(newest["stamp"])).total_seconds()
        row.update(newest=newest["name"], age_seconds=int(age), rpo="OK" if age <= rpo else "LATE")
    for art in reversed(complete):
        if art.get("verify_record"):
            try:
                record = repo.read_json(name, art["verify_record"])
            except LifeboatError:
                record = None
            row.update(verified=_verify_result(record) or "UNREADABLE", verified_artifact=art["name"],
                       verified_at=(record or {}).get("checked_at") if isinstance(record, dict) else None)
            break
    if state_entry:
        row["last_backup_run"] = state_entry.get("last_run")
        row["last_backup_status"] = state_entry.get("last_status")
    return row


def cmd_status(args, config, log):
    verify = config["verify"] or {}
    repository = config.get("repository") or verify.get("repository")
    if not repository:
        raise agent_config.ConfigError(config.where, "repository", "is required to show the status of backups.")
    repo = open_repository(repository, create=False, **repo_options(config))
    found = discovery.tenants_for_run(config, lambda: connection_params(config["connection"]))
    names = list(args.tenant or found.names or verify.get("tenants") or [])
    if not args.tenant:
        if names and wants_globals(config, names):
            names.append(globals_label(config))
        if not names:
            names = repo.tenants()
    state = agent_metrics.State(config["state_dir"]).load()
    runs = state.tenants("backup")
    now = naming.utcnow()
    rows = []
    for name in names:
        rpo = config.tenant(name)["rpo"] if not naming.is_pseudo_tenant(name) else config["rpo"]
        rows.append(tenant_status(repo, name, rpo, now, runs.get(name)))
    unprotected = discovery.status_of(found, rows, now, partial=bool(args.tenant))
    problems = [r for r in rows if r["rpo"] not in ("OK", erasure.ERASED) or r["verified"] == "FAIL" or r.get("error")]
    others = unprotected["server_problems"]  # databases, schemas, discovery errors: no row of their own
    if args.json:
        sys.stdout.write(json.dumps({"repository": str(repo), "checked_at": naming.iso(now), "tenants": rows,
                                     "problems": len(problems) + others, "unprotected": unprotected["unprotected"],
                                     "discovery": unprotected["discovery"]}, indent=2, sort_keys=True) + "\n")
        return EXIT_LATE if problems or others else EXIT_OK

    def when(ts):
        if not ts:
            return "never"
        return "%s ago" % human_age(time.time() - ts)

    table_rows = []
    for r in rows:
        age = human_age(r["age_seconds"]) if r["age_seconds"] is not None else "-"
        rpo = "%s (%s)" % (r["rpo"], human_age(r["rpo_seconds"]))
        verified = "never"
        if r["verified"]:
            verified = r["verified"]
            if r["verified_artifact"] and r["verified_artifact"] != r["newest"]:
                verified += " (older artifact)"
        last = "-"
        if r["last_backup_status"]:
            last = "%s %s" % (r["last_backup_status"], when(r["last_backup_run"]))
        table_rows.append([r["tenant"], r["newest"] or r.get("error") or "none", age, rpo, verified, last,
                           r["found"]])
    table_rows += discovery.status_rows(unprotected)
    sys.stdout.write("repository %s, %s\n" % (repo, naming.iso(now)))
    sys.stdout.write(table(["TENANT", "NEWEST ARTIFACT", "AGE", "RPO", "LAST VERIFICATION", "LAST BACKUP RUN",
                            "FOUND"], table_rows))
    sys.stdout.write("".join(line + "\n" for line in discovery.status_lines(unprotected)))
    if problems:
        sys.stdout.write("%d tenant(s) need attention: %s\n" % (len(problems), ", ".join(r["tenant"] for r in problems)))
    return EXIT_LATE if problems or others else EXIT_OK


def cmd_check_config(args, config, log):
    if args.file:
        where = os.path.basename(args.file)
        agent_config.check_document(agent_config.parse_yaml(agent_config._read(args.file, "config"), where), where)
        sys.stdout.write("%s: valid\n" % args.file)
        return EXIT_OK
    tenants = config.tenants
    sys.stdout.write("configuration valid: %s\n" % (", ".join(config.files) or "(no file)"))
    sys.stdout.write("tenants (%s): %s\n" % (config.env["path"], " ".join(tenants) or "none"))
    for name in tenants:
        t = config.tenant(name)
        where = t.get("path") or ("%s%s" % (t.get("database"), ("." + t["schema"]) if t.get("schema") else ""))
        sys.stdout.write("  %s: %s %s\n" % (name, t["engine"], where))
    for rule in config["discover"] or []:
        what = rule["pattern"] if rule["kind"] == "databases" else "%s.%s" % (rule["database"], rule["pattern"])
        sys.stdout.write("discover (%s): %s %s%s\n" % (rule["origin"], rule["kind"], what, (
            " exclude " + ",".join(rule["exclude"])) if rule["exclude"] else ""))
    for name in config["tenants"]:
        if name not in tenants:
            sys.stdout.write("warning: tenants.%s is configured in lifeboat.yml but not listed in TENANTS\n" % name)
    return EXIT_OK
