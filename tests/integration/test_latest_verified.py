"""artifact: latest_verified and backup_info, on local and s3:// repositories.

The newest VERIFIED artifact is the newest complete one whose verify record says
PASS, names it, and still matches its manifest (selection.py). Real artifacts
(pg_backup's engine), real verification (backup_verify), a real PostgreSQL
cluster and moto's S3 server.
"""

import json
import os

import pytest

import lbtest
import s3server
from lifeboat_engine import agefile, backup, naming, repository, selection, verify
from lifeboat_engine.errors import LifeboatError


def back_up(tenant, db, repo, keys, **extra):
    res = backup.run(dict(tenant=tenant, engine="sqlite", path=db, repository=repo, recipients=[keys["public"]], **extra))
    return os.path.basename(res["artifact"])


def verify_one(repo, tenant, name, keys, **extra):
    res = verify.run(dict(repository=repo, tenant=tenant, artifact=name, identity_file=keys["identity"],
                          fail_on_error=False, **extra))
    assert res["status"] == "PASS", res
    return res


def edit_record(path, **changes):
    with open(path) as f:
        record = json.load(f)
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    with open(path, "w") as f:
        json.dump(record, f)


def record_path(repo, tenant, name):
    stamp = naming.parse_artifact_name(name)["stamp"]
    return os.path.join(repo, tenant, naming.verify_record_name(tenant, stamp))


ART = {"name": "t-20260101T030000Z.sqlite.zst.age", "size": 100}
DOC = {"artifact": ART["name"], "sha256": "a" * 64, "size": {"stored": 100, "raw": 300},
       "finished_at": "2026-01-01T03:00:05Z"}
PASS = {"status": "PASS", "artifact": ART["name"], "sha256": "a" * 64, "checked_at": "2026-01-01T04:00:00Z"}


@pytest.mark.parametrize("record, art, doc, trusted, why", [
    (PASS, ART, DOC, True, "PASS at"),
    (dict(PASS, status="FAIL"), ART, DOC, False, "says FAIL"),
    ({k: v for k, v in PASS.items() if k != "status"}, ART, DOC, False, "no status"),
    (dict(PASS, artifact="t-20260102T030000Z.sqlite.zst.age"), ART, DOC, False, "names"),
    (dict(PASS, sha256="b" * 64), ART, DOC, False, "replaced or rekeyed"),
    (PASS, dict(ART, size=99), DOC, False, "holds 99 bytes"),
    (dict(PASS, sha256=None), ART, DOC, True, "PASS at"),  # a record from before sha256 was recorded
    (dict(PASS, sha256=None, checked_at="2026-01-01T02:00:00Z"), ART, DOC, False, "predates the manifest's finished_at"),
    (dict(PASS, sha256=None), ART, dict(DOC, rekeyed_at="2026-01-02T00:00:00Z"), False, "predates the manifest's rekeyed_at"),
    (dict(PASS, sha256=None, checked_at=None), ART, DOC, False, "no checked_at"),
    (["PASS"], ART, DOC, False, "not a JSON object"),
    (PASS, ART, None, False, "no usable manifest"),
])
def test_judge_case_table(record, art, doc, trusted, why):
    record = {k: v for k, v in record.items() if v is not None} if isinstance(record, dict) else record
    ok, reason = selection.judge(record, art, doc)
    assert ok is trusted and why in reason, reason


@pytest.mark.parametrize("doc, major", [
    ({"engine": "sqlite", "source": {"sqlite_version": "3.40.1"}}, 0),
    ({"engine": "postgresql", "source": {"server_version": "15.8", "pg_dump_version": "15.8"}}, 15),
    ({"engine": "postgresql", "source": {"server_version": "15.8", "pg_dump_version": "16.2"}}, 16),
    ({"engine": "postgresql", "source": {"server_version": "14.1", "pg_dumpall_version": "15.3"}}, 15),
    ({"engine": "postgresql", "source": {}}, 0),
    (None, 0),
])
def test_needed_pg_major_case_table(doc, major):
    assert selection.needed_pg_major(doc) == major


