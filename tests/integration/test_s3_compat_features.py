"""What lifeboat's guarantees need from a store, on each of the three S3 implementations of the suite (moto,
SeaweedFS, rclone serve s3; issue 24). A test that needs a feature a store lacks is skipped for that store, with
the reason, never passed: what lifeboat says there instead is tested in that store's own module
(test_s3_compat_rclone.py: the warnings where conditional writes are ignored and versioning is missing).
"""

import os
import time

import pytest

import lbtest
from conftest import fresh_bucket
from lifeboat_engine import agefile, backup, prune, repository
from lifeboat_engine.errors import LifeboatError

CONDITIONAL_WRITES, VERSIONING, OBJECT_LOCK = "conditional writes", "versioning", "object lock"
# store -> (its session fixture, the features it has, why it lacks the others)
STORES = {
    "moto": ("moto", {CONDITIONAL_WRITES, VERSIONING, OBJECT_LOCK}, None),
    "seaweedfs": ("seaweed", {CONDITIONAL_WRITES, VERSIONING, OBJECT_LOCK}, None),
    "rclone": ("rclone", set(), "rclone serve s3 ignores If-Match and If-None-Match and implements neither "
                                "versioning nor object lock (501)"),
}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    fixture, features, why = STORES[request.param]
    server = request.getfixturevalue(fixture)
    env = fresh_bucket(server, "xs", tmp_path)
    env.name, env.features, env.why = request.param, features, why
    return env


def needs(store, feature):
    if feature not in store.features:
        pytest.skip("%s lacks %s: %s" % (store.name, feature, store.why))


def sqlite_backups(store, keys, tmp_path, tenant, count=1):
    names = []
    for i in range(count):
        if i:
            time.sleep(1.1)  # distinct stamps
        db = lbtest.sqlite_guests(tmp_path / ("%s.db" % tenant), 20)
        res = backup.run(dict(tenant=tenant, engine="sqlite", path=db, repository=store.url("lb"),
                              recipients=[keys["public"]], **store.options()))
        names.append(os.path.basename(res["artifact"]))
    return names


def test_an_existing_object_is_never_replaced(store, tmp_path):
    needs(store, CONDITIONAL_WRITES)
    repo = repository.open_repository(store.url("lb"), lock_dir=str(tmp_path / "locks"), **store.options())
    repo.write_json("acme", "acme-20260101T000000Z.manifest.json", {"n": 1})
    with pytest.raises(LifeboatError) as e:
        repo.write_json("acme", "acme-20260101T000000Z.manifest.json", {"n": 2})
    assert "Refusing to replace" in str(e.value)
    assert repo.read_json("acme", "acme-20260101T000000Z.manifest.json") == {"n": 1}


def test_purge_old_versions_leaves_only_the_rekeyed_versions(store, keys, tmp_path):
    needs(store, VERSIONING)
    store.client.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})
    name = sqlite_backups(store, keys, tmp_path, "purged")[0]
    out = agefile.run(dict(store.options(), state="rekeyed", repository=store.url("lb"), identity_file=keys["identity"],
                           recipients=[keys["other_public"]], purge_old_versions=True))
    assert len(out["rekeyed"]) == 1 and len(out["purged_versions"]) == 2 and out["warnings"] == [], out
    page = store.client.list_object_versions(Bucket=store.bucket, Prefix="lb/purged/")
    assert sorted(v["Key"] for v in page.get("Versions", [])) == sorted(
        ["lb/purged/" + name, "lb/purged/" + name.split(".")[0] + ".manifest.json"])


def test_prune_keeps_what_object_lock_holds_and_says_so(store, keys, tmp_path):
    needs(store, OBJECT_LOCK)
    locked = fresh_bucket(store.server, "xl", tmp_path, ObjectLockEnabledForBucket=True)
    locked.client.put_object_lock_configuration(Bucket=locked.bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    names = sqlite_backups(locked, keys, tmp_path, "held", count=2)
    for check_mode in (True, False):  # one code path: the dry run says what the real run does
        out = prune.run(dict(repository=locked.url("lb"), keep_last=1, **locked.options()), check_mode=check_mode)
        assert out["deleted"] == [] and out["changed"] is False and sorted(out["kept"]) == sorted(names), out
        assert any(names[0] in w and "GOVERNANCE retention until" in w for w in out["warnings"]), out
    assert len(locked.keys("lb/held/")) == 4
