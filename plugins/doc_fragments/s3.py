# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # How to reach S3 or an S3-compatible store: lifeboat.backup.s3
    DOCUMENTATION = r"""
options:
  s3_endpoint_url:
    description:
      - URL of an S3-compatible store, for example C(https://minio.example.com:9000). Unset means AWS S3.
      - With an endpoint, buckets are addressed in path style (C(https://host/bucket/key)).
    type: str
  s3_region:
    description:
      - Region of the bucket, for example C(eu-west-1). Unset means boto3's default (E(AWS_DEFAULT_REGION),
        C(~/.aws/config)).
    type: str
  s3_access_key:
    description:
      - Access key id. Unset means boto3's credential chain (E(AWS_ACCESS_KEY_ID), C(~/.aws/credentials),
        an instance profile or a web identity), which is preferable on hosts.
      - Never appears in results or logs.
    type: str
  s3_secret_key:
    description:
      - Secret access key, with O(s3_access_key).
    type: str
  s3_session_token:
    description:
      - Session token of temporary credentials, with O(s3_access_key) and O(s3_secret_key).
    type: str
notes:
  - S3 needs C(boto3) in the Python that runs the module (the roles install it in C(/opt/lifeboat/venv)).
  - Transient failures (connection errors, time-outs, HTTP 5xx, C(SlowDown)) are retried five times with
    jittered exponential backoff; errors name the AWS error code and the option that fixes it.
  - boto3 sends CRC32 checksums with uploads. For an S3-compatible store that rejects them, set
    E(AWS_REQUEST_CHECKSUM_CALCULATION=when_required) in the module's environment.
"""

    # Where and how artifacts are stored in an s3:// repository: lifeboat.backup.s3.storage
    STORAGE = r"""
options:
  storage_class:
    description:
      - Storage class of the artifacts uploaded to an C(s3://) repository. Manifests and records stay C(STANDARD).
      - Only classes that can be read at once are offered; move old artifacts to C(GLACIER) or C(DEEP_ARCHIVE)
        with lifecycle transitions (M(lifeboat.backup.s3_lifecycle)), and restore them from there first.
      - Unset means the bucket's default (C(STANDARD)).
    type: str
    choices: [STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR]
  sse:
    description:
      - Server-side encryption of the uploaded objects, on top of age. Unset means the bucket's default encryption.
    type: str
    choices: [AES256, aws:kms]
  sse_kms_key_id:
    description:
      - KMS key (id, ARN or alias) for O(sse=aws:kms). Unset means the account's C(aws/s3) key.
      - The credentials then need C(kms:GenerateDataKey) (upload) and C(kms:Decrypt) (download, multipart upload).
    type: str
notes:
  - "In an C(s3://bucket/prefix) repository, artifacts are streamed by multipart upload with one part in memory
    at a time: 8 MiB parts, 11 MiB larger every 100 parts, so that S3's 10,000 parts hold the 5 TiB S3 allows;
    the largest part is 19 MiB for a 1 GB artifact, 140 MiB for 100 GB, about 1 GiB near 5 TiB.
    An object becomes visible only once complete, never replaces
    an existing one, and a failure aborts its upload. Uploads left open by a killed run are aborted by the next
    run on the same host; those of other hosts only once older than a day."
  - The lock that keeps two runs on one tenant apart is a file of the host (C(/run/lifeboat) for root, else
    E(XDG_RUNTIME_DIR) or the temporary folder), since S3 has no locks. Give each tenant one backup host.
  - Downloads stream and resume (C(Range) and C(If-Match)) after a broken connection.
"""
