# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The S3 client, its errors and its retries.

Transient failures (connection errors, time-outs, HTTP 5xx other than 501,
SlowDown and other throttling) are retried with full-jitter exponential
backoff; botocore's own retries are off so that the policy and its messages
are ours. A 501 NotImplemented (and the NotImplemented or Unsupported codes of
S3-compatible stores) is not transient: the store does not implement that call,
and ``is_unsupported`` tells it apart. Errors name the AWS error code, what the
store answered and what it usually means, and the option that fixes them.
"""

import random
import re
import time

from ..errors import LifeboatError, MissingDependency

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
    BOTO3_IMPORT_ERROR = str(_e)

    class _NoBotocore(Exception):
        """Stands for botocore's exceptions when botocore is missing: nothing raised is one of them."""

    boto3 = BotoConfig = None
    BotoCoreError = ClientError = BotoConnectionError = HTTPClientError = IncompleteReadError = _NoBotocore
    NoCredentialsError = PartialCredentialsError = ReadTimeoutError = _NoBotocore

_THROTTLING = frozenset(("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                         "TooManyRequestsException", "RequestThrottled", "ServiceUnavailable",
                         "InternalError", "RequestTimeout", "503", "500", "502", "504"))
# What S3-compatible stores answer for a call they do not implement (HTTP 501, or these codes with another status).
_UNSUPPORTED = frozenset(("NotImplemented", "Unsupported", "UnsupportedOperation", "NotSupported",
                          "XNotImplemented", "501"))


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


# What to do about an AWS error code, grouped by the option that fixes it (None: no option does).
_HINTS_BY_OPTION = {
    "repository": {
        "NoSuchBucket": "the bucket does not exist: create it (lifeboat.backup.s3_lifecycle with create_bucket: true) "
                        "or fix the bucket name in repository",
        "AllAccessDisabled": "all access to this bucket is disabled",
    },
    "s3_access_key": {
        "AccessDenied": "these credentials may not do this: check the IAM policy (s3:ListBucket, s3:GetObject, "
                        "s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload, s3:ListBucketMultipartUploads; "
                        "kms:GenerateDataKey and kms:Decrypt with sse aws:kms) or s3_access_key",
        "InvalidAccessKeyId": "the access key is unknown to this endpoint: check s3_access_key (and s3_endpoint_url)",
    },
    "s3_secret_key": {"SignatureDoesNotMatch": "the request signature is wrong: check s3_secret_key"},
    "s3_session_token": {
        "ExpiredToken": "the session token has expired: renew s3_session_token",
        "InvalidToken": "the session token is malformed: check s3_session_token",
        "TokenRefreshRequired": "the session token must be refreshed: renew s3_session_token",
    },
    "s3_region": {
        "PermanentRedirect": "the bucket lives in another region: set s3_region to it",
        "AuthorizationHeaderMalformed": "the region is wrong for this bucket: set s3_region",
        "IllegalLocationConstraintException": "the region does not match: set s3_region",
    },
    "storage_class": {"InvalidStorageClass": "this endpoint does not offer that storage class: change storage_class"},
    "sse": {"InvalidEncryptionAlgorithmError": "the server refuses this encryption: change sse"},
    "sse_kms_key_id": {
        "KMS.NotFoundException": "the KMS key does not exist: check sse_kms_key_id",
        "KMS.DisabledException": "the KMS key is disabled: enable it or change sse_kms_key_id",
        "KMS.KMSInvalidStateException": "the KMS key is not usable: check sse_kms_key_id",
    },
    None: {
        "InvalidObjectState": "the object is archived (GLACIER or DEEP_ARCHIVE): restore it first "
                              "(aws s3api restore-object), wait until it is readable, then run again",
        "NoSuchKey": "the object does not exist",
        "NoSuchUpload": "the store knows no multipart upload of that id (some stores, such as rclone serve s3, "
                        "also answer so when listing finds no open upload)",
        "PreconditionFailed": "an object of that name already exists",
        "SlowDown": "S3 is throttling this prefix: run fewer backups at once or spread them over time",
        "EntityTooLarge": "the object exceeds S3's limits",
        "NotImplemented": "the store does not implement this call (an S3-compatible store without this feature); "
                          "retrying cannot help",
    },
}
# AWS error code -> (hint, option).
_HINTS = dict((code, (hint, option)) for option, hints in _HINTS_BY_OPTION.items() for code, hint in hints.items())
for _code in _UNSUPPORTED:
    _HINTS.setdefault(_code, _HINTS["NotImplemented"])
_STATUS_HINTS = {
    301: ("the bucket lives in another region: set s3_region to it", "s3_region"),
    403: _HINTS["AccessDenied"],
    404: _HINTS["NoSuchBucket"],
    501: _HINTS["NotImplemented"],
}
# Said after the hint when the call ran out of attempts on a transient failure.
_GAVE_UP = "it was retried and kept failing: try again later"


def error_code(e):
    if isinstance(e, ClientError):
        return e.response.get("Error", {}).get("Code") or str(http_status(e))
    return None


def http_status(e):
    return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def is_unsupported(e):
    """True when the store answered that it does not implement the call: HTTP 501, or a NotImplemented or
    Unsupported error code (a LifeboatError made by describe() counts by its recorded code and status)."""
    if isinstance(e, LifeboatError):
        details = e.details or {}
        return bool(details.get("unsupported")) or details.get("aws_error_code") in _UNSUPPORTED or \
            details.get("http_status") == 501
    if isinstance(e, ClientError):
        return error_code(e) in _UNSUPPORTED or http_status(e) == 501
    return False


def describe(e, what, endpoint=None, attempts=None):
    """A LifeboatError for a boto3/botocore exception ``e`` raised while doing ``what``.

    ``attempts``: how many times the call was tried before giving up on a transient failure."""
    if isinstance(e, LifeboatError):
        return e
    err = _describe(e, what, endpoint or "the S3 endpoint")
    if attempts and attempts > 1:
        if isinstance(e, ClientError) and not getattr(err, "hinted", False):
            err.msg = "%s; %s." % (err.msg.rstrip("."), _GAVE_UP)
        err.msg = "%s (gave up after %d attempts)." % (err.msg.rstrip("."), attempts)
        err.args = (err.msg,)
        err.details["attempts"] = attempts
    return err


def _describe(e, what, where):
    if isinstance(e, ClientError):
        code = error_code(e)
        status = http_status(e)
        message = e.response.get("Error", {}).get("Message") or ""
        hint, option = _HINTS.get(code) or _STATUS_HINTS.get(status) or (None, None)
        if code.startswith("KMS.") and not hint:
            hint, option = "the KMS key refused the operation: check sse_kms_key_id and its key policy", "sse_kms_key_id"
        if status == 301:
            region = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
            if region:
                hint = "the bucket lives in region %s: set s3_region: %s" % (region, region)
        text = "%s failed: AWS error %s (HTTP %s%s)" % (what, code, status, (": %s" % message) if message else "")
        if hint:
            text += "; %s" % hint
        elif status and status >= 500:
            text += "; the store failed to answer (a server-side error)"
        if option:
            text += " (option %s)" % option
        err = LifeboatError(text + ".", option=option, details={"aws_error_code": code, "http_status": status})
        err.hinted = bool(hint)
        return err
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
    """True for failures worth retrying: the network, time-outs, 5xx but 501 NotImplemented, throttling."""
    if isinstance(e, ClientError):
        if is_unsupported(e):
            return False  # the store does not implement the call: the same answer every time
        code = error_code(e)
        status = http_status(e) or 0
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
