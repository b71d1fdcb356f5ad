# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine behind ``age_encrypt``: encrypt, decrypt, key pairs, rekeying.

States:

- ``encrypted``: ``src`` (a file, or a folder streamed as a tar bundle) to
  ``dest``, or to a ``tar`` artifact of ``repository``/``tenant``.
- ``decrypted``: ``src`` to ``dest`` (a file, or a folder a bundle is merged
  into, safely: see age_tar).
- ``keypair``: an age identity file, created 0600 when missing.
- ``rekeyed``: existing age files (one, or every artifact of a repository)
  re-encrypted to a new recipient set, streaming, without plaintext on disk.

Idempotency. age output is randomized, so ``changed`` is decided from a
record: for ``dest`` files a sidecar ``.<dest name>.lifeboat.json`` in the
folder of ``dest`` (0600), for repository artifacts their manifest. Both hold
the recipients' public keys, the SHA-256 of the ciphertext and a *salted,
stretched* digest of the source (PBKDF2-SHA256 over the source's SHA-256,
so the record does not let anyone confirm a guess of a small secret
cheaply). Decryption compares the decrypted content with ``dest`` itself and
needs no record.

One code path for check mode: everything is computed, and only the writes
are skipped. Writes go to a temporary file in the destination folder, are
fsynced and renamed into place, mode 0600 unless ``mode`` says otherwise.
"""

import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import stat
import time

from . import age_stream, age_tar, argspec, crypto, files, manifest, naming, selection
from .age_stream import AgeProcess, BoundedBuffer, Hasher, HashingSource, WorkerError
from .errors import LifeboatError, MissingDependency
from .repository import S3_OPTIONS, describe_os_error, open_repository, unique_stamp
from .version import TOOL_VERSION

try:
    import zstandard

    ZSTD_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the interpreter
    zstandard = None
    ZSTD_IMPORT_ERROR = str(_e)

CHUNK = 1 << 20
STATES = ("encrypted", "decrypted", "keypair", "rekeyed")
RECORD_VERSION = 1
KDF_ITERATIONS = 100000
PASSPHRASE_MAX_BYTES = age_stream.PASSPHRASE_MAX_BYTES

# The options of age_encrypt (see argspec.py)
SPEC = argspec.ArgumentSpec(
    argspec.merged(
        argspec.S3,  # s3://bucket/prefix repositories: where bundles are stored
        state=dict(type="str", default="encrypted", choices=list(STATES)),
        src=dict(type="path"),
        dest=dict(type="path"),
        repository=dict(type="str"),
        tenant=dict(type="str"),
        # state decrypted with a repository: which artifact of the tenant
        artifact=dict(type="str"),
        recipients=dict(type="list", elements="str"),
        recipients_file=dict(type="path"),
        passphrase=dict(type="str", no_log=True),
        identity=dict(type="str", no_log=True),
        identity_file=dict(type="path"),
        armor=dict(type="bool", default=False),
        format=dict(type="str", default="auto", choices=["auto", "file", "tar"]),
        compression=dict(type="str", default="auto", choices=["auto", "zstd", "none"]),
        compression_level=dict(type="int", default=3),
        mode=dict(type="raw", default="0600"),
        remove_src=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        purge_old_versions=dict(type="bool", default=False),
        lock_timeout=dict(type="int", default=0),
    ),
    required_if=[
        ("state", "keypair", ("identity_file",)),
        ("state", "decrypted", ("dest",)),
        ("state", "decrypted", ("src", "repository"), True),
    ],
    # dest with repository: refused by the engine for state encrypted, the destination for state decrypted
    mutually_exclusive=[("passphrase", "recipients"), ("passphrase", "recipients_file")],
)
OPTIONS = SPEC.defaults()


def require_zstandard():
    if zstandard is None:
        raise MissingDependency("zstandard", "zstandard", ZSTD_IMPORT_ERROR)
    return zstandard


# -- small helpers -------------------------------------------------------------------

def parse_mode(value, default=0o600):
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise LifeboatError("Invalid mode %r: give an octal mode such as '0600'." % (value,), option="mode")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in "01234567" for c in text):
            raise LifeboatError("Invalid mode %r: give an octal mode such as '0600' (symbolic modes are not "
                                "supported)." % (value,), option="mode")
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise LifeboatError("Invalid mode %r: out of range." % (value,), option="mode")
    return mode


def record_path(dest):
    return os.path.join(os.path.dirname(dest), ".%s.lifeboat.json" % os.path.basename(dest))


def stretch(digest_hex, salt_hex, iterations=KDF_ITERATIONS):
    return hashlib.pbkdf2_hmac("sha256", bytes.fromhex(digest_hex), bytes.fromhex(salt_hex), iterations).hex()


def source_record(digest_hex):
    salt = secrets.token_hex(16)
    return {"algorithm": "pbkdf2-sha256", "iterations": KDF_ITERATIONS, "salt": salt,
            "value": stretch(digest_hex, salt)}


def source_matches(record, digest_hex):
    try:
        if record.get("algorithm") != "pbkdf2-sha256":
            return False
        return secrets.compare_digest(stretch(digest_hex, record["salt"], int(record["iterations"])), record["value"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return False


def _ensure_parent(path, check_mode):
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent) and not check_mode:
        try:
            os.makedirs(parent, 0o700, exist_ok=True)
        except OSError as e:
            raise LifeboatError(describe_os_error(e, "Creating the folder %s" % parent), option="dest")


class AtomicFile(files.AtomicFile):
    """files.AtomicFile, its failures told as age_encrypt's (with the option that fixes them)."""

    def __init__(self, final_path, mode=0o600):
        try:
            super(AtomicFile, self).__init__(final_path, mode)
        except OSError as e:
            raise LifeboatError(describe_os_error(e, "Creating a file in %s" % (os.path.dirname(final_path) or ".")),
                                option="dest")

    def commit(self, replace=True):
        try:
            return super(AtomicFile, self).commit(replace)
        except FileExistsError:
            raise LifeboatError("Refusing to replace %s, which appeared meanwhile; nothing was changed."
                                % self.final_path)


