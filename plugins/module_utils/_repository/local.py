# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A repository in a local folder (DESIGN.md, "Artifacts").

Every write goes to a temporary dot-file in the same folder, is fsynced, and
is published by a link/rename that never replaces an existing file. Files are
0600, folders 0700. Names are validated before they are joined to a path, and
tenant folders that are symlinks are refused, so nothing is written outside
the repository.
"""

import errno
import json
import os
import stat

from .. import naming
from ..errors import LifeboatError
from ..files import PARTIAL_SUFFIX, AtomicFile, json_bytes
from ..locking import FileLock, lock_holder
from .base import LOCK_NAME, Repository


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


class LocalWriter(AtomicFile):
    """A file of a tenant's folder being written under a temporary name, published by commit().

    Unlike an AtomicFile, commit() does not replace an existing file by default.
    """

    def __init__(self, directory, final_name):
        super(LocalWriter, self).__init__(os.path.join(directory, final_name), 0o600)
        self.final_name = final_name

    def commit(self, replace=False):
        """fsync, then publish (never over an existing file, unless ``replace``); return the final path."""
        try:
            return super(LocalWriter, self).commit(replace=replace)
        except FileExistsError:
            raise LifeboatError("Refusing to replace %s, which already exists; nothing was changed." % self.final_path)


class LocalRepository(Repository):
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

    def check_readable(self):
        """The repository's folder exists."""
        if not os.path.isdir(self.root):
            raise LifeboatError("The repository %s does not exist." % self.root, option="repository")

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
            writer.write(json_bytes(data))
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
