# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rotation: grandfather-father-son retention that never deletes the last good one.

``select()`` is pure (a list of artifacts and a policy in, a decision per
artifact out), so that it can be tested over synthetic timelines; ``run()``
applies it to a repository. Periods are UTC days, ISO weeks, months and
years. Whatever the policy says, the newest complete artifact and the newest
verified one (per tenant and format) are kept. Incomplete artifacts (no
manifest) are removed once older than a grace period, and only while the
tenant's lock is free, so a running backup never loses its files.
"""

import datetime
import re

from . import argspec, erasure, naming, selection
from .errors import LifeboatError, LockBusy
from .files import atomic_write_json
from .repository import open_repository, s3_options

KEEP_RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")

# The options of backup_prune and of the agent's prune (see argspec.py); the agent passes every S3 option.
SPEC = argspec.ArgumentSpec(argspec.merged(
    argspec.S3_CONNECTION,
    repository=dict(type="str", required=True),
    tenant=dict(type="str"),
    max_age_days=dict(type="int"),
    max_total_size=dict(type="str"),
    incomplete_grace=dict(type="str", default="1d"),
    lock_timeout=dict(type="int", default=0),
    report=dict(type="path"),
    **dict((rule, dict(type="int")) for rule in KEEP_RULES)
), engine_only=argspec.S3_STORAGE)
OPTIONS = SPEC.defaults()

_PERIODS = {
    "keep_daily": lambda t: t.strftime("%Y-%m-%d"),
    "keep_weekly": lambda t: "%04d-W%02d" % t.isocalendar()[:2],
    "keep_monthly": lambda t: t.strftime("%Y-%m"),
    "keep_yearly": lambda t: t.strftime("%Y"),
}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}


def parse_size(value, option="max_total_size"):
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise LifeboatError("Invalid %s %r: give bytes or a size such as 500M, 20G, 1.5T (or 20GiB)."
                            % (option, value), option=option)
    unit = (m.group(2) or "").lower().rstrip("b")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


class Policy(object):
    def __init__(self, keep_last=None, keep_daily=None, keep_weekly=None, keep_monthly=None, keep_yearly=None,
                 max_age_days=None, max_total_size=None):
        self.keep = {}
        for name, value in (("keep_last", keep_last), ("keep_daily", keep_daily), ("keep_weekly", keep_weekly),
                            ("keep_monthly", keep_monthly), ("keep_yearly", keep_yearly)):
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise LifeboatError("Invalid %s %r: a count of artifacts, 0 or more." % (name, value), option=name)
            self.keep[name] = value
        if max_age_days is not None and (not isinstance(max_age_days, int) or isinstance(max_age_days, bool)
                                         or max_age_days < 1):
            raise LifeboatError("Invalid max_age_days %r: a number of days, 1 or more." % (max_age_days,),
                                option="max_age_days")
        self.max_age_days = max_age_days
        self.max_total_size = parse_size(max_total_size)
        if not self.keep and self.max_age_days is None and self.max_total_size is None:
            raise LifeboatError(
                "No retention policy given: set at least one of keep_last, keep_daily, keep_weekly, keep_monthly, "
                "keep_yearly, max_age_days or max_total_size (for example keep_daily: 7, keep_weekly: 4, "
                "keep_monthly: 12). Deleting is never a default.",
                option="keep_daily",
            )

    def describe(self):
        d = dict(self.keep)
        if self.max_age_days is not None:
            d["max_age_days"] = self.max_age_days
        if self.max_total_size is not None:
            d["max_total_size"] = self.max_total_size
        return d


def _moment(a):
    return naming.parse_stamp(a["stamp"])


def select(artifacts, policy, now, grace_seconds=86400, lock_free=True):
    """Decide, for every artifact of ONE tenant, whether to keep or delete it.

    ``artifacts``: dicts with name, stamp, format, size, complete, verified.
    Returns the same dicts with ``decision`` ('keep'|'delete') and ``reasons``.
    """
    out = [dict(a, reasons=[], decision=None) for a in artifacts]
    # Stamped in the future (a host whose clock ran ahead): kept, flagged, and never counted as the
    # newest, so that it cannot make the rules delete the real newest artifacts.
    for a in out:
        if a["complete"] and naming.in_future(a["stamp"], now):
            a["decision"], a["future"] = "keep", True
            a["reasons"].append("stamped in the future (clock skew on the host that wrote it?): kept, and not "
                                "counted as the newest; fix the clock, then remove it by hand")
    complete = sorted((a for a in out if a["complete"] and not a.get("future")), key=lambda a: (a["stamp"], a["name"]),
                      reverse=True)
    # Never deleted: the newest complete and the newest verified of each format.
    for fmt in sorted(set(a["format"] for a in complete)):
        same = [a for a in complete if a["format"] == fmt]
        same[0]["reasons"].append("newest complete artifact (never deleted)")
        same[0]["protected"] = True
        verified = [a for a in same if a.get("verified")]
        if verified:
            verified[0]["reasons"].append("newest verified artifact (never deleted)")
            verified[0]["protected"] = True
    # Grandfather-father-son over complete artifacts, per format.
    for fmt in sorted(set(a["format"] for a in complete)):
        same = [a for a in complete if a["format"] == fmt]
        if "keep_last" in policy.keep:
            for a in same[:policy.keep["keep_last"]]:
                a["reasons"].append("keep_last")
        for rule in ("keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"):
            if rule not in policy.keep:
                continue
            seen = []
            for a in same:  # newest first: the first seen of a period is its newest
                period = _PERIODS[rule](_moment(a))
                if period in seen:
                    continue
                if len(seen) >= policy.keep[rule]:
                    break
                seen.append(period)
                a["reasons"].append("%s (%s)" % (rule, period))
    for a in complete:
        if a.get("protected") or a["reasons"] or not policy.keep:
            a["decision"] = "keep"
            if not a["reasons"]:
                a["reasons"].append("no keep_* rule given")
        else:
            a["decision"] = "delete"
            a["reasons"].append("not kept by any rule of %s" % ", ".join(sorted(policy.keep)))
    # max_age_days overrides the keep rules (not the protection).
    if policy.max_age_days is not None:
        limit = now - datetime.timedelta(days=policy.max_age_days)
        for a in complete:
            if a["decision"] == "keep" and not a.get("protected") and _moment(a) < limit:
                a["decision"] = "delete"
                a["reasons"].append("older than max_age_days (%d)" % policy.max_age_days)
    # Incomplete artifacts: removed after the grace period, only if no run holds the lock.
    for a in out:
        if a["complete"]:
            continue
        age = (now - _moment(a)).total_seconds()
        if not lock_free:
            a["decision"] = "keep"
            a["reasons"].append("incomplete, but a run holds the tenant's lock (it may still be writing)")
        elif age > grace_seconds:
            a["decision"] = "delete"
            a["reasons"].append("incomplete (no manifest) and older than incomplete_grace")
        else:
            a["decision"] = "keep"
            a["reasons"].append("incomplete (no manifest), within incomplete_grace")
    return sorted(out, key=lambda a: (a["stamp"], a["name"]))


def apply_total_size(decisions, max_total_size):
    """Delete the oldest unprotected kept artifacts until the total fits."""
    if max_total_size is None:
        return
    kept = [a for a in decisions if a["decision"] == "keep"]
    total = sum(a["size"] for a in kept)
    for a in sorted(kept, key=lambda a: (a["stamp"], a["name"])):
        if total <= max_total_size:
            break
        if a.get("protected") or not a["complete"]:
            continue
        a["decision"] = "delete"
        a["reasons"].append("max_total_size (%s) exceeded" % naming.human_size(max_total_size))
        total -= a["size"]


def _by_server(repo, tenant, arts):
    """The artifacts of ``tenant`` in groups that the rules apply to one by one.

    A globals pseudo-tenant's artifacts are grouped by the server their manifests name (its
    system identifier): two servers that answer to the same host name and port (pods of one
    StatefulSet sharing a repository) write the same ``_globals_<host>``, and ``keep_last: 1``
    must keep the newest roles of each, not of whichever wrote last. Artifacts whose manifest
    names no server (older ones, incomplete ones) form a group of their own.
    """
    if not naming.is_globals_tenant(tenant):
        return [arts]
    groups = {}
    for a in arts:
        sid = None
        if a["complete"]:
            doc, _problem = selection.read_manifest(repo, tenant, a)
            sid = ((doc or {}).get("source") or {}).get("system_identifier")
        groups.setdefault(sid, []).append(a)
    return list(groups.values())


def _verified_names(repo, tenant, arts):
    """Names of the artifacts whose verify record proves them as stored now.

    The same rule as ``artifact: latest_verified`` (selection.judge): a PASS
    record of an artifact rekeyed or replaced since does not count, so prune
    keeps the artifact that a restore of the newest verified one would use.
    """
    judged = selection.candidates(repo, tenant, artifacts=arts, stop_at_first=False)
    return set(j["art"]["name"] for j in judged if j["verified"])


def keep_shared_parts(repo, per_tenant):
    """Never delete the shared part that a kept artifact of a schema tenant needs for its restore.

    The manifest of a schema tenant's artifact names the shared artifact it was taken with; every
    kept artifact's manifest is read (only when a shared part would be deleted) and what it names is
    kept and protected. For manifests that name none (written before the shared part existed, or of
    database tenants), the newest shared artifact stamped at or before them is kept: keeping one
    shared part too many is cheap, losing the one a restore needs is not.
    """
    shared = [t for t in per_tenant if naming.is_shared_tenant(t)
              and any(d["decision"] == "delete" and d["complete"] for d in per_tenant[t][0])]
    if not shared:
        return
    kept, named = [], set()
    for tenant in repo.tenants():
        if naming.is_pseudo_tenant(tenant):
            continue
        if tenant in per_tenant:
            arts = [d for d in per_tenant[tenant][0] if d["complete"] and d["decision"] == "keep"]
        else:
            arts = [a for a in repo.artifacts(tenant) if a["complete"]]
        for art in arts:
            try:
                ref = (repo.read_json(tenant, art["manifest"]) or {}).get("shared")
            except LifeboatError:
                ref = None
            if ref and ref.get("artifact"):
                named.add(ref["artifact"])  # the manifest names it: exact
            else:
                kept.append(art["stamp"])  # older manifests: the newest shared part at or before it
    for tenant in shared:
        complete = sorted((d for d in per_tenant[tenant][0] if d["complete"]), key=lambda d: (d["stamp"], d["name"]))
        needed = set(d["name"] for d in complete if d["name"] in named)
        for stamp in kept:
            before = [d for d in complete if d["stamp"] <= stamp]
            if before:
                needed.add(before[-1]["name"])
        for d in complete:
            if d["name"] in needed:
                d["protected"] = True
                if d["decision"] == "delete":
                    d["decision"] = "keep"
                    d["reasons"].append("kept: the shared part that kept artifacts of its schema tenants restore with")


def run(params, check_mode=False, now=None):
    p = SPEC.resolve(params)
    policy = Policy(**dict((k, p[k]) for k in KEEP_RULES + ("max_age_days", "max_total_size")))
    grace = naming.parse_duration(p["incomplete_grace"], "incomplete_grace")
    lock_timeout = naming.parse_duration(p["lock_timeout"], "lock_timeout") or 0
    if p["tenant"] is not None:
        naming.validate_repo_tenant(p["tenant"])
    repo = open_repository(p["repository"], create=False, **s3_options(p))
    now = now or naming.utcnow()
    tenants = [p["tenant"]] if p["tenant"] else repo.tenants()
    report = {"repository": str(repo), "policy": policy.describe(), "checked_at": naming.iso(now),
              "check_mode": bool(check_mode), "tenants": {}}
    all_decisions = []
    per_tenant = {}
    erased = {}  # erased tenants (tenant_erase): all their objects go as soon as object lock allows
    for tenant in tenants:
        found = erasure.find_record(repo, tenant)
        if found:
            erased[tenant] = erasure.prune_tenant(repo, tenant, found, check_mode, lock_timeout, now)
            continue
        holder = repo.lock_holder(tenant)
        listed = repo.artifacts(tenant)
        verified = _verified_names(repo, tenant, listed)
        arts = [dict(a, verified=a["name"] in verified) for a in listed]
        decisions = []
        for group in _by_server(repo, tenant, arts):
            decisions.extend(select(group, policy, now, grace, lock_free=holder is None))
        decisions.sort(key=lambda d: (d["stamp"], d["name"]))
        for d in decisions:
            d["tenant"] = tenant
        per_tenant[tenant] = (decisions, holder)
        all_decisions.extend(decisions)
    keep_shared_parts(repo, per_tenant)
    apply_total_size(all_decisions, policy.max_total_size)
    held = keep_locked(repo, all_decisions)
    skipped = {}
    for tenant, (decisions, holder) in per_tenant.items():
        doomed = [d for d in decisions if d["decision"] == "delete"]
        if doomed and not check_mode:
            try:
                lock = repo.lock(tenant, "prune of tenant %s" % tenant, lock_timeout).acquire()
            except LockBusy as e:
                # A backup (or restore) of this tenant is running: leave it alone this time.
                skipped[tenant] = str(e)
                for d in doomed:
                    d["decision"] = "keep"
                    d["reasons"].append("not deleted this run: the tenant's lock is held")
            else:
                try:
                    for d in doomed:
                        _delete(repo, tenant, d)
                    _remove_orphans(repo, tenant)
                finally:
                    lock.release()
        report["tenants"][tenant] = {
            "lock_holder": holder,
            "skipped": skipped.get(tenant),
            "artifacts": [
                {"name": d["name"], "stamp": d["stamp"], "format": d["format"], "size": d["size"],
                 "complete": d["complete"], "verified": d.get("verified", False), "decision": d["decision"],
                 "reasons": d["reasons"]}
                for d in decisions
            ],
        }
    report["tenants"].update(erased)
    gone = [a for e in erased.values() for a in e["artifacts"]]
    kept = [d for d in all_decisions if d["decision"] == "keep"] + [a for a in gone if a["decision"] == "keep"]
    doomed = [d for d in all_decisions if d["decision"] == "delete"] + [a for a in gone if a["decision"] == "delete"]
    report["summary"] = {
        "kept": len(kept), "deleted": len(doomed), "bytes_kept": sum(d["size"] for d in kept),
        "bytes_deleted": sum(d["size"] for d in doomed),
    }
    result = {
        "changed": bool(doomed) or any(e["deleted"] for e in erased.values()),
        "deleted": [d["name"] for d in doomed],
        "kept": [d["name"] for d in kept],
        "report": report,
        "msg": "%s %d artifact(s) (%s) of %d tenant(s); kept %d." % (
            "Would delete" if check_mode else "Deleted", len(doomed), naming.human_size(report["summary"]["bytes_deleted"]),
            len(tenants), len(kept)),
    }
    warnings = ["Kept %d artifact(s) due for deletion that object lock holds: %s. Deleting them would only hide "
                "them behind a delete marker until the lock ends; prune deletes them on a run after that."
                % (len(held), "; ".join("%s (%s)" % (d["name"], lock) for d, lock in held))] if held else []
    warnings.extend(repo.warnings)  # S3 housekeeping that failed
    for tenant, e in sorted(erased.items()):
        result["msg"] += " Tenant %s was %s: %s %d object(s) of it%s." % (
            tenant, erasure.describe(e["erased"]), "would delete" if check_mode else "deleted", len(e["deleted"]),
            "; %d kept under object lock until %s" % (len(e["kept"]), erasure.kept_until(e["kept"])) if e["kept"] else "")
        if e["skipped"]:
            skipped[tenant] = e["skipped"]
    if warnings:
        result["warnings"] = warnings
    if skipped:
        result["skipped_tenants"] = skipped
        result["msg"] += " Skipped (lock held by a running backup or restore): %s; run prune again later." % (
            ", ".join(sorted(skipped)))
    if p["report"]:
        # The report is output the caller asked for, written in check mode too (the dry run's point).
        result["report_path"] = atomic_write_json(p["report"], report)
    return result


def keep_locked(repo, decisions):
    """Keep what object lock holds (S3): [(decision, what holds it)]; checked in check mode too."""
    held = []
    for d in decisions:
        if d["decision"] == "delete":
            lock = repo.object_lock(d["tenant"], d["name"])
            if lock:
                d["decision"] = "keep"
                d["reasons"].append("kept: object lock holds it (%s); deleting it would only hide it" % lock)
                held.append((d, lock))
    return held


def _delete(repo, tenant, d):
    """Manifest first: an interrupted delete leaves an incomplete artifact, never a lying one."""
    stamp = d["stamp"]
    names = repo.names(tenant)
    # (last: the hidden marker a local rekey interrupted on this artifact left beside it; S3 keeps none)
    for name in (naming.manifest_name(tenant, stamp), d["name"], naming.verify_record_name(tenant, stamp),
                 naming.rekey_marker_name(d["name"])):
        if name in names:
            try:
                repo.delete(tenant, name)
            except OSError as e:
                raise LifeboatError("Deleting %s failed: %s. The prune stopped; run it again once fixed."
                                    % (repo.location(tenant, name), e.strerror), option="repository")


def _remove_orphans(repo, tenant):
    """Manifests and verify records whose artifact is gone (an interrupted prune)."""
    names = repo.names(tenant)
    stamps = set(a["stamp"] for a in repo.artifacts(tenant))
    for name in names:
        parsed = naming.parse_manifest_name(name) or naming.parse_verify_record_name(name)
        if parsed and parsed[0] == tenant and parsed[1] not in stamps:
            repo.delete(tenant, name)
