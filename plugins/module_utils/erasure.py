# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Erasure of one tenant by destroying its keys (crypto-shredding): the engine of ``tenant_erase``.

Every artifact of a tenant is its own age stream. When each one is encrypted to the tenant's own
recipients only, destroying the tenant's identities makes every copy unreadable, also the copies
that object lock keeps for months. For one tenant and one repository:

1. list everything of the tenant (artifacts complete or not, manifests, verify records, rekey
   markers, leftovers; on a versioned S3 bucket every version of each) and what object lock holds;
2. refuse, changing nothing, when an artifact is unencrypted or encrypted to a recipient that is
   not the tenant's own (a shared key could still open it), or when a copy lifeboat must keep
   (locked) cannot be proven to be the tenant's own; the refusal lists them and how to rekey;
3. write the erasure record ``<tenant>-<stamp>.erasure.json`` into the tenant's folder (who,
   when, the request's reference, every artifact with its SHA-256, what is deleted and what object
   lock keeps until when), then destroy the identity files given (overwrite, fsync, unlink, fsync
   the folder), then delete whatever retention and object lock allow.

A second run finds the record: it deletes what has become deletable and otherwise changes
nothing. ``backup_verify``, ``backup_prune``, ``backup_info``, the agent's status and metrics and
``dr_restore`` call ``find_record`` and report the tenant as ERASED, not failed; prune calls
``sweep`` to remove the rest once the locks end. Copies of a key outside lifeboat's care (a
password manager, another machine) are out of its reach: the record and the result say so.
"""

import glob
import hashlib
import json
import os
import socket

from . import argspec, crypto, naming
from .errors import LifeboatError, LockBusy
from .files import atomic_write_json, fsync_dir
from .repository import LOCK_NAME, open_repository, s3_options
from .version import TOOL_NAME, TOOL_VERSION

RECORD_VERSION = 1
ERASED = "ERASED"

SPEC = argspec.ArgumentSpec(argspec.merged(
    argspec.S3_CONNECTION,
    repository=dict(type="str"),
    tenant=dict(type="str", required=True),
    tenant_recipients=dict(type="list", elements="str"),
    identity_file=dict(type="list", elements="path"),
    identity_dir=dict(type="path"),
    requested_by=dict(type="str"),
    reference=dict(type="str"),
    allow_missing=dict(type="bool", default=False),
    lock_timeout=dict(type="int", default=0),
    report=dict(type="path"),
), engine_only=argspec.S3_STORAGE)
OPTIONS = SPEC.defaults()

NOT_IN_CARE = ("Copies of the tenant's identity outside lifeboat's care (another machine, a password manager, a "
               "backup of the key folder) are out of its reach: they can still decrypt the kept artifacts; "
               "destroy them too.")


# -- the record ------------------------------------------------------------------------------------

def find_record(repo, tenant, names=None):
    """The newest erasure record of ``tenant`` in ``repo`` as a short summary, or None.

    ``{"record", "location", "erased_at", "reference", "requested_by", "kept"}``; a record that
    cannot be read still marks the tenant erased (``error`` says why)."""
    if naming.is_pseudo_tenant(tenant):
        return None
    try:
        names = repo.names(tenant) if names is None else names
    except LifeboatError:
        return None
    found = sorted(n for n in names if (naming.parse_erasure_record_name(n) or ("",))[0] == tenant)
    if not found:
        return None
    name = found[-1]
    summary = {"record": name, "location": repo.location(tenant, name), "erased_at": None, "reference": None,
               "requested_by": None, "kept": []}
    try:
        doc = repo.read_json(tenant, name)
    except LifeboatError as e:
        return dict(summary, error=str(e))
    if isinstance(doc, dict):
        summary.update(erased_at=doc.get("erased_at"), reference=doc.get("reference"),
                       requested_by=doc.get("requested_by"), recipients=doc.get("recipients") or [],
                       kept=doc.get("kept") or [], artifacts=doc.get("artifacts") or [])
    return summary


def describe(found):
    """One line for people: ``erased on <when> (reference <ref>, record <location>)``."""
    if not found:
        return ""
    parts = ["reference %s" % found["reference"]] if found.get("reference") else []
    parts.append("record %s" % found["location"])
    return "erased on %s (%s)" % (found.get("erased_at") or "an unknown date", ", ".join(parts))


def refuse_backup(repo, tenant):
    """Raise when ``tenant`` was erased in ``repo``: a new backup under that name is refused (backup.py)."""
    found = find_record(repo, tenant)
    if found:
        raise LifeboatError(
            "Tenant %s was %s: lifeboat refuses to back up a tenant it erased. Remove the tenant from the backup "
            "configuration (TENANTS, the tenant lists of the playbooks). To back up a new customer of the same "
            "name, give it another tenant name; or, once the erased tenant's kept artifacts are gone (backup_prune "
            "removes them when their locks end), delete the record %s by hand." % (
                tenant, describe(found), found["location"]), option="tenant", details={"erasure": found})


# -- what the repository holds of a tenant ---------------------------------------------------------

def _kind(tenant, name):
    if name == LOCK_NAME or (naming.parse_erasure_record_name(name) or ("",))[0] == tenant:
        return None  # never an object to delete: the tenant's lock file, the erasure record itself
    info = naming.parse_artifact_name(name)
    if info and info["tenant"] == tenant:
        return "artifact"
    for kind, parse in (("manifest", naming.parse_manifest_name), ("verify_record", naming.parse_verify_record_name)):
        parsed = parse(name)
        if parsed and parsed[0] == tenant:
            return kind
    return "leftover"  # a rekey marker, a partial file of a killed run, a stray file


def _stamp(name):
    for parse in (naming.parse_manifest_name, naming.parse_verify_record_name):
        parsed = parse(name)
        if parsed:
            return parsed[1]
    info = naming.parse_artifact_name(name.lstrip(".").split(".rekey.json")[0])
    return info["stamp"] if info else None


def _lock_words(head, now):
    """(words, until ISO or None) of what object lock holds in a HeadObject answer, or (None, None)."""
    held, until = [], None
    mode, retain = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
    if mode and retain is not None and retain.timestamp() > now.timestamp():
        until = naming.iso(retain)
        held.append("%s retention until %s" % (mode, until))
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        held.append("a legal hold")
    return (" and ".join(held) or None), until


class Store(object):
    """The tenant's objects in one repository: local files, S3 current objects, or every S3 version."""

    def __init__(self, repo, tenant, now, strict=True):
        self.repo, self.tenant, self.now = repo, tenant, now
        try:
            self.versioned = bool(repo.kind == "s3" and repo.versioning(quiet=True))
        except LifeboatError as e:
            if strict:  # the erasure must see every version: it stops and says why
                raise LifeboatError("%s Erasing needs to know whether the bucket keeps earlier versions: give these "
                                    "credentials s3:GetBucketVersioning. Nothing was changed." % e, option="repository")
            repo.warn("%s Earlier versions of erased tenant %s were not looked at: only the current objects were "
                      "deleted." % (e, tenant), tenant)
            self.versioned = False

    def objects(self):
        """[{name, kind, version_id, current, size, lock, locked_until}] (the record and the lock excluded)."""
        if not self.versioned:
            out = []
            for name, size in sorted(self.repo.names(self.tenant).items()):
                kind = _kind(self.tenant, name)
                if kind:
                    out.append({"name": name, "kind": kind, "version_id": None, "current": True, "size": size,
                                "lock": None, "locked_until": None, "delete_marker": False})
            return out
        return self._versions()

    def _call(self, fn, what):
        return self.repo.retry.call(fn, what, self.repo.endpoint_name)

    def _versions(self):
        repo, prefix = self.repo, self.repo.tenant_prefix(self.tenant)
        kwargs, out = {"Bucket": repo.bucket, "Prefix": prefix}, []
        while True:
            page = self._call(lambda: repo.client.list_object_versions(**kwargs),
                              "Listing the versions under s3://%s/%s" % (repo.bucket, prefix))
            for key, marker in (("Versions", False), ("DeleteMarkers", True)):
                for v in page.get(key, []):
                    name = v["Key"][len(prefix):]
                    kind = _kind(self.tenant, name) if name and "/" not in name else None
                    if kind:
                        out.append({"name": name, "kind": kind, "version_id": v.get("VersionId"),
                                    "current": bool(v.get("IsLatest")), "size": v.get("Size", 0), "lock": None,
                                    "locked_until": None, "delete_marker": marker})
            if not page.get("IsTruncated"):
                break
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")
        for o in out:
            if not o["delete_marker"]:
                head = self._call(lambda o=o: repo.client.head_object(
                    Bucket=repo.bucket, Key=repo.key(self.tenant, o["name"]), VersionId=o["version_id"]),
                    "Checking the object lock of %s" % repo.location(self.tenant, o["name"]))
                o["lock"], o["locked_until"] = _lock_words(head, self.now)
        return sorted(out, key=lambda o: (o["name"], not o["current"], o["version_id"] or ""))

    def read_json(self, o):
        if o["version_id"] is None or o["current"]:
            return self.repo.read_json(self.tenant, o["name"])
        body = self._call(lambda: self.repo.client.get_object(
            Bucket=self.repo.bucket, Key=self.repo.key(self.tenant, o["name"]), VersionId=o["version_id"]),
            "Reading %s (version %s)" % (self.repo.location(self.tenant, o["name"]), o["version_id"]))["Body"]
        return json.loads(body.read(4 << 20).decode("utf-8"))

    def sha256(self, o):
        """The SHA-256 of an S3 version's bytes (an earlier version kept by object lock)."""
        body = self._call(lambda: self.repo.client.get_object(
            Bucket=self.repo.bucket, Key=self.repo.key(self.tenant, o["name"]), VersionId=o["version_id"]),
            "Reading %s (version %s)" % (self.repo.location(self.tenant, o["name"]), o["version_id"]))["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def delete(self, o):
        """Delete one object (one version on a versioned bucket: no delete marker is left behind)."""
        if o["version_id"] is None:
            try:
                self.repo.delete(self.tenant, o["name"])
            except FileNotFoundError:
                pass
            except OSError as e:
                raise LifeboatError("Deleting %s failed: %s. Run the erasure again once fixed."
                                    % (self.repo.location(self.tenant, o["name"]), e.strerror), option="repository")
            return
        repo = self.repo
        self._call(lambda: repo.client.delete_object(Bucket=repo.bucket, Key=repo.key(self.tenant, o["name"]),
                                                     VersionId=o["version_id"]),
                   "Deleting %s (version %s)" % (repo.location(self.tenant, o["name"]), o["version_id"]))

    def abort_uploads(self):
        """Open multipart uploads under the tenant's prefix (S3): all aborted, whoever started them."""
        if self.repo.kind != "s3":
            return []
        try:
            uploads = self.repo.open_uploads(self.tenant)
        except LifeboatError as e:
            self.repo.warn("%s Open uploads of tenant %s could not be listed; abort them by hand or let a "
                           "lifecycle rule remove them." % (e, self.tenant), self.tenant)
            return []
        for up in uploads:
            self.repo.abort_upload(up["key"], up["upload_id"])
        return ["%s (upload %s)" % (u["name"], u["upload_id"][:12]) for u in uploads]


# -- the check -------------------------------------------------------------------------------------

def _manifests(store, objects):
    """{(name, version_id): manifest} of every readable manifest (each version on S3), and the problems."""
    docs, problems = {}, []
    for o in objects:
        if o["kind"] != "manifest" or o["delete_marker"]:
            continue
        try:
            doc = store.read_json(o)
        except LifeboatError as e:
            problems.append("%s: %s" % (o["name"], e))
            continue
        if isinstance(doc, dict):
            docs[(o["name"], o["version_id"])] = doc
    return docs, problems


def _recipients(doc):
    enc = doc.get("encryption") if isinstance(doc, dict) else None
    return list((enc or {}).get("recipients") or []) if isinstance(enc, dict) else []


def _problem(recipients, own):
    """(why, fix) when an artifact with these recipients could be opened without the tenant's keys, else None."""
    if not recipients:
        return ("it is not encrypted (written with allow_unencrypted): no key destruction can make it unreadable",
                "delete it and its manifest by hand where object lock allows (or wait until backup_prune rotates it "
                "out), then erase")
    foreign = [r for r in recipients if r not in own]
    if foreign:
        return ("it is also encrypted to %s, which is not the tenant's own key: that key could still open it"
                % ", ".join(foreign),
                "rekey the tenant's artifacts to its own key only first (age_encrypt state: rekeyed with repository, "
                "tenant and recipients: the tenant's own public key; purge_old_versions: true on a versioned bucket), "
                "then erase")
    return None


def assess(store, objects, own, found=None):
    """(artifacts, blockers): one row per distinct artifact content (name, stamp, sha256, recipients),
    and what stops the erasure, each with why and what to do.

    A current artifact must be encrypted to the tenant's own recipients only (copies of it may live where lifeboat
    cannot delete them). An earlier version (a versioned bucket) matters only when object lock keeps it: then its
    SHA-256 must match a manifest version (or the erasure record, ``found``) whose recipients are the tenant's own."""
    docs, problems = _manifests(store, objects)
    artifacts, blockers, by_sha = [], [], {}
    for a in (found or {}).get("artifacts") or []:
        if isinstance(a, dict) and a.get("sha256"):
            by_sha[a["sha256"]] = dict(a, problem=None)  # checked when the record was written
    by_name = set(a.get("name") for a in by_sha.values())
    for (mname, vid), doc in sorted(docs.items(), key=lambda i: (i[0][0], str(i[0][1]))):
        if doc.get("tenant") != store.tenant:
            continue
        sha, recipients = doc.get("sha256"), _recipients(doc)
        row = {"name": doc.get("artifact"), "stamp": doc.get("stamp"), "sha256": sha,
               "size_stored": (doc.get("size") or {}).get("stored"), "recipients": recipients,
               "manifest_version_id": vid}
        by_sha[sha] = dict(row, problem=_problem(recipients, own))
        if not any(a["sha256"] == sha and a["name"] == row["name"] for a in artifacts):
            artifacts.append(row)
        if by_sha[sha]["problem"] and (vid is None or _current(objects, mname, vid)):
            why, fix = by_sha[sha]["problem"]
            blockers.append({"artifact": row["name"], "why": why, "fix": fix})
    for o in objects:
        if o["kind"] != "artifact" or o["delete_marker"] or not o["lock"]:
            continue  # what is deleted now needs no proof: its bytes are gone
        mname = naming.manifest_name(store.tenant, _stamp(o["name"]))
        if o["current"] and any(k[0] == mname and (k[1] is None or _current(objects, mname, k[1])) for k in docs):
            continue  # its current manifest (checked above) speaks for it
        if o["version_id"] is None and o["name"] in by_name:
            continue  # no versions: the erasure record names it (checked when the record was written)
        known = by_sha.get(store.sha256(o)) if o["version_id"] else None
        if known and not known["problem"]:
            continue  # a manifest version or the record, with its SHA-256, proves it is the tenant's own
        why = known["problem"][0] if known else ("no manifest proves to whom it is encrypted (an incomplete "
                                                 "artifact, or an earlier version from before a rekey)")
        fix = ("this copy stays as it is until its lock ends (%s): erase after that (backup_prune, or age_encrypt "
               "state: rekeyed with purge_old_versions: true, removes it then), or remove the lock where your "
               "governance allows" % (o["locked_until"] or "a legal hold is lifted"))
        blockers.append({"artifact": o["name"], "version_id": o["version_id"], "locked": o["lock"],
                         "why": "object lock keeps it (%s) and %s" % (o["lock"], why), "fix": fix})
    for p in problems:
        blockers.append({"artifact": p.split(":")[0], "why": "its manifest cannot be read: %s" % p,
                         "fix": "repair or remove the manifest, then erase"})
    return artifacts, blockers


def _current(objects, name, vid):
    return any(o["name"] == name and o["version_id"] == vid and o["current"] for o in objects)


# -- the keys --------------------------------------------------------------------------------------

def key_files(p, tenant):
    """The identity files to destroy: ``identity_file`` and ``<identity_dir>/<tenant>[.*]``."""
    paths = [os.path.abspath(os.path.expanduser(f)) for f in p["identity_file"] or []]
    if p["identity_dir"]:
        folder = os.path.abspath(os.path.expanduser(p["identity_dir"]))
        paths += [f for f in sorted(glob.glob(os.path.join(glob.escape(folder), glob.escape(tenant) + ".*")))
                  if not f.endswith(".pub")]
        paths += [os.path.join(folder, tenant)] if os.path.lexists(os.path.join(folder, tenant)) else []
        paths += crypto.rotation_identity_files(folder, tenant)  # rotate_tenant_key.yml's .next/ and retired/
    out = []
    for path in paths:
        if path in [k["path"] for k in out]:
            continue
        if not os.path.lexists(path):
            out.append({"path": path, "present": False, "public_keys": []})
            continue
        if os.path.islink(path) or not os.path.isfile(path):
            raise LifeboatError("Identity file %s is not a regular file (a symlink or a folder): lifeboat destroys "
                                "regular files only. Give the file it points to. Nothing was changed." % path,
                                option="identity_file")
        try:
            publics = crypto.public_key_of_identity_file(path)
        except OSError as e:
            raise LifeboatError("Cannot read identity file %s: %s. Nothing was changed." % (path, e.strerror),
                                option="identity_file")
        out.append({"path": path, "present": True, "public_keys": publics})
    return out


def destroy(path):
    """Overwrite the file with zeros, fsync, unlink, fsync its folder. On a copy-on-write or journaling
    file system (btrfs, ZFS, data=journal) or an SSD the old blocks may survive the overwrite: the
    unlink and the record are what lifeboat can promise."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        written = 0
        while written < size:
            written += os.write(fd, b"\0" * min(65536, size - written))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    fsync_dir(os.path.dirname(path))


# -- the run ---------------------------------------------------------------------------------------

def _who(p):
    if p["requested_by"]:
        return p["requested_by"]
    try:
        user = os.getlogin()
    except OSError:
        import pwd  # here: only when no one was named

        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a container's user without a passwd entry
            user = "uid%d" % os.getuid()
    return "%s@%s" % (user, socket.gethostname())


def _own(p, keys, found):
    own = []
    for text in p["tenant_recipients"] or []:
        own.append(crypto.parse_recipient(text, "tenant_recipients")[1])
    for k in keys:
        own.extend(k["public_keys"])
    own.extend((found or {}).get("recipients") or [])
    return sorted(set(own))


def sweep(repo, tenant, check_mode, now=None, store=None):
    """Delete whatever object lock allows of an erased tenant: ``(deleted, kept)`` object rows.

    Manifests first, then artifacts and the rest, so an interruption never leaves a manifest without
    its data. Locked objects stay (kept, with ``locked_until``)."""
    store = store or Store(repo, tenant, now or naming.utcnow(), strict=False)
    objects = store.objects()
    order = {"manifest": 0, "artifact": 1, "verify_record": 2, "leftover": 3}
    doomed = sorted((o for o in objects if not o["lock"]), key=lambda o: (order[o["kind"]], o["name"]))
    kept = [o for o in objects if o["lock"]]
    if not check_mode:
        for o in doomed:
            store.delete(o)
        store.abort_uploads()
    return doomed, kept


def _row(o):
    return dict((k, o[k]) for k in ("name", "kind", "version_id", "size", "lock", "locked_until")
                if o.get(k) is not None or k in ("name", "kind"))


def kept_until(kept):
    """Until when object lock keeps the last of ``kept`` (object rows): an ISO time, or words for a legal hold."""
    return max((o.get("locked_until") or "" for o in kept), default="") or "a legal hold is lifted"


def _plan_text(tenant, repo, deleted, kept, check_mode):
    verb = "would delete" if check_mode else "deleted"
    text = "%s %d object(s) of tenant %s in %s" % (verb, len(deleted), tenant, repo)
    if kept:
        until = kept_until(kept)
        text += "; %d kept under object lock (provably unreadable: no identity left in lifeboat's care), the last " \
                "until %s (backup_prune deletes them once their locks end)" % (len(kept), until)
    return text


def run(params, check_mode=False, now=None):
    p = SPEC.resolve(params)
    tenant = naming.validate_tenant(p["tenant"])
    now = now or naming.utcnow()
    keys = key_files(p, tenant)
    result = {"changed": False, "tenant": tenant, "repository": None, "erased": False, "already_erased": False,
              "identity_files": keys, "deleted": [], "kept": [], "artifacts": [], "record": None,
              "check_mode": bool(check_mode), "warnings": []}
    if not p["repository"]:
        if not (p["identity_file"] or p["identity_dir"]):
            raise LifeboatError("Give repository (the tenant's artifacts to erase) and/or identity_file or "
                                "identity_dir (the tenant's keys to destroy).", option="repository")
        return _finish(p, result, keys, check_mode, "tenant %s: no repository given, keys only" % tenant)
    repo = open_repository(p["repository"], create=False, **s3_options(p))
    repo.check_readable()
    result["repository"] = str(repo)
    names = repo.names(tenant)
    if not p["allow_missing"] and not any(_kind(tenant, n) or naming.parse_erasure_record_name(n) for n in names):
        raise LifeboatError(
            "Tenant %s has nothing in %s (no artifact, manifest or erasure record): check the name (a typo would "
            "write an erasure record for a tenant that never existed) and the repository. If the tenant truly has "
            "no backup here, set allow_missing: true. Nothing was changed." % (tenant, repo), option="tenant")
    try:
        lock = repo.lock(tenant, "erasure of tenant %s" % tenant, p["lock_timeout"] or 0).acquire() \
            if not check_mode else None
    except LockBusy as e:
        raise LifeboatError("%s. A backup, prune or restore of tenant %s is running: erase it once that run ended. "
                            "Nothing was changed." % (e, tenant), option="lock_timeout")
    try:
        return _erase(p, repo, tenant, keys, now, check_mode, result)
    finally:
        if lock is not None:
            lock.release()


def _erase(p, repo, tenant, keys, now, check_mode, result):
    result["_repo"] = repo
    found = find_record(repo, tenant)
    own = _own(p, keys, found)
    store = Store(repo, tenant, now)
    objects = store.objects()
    if not own:
        raise LifeboatError(
            "No key of tenant %s is known: give identity_file or identity_dir (the identities to destroy; their "
            "public keys are the tenant's own recipients) or tenant_recipients. Nothing was changed." % tenant,
            option="tenant_recipients")
    artifacts, blockers = assess(store, objects, own, found)
    result["artifacts"] = artifacts
    if blockers:
        lines = "; ".join("%s%s: %s (%s)" % (b["artifact"], " version %s" % b["version_id"] if b.get("version_id") else "",
                                             b["why"], b["fix"]) for b in blockers)
        raise LifeboatError(
            "Refusing to erase tenant %s in %s: %d artifact(s) could still be opened after its keys are destroyed: "
            "%s. Nothing was changed (no key destroyed, no record written, nothing deleted)."
            % (tenant, repo, len(blockers), lines), option="tenant", details={"blockers": blockers})
    deleted, kept = sweep(repo, tenant, True, now, store)
    result.update(deleted=[_row(o) for o in deleted], kept=[_row(o) for o in kept], recipients=own)
    if found:
        result.update(already_erased=True, erased=True, record=found["location"], erased_at=found["erased_at"],
                      reference=found["reference"])
        if not check_mode and deleted:
            sweep(repo, tenant, False, now, store)
        what = "tenant %s was already %s" % (tenant, describe(found))
        if deleted:
            what += "; " + _plan_text(tenant, repo, deleted, kept, check_mode)
        elif kept:
            what += "; nothing more is deletable yet: " + _plan_text(tenant, repo, deleted, kept, check_mode)
        else:
            what += "; nothing of it is left in the repository"
        result["changed"] = bool(deleted)
        return _finish(p, result, keys, check_mode, what)
    stamp = naming.format_stamp(now)
    name = naming.erasure_record_name(tenant, stamp)
    record = {
        "erasure_version": RECORD_VERSION, "tool": TOOL_NAME, "tool_version": TOOL_VERSION, "tenant": tenant,
        "erased_at": naming.iso(now), "requested_by": _who(p), "reference": p["reference"],
        "host": socket.gethostname(), "repository": str(repo), "recipients": own,
        "identities_destroyed": [{"path": k["path"], "public_keys": k["public_keys"]} for k in keys if k["present"]],
        "artifacts": artifacts,
        "deleted": [_row(o) for o in deleted],
        "kept": [_row(o) for o in kept],
        "note": "Every artifact listed was encrypted to the recipients above only; their identities were destroyed "
                "where lifeboat keeps them. Kept objects stay until their object lock ends; backup_prune deletes "
                "them then. " + NOT_IN_CARE,
    }
    result.update(changed=True, erased=True, record=repo.location(tenant, name), erased_at=record["erased_at"],
                  reference=p["reference"], requested_by=record["requested_by"])
    if not check_mode:
        repo.write_json(tenant, name, record)
        result["record_document"] = record
    plan = _plan_text(tenant, repo, deleted, kept, check_mode)
    what = "tenant %s %s erased: record %s; %s" % (tenant, "would be" if check_mode else "is", result["record"], plan)
    if not check_mode:
        _destroy_keys(keys)
        sweep(repo, tenant, False, now, store)
    return _finish(p, result, keys, check_mode, what, destroyed_already=True)


def _destroy_keys(keys):
    for k in keys:
        if k["present"]:
            try:
                destroy(k["path"])
            except OSError as e:
                raise LifeboatError("Destroying identity file %s failed: %s. The erasure record is written; fix "
                                    "this and run the erasure again (it finishes what is left)."
                                    % (k["path"], e.strerror), option="identity_file")


def _finish(p, result, keys, check_mode, what, destroyed_already=False):
    present = [k for k in keys if k["present"]]
    if present and not destroyed_already and not check_mode:
        _destroy_keys(present)
    if present:
        result["changed"] = True
        what += "; %s %d identity file(s): %s" % ("would destroy" if check_mode else "destroyed", len(present),
                                                  ", ".join(k["path"] for k in present))
    else:
        looked = [k["path"] for k in keys] + (["%s/%s.*" % (p["identity_dir"].rstrip("/"), result["tenant"])]
                                              if p["identity_dir"] else [])
        what += "; no identity file of the tenant is left where lifeboat was told to look (%s)" % (
            ", ".join(looked) or "no identity_file or identity_dir given")
    result["identities_left"] = [] if not check_mode else [k["path"] for k in present]
    result["warnings"] = list(result.get("_repo").warnings_for(result["tenant"])) if result.get("_repo") else []
    result.pop("_repo", None)
    result["msg"] = what[0].upper() + what[1:] + ". " + NOT_IN_CARE
    if p["report"]:
        result["report_path"] = atomic_write_json(p["report"], dict(
            (k, v) for k, v in result.items() if k not in ("warnings", "record_document")))
    return result


def verify_report(tenant, found):
    """backup_verify's row of an erased tenant: ERASED, not FAIL (no artifact to check, on purpose)."""
    detail = "tenant %s was %s; nothing to verify: its artifacts were deleted or are kept unreadable under object " \
             "lock. Remove it from the tenants to verify." % (tenant, describe(found))
    return {"tenant": tenant, "artifact": None, "status": ERASED, "warnings": [], "failed_checks": [],
            "checks": [{"name": "erasure", "status": ERASED, "seconds": 0.0, "detail": detail}], "erased": found,
            "artifact_name": None, "selected_by": None, "previously_verified_at": None,
            "source_server_version": None, "snapshot_at": None}


def prune_tenant(repo, tenant, found, check_mode, lock_timeout=0, now=None):
    """backup_prune's handling of an erased tenant: whatever its policy says, everything object lock allows is
    deleted (``sweep``), under the tenant's lock. Returns its report entry, with ``deleted`` and ``kept`` rows."""
    entry = {"erased": found, "lock_holder": None, "skipped": None, "artifacts": [], "deleted": [], "kept": []}
    lock = None
    if not check_mode:
        try:
            lock = repo.lock(tenant, "prune of erased tenant %s" % tenant, lock_timeout).acquire()
        except LockBusy as e:
            return dict(entry, skipped=str(e))
    try:
        deleted, kept = sweep(repo, tenant, check_mode, now)
    finally:
        if lock is not None:
            lock.release()
    why = "tenant %s was %s" % (tenant, describe(found))
    for objects, decision, reason in ((deleted, "delete", why), (kept, "keep", why + "; kept: object lock holds it")):
        for o in objects:
            info = naming.parse_artifact_name(o["name"])
            if o["kind"] == "artifact" and info:
                entry["artifacts"].append({
                    "name": o["name"], "stamp": info["stamp"], "format": info["format"], "size": o["size"] or 0,
                    "complete": None, "verified": False, "decision": decision, "erased": True,
                    "reasons": [reason + (" (%s)" % o["lock"] if o["lock"] else "")]})
    entry.update(deleted=[_row(o) for o in deleted], kept=[_row(o) for o in kept])
    return entry


class Erased(str):
    """The words ``describe`` gives, carrying the record's summary (``found``): what discovery's ``newest`` returns
    as its reason for an erased tenant, so that the tenant is reported erased, never unprotected or late."""

    def __new__(cls, found):
        self = str.__new__(cls, describe(found))
        self.found = found
        return self
