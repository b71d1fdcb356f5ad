# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lifecycle rules of a bucket, without a call to S3: options <-> canonical <-> AWS, and AWS's constraints.

Rules are compared in a canonical form (the shape of the options, sorted,
server defaults dropped), built from the options (rule_from_options) and from
what S3 returns (normalize_aws_rule); plan_rules compares them by ID.

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

from ..errors import LifeboatError

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

RULE_KEYS = ("id", "enabled", "prefix", "tags", "transitions", "expiration_days", "expired_object_delete_marker",
             "noncurrent_version_transitions", "noncurrent_version_expiration_days",
             "abort_incomplete_multipart_upload_days")


# -- rules: options <-> canonical <-> AWS ------------------------------------------

def whole_number(value, what, minimum=0):
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
                norm.append({"days": whole_number(t["days"], "%s in %s" % (days_what, where)),
                             "storage_class": t["storage_class"]})
            out[key] = _sorted_transitions(norm)
    for key, minimum in (("expiration_days", 1), ("noncurrent_version_expiration_days", 1),
                         ("abort_incomplete_multipart_upload_days", 1)):
        if opt.get(key) is not None:
            out[key] = whole_number(opt[key], "%s of %s" % (key, where), minimum)
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
    for key, days_key, name in (("Expiration", "Days", "expiration_days"),
                                ("NoncurrentVersionExpiration", "NoncurrentDays", "noncurrent_version_expiration_days"),
                                ("AbortIncompleteMultipartUpload", "DaysAfterInitiation",
                                 "abort_incomplete_multipart_upload_days")):
        action = dict(raw.pop(key, None) or {})
        if key == "Expiration" and action.pop("ExpiredObjectDeleteMarker", False):
            out["expired_object_delete_marker"] = True
        days = action.pop(days_key, None)
        if days:
            out[name] = days
        if action:
            other[key] = action
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
