# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""State ``decrypted``: an age file, or a repository artifact, to ``dest`` (a file, or a folder for a bundle).

The age child process decrypts (Plaintext pulls from it), zstd decompresses here, and the result is compared
with ``dest`` before anything is written: a file goes through AtomicFile, a bundle through age_tar's staging.
"""

import contextlib
import io
import json
import os
import shutil
import stat

from .. import age_stream, age_tar, crypto, manifest, naming, selection
from ..age_stream import PASSPHRASE_MAX_BYTES, AgeProcess, WorkerError
from ..errors import LifeboatError
from ..pipeline import HashingReader, HashingWriter, zstd_decompressor
from ..repository import open_repository, s3_options
from .records import AtomicFile, ensure_parent
from .request import CHUNK, worker_failure


def _strip_suffixes(path):
    name = os.path.basename(path)
    for suffix in (".asc", ".age"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    compressed = name.endswith(".zst")
    if compressed:
        name = name[:-4]
    return name, compressed


def _decrypt_layout(req, src):
    name, compressed_by_name = _strip_suffixes(src)
    fmt = req.p["format"]
    if fmt == "auto":
        fmt = "tar" if name.endswith(".tar") else "file"
    comp = req.p["compression"]
    if comp == "auto":
        comp = "zstd" if compressed_by_name else "none"
    return fmt, comp


class Plaintext(object):
    """The decrypted (and decompressed) content of src, as a pull reader."""

    def __init__(self, req, src, comp, hash_cipher=True, stored=None):
        """``stored``: (repository, tenant, name) when src is a repository artifact (local or S3)."""
        self.src = src
        self.proc = None
        if stored is None:
            self.header = age_stream.read_header(src)
            raw = open(src, "rb", buffering=0)
        else:
            repo, tenant, name = stored
            head = repo.open_read(tenant, name)
            try:
                self.header = age_stream.header_of(head.read(age_stream.HEADER_MAX), src)
            finally:
                head.close()
            raw = repo.open_read(tenant, name)
        self.cipher = HashingReader(raw, hashing=hash_cipher)
        self.raw = raw
        passphrase_file = "scrypt" in self.header["stanzas"]
        try:
            if passphrase_file:
                if not req.p["passphrase"]:
                    raise LifeboatError("%s is encrypted with a passphrase: set passphrase." % src, option="passphrase")
                self.reader = io.BytesIO(self._passphrase_decrypt(req.p["passphrase"]))
                self.where = "the passphrase"
            else:
                if req.p["passphrase"]:
                    raise LifeboatError(
                        "%s is encrypted to recipients (%s), not with a passphrase: give identity_file, identity or "
                        "%s instead of passphrase." % (
                            src, age_stream.describe_stanzas(self.header["stanzas"]), crypto.IDENTITY_ENV),
                        option="passphrase")
                info = naming.parse_artifact_name(os.path.basename(src)) or {}
                text, self.where = req.identity(req.p["tenant"] or info.get("tenant"))
                self.proc = AgeProcess("decrypt", text, source=self.cipher)
                text = None
                self.reader = self.proc
            if comp == "zstd":
                self.reader = zstd_decompressor().stream_reader(self.reader, read_size=CHUNK)
        except BaseException:
            self.close()
            raise

    def _passphrase_decrypt(self, passphrase):
        limit = int(PASSPHRASE_MAX_BYTES * 1.4) + (1 << 16)
        parts, size = [], 0
        while size <= limit:
            part = self.cipher.read(limit + 1 - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
        data = b"".join(parts)
        parts = None
        if len(data) > limit:
            raise LifeboatError(
                "%s is larger than the %s passphrase limit: passphrase decryption works in memory only (pyrage)."
                % (self.src, naming.human_size(PASSPHRASE_MAX_BYTES)), option="passphrase")
        pyrage = crypto.require_pyrage()
        try:
            return pyrage.passphrase.decrypt(data, passphrase)
        except pyrage.DecryptError as e:
            if "failed" in str(e).lower():
                raise LifeboatError("The passphrase does not decrypt %s: wrong passphrase (or a modified header). "
                                    "Nothing was written to dest." % self.src, option="passphrase")
            raise LifeboatError("%s is truncated or was modified after it was written (%s). Nothing was written to "
                                "dest; use an intact copy." % (self.src, e), option="src")

    def read(self, n=-1):
        return self.reader.read(n)

    def readable(self):
        return True

    def drain(self):
        while self.reader.read(CHUNK):
            pass

    def finish(self):
        """Raise if decryption failed anywhere (authentication of the last chunk included)."""
        if self.proc is not None:
            try:
                self.proc.finish()
            except WorkerError as e:
                raise worker_failure(e, self.src, self.header, self.where)
        sha = self.cipher.sha256
        return {"stored": self.cipher.count, "sha256": sha.hexdigest() if sha is not None else None}

    def fail(self, error):
        """An error while consuming: the child's failure, if any, explains it better."""
        if self.proc is not None:
            try:
                self.finish()
            except LifeboatError as child:
                return child
        return error

    def close(self):
        if self.proc is not None:
            self.proc.close()
        try:
            self.raw.close()
        except OSError:
            pass


