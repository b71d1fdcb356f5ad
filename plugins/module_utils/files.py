# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable file writes: the engine's one atomic writer and one directory fsync.

A file is written under a temporary name beside its final path
(``.<name>.<hex>.partial``, the repository's convention, so that a
repository's remove_partials() cleans up after a kill), created 0600 with
O_EXCL and O_NOFOLLOW, fsynced, given its mode, and published by a rename
(or, when it must not replace anything, a link), after which the folder is
fsynced so that the new name survives a crash too.
"""

import errno
import json
import os
import secrets

PARTIAL_SUFFIX = ".partial"

# link() is not supported here: publish by a rename after checking that the name is free.
_NO_LINK = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV)


def fsync_dir(path):
    """fsync the folder ``path`` (after a rename, link or unlink in it).

    Best effort where a folder cannot be fsynced: file systems that refuse it
    (EINVAL), read-only ones, and a folder this process cannot open.
    """
    try:
        fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EROFS):
            raise
    finally:
        os.close(fd)


def partial_name(final_name):
    """The temporary name of a file being written as ``final_name``."""
    return ".%s.%s%s" % (final_name, secrets.token_hex(4), PARTIAL_SUFFIX)


class AtomicFile(object):
    """A file written under a temporary name beside ``final_path``, published by commit().

    ``write()`` takes bytes. ``commit(replace=True)`` renames over the final
    path; ``commit(replace=False)`` never replaces an existing file and raises
    FileExistsError (after abort()) when the name is taken. OSErrors are left
    to the caller, who knows what to tell the operator. As a context manager,
    it removes the temporary file on exit unless committed.
    """

    def __init__(self, final_path, mode=0o600):
        self.final_path = final_path
        self.mode = mode
        self.committed = False
        self.directory = os.path.dirname(final_path) or "."
        self.tmp_path = os.path.join(self.directory, partial_name(os.path.basename(final_path)))
        self.fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)

    def write(self, data):
        view = memoryview(data)
        total = len(view)
        while view:
            view = view[os.write(self.fd, view):]
        return total

    def flush(self):
        pass

    def commit(self, replace=True):
        """fsync, set the mode, publish, fsync the folder; return the final path."""
        os.fsync(self.fd)
        os.fchmod(self.fd, self.mode)
        os.close(self.fd)
        self.fd = None
        if replace:
            os.replace(self.tmp_path, self.final_path)
        else:
            self._publish_new()
        self.committed = True
        fsync_dir(self.directory)
        return self.final_path

    def _publish_new(self):
        try:
            os.link(self.tmp_path, self.final_path)
        except OSError as e:
            if e.errno != errno.EEXIST and e.errno not in _NO_LINK:
                raise
            if e.errno == errno.EEXIST or os.path.lexists(self.final_path):
                self.abort()
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), self.final_path)
            os.rename(self.tmp_path, self.final_path)
        else:
            os.unlink(self.tmp_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if not self.committed:
            self.abort()

    def abort(self):
        """Close and remove the temporary file; idempotent."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        try:
            os.unlink(self.tmp_path)
        except OSError:
            pass


def write_atomic(path, data, mode=0o600, replace=True):
    """Write the bytes ``data`` to ``path`` through an AtomicFile; return ``path``."""
    with AtomicFile(path, mode) as f:
        f.write(data)
        return f.commit(replace=replace)


def json_bytes(data):
    """``data`` as the engine writes JSON files: indented, sorted keys, a final newline."""
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode("utf-8") + b"\n"


def atomic_write_json(path, data, replace=True):
    """Write ``data`` as JSON to ``path`` (mode 0600) through an AtomicFile; return ``path``."""
    return write_atomic(os.path.abspath(path), json_bytes(data), 0o600, replace)