def _s3_options(req):
    return dict((k, req.p[k]) for k in S3_OPTIONS if req.p.get(k) is not None)


def write_json_atomic(path, data, replace=True):
    f = AtomicFile(path, 0o600)
    try:
        f.write(files.json_bytes(data))
        return f.commit(replace=replace)
    except BaseException:
        f.abort()
        raise


def read_record(path):
    """The sidecar record, or None when missing or unusable (then we redo the work)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(1 << 20).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION:
        return None
    return data


def identity_text(identity=None, identity_file=None, environ=None):
    """Identity text and where it came from (same precedence as crypto.load_identities)."""
    environ = os.environ if environ is None else environ
    if identity:
        text, where = identity, "the identity option"
    elif identity_file:
        try:
            with open(identity_file, "r", encoding="utf-8") as f:
                text = f.read(1 << 20)
        except OSError as e:
            raise LifeboatError("Cannot read identity_file %s: %s." % (identity_file, e.strerror), option="identity_file")
        where = "identity_file %s" % identity_file
    elif environ.get(crypto.IDENTITY_ENV):
        text, where = environ[crypto.IDENTITY_ENV], "the environment variable %s" % crypto.IDENTITY_ENV
    else:
        raise LifeboatError(
            "No age identity given: set identity_file (a file made by age-keygen, or an SSH private key), the "
            "identity option, or the environment variable %s." % crypto.IDENTITY_ENV, option="identity_file")
    crypto.parse_identities(text, where)  # clear errors before any work
    return text, where


# -- the request -----------------------------------------------------------------------

class Request(object):
    def __init__(self, params, environ=None):
        p = SPEC.resolve(params)
        self.p = p
        self.environ = os.environ if environ is None else environ
        self.state = p["state"]
        if self.state not in STATES:
            raise LifeboatError("Unknown state %r: use %s." % (self.state, ", ".join(STATES)), option="state")
        for opt in ("src", "dest"):
            if p[opt] is not None:
                if not isinstance(p[opt], str) or not p[opt] or "\0" in p[opt]:
                    raise LifeboatError("Invalid %s %r: give a path." % (opt, p[opt]), option=opt)
                p[opt] = os.path.abspath(os.path.expanduser(p[opt]))
        if p["format"] not in ("auto", "file", "tar"):
            raise LifeboatError("Unknown format %r: use auto, file or tar." % (p["format"],), option="format")
        if p["compression"] not in ("auto", "zstd", "none"):
            raise LifeboatError("Unknown compression %r: use auto, zstd or none." % (p["compression"],),
                                option="compression")
        level = p["compression_level"]
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 19:
            raise LifeboatError("Invalid compression_level %r: use 1 (fastest) to 19 (smallest)." % (level,),
                                option="compression_level")
        self.mode = parse_mode(p["mode"])
        self.lock_timeout = naming.parse_duration(p["lock_timeout"], "lock_timeout") or 0
        if p["repository"] is not None and self.state == "keypair":
            raise LifeboatError("repository does not apply to state keypair; give identity_file.", option="repository")
        if p["artifact"] is not None and (self.state != "decrypted" or p["repository"] is None):
            raise LifeboatError("artifact applies to state decrypted with repository and tenant (a bundle or file "
                                "stored in a repository); for a local file give src.", option="artifact")
        if p["tenant"] is not None:
            naming.validate_tenant(p["tenant"])
        if p["passphrase"] is not None and (not isinstance(p["passphrase"], str) or not p["passphrase"]):
            raise LifeboatError("passphrase must be a non-empty string.", option="passphrase")

    def need(self, *names):
        for name in names:
            if self.p[name] in (None, ""):
                raise LifeboatError("state %s needs %s." % (self.state, name), option=name)

    def recipients(self, required=True):
        objs, texts = crypto.load_recipients(self.p["recipients"], self.p["recipients_file"])
        if required and not objs:
            raise LifeboatError(
                "No age recipients given for state %s: set recipients (age1... or SSH public keys) or "
                "recipients_file%s." % (self.state, ", or passphrase for a small file" if self.state == "encrypted"
                                        else ""), option="recipients")
        return objs, texts

    def identity(self):
        return identity_text(self.p["identity"], self.p["identity_file"], self.environ)


def run(params, check_mode=False, environ=None):
    """Do what ``params`` say; return a secret-free result (with a ``diff``)."""
    req = Request(params, environ)
    handler = {"encrypted": _encrypted, "decrypted": _decrypted, "keypair": _keypair, "rekeyed": _rekeyed}
    result = handler[req.state](req, check_mode)
    result.setdefault("state", req.state)
    result.setdefault("check_mode", bool(check_mode))
    return result


# -- keypair ------------------------------------------------------------------------------

def _keypair(req, check_mode):
    req.need("identity_file")
    path = os.path.abspath(os.path.expanduser(req.p["identity_file"]))
    for opt in ("recipients", "recipients_file", "passphrase", "identity", "src", "dest"):
        if req.p[opt]:
            raise LifeboatError("%s does not apply to state keypair (it only takes identity_file)." % opt, option=opt)
    result = {"identity_file": path, "public_key": None, "warnings": []}
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise LifeboatError("identity_file %s exists and is not a regular file; refusing to touch it." % path,
                                option="identity_file")
        try:
            keys = crypto.public_key_of_identity_file(path)
        except OSError as e:
            raise LifeboatError("Cannot read identity_file %s: %s." % (path, e.strerror), option="identity_file")
        if not keys:
            raise LifeboatError("identity_file %s holds no age X25519 identity (an SSH key?); state keypair manages "
                                "age identity files only. Choose another path." % path, option="identity_file")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            result["warnings"].append("identity_file %s has mode %04o: other users may read the private key; "
                                      "chmod 0600 it." % (path, mode))
        result.update(changed=False, public_key=keys[0], public_keys=keys,
                      msg="identity_file %s exists; its public key is %s" % (path, keys[0]),
                      diff={"before": {"identity_file": "present"}, "after": {"identity_file": "present"}})
        return result
    result.update(changed=True, diff={"before": {"identity_file": "absent"}, "after": {"identity_file": "present"}})
    if check_mode:
        result["msg"] = "Check mode: would create identity_file %s (0600)." % path
        return result
    _ensure_parent(path, False)
    ident, public = crypto.generate_identity()
    f = AtomicFile(path, 0o600)
    try:
        f.write(crypto.identity_file_text(ident, public).encode("utf-8"))
        f.commit(replace=False)
    except BaseException:
        f.abort()
        raise
    finally:
        ident = None
    result.update(public_key=public, public_keys=[public],
                  msg="Created identity_file %s (0600); its public key is %s" % (path, public))
    return result


# -- encryption --------------------------------------------------------------------------

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
        cctx = require_zstandard().ZstdCompressor(level=req.p["compression_level"], threads=min(2, os.cpu_count() or 1),
                                                  write_checksum=True)
        target = cctx.stream_writer(sink, closefd=False)
    else:
        target = sink
    counter = Hasher(target, hashing=(fmt != "tar"))  # a file's digest is its SHA-256; a tar's comes from write_tar
    if fmt == "tar":
        digest, stats = age_tar.write_tar(src, counter)
    else:
        with open(src, "rb", buffering=0) as f:
            while True:
                data = f.read(CHUNK)
                if not data:
                    break
                counter.write(data)
        digest, stats = counter.hexdigest(), {"files": 1, "bytes": counter.count, "skipped": []}
    if comp == "zstd":
        target.close()
    stats["raw"] = counter.count
    return digest, stats


def encrypt_to(out, req, fmt, comp, recipient_texts, armored):
    """Encrypt src into ``out``; return (source digest, stats, ciphertext Hasher)."""
    cipher = Hasher(out)
    passphrase = req.p["passphrase"]
    if passphrase:
        what = "src %s%s" % (req.p["src"], " (as a bundle)" if fmt == "tar" else "")
        buf = BoundedBuffer(PASSPHRASE_MAX_BYTES, what)
        digest, stats = _produce(buf, req, fmt, comp)
        data = bytes(buf.data)
        buf.data = bytearray()
        try:
            cipher.write(age_stream.require_pyrage().passphrase.encrypt(data, passphrase, armored=armored))
        except age_stream.pyrage.EncryptError as e:
            raise LifeboatError("age passphrase encryption failed: %s." % e, option="passphrase")
        return digest, stats, cipher
    proc = AgeProcess("encrypt", "\n".join(recipient_texts) + "\n", sink=cipher, armored=armored)
    try:
        try:
            digest, stats = _produce(proc, req, fmt, comp)
            proc.finish()
        except WorkerError as e:
            raise _worker_failure(e, req.p["src"], None, None, encrypting=True)
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


def _encrypted(req, check_mode):
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
        _ensure_parent(dest, False)
        out = AtomicFile(dest, req.mode)
        try:
            digest, stats, cipher = encrypt_to(out, req, fmt, comp, recipient_texts, armored)
            out.commit(replace=True)
        except BaseException:
            out.abort()
            raise
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
    repo = open_repository(req.p["repository"], **_s3_options(req))
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


# -- decryption --------------------------------------------------------------------------

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


def _worker_failure(e, src, header, where, encrypting=False, nothing="Nothing was written to dest"):
    """Turn the age child's failure into an error an operator can act on."""
    if e.kind == "import":
        return MissingDependency("pyrage", "pyrage", e.reason)
    if encrypting:
        return LifeboatError("age encryption of %s failed: %s." % (src, e.reason))
    if e.kind == "decrypt" and "no matching keys" in e.reason.lower():
        return LifeboatError(
            "None of the identities from %s matches a recipient of %s (it is encrypted to %s), or its header was "
            "modified. Give the identity it was encrypted to (identity_file, identity or %s). %s."
            % (where, src, age_stream.describe_stanzas((header or {}).get("stanzas", [])), crypto.IDENTITY_ENV,
               nothing[0].upper() + nothing[1:]), option="identity_file")
    if e.kind in ("decrypt", "truncated"):
        return LifeboatError(
            "%s is truncated or was modified after it was written (age authenticates every chunk: %s). %s; use "
            "an intact copy." % (src, e.reason, nothing[0].upper() + nothing[1:]), option="src")
    return LifeboatError("age decryption of %s failed: %s." % (src, e.reason), option="src")


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
        self.cipher = HashingSource(raw, hashing=hash_cipher)
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
                text, self.where = req.identity()
                self.proc = AgeProcess("decrypt", text, source=self.cipher)
                text = None
                self.reader = self.proc
            if comp == "zstd":
                self.reader = require_zstandard().ZstdDecompressor().stream_reader(self.reader, read_size=CHUNK)
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
        pyrage = age_stream.require_pyrage()
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
                raise _worker_failure(e, self.src, self.header, self.where)
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


