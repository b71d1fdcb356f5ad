# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resumable reader of S3 repositories: a streaming download that resumes after a broken connection."""

from ..errors import LifeboatError
from .client import ClientError, IncompleteReadError, describe, error_code, is_transient

PROGRESS = 1 << 20  # bytes (1 MiB) read after a failure that count as a healthy path again


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
