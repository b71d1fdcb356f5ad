# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""State ``encrypted``: ``src`` (a file, or a folder as a tar bundle) to ``dest`` or to a repository artifact.

The plaintext is produced here (tar, zstd) and pushed into the age child process (age_stream.AgeProcess); a
passphrase encrypts in memory, capped. ``changed`` comes from the sidecar record or the newest manifest.
"""

import os
import shutil
import socket
import stat

from .. import age_tar, crypto, manifest, naming
from ..age_stream import PASSPHRASE_MAX_BYTES, AgeProcess, BoundedBuffer, WorkerError
from ..errors import LifeboatError
from ..pipeline import HashingWriter, zstd_compressor
from ..repository import describe_os_error, open_repository, s3_options, unique_stamp
from ..version import TOOL_VERSION
from .records import (RECORD_VERSION, AtomicFile, ensure_parent, read_record, record_path, source_matches, source_record,
                      write_json_atomic)
from .request import CHUNK, worker_failure


def _resolve_format(req, src_is_dir):
    fmt = req.p["format"]
    if fmt == "auto":
        fmt = "tar" if (src_is_dir or req.p["repository"]) else "file"
    if src_is_dir and fmt == "file":
        raise LifeboatError("src %s is a folder: it can only be encrypted as a tar bundle (format: tar or auto)."
                            % req.p["src"], option="format")
    if req.p["repository"] and fmt != "tar":
        raise LifeboatError("Artifacts in a repository are tar bundles: remove format or set it to tar.", option="format")
    comp = req.p["compression"]
    if comp == "auto":
        comp = "zstd" if fmt == "tar" else "none"
    return fmt, comp


def _produce(sink, req, fmt, comp):
    """Write the plaintext of src (the file, or a tar of it) into ``sink``; return facts."""
    src = req.p["src"]
    if comp == "zstd":
        cctx = zstd_compressor(req.p["compression_level"], threads=min(2, os.cpu_count() or 1))
        target = cctx.stream_writer(sink, closefd=False)
    else:
        target = sink
    counter = HashingWriter(target, hashing=(fmt != "tar"))  # a file's digest is its SHA-256; a tar's comes from write_tar
    if fmt == "tar":
        digest, stats = age_tar.write_tar(src, counter)
    else:
        with open(src, "rb", buffering=0) as f:
            shutil.copyfileobj(f, counter, CHUNK)
        digest, stats = counter.hexdigest(), {"files": 1, "bytes": counter.count, "skipped": []}
    if comp == "zstd":
        target.close()
    stats["raw"] = counter.count
    return digest, stats


def encrypt_to(out, req, fmt, comp, recipient_texts, armored):
    """Encrypt src into ``out``; return (source digest, stats, ciphertext HashingWriter)."""
    cipher = HashingWriter(out)
    passphrase = req.p["passphrase"]
    if passphrase:
        what = "src %s%s" % (req.p["src"], " (as a bundle)" if fmt == "tar" else "")
        buf = BoundedBuffer(PASSPHRASE_MAX_BYTES, what)
        digest, stats = _produce(buf, req, fmt, comp)
        data = bytes(buf.data)
        buf.data = bytearray()
        try:
            cipher.write(crypto.require_pyrage().passphrase.encrypt(data, passphrase, armored=armored))
        except crypto.pyrage.EncryptError as e:
            raise LifeboatError("age passphrase encryption failed: %s." % e, option="passphrase")
        return digest, stats, cipher
    proc = AgeProcess("encrypt", "\n".join(recipient_texts) + "\n", sink=cipher, armored=armored)
    try:
        try:
            digest, stats = _produce(proc, req, fmt, comp)
            proc.finish()
        except WorkerError as e:
            raise worker_failure(e, req.p["src"], None, None, encrypting=True)
    finally:
        proc.close()
    return digest, stats, cipher


def _check_src(req):
    src = req.p["src"]
    try:
        st = os.stat(src)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LifeboatError("Cannot use src %s: %s." % (src, e.strerror), option="src")
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise LifeboatError("src %s is neither a file nor a folder." % src, option="src")
    return st


def _inside(path, folder):
    real_path = os.path.realpath(path)
    real_folder = os.path.realpath(folder)
    return real_path == real_folder or real_path.startswith(real_folder.rstrip("/") + "/")


def _wanted(req, fmt, comp, recipient_texts, armored):
    return {
        "recipients": sorted(recipient_texts) if recipient_texts else None,
        "passphrase": bool(req.p["passphrase"]),
        "armor": bool(armored),
        "format": fmt,
        "compression": comp,
    }


def encrypted(req, check_mode):
    req.need("src")
    if req.p["identity"] or req.p["identity_file"]:
        raise LifeboatError("identity and identity_file are for decryption; state encrypted needs recipients "
                            "(public keys) only.", option="identity" if req.p["identity"] else "identity_file")
    if req.p["passphrase"]:
        if req.p["recipients"] or req.p["recipients_file"]:
            raise LifeboatError("Give either passphrase or recipients/recipients_file, not both.", option="passphrase")
        recipient_texts = []
    else:
        _objs, recipient_texts = req.recipients()
    if req.p["repository"]:
        return _encrypted_repository(req, check_mode, recipient_texts)
    req.need("dest")
    src, dest = req.p["src"], req.p["dest"]
    st = _check_src(req)
    record_file = record_path(dest)
    record = read_record(record_file)
    result = {"src": src, "dest": dest, "state_file": record_file, "recipients": recipient_texts,
              "armor": bool(req.p["armor"])}
    if st is None:
        if record and record.get("src") == src and os.path.isfile(dest) and req.p["remove_src"]:
            result.update(changed=False, msg="src %s was already encrypted to %s and removed." % (src, dest),
                          diff={"before": {}, "after": {}})
            return result
        raise LifeboatError("src %s does not exist." % src, option="src")
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_dir and _inside(dest, src):
        raise LifeboatError("dest %s is inside src %s: the bundle would contain itself. Choose a dest outside src."
                            % (dest, src), option="dest")
    if os.path.isdir(dest):
        raise LifeboatError("dest %s is a folder: give the path of the encrypted file, for example %s/%s.age."
                            % (dest, dest, os.path.basename(src)), option="dest")
    fmt, comp = _resolve_format(req, is_dir)
    armored = bool(req.p["armor"])
    wanted = _wanted(req, fmt, comp, recipient_texts, armored)
    result.update(format=fmt, compression=comp)
    reasons = _encrypt_reasons(req, record, wanted, src, dest, is_dir)
    mode_only = False
    if not reasons and stat.S_IMODE(os.stat(dest).st_mode) != req.mode:
        mode_only = True
    changed = bool(reasons) or mode_only or bool(req.p["remove_src"])
    before = {"dest": dest if os.path.exists(dest) else None,
              "recipients": (record or {}).get("recipients"), "source": "as recorded" if not reasons else
              ("not recorded" if not record else "differs from the record")}
    after = {"dest": dest, "recipients": wanted["recipients"], "source": "as recorded"}
    result["diff"] = {"before": before, "after": after}
    result["changed"] = changed
    result["reasons"] = reasons
    if check_mode:
        result["msg"] = "Check mode: %s" % (
            ("would encrypt %s to %s (%s)" % (src, dest, "; ".join(reasons))) if reasons else
            ("would set the mode of %s" % dest) if mode_only else
            ("would remove src %s" % src) if req.p["remove_src"] else "%s is up to date" % dest)
        return result
    if reasons:
        ensure_parent(dest, False)
        with AtomicFile(dest, req.mode) as out:
            digest, stats, cipher = encrypt_to(out, req, fmt, comp, recipient_texts, armored)
            out.commit(replace=True)
        rec = dict(wanted, record_version=RECORD_VERSION, tool="lifeboat.backup age_encrypt",
                   tool_version=TOOL_VERSION, src=src, source_digest=source_record(digest), sha256=cipher.hexdigest(),
                   size=cipher.count, size_raw=stats["raw"], written_at=naming.iso(naming.utcnow()))
        write_json_atomic(record_file, rec)
        result.update(sha256=cipher.hexdigest(), size=cipher.count, size_raw=stats["raw"],
                      files=stats.get("files"), skipped=stats.get("skipped", []))
        msg = "Encrypted %s (%s) to %s (%s)" % (src, naming.human_size(stats["raw"]), dest,
                                                naming.human_size(cipher.count))
    else:
        if mode_only:
            os.chmod(dest, req.mode)
        msg = "%s is up to date (same source, same recipients)" % dest
        result.update(sha256=record.get("sha256"), size=record.get("size"))
    if req.p["remove_src"]:
        _remove_src(src, is_dir)
        msg += "; removed src %s" % src
    result["msg"] = msg
    return result


def _encrypt_reasons(req, record, wanted, src, dest, is_dir):
    if req.p["force"]:
        return ["force: true"]
    if not os.path.isfile(dest):
        return ["dest does not exist"]
    if not record:
        return ["no record of a previous run (%s)" % os.path.basename(record_path(dest))]
    reasons = []
    for key in ("recipients", "passphrase", "armor", "format", "compression"):
        if record.get(key) != wanted[key]:
            reasons.append("%s changed" % key)
    if record.get("src") != src:
        reasons.append("src changed")
    if reasons:
        return reasons
    if age_tar.file_sha256(dest) != record.get("sha256"):
        return ["dest was modified since it was written"]
    digest = age_tar.content_digest(src) if is_dir else age_tar.file_sha256(src)
    if not source_matches(record.get("source_digest"), digest):
        return ["the content of src changed"]
    return []


def _remove_src(src, is_dir):
    if is_dir:
        if os.path.realpath(src) == "/":
            raise LifeboatError("Refusing remove_src on /.", option="remove_src")
        shutil.rmtree(src)
    else:
        os.unlink(src)


def _bundle_manifests(repo, tenant):
    """(artifact info, manifest) of the tenant's complete tar artifacts, newest first."""
    out = []
    for a in reversed(repo.artifacts(tenant)):
        if not a["complete"] or a["format"] != "tar":
            continue
        try:
            m = repo.read_json(tenant, a["manifest"])
        except LifeboatError:
            continue
        if isinstance(m, dict):
            out.append((a, m))
    return out


