"""s3_lifecycle against moto on 127.0.0.1.

The rules cycle runs through the real ansible-playbook, as one playbook
(check_mode and diff set per task) so that the order of results is the order
of the cycle; the other cycles call the engine the module wraps (one
ansible-playbook run costs seconds on a busy 2-core machine).

moto stores lifecycle rules but never applies them: that a transition to
GLACIER really happens after 365 days cannot be observed here (nothing is
mocked for it either); what is tested is what the bucket is told, read back
through boto3 and the AWS CLI.
"""

import json

import pytest

import lbtest
from lifeboat_engine import lifecycle
from lifeboat_engine.errors import LifeboatError

MODULE = "lifeboat.backup.s3_lifecycle"

RULES = [
    {"id": "archive", "prefix": "lifeboat/", "expiration_days": 730, "noncurrent_version_expiration_days": 30,
     "transitions": [{"days": 30, "storage_class": "STANDARD_IA"}, {"days": 365, "storage_class": "GLACIER"}]},
    {"id": "markers", "expired_object_delete_marker": True},
    {"id": "uploads", "abort_incomplete_multipart_upload_days": 7},
]


def task(name, args, **extra):
    t = {"name": name, MODULE: args, "ignore_errors": True}
    t.update(extra)
    return t


def play(s3, tasks):
    run = lbtest.run_playbook(tasks)
    assert len(run.results) == len(tasks), run
    return run.results


