# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the restore paths: a child's stdin as a sink, private
temporary folders, row-count comparison. The child processes themselves
(``Tool``) and their messages (``error_lines``, ``redact``) are tools.py's."""

import os
import shutil
import tempfile

from .errors import LifeboatError
from .tools import Tool, error_lines, redact

# Tool, error_lines and redact are tools.py's, named here too for the callers of before.
__all__ = ["PipeSink", "PrivateDir", "Tool", "compare_counts", "error_lines", "redact"]


def compare_counts(expected, actual):
    """Differences between manifest and restored row counts, as readable strings."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        e = expected.get(table)
        a = actual.get(table)
        if e != a:
            problems.append("%s: %s restored, %s in the manifest" % (
                table, "none" if a is None else a, "absent" if e is None else e))
    return problems


class PipeSink(object):
    """pipeline.load's writer into a child's stdin; remembers when the child went away."""

    def __init__(self, raw):
        self.raw = raw
        self.broken = False

    def write(self, data):
        try:
            return self.raw.write(data)
        except BrokenPipeError:
            self.broken = True
            raise

    def flush(self):
        pass

    def writable(self):
        return True


class PrivateDir(object):
    """A private 0700 temporary folder, removed on exit whatever happened."""

    def __init__(self, parent=None, prefix="lifeboat-restore-"):
        self.parent = parent
        self.prefix = prefix
        self.path = None

    def __enter__(self):
        try:
            self.path = tempfile.mkdtemp(prefix=self.prefix, dir=self.parent)
        except OSError as e:
            raise LifeboatError("Cannot create a private temporary folder in %s: %s. Set tmp_dir to a folder with "
                                "room for the decrypted archive." % (self.parent or tempfile.gettempdir(), e.strerror),
                                option="tmp_dir")
        os.chmod(self.path, 0o700)
        return self

    def new_file(self, name):
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        return path, os.fdopen(fd, "wb", buffering=0)

    def __exit__(self, *exc):
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
        return False
