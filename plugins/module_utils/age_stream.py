# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""age streams for age_encrypt: plaintext in, ciphertext out, bounded memory.

pyrage's ``decrypt_io`` pushes plaintext into a writer and ``encrypt_io``
pulls plaintext from a reader. Joining one of them to the other side of a
tar stream (or to each other, for rekeying) needs a pipe and a second flow
of control. A second Python thread next to pyrage is catastrophically slow
(TESTING.md: every 8 KiB read waits for the GIL), so the age side runs in a
small child process of the same interpreter (``_age/worker.py``), and this process
drives both ends of its pipes from one thread with ``poll``. Measured on 2
cores for 300 MB: rekey through a child 1.3 to 2.3 s, through a thread 1.8
to 2.5 s; encryption alone 0.9 s.

Keys reach the child through a pipe, never through argv or the environment.
Passphrase encryption exists in pyrage in memory only: it is capped at
``PASSPHRASE_MAX_BYTES``.
"""

import base64
import binascii
import json
import os
import select
import subprocess
import sys
import tempfile

from . import naming
# The child imports the worker by name (BOOTSTRAP); importing it here too makes packagers that follow imports
# (Ansible's module payload, the agent's wheel) ship it.
from ._age import worker as _worker  # noqa: F401 pylint: disable=unused-import
from .errors import LifeboatError
from .pipeline import PIPE_SIZE, grow_pipe

CHUNK = 1 << 16
AGE_MAGIC = b"age-encryption.org/v1"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
# pyrage holds passphrase-encrypted data in memory (about 3x the size): cap it.
PASSPHRASE_MAX_BYTES = 16 * 1024 * 1024
HEADER_MAX = 1 << 20

# The child process runs _age.worker.main() in this interpreter. The engine's package is re-created in the child
# from its folders, whatever its name and wherever it lives (a folder, or the zip of an Ansible module), so that
# the worker parses keys with crypto.py like this process does. The packages above it (ansible_collections...,
# which the child cannot import) stand empty: a relative import looks them up.
BOOTSTRAP = (
    "import importlib, json, sys, types\n"
    "parts = sys.argv[1].split('.')\n"
    "sys.modules.update(('.'.join(parts[:i]), types.ModuleType('.'.join(parts[:i]))) for i in range(1, len(parts)))\n"
    "package = types.ModuleType(sys.argv[1])\n"
    "package.__path__ = json.loads(sys.argv[2])\n"
    "sys.modules[sys.argv[1]] = package\n"
    "sys.exit(importlib.import_module(sys.argv[1] + '._age.worker').main(sys.argv[3:]))\n"
)


# -- the age header ---------------------------------------------------------------

def parse_header(data):
    """Facts from the beginning of an age file: armored, stanza types.

    Returns None when ``data`` does not look like age at all; raises when it
    starts like age but the header is cut short.
    """
    stripped = data.lstrip()
    armored = stripped.startswith(ARMOR_BEGIN)
    if armored:
        lines = stripped[len(ARMOR_BEGIN):].split(b"\n")
        b64 = b"".join(line.strip() for line in lines if line.strip() and not line.startswith(b"-----"))
        try:
            data = base64.b64decode(b64[: len(b64) - len(b64) % 4])
        except (binascii.Error, ValueError):
            return None
    if not data.startswith(AGE_MAGIC + b"\n"):
        return None
    stanzas = []
    for line in data.split(b"\n")[1:]:
        if line.startswith(b"-> "):
            parts = line[3:].split(b" ")
            stanzas.append(parts[0].decode("ascii", "replace"))
        elif line.startswith(b"---"):
            return {"armored": armored, "stanzas": stanzas}
    raise LifeboatError("truncated age header")


def read_header(path, option="src"):
    try:
        with open(path, "rb") as f:
            data = f.read(HEADER_MAX)
    except OSError as e:
        raise LifeboatError("Cannot read %s %s: %s." % (option, path, e.strerror), option=option)
    return header_of(data, path, option)


def header_of(data, path, option="src"):
    """parse_header() of the first bytes of ``path``, with errors an operator can act on."""
    try:
        header = parse_header(data)
    except LifeboatError:
        raise LifeboatError(
            "%s %s is truncated: its age header is incomplete. Use an intact copy." % (option, path), option=option
        )
    if header is None:
        raise LifeboatError(
            "%s %s is not an age file (it starts neither with %s nor with an armored age block). "
            "Check the path." % (option, path, AGE_MAGIC.decode()),
            option=option,
        )
    return header


def describe_stanzas(stanzas):
    counts = {}
    for s in stanzas:
        if s.endswith("-grease"):
            continue  # random stanzas age adds on purpose
        counts[s] = counts.get(s, 0) + 1
    return ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())) or "no recipient"


# -- the child process and its pipes ---------------------------------------------

def _python():
    if not sys.executable:
        raise LifeboatError("Cannot start the age worker: this Python does not know its own executable path.")
    return sys.executable


def _worker_argv():
    """The command line that starts the age worker; its own arguments follow."""
    package = __name__.rpartition(".")[0]
    return [_python(), "-c", BOOTSTRAP, package, json.dumps(list(sys.modules[package].__path__))]


class AgeProcess(object):
    """pyrage in a child process, its stdin and stdout driven from this thread.

    Pull mode (``source`` given): ``read()`` returns the child's output and
    feeds ``source`` to its input as needed. Push mode (``sink`` given):
    ``write()`` feeds input and passes output to ``sink`` as it comes.
    Either way at most a few pipe buffers are in flight.
    """

    def __init__(self, op, key_text, source=None, sink=None, armored=False):
        self.op = op
        self.source = source
        self.sink = sink
        self.buf = bytearray()
        self.pending = b""
        self.out_eof = False
        self.broken = False
        self._outcome = None
        self.stderr = tempfile.TemporaryFile()
        fds = []
        try:
            key_r, key_w = os.pipe()
            st_r, st_w = os.pipe()
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            fds = [key_w, st_r, in_w, out_r]
            try:
                self.proc = subprocess.Popen(
                    _worker_argv() + [op, str(key_r), str(st_w), "1" if armored else "0"],
                    stdin=in_r, stdout=out_w, stderr=self.stderr, pass_fds=(key_r, st_w), close_fds=True,
                )
            finally:
                for fd in (key_r, st_w, in_r, out_w):
                    os.close(fd)
        except BaseException:
            for fd in fds:
                os.close(fd)
            self.stderr.close()
            raise
        self.status_fd, self.in_fd, self.out_fd = st_r, in_w, out_r
        try:
            view = memoryview(key_text.encode("utf-8"))
            while view:
                view = view[os.write(key_w, view):]
        except BrokenPipeError:
            pass  # the child died: finish() tells why
        finally:
            os.close(key_w)
        for fd in (self.in_fd, self.out_fd):
            os.set_blocking(fd, False)
            grow_pipe(fd)  # fewer wake-ups; best effort
        self._poller = select.poll()
        self._registered = {}

    # -- the loop ---------------------------------------------------------------------
    def _close_input(self):
        if self.in_fd is not None:
            if self._registered.pop(self.in_fd, None) is not None:
                self._poller.unregister(self.in_fd)
            os.close(self.in_fd)
            self.in_fd = None
            self.pending = b""

    def _want(self, fd, mask):
        if self._registered.get(fd) == mask:
            return
        if mask:
            if fd in self._registered:
                self._poller.modify(fd, mask)
            else:
                self._poller.register(fd, mask)
            self._registered[fd] = mask
        elif self._registered.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def _step(self, want_output, want_input):
        self._want(self.out_fd, select.POLLIN if want_output and not self.out_eof else 0)
        if self.in_fd is not None:
            self._want(self.in_fd, select.POLLOUT if want_input else 0)
        for fd, _event in self._poller.poll():
            if fd == self.out_fd:
                chunk = os.read(self.out_fd, PIPE_SIZE)
                if not chunk:
                    self.out_eof = True
                elif self.sink is not None:
                    self.sink.write(chunk)
                else:
                    self.buf += chunk
            elif fd == self.in_fd:
                if not self.pending:
                    if self.source is None:
                        continue
                    self.pending = memoryview(self.source.read(PIPE_SIZE))
                    if not self.pending:
                        self._close_input()
                        continue
                try:
                    self.pending = self.pending[os.write(self.in_fd, self.pending):]
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    self.broken = True
                    self._close_input()

    # -- pull mode ----------------------------------------------------------------------
    def read(self, n=-1):
        if n is None or n < 0:
            n = CHUNK
        while len(self.buf) < n and not self.out_eof:
            self._step(True, True)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def readable(self):
        return True

    # -- push mode ------------------------------------------------------------------------
    def write(self, data):
        self.pending = memoryview(data)
        total = len(self.pending)
        while self.pending and self.in_fd is not None:
            self._step(True, True)
        if self.broken:
            self.finish()  # raises the child's own error
            raise LifeboatError("The age worker stopped reading its input.")
        return total

    def writable(self):
        return True

    def flush(self):
        pass

    # -- the end -------------------------------------------------------------------------
    def finish(self):
        """Feed the rest, drain the output, and raise the child's error, if any.

        Returns the number of output bytes that nobody read (pull mode).
        Calling it again gives the same outcome.
        """
        if self._outcome is not None:
            if isinstance(self._outcome, BaseException):
                raise self._outcome
            return self._outcome
        try:
            self._outcome = self._finish()
        except WorkerError as e:
            self._outcome = e
            raise
        return self._outcome

    def _finish(self):
        left = len(self.buf)
        self.buf = bytearray()
        if self.sink is not None:
            self._close_input()
        while not self.out_eof:
            self._step(True, self.source is not None)
            left += len(self.buf)
            self.buf = bytearray()
        self._close_input()
        rc = self.proc.wait()
        with os.fdopen(self.status_fd, "rb") as f:
            raw = f.read(1 << 16)
        self.status_fd = None
        try:
            status = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            status = {}
        if rc != 0 or not status.get("ok"):
            raise WorkerError(status.get("error") or "crash", status.get("msg") or self._stderr(), rc)
        return left

    def _stderr(self):
        self.stderr.seek(0)
        return self.stderr.read(4000).decode("utf-8", "replace").strip() or "no message"

    def close(self):
        """Stop the child (if still running) and free everything. Idempotent."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_input()
        for name in ("out_fd", "status_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        self.stderr.close()


class WorkerError(LifeboatError):
    """The age child failed; ``kind`` is decrypt, truncated, keys, import, crash..."""

    def __init__(self, kind, msg, rc):
        super(WorkerError, self).__init__("age worker: %s: %s (exit code %s)" % (kind, msg, rc))
        self.kind = kind
        self.reason = msg
        self.rc = rc


# -- passphrase encryption ----------------------------------------------------------

class BoundedBuffer(object):
    """In-memory sink for passphrase encryption; refuses more than ``cap`` bytes."""

    def __init__(self, cap, what):
        self.cap = cap
        self.what = what
        self.data = bytearray()

    def write(self, data):
        if len(self.data) + len(data) > self.cap:
            raise LifeboatError(
                "%s is larger than %s: passphrase encryption works in memory only (pyrage) and is capped at "
                "that size. Use recipients (age1... or SSH keys) for larger data." % (self.what, naming.human_size(self.cap)),
                option="passphrase",
            )
        self.data += data
        return len(data)

    def flush(self):
        pass

    def writable(self):
        return True
