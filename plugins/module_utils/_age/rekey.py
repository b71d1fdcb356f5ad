# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""State ``rekeyed``: age files (one, or every artifact of a repository) re-encrypted to new recipients.

The old ciphertext is decrypted in the age child process and encrypted again here, streaming, without
plaintext on disk; the new ciphertext is published atomically (a rename, or S3's completion), then the
record or manifest is rewritten. Interrupted runs are finished from a marker; S3 object versions that still
hold the old ciphertext are reported, or purged on request.
"""

import hashlib
import json
import os
import stat
import time

from .. import age_stream, age_tar, crypto, files, manifest, naming
from ..age_stream import AgeProcess, WorkerError
from ..errors import LifeboatError
from ..pipeline import HashingReader, HashingWriter
from ..repository import describe_os_error, open_repository, s3_options
from ..version import TOOL_VERSION
from .decrypt import artifact_manifest
from .records import RECORD_VERSION, AtomicFile, read_record, record_path, write_json_atomic
from .request import worker_failure


def rekeyed(req, check_mode):
    if req.p["passphrase"]:
        raise LifeboatError("state rekeyed re-encrypts to recipients; passphrase files are not rekeyed (decrypt and "
                            "encrypt them again).", option="passphrase")
    objs, texts = req.recipients()
    if bool(req.p["src"]) == bool(req.p["repository"]):
        raise LifeboatError("state rekeyed needs either src (one age file) or repository (every artifact, of tenant "
                            "if given).", option="src")
    # with identity_dir, each tenant's artifacts are opened with its own identity file (Request.identity)
    identity = None if req.p["identity_dir"] else req.identity()
    targets = []
    repo = None
    if req.p["repository"]:
        repo = open_repository(req.p["repository"], create=False, **s3_options(req.p))
        repo.check_readable()
        tenants = [req.p["tenant"]] if req.p["tenant"] else repo.tenants()
        for tenant in tenants:
            targets.extend(_repository_targets(repo, tenant))
    else:
        src = req.p["src"]
        if not os.path.isfile(src):
            raise LifeboatError("src %s does not exist or is not a file." % src, option="src")
        found = artifact_manifest(src)
        if found:
            repo = open_repository(os.path.dirname(os.path.dirname(src)), create=False)
            info = naming.parse_artifact_name(os.path.basename(src))
            targets.append(_Target(repo, info["tenant"], os.path.basename(src), found[0], None))
        else:
            targets.append(_Target(None, None, src, None, read_record(record_path(src))))
    wanted = sorted(texts)
    done, skipped = [], []
    for t in targets:
        t.pending = _interrupted_rekey(t, wanted)
        reason = _INTERRUPTED if t.pending else t.reason(wanted, req.p["force"])
        entry = {"artifact": t.location(), "recipients_before": t.recipients()}
        if reason is None:
            entry["action"] = "unchanged"
            skipped.append(entry)
            continue
        entry["reason"] = reason
        if t.pending:
            entry["action"] = "would finish the interrupted rekey" if check_mode else "finished the interrupted rekey"
        else:
            entry["action"] = "would rekey" if check_mode else "rekeyed"
        done.append(entry)
    purge = bool(req.p["purge_old_versions"])
    s3 = repo is not None and repo.supports_versions
    versioning = _versioning(repo, purge) if s3 and (purge or done) else None
    result = {"changed": bool(done), "recipients": texts, "rekeyed": done, "unchanged": skipped,
              "purged_versions": [], "warnings": [],
              "diff": {"before": {e["artifact"]: e["recipients_before"] for e in done},
                       "after": {e["artifact"]: wanted for e in done}}}
    if purge and s3 and versioning and check_mode:
        # Earlier versions that exist now; a real run deletes them and the ones its rekey replaces.
        existing = []
        for t in targets:
            existing.extend(_old_versions(t))
        result["would_purge"] = existing
        if existing:
            result["changed"] = True
    if check_mode:
        result["msg"] = "Check mode: would rekey %d artifact(s), %d already use these recipients." % (
            len(done), len(skipped))
        if purge and s3 and versioning:
            result["msg"] += " Would delete %d earlier version(s) now present%s." % (
                len(result["would_purge"]), ", and those the rekey replaces" if done else "")
        _purge_notes(result, req, repo, s3, versioning, done, check_mode)
        return result
    purged, refused = [], []
    by_key = dict((e["artifact"], e) for e in done)
    for t in targets:
        entry = by_key.get(t.location())
        if t.repo is not None:
            if entry is None and not (purge and s3 and versioning):
                continue
            with t.repo.lock(t.tenant, "age_encrypt rekey of %s" % t.name, req.lock_timeout):
                if entry is not None:
                    t.repo.remove_partials(t.tenant)
                    finished = _finish_interrupted(t, texts) if t.pending else None
                    if finished is None and t.pending:
                        entry.update(action="rekeyed", reason=t.reason(wanted, req.p["force"]) or entry["reason"])
                    entry.update(finished or _rekey_one(t, objs, texts, identity or req.identity(t.tenant)))
                if purge and s3 and versioning:
                    try:
                        found = t.repo.purge_old_versions(t.tenant, t.name)
                    except LifeboatError as e:
                        if not hasattr(e, "refused"):
                            raise
                        found = e.deleted
                        refused.extend(e.refused)
                    purged.extend(found)
        elif entry is not None:
            entry.update(_rekey_one(t, objs, texts, identity or req.identity(t.tenant)))
    result["purged_versions"] = purged
    if purged:
        result["changed"] = True
    _purge_notes(result, req, repo, s3, versioning, done, check_mode)
    if repo is not None:  # a lone file has no repository
        result["warnings"].extend(repo.warnings)  # S3 housekeeping, guarantees the store lacks
    result["msg"] = "Rekeyed %d artifact(s) to %d recipient(s); %d already used them." % (
        len(done), len(texts), len(skipped))
    if purge and s3 and versioning:
        result["msg"] += " Deleted %d earlier version(s)." % len(purged)
    if refused:
        raise LifeboatError(
            "%s But S3 refused to delete %d earlier version(s) that hold old ciphertext: %s. An object-lock retention "
            "or legal hold keeps a version until it ends (S3 answers AccessDenied); a bucket policy may deny "
            "s3:DeleteObjectVersion. Delete them once allowed (run again with purge_old_versions: true), or let a "
            "noncurrent-version expiration rule (lifeboat.backup.s3_lifecycle) remove them."
            % (result["msg"], len(refused), "; ".join(
                "s3://%s/%s version %s (AWS error %s)" % (repo.bucket, r["key"], r["version_id"], r["aws_error_code"])
                for r in refused)),
            option="purge_old_versions",
            details={"rekeyed": [e["artifact"] for e in done], "purged_versions": purged,
                     "refused_versions": [{"key": r["key"], "version_id": r["version_id"],
                                           "aws_error_code": r["aws_error_code"]} for r in refused]})
    return result


def _versioning(repo, purge):
    """The bucket's versioning status; "Unknown" when these credentials may not read it (s3:GetBucketVersioning).

    Without ``purge`` it is read only to warn that a versioned bucket keeps the old ciphertext: a store that does
    not implement versioning keeps none, and that needs no warning."""
    try:
        return repo.versioning(quiet=not purge)
    except LifeboatError as e:
        if (e.details or {}).get("aws_error_code") not in ("AccessDenied", "403"):
            raise
        return "Unknown"  # then a purge lists the versions (s3:ListBucketVersions) and deletes what it finds


_INTERRUPTED = ("an earlier run published the rekeyed ciphertext but stopped before rewriting the manifest: "
                "the manifest is rewritten for it")


def _old_versions(t):
    out = []
    if t.repo is None or not hasattr(t.repo, "old_versions"):
        return out
    out.extend(t.repo.old_versions(t.tenant, t.name))
    info = naming.parse_artifact_name(t.name)
    out.extend(t.repo.old_versions(t.tenant, naming.manifest_name(info["tenant"], info["stamp"])))
    return out


def _purge_notes(result, req, repo, s3, versioning, done, check_mode):
    if req.p["purge_old_versions"]:
        if repo is not None and not s3:
            result["purge_note"] = ("No earlier versions to delete: local repositories keep no versions (file-system "
                                    "snapshots and copies are not touched).")
        elif s3 and not versioning:
            result["purge_note"] = ("No earlier versions to delete: versioning was never enabled on the bucket %s, so "
                                    "rekeying replaced each object in place and no earlier version holds the old "
                                    "ciphertext." % repo.bucket)
        elif s3 and versioning == "Suspended":
            result["purge_note"] = ("Versioning of the bucket %s is suspended: rekeying replaced the current (null) "
                                    "versions in place; earlier versions kept from when versioning was on were "
                                    "deleted." % repo.bucket)
    elif s3 and versioning and done:
        result["warnings"].append(
            "The bucket %s %s: the old ciphertext of the %d rekeyed artifact(s), readable with the old identities, "
            "stays in earlier object versions until a noncurrent-version expiration rule (lifeboat.backup.s3_lifecycle) "
            "removes them, or until you run again with purge_old_versions: true."
            % (repo.bucket, "may be versioned (its versioning could not be read)" if versioning == "Unknown"
               else "is versioned", len(done)))


class _Target(object):
    """One age file to rekey: a repository artifact (with its manifest) or a lone file."""

    def __init__(self, repo, tenant, name, doc, record):
        self.repo, self.tenant, self.name = repo, tenant, name  # no repo: name is the path of a lone file
        self.doc, self.record = doc, record  # an artifact's manifest, or a lone file's sidecar record
        self.pending = None  # the marker of an interrupted rekey whose manifest is still the old one

    def location(self):
        return self.repo.location(self.tenant, self.name) if self.repo is not None else self.name

    def recipients(self):
        if self.doc is not None:
            return sorted((self.doc.get("encryption") or {}).get("recipients") or [])
        return (self.record or {}).get("recipients")

    def reason(self, wanted, force):
        if force:
            return "force: true"
        if self.doc is not None:
            return None if self.recipients() == wanted else "recipients differ from the manifest's"
        if not self.record:
            return "no record of its recipients"
        if self.record.get("recipients") != wanted:
            return "recipients differ from the record's"
        if age_tar.file_sha256(self.name) != self.record.get("sha256"):
            return "the file changed since the record was written"
        return None


def _repository_targets(repo, tenant):
    out = []
    for a in repo.artifacts(tenant):
        if not a["complete"] or not a["encrypted"]:
            continue
        doc = repo.read_json(tenant, a["manifest"])
        manifest.validate(doc, repo.location(tenant, a["manifest"]))
        out.append(_Target(repo, tenant, a["name"], doc, None))
    return out


def recipients_digest(texts):
    """SHA-256 over the sorted recipients, one a line: names a recipient set in a short marker."""
    return hashlib.sha256("\n".join(sorted(texts)).encode("utf-8")).hexdigest()


# Crash safety of a repository rekey. The new ciphertext is published first, the manifest rewritten second; a
# run that dies in between leaves a manifest whose SHA-256 is the old ciphertext's. So that the next run can tell
# this from damage, the rekey leaves a marker before publishing: on S3, metadata of the new object itself
# (lifeboat-rekey-of: the SHA-256 of the ciphertext it replaces, lifeboat-rekey-to: the digest of the recipient
# set), atomic with it; in a local repository, a sidecar ".<artifact>.rekey.json" (0600, fsynced) written after
# the new ciphertext is complete and checked and before the rename, removed once the manifest is rewritten.


def _marker_path(t):
    return t.repo.path_of(t.tenant, naming.rekey_marker_name(t.name))


def _in_local_repository(t):
    return t.repo is not None and t.repo.is_local


def _read_marker(t):
    if hasattr(t.repo, "rekey_marker"):
        return t.repo.rekey_marker(t.tenant, t.name)
    if not _in_local_repository(t):
        return None
    try:
        with open(_marker_path(t), "rb") as f:
            data = json.loads(f.read(1 << 16).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_marker(t):
    if _in_local_repository(t):
        try:
            os.unlink(_marker_path(t))
            files.fsync_dir(os.path.dirname(_marker_path(t)))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise LifeboatError(describe_os_error(e, "Removing %s" % _marker_path(t)), option="repository")


def _interrupted_rekey(t, wanted):
    """The marker of a rekey of ``t`` that published its ciphertext but not its manifest, else None."""
    if t.repo is None or t.doc is None:
        return None
    marker = _read_marker(t)
    if not marker or not marker.get("of") or marker.get("of") != t.doc.get("sha256"):
        return None  # no rekey, or one whose manifest was rewritten (the manifest holds the new SHA-256)
    if marker.get("sha256"):  # a local sidecar, written before the rename: did the rename happen?
        if age_tar.file_sha256(t.repo.path_of(t.tenant, t.name)) != marker["sha256"]:
            return None  # no: the old ciphertext is still there (or something else, which the rekey reports)
    if marker.get("to") != recipients_digest(wanted):
        raise LifeboatError(
            "%s was rekeyed by an earlier run that stopped before rewriting its manifest, to a recipient set other "
            "than recipients (the manifest still names the old recipients and the old SHA-256). Run again with the "
            "recipients of that run to finish it (the manifest is then rewritten without decrypting anything), and "
            "then rekey to the new recipients with an identity of that set." % t.location(), option="recipients")
    return marker


def _finish_interrupted(t, texts):
    """Rewrite the manifest of an artifact whose rekeyed ciphertext was published by a run that died before."""
    path = t.location()
    t0 = time.monotonic()
    src = t.repo.open_read(t.tenant, t.name)
    try:
        first = src.read(age_stream.HEADER_MAX)
        header = age_stream.header_of(first, path, option="repository")
        sha, count = age_tar.sha256_of(src, first)
    finally:
        src.close()
    if sha == t.doc.get("sha256"):
        # The marker was left by a run killed before it published: the old ciphertext is intact and current.
        _remove_marker(t)
        return None
    marker = t.pending
    stanzas = [s for s in header["stanzas"] if not s.endswith("-grease")]
    if marker.get("sha256") and (marker.get("sha256") != sha or marker.get("size") != count):
        raise LifeboatError("%s is neither the ciphertext its manifest names nor the one the interrupted rekey wrote: "
                            "it was replaced or damaged. Check it with backup_verify." % path, option="repository")
    if "scrypt" in stanzas or len(stanzas) != len(set(texts)):
        raise LifeboatError("%s was rekeyed by an interrupted run, but its age header has %s where %d recipient(s) "
                            "were expected: it was replaced or damaged. Check it with backup_verify."
                            % (path, age_stream.describe_stanzas(header["stanzas"]), len(set(texts))),
                            option="repository")
    doc = _rekeyed_manifest(t, texts, sha, count)
    _write_manifest(t, doc)
    _remove_marker(t)
    return {"artifact": path, "sha256": sha, "size": count, "seconds": round(time.monotonic() - t0, 3),
            "recovered": True}


def _rekeyed_manifest(t, texts, sha, size):
    doc = dict(t.doc)
    doc["encryption"] = dict(doc.get("encryption") or {}, algorithm="age", recipients=list(texts))
    doc["size"] = dict(doc["size"], stored=size)
    doc["sha256"] = sha
    doc["rekeyed_at"] = naming.iso(naming.utcnow())
    return doc


def _write_manifest(t, doc):
    info = naming.parse_artifact_name(t.name)
    mname = naming.manifest_name(info["tenant"], info["stamp"])
    replace_json = getattr(t.repo, "replace_json", None)
    if replace_json is not None:
        replace_json(t.tenant, mname, doc)
    else:
        write_json_atomic(t.repo.path_of(t.tenant, mname), doc, replace=True)


def _replacing_writer(t, raw, texts):
    if t.repo is None:
        return AtomicFile(t.name, stat.S_IMODE(os.stat(t.name).st_mode))
    factory = getattr(t.repo, "new_replacing_writer", None)
    if factory is not None:
        return factory(t.tenant, t.name, if_match=getattr(raw, "etag", None),
                       metadata={"lifeboat-rekey-of": t.doc["sha256"], "lifeboat-rekey-to": recipients_digest(texts)})
    if t.repo.is_local:
        return AtomicFile(t.repo.path_of(t.tenant, t.name), 0o600)
    raise LifeboatError("Rekeying artifacts in a %s repository is not supported yet." % t.repo.kind,
                        option="repository")


def _rekey_one(t, objs, texts, identity):
    """Decrypt in a child, encrypt here, publish (rename, or S3's atomic completion), then the record/manifest."""
    path = t.location()
    if t.repo is None:
        header = age_stream.read_header(path)
    else:  # through the repository's reader, so that other kinds of repository work alike
        head = t.repo.open_read(t.tenant, t.name)
        try:
            header = age_stream.header_of(head.read(age_stream.HEADER_MAX), path)
        finally:
            head.close()
    if "scrypt" in header["stanzas"]:
        raise LifeboatError("%s is passphrase-encrypted; state rekeyed handles files encrypted to recipients."
                            % path, option="src")
    text, where = identity
    raw = t.repo.open_read(t.tenant, t.name) if t.repo is not None else open(path, "rb", buffering=0)
    writer = None
    proc = None
    t0 = time.monotonic()
    try:
        source = HashingReader(raw)
        writer = _replacing_writer(t, raw, texts)
        pyrage = crypto.require_pyrage()
        proc = AgeProcess("decrypt", text, source=source)
        cipher = HashingWriter(writer)
        try:
            pyrage.encrypt_io(proc, cipher, objs, armored=header["armored"])
            proc.finish()
        except WorkerError as e:
            raise worker_failure(e, path, header, where, nothing="it was not rekeyed")
        except pyrage.EncryptError as e:
            raise LifeboatError("age encryption failed while rekeying %s: %s." % (path, e))
        old_sha = source.sha256.hexdigest()
        if t.doc is not None and (t.doc.get("sha256") != old_sha or (t.doc.get("size") or {}).get("stored") != source.count):
            raise LifeboatError("%s does not match its manifest (SHA-256 or size differ): it was replaced or damaged; "
                                "it was not rekeyed. Check it with backup_verify." % path, option="repository")
        if t.doc is None:
            # A lone file: the record goes first. Should the rename not happen, the next run sees a file that does
            # not match its record and rekeys it again (the old identity still opens it).
            rec = dict(t.record or {}, record_version=RECORD_VERSION, tool="lifeboat.backup age_encrypt",
                       tool_version=TOOL_VERSION, recipients=sorted(texts), passphrase=False, armor=header["armored"],
                       sha256=cipher.hexdigest(), size=cipher.count, rekeyed_at=naming.iso(naming.utcnow()))
            write_json_atomic(record_path(path), rec)
        elif _in_local_repository(t):
            write_json_atomic(_marker_path(t), {"of": old_sha, "to": recipients_digest(texts),
                                                "sha256": cipher.hexdigest(), "size": cipher.count})
        published = writer.commit(replace=True) if isinstance(writer, AtomicFile) else writer.commit()
    except BaseException:
        # A local marker written just before a failed rename stays: the next run hashes the artifact and finds
        # the old ciphertext (the marker is then ignored) or the new one (the manifest is then rewritten).
        if writer is not None:
            writer.abort()
        raise
    finally:
        if proc is not None:
            proc.close()
        raw.close()
    if t.doc is not None:
        _write_manifest(t, _rekeyed_manifest(t, texts, cipher.hexdigest(), cipher.count))
        _remove_marker(t)
    seconds = time.monotonic() - t0
    return {"artifact": published, "sha256": cipher.hexdigest(), "size": cipher.count, "seconds": round(seconds, 3)}
