# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The child processes of the engine (pg_dump, pg_dumpall, pg_restore, psql): one
``Tool`` that starts one, keeps its stderr, and says how it ended; and the
helpers that make a tool's message fit to quote (first errors, secrets out)."""

import os
import re
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


class Tool(object):
    """A child process whose stderr is kept in an anonymous temporary file (no thread reads it).

    ``stdin``/``stdout`` may be ``subprocess.PIPE`` (the pipe is grown for throughput), a file
    descriptor, or DEVNULL (the default). ``close()`` always: it stops the child if it still
    runs and closes its pipes and the kept stderr.
    """

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
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                grow_pipe(stream)

    @classmethod
    def reading(cls, argv, env):
        """A tool whose stdout is read (pg_dump, pg_dumpall): ``proc.stdout``, then ``finish()``."""
        return cls(argv, env, stdout=subprocess.PIPE)

    @classmethod
    def run(cls, argv, env, **kwargs):
        """Run the tool to its end; its ``failure()`` (None when it succeeded)."""
        tool = cls(argv, env, **kwargs)
        try:
            tool.wait()
            return tool.failure()
        finally:
            tool.close()

    def text(self):
        """The end of what the tool wrote to stderr (at most STDERR_LIMIT bytes)."""
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

    def end_input(self):
        """Close the tool's stdin; False when it had stopped reading already."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            return False
        return True

    def kill(self):
        """Stop the child if it still runs and close its pipes (its stderr stays readable)."""
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

    def finish(self, what):
        """A tool whose stdout was read to its end: wait for it; raise unless it exited 0.
        Returns its messages (warnings) otherwise."""
        self.proc.stdout.close()
        rc = self.proc.wait()
        err = self.text().strip()
        if rc != 0:
            raise LifeboatError(
                "%s failed: %s exited with code %d: %s" % (what, self.name, rc, err or "(no message)"),
                details={"rc": rc, "stderr": err},
            )
        return err

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