@pytest.fixture
def three(tmp_path, keys):
    """A SQLite tenant with three artifacts: a PASS, a FAIL and an unverified one (oldest first)."""
    repo = str(tmp_path / "repo")
    db = lbtest.sqlite_guests(tmp_path / "lv.db", 50)
    names = []
    for extra_rows in (0, 10, 10):
        lbtest.sqlite_guests(db, extra_rows)
        names.append(back_up("lvtenant", db, repo, keys))
    verify_one(repo, "lvtenant", names[0], keys)
    verify_one(repo, "lvtenant", names[1], keys)
    edit_record(record_path(repo, "lvtenant", names[1]), status="FAIL")
    return {"repo": repo, "names": names, "db": db}


def test_the_newest_pass_is_chosen_past_a_fail_and_an_unverified_one(three):
    repo = repository.open_repository(three["repo"], create=False)
    choice = selection.latest_verified(repo, "lvtenant", "sqlite")
    old, failed, newest = three["names"]
    assert choice["art"]["name"] == old
    assert choice["verified_at"] and choice["record"]["sha256"] == choice["manifest"]["sha256"]
    skipped = dict((s["artifact"], s["reason"]) for s in choice["skipped"])
    assert "never verified" in skipped[newest] and "FAIL" in skipped[failed], skipped
    # the record written by backup_verify ties it to the bytes verified
    record = json.load(open(record_path(three["repo"], "lvtenant", old)))
    assert record["artifact"] == old and record["size_stored"] == choice["art"]["size"]


def test_a_record_that_predates_a_rekey_is_not_trusted(three, keys):
    old, failed, newest = three["names"]
    verify_one(three["repo"], "lvtenant", newest, keys)
    repo = repository.open_repository(three["repo"], create=False)
    assert selection.latest_verified(repo, "lvtenant")["art"]["name"] == newest
    # rekey the newest artifact to another recipient: its manifest gets a new SHA-256 and rekeyed_at
    res = agefile.run(dict(state="rekeyed", src=os.path.join(three["repo"], "lvtenant", newest),
                           recipients=[keys["public"], keys["other_public"]], identity_file=keys["identity"]))
    assert res["changed"], res
    choice = selection.latest_verified(repo, "lvtenant")
    assert choice["art"]["name"] == old
    reason = dict((s["artifact"], s["reason"]) for s in choice["skipped"])[newest]
    assert "rekeyed" in reason and "verify it again" in reason, reason
    # a record from before the SHA-256 was recorded: trusted by time only, and it predates rekeyed_at
    edit_record(record_path(three["repo"], "lvtenant", newest), sha256=None, checked_at="2000-01-01T00:00:00Z")
    reason = dict((s["artifact"], s["reason"]) for s in selection.latest_verified(repo, "lvtenant")["skipped"])[newest]
    assert "predates" in reason, reason
    # verified again: trusted again
    verify_one(three["repo"], "lvtenant", newest, keys)
    assert selection.latest_verified(repo, "lvtenant")["art"]["name"] == newest


def test_a_record_naming_another_artifact_or_a_resized_one_is_not_trusted(three):
    old = three["names"][0]
    repo = repository.open_repository(three["repo"], create=False)
    arts = dict((a["name"], a) for a in repo.artifacts("lvtenant"))
    doc = repo.read_json("lvtenant", arts[old]["manifest"])
    record = repo.read_json("lvtenant", arts[old]["verify_record"])
    assert selection.judge(record, arts[old], doc)[0] is True
    assert selection.judge(dict(record, artifact=three["names"][2]), arts[old], doc)[0] is False
    assert selection.judge(record, dict(arts[old], size=arts[old]["size"] + 1), doc)[0] is False
    assert selection.judge(dict(record, status="WARN"), arts[old], doc)[0] is False


