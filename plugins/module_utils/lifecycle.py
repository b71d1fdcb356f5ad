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

What AWS rejects is checked before any call, because S3-compatible test
servers (moto) accept it: transitions to STANDARD_IA or ONEZONE_IA before 30
days, transitions against the storage-class waterfall or too close to the
previous one (30 days after an IA class, 90 after GLACIER_IR or GLACIER), an
expiration not after the last transition, delete-marker or multipart actions
with a tag filter, non-positive day counts. And, when ``min_retention_days``
is given, an expiration shorter than the retention the collection keeps.
"""

import copy
import json

from . import argspec, s3
from .errors import LifeboatError

TRANSITION_CLASSES = ("STANDARD_IA", "INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
# Supported lifecycle transitions (AWS "waterfall"): from a class to these.
ALLOWED_NEXT = {
    "STANDARD": set(TRANSITION_CLASSES),
    "STANDARD_IA": {"INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"},
    "INTELLIGENT_TIERING": {"ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"},
    "ONEZONE_IA": {"GLACIER", "DEEP_ARCHIVE"},
    "GLACIER_IR": {"GLACIER", "DEEP_ARCHIVE"},
    "GLACIER": {"DEEP_ARCHIVE"},
    "DEEP_ARCHIVE": set(),
}
# Days an object must stay in a class before the next transition (AWS rejects less).
MIN_STAY = {"STANDARD_IA": 30, "ONEZONE_IA": 30, "GLACIER_IR": 90, "GLACIER": 90, "INTELLIGENT_TIERING": 0}
# Days from creation before a transition into these classes is accepted.
MIN_FIRST_DAYS = {"STANDARD_IA": 30, "ONEZONE_IA": 30}
# Minimum storage durations that are billed in full when an object leaves earlier (warnings only).
MIN_BILLED = {"STANDARD_IA": 30, "ONEZONE_IA": 30, "GLACIER_IR": 90, "GLACIER": 90, "DEEP_ARCHIVE": 180}
MAX_RULES = 1000
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
PUBLIC_ACCESS_CHOICES = ("block", "remove", "unmanaged")

RULE_KEYS = ("id", "enabled", "prefix", "tags", "transitions", "expiration_days", "expired_object_delete_marker",
             "noncurrent_version_transitions", "noncurrent_version_expiration_days",
             "abort_incomplete_multipart_upload_days")


# -- rules: options <-> canonical <-> AWS ------------------------------------------

def _int(value, what, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise LifeboatError("Invalid %s %r: a whole number of days." % (what, value), option="rules")
    if value < minimum:
        raise LifeboatError("Invalid %s %d: at least %d." % (what, value, minimum), option="rules")
    return value


def _sorted_transitions(items):
    order = dict((c, i) for i, c in enumerate(TRANSITION_CLASSES))
    return sorted(items, key=lambda t: (t["days"], order.get(t["storage_class"], 99), t["storage_class"]))


def rule_from_options(opt):
    """The canonical form of a rule given as module options (unset keys dropped)."""
    if not isinstance(opt, dict):
        raise LifeboatError("Each entry of rules must be a dictionary with at least an id.", option="rules")
    unknown = sorted(set(k for k, v in opt.items() if v is not None) - set(RULE_KEYS))
    if unknown:
        raise LifeboatError("Unknown key(s) in rule %r: %s." % (opt.get("id"), ", ".join(unknown)), option="rules")
    rid = opt.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > 255:
        raise LifeboatError("Every rule needs an id of 1 to 255 characters (got %r)." % (rid,), option="rules")
    where = "rule %r" % rid
    out = {"id": rid, "enabled": True if opt.get("enabled") is None else bool(opt["enabled"])}
    if opt.get("prefix"):
        if len(opt["prefix"]) > 1024:
            raise LifeboatError("The prefix of %s is longer than 1024 characters." % where, option="rules")
        out["prefix"] = opt["prefix"]
    tags = opt.get("tags") or {}
    if not isinstance(tags, dict):
        raise LifeboatError("tags of %s must be a dictionary of key: value." % where, option="rules")
    if tags:
        for k, v in tags.items():
            if not isinstance(k, str) or not k or len(k) > 128 or len("" if v is None else str(v)) > 256:
                raise LifeboatError("Invalid tag %r in %s: keys of 1 to 128 characters, values up to 256." % (k, where),
                                    option="rules")
        out["tags"] = dict((k, "" if v is None else str(v)) for k, v in tags.items())
    kinds = (("transitions", "transition days"), ("noncurrent_version_transitions", "noncurrent version transition days"))
    for key, days_what in kinds:
        items = opt.get(key) or []
        if items:
            norm = []
            for t in items:
                if not isinstance(t, dict) or t.get("storage_class") not in TRANSITION_CLASSES:
                    raise LifeboatError(
                        "Invalid entry %r in %s of %s: give days and storage_class (one of %s)."
                        % (t, key, where, ", ".join(TRANSITION_CLASSES)), option="rules")
                if t.get("days") is None:
                    raise LifeboatError("An entry of %s of %s has no days." % (key, where), option="rules")
                extra = sorted(set(t) - {"days", "storage_class"})
                if extra:
                    raise LifeboatError("Unknown key(s) %s in %s of %s." % (", ".join(extra), key, where), option="rules")
                norm.append({"days": _int(t["days"], "%s in %s" % (days_what, where)),
                             "storage_class": t["storage_class"]})
            out[key] = _sorted_transitions(norm)
    for key, minimum in (("expiration_days", 1), ("noncurrent_version_expiration_days", 1),
                         ("abort_incomplete_multipart_upload_days", 1)):
        if opt.get(key) is not None:
            out[key] = _int(opt[key], "%s of %s" % (key, where), minimum)
    if opt.get("expired_object_delete_marker"):
        out["expired_object_delete_marker"] = True
    return out


def normalize_aws_rule(raw):
    """The canonical form of a rule as S3 returns it. Unknown parts go to ``other``."""
    raw = copy.deepcopy(raw)
    other = {}
    out = {"id": raw.pop("ID", None) or "", "enabled": raw.pop("Status", "Enabled") == "Enabled"}
    prefix = raw.pop("Prefix", None) or ""  # the deprecated rule-level prefix
    tags = {}
    flt = raw.pop("Filter", None) or {}
    conds = dict(flt)
    if "And" in conds:
        conds.update(conds.pop("And") or {})
    prefix = conds.pop("Prefix", None) or prefix
    if conds.get("Tag"):
        tag = conds.pop("Tag")
        tags[tag["Key"]] = tag.get("Value", "")
    for tag in conds.pop("Tags", None) or []:
        tags[tag["Key"]] = tag.get("Value", "")
    conds.pop("Tag", None)
    if conds:
        other["Filter"] = conds
    if prefix:
        out["prefix"] = prefix
    if tags:
        out["tags"] = tags
    for key, legacy, days_key, name in (
            ("Transitions", "Transition", "Days", "transitions"),
            ("NoncurrentVersionTransitions", "NoncurrentVersionTransition", "NoncurrentDays",
             "noncurrent_version_transitions")):
        items = list(raw.pop(key, None) or [])
        if raw.get(legacy):
            items.append(raw.pop(legacy))
        raw.pop(legacy, None)
        norm = []
        for t in items:
            t = dict(t)
            if days_key in t and t.get("StorageClass") and set(t) <= {days_key, "StorageClass"}:
                norm.append({"days": t[days_key], "storage_class": t["StorageClass"]})
            else:
                other.setdefault(key, []).append(t)
        if norm:
            out[name] = _sorted_transitions(norm)
    exp = dict(raw.pop("Expiration", None) or {})
    if exp.pop("ExpiredObjectDeleteMarker", False):
        out["expired_object_delete_marker"] = True
    if exp.get("Days"):
        out["expiration_days"] = exp.pop("Days")
    exp.pop("Days", None)
    if exp:
        other["Expiration"] = exp
    nve = dict(raw.pop("NoncurrentVersionExpiration", None) or {})
    if nve.get("NoncurrentDays"):
        out["noncurrent_version_expiration_days"] = nve.pop("NoncurrentDays")
    nve.pop("NoncurrentDays", None)
    if nve:
        other["NoncurrentVersionExpiration"] = nve
    abort = dict(raw.pop("AbortIncompleteMultipartUpload", None) or {})
    if abort.get("DaysAfterInitiation"):
        out["abort_incomplete_multipart_upload_days"] = abort.pop("DaysAfterInitiation")
    abort.pop("DaysAfterInitiation", None)
    if abort:
        other["AbortIncompleteMultipartUpload"] = abort
    other.update(raw)
    if other:
        out["other"] = json.loads(json.dumps(other, sort_keys=True, default=str))
    return out


def to_aws_rule(rule):
    """The PutBucketLifecycleConfiguration form of a canonical rule (from options)."""
    out = {"ID": rule["id"], "Status": "Enabled" if rule.get("enabled", True) else "Disabled"}
    prefix = rule.get("prefix")
    tags = [{"Key": k, "Value": v} for k, v in sorted((rule.get("tags") or {}).items())]
    if tags and (prefix or len(tags) > 1):
        conds = {"Tags": tags}
        if prefix:
            conds["Prefix"] = prefix
        out["Filter"] = {"And": conds}
    elif tags:
        out["Filter"] = {"Tag": tags[0]}
    elif prefix:
        out["Filter"] = {"Prefix": prefix}
    else:
        out["Filter"] = {}
    if rule.get("transitions"):
        out["Transitions"] = [{"Days": t["days"], "StorageClass": t["storage_class"]} for t in rule["transitions"]]
    if rule.get("expiration_days") is not None:
        out["Expiration"] = {"Days": rule["expiration_days"]}
    elif rule.get("expired_object_delete_marker"):
        out["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    if rule.get("noncurrent_version_transitions"):
        out["NoncurrentVersionTransitions"] = [{"NoncurrentDays": t["days"], "StorageClass": t["storage_class"]}
                                               for t in rule["noncurrent_version_transitions"]]
    if rule.get("noncurrent_version_expiration_days") is not None:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule["noncurrent_version_expiration_days"]}
    if rule.get("abort_incomplete_multipart_upload_days") is not None:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": rule["abort_incomplete_multipart_upload_days"]}
    return out


# -- AWS constraints moto does not enforce ------------------------------------------

def _check_ladder(items, what, where):
    """Transitions in day order must follow the waterfall, with the minimum stay in each class."""
    previous, previous_days, seen = "STANDARD", None, set()
    for t in items:
        cls, days = t["storage_class"], t["days"]
        if cls in seen:
            raise LifeboatError("%s has two %s to %s; keep one." % (where, what, cls), option="rules")
        seen.add(cls)
        minimum = MIN_FIRST_DAYS.get(cls, 0)
        if days < minimum:
            raise LifeboatError(
                "%s: a %s to %s after %d days is refused by AWS: objects must be at least %d days old "
                "before they move to %s (AWS rejects it even where S3-compatible servers accept it)."
                % (where, what, cls, days, minimum, cls), option="rules")
        if previous_days is not None:
            if cls not in ALLOWED_NEXT[previous]:
                raise LifeboatError(
                    "%s: a %s from %s (day %d) to %s (day %d) goes against S3's storage-class order; AWS only "
                    "moves objects from %s to %s." % (where, what, previous, previous_days, cls, days, previous,
                                                      ", ".join(sorted(ALLOWED_NEXT[previous])) or "nothing"),
                    option="rules")
            gap = MIN_STAY.get(previous, 0)
            if days <= previous_days or days - previous_days < gap:
                raise LifeboatError(
                    "%s: the %s to %s at day %d comes %d days after the one to %s at day %d; AWS requires it "
                    "to be %s." % (where, what, cls, days, days - previous_days, previous, previous_days,
                                   ("at least %d days later" % gap) if gap else "later"), option="rules")
        previous, previous_days = cls, days
    return previous, previous_days


def validate_rule(rule, versioning_enabled=None):
    """Raise on what AWS would reject; return warnings (secret-free strings)."""
    where = "Rule %r" % rule["id"]
    warnings = []
    actions = [k for k in ("transitions", "expiration_days", "expired_object_delete_marker",
                           "noncurrent_version_transitions", "noncurrent_version_expiration_days",
                           "abort_incomplete_multipart_upload_days") if rule.get(k)]
    if not actions:
        raise LifeboatError("%s has no action: give transitions, expiration_days, expired_object_delete_marker, "
                            "noncurrent_version_transitions, noncurrent_version_expiration_days or "
                            "abort_incomplete_multipart_upload_days." % where, option="rules")
    if rule.get("expiration_days") is not None and rule.get("expired_object_delete_marker"):
        raise LifeboatError("%s: expired_object_delete_marker cannot be combined with expiration_days in one rule "
                            "(AWS refuses it); put them in two rules." % where, option="rules")
    if rule.get("tags"):
        for key in ("expired_object_delete_marker", "abort_incomplete_multipart_upload_days"):
            if rule.get(key):
                raise LifeboatError("%s: %s cannot be used with a tag filter (AWS refuses it: delete markers and "
                                    "uploads have no tags); use a prefix-only rule." % (where, key), option="rules")
    last_cls, last_days = _check_ladder(rule.get("transitions") or [], "transition", where)
    exp = rule.get("expiration_days")
    if exp is not None and last_days is not None:
        if exp <= last_days:
            raise LifeboatError("%s: expiration_days (%d) must be greater than the days of the last transition (%d, "
                                "to %s), as AWS requires." % (where, exp, last_days, last_cls), option="rules")
        billed = MIN_BILLED.get(last_cls, 0)
        if exp - last_days < billed:
            warnings.append("%s: objects expire %d days after moving to %s, which bills at least %d days."
                            % (where, exp - last_days, last_cls, billed))
    nc_items = rule.get("noncurrent_version_transitions") or []
    for t in nc_items:
        if t["days"] < 1:
            raise LifeboatError("%s: noncurrent version transition days must be at least 1 (got %d)."
                                % (where, t["days"]), option="rules")
    nc_cls, nc_days = _check_ladder(nc_items, "noncurrent version transition", where)
    nc_exp = rule.get("noncurrent_version_expiration_days")
    if nc_exp is not None and nc_days is not None and nc_exp <= nc_days:
        raise LifeboatError("%s: noncurrent_version_expiration_days (%d) must be greater than the days of the last "
                            "noncurrent version transition (%d, to %s), as AWS requires." % (where, nc_exp, nc_days,
                                                                                             nc_cls), option="rules")
    if versioning_enabled is False and (nc_items or nc_exp or rule.get("expired_object_delete_marker")):
        warnings.append("%s acts on noncurrent versions or delete markers, which exist only in a versioned bucket; "
                        "set versioning: true." % where)
    return warnings


def _overlaps(a, b):
    return a.startswith(b) or b.startswith(a)


def check_retention(rules, min_days, retention_prefix=""):
    """Refuse a rule that deletes current objects under ``retention_prefix`` sooner than ``min_days``."""
    if min_days is None:
        return
    retention_prefix = retention_prefix or ""
    for rule in rules:
        if not rule.get("enabled", True) or not _overlaps(rule.get("prefix", ""), retention_prefix):
            continue
        where = "rule %r (prefix %r)" % (rule["id"], rule.get("prefix", ""))
        exp = rule.get("expiration_days")
        if exp is not None and exp < min_days:
            raise LifeboatError(
                "Refusing lifecycle %s: it expires objects after %d days, shorter than the %d days of retention that "
                "min_retention_days keeps for %s. Raise expiration_days to at least %d, or narrow the rule's prefix."
                % (where, exp, min_days, ("prefix %r" % retention_prefix) if retention_prefix else "the bucket",
                   min_days),
                option="min_retention_days", details={"rule": rule["id"], "expiration_days": exp,
                                                      "min_retention_days": min_days})
        date = (rule.get("other") or {}).get("Expiration", {}).get("Date")
        if date:
            raise LifeboatError(
                "Refusing lifecycle %s: it expires every object on %s whatever its age, which cannot keep the %d days "
                "of retention of min_retention_days. Remove that rule (purge_rules) or replace it with expiration_days."
                % (where, date, min_days), option="min_retention_days")


# -- per-aspect state ------------------------------------------------------------------

def plan_rules(current_raw, wanted, purge):
    """Compare by ID. Returns (changed, result_raw_rules, added, changed_ids, removed, before, after)."""
    current = dict((r.get("ID"), r) for r in current_raw)
    before = sorted((normalize_aws_rule(r) for r in current_raw), key=lambda r: r["id"])
    wanted_ids = set(r["id"] for r in wanted)
    added, modified, removed = [], [], []
    result = []
    for rid, raw in current.items():
        if rid not in wanted_ids:
            if purge:
                removed.append(rid)
            else:
                result.append(raw)  # as the server has it: nothing of it is ours to drop
    for rule in wanted:
        if rule["id"] not in current:
            added.append(rule["id"])
        elif normalize_aws_rule(current[rule["id"]]) != rule:
            modified.append(rule["id"])
        result.append(to_aws_rule(rule))
    result.sort(key=lambda r: r.get("ID") or "")
    after = sorted([normalize_aws_rule(r) for r in result], key=lambda r: r["id"])
    changed = bool(added or modified or removed)
    return changed, result, sorted(added), sorted(modified), sorted(removed), before, after


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
        out["days"] = _int(days, "object_lock days", 1)
    else:
        out["years"] = _int(years, "object_lock years", 1)
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

_MISSING = {
    "lifecycle": ("NoSuchLifecycleConfiguration",),
    "encryption": ("ServerSideEncryptionConfigurationNotFoundError",),
    "public_access_block": ("NoSuchPublicAccessBlockConfiguration",),
    "object_lock": ("ObjectLockConfigurationNotFoundError",),
}


class BucketSettings(object):
    """Read and write one bucket's settings through the shared retry policy."""

    def __init__(self, bucket, client, retry, endpoint_name):
        self.bucket = bucket
        self.client = client
        self.retry = retry
        self.endpoint_name = endpoint_name

    def _call(self, what, fn, missing=()):
        def call():
            try:
                return fn()
            except s3.ClientError as e:
                if s3.error_code(e) in missing:
                    return None
                raise
        return self.retry.call(call, "%s of bucket %s" % (what, self.bucket), self.endpoint_name)

    def exists(self):
        def head():
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return True
            except s3.ClientError as e:
                if s3.http_status(e) == 404:
                    return False
                raise
        return self.retry.call(head, "Checking bucket %s" % self.bucket, self.endpoint_name)

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
                          _MISSING["lifecycle"])
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
                          lambda: self.client.put_bucket_lifecycle_configuration(**args))

    def versioning(self):
        return normalize_versioning(self._call("Reading the versioning",
                                               lambda: self.client.get_bucket_versioning(Bucket=self.bucket)))

    def put_versioning(self, enabled):
        status = "Enabled" if enabled else "Suspended"
        return self._call("Writing the versioning", lambda: self.client.put_bucket_versioning(
            Bucket=self.bucket, VersioningConfiguration={"Status": status}))

    def encryption(self):
        resp = self._call("Reading the default encryption",
                          lambda: self.client.get_bucket_encryption(Bucket=self.bucket), _MISSING["encryption"])
        return normalize_encryption((resp or {}).get("ServerSideEncryptionConfiguration"))

    def put_encryption(self, enc):
        return self._call("Writing the default encryption", lambda: self.client.put_bucket_encryption(
            Bucket=self.bucket, ServerSideEncryptionConfiguration=encryption_to_aws(enc)))

    def public_access(self):
        resp = self._call("Reading the public access block",
                          lambda: self.client.get_public_access_block(Bucket=self.bucket),
                          _MISSING["public_access_block"])
        return normalize_public_access((resp or {}).get("PublicAccessBlockConfiguration"))

    def put_public_access(self, block):
        if block:
            conf = dict((flag, True) for flag in PUBLIC_ACCESS_FLAGS)
            return self._call("Writing the public access block", lambda: self.client.put_public_access_block(
                Bucket=self.bucket, PublicAccessBlockConfiguration=conf))
        return self._call("Deleting the public access block",
                          lambda: self.client.delete_public_access_block(Bucket=self.bucket))

    def object_lock(self):
        resp = self._call("Reading the object lock configuration",
                          lambda: self.client.get_object_lock_configuration(Bucket=self.bucket),
                          _MISSING["object_lock"])
        return normalize_object_lock((resp or {}).get("ObjectLockConfiguration"))

    def put_object_lock(self, lock):
        return self._call("Writing the object lock configuration", lambda: self.client.put_object_lock_configuration(
            Bucket=self.bucket, ObjectLockConfiguration=object_lock_to_aws(lock)))


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
        p["min_retention_days"] = _int(p["min_retention_days"], "min_retention_days", 1)
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

    def current(read, aspect):
        return read() if exists else fresh[aspect]

    # Versioning first: object lock and noncurrent-version rules depend on it.
    cur_versioning = current(bucket.versioning, "versioning")
    cur_lock = None
    if wanted_lock is not None or p["versioning"] is False:
        cur_lock = current(bucket.object_lock, "object_lock")
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
        block = p["public_access_block"] == "block"
        cur = current(bucket.public_access, "public_access_block")
        want = dict((flag, block) for flag in PUBLIC_ACCESS_FLAGS)
        change("public_access_block", cur, want, lambda on=block: bucket.put_public_access(on))
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
        raw, _min = current(bucket.lifecycle, "lifecycle")
        check_retention([normalize_aws_rule(r) for r in raw], p["min_retention_days"], p["retention_prefix"])

    if not check_mode:
        for write in writes:
            write()
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
