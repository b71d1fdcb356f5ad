# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every repository shares, wherever its bytes live (a local folder, S3).

A subclass lists the names of a tenant (``names(tenant)`` -> {name: size})
and its tenants, writes through ``new_writer()``/``write_json()``, reads
through ``open_read()``/``read_json()``, deletes, locks a tenant and cleans
up what killed runs left (``remove_partials()``). The naming logic of
artifacts, manifests and verify records is the same for all and lives here.
"""

from .. import naming

LOCK_NAME = ".lock"


class Repository(object):
    """Base of LocalRepository and S3Repository."""

    kind = None  # "local" or "s3": what results report as repository_kind
    # Whether earlier versions of an object may survive a replacement (S3 buckets with versioning), so that
    # rekeying can purge them and records its progress in the object's metadata.
    supports_versions = False
    # What went wrong beside the data path (S3 housekeeping that failed, a guarantee the store lacks):
    # the operations put these in their results' warnings. A local repository has none.
    warnings = ()

    def warnings_for(self, tenant):
        """The warnings that concern ``tenant``: its own and those of the whole repository."""
        return list(self.warnings)

    def object_lock(self, tenant, name):
        """What keeps the object ``name`` from being deleted (S3 object lock), as words; None: nothing."""
        return None

    @property
    def is_local(self):
        """True for a folder of this host (paths, hard links, marker files beside the artifacts)."""
        return self.kind == "local"

    def names(self, tenant):
        """{name: size} of the files of ``tenant`` (none when the tenant has none)."""
        raise NotImplementedError

    def check_readable(self):
        """Raise a clear error when the repository cannot be read (does not exist, or is out of reach)."""
        raise NotImplementedError

    def artifacts(self, tenant, names=None):
        """Artifacts of ``tenant``, oldest first, each with its completeness (from ``names``, ``names(tenant)``'s
        result, when the caller already listed them)."""
        names = self.names(tenant) if names is None else names
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
        complete = naming.by_recency(complete)  # a future stamp (clock skew) is never the newest
        return complete[-1] if complete else None

    def stamp_taken(self, tenant, stamp):
        prefix = "%s-%s." % (tenant, stamp)
        return any(n.startswith(prefix) for n in self.names(tenant))
