# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Folder bundles (the ``tar`` artifact format): streamed in, unpacked safely.

Writing uses tarfile's stream mode (``w|``): one member at a time, in chunks,
so memory stays bounded whatever the size of the folder. The bundle's
*content digest* (paths, types, modes, owners, file SHA-256s and link targets,
not times) is computed while the data goes into the tar, and by a read-only
pre-pass, so that an unchanged folder is recognized without writing.

Unpacking reads the stream once (``r|``). No member may land outside ``dest``:
absolute names, ``..``, members below a symlink of the bundle, symlinks whose
target resolves outside ``dest`` (following the bundle's own links), hard
links to anything but an earlier file of the bundle, devices and FIFOs are
refused with the member's name. Files go to a private 0700 staging folder
beside ``dest`` first; only when the whole stream is authenticated and every
member is accepted are they moved into ``dest`` (each by an atomic rename),
so a tampered or hostile bundle leaves nothing under ``dest``.
"""

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile

from .errors import LifeboatError
from .files import fsync_dir
from .pipeline import HashingReader

CHUNK = 1 << 20
MAX_LINK_DEPTH = 40


# -- writing ------------------------------------------------------------------

def _entries(src):
    """(relative name, absolute path, lstat) for ``src`` (a file or a folder), sorted."""
    st = os.stat(src)  # the top level may be a symlink the operator named
    if not stat.S_ISDIR(st.st_mode):
        yield os.path.basename(src.rstrip("/")), src, st
        return
    for root, dirs, files in os.walk(src, followlinks=False):
        dirs.sort()
        rel_root = os.path.relpath(root, src)
        names = sorted(dirs + files)
        for name in names:
            path = os.path.join(root, name)
            rel = name if rel_root == "." else rel_root + "/" + name
            try:
                yield rel, path, os.lstat(path)
            except FileNotFoundError:
                continue


def _kind(st):
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return None


def _record(kind, rel, st, value):
    return ("%s\0%s\0%o\0%d\0%d\0%s\n" % (kind, rel, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, value)).encode(
        "utf-8", "surrogateescape"
    )


def sha256_of(f, head=b""):
    """SHA-256 (hex) and size of ``head`` followed by everything left in the reader ``f``."""
    h = hashlib.sha256(head)
    size = len(head)
    while True:
        data = f.read(CHUNK)
        if not data:
            return h.hexdigest(), size
        h.update(data)
        size += len(data)


def file_sha256(path, follow=True):
    """SHA-256 (hex) of a file; ``follow=False`` refuses a symbolic link (ELOOP) instead of reading its target."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb", buffering=0) as f:
        return sha256_of(f)[0]


def content_digest(src):
    """The digest write_tar() would record for ``src``, reading only."""
    h = hashlib.sha256()
    for rel, path, st in _entries(src):
        kind = _kind(st)
        if kind == "file":
            value = file_sha256(path, follow=False)
        elif kind == "symlink":
            value = os.readlink(path)
        elif kind == "dir":
            value = ""
        else:
            continue
        h.update(_record(kind, rel, st, value))
    return h.hexdigest()


def write_tar(src, out, progress=None):
    """Stream ``src`` as a tar into ``out`` (anything with write()).

    Returns the content digest and counts; sockets, FIFOs and devices are
    skipped and listed.
    """
    h = hashlib.sha256()
    stats = {"files": 0, "dirs": 0, "links": 0, "bytes": 0, "skipped": []}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
        for rel, path, st in _entries(src):
            kind = _kind(st)
            if kind is None:
                stats["skipped"].append(rel)
                continue
            info = tar.gettarinfo(path, arcname=rel)
            if kind == "file":
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb", buffering=0) as f:
                    hf = HashingReader(f)
                    try:
                        tar.addfile(info, hf)
                    except OSError as e:
                        if e.errno is None:
                            raise LifeboatError(
                                "%s changed size while it was read; nothing was written. Run again when it is "
                                "stable." % path, option="src")
                        raise
                value = hf.sha256.hexdigest()
                stats["files"] += 1
                stats["bytes"] += info.size
            elif kind == "symlink":
                tar.addfile(info)
                value = info.linkname
                stats["links"] += 1
            else:
                tar.addfile(info)
                value = ""
                stats["dirs"] += 1
            h.update(_record(kind, rel, st, value))
            if progress is not None:
                progress(rel)
    return h.hexdigest(), stats


