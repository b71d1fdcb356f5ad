# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repositories: where artifacts live (DESIGN.md, "Artifacts").

``<repository>/<tenant>/<tenant>-<stamp>.<format>[.zst][.age]`` plus the
manifest, written last, which is the commit marker. open_repository() gives
a local folder's repository (``_repository/local.py``) or an S3 bucket's
(``_s3/repository.py``, behind ``s3.py``); both share the base class of
``_repository/base.py``: the naming logic of artifacts, ``kind``,
``is_local``, ``supports_versions``. Engines pass the S3 options they were
given through s3_options() (``_s3/options.py``), the one filter of them.
"""

import time

from . import naming
from ._repository.base import LOCK_NAME, Repository
from ._repository.local import LocalRepository, LocalWriter, describe_os_error
from ._s3.options import S3_CONNECTION_OPTIONS, S3_OPTIONS, s3_options
from .errors import LifeboatError
from .files import PARTIAL_SUFFIX

__all__ = [
    "LOCK_NAME", "PARTIAL_SUFFIX", "Repository", "LocalRepository", "LocalWriter", "describe_os_error",
    "S3_CONNECTION_OPTIONS", "S3_OPTIONS", "s3_options", "open_repository", "unique_stamp",
]


def open_repository(spec, create=True, **options):
    """Return a repository object for ``spec`` (a folder or ``s3://...``)."""
    if not spec or not isinstance(spec, str):
        raise LifeboatError("repository is required: give a folder such as /var/backups/lifeboat.", option="repository")
    if "\0" in spec:
        raise LifeboatError("Invalid repository: the value contains a NUL byte.", option="repository")
    if spec.startswith("s3://"):
        from ._s3.repository import S3Repository  # here, not at the top: boto3 is imported for S3 only

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
