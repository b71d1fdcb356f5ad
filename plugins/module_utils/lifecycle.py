# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bucket's protection, declared: lifecycle rules, versioning, default
encryption, public access block and object lock (the engine of s3_lifecycle).

Each aspect is handled on its own: read the current state, normalize it into
the same shape as the options (sorted, server defaults dropped), compare with
what the options want, and write only when they differ. An option that is not
set leaves its aspect alone. Rules are compared by ID; rules not named are
kept unless ``purge_rules``. So a second identical run, rules given in
another order, and defaults the server fills in all give ``changed: false``.

The rules, their canonical form and the constraints AWS enforces (checked
before any call) are in ``_s3/lifecycle_rules.py``; the other aspects and the
S3 calls that read and write them all in ``_s3/bucket.py``. Here: the options
and the run, which reads and compares every aspect before writing any.

An aspect the store does not implement (501 NotImplemented, a NotImplemented or
Unsupported code: many S3-compatible stores lack some) is reported per aspect
in ``unsupported`` and the others are managed all the same. It fails the run
only when the options ask for it (versioning, encryption, object_lock, rules),
naming the aspect and how to leave it unmanaged; the public access block, on
by default, and aspects read only to check others are a warning.
"""

from . import argspec, s3
from ._s3.bucket import (
    LOCK_MODES,
    PUBLIC_ACCESS_CHOICES,
    PUBLIC_ACCESS_FLAGS,
    BucketSettings,
    encryption_to_aws,
    normalize_encryption,
    normalize_object_lock,
    normalize_public_access,
    normalize_versioning,
    object_lock_to_aws,
    wanted_encryption,
    wanted_object_lock,
)
from ._s3.lifecycle_rules import (
    ALLOWED_NEXT,
    MAX_RULES,
    MIN_BILLED,
    MIN_FIRST_DAYS,
    MIN_STAY,
    RULE_KEYS,
    TRANSITION_CLASSES,
    whole_number,
    check_retention,
    normalize_aws_rule,
    plan_rules,
    rule_from_options,
    to_aws_rule,
    validate_rule,
)
from ._s3.client import is_unsupported
from .errors import LifeboatError

__all__ = [
    "LOCK_MODES", "PUBLIC_ACCESS_CHOICES", "PUBLIC_ACCESS_FLAGS", "BucketSettings", "encryption_to_aws",
    "normalize_encryption", "normalize_object_lock", "normalize_public_access", "normalize_versioning",
    "object_lock_to_aws", "wanted_encryption", "wanted_object_lock",
    "ALLOWED_NEXT", "MAX_RULES", "MIN_BILLED", "MIN_FIRST_DAYS", "MIN_STAY", "RULE_KEYS", "TRANSITION_CLASSES",
    "check_retention", "normalize_aws_rule", "plan_rules", "rule_from_options", "to_aws_rule", "validate_rule",
    "SPEC", "OPTIONS", "run",
]

# How to leave an aspect unmanaged, by aspect: (the option, what to do).
_UNMANAGED = {
    "versioning": ("versioning", "leave versioning unset"),
    "encryption": ("encryption", "leave encryption (and encryption_key_id, bucket_key_enabled) unset"),
    "public_access_block": ("public_access_block", "set public_access_block: unmanaged"),
    "object_lock": ("object_lock", "leave object_lock unset"),
    "lifecycle_rules": ("rules", "leave rules unset"),
}


# -- the run ------------------------------------------------------------------------

_TRANSITION = dict(days=dict(type="int", required=True),
                   storage_class=dict(type="str", required=True, choices=list(TRANSITION_CLASSES)))

# The options of s3_lifecycle (see argspec.py)
SPEC = argspec.ArgumentSpec(
    argspec.merged(
        argspec.S3_CONNECTION,
        bucket=dict(type="str", required=True),
        create_bucket=dict(type="bool", default=False),
        rules=dict(type="list", elements="dict", options=dict(
            id=dict(type="str", required=True),
            enabled=dict(type="bool", default=True),
            prefix=dict(type="str"),
            tags=dict(type="dict"),
            transitions=dict(type="list", elements="dict", options=_TRANSITION),
            expiration_days=dict(type="int"),
            expired_object_delete_marker=dict(type="bool"),
            noncurrent_version_transitions=dict(type="list", elements="dict", options=_TRANSITION),
            noncurrent_version_expiration_days=dict(type="int"),
            abort_incomplete_multipart_upload_days=dict(type="int"),
        )),
        purge_rules=dict(type="bool", default=False),
        min_retention_days=dict(type="int"),
        retention_prefix=dict(type="str", default=""),
        versioning=dict(type="bool"),
        encryption=dict(type="str", choices=list(s3.SSE_ALGORITHMS)),
        encryption_key_id=dict(type="str", no_log=False),
        bucket_key_enabled=dict(type="bool"),
        public_access_block=dict(type="str", default="block", choices=list(PUBLIC_ACCESS_CHOICES)),
        object_lock=dict(type="dict", options=dict(
            mode=dict(type="str", choices=list(LOCK_MODES)),
            days=dict(type="int"),
            years=dict(type="int"),
        ), mutually_exclusive=[("days", "years")]),
    ),
    required_by=dict(encryption_key_id="encryption", bucket_key_enabled="encryption"),
)
OPTIONS = SPEC.defaults()


def _validate_params(p):
    bucket = p["bucket"]
    if not s3.valid_bucket(bucket):
        raise LifeboatError("Invalid bucket %r: 3 to 63 lower-case letters, digits, dots and hyphens." % (bucket,),
                            option="bucket")
    if p["encryption"] is not None and p["encryption"] not in s3.SSE_ALGORITHMS:
        raise LifeboatError("Invalid encryption %r: AES256 or aws:kms." % (p["encryption"],), option="encryption")
    if p["encryption"] is None and (p["encryption_key_id"] or p["bucket_key_enabled"] is not None):
        raise LifeboatError("encryption_key_id and bucket_key_enabled need encryption (aws:kms).", option="encryption")
    if p["public_access_block"] not in PUBLIC_ACCESS_CHOICES:
        raise LifeboatError("Invalid public_access_block %r: block (the default), remove or unmanaged."
                            % (p["public_access_block"],), option="public_access_block")
    if p["min_retention_days"] is not None:
        p["min_retention_days"] = whole_number(p["min_retention_days"], "min_retention_days", 1)
    rules = None
    if p["rules"] is not None:
        if not isinstance(p["rules"], list):
            raise LifeboatError("rules must be a list of rules.", option="rules")
        rules = [rule_from_options(r) for r in p["rules"]]
        ids = [r["id"] for r in rules]
        dup = sorted(set(i for i in ids if ids.count(i) > 1))
        if dup:
            raise LifeboatError("Rule ids must be unique; repeated: %s." % ", ".join(dup), option="rules")
    lock = wanted_object_lock(p["object_lock"]) if p["object_lock"] is not None else None
    if lock is not None and p["versioning"] is False:
        raise LifeboatError("object_lock needs versioning: a bucket with object lock cannot suspend versioning; set "
                            "versioning: true (or leave it unset).", option="versioning")
    return rules, lock


def run(params, check_mode=False, client=None, retry=None):
    """Bring a bucket to the declared state; return a secret-free result with before/after.

    One code path: every aspect is read and compared first (a bucket about to be created is taken as
    CreateBucket leaves it), every check runs, and only then, unless ``check_mode``, the writes happen:
    nothing is written when anything is refused.
    """
    p = SPEC.resolve(params)
    wanted_rules, wanted_lock = _validate_params(p)
    client = client or s3.make_client(p["s3_endpoint_url"], p["s3_region"], p["s3_access_key"], p["s3_secret_key"],
                                      p["s3_session_token"])
    endpoint_name = p["s3_endpoint_url"] or "AWS S3"
    bucket = BucketSettings(p["bucket"], client, retry or s3.Retry(), endpoint_name)
    result = {"changed": False, "bucket": p["bucket"], "created": False, "changes": [], "warnings": [],
              "rules_added": [], "rules_changed": [], "rules_removed": []}
    before, after, writes = {}, {}, []

    def change(aspect, old, new, write):
        """Record an aspect; ``write`` (values bound now) runs later, after every check passed."""
        before[aspect], after[aspect] = old, new
        if old != new:
            result["changes"].append(aspect)
            writes.append(write)

    unsupported = []

    def lacking(aspect, error, explicit, consequence=""):
        """The store does not implement ``aspect``: fail when the options ask for it, else warn and go on."""
        option, how = _UNMANAGED[aspect]
        said = "%s The store at %s does not implement the %s of a bucket" % (
            str(error).rstrip(".") + ".", endpoint_name, aspect.replace("_", " "))
        if explicit:
            raise LifeboatError("%s, which the options ask for: %s to leave it unmanaged on this store." % (said, how),
                                option=option, details=dict(error.details or {}, unsupported_aspect=aspect))
        if aspect not in unsupported:
            unsupported.append(aspect)
            result["warnings"].append("%s: left unmanaged%s (%s to say so and silence this)." % (
                said, consequence, how))

    def read(aspect, fn, explicit, fallback, consequence=""):
        """``fn()``, or ``fallback`` when the store does not implement the aspect and the options do not ask."""
        try:
            return fn()
        except LifeboatError as e:
            if not is_unsupported(e):
                raise
            lacking(aspect, e, explicit, consequence)
            return fallback

    exists = bucket.exists()
    if not exists:
        if not p["create_bucket"]:
            raise LifeboatError("The bucket %s does not exist on %s (AWS error NoSuchBucket): set create_bucket: true "
                                "to create it, or fix bucket." % (p["bucket"], endpoint_name), option="create_bucket",
                                details={"aws_error_code": "NoSuchBucket"})
        result["created"] = True
        change("bucket", "absent", "present", lambda lock=wanted_lock is not None: bucket.create(lock))
    # A bucket about to be created, as CreateBucket leaves it (object lock turns versioning on).
    fresh = {"versioning": "enabled" if wanted_lock is not None else "disabled",
             "object_lock": {"enabled": wanted_lock is not None}, "encryption": None,
             "public_access_block": normalize_public_access(None), "lifecycle": ([], None)}

    def current(reader, aspect, explicit=True, fallback=None, consequence=""):
        if not exists:
            return fresh[aspect]
        return read("lifecycle_rules" if aspect == "lifecycle" else aspect, reader, explicit, fallback, consequence)

    # Versioning first: object lock and noncurrent-version rules depend on it.
    cur_versioning = current(bucket.versioning, "versioning", p["versioning"] is not None or wanted_lock is not None,
                             "disabled", ", taken as never enabled")
    cur_lock = None
    if wanted_lock is not None or p["versioning"] is False:
        cur_lock = current(bucket.object_lock, "object_lock", wanted_lock is not None, {"enabled": False},
                           ", taken as not enabled")
    new_versioning = cur_versioning
    if p["versioning"] is True:
        new_versioning = "enabled"
    elif p["versioning"] is False and cur_versioning != "disabled":
        new_versioning = "suspended"
    if new_versioning != "enabled" and ((cur_lock or {}).get("enabled") or wanted_lock is not None):
        raise LifeboatError(
            "Bucket %s: object lock needs versioning enabled, and versioning of an object-lock bucket cannot be "
            "suspended (AWS refuses both); versioning is %s: set versioning: true." % (p["bucket"], cur_versioning),
            option="versioning")
    if p["versioning"] is not None:
        change("versioning", cur_versioning, new_versioning, lambda on=p["versioning"]: bucket.put_versioning(on))
    result["versioning"] = new_versioning

    if p["encryption"] is not None:
        cur = current(bucket.encryption, "encryption")
        want = wanted_encryption(p["encryption"], p["encryption_key_id"], p["bucket_key_enabled"], cur)
        change("encryption", cur, want, lambda enc=want: bucket.put_encryption(enc))
        result["encryption"] = want

    if p["public_access_block"] != "unmanaged":
        # Never a failure: the option is on by default, and the operator did not necessarily ask for it.
        block = p["public_access_block"] == "block"
        cur = current(bucket.public_access, "public_access_block", False, None)
        if "public_access_block" not in unsupported:
            want = dict((flag, block) for flag in PUBLIC_ACCESS_FLAGS)

            def write_block(on=block):
                try:
                    bucket.put_public_access(on)
                except LifeboatError as e:
                    if not is_unsupported(e):
                        raise
                    lacking("public_access_block", e, False)
                    result["changes"].remove("public_access_block")
                    after["public_access_block"] = before["public_access_block"]
                    result.pop("public_access_block", None)

            change("public_access_block", cur, want, write_block)
            result["public_access_block"] = want

    if wanted_lock is not None:
        change("object_lock", cur_lock, wanted_lock, lambda lock=wanted_lock: bucket.put_object_lock(lock))
        result["object_lock"] = wanted_lock

    if wanted_rules is not None:
        for rule in wanted_rules:
            result["warnings"].extend(validate_rule(rule, versioning_enabled=new_versioning == "enabled"))
        raw, min_size = current(bucket.lifecycle, "lifecycle")
        changed, new_raw, added, modified, removed, cur, want = plan_rules(raw, wanted_rules, p["purge_rules"])
        check_retention(want, p["min_retention_days"], p["retention_prefix"])
        if len(new_raw) > MAX_RULES:
            raise LifeboatError("A bucket holds at most %d lifecycle rules; this would make %d."
                                % (MAX_RULES, len(new_raw)), option="rules")
        result.update(rules_added=added, rules_changed=modified, rules_removed=removed, lifecycle_rules=want)
        change("lifecycle_rules", cur, want, lambda rules=new_raw, size=min_size: bucket.put_lifecycle(rules, size))
    elif p["min_retention_days"] is not None:
        raw, _min = current(bucket.lifecycle, "lifecycle", False, ([], None),
                            ": min_retention_days had no rules to check")
        check_retention([normalize_aws_rule(r) for r in raw], p["min_retention_days"], p["retention_prefix"])

    if not check_mode:
        done = []
        for aspect, write in zip(list(result["changes"]), writes):
            try:
                write()
            except LifeboatError as e:
                if not is_unsupported(e) or aspect not in _UNMANAGED:
                    raise
                lacking(aspect, LifeboatError(
                    "%s%s" % (e, (" (already written: %s)" % ", ".join(done)) if done else ""),
                    details=e.details), True)
            done.append(aspect)
    result["unsupported"] = unsupported
    result["changed"] = bool(result["changes"])
    result["diff"] = {"before": before, "after": after}
    result["msg"] = _summary(result, check_mode)
    return result


def _summary(result, check_mode):
    if not result["changes"]:
        return "Bucket %s already as declared." % result["bucket"]
    parts = []
    for aspect in result["changes"]:
        if aspect == "lifecycle_rules":
            detail = []
            for key, word in (("rules_added", "added"), ("rules_changed", "changed"), ("rules_removed", "removed")):
                if result[key]:
                    detail.append("%s %s" % (word, ", ".join(result[key])))
            parts.append("lifecycle rules (%s)" % "; ".join(detail))
        elif aspect == "bucket":
            parts.append("bucket created")
        else:
            parts.append(aspect.replace("_", " "))
    return "%sBucket %s: %s." % ("Check mode, nothing written. Would change: " if check_mode else "Changed: ",
                                 result["bucket"], ", ".join(parts))