def test_no_verified_artifact_is_a_clear_error_engine_and_modules(tmp_path, keys):
    repo = str(tmp_path / "repo")
    db = lbtest.sqlite_guests(tmp_path / "nv.db", 20)
    back_up("nvtenant", db, repo, keys)
    with pytest.raises(LifeboatError) as e:
        selection.latest_verified(repository.open_repository(repo, create=False), "nvtenant")
    msg = str(e.value)
    assert "nvtenant" in msg and "backup_verify" in msg and "latest" in msg and "never verified" in msg, msg
    res = lbtest.run_module("backup_restore", dict(tenant="nvtenant", engine="sqlite", repository=repo,
                                                   artifact="latest_verified", identity_file=keys["identity"],
                                                   target_path=str(tmp_path / "out.db")))
    assert res.get("failed") and res["option"] == "artifact" and "has no verified" in res["msg"], res
    assert not os.path.exists(str(tmp_path / "out.db"))
    res = lbtest.run_module("backup_verify", dict(repository=repo, tenant="nvtenant", artifact="latest_verified",
                                                  identity_file=keys["identity"]))
    assert res.get("failed") and "nvtenant" in res["msg"] and "backup_verify" in res["msg"], res
    # every tenant: a FAIL of its own selection check, not a crash
    out = verify.run(dict(repository=repo, artifact="latest_verified", identity_file=keys["identity"],
                          fail_on_error=False))
    assert out["status"] == "FAIL" and out["tenants"][0]["failed_checks"] == ["selection"], out


def test_backup_restore_and_backup_verify_with_latest_verified_on_postgresql(pg, keys, tmp_path):
    pg.psql("DROP DATABASE IF EXISTS lvacme")
    pg.psql("CREATE DATABASE lvacme")
    pg.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)", db="lvacme")
    repo = str(tmp_path / "repo")
    first = backup.run(dict(pg.login, tenant="lvacme", repository=repo, recipients=[keys["public"]]))
    verify.run(dict(pg.login, repository=repo, tenant="lvacme", identity_file=keys["identity"]))
    pg.psql("INSERT INTO t SELECT generate_series(101, 150)", db="lvacme")
    newer = backup.run(dict(pg.login, tenant="lvacme", repository=repo, recipients=[keys["public"]]))
    assert newer["artifact"] != first["artifact"]
    version = pg.psql("SHOW server_version").split()[0]
    try:
        res = lbtest.run_module("backup_restore", dict(pg.login, tenant="lvacme", repository=repo,
                                                       artifact="latest_verified", identity_file=keys["identity"],
                                                       target_database="lvacme_restored"))
        assert not res.get("failed"), res
        assert res["artifact"] == first["artifact"] and res["rows"] == 100, res
        assert res["selection"]["selected_by"] == "latest_verified" and res["verified_at"], res
        assert res["selection"]["skipped"][0]["artifact"] == os.path.basename(newer["artifact"])
        assert res["source_server_version"] == version and res["artifact_info"]["pg_major_needed"] == int(version.split(".")[0])
        assert res["snapshot_at"].startswith("20") and res["artifact_info"]["snapshot_at"] == res["snapshot_at"]
        # latest still means the newest complete one, and says so
        res = lbtest.run_module("backup_restore", dict(pg.login, tenant="lvacme", repository=repo,
                                                       identity_file=keys["identity"], target_database="lvacme_restored",
                                                       force=True, replace_target="lvacme_restored"), check=True)
        assert res["artifact"] == newer["artifact"] and res["selection"]["selected_by"] == "latest", res
        assert res["verified_at"] is None
        ver = lbtest.run_module("backup_verify", dict(pg.login, repository=repo, tenant="lvacme",
                                                      artifact="latest_verified", identity_file=keys["identity"]))
        assert ver["status"] == "PASS" and ver["artifact_name"] == os.path.basename(first["artifact"]), ver
        assert ver["selected_by"] == "latest_verified" and ver["previously_verified_at"], ver
        assert ver["source_server_version"] == version
    finally:
        pg.psql("DROP DATABASE IF EXISTS lvacme_restored")
        pg.psql("DROP DATABASE IF EXISTS lvacme")


