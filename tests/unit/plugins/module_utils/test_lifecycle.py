"""Pure logic of s3_lifecycle: normalization, AWS constraints, the retention guard, rule plans."""

import pytest

from lifeboat_engine import lifecycle
from lifeboat_engine.errors import LifeboatError


def opts(**kw):
    kw.setdefault("id", "r")
    return lifecycle.rule_from_options(kw)


def t(days, cls):
    return {"days": days, "storage_class": cls}


# -- what AWS would reject ---------------------------------------------------------------

REFUSED = [
    (dict(transitions=[t(29, "STANDARD_IA")]), "STANDARD_IA after 29 days"),
    (dict(transitions=[t(10, "ONEZONE_IA")]), "at least 30 days old"),
    (dict(noncurrent_version_transitions=[t(20, "STANDARD_IA")]), "at least 30 days old"),
    (dict(noncurrent_version_transitions=[t(0, "GLACIER")]), "at least 1"),
    (dict(transitions=[t(30, "STANDARD_IA"), t(45, "GLACIER")]), "at least 30 days later"),
    (dict(transitions=[t(100, "GLACIER"), t(150, "DEEP_ARCHIVE")]), "at least 90 days later"),
    (dict(transitions=[t(0, "GLACIER_IR"), t(60, "DEEP_ARCHIVE")]), "at least 90 days later"),
    (dict(transitions=[t(30, "GLACIER"), t(200, "STANDARD_IA")]), "storage-class order"),
    (dict(transitions=[t(30, "ONEZONE_IA"), t(120, "GLACIER_IR")]), "storage-class order"),
    (dict(transitions=[t(0, "DEEP_ARCHIVE"), t(400, "GLACIER")]), "storage-class order"),
    (dict(transitions=[t(0, "GLACIER"), t(100, "GLACIER")]), "two transition"),
    (dict(transitions=[t(100, "GLACIER")], expiration_days=100), "must be greater than the days of the last transition"),
    (dict(noncurrent_version_transitions=[t(40, "GLACIER")], noncurrent_version_expiration_days=40),
     "must be greater than the days of the last noncurrent"),
    (dict(expiration_days=30, expired_object_delete_marker=True), "cannot be combined"),
    (dict(tags={"a": "b"}, expired_object_delete_marker=True), "tag filter"),
    (dict(tags={"a": "b"}, abort_incomplete_multipart_upload_days=3), "tag filter"),
    (dict(prefix="x/"), "has no action"),
]


@pytest.mark.parametrize("rule,words", REFUSED)
def test_rules_aws_rejects_are_refused(rule, words):
    with pytest.raises(LifeboatError) as e:
        lifecycle.validate_rule(opts(**rule), versioning_enabled=True)
    assert words in str(e.value) and e.value.option == "rules", str(e.value)


ACCEPTED = [
    dict(transitions=[t(0, "GLACIER")]),
    dict(transitions=[t(0, "INTELLIGENT_TIERING"), t(1, "GLACIER")]),
    dict(transitions=[t(30, "STANDARD_IA"), t(60, "GLACIER_IR"), t(150, "GLACIER"), t(240, "DEEP_ARCHIVE")],
         expiration_days=500),
    dict(transitions=[t(365, "GLACIER")], expiration_days=730, noncurrent_version_expiration_days=30),
    dict(noncurrent_version_transitions=[t(30, "STANDARD_IA"), t(60, "GLACIER")], noncurrent_version_expiration_days=61),
    dict(expired_object_delete_marker=True),
    dict(prefix="a/", tags={"k": "v"}, expiration_days=1),
    dict(abort_incomplete_multipart_upload_days=1),
]


@pytest.mark.parametrize("rule", ACCEPTED)
def test_rules_aws_accepts_pass(rule):
    assert lifecycle.validate_rule(opts(**rule), versioning_enabled=True) == []


def test_warnings_for_early_deletion_and_missing_versioning():
    warnings = lifecycle.validate_rule(opts(transitions=[t(365, "GLACIER")], expiration_days=400), True)
    assert warnings and "bills at least 90 days" in warnings[0]
    warnings = lifecycle.validate_rule(opts(noncurrent_version_expiration_days=30), versioning_enabled=False)
    assert warnings and "versioning: true" in warnings[0]