def lifecycle_on_server(s3, bucket):
    """The rules as the AWS CLI reads them back."""
    return s3.aws_json("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket)["Rules"]


def test_lifecycle_rules_cycle_create_again_reorder_modify_purge(s3):
    bucket = s3.bucket + "-lc"
    base = dict(s3.options(), bucket=bucket, create_bucket=True, versioning=True, rules=RULES)
    first = play(s3, [task("create (check)", base, check_mode=True, diff=True)])[0]
    assert first["changed"] is True and first["created"] is True and not first.get("failed"), first
    assert first["diff"]["before"]["bucket"] == "absent" and len(first["diff"]["after"]["lifecycle_rules"]) == 3
    assert bucket not in [b["Name"] for b in s3.client.list_buckets()["Buckets"]], "check mode created the bucket"

    reordered = [dict(RULES[0], transitions=list(reversed(RULES[0]["transitions"])))] + RULES[1:]
    reordered = list(reversed(reordered))
    modified = [dict(RULES[0], expiration_days=900)] + RULES[1:]
    results = play(s3, [
        task("create", base),
        task("create again", base),
        task("reordered", dict(base, rules=reordered)),
        task("modify (check)", dict(base, rules=modified), check_mode=True, diff=True),
        task("modify", dict(base, rules=modified)),
        task("purge", dict(base, rules=[modified[0]], purge_rules=True)),
        task("purge again", dict(base, rules=[modified[0]], purge_rules=True)),
        task("refused: IA after 7 days", dict(base, rules=[
            {"id": "x", "transitions": [{"days": 7, "storage_class": "STANDARD_IA"}]}])),
    ])
    *results, refused = results
    for r in results:
        assert not r.get("failed"), r
    create, again, reorder, check, modify, purge, purge_again = results
    assert create["changed"] and create["created"] and create["rules_added"] == ["archive", "markers", "uploads"]
    assert again["changed"] is False and again["changes"] == [], again
    assert reorder["changed"] is False, reorder
    assert check["changed"] and check["rules_changed"] == ["archive"], check
    before = [r for r in check["diff"]["before"]["lifecycle_rules"] if r["id"] == "archive"][0]
    after = [r for r in check["diff"]["after"]["lifecycle_rules"] if r["id"] == "archive"][0]
    assert (before["expiration_days"], after["expiration_days"]) == (730, 900)
    assert modify["changed"] and modify["rules_changed"] == ["archive"], "check mode wrote the change"
    assert purge["rules_removed"] == ["markers", "uploads"] and purge["changed"]
    assert purge_again["changed"] is False

    assert refused.get("failed") and refused["option"] == "rules" and refused.get("changed") is not True, refused
    assert "STANDARD_IA after 7 days" in refused["msg"] and "at least 30 days" in refused["msg"]

    server = lifecycle_on_server(s3, bucket)
    assert [r["ID"] for r in server] == ["archive"]
    assert server[0]["Expiration"] == {"Days": 900}
    assert [t["StorageClass"] for t in server[0]["Transitions"]] == ["STANDARD_IA", "GLACIER"]


def engine_cycle(steps):
    """Run (params, check_mode) steps through the engine; LifeboatErrors are returned, not raised."""
    out = []
    for params, check in steps:
        try:
            out.append(lifecycle.run(params, check_mode=check))
        except LifeboatError as e:
            out.append(e)
    return out


def test_versioning_encryption_and_public_access_block_cycle(s3):
    kms = "arn:aws:kms:us-east-1:123456789012:key/abcd"
    base = dict(s3.options(), bucket=s3.bucket, versioning=True, encryption="AES256")
    second = dict(s3.options(), bucket=s3.bucket, versioning=False, encryption="aws:kms", encryption_key_id=kms,
                  bucket_key_enabled=True)
    results = engine_cycle([
        (base, True), (base, False), (base, False),
        (second, True), (second, False), (second, False),
        (dict(second, public_access_block="remove"), False), (dict(second, public_access_block="remove"), False),
        (dict(s3.options(), bucket=s3.bucket, public_access_block="unmanaged"), False),
        (dict(s3.options(), bucket=s3.bucket), False),
    ])
    check, set_, again, mcheck, modify, magain, opened, open_again, alone, blocked = results
    assert check["changes"] == ["versioning", "encryption", "public_access_block"], check
    assert check["diff"]["before"]["versioning"] == "disabled" and check["diff"]["after"]["versioning"] == "enabled"
    assert set_["changes"] == ["versioning", "encryption", "public_access_block"], "check mode wrote something"
    assert again["changed"] is False
    assert mcheck["changes"] == ["versioning", "encryption"] and modify["changes"] == ["versioning", "encryption"]
    assert mcheck["diff"]["after"]["encryption"] == {"algorithm": "aws:kms", "kms_key_id": kms, "bucket_key_enabled": True}
    assert modify["versioning"] == "suspended"
    assert magain["changed"] is False
    assert opened["changes"] == ["public_access_block"] and open_again["changed"] is False
    assert alone["changed"] is False and "public_access_block" not in alone and "encryption" not in alone
    assert blocked["changes"] == ["public_access_block"]

    c = s3.client
    assert c.get_bucket_versioning(Bucket=s3.bucket)["Status"] == "Suspended"
    enc = c.get_bucket_encryption(Bucket=s3.bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms}
    assert enc["BucketKeyEnabled"] is True
    assert all(c.get_public_access_block(Bucket=s3.bucket)["PublicAccessBlockConfiguration"].values())


def test_object_lock_default_retention_cycle(s3):
    bucket = s3.bucket + "-lock"
    base = dict(s3.options(), bucket=bucket, create_bucket=True, object_lock={"mode": "GOVERNANCE", "days": 30})
    check, create, again, longer, none, suspend = engine_cycle([
        (base, True), (base, False), (base, False),
        (dict(base, object_lock={"mode": "GOVERNANCE", "days": 60}), False),
        (dict(base, object_lock={}), False),
        (dict(base, object_lock=None, versioning=False), False),
    ])
    assert check["changes"] == ["bucket", "public_access_block", "object_lock"], check
    assert check["versioning"] == "enabled"  # object lock buckets are created versioned
    assert create["changed"] and create["created"] and create["versioning"] == "enabled", create
    assert again["changed"] is False, again
    assert longer["changes"] == ["object_lock"]
    assert none["changes"] == ["object_lock"] and none["object_lock"] == {"enabled": True}
    assert isinstance(suspend, LifeboatError) and suspend.option == "versioning" and "object lock" in str(suspend)
    conf = s3.client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert conf["ObjectLockEnabled"] == "Enabled" and "Rule" not in conf
    assert s3.client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_rules_written_by_the_aws_cli_compare_equal_to_the_same_options(s3):
    """Server-side shapes (Filter {"Prefix": ""}, tags and transitions in another order, a disabled
    rule) written by the AWS CLI normalize to the same options: no change, nothing written."""
    config = {"Rules": [
        {"ID": "b", "Status": "Enabled",
         "Filter": {"And": {"Prefix": "lb/", "Tags": [{"Key": "tier", "Value": "db"}, {"Key": "app", "Value": "x"}]}},
         "Transitions": [{"Days": 400, "StorageClass": "DEEP_ARCHIVE"}, {"Days": 90, "StorageClass": "GLACIER"}],
         "Expiration": {"Days": 800},
         "NoncurrentVersionTransitions": [{"NoncurrentDays": 30, "StorageClass": "STANDARD_IA"}],
         "NoncurrentVersionExpiration": {"NoncurrentDays": 60}},
        {"ID": "a", "Status": "Disabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
    ]}
    path = s3.tmp_path / "lc.json"
    path.write_text(json.dumps(config))
    s3.aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", s3.bucket,
           "--lifecycle-configuration", "file://%s" % path)
    server_before = lifecycle_on_server(s3, s3.bucket)
    rules = [
        {"id": "a", "enabled": False, "abort_incomplete_multipart_upload_days": 7},
        {"id": "b", "prefix": "lb/", "tags": {"app": "x", "tier": "db"}, "expiration_days": 800,
         "transitions": [{"days": 90, "storage_class": "GLACIER"}, {"days": 400, "storage_class": "DEEP_ARCHIVE"}],
         "noncurrent_version_transitions": [{"days": 30, "storage_class": "STANDARD_IA"}],
         "noncurrent_version_expiration_days": 60},
    ]
    res = lifecycle.run(dict(s3.options(), bucket=s3.bucket, rules=rules, public_access_block="unmanaged",
                             purge_rules=True))
    assert res["changed"] is False, res
    assert lifecycle_on_server(s3, s3.bucket) == server_before
    changed = lifecycle.run(dict(s3.options(), bucket=s3.bucket, public_access_block="unmanaged",
                                 rules=[dict(rules[1], tags={"app": "x", "tier": "web"}),
                                        {"id": "c", "prefix": "tmp/", "expiration_days": 3}]))
    assert changed["rules_changed"] == ["b"], changed  # a real difference is still seen
    assert changed["rules_added"] == ["c"] and changed["rules_removed"] == []  # rule a, not named, is kept
    assert sorted(r["ID"] for r in lifecycle_on_server(s3, s3.bucket)) == ["a", "b", "c"]


def test_what_aws_rejects_is_refused_before_any_call(s3):
    c = s3.client
    # moto itself accepts a transition to STANDARD_IA after 1 day, which AWS rejects.
    c.put_bucket_lifecycle_configuration(Bucket=s3.bucket, LifecycleConfiguration={"Rules": [
        {"ID": "moto-accepts", "Status": "Enabled", "Filter": {"Prefix": "junk/"},
         "Transitions": [{"Days": 1, "StorageClass": "STANDARD_IA"}]}]})
    c.put_bucket_lifecycle_configuration(Bucket=s3.bucket, LifecycleConfiguration={"Rules": [
        {"ID": "existing", "Status": "Enabled", "Filter": {"Prefix": "lifeboat/"}, "Expiration": {"Days": 20}}]})
    base = dict(s3.options(), bucket=s3.bucket, versioning=True)
    retention = dict(base, min_retention_days=35, retention_prefix="lifeboat/")
    too_soon = [{"days": 100, "storage_class": "GLACIER"}, {"days": 150, "storage_class": "DEEP_ARCHIVE"}]
    upstream = [{"days": 30, "storage_class": "GLACIER"}, {"days": 200, "storage_class": "STANDARD_IA"}]
    results = engine_cycle([
        (dict(base, rules=[{"id": "x", "transitions": too_soon}]), False),
        (dict(base, rules=[{"id": "x", "transitions": upstream}]), False),
        (dict(base, rules=[{"id": "x", "noncurrent_version_expiration_days": 0}]), False),
        (dict(retention, purge_rules=True, rules=[{"id": "short", "prefix": "lifeboat/acme/", "expiration_days": 14}]),
         False),
        (dict(retention, rules=[{"id": "y", "prefix": "logs/", "expiration_days": 7}]), False),
        (dict(retention, purge_rules=True, rules=[{"id": "y", "prefix": "logs/", "expiration_days": 7},
                                                  {"id": "keep", "prefix": "lifeboat/", "expiration_days": 400}]), False),
    ])
    deep, waterfall, nc_zero, short, kept, fine = results
    for refused in (deep, waterfall, nc_zero, short, kept):
        assert isinstance(refused, LifeboatError), refused
    assert "DEEP_ARCHIVE" in str(deep) and "at least 90 days later" in str(deep), str(deep)
    assert "storage-class order" in str(waterfall), str(waterfall)
    assert "at least 1" in str(nc_zero)
    assert short.option == "min_retention_days" and "after 14 days" in str(short) and "35 days" in str(short), str(short)
    assert "'existing'" in str(kept) and "20 days" in str(kept) and "35 days" in str(kept), str(kept)
    # Nothing was written by the refused runs (versioning included: every check comes before any write).
    assert fine["changed"] and fine["rules_removed"] == ["existing"], fine
    assert fine["changes"] == ["versioning", "public_access_block", "lifecycle_rules"], fine
    assert sorted(r["ID"] for r in lifecycle_on_server(s3, s3.bucket)) == ["keep", "y"]


def test_missing_bucket_is_an_error_unless_created(s3):
    with pytest.raises(LifeboatError) as e:
        lifecycle.run(dict(s3.options(), bucket=s3.bucket + "-missing", versioning=True))
    assert e.value.option == "create_bucket" and "NoSuchBucket" in str(e.value)
    assert s3.bucket + "-missing" not in [b["Name"] for b in s3.client.list_buckets()["Buckets"]]
