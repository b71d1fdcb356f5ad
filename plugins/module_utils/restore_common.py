# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the restore paths: child processes, their messages,
private temporary folders, row-count comparison."""

import os
import re
import shutil
import subprocess
import tempfile

from .errors import LifeboatError
from .pipeline import grow_pipe

STDERR_LIMIT = 64 * 1024

_ERROR_RE = re.compile(r"(?:^|\s)(?:error|ERROR|FATAL|PANIC):")
_SECRET_RES = (
    re.compile(r"(PASSWORD\s+)'(?:[^']|'')*'", re.IGNORECASE),
    re.compile(r"(SCRAM-SHA-256\$)[^\s'\"]+"),
    re.compile(r"(AGE-SECRET-KEY-)[0-9A-Z]+"),
    re.compile(r"(\bmd5)[0-9a-f]{32}\b"),
)


def redact(text):
    """Remove password hashes and keys from a tool's message before quoting it."""
    for rx in _SECRET_RES:
        text = rx.sub(lambda m: m.group(1) + ("'***'" if m.group(0).endswith("'") else "***"), text)
    return text


def error_lines(text, limit=3):
    """The first error lines of a PostgreSQL tool's stderr (with pg_restore's 'Command was:')."""
    lines = (text or "").splitlines()
    found = []
    for i, line in enumerate(lines):
        if not _ERROR_RE.search(line):
            continue
        entry = line.strip()
        if i + 1 < len(lines) and lines[i + 1].startswith("Command was:"):
            command = lines[i + 1].strip()
            entry += " [%s]" % (command if len(command) <= 200 else command[:197] + "...")
        found.append(redact(entry))
        if len(found) >= limit:
            break
    return found


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


class Tool(object):
    """A child process whose stderr is kept in an anonymous temporary file (no thread reads it)."""

    def __init__(self, argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=()):
        self.argv = argv
        self.name = os.path.basename(argv[0])
        self.stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=self.stderr, env=env,
                                         bufsize=0, close_fds=True, pass_fds=pass_fds)
        except OSError as e:
            self.stderr.close()
            raise LifeboatError("Cannot run %s: %s. Check pg_bin_dir." % (argv[0], e.strerror), option="pg_bin_dir")
        if self.proc.stdin is not None:
            grow_pipe(self.proc.stdin)

    def text(self):
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - STDERR_LIMIT))
        return self.stderr.read().decode("utf-8", "replace")

    def errors(self, limit=3):
        return error_lines(self.text(), limit)

    def wait(self):
        return self.proc.wait()

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def close(self):
        self.kill()
        self.stderr.close()

    def failure(self):
        """None when the tool exited 0 and printed no error; else a short description."""
        rc = self.proc.poll()
        errors = self.errors()
        if rc == 0 and not errors:
            return None
        if errors:
            return "%s reported: %s" % (self.name, " | ".join(errors))
        last = [line.strip() for line in self.text().splitlines() if line.strip()][-2:]
        if rc is not None and rc < 0:
            return "%s was killed by signal %d%s" % (self.name, -rc, (": " + redact(" | ".join(last))) if last else "")
        return "%s exited with code %s%s" % (self.name, rc, (": " + redact(" | ".join(last))) if last else "")


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
