# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 repositories: ``s3://bucket/prefix`` with the interface of the local repository.

The public face of the private package ``_s3``, where each concern has its module:

- ``_s3/options.py``: the S3 options and their two spellings (``s3_endpoint_url`` in
  modules and engines, ``endpoint_url`` in the agent and the roles); no boto3 needed;
- ``_s3/client.py``: the boto3 client, the descriptions of its errors (the AWS error
  code and the option that fixes it) and the retry policy (full-jitter backoff);
- ``_s3/upload.py``: the multipart upload writer (part size schedule, parts uploading
  in background threads within a memory budget, conditional publication);
- ``_s3/download.py``: the streaming reader that resumes after a broken connection;
- ``_s3/repository.py``: the repository (names, host-local locks, the journal of open
  uploads, object versions).
"""

from ._s3.client import (
    BOTO3_IMPORT_ERROR,
    ClientError,
    PurgeError,
    Retry,
    boto3,
    describe,
    error_code,
    http_status,
    is_transient,
    make_client,
    require_boto3,
)
from ._s3.download import PROGRESS, S3Reader
from ._s3.options import S3_CONNECTION_OPTIONS, S3_OPTIONS, S3_STORAGE_OPTIONS, from_agent, s3_options, to_agent
from ._s3.repository import (
    JSON_LIMIT,
    SSE_ALGORITHMS,
    STORAGE_CLASSES,
    S3Repository,
    default_lock_dir,
    parse_url,
    valid_bucket,
)
from ._s3.upload import (
    GiB,
    MAX_UPLOAD_CONCURRENCY,
    MIN_PART_SIZE,
    MiB,
    PART_GROWTH,
    PARTS_PER_STEP,
    S3_MAX_OBJECT,
    S3_MAX_PART,
    S3_MAX_PARTS,
    S3_MIN_PART,
    S3Writer,
    TiB,
    UPLOAD_BUDGET,
    UPLOAD_CONCURRENCY,
    part_size_for,
    schedule_capacity,
)

__all__ = [
    "BOTO3_IMPORT_ERROR", "ClientError", "PurgeError", "Retry", "boto3", "describe", "error_code", "http_status",
    "is_transient", "make_client", "require_boto3",
    "PROGRESS", "S3Reader",
    "S3_CONNECTION_OPTIONS", "S3_OPTIONS", "S3_STORAGE_OPTIONS", "from_agent", "s3_options", "to_agent",
    "JSON_LIMIT", "SSE_ALGORITHMS", "STORAGE_CLASSES", "S3Repository", "default_lock_dir", "parse_url", "valid_bucket",
    "GiB", "MAX_UPLOAD_CONCURRENCY", "MIN_PART_SIZE", "MiB", "PART_GROWTH", "PARTS_PER_STEP", "S3_MAX_OBJECT",
    "S3_MAX_PART", "S3_MAX_PARTS", "S3_MIN_PART", "S3Writer", "TiB", "UPLOAD_BUDGET", "UPLOAD_CONCURRENCY",
    "part_size_for", "schedule_capacity",
]
