# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an S3 repository keeps on this host: its tenants' locks and the journal of the
multipart uploads this host started.

S3 has no locks: the lock of a tenant is a flock on a file of this host (``/run/lifeboat``
for root, else ``$XDG_RUNTIME_DIR/lifeboat`` or the temp folder), keyed by endpoint,
bucket, prefix and tenant. Uploads this host starts are recorded beside it until they
complete or are aborted, so that the next run aborts those a killed run left open.
"""

import hashlib
import json
import os
import stat
import tempfile
import time

from .. import naming
from ..errors import LifeboatError
from ..locking import FileLock, lock_holder


def default_lock_dir():
    """Where S3 repository locks live on this host (host-local by nature)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/run/lifeboat"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "lifeboat")
    return os.path.join(tempfile.gettempdir(), "lifeboat-%d" % os.getuid())


def _private_dir(path, create):
    """``path`` as a private folder of this user (0700, not a symlink)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        try:
            os.makedirs(path, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise LifeboatError("Cannot create the lock folder %s for S3 repositories: %s." % (path, e.strerror),
                                option="repository")
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise LifeboatError("The lock folder %s is not a plain folder; remove it and run again." % path,
                            option="repository")
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise LifeboatError(
            "The lock folder %s must belong to this user and be private (0700), since it holds the locks and the "
            "pending uploads of S3 repositories; fix its owner and mode." % path, option="repository")
    return True


class HostLocks(object):
    """The host-local part of ``S3Repository`` (needs its endpoint_url, bucket, prefix and lock_dir)."""

    def _lock_base(self, tenant):
        naming.validate_repo_tenant(tenant)
        ident = "\0".join([self.endpoint_url or "aws", self.bucket, self.prefix, tenant])
        return os.path.join(self.lock_dir, "s3-%s-%s" % (hashlib.sha256(ident.encode("utf-8")).hexdigest()[:20],
                                                         tenant))

    def lock_path(self, tenant):
        return self._lock_base(tenant) + ".lock"

    def lock(self, tenant, operation, timeout=0):
        _private_dir(self.lock_dir, create=True)
        return FileLock(self.lock_path(tenant), operation, timeout,
                        subject="tenant %s in %s (a lock of this host only)" % (tenant, self))

    def lock_holder(self, tenant):
        return lock_holder(self.lock_path(tenant))

    def _journal_dir(self, tenant):
        return self._lock_base(tenant) + ".uploads"

    def journal_add(self, tenant, key, upload_id):
        """Record an upload this host started, until it completes or is aborted."""
        try:
            _private_dir(self.lock_dir, create=True)
            _private_dir(self._journal_dir(tenant), create=True)
            path = os.path.join(self._journal_dir(tenant), hashlib.sha256(upload_id.encode()).hexdigest()[:32])
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"key": key, "upload_id": upload_id, "pid": os.getpid(), "started": time.time()}, f)
            return path
        except (OSError, LifeboatError):
            return None  # only an optimisation for the next run: the age rule still applies

    def journal_remove(self, path):
        try:
            os.unlink(path)
        except OSError:
            pass

    def _journal(self, tenant):
        directory = self._journal_dir(tenant)
        out = {}
        try:
            if not _private_dir(directory, create=False):
                return out
            entries = os.listdir(directory)
        except (OSError, LifeboatError):
            return out
        for entry in entries:
            path = os.path.join(directory, entry)
            try:
                with open(path) as f:
                    rec = json.load(f)
                out[rec["upload_id"]] = path
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out
