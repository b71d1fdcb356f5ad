# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite restores: decrypt into a temporary file beside the target, check it
(SHA-256 and sizes against the manifest, integrity_check, row counts), then
rename it over the target. The old file stays as a hard-linked safety copy
until the rename succeeded.

A process that has the old file open keeps using the old file after the
rename (POSIX semantics), so a target that any process has open is refused,
naming the processes; SQLite's -wal, -shm and -journal files beside the
target mean the same (or a crash) and are refused too.
"""

import errno
import os
import sqlite3
import stat
import time
from urllib.parse import quote

from . import naming, pipeline, restore_guard
from . import sqlite as sqlite_engine
from .errors import LifeboatError
from .files import fsync_dir
from .repository import describe_os_error
from .restore_common import compare_counts

SIDECARS = ("-wal", "-shm", "-journal")


def _open_readonly(path):
    return sqlite3.connect("file:%s?mode=ro" % quote(path), uri=True, timeout=5)


def _inspect(path):
    """(tables, rows) of an existing SQLite file, or None when it is not a readable SQLite database."""
    before = [s for s in ("-wal", "-shm") if os.path.lexists(path + s)]
    try:
        return _count(path)
    finally:
        # A read-only connection to a WAL database can leave empty -wal/-shm files behind: they
        # would pair with the restored file. Remove the ones this inspection created.
        for suffix in ("-wal", "-shm"):
            side = path + suffix
            if suffix not in before and os.path.lexists(side) and (suffix == "-shm" or os.path.getsize(side) == 0):
                _unlink(side)


def _count(path):
    try:
        conn = _open_readonly(path)
        try:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")]
            rows = 0
            for name in names:
                rows += conn.execute("SELECT count(*) FROM %s" % sqlite_engine.quote_ident(name)).fetchone()[0]
            return {"tables": len(names), "rows": rows}
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def open_by(path):
    """Processes that have ``path`` open (Linux /proc; others are not visible to this user)."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = "/proc/%s/fd" % entry
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.st_ino == st.st_ino and target.st_dev == st.st_dev:
                try:
                    with open("/proc/%s/comm" % entry) as f:
                        comm = f.read().strip()
                except OSError:
                    comm = "?"
                found.append("pid %s (%s)" % (entry, comm))
                break
    return found


class SqlitePlan(object):
    kind = "sqlite"

    def __init__(self, req, art, owners=None):
        self.art = art
        self.target = req.target_path
        self.keep = req.keep_safety_copy
        self.directory = os.path.dirname(self.target)
        if not os.path.isdir(self.directory):
            raise LifeboatError("The folder of target_path %s does not exist; create it first." % self.target,
                                option="target_path")
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise LifeboatError("The folder %s is not writable by this user: the restored file is written beside "
                                "the target and renamed over it. Fix its owner or mode." % self.directory,
                                option="target_path")
        self.existed = os.path.lexists(self.target)
        self.inspected = None
        self.size = None
        self.users = []
        if self.existed:
            st = os.lstat(self.target)
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
                raise LifeboatError("The target %s is not a regular file (a symlink or a folder); lifeboat replaces "
                                    "files only. Give the real file as target_path." % self.target,
                                    option="target_path")
            self.size = st.st_size
            sidecars = [self.target + s for s in SIDECARS if os.path.lexists(self.target + s)]
            self.users = open_by(self.target)
            if self.users or sidecars:
                raise LifeboatError(
                    "The SQLite file %s is in use: %s. A process that keeps the old file open would go on "
                    "writing to it after the restore. Stop the application that uses it (a -wal or -journal "
                    "file left by a crash goes away when the application opens and closes the database once), "
                    "then run again. Nothing was changed." % (
                        self.target, "; ".join(
                            (["opened by " + ", ".join(self.users)] if self.users else []) +
                            (["%s exists" % ", ".join(sidecars)] if sidecars else []))),
                    option="target_path",
                )
            self.inspected = _inspect(self.target) if self.size else {"tables": 0, "rows": 0}
            if self.inspected is None:
                raise LifeboatError(
                    "The target %s is not a SQLite database (%d bytes that SQLite cannot read): it belongs to "
                    "something else, and lifeboat replaces only SQLite files, whatever the options. Nothing was "
                    "changed. Check target_path (or path)." % (self.target, self.size), option="target_path")
        self.nonempty = self.existed and (self.inspected is None or self.inspected["tables"] > 0)
        restore_guard.check_path(req, art, self.target, self.existed, self.nonempty,
                                 owners or restore_guard.Owners(None))
        if self.nonempty and not req.force:
            raise LifeboatError(
                "The target %s is not empty (%s). Nothing was changed. Set force: true to replace it, or restore "
                "into another target_path." % (self.target, self._contents()),
                option="force",
            )

    def _contents(self):
        if self.inspected is None:
            return "%s, not a readable SQLite database" % naming.human_size(self.size)
        return "%d tables, %d rows, %s" % (self.inspected["tables"], self.inspected["rows"], naming.human_size(self.size))

    def describe(self):
        replaced = {"path": self.target, "existed": self.existed}
        if self.existed:
            replaced.update({"size_bytes": self.size, "contents": self.inspected, "empty": not self.nonempty})
        return {
            "target": {"kind": "sqlite", "server": None, "database": None, "schema": None, "path": self.target},
            "replaced": replaced,
            "safety_copy": None,
            "connected_sessions": [],
            "fresh_database": None,
        }

    def summary_check(self):
        counts = self.art.manifest["row_counts"]
        return "Check mode, nothing changed: would restore %s (%d tables, %d rows) into %s%s." % (
            self.art.name, len(counts), sum(counts.values()), self.target,
            ", replacing it (%s); the old file would be %s" % (
                self._contents(), "kept beside it" if self.keep else "removed (keep_safety_copy: false)")
            if self.existed else " (a new file)")

    def summary_done(self, outcome, seconds):
        return "Restored %s into %s in %.1f s: %d tables, %d rows, equal to the manifest%s." % (
            self.art.name, self.target, seconds, len(outcome["row_counts"]), sum(outcome["row_counts"].values()),
            "" if not self.existed else "; the old file %s" % (
                "is kept as %s" % outcome["safety_copy"]["path"] if outcome["safety_copy"]["kept"] else "was replaced"))