@pytest.mark.parametrize("rule,words", [
    ({"prefix": "x"}, "needs an id"),
    ({"id": "x" * 256}, "needs an id"),
    ({"id": "r", "colour": "red"}, "Unknown key"),
    ({"id": "r", "transitions": [{"days": 3, "storage_class": "STANDARD"}]}, "storage_class"),
    ({"id": "r", "transitions": [{"storage_class": "GLACIER"}]}, "has no days"),
    ({"id": "r", "expiration_days": 0}, "at least 1"),
    ({"id": "r", "tags": ["a"]}, "dictionary"),
])
def test_malformed_rule_options(rule, words):
    with pytest.raises(LifeboatError) as e:
        lifecycle.rule_from_options(rule)
    assert words in str(e.value)


# -- normalization: what the server returns equals the options ----------------------------

SAME = [
    # (as S3 returns it, as the options say it)
    ({"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 5}}, dict(expiration_days=5)),
    ({"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 5}}, dict(expiration_days=5)),
    ({"ID": "r", "Status": "Enabled", "Prefix": "", "Expiration": {"Days": 5}}, dict(expiration_days=5)),
    ({"ID": "r", "Status": "Enabled", "Prefix": "a/", "Expiration": {"Days": 5}}, dict(prefix="a/", expiration_days=5)),
    ({"ID": "r", "Status": "Disabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Expiration": {"Days": 5}},
     dict(enabled=False, tags={"k": "v"}, expiration_days=5)),
    ({"ID": "r", "Status": "Enabled",
      "Filter": {"And": {"Prefix": "p/", "Tags": [{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "1"}]}},
      "Transitions": [{"Days": 400, "StorageClass": "DEEP_ARCHIVE"}, {"Days": 30, "StorageClass": "STANDARD_IA"}]},
     dict(prefix="p/", tags={"a": "1", "b": "2"}, transitions=[t(30, "STANDARD_IA"), t(400, "DEEP_ARCHIVE")])),
    ({"ID": "r", "Status": "Enabled", "Filter": {}, "Transition": {"Days": 90, "StorageClass": "GLACIER"}},
     dict(transitions=[t(90, "GLACIER")])),
    ({"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"ExpiredObjectDeleteMarker": True}},
     dict(expired_object_delete_marker=True)),
    ({"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 9, "ExpiredObjectDeleteMarker": False}},
     dict(expiration_days=9)),
    ({"ID": "r", "Status": "Enabled", "Filter": {},
      "NoncurrentVersionTransitions": [{"NoncurrentDays": 90, "StorageClass": "GLACIER"}],
      "NoncurrentVersionExpiration": {"NoncurrentDays": 120},
      "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
     dict(noncurrent_version_transitions=[t(90, "GLACIER")], noncurrent_version_expiration_days=120,
          abort_incomplete_multipart_upload_days=2)),
]


@pytest.mark.parametrize("raw,options", SAME)
def test_server_shapes_normalize_to_the_options(raw, options):
    assert lifecycle.normalize_aws_rule(raw) == opts(**options)


@pytest.mark.parametrize("raw,options", SAME)
def test_written_rules_read_back_equal(raw, options):
    rule = opts(**options)
    assert lifecycle.normalize_aws_rule(lifecycle.to_aws_rule(rule)) == rule


@pytest.mark.parametrize("raw", [
    {"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Date": "2030-01-01T00:00:00Z"}},
    {"ID": "r", "Status": "Enabled", "Filter": {"ObjectSizeGreaterThan": 1000}, "Expiration": {"Days": 5}},
    {"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 5},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}},
])
def test_what_options_cannot_express_is_kept_apart_so_it_compares_different(raw):
    norm = lifecycle.normalize_aws_rule(raw)
    assert "other" in norm
    assert norm != opts(expiration_days=5)


# -- plans -----------------------------------------------------------------------------------

CURRENT = [lifecycle.to_aws_rule(opts(id="a", expiration_days=400)),
           lifecycle.to_aws_rule(opts(id="b", abort_incomplete_multipart_upload_days=7))]


def test_plan_keeps_unnamed_rules_unless_purged():
    changed, raw, added, modified, removed, _before, after = lifecycle.plan_rules(
        CURRENT, [opts(id="c", expiration_days=9)], purge=False)
    assert changed and added == ["c"] and removed == [] and [r["ID"] for r in raw] == ["a", "b", "c"]
    changed, raw, added, modified, removed, _before, after = lifecycle.plan_rules(
        CURRENT, [opts(id="b", abort_incomplete_multipart_upload_days=7)], purge=True)
    assert changed and removed == ["a"] and added == modified == [] and [r["ID"] for r in raw] == ["b"]


def test_plan_sees_no_change_in_another_order_and_a_change_in_a_value():
    same = [opts(id="b", abort_incomplete_multipart_upload_days=7), opts(id="a", expiration_days=400)]
    assert lifecycle.plan_rules(list(reversed(CURRENT)), same, purge=True)[0] is False
    changed, _raw, added, modified, removed, before, after = lifecycle.plan_rules(
        CURRENT, [opts(id="a", expiration_days=500)], purge=False)
    assert changed and modified == ["a"] and before != after


# -- the retention guard ----------------------------------------------------------------------

@pytest.mark.parametrize("rules,minimum,prefix,refused", [
    ([opts(expiration_days=30)], 35, "", True),
    ([opts(expiration_days=35)], 35, "", False),
    ([opts(prefix="lifeboat/acme/", expiration_days=10)], 35, "lifeboat/", True),
    ([opts(prefix="lifeboat", expiration_days=10)], 35, "lifeboat/acme/", True),
    ([opts(prefix="logs/", expiration_days=10)], 35, "lifeboat/", False),
    ([opts(enabled=False, expiration_days=1)], 35, "", False),
    ([opts(transitions=[t(1, "GLACIER")], noncurrent_version_expiration_days=1)], 35, "", False),
    ([opts(expiration_days=1)], None, "", False),
    ([lifecycle.normalize_aws_rule({"ID": "d", "Status": "Enabled", "Filter": {},
                                    "Expiration": {"Date": "2030-01-01T00:00:00Z"}})], 35, "", True),
])
def test_retention_guard(rules, minimum, prefix, refused):
    if refused:
        with pytest.raises(LifeboatError) as e:
            lifecycle.check_retention(rules, minimum, prefix)
        assert e.value.option == "min_retention_days" and "%d days" % minimum in str(e.value)
    else:
        lifecycle.check_retention(rules, minimum, prefix)


def test_retention_message_names_both_numbers():
    with pytest.raises(LifeboatError) as e:
        lifecycle.check_retention([opts(id="short", expiration_days=14)], 35)
    assert "after 14 days" in str(e.value) and "35 days of retention" in str(e.value)
    assert e.value.details == {"rule": "short", "expiration_days": 14, "min_retention_days": 35}


# -- other aspects -----------------------------------------------------------------------------

def test_encryption_normalization_and_unset_key_left_alone():
    aws = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}]}
    assert lifecycle.normalize_encryption(aws) == {"algorithm": "AES256"}
    assert lifecycle.normalize_encryption(None) is None
    current = {"algorithm": "aws:kms", "kms_key_id": "k1", "bucket_key_enabled": True}
    assert lifecycle.wanted_encryption("aws:kms", None, None, current) == current
    assert lifecycle.wanted_encryption("aws:kms", "k2", False, current) == {"algorithm": "aws:kms", "kms_key_id": "k2"}
    assert lifecycle.wanted_encryption("aws:kms", None, None, {"algorithm": "AES256"}) == {"algorithm": "aws:kms"}
    with pytest.raises(LifeboatError):
        lifecycle.wanted_encryption("AES256", "k1", None, None)


def test_object_lock_normalization_drops_server_defaults():
    aws = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30, "Years": 0}}}
    assert lifecycle.normalize_object_lock(aws) == {"enabled": True, "mode": "GOVERNANCE", "days": 30}
    assert lifecycle.normalize_object_lock(None) == {"enabled": False}
    assert lifecycle.wanted_object_lock({"mode": "GOVERNANCE", "days": 30}) == lifecycle.normalize_object_lock(aws)
    assert lifecycle.wanted_object_lock({}) == {"enabled": True}
    for bad in ({"mode": "GOVERNANCE"}, {"mode": "GOVERNANCE", "days": 1, "years": 1}, {"days": 3}, {"mode": "X", "days": 1}):
        with pytest.raises(LifeboatError):
            lifecycle.wanted_object_lock(bad)


def test_public_access_none_means_all_off():
    assert lifecycle.normalize_public_access(None) == dict((f, False) for f in lifecycle.PUBLIC_ACCESS_FLAGS)
