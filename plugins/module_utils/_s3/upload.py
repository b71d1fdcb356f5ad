# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The multipart upload writer of S3 repositories.

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
"""

import collections
import copy
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import LifeboatError
from ..naming import human_size
from .client import ClientError, describe, error_code, http_status

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
# Parts of one upload in flight at once (1: one after the other, no threads). 3 holds 8 MiB more and was no
# faster against a loopback server.
UPLOAD_CONCURRENCY = 2
MAX_UPLOAD_CONCURRENCY = 16
UPLOAD_BUDGET = 32 * MiB  # part buffers one upload holds (filled and in flight), unless one part is larger


def part_size_for(part_number, minimum=MIN_PART_SIZE):
    """Size of part ``part_number`` (1-based): ``minimum``, plus 11 MiB every 100 parts."""
    return min(S3_MAX_PART, minimum + ((part_number - 1) // PARTS_PER_STEP) * PART_GROWTH)


def schedule_capacity(minimum=MIN_PART_SIZE, parts=S3_MAX_PARTS):
    """Bytes that ``parts`` parts of the schedule hold (5.27 TiB for 10,000 parts from 8 MiB)."""
    steps, rest = divmod(parts, PARTS_PER_STEP)
    total = sum(part_size_for(n * PARTS_PER_STEP + 1, minimum) * PARTS_PER_STEP for n in range(steps))
    return total + part_size_for(steps * PARTS_PER_STEP + 1, minimum) * rest


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
            raise LifeboatError("Uploading %s failed: the artifact exceeds S3's limit of %d parts (about %s); S3 "
                                "cannot store objects over 5 TiB." % (self.location, S3_MAX_PARTS, human_size(self.size)))
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

        what = "Uploading part %d (%d bytes) of %s" % (number, length, self.location)

        def upload():
            if self._stop.is_set():
                raise stopped()
            body.seek(0)
            try:
                return repo.client.upload_part(Bucket=repo.bucket, Key=self.key, UploadId=self.upload_id,
                                               PartNumber=number, Body=body)
            except ClientError as e:
                if error_code(e) == "NoSuchUpload":
                    raise self._aborted_meanwhile(what, e) from e
                raise

        def before_retry():
            self._slowed = True
            if self._stop.is_set():
                raise stopped()

        resp = retry.call(upload, what, repo.endpoint_name, before_retry=before_retry)
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
                if error_code(e) == "NoSuchUpload":
                    raise self._aborted_meanwhile("Completing the upload of %s" % self.location, e) from e
                raise

        def mark():
            state["retried"] = True

        repo.retry.call(complete, "Completing the upload of %s (%d parts)" % (self.location, len(self._parts)),
                        repo.endpoint_name, before_retry=mark)

    def _aborted_meanwhile(self, what, e):
        """The store no longer knows the multipart upload this run started: someone aborted it."""
        return LifeboatError(
            "%s failed: AWS error NoSuchUpload (HTTP %s): the multipart upload this run started (upload %s) is no "
            "longer open, so it was aborted meanwhile: by another run on another host that took it for a stale "
            "upload (stale_upload_age), or by a lifecycle rule whose abort_incomplete_multipart_upload_days is "
            "shorter than a backup. Nothing was published; run again." % (what, http_status(e), self.upload_id[:12]),
            details={"aws_error_code": "NoSuchUpload", "http_status": http_status(e)})

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