def _artifact_manifest(path):
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
    repo = open_repository(req.p["repository"], create=False, **_s3_options(req))
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


def _decrypted(req, check_mode):
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
    found = _artifact_manifest(src)
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
        _ensure_parent(dest, False)
    out = None if check_mode else AtomicFile(dest, req.mode)
    plain = None
    try:
        plain = Plaintext(req, src, comp, hash_cipher=bool(found), stored=stored)
        hasher = Hasher(out)
        try:
            while True:
                data = plain.read(CHUNK)
                if not data:
                    break
                hasher.write(data)
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
            out.abort()
            if not mode_ok:
                os.chmod(dest, req.mode)
            extra["msg"] = "%s is up to date" % dest if mode_ok else "Set the mode of %s" % dest
        else:
            out.commit(replace=True)
            extra["msg"] = "Decrypted %s to %s (%s)" % (src, dest, naming.human_size(hasher.count))
        return changed, extra
    except BaseException:
        if out is not None:
            out.abort()
        raise
    finally:
        if plain is not None:
            plain.close()


def _decrypt_bundle(req, src, dest, comp, found, check_mode, stored=None):
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise LifeboatError("dest %s exists and is not a folder; a bundle unpacks into a folder." % dest, option="dest")
    root = os.path.realpath(dest) if os.path.exists(dest) else dest
    staging = None
    plain = None
    try:
        if not check_mode:
            _ensure_parent(root, False)
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


