# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Advisory locks (flock) that keep two runs on one tenant from overlapping.

The kernel drops an flock when its holder dies, so a SIGKILLed run never
leaves a stale lock behind; the file itself stays (removing lock files races).
The holder writes who it is into the file so that a waiting run can say
who holds it.
"""

import errno
import fcntl
import json
import os
import socket
import time

from .errors import LifeboatError, LockBusy


def _holder_info(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        return json.loads(data.decode("utf-8")) if data else {}
    except (OSError, ValueError):
        return {}


def describe_holder(info):
    if not info:
        return "another process"
    return "%s (pid %s on %s, since %s)" % (
        info.get("operation", "another run"),
        info.get("pid", "?"),
        info.get("host", "?"),
        info.get("since", "?"),
    )


class FileLock(object):
    """An exclusive lock on ``path``, waiting at most ``timeout`` seconds."""

    def __init__(self, path, operation, timeout=0, subject="this tenant"):
        self.path = path
        self.operation = operation
        self.timeout = timeout or 0
        self.subject = subject
        self.fd = None

    def acquire(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise LifeboatError(
                "Cannot open the lock file %s: %s. Check that the repository folder is writable "
                "by this user." % (self.path, e.strerror),
                option="repository",
            )
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = describe_holder(_holder_info(fd))
                    os.close(fd)
                    raise LockBusy(
                        "Cannot start %s: %s already holds the lock on %s (%s). Wait for it to "
                        "finish and run again, or set lock_timeout to wait for it."
                        % (self.operation, holder, self.subject, self.path),
                        option="lock_timeout",
                    )
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        info = {
            "operation": self.operation,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.write(fd, json.dumps(info).encode("utf-8"))
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def lock_holder(path):
    """Who holds the lock at ``path`` (a dict), or None when nobody does.

    Read-only: never creates the file (check mode and prune use it).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _holder_info(fd) or {"operation": "another run"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
