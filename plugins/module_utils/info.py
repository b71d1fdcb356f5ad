# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine behind ``backup_info``: what a repository holds, read-only.

Per tenant: the newest complete artifact (``latest``), the newest verified one
(``latest_verified``, chosen by selection.py exactly as ``backup_restore``
chooses it), their manifests' facts, and the counts of complete and incomplete
artifacts; over all of them, the PostgreSQL major version a restore needs.
Works on local and ``s3://`` repositories through their public interface.
Nothing is written, and nothing secret is returned: manifests and verify
records hold public keys and host names only, and the S3 credentials are
never part of a result.

With ``discover`` (rules as in the agent's ``lifeboat.yml``, see
discovery.py) it also reads the server at ``login_*``: the tenants the rules
find (``discovered``), and what is ``unprotected`` (a listed or discovered
tenant without a complete artifact within its RPO, ``max_age``; a database
or schema no listing or rule covers; an invalid or conflicting name).
Without ``discover`` the server is not contacted.
"""

import os

from . import argspec, discovery, erasure, naming, selection
from .errors import LifeboatError
from .repository import open_repository, s3_options

# The options of backup_info (see argspec.py)
SPEC = argspec.ArgumentSpec(argspec.merged(
    argspec.S3_CONNECTION,
    argspec.LOGIN,
    repository=dict(type="str", required=True),
    tenants=dict(type="list", elements="str"),
    include_globals=dict(type="bool", default=False),
    discover=dict(type="list", elements="dict"),
    listed_tenants=dict(type="list", elements="dict"),
    max_age=dict(type="str"),
    # every complete artifact's recipients, grouped (which artifacts a key can open), not only the newest's
    list_recipients=dict(type="bool", default=False),
))
OPTIONS = SPEC.defaults()
LOGIN_OPTIONS = tuple(argspec.LOGIN)


def _artifact_view(repo, tenant, entry, doc):
    """The report of one artifact: where, what, its verification and its manifest's facts."""
    art = entry["art"]
    record = entry.get("record") if isinstance(entry.get("record"), dict) else {}
    return {
        "artifact": art["name"],
        "location": repo.location(tenant, art["name"]),
        "manifest": repo.location(tenant, art["manifest"]),
        "stamp": art["stamp"],
        "snapshot_at": naming.iso(naming.parse_stamp(art["stamp"])),
        "format": art["format"],
        "compressed": art["compressed"],
        "encrypted": art["encrypted"],
        "size_stored": art.get("size"),
        "complete": art["complete"],
        "verify_record": repo.location(tenant, art["verify_record"]) if art.get("verify_record") else None,
        "verify_status": record.get("status"),
        "verified_at": record.get("checked_at"),
        "verified": bool(entry.get("verified")),
        "verify_note": entry.get("reason"),
        "manifest_summary": selection.manifest_summary(doc),
        "pg_major_needed": selection.needed_pg_major(doc),
        "future_stamped": naming.in_future(art["stamp"]),
    }


def _recipients_of(doc):
    if not isinstance(doc, dict):
        return None
    return sorted((doc.get("encryption") or {}).get("recipients") or [])


def _shared_recipients(repo, doc):
    """The recipients of the shared part a schema tenant's artifact was taken with (its manifest), or None."""
    ref = doc.get("shared") if isinstance(doc, dict) else None
    if not isinstance(ref, dict) or not ref.get("tenant") or not ref.get("stamp"):
        return None
    try:
        return _recipients_of(repo.read_json(ref["tenant"], naming.manifest_name(ref["tenant"], ref["stamp"])))
    except LifeboatError:
        return None


def recipients_by_artifact(repo, tenant, complete):
    """[{recipients, artifacts}]: the tenant's complete artifacts grouped by the recipients their manifests name."""
    groups = {}
    for art in complete:
        doc, problem = selection.read_manifest(repo, tenant, art)
        key = tuple(_recipients_of(doc) or []) if not problem else ("(manifest not usable: %s)" % problem,)
        groups.setdefault(key, []).append(art["name"])
    return [{"recipients": list(key), "artifacts": names} for key, names in sorted(groups.items())]