def _encrypted_repository(req, check_mode, recipient_texts):
    req.need("tenant")
    if req.p["passphrase"]:
        raise LifeboatError("passphrase cannot be used with repository: artifacts are encrypted to recipients so that "
                            "verify and restore can use identities. Give recipients.", option="passphrase")
    if req.p["dest"]:
        raise LifeboatError("Give either dest or repository: with repository the artifact is named "
                            "<repository>/<tenant>/<tenant>-<stamp>.tar.zst.age.", option="dest")
    if req.p["armor"]:
        raise LifeboatError("armor applies to dest files; repository artifacts are binary.", option="armor")
    tenant, src = req.p["tenant"], req.p["src"]
    repo = open_repository(req.p["repository"], **s3_options(req.p))
    st = _check_src(req)
    if st is None:
        raise LifeboatError("src %s does not exist." % src, option="src")
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_dir and _inside(str(repo), src):
        raise LifeboatError("The repository %s is inside src %s; choose a repository outside src." % (repo, src),
                            option="repository")
    fmt, comp = _resolve_format(req, is_dir)
    result = {"src": src, "tenant": tenant, "repository": str(repo), "recipients": recipient_texts,
              "format": fmt, "compression": comp}
    previous = None
    digest = None
    if not req.p["force"]:
        for a, m in _bundle_manifests(repo, tenant):
            srcinfo = m.get("source") or {}
            if srcinfo.get("path") != src:
                continue
            previous = (a, m)
            break
    reasons = []
    if req.p["force"]:
        reasons.append("force: true")
    elif previous is None:
        reasons.append("no complete artifact of src in the repository")
    else:
        a, m = previous
        enc = m.get("encryption") or {}
        if sorted(enc.get("recipients") or []) != sorted(recipient_texts):
            reasons.append("recipients changed")
        if (m.get("compression") is not None) != (comp == "zstd"):
            reasons.append("compression changed")
        if not reasons:
            digest = age_tar.content_digest(src) if is_dir else _single_file_digest(src)
            if not source_matches((m.get("source") or {}).get("digest"), digest):
                reasons.append("the content of src changed")
    result["reasons"] = reasons
    result["changed"] = bool(reasons)
    before = {"artifact": repo.location(tenant, previous[0]["name"]) if previous else None}
    if not reasons:
        a, m = previous
        result.update(artifact=repo.location(tenant, a["name"]), manifest=repo.location(tenant, a["manifest"]),
                      sha256=m.get("sha256"), size=(m.get("size") or {}).get("stored"),
                      msg="The newest artifact of %s (%s) is up to date." % (src, a["name"]),
                      diff={"before": before, "after": before})
        if req.p["remove_src"]:
            _remove_src_if_present(req, result, is_dir)
        return result
    result["diff"] = {"before": before, "after": {"artifact": "%s/%s/%s-<stamp>.tar%s.age" % (
        repo, tenant, tenant, ".zst" if comp == "zstd" else "")}}
    if check_mode:
        repo.check_writable()
        result["msg"] = "Check mode: would write a new tar artifact of %s for tenant %s (%s)." % (
            src, tenant, "; ".join(reasons))
        return result
    with repo.lock(tenant, "age_encrypt of %s" % src, req.lock_timeout):
        result["removed_partials"] = repo.remove_partials(tenant)
        started, stamp = unique_stamp(repo, tenant)
        name = naming.artifact_name(tenant, stamp, "tar", comp == "zstd", True)
        writer = repo.new_writer(tenant, name)
        published = None
        try:
            digest, stats, cipher = encrypt_to(writer, req, "tar", comp, recipient_texts, False)
            published = writer.commit()
            finished = naming.utcnow()
            source = {"path": src, "kind": "folder" if is_dir else "file", "host": socket.gethostname(),
                      "digest": source_record(digest), "files": stats.get("files"), "links": stats.get("links", 0),
                      "skipped": stats.get("skipped", [])}
            doc = manifest.build(tenant, "files", "tar", name, stamp, started, finished,
                                 {"raw": stats["raw"], "stored": cipher.count}, cipher.hexdigest(),
                                 req.p["compression_level"] if comp == "zstd" else None, recipient_texts, {}, source)
            manifest_path = repo.write_json(tenant, naming.manifest_name(tenant, stamp), doc)
        except OSError as e:
            _undo(writer, published)
            raise LifeboatError(describe_os_error(e, "Writing the bundle of %s into %s" % (src, repo)) +
                                "; nothing was published.", option="repository")
        except BaseException:
            _undo(writer, published)
            raise
    result.update(artifact=published, manifest=manifest_path, sha256=cipher.hexdigest(), size=cipher.count,
                  size_raw=stats["raw"], files=stats.get("files"), skipped=stats.get("skipped", []),
                  msg="Encrypted %s (%s) to %s (%s)" % (
                      src, naming.human_size(stats["raw"]), published, naming.human_size(cipher.count)))
    result["diff"]["after"] = {"artifact": published}
    if repo.warnings:  # S3 housekeeping that failed, guarantees the store lacks
        result.setdefault("warnings", []).extend(repo.warnings)
    if req.p["remove_src"]:
        _remove_src_if_present(req, result, is_dir)
    return result


def _remove_src_if_present(req, result, is_dir):
    if os.path.lexists(req.p["src"]):
        _remove_src(req.p["src"], is_dir)
        result["changed"] = True
        result["msg"] += "; removed src %s" % req.p["src"]


def _single_file_digest(src):
    """The content digest of a one-file bundle (what write_tar records for it)."""
    return age_tar.content_digest(src)


def _undo(writer, published):
    writer.abort()
    if published:
        try:
            os.unlink(published)
        except OSError:
            pass
