# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repositories: where artifacts live (DESIGN.md, "Artifacts").

``<repository>/<tenant>/<tenant>-<stamp>.<format>[.zst][.age]`` plus the
manifest, written last, which is the commit marker. Every write goes to a
temporary dot-file in the same folder, is fsynced, and is published by a
link/rename that never replaces an existing file. Files are 0600, folders
0700. Names are validated before they are joined to a path, and tenant
folders that are symlinks are refused, so nothing is written outside the
repository.
"""

import errno
import json
import os
import secrets
import stat
import time

from . import naming
from .errors import LifeboatError
from .files import fsync_dir as _fsync_dir
from .locking import FileLock, lock_holder

# Options every engine passes to open_repository() for s3:// repositories: how to reach the store, and (for
# the engines that write artifacts) how to store them. The modules' argument specs (argspec.S3, S3_CONNECTION)
# list the same names; a unit test keeps the two in step.
S3_CONNECTION_OPTIONS = ("s3_endpoint_url", "s3_region", "s3_access_key", "s3_secret_key", "s3_session_token")
S3_OPTIONS = S3_CONNECTION_OPTIONS + ("storage_class", "sse", "sse_kms_key_id")

PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".lock"


def open_repository(spec, create=True, **options):
    """Return a repository object for ``spec`` (a folder or ``s3://...``)."""
    if not spec or not isinstance(spec, str):
        raise LifeboatError("repository is required: give a folder such as /var/backups/lifeboat.", option="repository")
    if "\0" in spec:
        raise LifeboatError("Invalid repository: the value contains a NUL byte.", option="repository")
    if spec.startswith("s3://"):
        from .s3 import S3Repository  # here, not at the top: s3 builds on this module

        return S3Repository(spec, **options)
    if "://" in spec:
        raise LifeboatError(
            "Invalid repository %r: give a local folder or s3://bucket/prefix." % spec, option="repository"
        )
    return LocalRepository(spec, create=create)


def unique_stamp(repo, tenant):
    """(moment, stamp) for a new artifact of ``tenant`` whose stamp no file uses yet.

    Call it while holding the tenant's lock: two runs in one second then get
    different stamps (the second waits for the next second).
    """
    for _attempt in range(5):
        moment = naming.utcnow()
        stamp = naming.format_stamp(moment)
        if not repo.stamp_taken(tenant, stamp):
            return moment, stamp
        time.sleep(1.05 - (time.time() % 1.0))
    raise LifeboatError("Could not find a free time stamp for tenant %s; is the clock stuck?" % tenant)


def describe_os_error(e, what):
    """Turn an OSError raised while writing into a message with a next step."""
    if e.errno == errno.ENOSPC:
        hint = "the file system is full: free space (or prune old backups) and run again"
    elif e.errno == errno.EDQUOT:
        hint = "the disk quota is exhausted: raise it or free space and run again"
    elif e.errno in (errno.EACCES, errno.EPERM):
        hint = "permission denied: make the repository folder writable by this user"
    elif e.errno == errno.EROFS:
        hint = "the file system is read-only"
    else:
        hint = e.strerror or str(e)
    return "%s failed: %s" % (what, hint)


class LocalWriter(object):
    """A file being written under a temporary name, published by commit()."""

    def __init__(self, directory, final_name):
        self.directory = directory
        self.final_name = final_name
        self.final_path = os.path.join(directory, final_name)
        self.tmp_path = os.path.join(directory, ".%s.%s%s" % (final_name, secrets.token_hex(4), PARTIAL_SUFFIX))
        fd = os.open(
            self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        self._file = os.fdopen(fd, "wb", buffering=0)
        self.closed = False

    def write(self, data):
        return self._file.write(data)

    def flush(self):
        pass

    def commit(self):
        """fsync, then publish without ever replacing an existing file."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.closed = True
        try:
            os.link(self.tmp_path, self.final_path)
        except OSError as e:
            if e.errno == errno.EEXIST:
                self.abort()
                raise LifeboatError(
                    "Refusing to replace %s, which already exists; nothing was changed." % self.final_path
                )
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # File systems without hard links: check, then rename.
            if os.path.lexists(self.final_path):
                self.abort()
                raise LifeboatError(
                    "Refusing to replace %s, which already exists; nothing was changed." % self.final_path
                )
            os.rename(self.tmp_path, self.final_path)
        else:
            os.unlink(self.tmp_path)
        _fsync_dir(self.directory)
        return self.final_path

    def abort(self):
        if not self.closed:
            try:
                self._file.close()
            except OSError:
                pass
            self.closed = True
        try:
            os.unlink(self.tmp_path)
        except OSError:
            pass


class LocalRepository(object):
    kind = "local"

    def __init__(self, root, create=True):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.spec = root
        self.create = create

    def __str__(self):
        return self.root

    # -- paths -------------------------------------------------------------
    def _tenant_dir(self, tenant):
        naming.validate_repo_tenant(tenant)
        path = os.path.join(self.root, tenant)
        if os.path.dirname(path) != self.root:  # belt and braces: no escape
            raise LifeboatError("Tenant %r would leave the repository; refused." % tenant, option="tenant")
        return path

    def _checked_dir(self, path):
        """``path`` must be a real folder (not a symlink) when it exists."""
        try:
            st = os.lstat(path)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return False
            raise LifeboatError(describe_os_error(e, "Using %s as a folder" % path), option="repository")
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise LifeboatError(
                "%s is not a plain folder (a symlink or a file); lifeboat refuses to write through it. "
                "Replace it by a folder or choose another repository." % path,
                option="repository",
            )
        return True

    def ensure_tenant_dir(self, tenant):
        if not self._checked_dir(self.root):
            if not self.create:
                raise LifeboatError("The repository %s does not exist." % self.root, option="repository")
            try:
                os.makedirs(self.root, 0o700)
            except OSError as e:
                # Another process (a parallel tenant) may have created it
                # between the check and makedirs; what exists must still be
                # a plain folder, which _checked_dir insists on below.
                if e.errno != errno.EEXIST:
                    raise LifeboatError(
                        describe_os_error(e, "Creating the repository folder %s" % self.root), option="repository"
                    )
            self._checked_dir(self.root)
        path = self._tenant_dir(tenant)
        if not self._checked_dir(path):
            try:
                os.mkdir(path, 0o700)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise LifeboatError(
                        describe_os_error(e, "Creating the tenant folder %s" % path), option="repository"
                    )
            self._checked_dir(path)
        return path

    def path_of(self, tenant, name):
        return os.path.join(self._tenant_dir(tenant), name)

    def location(self, tenant, name):
        """A human-readable location of an artifact (a path here)."""
        return self.path_of(tenant, name)

    # -- probing -------------------------------------------------------------
    def check_writable(self):
        """Raise a clear error when the repository could not be written (no write)."""
        probe = self.root
        while not os.path.lexists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if os.path.lexists(self.root):
            self._checked_dir(self.root)
        if not os.access(probe, os.W_OK | os.X_OK):
            raise LifeboatError(
                "The repository %s is not writable by this user (checked %s). Fix its owner or "
                "mode, or choose another repository." % (self.root, probe),
                option="repository",
            )

    def names(self, tenant):
        path = self._tenant_dir(tenant)
        if not self._checked_dir(path):
            return {}
        out = {}
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False):
                out[entry.name] = entry.stat(follow_symlinks=False).st_size
        return out

    def tenants(self):
        if not self._checked_dir(self.root):
            return []
        found = []
        for entry in os.scandir(self.root):
            if entry.is_dir(follow_symlinks=False):
                try:
                    naming.validate_repo_tenant(entry.name)
                except LifeboatError:
                    continue
                found.append(entry.name)
        return sorted(found)

    def artifacts(self, tenant):
        """Artifacts of ``tenant``, oldest first, each with its completeness."""
        names = self.names(tenant)
        result = []
        for name, size in names.items():
            info = naming.parse_artifact_name(name)
            if not info or info["tenant"] != tenant:
                continue
            mname = naming.manifest_name(tenant, info["stamp"])
            vname = naming.verify_record_name(tenant, info["stamp"])
            info.update(
                {
                    "name": name,
                    "size": size,
                    "manifest": mname,
                    "complete": mname in names,
                    "verify_record": vname if vname in names else None,
                }
            )
            result.append(info)
        result.sort(key=lambda a: (a["stamp"], a["name"]))
        return result

    def latest_complete(self, tenant, fmt=None):
        complete = [a for a in self.artifacts(tenant) if a["complete"] and (fmt is None or a["format"] == fmt)]
        return complete[-1] if complete else None

    def stamp_taken(self, tenant, stamp):
        prefix = "%s-%s." % (tenant, stamp)
        return any(n.startswith(prefix) for n in self.names(tenant))

    # -- writing -------------------------------------------------------------
    def new_writer(self, tenant, name):
        directory = self.ensure_tenant_dir(tenant)
        try:
            return LocalWriter(directory, name)
        except OSError as e:
            raise LifeboatError(describe_os_error(e, "Creating a file in %s" % directory), option="repository")

    def write_json(self, tenant, name, data):
        writer = self.new_writer(tenant, name)
        try:
            writer.write(json.dumps(data, indent=2, sort_keys=True).encode("utf-8") + b"\n")
            return writer.commit()
        except OSError as e:
            writer.abort()
            raise LifeboatError(describe_os_error(e, "Writing %s" % name), option="repository")
        except BaseException:
            writer.abort()
            raise

    def read_json(self, tenant, name):
        path = self.path_of(tenant, name)
        try:
            with open(path, "rb") as f:
                return json.loads(f.read(4 << 20).decode("utf-8"))
        except OSError as e:
            raise LifeboatError("Cannot read %s: %s." % (path, e.strerror))
        except ValueError as e:
            raise LifeboatError("%s is not valid JSON (%s): the file is damaged." % (path, e))

    def open_read(self, tenant, name):
        path = self.path_of(tenant, name)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb", buffering=0)

    def delete(self, tenant, name):
        os.unlink(self.path_of(tenant, name))

    # -- locks and leftovers -------------------------------------------------
    def lock(self, tenant, operation, timeout=0):
        directory = self.ensure_tenant_dir(tenant)
        return FileLock(os.path.join(directory, LOCK_NAME), operation, timeout, subject="tenant %s" % tenant)

    def lock_holder(self, tenant):
        return lock_holder(os.path.join(self._tenant_dir(tenant), LOCK_NAME))

    def partial_files(self, tenant):
        return sorted(n for n in self.names(tenant) if n.startswith(".") and n.endswith(PARTIAL_SUFFIX))

    def remove_partials(self, tenant):
        """Remove temp files of killed runs. Call only while holding the lock."""
        removed = []
        for name in self.partial_files(tenant):
            try:
                self.delete(tenant, name)
                removed.append(name)
            except OSError:
                pass
        return removed
