# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an S3-compatible store honours, probed once per endpoint, bucket and process.

Two guarantees of the collection rest on conditional writes: uploads send
``If-None-Match: *`` so that they never replace an existing object, and the
rekey sends ``If-Match`` so that it never overwrites an object someone else
replaced meanwhile. AWS S3 honours both (412 PreconditionFailed); some stores
ignore them and write anyway (rclone serve s3). ``StoreProbes`` (a mixin of
S3Repository) tries each on a probe object under the repository's prefix,
once per endpoint and bucket in this process, and says plainly, once, in the
repository's ``warnings`` what is lost where the store ignores one. Nothing
else changes: the operation goes on.
"""

import secrets
import threading

from ..errors import LifeboatError
from .client import ClientError, error_code, http_status, is_unsupported

PROBE_PREFIX = ".lifeboat-probe-"  # probe keys: not a tenant name (naming refuses a leading dot)
IF_MATCH = "If-Match"
IF_NONE_MATCH = "If-None-Match"

# (endpoint, bucket, header) -> True (honoured) / False (ignored): probed once per process.
_PROBED = {}
_PROBE_LOCK = threading.Lock()

# header -> (the PutObject argument that must fail on the existing probe object, what is lost when it does not)
_CONDITIONS = {
    IF_MATCH: (
        {"IfMatch": '"%s"' % ("0" * 32)},
        "a PutObject with a wrong If-Match succeeded on a probe object. The rekey's protection is lost there: an "
        "artifact replaced by someone else while it is being rekeyed is overwritten without notice, where AWS S3 "
        "would refuse it (412 PreconditionFailed). Run no other writer of these artifacts (another rekey, a restore "
        "of files into the repository) at the same time."),
    IF_NONE_MATCH: (
        {"IfNoneMatch": "*"},
        "a PutObject with If-None-Match: * over an existing probe object succeeded. Uploads there cannot refuse to "
        "replace an existing object: two hosts backing up the same tenant to the same prefix could overwrite each "
        "other's artifact without notice (on one host, the tenant's lock keeps runs apart). The backup went on; give "
        "each tenant one backup host."),
}


def forget_probes():
    """Forget what was probed in this process (tests, which start stores anew)."""
    with _PROBE_LOCK:
        _PROBED.clear()


class StoreProbes(object):
    """Probes of an S3Repository: needs client, bucket, prefix, endpoint_url, endpoint_name, retry, warn()."""

    def conditional_writes(self, header=IF_MATCH):
        """Whether the store honours ``header`` (If-Match or If-None-Match) on PutObject: True, False, or None
        (the probe itself failed, after its retries; said in ``warnings``, and not asked again in this process:
        a pass of many tenants must not repeat a failing call, with its retries, for each of them).

        Probed once per endpoint and bucket in this process, on a probe object under the prefix (never a
        tenant's name): PutObject it, PutObject it again with a condition that must fail (a wrong If-Match, or
        If-None-Match: * while it exists: a store that honours it answers 412 PreconditionFailed and writes
        nothing), then delete it (each version written, on a versioned bucket). A store that does not implement
        the header (501) does not honour it. AWS S3 itself (no s3_endpoint_url) documents conditional writes: it
        is not probed.
        """
        if not self.endpoint_url:
            return True
        ident = (self.endpoint_url, self.bucket, header)
        with _PROBE_LOCK:  # held while probing: threads of one pass probe once
            if ident not in _PROBED:
                _PROBED[ident] = self._probe(header)
            return _PROBED[ident]

    def _probe(self, header):
        condition = _CONDITIONS[header][0]
        key = "%s%s%s" % (self.prefix, PROBE_PREFIX, secrets.token_hex(8))
        what = "Probing whether %s honours conditional writes (%s) on s3://%s/%s" % (
            self.endpoint_name, header, self.bucket, key)
        written = []

        def put(**args):
            resp = self.client.put_object(Bucket=self.bucket, Key=key, Body=b"lifeboat probe\n", **args)
            written.append(resp.get("VersionId"))
            return resp

        def conditional():
            try:
                put(**condition)
            except ClientError as e:
                if error_code(e) == "PreconditionFailed" or http_status(e) == 412:
                    return True
                raise
            return False

        honoured = None
        try:
            self.retry.call(put, what, self.endpoint_name)
            honoured = self.retry.call(conditional, what, self.endpoint_name)
        except LifeboatError as e:
            if is_unsupported(e):
                honoured = False
            else:
                self._housekeeping_failed(e, "Whether the store honours %s is unknown; lifeboat still sends it"
                                          % header)
        finally:
            self._delete_probe(key, written)
        return honoured

    def _delete_probe(self, key, versions):
        """Delete the probe object (each version written, when the bucket is versioned); best effort.

        A version the store refuses to delete (the bucket's default object-lock retention holds it) is hidden
        behind a delete marker instead: a few bytes that stay until the retention ends, said nowhere (the
        compatibility page says it), since every run on such a bucket would say it again."""
        ids = [v for v in versions if v and v != "null"] or ([None] if versions else [])
        what = "Deleting the probe object s3://%s/%s" % (self.bucket, key)
        for vid in ids:
            args = {"Bucket": self.bucket, "Key": key}
            if vid:
                args["VersionId"] = vid
            try:
                self.retry.call(lambda args=args: self.client.delete_object(**args), what, self.endpoint_name)
                continue
            except LifeboatError as e:
                refused = e
            if vid and (refused.details or {}).get("aws_error_code") == "AccessDenied":
                try:
                    self.retry.call(lambda: self.client.delete_object(Bucket=self.bucket, Key=key), what,
                                    self.endpoint_name)
                    return
                except LifeboatError as e:
                    refused = e
            self._housekeeping_failed(refused, "The probe object s3://%s/%s stays; delete it by hand"
                                               % (self.bucket, key))
            return

    def check_conditional_writes(self, header=IF_MATCH):
        """Warn once when the store ignores ``header``: say what is lost there; the operation goes on."""
        if self.conditional_writes(header) is False:
            self.warn("The S3 store at %s does not honour conditional writes (%s): %s"
                      % (self.endpoint_name, header, _CONDITIONS[header][1]))