# -- rekeying ----------------------------------------------------------------------------

def _rekeyed(req, check_mode):
    if req.p["passphrase"]:
        raise LifeboatError("state rekeyed re-encrypts to recipients; passphrase files are not rekeyed (decrypt and "
                            "encrypt them again).", option="passphrase")
    objs, texts = req.recipients()
    if bool(req.p["src"]) == bool(req.p["repository"]):
        raise LifeboatError("state rekeyed needs either src (one age file) or repository (every artifact, of tenant "
                            "if given).", option="src")
    identity = req.identity()
    targets = []
    repo = None
    if req.p["repository"]:
        repo = open_repository(req.p["repository"], create=False, **_s3_options(req))
        if getattr(repo, "kind", None) == "local" and not os.path.isdir(str(repo)):
            raise LifeboatError("The repository %s does not exist." % repo, option="repository")
        if getattr(repo, "kind", None) == "s3":
            repo.check_writable()
        tenants = [req.p["tenant"]] if req.p["tenant"] else repo.tenants()
        for tenant in tenants:
            targets.extend(_repository_targets(repo, tenant))
    else:
        src = req.p["src"]
        if not os.path.isfile(src):
            raise LifeboatError("src %s does not exist or is not a file." % src, option="src")
        found = _artifact_manifest(src)
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
    s3 = repo is not None and getattr(repo, "kind", None) == "s3"
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
                    entry.update(finished or _rekey_one(t, objs, texts, identity))
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
            entry.update(_rekey_one(t, objs, texts, identity))
    result["purged_versions"] = purged
    if purged:
        result["changed"] = True
    _purge_notes(result, req, repo, s3, versioning, done, check_mode)
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
    """The bucket's versioning status; "Unknown" when these credentials may not read it (s3:GetBucketVersioning)."""
    try:
        return repo.versioning()
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
        self.repo = repo
        self.tenant = tenant
        self.name = name
        self.doc = doc
        self.record = record
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


def _read_marker(t):
    if hasattr(t.repo, "rekey_marker"):
        return t.repo.rekey_marker(t.tenant, t.name)
    if getattr(t.repo, "kind", None) != "local":
        return None
    try:
        with open(_marker_path(t), "rb") as f:
            data = json.loads(f.read(1 << 16).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_marker(t):
    if t.repo is not None and getattr(t.repo, "kind", None) == "local":
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
    if getattr(t.repo, "kind", None) == "local":
        return AtomicFile(t.repo.path_of(t.tenant, t.name), 0o600)
    raise LifeboatError("Rekeying artifacts in a %s repository is not supported yet." % getattr(t.repo, "kind", "?"),
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
        source = HashingSource(raw)
        writer = _replacing_writer(t, raw, texts)
        pyrage = age_stream.require_pyrage()
        proc = AgeProcess("decrypt", text, source=source)
        cipher = Hasher(writer)
        try:
            pyrage.encrypt_io(proc, cipher, objs, armored=header["armored"])
            proc.finish()
        except WorkerError as e:
            raise _worker_failure(e, path, header, where, nothing="it was not rekeyed")
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
        elif getattr(t.repo, "kind", None) == "local":
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