def plan(req, art, owners=None):
    return SqlitePlan(req, art, owners)


def apply(req, art, identities, plan, progress):
    t0 = time.monotonic()
    token = naming.derived_name("r", plan.target, art.name, os.getpid(), time.time())
    tmp = os.path.join(plan.directory, ".%s.restoring" % token)
    safety = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise LifeboatError(describe_os_error(e, "Creating a file in %s" % plan.directory), option="target_path")
    unchanged = ("The target %s was not changed." % plan.target if plan.existed else
                 "No file was created at %s." % plan.target)
    try:
        out = os.fdopen(fd, "wb", buffering=0)
        src = art.open()
        try:
            sizes = pipeline.load(src, out, identities, art.compressed, progress)
            os.fsync(out.fileno())
        except OSError as e:
            if getattr(e, "errno", None) is None:
                raise
            raise LifeboatError(describe_os_error(e, "Writing the restored file in %s" % plan.directory) + ". " +
                                unchanged, option="target_path")
        finally:
            src.close()
            out.close()
        art.verify(sizes)
        problems = sqlite_engine.integrity_check(tmp)
        if problems != "ok":
            raise LifeboatError("The restored SQLite file fails its integrity check (%s). %s Restore another "
                                "artifact." % (problems, unchanged), option="artifact")
        counts = sqlite_engine.table_row_counts(tmp)
        differ = compare_counts(art.manifest["row_counts"], counts)
        if differ:
            raise LifeboatError("The restored row counts differ from the manifest of %s (%s). %s" % (
                art.name, "; ".join(differ[:5]), unchanged), option="artifact")
        if plan.existed:
            st = os.stat(plan.target)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                os.chown(tmp, st.st_uid, st.st_gid)
            safety = os.path.join(plan.directory, naming.derived_name("s", plan.target, art.name, time.time()) + ".sqlite")
            os.link(plan.target, safety)
        os.rename(tmp, plan.target)
        for suffix in SIDECARS:  # left by the checks' connections to the temporary name
            _unlink(tmp + suffix)
        tmp = None
        fsync_dir(plan.directory)
    except LifeboatError as e:
        if safety:
            _unlink(safety)
        if unchanged not in e.msg:
            e.msg = "%s %s" % (e.msg, unchanged)
        raise
    except BaseException:
        if safety:
            _unlink(safety)
        raise
    finally:
        if tmp:
            _unlink(tmp)
            for suffix in SIDECARS:
                _unlink(tmp + suffix)
    entry = None
    if safety:
        entry = {"path": safety, "kept": plan.keep, "dropped": False, "dropped_at": None}
        if plan.keep:
            entry["note"] = ("Kept (keep_safety_copy: true, the default). To go back: mv %s %s. Remove it when no "
                             "longer needed." % (safety, plan.target))
        else:
            _unlink(safety)
            entry["dropped"] = True
            entry["dropped_at"] = naming.iso(naming.utcnow())
    return {"row_counts": counts, "row_counts_match": True, "terminated_sessions": [],
            "safety_copy": entry, "seconds_restore": round(time.monotonic() - t0, 3)}


def _unlink(path):
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