def test_backup_info_on_a_local_repository(pg, keys, three, tmp_path):
    repo = three["repo"]
    backup.run(dict(pg.login, repository=repo, recipients=[keys["public"]], globals=True))
    # an incomplete artifact (its manifest is missing): counted, never chosen
    with open(os.path.join(repo, "lvtenant", "lvtenant-20990101T000000Z.sqlite.zst.age"), "wb") as f:
        f.write(b"partial")
    args = dict(repository=repo, tenants=["lvtenant", "absent"])
    res = lbtest.run_module("backup_info", args)
    assert not res.get("failed") and res["changed"] is False, res
    old, failed, newest = three["names"]
    t = res["tenants"]["lvtenant"]
    assert t["artifacts_complete"] == 3 and t["artifacts_incomplete"] == 1 and t["newest_is_incomplete"], t
    assert t["latest"]["artifact"] == newest and t["latest"]["verified"] is False and t["latest"]["complete"], t
    lv = t["latest_verified"]
    assert lv["artifact"] == old and lv["verify_status"] == "PASS" and lv["verified_at"], lv
    assert lv["location"] == os.path.join(repo, "lvtenant", old) and lv["format"] == "sqlite" and lv["size_stored"] > 0
    m = lv["manifest_summary"]
    assert m["engine"] == "sqlite" and m["recipients"] == [keys["public"]] and m["size_raw"] > 0, m
    assert m["started_at"] and m["finished_at"] and m["tool_version"], m
    assert res["tenants"]["absent"]["present"] is False and res["missing"] == ["absent"], res
    assert res["pg_major_needed"] == 0 and res["tenant_names"] == ["lvtenant", "absent"]
    # all tenants: the globals pseudo-tenant only when asked, and marked
    res = lbtest.run_module("backup_info", dict(repository=repo))
    assert list(res["tenants"]) == ["lvtenant"] and res["globals_tenants"], res
    res = lbtest.run_module("backup_info", dict(repository=repo, include_globals=True), check=True)
    assert not res.get("failed") and res["changed"] is False, res
    g = res["tenants"][res["globals_tenants"][0]]
    assert g["pseudo_tenant"] is True and g["kind"] == "globals" and g["latest_verified"] is None, g
    assert "backup_verify" in g["latest_verified_error"]
    assert res["pg_major_needed"] == int(pg.psql("SHOW server_version").split(".")[0]), res
    res = lbtest.run_module("backup_info", dict(repository=str(tmp_path / "nowhere")))
    assert res.get("failed") and res["option"] == "repository", res


def test_selection_and_backup_info_on_s3(s3, keys, tmp_path):
    url = s3.url("lv")
    opts = s3.options()
    db = lbtest.sqlite_guests(tmp_path / "s3lv.db", 30)
    first = back_up("s3lv", db, url, keys, **opts)
    verify_one(url, "s3lv", first, keys, **opts)
    lbtest.sqlite_guests(db, 5)
    second = back_up("s3lv", db, url, keys, **opts)
    repo = repository.open_repository(url, create=False, **opts)
    choice = selection.latest_verified(repo, "s3lv")
    assert choice["art"]["name"] == first and choice["skipped"][0]["artifact"] == second
    res = lbtest.run_module("backup_info", dict(repository=url, **opts))
    assert not res.get("failed") and res["changed"] is False and res["repository_kind"] == "s3", res
    t = res["tenants"]["s3lv"]
    assert t["latest"]["artifact"] == second and t["latest_verified"]["artifact"] == first, t
    assert t["latest_verified"]["location"] == "s3://%s/lv/s3lv/%s" % (s3.bucket, first)
    assert t["artifacts_complete"] == 2 and t["artifacts_incomplete"] == 0
    dumped = json.dumps(res)
    assert s3server.SECRET_KEY not in dumped and "AGE-SECRET-KEY" not in dumped
    checked = lbtest.run_module("backup_info", dict(repository=url, tenants=["s3lv"], **opts), check=True)
    assert checked["tenants"]["s3lv"]["latest_verified"]["artifact"] == first and checked["changed"] is False
    # restore that very artifact from S3 by latest_verified
    res = lbtest.run_module("backup_restore", dict(tenant="s3lv", engine="sqlite", repository=url,
                                                   artifact="latest_verified", identity_file=keys["identity"],
                                                   target_path=str(tmp_path / "restored.db"), **opts))
    assert not res.get("failed") and os.path.basename(res["artifact"]) == first and res["rows"] == 30, res
    assert res["verified_at"] == t["latest_verified"]["verified_at"]