def tenant_info(repo, tenant, list_recipients=False):
    names = repo.names(tenant)  # listed once: for the artifacts and for an erasure record
    arts = repo.artifacts(tenant, names)
    complete = [a for a in arts if a["complete"]]
    pseudo = naming.is_pseudo_tenant(tenant)
    out = {
        "tenant": tenant,
        "kind": "globals" if naming.is_globals_tenant(tenant) else "shared" if pseudo else "tenant",
        "pseudo_tenant": pseudo,
        "present": bool(arts),
        "artifacts_complete": len(complete),
        "artifacts_incomplete": len(arts) - len(complete),
        "newest_is_incomplete": bool(arts) and not arts[-1]["complete"],
        "latest": None,
        "latest_verified": None,
        "latest_verified_error": None,
        "recipients": None,
        "shared_recipients": None,
        "pg_major_needed": 0,
        # a host whose clock ran ahead wrote them: never chosen as the newest (naming.by_recency)
        "future_stamped": [a["name"] for a in complete if naming.in_future(a["stamp"])],
        # erased on purpose (tenant_erase): its record; nothing of it is to be restored or verified
        "erased": erasure.find_record(repo, tenant, names),
    }
    if out["erased"]:
        out["latest_verified_error"] = "Tenant %s was %s: there is nothing to restore." % (
            tenant, erasure.describe(out["erased"]))
        return out
    judged = selection.candidates(repo, tenant, artifacts=arts)
    if judged:
        first = judged[0]
        doc = first["doc"]
        if doc is None:
            doc, problem = selection.read_manifest(repo, tenant, first["art"])
            if problem:
                first = dict(first, reason="%s; its manifest is not usable: %s" % (first.get("reason"), problem))
        out["latest"] = _artifact_view(repo, tenant, first, doc)
        # whom the newest is encrypted to (a tenant's own keys, or the repository-wide ones), and its shared part
        out["recipients"] = _recipients_of(doc)
        out["shared_recipients"] = _shared_recipients(repo, doc)
    if list_recipients:
        out["recipients_by_artifact"] = recipients_by_artifact(repo, tenant, complete)
    chosen = [j for j in judged if j["verified"]]
    if chosen:
        out["latest_verified"] = _artifact_view(repo, tenant, chosen[0], chosen[0]["doc"])
        out["latest_verified"]["skipped"] = [{"artifact": j["art"]["name"], "reason": j["reason"]}
                                             for j in judged if j is not chosen[0]]
    else:
        out["latest_verified_error"] = str(selection.no_verified_error(repo, tenant, None, judged))
        if not arts:
            out["latest_verified_error"] = (
                "Tenant %s has no artifact in %s: check the tenant's name and the repository (and, for S3, the "
                "prefix and credentials)." % (tenant, repo))
    out["pg_major_needed"] = max([0] + [v["pg_major_needed"] for v in (out["latest"], out["latest_verified"]) if v])
    return out


def run(params, check_mode=False):
    p = SPEC.resolve(params)
    if not p["repository"]:
        raise LifeboatError("repository is required: a folder such as /var/backups/lifeboat, or s3://bucket/prefix.",
                            option="repository")
    if not isinstance(p["include_globals"], bool):
        raise LifeboatError("Invalid include_globals %r: true or false." % (p["include_globals"],),
                            option="include_globals")
    wanted = p["tenants"]
    if isinstance(wanted, str):
        wanted = [t.strip() for t in wanted.split(",") if t.strip()]
    for t in wanted or []:
        naming.validate_repo_tenant(t, option="tenants")
    rules = discovery.check_rules(p["discover"], "discover") if p["discover"] is not None else None
    repo = open_repository(p["repository"], create=False, **s3_options(p, connection_only=True))
    if repo.is_local and not os.path.isdir(repo.root) and p["discover"] is None:
        # With discover, a repository no backup has created yet is empty: every tenant is unprotected.
        raise LifeboatError("The repository %s does not exist (or is not a folder): check repository."
                            % repo.root, option="repository")
    present = repo.tenants()
    if wanted:
        names = list(dict.fromkeys(wanted))
        if p["include_globals"]:
            names += [t for t in present if naming.is_pseudo_tenant(t) and t not in names]
    else:
        names = [t for t in present if p["include_globals"] or not naming.is_pseudo_tenant(t)]
    tenants = {}
    for t in names:
        tenants[t] = tenant_info(repo, t, p["list_recipients"])
    rows = list(tenants.values())
    erased = [r["tenant"] for r in rows if r["erased"]]
    missing = [r["tenant"] for r in rows if not r["present"] and not r["erased"]]
    unverified = [r["tenant"] for r in rows if r["present"] and r["latest_verified"] is None and not r["erased"]]
    result = {
        "changed": False,
        "repository": str(repo),
        "repository_kind": repo.kind,
        "tenants": tenants,
        "tenant_names": names,
        "missing": missing,
        "unverified": unverified,
        "erased": erased,
        "globals_tenants": [t for t in present if naming.is_globals_tenant(t)],
        "shared_tenants": [t for t in present if naming.is_shared_tenant(t)],
        "pg_major_needed": max([0] + [r["pg_major_needed"] for r in rows]),
        "clock_skew": [r["tenant"] for r in rows if r["future_stamped"]],
        "msg": _summary(repo, rows, missing, unverified),
    }
    if p["list_recipients"]:
        result["artifacts_by_recipient"] = _by_recipient(rows)
    if rules is not None:
        _discover(p, rules, repo, result)
    return result