# -- reading ------------------------------------------------------------------

class HostileMember(LifeboatError):
    def __init__(self, name, why):
        super(HostileMember, self).__init__(
            "Refused to unpack the bundle: member %r %s. Nothing was written to dest. The bundle may be "
            "hostile or damaged; do not unpack it by hand without checking it." % (name, why),
            option="src",
            details={"member": name},
        )


def safe_name(raw):
    """A member name as a relative path inside dest, or None for the root itself."""
    if not raw or "\0" in raw:
        raise HostileMember(raw, "has an empty name or a NUL byte")
    if raw.startswith("/"):
        raise HostileMember(raw, "has an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise HostileMember(raw, "contains '..'")
    return "/".join(parts) or None


class Unpacker(object):
    """Reads a tar stream; with ``staging`` it writes the members there.

    Without ``staging`` (check mode) it only hashes the content, so that the
    same plan() says what would change.
    """

    def __init__(self, dest, staging=None, keep_owner=None):
        self.dest = dest
        self.staging = staging
        self.keep_owner = (os.geteuid() == 0) if keep_owner is None else keep_owner
        self.entries = {}
        self.bytes = 0

    # -- consuming the stream -------------------------------------------------------
    def consume(self, fileobj):
        try:
            tar = tarfile.open(fileobj=fileobj, mode="r|", bufsize=CHUNK)
        except tarfile.TarError as e:
            raise BundleError("it is not a tar stream (%s)" % e)
        try:
            for member in tar:
                self._member(tar, member)
        except tarfile.TarError as e:
            raise BundleError("the tar stream is damaged (%s)" % e)
        self.check_links()

    def _parents(self, name):
        parts = name.split("/")
        for i in range(1, len(parts)):
            yield "/".join(parts[:i])

    def _ensure_parents(self, name, raw):
        for parent in self._parents(name):
            e = self.entries.get(parent)
            if e is None:
                self.entries[parent] = {"kind": "dir", "mode": None, "implicit": True}
                self._stage_dir(parent)
            elif e["kind"] != "dir":
                raise HostileMember(raw, "lies below %r, which the bundle makes a %s" % (parent, e["kind"]))

    def _stage_dir(self, name):
        if self.staging is not None:
            path = os.path.join(self.staging, name)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise LifeboatError("The staging folder %s was changed under us." % self.staging)

    def _owner(self, member):
        return (member.uid, member.gid) if self.keep_owner else None

    def _member(self, tar, m):
        raw = m.name
        name = safe_name(raw)
        if name is None:
            if not m.isdir():
                raise HostileMember(raw, "names the destination itself but is not a folder")
            return
        if name in self.entries and not self.entries[name].get("implicit"):
            raise HostileMember(raw, "appears twice in the bundle")
        self._ensure_parents(name, raw)
        mode = m.mode & 0o7777 & ~(stat.S_ISUID | stat.S_ISGID)
        entry = {"kind": None, "mode": mode, "owner": self._owner(m), "mtime": m.mtime}
        if m.isdir():
            entry["kind"] = "dir"
            if name not in self.entries:
                self._stage_dir(name)
        elif m.isfile():
            entry["kind"] = "file"
            entry["sha256"], entry["size"] = self._stage_file(name, tar.extractfile(m))
        elif m.issym():
            target = m.linkname
            if not target or "\0" in target:
                raise HostileMember(raw, "is a symlink with an empty target")
            if target.startswith("/"):
                raise HostileMember(raw, "is a symlink to an absolute path (%s), outside dest" % target)
            entry["kind"] = "symlink"
            entry["target"] = target
            if self.staging is not None:
                os.symlink(target, os.path.join(self.staging, name))
        elif m.islnk():
            target = safe_name(m.linkname)
            first = self.entries.get(target) if target else None
            if not first or first["kind"] != "file":
                raise HostileMember(raw, "is a hard link to %r, which is not an earlier file of the bundle" % m.linkname)
            # one inode: the link has the mode and owner of the file it links to
            entry.update(kind="file", sha256=first["sha256"], size=first["size"], link_to=target, mode=first["mode"],
                         owner=first["owner"])
            if self.staging is not None:
                os.link(os.path.join(self.staging, target), os.path.join(self.staging, name), follow_symlinks=False)
        else:
            what = "device" if (m.ischr() or m.isblk()) else ("FIFO" if m.isfifo() else "special member")
            raise HostileMember(raw, "is a %s; only files, folders and links are unpacked" % what)
        self.entries[name] = entry

    def _stage_file(self, name, src):
        """Hash (and, unless checking, stage) one member's data; return (SHA-256, size)."""
        h = hashlib.sha256()
        size = 0
        out = None
        if self.staging is not None:
            fd = os.open(os.path.join(self.staging, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600)
            out = os.fdopen(fd, "wb", buffering=0)
        try:
            while True:
                data = src.read(CHUNK)
                if not data:
                    break
                h.update(data)
                size += len(data)
                if out is not None:
                    view = memoryview(data)
                    while view:
                        view = view[out.write(view):]
            if out is not None:
                os.fsync(out.fileno())
                self.bytes += size
        finally:
            if out is not None:
                out.close()
        return h.hexdigest(), size

    def check_links(self):
        """Every symlink of the bundle must resolve inside dest, following the bundle's own links."""
        for name, e in sorted(self.entries.items()):
            if e["kind"] == "symlink":
                start = name.split("/")[:-1]
                try:
                    self._resolve(start + e["target"].split("/"), 0)
                except _Escape as why:
                    raise HostileMember(name, "is a symlink to %s, which resolves outside dest%s" % (
                        e["target"], str(why)))

    def _resolve(self, parts, depth):
        if depth > MAX_LINK_DEPTH:
            raise _Escape(" (too many levels of links)")
        stack = []
        for part in parts:
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    raise _Escape("")
                stack.pop()
                continue
            stack.append(part)
            e = self.entries.get("/".join(stack))
            if e is not None and e["kind"] == "symlink":
                if e["target"].startswith("/"):
                    raise _Escape("")
                stack = self._resolve(stack[:-1] + e["target"].split("/"), depth + 1)
        return stack

    # -- comparing with dest ----------------------------------------------------------
    def plan(self):
        """[(name, action)] with action in create, replace, update (mode/owner), unchanged."""
        dest = self.dest
        try:
            st = os.stat(dest)
            if not stat.S_ISDIR(st.st_mode):
                raise LifeboatError("dest %s exists and is not a folder; a bundle unpacks into a folder. "
                                    "Choose another dest." % dest, option="dest")
        except FileNotFoundError:
            return [(name, "create") for name in sorted(self.entries)]
        actions = []
        missing_below = None
        for name in sorted(self.entries):
            e = self.entries[name]
            if missing_below and name.startswith(missing_below + "/"):
                actions.append((name, "create"))
                continue
            path = os.path.join(dest, name)
            try:
                cur = os.lstat(path)
            except FileNotFoundError:
                actions.append((name, "create"))
                if e["kind"] == "dir":
                    missing_below = name
                continue
            actions.append((name, self._compare(name, e, path, cur)))
        return actions

    def _compare(self, name, e, path, cur):
        kind = e["kind"]
        if kind == "dir":
            if not stat.S_ISDIR(cur.st_mode):
                raise LifeboatError(
                    "dest already has %s as a %s where the bundle has a folder; lifeboat does not write through "
                    "or remove it. Move it away or choose another dest." % (path, _what(cur)), option="dest")
            return "update" if self._meta_differs(e, cur) else "unchanged"
        if stat.S_ISDIR(cur.st_mode):
            raise LifeboatError(
                "dest already has a folder %s where the bundle has a %s; move it away or choose another dest."
                % (path, kind), option="dest")
        if kind == "symlink":
            if stat.S_ISLNK(cur.st_mode) and os.readlink(path) == e["target"]:
                return "unchanged"
            return "replace"
        if not stat.S_ISREG(cur.st_mode) or cur.st_size != e["size"] or file_sha256(path, follow=False) != e["sha256"]:
            return "replace"
        return "update" if self._meta_differs(e, cur) else "unchanged"

    def _meta_differs(self, e, cur):
        if e["mode"] is not None and stat.S_IMODE(cur.st_mode) != e["mode"]:
            return True
        return bool(e.get("owner")) and (cur.st_uid, cur.st_gid) != tuple(e["owner"])

    # -- publishing -------------------------------------------------------------------
    def _finish_staging(self):
        """Modes, owners and times on the staged tree (folders last, deepest first)."""
        for name in sorted(self.entries, reverse=True):
            e = self.entries[name]
            path = os.path.join(self.staging, name)
            if e.get("owner"):
                os.lchown(path, e["owner"][0], e["owner"][1])
            if e["kind"] == "symlink":
                continue
            if e["kind"] == "file" and not e.get("link_to"):
                os.utime(path, (e["mtime"], e["mtime"]), follow_symlinks=False)
            mode = e["mode"] if e["mode"] is not None else 0o700
            if e["kind"] == "dir":
                mode |= stat.S_IRWXU  # while we move things out of it; fixed on publish
            os.chmod(path, mode)

    def apply(self, actions):
        """Move the staged members into dest following ``actions`` (from plan())."""
        self._finish_staging()
        dest = self.dest
        if not os.path.lexists(dest):
            os.chmod(self.staging, 0o700)
            os.rename(self.staging, dest)
            self.staging = None
            self._fix_dir_modes(dest, [n for n, _a in actions])
            fsync_dir(os.path.dirname(dest))
            return
        touched = set()
        dir_modes = []
        for name, action in actions:
            e = self.entries[name]
            path = os.path.join(dest, name)
            staged = os.path.join(self.staging, name)
            if e["kind"] == "dir":
                if action == "create":
                    os.mkdir(path, 0o700)
                    touched.add(os.path.dirname(path))
                if action in ("create", "update"):
                    dir_modes.append(name)
                continue
            if action in ("create", "replace"):
                os.replace(staged, path)
                touched.add(os.path.dirname(path))
            elif action == "update":
                if e.get("owner"):
                    os.lchown(path, e["owner"][0], e["owner"][1])
                os.chmod(path, e["mode"])
        self._fix_dir_modes(dest, dir_modes)
        for d in touched:
            fsync_dir(d)

    def _fix_dir_modes(self, root, names):
        for name in sorted(names, reverse=True):
            e = self.entries[name]
            if e["kind"] != "dir":
                continue
            path = os.path.join(root, name)
            if e.get("owner"):
                os.lchown(path, e["owner"][0], e["owner"][1])
            if e["mode"] is not None:
                os.chmod(path, e["mode"])


class _Escape(Exception):
    pass


class BundleError(LifeboatError):
    def __init__(self, why):
        super(BundleError, self).__init__(
            "The decrypted data of src is not a usable bundle: %s. Nothing was written to dest. If src is a "
            "single encrypted file, set format: file." % why, option="format")


def _what(st):
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "special file"


def make_staging(dest):
    """A private 0700 folder beside ``dest`` (same file system: moves are renames)."""
    parent = os.path.dirname(dest) or "."
    return tempfile.mkdtemp(prefix=".%s.lifeboat-" % os.path.basename(dest), suffix=".partial", dir=parent)


def remove_staging(path):
    if path and os.path.isdir(path):
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o700)
                except OSError:
                    pass
        shutil.rmtree(path, ignore_errors=True)