def artifact_manifest(path):
    """The manifest beside ``path`` when it is a repository artifact, else None."""
    info = naming.parse_artifact_name(os.path.basename(path))
    if not info:
        return None
    mpath = os.path.join(os.path.dirname(path), naming.manifest_name(info["tenant"], info["stamp"]))
    if not os.path.isfile(mpath):
        return None
    try:
        with open(mpath, "rb") as f:
            return manifest.validate(json.loads(f.read(4 << 20).decode("utf-8")), mpath), mpath
    except (OSError, ValueError):
        return None


def _stored_artifact(req):
    """The artifact of ``tenant`` in ``repository`` that ``artifact`` names.

    Returns (location, (repo, tenant, name), (manifest, its location), verified_at).
    """
    if req.p["src"] is not None:
        raise LifeboatError("Give either src (a local age file) or repository with tenant and artifact, not both.",
                            option="src")
    req.need("tenant")
    tenant = req.p["tenant"]
    repo = open_repository(req.p["repository"], create=False, **s3_options(req.p))
    wanted = req.p["artifact"] or "latest"
    if wanted == "latest":
        art = repo.latest_complete(tenant)
        if art is None:
            raise LifeboatError("Tenant %s has no complete artifact in %s: check tenant and repository."
                                % (tenant, repo), option="tenant")
        doc, problem = selection.read_manifest(repo, tenant, art)
        verified_at = None
    elif wanted == "latest_verified":
        chosen = selection.latest_verified(repo, tenant)
        art, doc, problem, verified_at = chosen["art"], chosen["manifest"], None, chosen["verified_at"]
    else:
        info = naming.parse_artifact_name(os.path.basename(wanted))
        if not info or info["tenant"] != tenant or os.path.basename(wanted) != wanted:
            raise LifeboatError("artifact %r is not an artifact name of tenant %s (like %s-20260101T030000Z.tar.zst.age)"
                                ", latest or latest_verified." % (wanted, tenant, tenant), option="artifact")
        found = [a for a in repo.artifacts(tenant) if a["name"] == wanted]
        if not found:
            raise LifeboatError("%s is not in %s." % (wanted, repo.location(tenant, wanted)), option="artifact")
        if not found[0]["complete"]:
            raise LifeboatError("%s has no manifest: it is incomplete (an interrupted upload or backup), so it is not "
                                "decrypted. Choose a complete artifact." % repo.location(tenant, wanted),
                                option="artifact")
        art = found[0]
        doc, problem = selection.read_manifest(repo, tenant, art)
        verified_at = None
    if problem:
        raise LifeboatError("The manifest of %s is not usable: %s." % (repo.location(tenant, art["name"]), problem),
                            option="artifact")
    location = repo.location(tenant, art["name"])
    return location, (repo, tenant, art["name"]), (doc, repo.location(tenant, art["manifest"])), verified_at


def decrypted(req, check_mode):
    for opt in ("recipients", "recipients_file"):
        if req.p[opt]:
            raise LifeboatError("%s does not apply to state decrypted (give identity_file, identity or passphrase)."
                                % opt, option=opt)
    if req.p["repository"] is not None:
        req.need("dest")
        if req.p["remove_src"]:
            raise LifeboatError("remove_src does not apply to a repository artifact; prune manages artifacts.",
                                option="remove_src")
        src, stored, found, verified_at = _stored_artifact(req)
        dest = req.p["dest"]
        fmt, comp = _decrypt_layout(req, stored[2])
        result = {"src": src, "dest": dest, "artifact": stored[2], "format": fmt, "compression": comp,
                  "verified_at": verified_at}
        if fmt == "tar":
            changed, extra = _decrypt_bundle(req, src, dest, comp, found, check_mode, stored)
        else:
            changed, extra = _decrypt_file(req, src, dest, comp, found, check_mode, stored)
        result.update(extra)
        result["changed"] = changed
        return result
    req.need("src", "dest")
    src, dest = req.p["src"], req.p["dest"]
    result = {"src": src, "dest": dest}
    if not os.path.exists(src):
        if req.p["remove_src"] and os.path.lexists(dest):
            result.update(changed=False, msg="src %s was already decrypted to %s and removed." % (src, dest),
                          diff={"before": {}, "after": {}})
            return result
        raise LifeboatError("src %s does not exist." % src, option="src")
    if not os.path.isfile(src):
        raise LifeboatError("src %s is not a file: give the encrypted file." % src, option="src")
    fmt, comp = _decrypt_layout(req, src)
    result.update(format=fmt, compression=comp)
    found = artifact_manifest(src)
    if found and req.p["remove_src"]:
        raise LifeboatError("remove_src is refused for %s: it is a repository artifact (its manifest is beside it); "
                            "prune manages artifacts." % src, option="remove_src")
    if fmt == "tar":
        changed, extra = _decrypt_bundle(req, src, dest, comp, found, check_mode)
    else:
        changed, extra = _decrypt_file(req, src, dest, comp, found, check_mode)
    result.update(extra)
    result["changed"] = changed
    if req.p["remove_src"]:
        result["changed"] = True
        if not check_mode:
            os.unlink(src)
            result["msg"] += "; removed src %s" % src
    return result


