# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing an artifact by its verify record: ``latest_verified``.

``backup_verify`` writes ``<tenant>-<stamp>.verify.json`` beside each artifact
it checked. The newest VERIFIED artifact of a tenant is the newest complete
one (its manifest exists and is valid) whose record:

- says ``status: PASS``;
- names this very artifact (``artifact`` is its file name);
- still describes the bytes stored now: the record's ``sha256`` (written by
  backup_verify since this change) equals the manifest's. An artifact that was
  rekeyed (``age_encrypt state=rekeyed`` rewrites the ciphertext and its
  manifest) or otherwise replaced after the verification is therefore NOT
  verified anymore until backup_verify runs on it again. Records written
  before the SHA-256 was recorded are trusted only when they are not older
  than the manifest (``finished_at``, and ``rekeyed_at`` when present);
- and the stored object's size equals the manifest's (cheap: from the listing).

Only the public interface of a repository is used (``artifacts``,
``read_json``, ``location``), so this works the same for a local folder and
an ``s3://`` repository. Nothing here writes.
"""

from . import manifest as manifest_mod, naming
from .errors import LifeboatError

LATEST = "latest"
LATEST_VERIFIED = "latest_verified"
SELECTORS = (LATEST, LATEST_VERIFIED)


def _iso_key(value):
    """ISO 8601 UTC stamps as written by lifeboat ("2026-01-01T03:00:00Z") compare as strings."""
    return value if isinstance(value, str) else ""


def read_manifest(repo, tenant, art):
    """The validated manifest of ``art``, or (None, reason)."""
    try:
        doc = manifest_mod.validate(repo.read_json(tenant, art["manifest"]), art["manifest"])
    except LifeboatError as e:
        return None, str(e)
    if doc.get("artifact") != art["name"] or doc.get("tenant") != tenant:
        return None, "%s describes %s of tenant %s, not %s" % (art["manifest"], doc.get("artifact"), doc.get("tenant"),
                                                               art["name"])
    return doc, None


def judge(record, art, doc):
    """(trusted, reason): does ``record`` prove ``art`` (with manifest ``doc``) as it is stored now?"""
    if not isinstance(record, dict):
        return False, "the verify record is not a JSON object"
    status = record.get("status")
    if status != "PASS":
        return False, "the verify record says %s" % (status or "nothing (no status)")
    if record.get("artifact") != art["name"]:
        return False, "the verify record names %r, not this artifact" % (record.get("artifact"),)
    if doc is None:
        return False, "no usable manifest"
    stored = (doc.get("size") or {}).get("stored")
    if art.get("size") is not None and stored is not None and art["size"] != stored:
        return False, ("the stored artifact holds %d bytes, its manifest says %d: damaged or replaced"
                       % (art["size"], stored))
    checked_at = _iso_key(record.get("checked_at"))
    sha = record.get("sha256")
    if sha is not None:
        if sha != doc.get("sha256"):
            return False, ("the artifact was replaced or rekeyed after it was verified (%s): its SHA-256 is not the "
                           "one verified; verify it again" % (checked_at or "unknown time"))
        return True, "PASS at %s" % (checked_at or "unknown time")
    # A record from before the SHA-256 was recorded: it must not predate the manifest.
    if not checked_at:
        return False, "the verify record has no checked_at"
    newer = [k for k in ("finished_at", "rekeyed_at") if _iso_key(doc.get(k)) > checked_at]
    if newer:
        return False, ("the verify record (%s) predates the manifest's %s (%s): the artifact was replaced or rekeyed "
                       "after it was verified; verify it again" % (checked_at, newer[-1], doc.get(newer[-1])))
    return True, "PASS at %s" % checked_at


def _read_record(repo, tenant, name):
    try:
        return repo.read_json(tenant, name), None
    except LifeboatError as e:
        return None, "the verify record cannot be read: %s" % e


def candidates(repo, tenant, fmt=None, artifacts=None, stop_at_first=True):
    """Complete artifacts of ``tenant`` (of format ``fmt``), newest first, judged.

    Each entry: ``art`` (the repository's artifact dict), ``doc`` (manifest or None),
    ``record`` (the verify record or None), ``verified`` (bool) and ``reason``. With
    ``stop_at_first``, stops after the first verified one (fewer reads on S3).
    """
    arts = artifacts if artifacts is not None else repo.artifacts(tenant)
    out = []
    complete = naming.by_recency([a for a in arts if a["complete"] and (fmt is None or a["format"] == fmt)])
    for art in reversed(complete):  # newest first; future-stamped ones (clock skew) last
        entry = {"art": art, "doc": None, "record": None, "verified": False}
        if not art.get("verify_record"):
            entry["reason"] = "never verified (no verify record)"
            out.append(entry)
            continue
        record, problem = _read_record(repo, tenant, art["verify_record"])
        entry["record"] = record
        if problem:
            entry["reason"] = problem
            out.append(entry)
            continue
        if not isinstance(record, dict) or record.get("status") != "PASS":
            entry["verified"], entry["reason"] = judge(record, art, None)
            out.append(entry)
            continue
        doc, problem = read_manifest(repo, tenant, art)
        entry["doc"] = doc
        if problem:
            entry["reason"] = "its manifest is not usable: %s" % problem
            out.append(entry)
            continue
        entry["verified"], entry["reason"] = judge(record, art, doc)
        out.append(entry)
        if entry["verified"] and stop_at_first:
            break
    return out


def no_verified_error(repo, tenant, fmt, judged, option="artifact"):
    what = "%s artifact" % fmt if fmt else "artifact"
    if not judged:
        msg = ("Tenant %s has no verified %s in %s: it has no complete %s at all. Check tenant and repository; "
               "take a backup (pg_backup), then verify it (backup_verify)." % (tenant, what, repo, what))
    else:
        newest = judged[0]
        msg = ("Tenant %s has no verified %s in %s: none of its %d complete %s(s) has a PASS verify record that "
               "matches it (the newest, %s: %s). Run backup_verify on the repository (the playbook "
               "lifeboat.backup.verify) to verify the newest one, or restore %s: latest (the newest complete "
               "artifact, not proven restorable) instead."
               % (tenant, what, repo, len(judged), what, newest["art"]["name"], newest["reason"], option))
    return LifeboatError(msg, option=option, details={
        "tenant": tenant,
        "skipped": [{"artifact": j["art"]["name"], "reason": j["reason"]} for j in judged[:20]],
    })


def latest_verified(repo, tenant, fmt=None, option="artifact"):
    """The newest verified complete artifact of ``tenant``, as a dict; a clear error when there is none.

    Keys: ``art`` (the repository's artifact dict), ``manifest``, ``record``, ``verified_at``,
    ``skipped`` (newer complete artifacts passed over, with the reason).
    """
    judged = candidates(repo, tenant, fmt)
    chosen = [j for j in judged if j["verified"]]
    if not chosen:
        raise no_verified_error(repo, tenant, fmt, judged, option)
    pick = chosen[0]
    return {
        "art": pick["art"],
        "manifest": pick["doc"],
        "record": pick["record"],
        "verified_at": pick["record"].get("checked_at"),
        "skipped": [{"artifact": j["art"]["name"], "reason": j["reason"]} for j in judged if j is not pick],
    }


def verification_summary(choice, selector):
    """What a result says about how the artifact was chosen (no secrets: records hold none)."""
    if choice is None:
        return {"selected_by": selector, "verify_status": None, "verified_at": None, "skipped": []}
    record = choice.get("record") or {}
    return {
        "selected_by": selector,
        "verify_status": record.get("status"),
        "verified_at": record.get("checked_at"),
        "verifier_host": record.get("verifier_host"),
        "skipped": choice.get("skipped", []),
    }


def needed_pg_major(doc):
    """The PostgreSQL major version a restore of this artifact needs (0: none, e.g. SQLite).

    pg_restore must be at least as new as the pg_dump that wrote the archive (the archive
    format grows with it), and the server at least as new as the source server.
    """
    if not isinstance(doc, dict) or doc.get("engine") != "postgresql":
        return 0
    source = doc.get("source") or {}
    majors = [_major(source.get(k)) for k in ("server_version", "pg_dump_version", "pg_dumpall_version")]
    return max(majors + [0])


def _major(version):
    text = str(version or "")
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def manifest_summary(doc):
    """The facts of a manifest a report needs; never a secret (manifests hold none, and no row counts here)."""
    if not isinstance(doc, dict):
        return None
    source = doc.get("source") or {}
    size = doc.get("size") or {}
    encryption = doc.get("encryption") or {}
    return {
        "engine": doc.get("engine"),
        "format": doc.get("format"),
        "source_server_version": source.get("server_version"),
        "source_pg_dump_version": source.get("pg_dump_version") or source.get("pg_dumpall_version"),
        "source_database": source.get("database"),
        "source_schema": source.get("schema"),
        "snapshot_at": doc.get("started_at"),
        "started_at": doc.get("started_at"),
        "finished_at": doc.get("finished_at"),
        "rekeyed_at": doc.get("rekeyed_at"),
        "size_raw": size.get("raw"),
        "size_stored": size.get("stored"),
        "sha256": doc.get("sha256"),
        "compression": (doc.get("compression") or {}).get("algorithm"),
        "recipients": list(encryption.get("recipients") or []),
        "tool_version": doc.get("tool_version"),
        "backup_host": doc.get("backup_host"),
        "tables": len(doc.get("row_counts") or {}),
        "pg_major_needed": needed_pg_major(doc),
    }