def _by_recipient(rows):
    """{public key: ["tenant/artifact", ...]}: what each key can open (a shared key should open no tenant's own)."""
    out = {}
    for r in rows:
        for group in r.get("recipients_by_artifact") or []:
            for key in group["recipients"]:
                out.setdefault(key, []).extend("%s/%s" % (r["tenant"], name) for name in group["artifacts"])
    return out


def listed_definitions(items, max_age):
    """``listed_tenants`` (the inventory's lifeboat_tenants: name, engine, database, schema, path, rpo)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise LifeboatError("listed_tenants must be a list of tenants ({name, engine, database, schema, path}).",
                            option="listed_tenants")
    out = []
    for i, item in enumerate(items):
        where = "listed_tenants[%d]" % i
        if not isinstance(item, dict):
            raise LifeboatError("%s must be a mapping with name (and engine, database, schema or path)." % where,
                                option="listed_tenants")
        name = item.get("name") or item.get("tenant")
        naming.validate_tenant(name, where + ".name")
        engine = item.get("engine") or "postgresql"
        if engine not in naming.ENGINES:
            raise LifeboatError("Invalid %s.engine %r: one of %s." % (where, engine, ", ".join(naming.ENGINES)),
                                option="listed_tenants")
        rpo = naming.parse_duration(item.get("rpo"), where + ".rpo") if item.get("rpo") else max_age
        out.append({"name": name, "engine": engine, "database": (item.get("database") or name)
                    if engine == "postgresql" else None, "schema": item.get("schema") or None,
                    "path": item.get("path"), "found": discovery.LISTED, "rule": None, "rpo": rpo,
                    "covers": engine == "postgresql"})
    return out


def _discover(p, rules, repo, result):
    """``discovered``, ``unprotected`` and ``discovery`` of the result, from the server at login_*."""
    max_age = naming.parse_duration(p["max_age"], "max_age")
    listed = listed_definitions(p["listed_tenants"], max_age)
    login = dict((k, p[k]) for k in LOGIN_OPTIONS if p[k] is not None)
    try:
        server = discovery.scan(login, [r["database"] for r in rules if r["kind"] == "schemas"] +
                                [t["database"] for t in listed if t["covers"] and t["schema"]])
    except LifeboatError as e:
        raise LifeboatError("Discovery failed: %s Nothing was discovered; the listed tenants can still be backed up. "
                            "Check login_host, login_port, login_user, login_password or login_unix_socket."
                            % e.msg, option=e.option or "login_host")
    found_ = discovery.evaluate(rules, listed, server)
    for t in found_["discovered"]:
        t["rpo"] = t["rpo"] or max_age
    found = discovery.Found(listed, found_["discovered"], found_["problems"], found_["errors"], found_["excluded"],
                            True, server["server"])
    entries = discovery.unprotected(discovery.protection(found, discovery.repository_newest(repo), naming.utcnow()))
    result["discovered"] = [dict((k, v) for k, v in t.items() if v is not None and k != "rpo") for t in
                            found.discovered]
    result["discovered_names"] = [t["name"] for t in found.discovered]
    result["unprotected"] = entries
    result["unprotected_names"] = [e["tenant"] for e in entries]
    result["discovery"] = {"server": found.server, "rules": len(rules), "errors": found.errors,
                           "excluded": found.excluded, "max_age_seconds": max_age}
    parts = [result["msg"].rstrip("."),
             "discovery on %s: %d tenant(s) discovered" % (found.server, len(found.discovered))]
    if entries:
        parts.append("%d UNPROTECTED: %s" % (len(entries), "; ".join(e["message"] for e in entries)))
    if found.errors:
        parts.append("discovery problems: %s" % " ".join(found.errors))
    result["msg"] = "; ".join(parts) + "."


def _summary(repo, rows, missing, unverified):
    verified = sum(1 for r in rows if r["latest_verified"] is not None)
    parts = ["%d tenant(s) in %s: %d with a verified artifact" % (len(rows), repo, verified)]
    if unverified:
        parts.append("none verified for %s (run backup_verify)" % ", ".join(unverified))
    if missing:
        parts.append("no artifact at all for %s" % ", ".join(missing))
    for r in rows:
        if r["erased"]:
            parts.append("ERASED: tenant %s was %s" % (r["tenant"], erasure.describe(r["erased"])))
    skewed = [r for r in rows if r["future_stamped"]]
    if skewed:
        parts.append("CLOCK SKEW: %s stamped in the future (the clock of the host that wrote them ran ahead; they "
                     "are never chosen as the newest): fix that host's clock (timedatectl, NTP), take and verify a "
                     "new backup, then remove them by hand" % "; ".join(
                         "%s: %s" % (r["tenant"], ", ".join(r["future_stamped"])) for r in skewed))
    return "; ".join(parts) + "."
