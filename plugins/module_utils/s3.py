# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 repositories: ``s3://bucket/prefix`` with the interface of LocalRepository.

Layout is the one of DESIGN.md: ``<prefix>/<tenant>/<tenant>-<stamp>.<format>...``
beside ``<tenant>-<stamp>.manifest.json``, uploaded last.

Uploads stream through a multipart upload. The part size starts at 8 MiB
and grows by 11 MiB every 100 parts, so that S3's 10,000 parts hold 5.27 TiB
(S3's object limit is 5 TiB) while small artifacts keep small parts: the
largest part is 19 MiB for 1 GB, 41 MiB for 10 GB, 140 MiB for 100 GB, 459
MiB for 1 TB and 1075 MiB for 5 TiB. While the caller fills one part buffer,
up to ``upload_concurrency`` (2) earlier parts upload in background threads,
within a budget of 32 MiB for all the part buffers (recycled bytearrays);
once two parts no longer fit in it (parts of 19 MiB and more), parts go up
one at a time from the caller's thread, so the memory held is at most
max(32 MiB, one part). The object becomes visible only when CompleteMultipartUpload
succeeds; any failure aborts the upload. An artifact smaller than one part
is sent with one PutObject, atomic as well. Both are conditional
(``If-None-Match: *``): an existing object is never replaced.

S3 has no locks: the lock of a tenant is a flock on a file of this host
(``/run/lifeboat`` for root, else ``$XDG_RUNTIME_DIR/lifeboat`` or the temp
folder), keyed by endpoint, bucket, prefix and tenant. It keeps two runs on
the same host apart, not two hosts: give each tenant one backup host.
Multipart uploads this host starts are recorded beside the lock until they
complete or are aborted, so the next run (under the lock) aborts those a
killed run left open, whatever their age; uploads of other hosts are aborted
only when older than ``stale_upload_age`` (a day), so that a live upload of
another host is never cut.

Transient failures (connection errors, time-outs, HTTP 5xx, SlowDown and
other throttling) are retried with full-jitter exponential backoff; botocore's
own retries are off so that the policy and its messages are ours. Errors name
the AWS error code and the option that fixes them.
"""

import collections
import copy
import hashlib
import json
import os
import random
import re
import secrets
import stat
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import naming
from .errors import LifeboatError, MissingDependency
from .locking import FileLock, lock_holder
from .repository import LocalRepository

try:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError as BotoConnectionError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    BOTO3_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the interpreter
    boto3 = None
    BOTO3_IMPORT_ERROR = str(_e)

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
MIN_PART_SIZE = 8 * MiB
S3_MIN_PART = 5 * MiB  # S3's minimum for every part but the last
S3_MAX_PART = 5 * GiB
S3_MAX_PARTS = 10000
S3_MAX_OBJECT = 5 * TiB
PART_GROWTH = 11 * MiB
PARTS_PER_STEP = 100
JSON_LIMIT = 4 * MiB
PROGRESS = 1 * MiB  # bytes read after a failure that count as a healthy path again
# Parts of one upload in flight at once (1: one after the other, no threads). 3 holds 8 MiB more and was no
# faster against a loopback server.
UPLOAD_CONCURRENCY = 2
MAX_UPLOAD_CONCURRENCY = 16
UPLOAD_BUDGET = 32 * MiB  # part buffers one upload holds (filled and in flight), unless one part is larger

STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR")
SSE_ALGORITHMS = ("AES256", "aws:kms")

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_THROTTLING = frozenset(("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                         "TooManyRequestsException", "RequestThrottled", "ServiceUnavailable",
                         "InternalError", "RequestTimeout", "503", "500", "502", "504"))


class PurgeError(LifeboatError):
    """Some earlier versions could not be deleted; ``deleted`` and ``refused`` say which."""

    def __init__(self, msg, deleted, refused):
        super(PurgeError, self).__init__(msg, details={"refused_versions": [
            {"key": r["key"], "version_id": r["version_id"], "aws_error_code": r["aws_error_code"]} for r in refused]})
        self.deleted = deleted
        self.refused = refused


def require_boto3():
    if boto3 is None:
        raise MissingDependency("boto3", "boto3", BOTO3_IMPORT_ERROR)
    return boto3


def part_size_for(part_number, minimum=MIN_PART_SIZE):
    """Size of part ``part_number`` (1-based): ``minimum``, plus 11 MiB every 100 parts."""
    return min(S3_MAX_PART, minimum + ((part_number - 1) // PARTS_PER_STEP) * PART_GROWTH)


def schedule_capacity(minimum=MIN_PART_SIZE, parts=S3_MAX_PARTS):
    """Bytes that ``parts`` parts of the schedule hold (5.27 TiB for 10,000 parts from 8 MiB)."""
    steps, rest = divmod(parts, PARTS_PER_STEP)
    total = sum(part_size_for(n * PARTS_PER_STEP + 1, minimum) * PARTS_PER_STEP for n in range(steps))
    return total + part_size_for(steps * PARTS_PER_STEP + 1, minimum) * rest


def parse_url(spec):
    """``s3://bucket[/prefix]`` -> (bucket, key prefix ending in '/' or '')."""
    rest = spec[len("s3://"):]
    bucket, _sep, prefix = rest.partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise LifeboatError(
            "Invalid repository %r: %r is not a valid S3 bucket name (3 to 63 lower-case letters, digits, "
            "dots and hyphens). Give s3://bucket/prefix." % (spec, bucket),
            option="repository",
        )
    parts = [p for p in prefix.split("/") if p]
    for part in parts:
        if part in (".", "..") or "\0" in part or len(part) > 255:
            raise LifeboatError("Invalid repository %r: the prefix has a %r segment." % (spec, part),
                                option="repository")
    key_prefix = "/".join(parts) + "/" if parts else ""
    if len(key_prefix) > 512:
        raise LifeboatError("Invalid repository %r: the prefix is too long (at most 512 bytes)." % spec,
                            option="repository")
    return bucket, key_prefix


# -- errors -------------------------------------------------------------------

_HINTS = {
    "NoSuchBucket": ("the bucket does not exist: create it (lifeboat.backup.s3_lifecycle with create_bucket: true) "
                     "or fix the bucket name in repository", "repository"),
    "AccessDenied": ("these credentials may not do this: check the IAM policy (s3:ListBucket, s3:GetObject, "
                     "s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload, s3:ListBucketMultipartUploads; "
                     "kms:GenerateDataKey and kms:Decrypt with sse aws:kms) or s3_access_key", "s3_access_key"),
    "AllAccessDisabled": ("all access to this bucket is disabled", "repository"),
    "InvalidAccessKeyId": ("the access key is unknown to this endpoint: check s3_access_key (and s3_endpoint_url)",
                           "s3_access_key"),
    "SignatureDoesNotMatch": ("the request signature is wrong: check s3_secret_key", "s3_secret_key"),
    "ExpiredToken": ("the session token has expired: renew s3_session_token", "s3_session_token"),
    "InvalidToken": ("the session token is malformed: check s3_session_token", "s3_session_token"),
    "TokenRefreshRequired": ("the session token must be refreshed: renew s3_session_token", "s3_session_token"),
    "PermanentRedirect": ("the bucket lives in another region: set s3_region to it", "s3_region"),
    "AuthorizationHeaderMalformed": ("the region is wrong for this bucket: set s3_region", "s3_region"),
    "IllegalLocationConstraintException": ("the region does not match: set s3_region", "s3_region"),
    "InvalidStorageClass": ("this endpoint does not offer that storage class: change storage_class",
                            "storage_class"),
    "InvalidEncryptionAlgorithmError": ("the server refuses this encryption: change sse", "sse"),
    "KMS.NotFoundException": ("the KMS key does not exist: check sse_kms_key_id", "sse_kms_key_id"),
    "KMS.DisabledException": ("the KMS key is disabled: enable it or change sse_kms_key_id", "sse_kms_key_id"),
    "KMS.KMSInvalidStateException": ("the KMS key is not usable: check sse_kms_key_id", "sse_kms_key_id"),
    "InvalidObjectState": ("the object is archived (GLACIER or DEEP_ARCHIVE): restore it first "
                           "(aws s3api restore-object), wait until it is readable, then run again", None),
    "NoSuchKey": ("the object does not exist", None),
    "NoSuchUpload": ("the multipart upload was aborted meanwhile (by another run on another host, or by a "
                     "lifecycle rule whose abort_incomplete_multipart_upload_days is shorter than a backup)", None),
    "PreconditionFailed": ("an object of that name already exists", None),
    "SlowDown": ("S3 is throttling this prefix: run fewer backups at once or spread them over time", None),
    "EntityTooLarge": ("the object exceeds S3's limits", None),
}
_STATUS_HINTS = {
    301: ("the bucket lives in another region: set s3_region to it", "s3_region"),
    403: _HINTS["AccessDenied"],
    404: _HINTS["NoSuchBucket"],
}


def error_code(e):
    if isinstance(e, ClientError):
        return e.response.get("Error", {}).get("Code") or str(_status(e))
    return None


def _status(e):
    return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def describe(e, what, endpoint=None, attempts=None):
    """A LifeboatError for a boto3/botocore exception ``e`` raised while doing ``what``."""
    if isinstance(e, LifeboatError):
        return e
    err = _describe(e, what, endpoint or "the S3 endpoint")
    if attempts and attempts > 1:
        err.msg = "%s (gave up after %d attempts)." % (err.msg.rstrip("."), attempts)
        err.args = (err.msg,)
        err.details["attempts"] = attempts
    return err


def _describe(e, what, where):
    if isinstance(e, ClientError):
        code = error_code(e)
        status = _status(e)
        message = e.response.get("Error", {}).get("Message") or ""
        hint, option = _HINTS.get(code) or _STATUS_HINTS.get(status) or (None, None)
        if code.startswith("KMS.") and not hint:
            hint, option = "the KMS key refused the operation: check sse_kms_key_id and its key policy", "sse_kms_key_id"
        if status == 301:
            region = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
            if region:
                hint = "the bucket lives in region %s: set s3_region: %s" % (region, region)
        if status and status >= 500 and not hint:
            hint = "the server failed; it was retried and kept failing: try again later"
        text = "%s failed: AWS error %s (HTTP %s%s)" % (what, code, status, (": %s" % message) if message else "")
        if hint:
            text += "; %s" % hint
        if option:
            text += " (option %s)" % option
        return LifeboatError(text + ".", option=option, details={"aws_error_code": code, "http_status": status})
    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return LifeboatError(
            "%s failed: no usable AWS credentials (%s). Set s3_access_key and s3_secret_key, or configure "
            "boto3's credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, an instance "
            "profile)." % (what, e), option="s3_access_key")
    if isinstance(e, BotoConnectionError):
        return LifeboatError(
            "%s failed: cannot connect to %s (%s); check s3_endpoint_url (and s3_region) and the network "
            "path." % (what, where, e), option="s3_endpoint_url",
            details={"error": type(e).__name__})
    if isinstance(e, ReadTimeoutError):
        return LifeboatError(
            "%s failed: %s stopped answering (no data within the read time-out); check the network path to "
            "s3_endpoint_url." % (what, where), option="s3_endpoint_url", details={"error": type(e).__name__})
    if isinstance(e, (HTTPClientError, IncompleteReadError)):
        return LifeboatError(
            "%s failed: the connection to %s broke or timed out (%s: %s); check the network path to "
            "s3_endpoint_url." % (what, where, type(e).__name__, e), option="s3_endpoint_url",
            details={"error": type(e).__name__})
    if isinstance(e, BotoCoreError):
        return LifeboatError("%s failed: %s." % (what, e), details={"error": type(e).__name__})
    return LifeboatError("%s failed: %s: %s." % (what, type(e).__name__, e))


def is_transient(e):
    """True for failures worth retrying: the network, time-outs, 5xx, throttling."""
    if isinstance(e, ClientError):
        code = error_code(e)
        status = _status(e) or 0
        return code in _THROTTLING or status >= 500 or status == 429
    return isinstance(e, (HTTPClientError, BotoConnectionError, IncompleteReadError))


class Retry(object):
    """``attempts`` tries with full-jitter exponential backoff (base, cap in seconds)."""

    def __init__(self, attempts=5, base=0.5, cap=20.0, sleep=time.sleep):
        if attempts < 1:
            raise LifeboatError("retries must be at least 1.")
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self.sleep = sleep

    def delay(self, attempt):
        return random.uniform(0, min(self.cap, self.base * (2 ** attempt)))

    def call(self, fn, what, endpoint=None, before_retry=None):
        """Run ``fn()``; retry transient failures; raise a LifeboatError when giving up."""
        for attempt in range(self.attempts):
            try:
                return fn()
            except LifeboatError:
                raise
            except Exception as e:  # boto3 raises many kinds; only transient ones are retried
                if not is_transient(e):
                    raise describe(e, what, endpoint) from e
                if attempt + 1 >= self.attempts:
                    raise describe(e, what, endpoint, attempts=self.attempts) from e
            self.sleep(self.delay(attempt))
            if before_retry is not None:
                before_retry()
        raise AssertionError("unreachable")  # pragma: no cover


# -- locks beside this host's state ------------------------------------------

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


# -- streams --------------------------------------------------------------------

class _PartBody(object):
    """A seekable read-only view of the part buffer, so botocore can retry and checksum without a copy.

    read() returns memoryview slices of the buffer, not copies: each thread uploading a part would otherwise
    churn through 1 MiB copies (botocore hashes the body in 1 MiB reads)."""

    def __init__(self, view):
        self._view = view
        self._pos = 0

    def read(self, size=-1):
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        chunk = self._view[self._pos:end]
        self._pos = end
        return chunk

    def seek(self, offset, whence=0):
        if whence == 1:
            offset += self._pos
        elif whence == 2:
            offset += len(self._view)
        self._pos = max(0, min(len(self._view), offset))
        return self._pos

    def tell(self):
        return self._pos

    def __len__(self):
        return len(self._view)

    def readable(self):
        return True

    def seekable(self):
        return True


class _Stopped(LifeboatError):
    """A part upload cut short because the whole upload is being aborted (another error, if any, is reported)."""


class S3Writer(object):
    """An object being uploaded; visible only after ``commit()``; ``abort()`` leaves nothing.

    By default the upload never replaces an existing object (``If-None-Match:
    *``). ``replace=True`` (rekeying) publishes over the object of the same
    key instead, only if it still is the one whose ETag is ``if_match``; the
    upload carries a random ``lifeboat-upload`` token in its metadata (plus
    ``metadata``), so that a retry after a lost answer can tell our object
    from someone else's.

    While the caller fills the next part, up to ``repo.upload_concurrency``
    earlier parts upload in background threads, as long as all the part
    buffers held (the one being filled, those uploading, spare ones) stay
    within ``repo.upload_budget`` bytes; a part too large for that budget
    goes up alone, in the caller's thread, as with a concurrency of 1 (no
    threads at all). After a part needed a retry, one part at a time uploads.
    The last part goes up once all the others have succeeded. The first
    failure of any part stops the others and aborts the upload.
    """

    def __init__(self, repo, tenant, name, replace=False, if_match=None, metadata=None):
        self.repo = repo
        self.tenant = tenant
        self.name = name
        self.replace = replace
        self.if_match = if_match if replace else None
        self.metadata = dict(metadata or {})
        if replace:
            self.metadata["lifeboat-upload"] = secrets.token_hex(16)
        self.key = repo.key(tenant, name)
        self.location = repo.location(tenant, name)
        self.size = 0
        self.closed = False
        self.failure = None  # the LifeboatError that stopped the upload, for callers that get a wrapped one
        self.upload_id = None
        self.concurrency = getattr(repo, "upload_concurrency", 1)
        self.budget = getattr(repo, "upload_budget", UPLOAD_BUDGET)
        self.buffers_allocated = 0  # part buffers allocated (recycled ones are counted once)
        self.peak_buffered = 0  # the most bytes of part buffers held at once
        self._journal = None
        self._parts = []  # uploaded parts, in order: {"PartNumber", "ETag"[, "ChecksumCRC32"]}
        self._number = 1  # the part being filled
        self._buf = None
        self._pos = 0
        self._pending = collections.deque()  # (future, buffer) of parts uploading in the background, oldest first
        self._in_flight = 0  # bytes of their buffers
        self._free = []  # buffers of uploaded parts, for the next ones
        self._held = 0  # bytes of all the part buffers held
        self._executor = None
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set by abort(), or by the first failure of a part in the background
        self._error = None  # that first failure
        self._slowed = False  # a part needed a retry: one part at a time from then on

    def _part_capacity(self, number=None):
        return part_size_for(number or self._number, self.repo.part_size)

    def _take_buffer(self):
        size = self._part_capacity()
        while self._free:
            buf = self._free.pop()
            if len(buf) == size:
                return buf
            self._held -= len(buf)  # from before the parts grew
        self._held += size
        self.buffers_allocated += 1
        self.peak_buffered = max(self.peak_buffered, self._held)
        return bytearray(size)

    def _recycle(self, buf):
        if len(buf) == self._part_capacity() and len(self._free) < self.concurrency:
            self._free.append(buf)
        else:
            self._held -= len(buf)

    def write(self, data):
        if self.closed:
            raise ValueError("write to a closed S3 writer")
        view = memoryview(data).cast("B")
        total = len(view)
        try:
            while view:
                if self._buf is None:
                    self._buf = self._take_buffer()
                    self._pos = 0
                take = min(len(self._buf) - self._pos, len(view))
                self._buf[self._pos:self._pos + take] = view[:take]
                self._pos += take
                view = view[take:]
                if self._pos == len(self._buf):
                    self._send_part()
        except BaseException as e:
            if isinstance(e, LifeboatError):
                self.failure = e
            self.abort()
            raise
        self.size += total
        return total

    def flush(self):
        pass

    def writable(self):
        return True

    def _start(self):
        repo = self.repo
        extra = repo.put_args(self.name)
        if self.metadata:
            extra["Metadata"] = self.metadata
        if repo.checksums:
            extra["ChecksumAlgorithm"] = "CRC32"
        resp = repo.retry.call(
            lambda: repo.client.create_multipart_upload(Bucket=repo.bucket, Key=self.key, **extra),
            "Starting the upload of %s" % self.location, repo.endpoint_name)
        self.upload_id = resp["UploadId"]
        self._journal = repo.journal_add(self.tenant, self.key, self.upload_id)

    def _send_part(self, background=True):
        """Upload the part in the buffer: in the background when concurrency and memory allow, else here."""
        if self._error is not None:
            raise self._error
        if self.upload_id is None:
            self._start()
        number = self._number
        if number > S3_MAX_PARTS:
            raise LifeboatError("Uploading %s failed: the artifact exceeds S3's limit of %d parts (about %d GiB); S3 "
                                "cannot store objects over 5 TiB." % (self.location, S3_MAX_PARTS,
                                                                      self.size // GiB))
        buf, length = self._buf, self._pos
        # The buffers of the parts uploading, this one and the next one must fit in the budget.
        need = len(buf) + self._part_capacity(number + 1)
        limit = 1 if self._slowed else self.concurrency
        while self._pending and (not background or len(self._pending) >= limit or self._in_flight + need > self.budget):
            self._reap()
        if background and self.concurrency > 1 and need <= self.budget:
            self._submit(number, buf, length)
        else:
            self._parts.append(self._put_part(number, buf, length))
            self._recycle(buf)
        self._buf = None
        self._pos = 0
        self._number += 1

    def _submit(self, number, buf, length):
        with self._lock:
            if self._stop.is_set():
                raise self._error or LifeboatError("Uploading %s failed: the upload was aborted." % self.location)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.concurrency,
                                                    thread_name_prefix="lifeboat-s3-upload")
            future = self._executor.submit(self._background_part, number, buf, length)
        self._pending.append((future, buf))
        self._in_flight += len(buf)

    def _background_part(self, number, buf, length):
        try:
            return self._put_part(number, buf, length)
        except Exception as e:
            with self._lock:
                if self._error is None and not isinstance(e, _Stopped):
                    self._error = e if isinstance(e, LifeboatError) else describe(
                        e, "Uploading part %d (%d bytes) of %s" % (number, length, self.location))
            self._stop.set()  # the upload is lost: the other parts stop retrying
            raise

    def _reap(self):
        """Wait for the oldest part uploading in the background; raise the first failure of any part."""
        future, buf = self._pending[0]
        try:
            part = future.result()
        except Exception as e:
            raise self._error if self._error is not None else e
        self._pending.popleft()
        self._in_flight -= len(buf)
        self._parts.append(part)
        self._recycle(buf)

    def _put_part(self, number, buf, length):
        """UploadPart of ``buf[:length]`` with retries; the part's entry for CompleteMultipartUpload."""
        repo = self.repo
        body = _PartBody(memoryview(buf)[:length])
        retry = copy.copy(repo.retry)
        if retry.sleep is time.sleep:
            retry.sleep = self._stop.wait  # an abort cuts the backoff short

        def stopped():
            return _Stopped("Uploading part %d of %s was stopped: the upload is being aborted."
                            % (number, self.location))

        def upload():
            if self._stop.is_set():
                raise stopped()
            body.seek(0)
            return repo.client.upload_part(Bucket=repo.bucket, Key=self.key, UploadId=self.upload_id,
                                           PartNumber=number, Body=body)

        def before_retry():
            self._slowed = True
            if self._stop.is_set():
                raise stopped()

        resp = retry.call(upload, "Uploading part %d (%d bytes) of %s" % (number, length, self.location),
                          repo.endpoint_name, before_retry=before_retry)
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        if resp.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        return part

    def _shutdown(self):
        """Stop the parts uploading (cancel those not started, wait for the others); drop the buffers."""
        with self._lock:
            self._stop.set()
            executor, self._executor = self._executor, None
        for future, _buf in self._pending:
            future.cancel()
        if executor is not None:
            executor.shutdown(wait=True)
        self._pending.clear()
        self._in_flight = 0
        self._free = []
        self._buf = None
        self._held = 0

    def commit(self):
        """Publish the object (never replacing one); return its location."""
        if self.closed:
            raise LifeboatError("Internal error: commit of a closed upload of %s." % self.location)
        repo = self.repo
        try:
            if self.upload_id is None:
                view = memoryview(self._buf)[:self._pos] if self._buf is not None else memoryview(b"")
                if self.replace:
                    repo.replace_bytes(self.key, view, self.name, "Uploading %s" % self.location,
                                       if_match=self.if_match, metadata=self.metadata)
                else:
                    repo.put_bytes(self.key, view, self.name, "Uploading %s" % self.location)
            else:
                while self._pending:
                    self._reap()
                if self._pos:
                    self._send_part(background=False)
                self._complete()
            repo.check_size(self.key, self.size, self.location)
        except BaseException as e:
            if isinstance(e, LifeboatError):
                self.failure = e
            self.abort()
            raise
        self.closed = True
        self._shutdown()
        if self._journal:
            repo.journal_remove(self._journal)
        return self.location

    def _complete(self):
        repo = self.repo
        state = {"retried": False}
        if not self.replace:
            condition = {"IfNoneMatch": "*"}
        else:
            condition = {"IfMatch": self.if_match} if self.if_match else {}

        def complete():
            try:
                return repo.client.complete_multipart_upload(
                    Bucket=repo.bucket, Key=self.key, UploadId=self.upload_id,
                    MultipartUpload={"Parts": self._parts}, **condition)
            except ClientError as e:
                # A retry after a lost answer: the first attempt completed the upload.
                if state["retried"] and error_code(e) in ("NoSuchUpload", "PreconditionFailed"):
                    if self.replace:
                        if repo.upload_token(self.key) == self.metadata["lifeboat-upload"]:
                            return {}
                    elif repo.object_size(self.key) == self.size:
                        return {}
                if error_code(e) == "PreconditionFailed" and self.replace:
                    raise repo.replaced_meanwhile(self.location)
                if error_code(e) == "PreconditionFailed":
                    raise LifeboatError("Refusing to replace %s, which already exists; nothing was changed."
                                        % self.location)
                raise

        def mark():
            state["retried"] = True

        repo.retry.call(complete, "Completing the upload of %s (%d parts)" % (self.location, len(self._parts)),
                        repo.endpoint_name, before_retry=mark)

    def abort(self):
        """Abort the multipart upload (nothing becomes visible). Safe to call twice, after commit, or while parts
        upload: those not started are cancelled, the others are waited for (their retries stop)."""
        if self.closed:
            return
        self.closed = True
        self._shutdown()
        if self.upload_id is None:
            return
        repo = self.repo
        try:
            repo.abort_upload(self.key, self.upload_id)
        except LifeboatError:
            # Unreachable now: the record stays beside the lock and the next run aborts it.
            return
        if self._journal:
            repo.journal_remove(self._journal)


class S3Reader(object):
    """A streaming download that resumes (Range + If-Match) after a broken connection."""

    def __init__(self, repo, key, location):
        self.repo = repo
        self.key = key
        self.location = location
        self.pos = 0
        self.failure = None
        self._body = None
        self.closed = False
        self._failures = 0
        self._failed_at = 0
        resp = repo.retry.call(lambda: repo.client.get_object(Bucket=repo.bucket, Key=key),
                               "Reading %s" % location, repo.endpoint_name)
        self.size = resp["ContentLength"]
        self.etag = resp.get("ETag")
        self._body = resp["Body"]

    def _reopen(self):
        self._close_body()
        repo = self.repo
        extra = {"IfMatch": self.etag} if self.etag else {}

        def get():
            try:
                return repo.client.get_object(Bucket=repo.bucket, Key=self.key, Range="bytes=%d-" % self.pos, **extra)
            except ClientError as e:
                if error_code(e) == "PreconditionFailed":
                    raise LifeboatError("Reading %s failed: the object was replaced while it was being read; "
                                        "run again." % self.location)
                raise

        self._body = repo.retry.call(get, "Resuming the download of %s at byte %d" % (self.location, self.pos),
                                     repo.endpoint_name)["Body"]

    def read(self, size=-1):
        if self.closed:
            raise ValueError("read from a closed S3 reader")
        if size is None or size < 0:
            chunks = []
            while True:
                chunk = self.read(1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        if size == 0 or self.pos >= self.size:
            return b""
        while True:
            try:
                chunk = self._body.read(size)
                if not chunk and self.pos < self.size:
                    raise IncompleteReadError(actual_bytes=self.pos, expected_bytes=self.size)
                self.pos += len(chunk)
                if self._failures and self.pos - self._failed_at >= PROGRESS:
                    self._failures = 0  # the path works again: a long restore gets a fresh budget
                return chunk
            except Exception as e:
                self._failures += 1
                self._failed_at = self.pos
                failures = self._failures
                if not is_transient(e) or failures >= self.repo.retry.attempts:
                    self.failure = describe(e, "Reading %s at byte %d of %d" % (self.location, self.pos, self.size),
                                            self.repo.endpoint_name, attempts=failures)
                    raise self.failure from e
                self.repo.retry.sleep(self.repo.retry.delay(failures - 1))
                try:
                    self._reopen()
                except LifeboatError as e2:
                    self.failure = e2
                    raise

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readable(self):
        return True

    def _close_body(self):
        if self._body is not None:
            try:
                self._body.close()
            except Exception:
                pass
            self._body = None

    def close(self):
        self.closed = True
        self._close_body()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- the repository -------------------------------------------------------------

def make_client(endpoint_url=None, region=None, access_key=None, secret_key=None, session_token=None,
                connect_timeout=10, read_timeout=60, pool=4):
    """An S3 client (no network yet). Credentials: the options, else boto3's chain."""
    require_boto3()
    if endpoint_url is not None:
        if not re.match(r"^https?://[^/\s]+(/.*)?$", endpoint_url):
            raise LifeboatError("Invalid s3_endpoint_url %r: give a URL such as https://s3.example.com." % endpoint_url,
                                option="s3_endpoint_url")
    if bool(access_key) != bool(secret_key):
        raise LifeboatError("s3_access_key and s3_secret_key go together: set both, or neither to use boto3's "
                            "credential chain.", option="s3_secret_key" if access_key else "s3_access_key")
    if session_token and not access_key:
        raise LifeboatError("s3_session_token needs s3_access_key and s3_secret_key.", option="s3_access_key")
    config = BotoConfig(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},  # no botocore retries: ours, with our messages
        max_pool_connections=pool,
        s3={"addressing_style": "path"} if endpoint_url else {},
        user_agent_extra="lifeboat.backup",
    )
    try:
        session = boto3.session.Session(aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None,
                                        aws_session_token=session_token or None, region_name=region or None)
        return session.client("s3", endpoint_url=endpoint_url or None, config=config)
    except BotoCoreError as e:
        raise describe(e, "Setting up the S3 client", endpoint_url)
    except ValueError as e:
        raise LifeboatError("Invalid S3 settings: %s." % e, option="s3_endpoint_url")


def _json_payload(data):
    """A manifest or record as stored: indented, sorted keys, a final newline."""
    return memoryview(json.dumps(data, indent=2, sort_keys=True).encode("utf-8") + b"\n")


class S3Repository(object):
    kind = "s3"

    # The naming logic of a repository does not depend on where bytes live.
    artifacts = LocalRepository.artifacts
    latest_complete = LocalRepository.latest_complete
    stamp_taken = LocalRepository.stamp_taken

    def __init__(self, spec, s3_endpoint_url=None, s3_region=None, s3_access_key=None, s3_secret_key=None,
                 s3_session_token=None, storage_class=None, sse=None, sse_kms_key_id=None, retries=5,
                 backoff=0.5, connect_timeout=10, read_timeout=60, part_size=MIN_PART_SIZE, lock_dir=None,
                 stale_upload_age=86400, client=None, upload_concurrency=UPLOAD_CONCURRENCY):
        self.spec = spec
        self.bucket, self.prefix = parse_url(spec)
        self.root = "s3://%s/%s" % (self.bucket, self.prefix)
        if storage_class is not None and storage_class not in STORAGE_CLASSES:
            raise LifeboatError(
                "Invalid storage_class %r: use one of %s. Archive classes (GLACIER, DEEP_ARCHIVE) cannot be read "
                "without a restore request: reach them through lifecycle transitions (s3_lifecycle)."
                % (storage_class, ", ".join(STORAGE_CLASSES)), option="storage_class")
        if sse is not None and sse not in SSE_ALGORITHMS:
            raise LifeboatError("Invalid sse %r: use AES256 or aws:kms." % (sse,), option="sse")
        if sse_kms_key_id and sse != "aws:kms":
            raise LifeboatError("sse_kms_key_id needs sse: aws:kms.", option="sse")
        if not isinstance(part_size, int) or not S3_MIN_PART <= part_size <= S3_MAX_PART:
            raise LifeboatError("Invalid part size %r: between 5 MiB and 5 GiB." % (part_size,))
        if isinstance(upload_concurrency, bool) or not isinstance(upload_concurrency, int) or \
                not 1 <= upload_concurrency <= MAX_UPLOAD_CONCURRENCY:
            raise LifeboatError("Invalid upload_concurrency %r: the number of parts uploaded at once, from 1 to %d."
                                % (upload_concurrency, MAX_UPLOAD_CONCURRENCY))
        self.storage_class = storage_class
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        self.upload_budget = UPLOAD_BUDGET
        self.endpoint_url = s3_endpoint_url
        self.endpoint_name = s3_endpoint_url or "AWS S3%s" % ((" (%s)" % s3_region) if s3_region else "")
        self.retry = Retry(attempts=retries, base=backoff)
        self.stale_upload_age = stale_upload_age
        self.lock_dir = lock_dir or default_lock_dir()
        self.client = client or make_client(s3_endpoint_url, s3_region, s3_access_key, s3_secret_key,
                                            s3_session_token, connect_timeout, read_timeout,
                                            pool=max(4, upload_concurrency + 1))
        self.checksums = getattr(self.client.meta.config, "request_checksum_calculation", None) == "when_supported"

    def __str__(self):
        return self.root.rstrip("/") if self.prefix else "s3://%s" % self.bucket

    # -- names -------------------------------------------------------------------
    def tenant_prefix(self, tenant):
        naming.validate_repo_tenant(tenant)
        return "%s%s/" % (self.prefix, tenant)

    def key(self, tenant, name):
        if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\0" in name:
            raise LifeboatError("Invalid object name %r in the repository." % (name,))
        return self.tenant_prefix(tenant) + name

    def location(self, tenant, name):
        return "s3://%s/%s" % (self.bucket, self.key(tenant, name))

    def ensure_tenant_dir(self, tenant):
        """S3 has no folders: check the name and return the tenant's prefix as a URL."""
        return "s3://%s/%s" % (self.bucket, self.tenant_prefix(tenant))

    def put_args(self, name):
        """Storage class (artifacts only: manifests and records stay STANDARD) and encryption."""
        args = {}
        if self.storage_class and naming.parse_artifact_name(name):
            args["StorageClass"] = self.storage_class
        if self.sse:
            args["ServerSideEncryption"] = self.sse
            if self.sse_kms_key_id:
                args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    # -- probing -----------------------------------------------------------------
    def check_writable(self):
        """The bucket exists and these credentials reach it (read-only: HeadBucket)."""
        def head():
            try:
                return self.client.head_bucket(Bucket=self.bucket)
            except ClientError as e:
                if _status(e) == 404:
                    raise LifeboatError(
                        "The bucket %s does not exist on %s (AWS error NoSuchBucket): create it (for example with "
                        "lifeboat.backup.s3_lifecycle and create_bucket: true) or fix repository."
                        % (self.bucket, self.endpoint_name), option="repository",
                        details={"aws_error_code": "NoSuchBucket", "http_status": 404})
                raise
        self.retry.call(head, "Checking the bucket %s" % self.bucket, self.endpoint_name)

    def _list(self, prefix, delimiter=None):
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        token = None
        while True:
            if token:
                kwargs["ContinuationToken"] = token
            page = self.retry.call(lambda: self.client.list_objects_v2(**kwargs),
                                   "Listing s3://%s/%s" % (self.bucket, prefix), self.endpoint_name)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def names(self, tenant):
        prefix = self.tenant_prefix(tenant)
        out = {}
        for page in self._list(prefix, "/"):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if name and "/" not in name:
                    out[name] = obj["Size"]
        return out

    def tenants(self):
        found = []
        for page in self._list(self.prefix, "/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix):].rstrip("/")
                try:
                    naming.validate_repo_tenant(name)
                except LifeboatError:
                    continue
                found.append(name)
        return sorted(set(found))

    def object_size(self, key):
        """Size of ``key``, or None when it does not exist."""
        def head():
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
            except ClientError as e:
                if _status(e) == 404:
                    return None
                raise
        return self.retry.call(head, "Checking s3://%s/%s" % (self.bucket, key), self.endpoint_name)

    def check_size(self, key, size, location):
        found = self.object_size(key)
        if found != size:
            raise LifeboatError("Uploading %s failed: the server reports %s bytes where %d were sent."
                                % (location, found, size))

    # -- writing -------------------------------------------------------------------
    def new_writer(self, tenant, name):
        self.key(tenant, name)
        return S3Writer(self, tenant, name)

    def put_bytes(self, key, view, name, what):
        """One conditional PutObject: never replaces an existing object."""
        body = _PartBody(view)
        extra = self.put_args(name)
        state = {"retried": False}

        def put():
            body.seek(0)
            try:
                return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
            except ClientError as e:
                if error_code(e) == "PreconditionFailed":
                    if state["retried"] and self.object_size(key) == len(view):
                        return {}  # our first attempt went through; its answer was lost
                    raise LifeboatError("Refusing to replace s3://%s/%s, which already exists; nothing was changed."
                                        % (self.bucket, key))
                raise

        def mark():
            state["retried"] = True

        self.retry.call(put, what, self.endpoint_name, before_retry=mark)

    def new_replacing_writer(self, tenant, name, if_match=None, metadata=None):
        """A writer that publishes over the existing object ``name`` (rekeying) in one atomic step.

        Same multipart machinery as new_writer (one part buffer, retries, the
        journal of open uploads, storage class and SSE): the new object becomes
        the current one only when CompleteMultipartUpload (or the one PutObject
        of a small object) succeeds, and only if the current object still has
        the ETag ``if_match`` (when given); any failure aborts the upload and
        leaves the old object current and untouched.
        """
        self.key(tenant, name)
        return S3Writer(self, tenant, name, replace=True, if_match=if_match, metadata=metadata)

    def replaced_meanwhile(self, location):
        return LifeboatError("Rekeying %s failed: the object was replaced by someone else while it was being rekeyed "
                             "(AWS error PreconditionFailed on If-Match); the upload was aborted and the object "
                             "left as it is. Run again." % location,
                             details={"aws_error_code": "PreconditionFailed"})

    def replace_bytes(self, key, view, name, what, if_match=None, metadata=None):
        """One PutObject over ``key`` (conditional on ``if_match`` when given)."""
        body = _PartBody(view)
        extra = self.put_args(name)
        if metadata:
            extra["Metadata"] = dict(metadata)
        if if_match:
            extra["IfMatch"] = if_match
        token = (metadata or {}).get("lifeboat-upload")
        state = {"retried": False}
        location = "s3://%s/%s" % (self.bucket, key)

        def put():
            body.seek(0)
            try:
                return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
            except ClientError as e:
                if error_code(e) == "PreconditionFailed":
                    if state["retried"] and token and self.upload_token(key) == token:
                        return {}  # our first attempt went through; its answer was lost
                    raise self.replaced_meanwhile(location)
                raise

        def mark():
            state["retried"] = True

        self.retry.call(put, what, self.endpoint_name, before_retry=mark)

    def _head_key(self, key):
        """HeadObject of ``key`` with retries, or None when it does not exist."""
        def head():
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if _status(e) == 404:
                    return None
                raise
        return self.retry.call(head, "Checking s3://%s/%s" % (self.bucket, key), self.endpoint_name)

    def head(self, tenant, name):
        """HeadObject of ``name``: {"etag", "size", "metadata", "version_id"}, or None when it does not exist."""
        resp = self._head_key(self.key(tenant, name))
        if resp is None:
            return None
        return {"etag": resp.get("ETag"), "size": resp.get("ContentLength"), "metadata": resp.get("Metadata") or {},
                "version_id": resp.get("VersionId")}

    def upload_token(self, key):
        """The ``lifeboat-upload`` metadata of the current object ``key`` (None if absent)."""
        resp = self._head_key(key)
        return ((resp or {}).get("Metadata") or {}).get("lifeboat-upload")

    def rekey_marker(self, tenant, name):
        """What a rekey recorded on the current object (``lifeboat-rekey-*`` metadata), or None."""
        found = self.head(tenant, name)
        if found is None:
            return None
        meta = found["metadata"]
        if not meta.get("lifeboat-rekey-of"):
            return None
        return {"of": meta.get("lifeboat-rekey-of"), "to": meta.get("lifeboat-rekey-to"), "etag": found["etag"]}

    def replace_json(self, tenant, name, data):
        """Overwrite the JSON object ``name`` (a manifest after a rekey); one atomic PutObject, retried."""
        location = self.location(tenant, name)
        self.replace_bytes(self.key(tenant, name), _json_payload(data), name, "Uploading %s" % location)
        return location

    # -- versions --------------------------------------------------------------------
    def versioning(self):
        """The bucket's versioning status: "Enabled", "Suspended", or None (never enabled)."""
        resp = self.retry.call(lambda: self.client.get_bucket_versioning(Bucket=self.bucket),
                               "Reading the versioning of the bucket %s" % self.bucket, self.endpoint_name)
        return resp.get("Status") or None

    def old_versions(self, tenant, name):
        """Non-current versions and delete markers of exactly ``name``: [{"key", "version_id", "delete_marker"}]."""
        key = self.key(tenant, name)
        kwargs = {"Bucket": self.bucket, "Prefix": key}
        out = []
        while True:
            page = self.retry.call(lambda: self.client.list_object_versions(**kwargs),
                                   "Listing the versions of %s" % self.location(tenant, name), self.endpoint_name)
            for kind, marker in (("Versions", False), ("DeleteMarkers", True)):
                for v in page.get(kind, []):
                    if v.get("Key") != key or v.get("IsLatest"):
                        continue  # another key sharing the prefix, or the current version: never touched
                    vid = v.get("VersionId")  # "null" for a version written before versioning: deletable too
                    if not vid:
                        continue
                    out.append({"key": key, "version_id": vid, "delete_marker": marker})
            if not page.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def purge_old_versions(self, tenant, name, manifest_name=None):
        """Delete the non-current versions (and delete markers) of ``name`` and of its manifest.

        The current version is never deleted. Returns what was deleted, as
        [{"key", "version_id", "delete_marker"}]; [] on a bucket that never
        had versioning. A version that S3 refuses to delete (object-lock
        retention or legal hold, a policy) does not stop the others: all are
        tried, then a PurgeError names each refused key, version and AWS error
        code, with the deleted ones in ``deleted``.
        """
        if manifest_name is None:
            info = naming.parse_artifact_name(name)
            manifest_name = naming.manifest_name(info["tenant"], info["stamp"]) if info else None
        deleted, refused = [], []
        for obj in [name] + ([manifest_name] if manifest_name else []):
            for v in self.old_versions(tenant, obj):
                what = "Deleting version %s of s3://%s/%s" % (v["version_id"], self.bucket, v["key"])

                def delete(v=v):
                    try:
                        return self.client.delete_object(Bucket=self.bucket, Key=v["key"], VersionId=v["version_id"])
                    except ClientError as e:
                        if error_code(e) in ("NoSuchVersion", "NoSuchKey"):
                            return None  # gone meanwhile (a lifecycle rule)
                        raise
                try:
                    self.retry.call(delete, what, self.endpoint_name)
                except LifeboatError as e:
                    refused.append(dict(v, aws_error_code=(e.details or {}).get("aws_error_code"), msg=str(e)))
                    continue
                deleted.append(v)
        if refused:
            listed = "; ".join("s3://%s/%s version %s (AWS error %s)"
                               % (self.bucket, r["key"], r["version_id"], r["aws_error_code"]) for r in refused)
            raise PurgeError(
                "Could not delete %d earlier version(s) holding old ciphertext: %s. An object-lock retention or "
                "legal hold keeps a version until it ends (S3 answers AccessDenied), a bucket policy may deny "
                "s3:DeleteObjectVersion; lifecycle noncurrent-version expiration removes them once allowed. The "
                "current objects were rekeyed all the same." % (len(refused), listed),
                deleted, refused)
        return deleted

    def write_json(self, tenant, name, data):
        location = self.location(tenant, name)
        self.put_bytes(self.key(tenant, name), _json_payload(data), name, "Uploading %s" % location)
        return location

    def read_json(self, tenant, name):
        location = self.location(tenant, name)
        with self.open_read(tenant, name) as f:
            data = f.read(JSON_LIMIT + 1)
        if len(data) > JSON_LIMIT:
            raise LifeboatError("%s is larger than %d bytes: it is not a lifeboat record." % (location, JSON_LIMIT))
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as e:
            raise LifeboatError("%s is not valid JSON (%s): the object is damaged." % (location, e))

    def open_read(self, tenant, name):
        """A streaming reader (read(size) in chunks; resumes after a broken connection)."""
        return S3Reader(self, self.key(tenant, name), self.location(tenant, name))

    def delete(self, tenant, name):
        key = self.key(tenant, name)
        self.retry.call(lambda: self.client.delete_object(Bucket=self.bucket, Key=key),
                        "Deleting %s" % self.location(tenant, name), self.endpoint_name)

    # -- locks and leftovers ---------------------------------------------------------
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

    def open_uploads(self, tenant):
        """Multipart uploads still open under the tenant's prefix."""
        prefix = self.tenant_prefix(tenant)
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        found = []
        while True:
            page = self.retry.call(lambda: self.client.list_multipart_uploads(**kwargs),
                                   "Listing the open uploads under s3://%s/%s" % (self.bucket, prefix),
                                   self.endpoint_name)
            for up in page.get("Uploads", []):
                found.append({"key": up["Key"], "upload_id": up["UploadId"], "initiated": up.get("Initiated"),
                              "name": up["Key"][len(prefix):]})
            if not page.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")

    def partial_files(self, tenant):
        return sorted("%s (upload %s)" % (u["name"], u["upload_id"][:12]) for u in self.open_uploads(tenant))

    def stale_uploads(self, tenant, now=None):
        """Open uploads the next run may abort: this host's own, or any older than stale_upload_age."""
        now = now or time.time()
        mine = self._journal(tenant)
        out = []
        for up in self.open_uploads(tenant):
            started = up["initiated"].timestamp() if up.get("initiated") is not None else None
            if up["upload_id"] in mine or (started is not None and now - started >= self.stale_upload_age):
                out.append(up)
        return out, mine

    def abort_upload(self, key, upload_id):
        def abort():
            try:
                return self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as e:
                if error_code(e) == "NoSuchUpload":
                    return None  # already gone
                raise
        self.retry.call(abort, "Aborting the upload of s3://%s/%s" % (self.bucket, key), self.endpoint_name)

    def remove_partials(self, tenant):
        """Abort uploads left open by killed runs. Call only while holding the lock."""
        stale, mine = self.stale_uploads(tenant)
        removed = []
        for up in stale:
            self.abort_upload(up["key"], up["upload_id"])
            removed.append("%s (upload %s)" % (up["name"], up["upload_id"][:12]))
            if up["upload_id"] in mine:
                self.journal_remove(mine.pop(up["upload_id"]))
        for path in mine.values():
            self.journal_remove(path)  # records of uploads no longer open (finished, or aborted elsewhere)
        return removed
