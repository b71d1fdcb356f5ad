# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bucket's settings besides its rules, and the S3 calls that read and write them all.

Versioning, default encryption, public access block and object lock are each
normalized into the shape of the options (normalize_*), the wanted state built
from the options (wanted_*), and turned into what S3 takes (*_to_aws).
BucketSettings reads and writes every aspect of one bucket through the retry
policy of the S3 client; a missing configuration reads as None. A store that
does not implement an aspect answers 501 NotImplemented (or a NotImplemented
or Unsupported code), never retried; a write of a bucket setting answered with
BucketAlreadyExists means the store took it for CreateBucket, i.e. it does not
implement that setting either: both raise a LifeboatError for which
client.is_unsupported() is true.
"""

import functools

from ..errors import LifeboatError
from .client import ClientError, error_code, http_status
from .lifecycle_rules import whole_number

LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
PUBLIC_ACCESS_CHOICES = ("block", "remove", "unmanaged")


def normalize_versioning(resp):
    status = (resp or {}).get("Status")
    return {"Enabled": "enabled", "Suspended": "suspended"}.get(status, "disabled")


def normalize_encryption(conf):
    """{algorithm, kms_key_id?, bucket_key_enabled?} of the first default-encryption rule, or None."""
    rules = (conf or {}).get("Rules") or []
    if not rules:
        return None
    default = rules[0].get("ApplyServerSideEncryptionByDefault") or {}
    out = {"algorithm": default.get("SSEAlgorithm")}
    if default.get("KMSMasterKeyID"):
        out["kms_key_id"] = default["KMSMasterKeyID"]
    if out["algorithm"] != "AES256" and rules[0].get("BucketKeyEnabled"):
        out["bucket_key_enabled"] = True
    return out


def wanted_encryption(algorithm, key_id, bucket_key, current):
    if key_id and algorithm != "aws:kms":
        raise LifeboatError("encryption_key_id needs encryption: aws:kms.", option="encryption_key_id")
    out = {"algorithm": algorithm}
    cur = current or {}
    if algorithm == "aws:kms":
        if key_id:
            out["kms_key_id"] = key_id
        elif cur.get("algorithm") == "aws:kms" and cur.get("kms_key_id"):
            out["kms_key_id"] = cur["kms_key_id"]  # unset: left alone
        if bucket_key is None:
            bucket_key = bool(cur.get("bucket_key_enabled")) if cur.get("algorithm") == "aws:kms" else False
        if bucket_key:
            out["bucket_key_enabled"] = True
    elif bucket_key:
        raise LifeboatError("bucket_key_enabled applies to encryption: aws:kms.", option="bucket_key_enabled")
    return out


def encryption_to_aws(enc):
    default = {"SSEAlgorithm": enc["algorithm"]}
    if enc.get("kms_key_id"):
        default["KMSMasterKeyID"] = enc["kms_key_id"]
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": default,
                       "BucketKeyEnabled": bool(enc.get("bucket_key_enabled"))}]}


def normalize_public_access(conf):
    conf = conf or {}
    return dict((flag, bool(conf.get(flag))) for flag in PUBLIC_ACCESS_FLAGS)


def normalize_object_lock(conf):
    conf = conf or {}
    if conf.get("ObjectLockEnabled") != "Enabled":
        return {"enabled": False}
    out = {"enabled": True}
    retention = ((conf.get("Rule") or {}).get("DefaultRetention")) or {}
    if retention.get("Mode"):
        out["mode"] = retention["Mode"]
        if retention.get("Days"):
            out["days"] = retention["Days"]
        if retention.get("Years"):
            out["years"] = retention["Years"]
    return out


def wanted_object_lock(opt):
    if not isinstance(opt, dict):
        raise LifeboatError("object_lock must be a dictionary (mode, and days or years).", option="object_lock")
    unknown = sorted(k for k, v in opt.items() if v is not None and k not in ("mode", "days", "years"))
    if unknown:
        raise LifeboatError("Unknown key(s) in object_lock: %s." % ", ".join(unknown), option="object_lock")
    mode, days, years = opt.get("mode"), opt.get("days"), opt.get("years")
    out = {"enabled": True}
    if mode is None:
        if days is not None or years is not None:
            raise LifeboatError("object_lock days or years need a mode (GOVERNANCE or COMPLIANCE).",
                                option="object_lock")
        return out
    if mode not in LOCK_MODES:
        raise LifeboatError("Invalid object_lock mode %r: GOVERNANCE or COMPLIANCE." % (mode,), option="object_lock")
    if (days is None) == (years is None):
        raise LifeboatError("object_lock with a mode needs exactly one of days or years.", option="object_lock")
    out["mode"] = mode
    if days is not None:
        out["days"] = whole_number(days, "object_lock days", 1)
    else:
        out["years"] = whole_number(years, "object_lock years", 1)
    return out


def object_lock_to_aws(lock):
    conf = {"ObjectLockEnabled": "Enabled"}
    if lock.get("mode"):
        retention = {"Mode": lock["mode"]}
        if lock.get("days"):
            retention["Days"] = lock["days"]
        else:
            retention["Years"] = lock["years"]
        conf["Rule"] = {"DefaultRetention": retention}
    return conf


# How an aspect is read: (what, the client's method, the key of its answer, the AWS error code S3 answers when the
# bucket never had it, the normalizer into the shape of the options).
_READ = {
    "encryption": ("the default encryption", "get_bucket_encryption", "ServerSideEncryptionConfiguration",
                   "ServerSideEncryptionConfigurationNotFoundError", normalize_encryption),
    "public_access_block": ("the public access block", "get_public_access_block", "PublicAccessBlockConfiguration",
                            "NoSuchPublicAccessBlockConfiguration", normalize_public_access),
    "object_lock": ("the object lock configuration", "get_object_lock_configuration", "ObjectLockConfiguration",
                    "ObjectLockConfigurationNotFoundError", normalize_object_lock),
}


class BucketSettings(object):
    """Read and write one bucket's settings through the shared retry policy."""

    def __init__(self, bucket, client, retry, endpoint_name):
        self.bucket = bucket
        self.client = client
        self._retried = functools.partial(retry.call, endpoint=endpoint_name)  # (fn, what)

    def _call(self, what, fn, missing=(), setting=False):
        """``fn()`` with retries; None when S3 answers one of the codes ``missing``. ``setting``: a write of a
        bucket setting (a sub-resource), which a store that lacks it may take for CreateBucket."""
        label = "%s of bucket %s" % (what, self.bucket)

        def call():
            try:
                return fn()
            except ClientError as e:
                if error_code(e) in missing:
                    return None
                if setting and error_code(e) in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                    raise LifeboatError(
                        "%s failed: AWS error %s (HTTP %s): the store took the request for CreateBucket, so it does "
                        "not implement this setting." % (label, error_code(e), http_status(e)),
                        details={"aws_error_code": error_code(e), "http_status": http_status(e),
                                 "unsupported": True}) from e
                raise
        return self._retried(call, label)

    def exists(self):
        def head():
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return True
            except ClientError as e:
                if http_status(e) == 404:
                    return False
                raise
        return self._retried(head, "Checking bucket %s" % self.bucket)

    def create(self, object_lock):
        args = {"Bucket": self.bucket}
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if object_lock:
            args["ObjectLockEnabledForBucket"] = True
        self._call("Creating", lambda: self.client.create_bucket(**args))

    def lifecycle(self):
        resp = self._call("Reading the lifecycle rules",
                          lambda: self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket),
                          ("NoSuchLifecycleConfiguration",))
        if resp is None:
            return [], None
        return resp.get("Rules") or [], resp.get("TransitionDefaultMinimumObjectSize")

    def put_lifecycle(self, rules, min_size):
        if not rules:
            return self._call("Deleting the lifecycle rules",
                              lambda: self.client.delete_bucket_lifecycle(Bucket=self.bucket))
        args = {"Bucket": self.bucket, "LifecycleConfiguration": {"Rules": rules}}
        if min_size:
            args["TransitionDefaultMinimumObjectSize"] = min_size  # keep the bucket's, not the API default
        return self._call("Writing the lifecycle rules",
                          lambda: self.client.put_bucket_lifecycle_configuration(**args), setting=True)

    def versioning(self):
        return normalize_versioning(self._call("Reading the versioning",
                                               lambda: self.client.get_bucket_versioning(Bucket=self.bucket)))

    def put_versioning(self, enabled):
        status = "Enabled" if enabled else "Suspended"
        return self._call("Writing the versioning", lambda: self.client.put_bucket_versioning(
            Bucket=self.bucket, VersioningConfiguration={"Status": status}), setting=True)

    def _read(self, aspect):
        what, method, key, missing, normalize = _READ[aspect]
        resp = self._call("Reading " + what, lambda: getattr(self.client, method)(Bucket=self.bucket), (missing,))
        return normalize((resp or {}).get(key))

    def encryption(self):
        return self._read("encryption")

    def put_encryption(self, enc):
        return self._call("Writing the default encryption", lambda: self.client.put_bucket_encryption(
            Bucket=self.bucket, ServerSideEncryptionConfiguration=encryption_to_aws(enc)), setting=True)

    def public_access(self):
        return self._read("public_access_block")

    def put_public_access(self, block):
        if block:
            conf = dict((flag, True) for flag in PUBLIC_ACCESS_FLAGS)
            return self._call("Writing the public access block", lambda: self.client.put_public_access_block(
                Bucket=self.bucket, PublicAccessBlockConfiguration=conf), setting=True)
        return self._call("Deleting the public access block",
                          lambda: self.client.delete_public_access_block(Bucket=self.bucket))

    def object_lock(self):
        return self._read("object_lock")

    def put_object_lock(self, lock):
        return self._call("Writing the object lock configuration", lambda: self.client.put_object_lock_configuration(
            Bucket=self.bucket, ObjectLockConfiguration=object_lock_to_aws(lock)), setting=True)