def _check_manifest(found, cipher_facts, src):
    if not found:
        return
    doc, mpath = found
    if doc.get("sha256") != cipher_facts["sha256"] or (doc.get("size") or {}).get("stored") != cipher_facts["stored"]:
        raise LifeboatError("%s does not match its manifest %s (SHA-256 or size differ): the artifact was replaced or "
                            "damaged. Nothing was written to dest; use another artifact." % (src, mpath), option="src")


def _decrypt_file(req, src, dest, comp, found, check_mode, stored=None):
    if os.path.isdir(dest):
        raise LifeboatError("dest %s is a folder: give the path of the decrypted file (or format: tar for a bundle)."
                            % dest, option="dest")
    if not check_mode:
        ensure_parent(dest, False)
    with contextlib.ExitStack() as cleanup:
        out = None if check_mode else cleanup.enter_context(AtomicFile(dest, req.mode))  # removed unless committed
        plain = Plaintext(req, src, comp, hash_cipher=bool(found), stored=stored)
        cleanup.callback(plain.close)
        hasher = HashingWriter(out)
        try:
            shutil.copyfileobj(plain, hasher, CHUNK)
            facts = plain.finish()
        except LifeboatError as e:
            raise plain.fail(e)
        except Exception as e:  # zstd errors and the like
            raise plain.fail(LifeboatError("The decrypted data of %s is not valid %s: %s. Nothing was written to "
                                           "dest." % (src, "zstd" if comp == "zstd" else "data", e), option="compression"))
        _check_manifest(found, facts, src)
        digest = hasher.hexdigest()
        same = os.path.isfile(dest) and not os.path.islink(dest) and age_tar.file_sha256(dest) == digest
        mode_ok = same and stat.S_IMODE(os.stat(dest).st_mode) == req.mode
        changed = not (same and mode_ok)
        content = "same" if same else ("different" if os.path.exists(dest) else "absent")
        extra = {"size": hasher.count, "sha256": digest,
                 "diff": {"before": {"dest": dest, "content": content},
                          "after": {"dest": dest, "content": "decrypted from src"}}}
        if check_mode:
            extra["msg"] = "Check mode: %s" % ("%s is up to date" % dest if not changed else
                                               "would write %s" % dest if not same else "would set the mode of %s" % dest)
        elif same:
            if not mode_ok:
                os.chmod(dest, req.mode)
            extra["msg"] = "%s is up to date" % dest if mode_ok else "Set the mode of %s" % dest
        else:
            out.commit(replace=True)
            extra["msg"] = "Decrypted %s to %s (%s)" % (src, dest, naming.human_size(hasher.count))
        return changed, extra


def _decrypt_bundle(req, src, dest, comp, found, check_mode, stored=None):
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise LifeboatError("dest %s exists and is not a folder; a bundle unpacks into a folder." % dest, option="dest")
    root = os.path.realpath(dest) if os.path.exists(dest) else dest
    staging = None
    plain = None
    try:
        if not check_mode:
            ensure_parent(root, False)
            staging = age_tar.make_staging(root)
        unpacker = age_tar.Unpacker(root, staging)
        plain = Plaintext(req, src, comp, hash_cipher=bool(found), stored=stored)
        try:
            unpacker.consume(plain)
            plain.drain()
            facts = plain.finish()
        except age_tar.HostileMember:
            raise
        except LifeboatError as e:
            raise plain.fail(e)
        except Exception as e:  # zstd and tar errors
            raise plain.fail(age_tar.BundleError(str(e)))
        _check_manifest(found, facts, src)
        actions = unpacker.plan()
        changes = [(n, a) for n, a in actions if a != "unchanged"]
        changed = bool(changes)
        extra = {"files": sum(1 for e in unpacker.entries.values() if e["kind"] == "file"),
                 "members": len(unpacker.entries),
                 "changes": [{"path": n, "action": a} for n, a in changes],
                 "diff": {"before": {"dest": dest, "paths": sorted(n for n, a in changes if a != "create")},
                          "after": {"dest": dest, "paths": sorted(n for n, a in changes)}}}
        if check_mode:
            extra["msg"] = "Check mode: %s" % ("would unpack %d change(s) into %s" % (len(changes), dest)
                                               if changed else "%s is up to date" % dest)
        elif changed:
            unpacker.apply(actions)
            staging = unpacker.staging
            extra["msg"] = "Unpacked %s into %s: %d change(s)" % (src, dest, len(changes))
        else:
            extra["msg"] = "%s is up to date" % dest
        return changed, extra
    finally:
        if plain is not None:
            plain.close()
        age_tar.remove_staging(staging)
