"""No PASS without the data, no gap without an alarm (docs/RELIABILITY.md, "Silent failures").

Each test reproduces a case where lifeboat once reported success (or skipped quietly) while
data was lost or a gap opened, and checks what it does now. Real SQLite files and
PostgreSQL clusters, the real age keys, the engine as the modules run it.
"""

import datetime
import json
import os
import shutil

import pytest

import lbtest
import saas
from lifeboat_engine import backup, naming, verify


def sqlite_tenant(tmp_path, keys, name="clock"):
    db = lbtest.sqlite_guests(tmp_path / ("%s.db" % name), 20)
    repo = str(tmp_path / "repo")
    base = dict(tenant=name, engine="sqlite", path=db, repository=repo, recipients=[keys["public"]])
    return base, repo


def future_copy(repo, tenant, art, stamp):
    """The artifact and its manifest again under another stamp, as a host whose clock ran ahead wrote it."""
    folder = os.path.join(repo, tenant)
    old = naming.parse_artifact_name(os.path.basename(art))["stamp"]
    for name in os.listdir(folder):
        if old in name and not name.endswith(".verify.json"):
            shutil.copy(os.path.join(folder, name), os.path.join(folder, name.replace(old, stamp)))
    path = os.path.join(folder, naming.manifest_name(tenant, stamp))
    with open(path) as f:
        doc = json.load(f)
    doc.update(artifact=doc["artifact"].replace(old, stamp), stamp=stamp)
    with open(path, "w") as f:
        json.dump(doc, f)


def test_an_artifact_stamped_in_the_future_never_stops_the_backups(tmp_path, keys):
    base, repo = sqlite_tenant(tmp_path, keys)
    first = backup.run(base)["artifact"]
    future_copy(repo, "clock", first, "20991231T000000Z")
    # the future artifact is "newest" by name, but it does not make tonight's backup unnecessary
    res = backup.run(dict(base, skip_if_newer_than="20h"))
    assert res["skipped"] is True  # the real artifact of a minute ago still counts
    now = naming.parse_stamp(naming.parse_artifact_name(os.path.basename(first))["stamp"])
    later = now + datetime.timedelta(hours=21)
    res = backup.run(dict(base, skip_if_newer_than="20h"), now=later)
    assert res["skipped"] is False and res["artifacts"][0]["action"] == "written"


def test_a_clock_running_behind_does_not_skip_backups(tmp_path, keys):
    base, _repo = sqlite_tenant(tmp_path, keys, "behind")
    first = backup.run(base)["artifact"]
    stamp = naming.parse_stamp(naming.parse_artifact_name(os.path.basename(first))["stamp"])
    res = backup.run(dict(base, skip_if_newer_than="20h"), now=stamp - datetime.timedelta(days=30))
    assert res["skipped"] is False


def test_verify_flags_a_future_stamp_instead_of_calling_it_fresh(tmp_path, keys):
    base, repo = sqlite_tenant(tmp_path, keys, "ahead")
    first = backup.run(base)["artifact"]
    future_copy(repo, "ahead", first, "20991231T000000Z")
    res = verify.run(dict(tenant="ahead", repository=repo, identity_file=keys["identity"], max_age="24h",
                          artifact=os.path.basename(first)))
    checks = dict((c["name"], c) for c in res["tenants"][0]["checks"])
    assert checks["freshness"]["status"] == "FAIL" and "in the future" in checks["freshness"]["detail"], checks


def test_a_failed_verification_means_the_artifact_is_not_fresh(tmp_path, keys):
    base, repo = sqlite_tenant(tmp_path, keys, "flipped")
    art = backup.run(base)["artifact"]
    with open(art, "r+b") as f:
        f.seek(os.path.getsize(art) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    res = verify.run(dict(tenant="flipped", repository=repo, identity_file=keys["identity"]))
    assert res["status"] == "FAIL"
    record = json.load(open(os.path.join(repo, "flipped", naming.verify_record_name(
        "flipped", naming.parse_artifact_name(os.path.basename(art))["stamp"]))))
    assert record["status"] == "FAIL"
    res = backup.run(dict(base, skip_if_newer_than="20h"))
    assert res["skipped"] is False and res["artifacts"][0]["action"] == "written"


def test_a_table_the_backup_role_cannot_read_is_named_with_its_grant(pg, keys, tmp_path):
    from lifeboat_engine import backup_pass
    from lifeboat_engine.errors import LifeboatError

    pg.psql("DROP DATABASE IF EXISTS unread WITH (FORCE)")
    saas.build(pg, db="unread", tenants=("acme", "globex"), rows=10)
    pg.psql("DROP ROLE IF EXISTS lb_reader; CREATE ROLE lb_reader LOGIN PASSWORD 'reader-pw'")
    pg.psql("GRANT USAGE ON SCHEMA acme, globex, audit TO lb_reader; "
            "GRANT SELECT ON ALL TABLES IN SCHEMA acme, globex, public, audit TO lb_reader; "
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA acme, globex, public, audit TO lb_reader; "
            "CREATE TABLE globex.payroll (id int); REVOKE ALL ON globex.payroll FROM lb_reader", db="unread")
    login = dict(pg.login, login_user="lb_reader", login_password="reader-pw")
    repo = str(tmp_path / "repo")
    for _trial in range(3):  # it was a race: the snapshot's loss used to hide the real cause
        with pytest.raises(LifeboatError) as e:
            backup.run(dict(login, tenant="globex", database="unread", schema="globex", repository=repo,
                            recipients=[keys["public"]]))
        assert '"globex"."payroll"' in str(e.value) and "GRANT SELECT ON" in str(e.value), str(e.value)
        assert e.value.option == "login_user"
    res = backup_pass.run(dict(login, database="unread", schemas=["acme", "globex"], repository=repo,
                               recipients=[keys["public"]]))
    failed = dict((f["tenant"], f["error"]) for f in res["failed_tenants"])
    assert list(failed) == ["globex"] and "payroll" in failed["globex"], failed
    assert sorted(a["tenant"] for a in res["artifacts"] if a["action"] == "written") == ["_shared_unread", "acme"]
    pg.psql("DROP DATABASE unread WITH (FORCE)")


def test_large_objects_of_a_schema_tenant_are_never_lost_behind_a_pass(pg, keys, tmp_path):
    from lifeboat_engine import backup_pass, restore
    from lifeboat_engine.errors import LifeboatError

    pg.psql("DROP DATABASE IF EXISTS lobs WITH (FORCE)")
    saas.build(pg, db="lobs", tenants=("t1", "t2"), rows=5)
    pg.psql("CREATE TABLE t1.docs (id int PRIMARY KEY, body oid); "
            "INSERT INTO t1.docs SELECT g, lo_from_bytea(0, convert_to(repeat('page ' || g, 50), 'UTF8')) "
            "FROM generate_series(1, 20) g", db="lobs")
    repo = str(tmp_path / "repo")
    common = dict(pg.login, repository=repo, recipients=[keys["public"]])
    # alone, the schema's dump would not hold them: refused, naming the column
    with pytest.raises(LifeboatError) as e:
        backup.run(dict(common, tenant="t1", database="lobs", schema="t1"))
    assert "t1.docs.body (20)" in str(e.value) and e.value.option == "schema"
    assert not os.path.exists(os.path.join(repo, "t1")) or os.listdir(os.path.join(repo, "t1")) == [".lock"]
    # in a pass they are in the shared part; verify proves every one is back
    res = backup_pass.run(dict(common, database="lobs", schemas=["t1", "t2"]))
    assert res["failed_tenants"] == []
    out = verify.run(dict(pg.login, tenant="t1", repository=repo, identity_file=keys["identity"]))
    checks = dict((c["name"], c) for c in out["tenants"][0]["checks"])
    assert out["status"] == "PASS" and checks["large_objects"]["status"] == "PASS", checks
    res = restore.run(dict(pg.login, tenant="t1", repository=repo, identity_file=keys["identity"],
                           target_database="lobs_rebuilt"))
    assert pg.psql("SELECT count(lo_get(body)) FROM t1.docs", db="lobs_rebuilt") == "20"
    # a copy whose large objects are gone fails the check, naming the column
    pg.psql("SELECT lo_unlink(body) FROM t1.docs WHERE id <= 3", db="lobs_rebuilt")
    from lifeboat_engine import large_objects
    with pg.connect("lobs_rebuilt") as conn:
        lost = large_objects.missing(conn, json.load(open(
            [a for a in backup_pass.run(dict(common, database="lobs", schemas=["t1"]))["artifacts"]
             if a["tenant"] == "t1"][0]["manifest"]))["source"]["large_objects"])
    assert large_objects.describe(lost) == "t1.docs.body (3)"
    pg.psql("DROP DATABASE lobs_rebuilt WITH (FORCE)")
    pg.psql("DROP DATABASE lobs WITH (FORCE)")


def test_a_tenant_with_a_subscription_verifies_and_restores_detached(pg, keys, tmp_path):
    from lifeboat_engine import restore

    for db in ("subpub", "subtenant", "subtenant_copy"):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    pg.psql("CREATE DATABASE subpub")
    pg.psql("CREATE TABLE feed (id int PRIMARY KEY); CREATE PUBLICATION feedpub FOR TABLE feed", db="subpub")
    pg.psql("CREATE DATABASE subtenant")
    pg.psql("CREATE TABLE feed (id int PRIMARY KEY); INSERT INTO feed SELECT generate_series(1, 30); "
            "CREATE SUBSCRIPTION feedsub CONNECTION 'host=%s port=%d dbname=subpub user=postgres' "
            "PUBLICATION feedpub WITH (connect = false)" % (pg.socket_dir, pg.port), db="subtenant")
    repo = str(tmp_path / "repo")
    backup.run(dict(pg.login, tenant="subtenant", repository=repo, recipients=[keys["public"]]))
    before = pg.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
    out = verify.run(dict(pg.login, tenant="subtenant", repository=repo, identity_file=keys["identity"]))
    assert out["status"] == "PASS", out["msg"]
    assert out["records"], out  # a record was written
    assert pg.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database") == before  # no scratch left
    res = restore.run(dict(pg.login, tenant="subtenant", repository=repo, identity_file=keys["identity"],
                           target_database="subtenant_copy"))
    assert res["subscriptions_detached"] == ["feedsub"] and any("detached" in w for w in res["warnings"])
    assert pg.psql("SELECT subenabled::text || ',' || coalesce(subslotname, 'none') FROM pg_subscription s "
                   "JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = 'subtenant_copy'") == "false,none"
    for db in ("subtenant_copy", "subtenant"):
        with pg.connect(db) as conn:
            from lifeboat_engine import postgres
            postgres.detach_subscriptions(conn, drop=True)
        pg.psql("DROP DATABASE %s WITH (FORCE)" % db)
    pg.psql("DROP DATABASE subpub WITH (FORCE)")


def test_database_settings_come_back_with_a_restore_into_a_new_database(pg, keys, tmp_path):
    from lifeboat_engine import restore

    for db in ("shopset", "shopset_new"):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    pg.psql("CREATE DATABASE shopset")
    pg.psql("DROP ROLE IF EXISTS shop_app; CREATE ROLE shop_app LOGIN")
    pg.psql("CREATE SCHEMA app; CREATE TABLE app.items AS SELECT generate_series(1, 5) AS id", db="shopset")
    pg.psql("ALTER DATABASE shopset SET search_path = app, public; ALTER DATABASE shopset SET statement_timeout = '42s'; "
            "ALTER ROLE shop_app IN DATABASE shopset SET work_mem = '3MB'")
    repo = str(tmp_path / "repo")
    art = backup.run(dict(pg.login, tenant="shopset", repository=repo, recipients=[keys["public"]]))
    doc = json.load(open(art["manifest"]))
    assert {"role": None, "settings": ["search_path=app, public", "statement_timeout=42s"]} in \
        doc["source"]["database_settings"]
    res = restore.run(dict(pg.login, tenant="shopset", repository=repo, identity_file=keys["identity"],
                           target_database="shopset_new"))
    assert res["database_settings_applied"] == 3
    assert pg.psql("SHOW search_path", db="shopset_new") == "app, public"
    assert pg.psql("SELECT count(*) FROM items", db="shopset_new") == "5"  # the application's unqualified query
    assert pg.psql("SHOW statement_timeout", db="shopset_new") == "42s"
    assert pg.psql("SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_database d "
                   "ON d.oid = s.setdatabase WHERE d.datname = 'shopset_new' AND s.setrole <> 0") == "work_mem=3MB"
    for db in ("shopset", "shopset_new"):
        pg.psql("DROP DATABASE %s WITH (FORCE)" % db)
    pg.psql("DROP ROLE shop_app")


def test_forced_row_level_security_with_a_non_superuser_verifier_and_restorer(pg, keys, tmp_path):
    from lifeboat_engine import restore

    for db in ("rlsdb", "rlsdb_copy", "rls1_copy"):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    pg.psql("DROP ROLE IF EXISTS lb_managed; CREATE ROLE lb_managed LOGIN CREATEDB PASSWORD 'managed-pw'")
    pg.psql("CREATE DATABASE rlsdb")
    pg.psql("CREATE TABLE docs (tenant_id int, body text); "
            "INSERT INTO docs SELECT g % 3, 'doc ' || g FROM generate_series(1, 300) g; "
            "ALTER TABLE docs ENABLE ROW LEVEL SECURITY; ALTER TABLE docs FORCE ROW LEVEL SECURITY; "
            "CREATE POLICY only_mine ON docs USING (tenant_id = current_setting('app.tenant', true)::int); "
            "CREATE SCHEMA s1; CREATE TABLE s1.notes (tenant_id int, n text); "
            "INSERT INTO s1.notes SELECT g % 3, 'n' FROM generate_series(1, 30) g; "
            "ALTER TABLE s1.notes ENABLE ROW LEVEL SECURITY; ALTER TABLE s1.notes FORCE ROW LEVEL SECURITY; "
            "CREATE POLICY only_mine ON s1.notes USING (tenant_id = current_setting('app.tenant', true)::int)",
            db="rlsdb")
    repo = str(tmp_path / "repo")
    backup.run(dict(pg.login, tenant="rlsdb", repository=repo, recipients=[keys["public"]]))
    backup.run(dict(pg.login, tenant="rls1", database="rlsdb", schema="s1", repository=repo,
                    recipients=[keys["public"]]))
    managed = dict(pg.login, login_user="lb_managed", login_password="managed-pw")  # no superuser, as on RDS
    for tenant in ("rlsdb", "rls1"):
        out = verify.run(dict(managed, tenant=tenant, repository=repo, identity_file=keys["identity"]))
        assert out["status"] == "PASS", out["msg"]
    res = restore.run(dict(managed, tenant="rlsdb", repository=repo, identity_file=keys["identity"],
                           target_database="rlsdb_copy"))
    assert res["rows"] == 330
    assert pg.psql("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'docs'", db="rlsdb_copy") == "t"
    res = restore.run(dict(managed, tenant="rls1", repository=repo, identity_file=keys["identity"],
                           target_database="rls1_copy"))
    assert res["rows"] == 30
    assert pg.psql("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'notes'", db="rls1_copy") == "t"
    for db in ("rlsdb", "rlsdb_copy", "rls1_copy"):
        pg.psql("DROP DATABASE %s WITH (FORCE)" % db)
    pg.psql("DROP ROLE lb_managed")


def test_a_future_stamp_never_makes_prune_delete_the_real_newest(tmp_path, keys):
    from lifeboat_engine import prune, restore

    base, repo = sqlite_tenant(tmp_path, keys, "skew")
    first = backup.run(base)["artifact"]
    second = backup.run(base)["artifact"]
    future_copy(repo, "skew", first, "20991231T000000Z")
    out = prune.run(dict(repository=repo, keep_last=1))
    kept = set(out["kept"])
    assert os.path.basename(second) in kept and any("20991231T000000Z" in k for k in kept), out["report"]
    assert os.path.basename(first) in out["deleted"]
    res = restore.run(dict(tenant="skew", engine="sqlite", repository=repo, identity_file=keys["identity"],
                           target_path=str(tmp_path / "restored.db")), check_mode=True)
    assert os.path.basename(res["artifact"]) == os.path.basename(second), res  # the real newest, not the future-stamped one


def test_a_future_stamp_is_never_the_newest_for_restore_info_or_discovery(tmp_path, keys):
    from lifeboat_engine import discovery, info, repository, restore

    base, repo = sqlite_tenant(tmp_path, keys, "ahead")
    first = backup.run(base)["artifact"]
    future_copy(repo, "ahead", first, "20991231T000000Z")
    second = backup.run(base)["artifact"]  # written after the skewed one, with a stamp that is earlier
    restored = str(tmp_path / "restored.db")
    res = restore.run(dict(tenant="ahead", engine="sqlite", repository=repo, identity_file=keys["identity"],
                           target_path=restored))
    assert os.path.basename(res["artifact"]) == os.path.basename(second)
    assert not any("in the future" in w for w in res["warnings"]), res["warnings"]
    out = info.run(dict(repository=repo))
    row = out["tenants"]["ahead"]
    assert row["latest"]["artifact"] == os.path.basename(second)
    assert row["latest"]["future_stamped"] is False
    assert row["future_stamped"] == ["ahead-20991231T000000Z.sqlite.zst.age"]
    assert out["clock_skew"] == ["ahead"]
    assert "CLOCK SKEW" in out["msg"] and "timedatectl" in out["msg"]
    # only future-stamped artifacts: the tenant is not protected, and the reason says why
    os.unlink(second)
    newest = discovery.repository_newest(repository.open_repository(repo))
    stamp, error = newest("ahead")
    assert stamp is not None  # the first, real artifact is still there
    for name in os.listdir(os.path.join(repo, "ahead")):
        if naming.parse_artifact_name(os.path.basename(first))["stamp"] in name:
            os.unlink(os.path.join(repo, "ahead", name))
    stamp, error = newest("ahead")
    assert stamp is None and "stamped in the future" in error and "clock" in error
    # ... and a restore of latest still finds the future-stamped one, with the warning that says what it is
    res = restore.run(dict(tenant="ahead", engine="sqlite", repository=repo, identity_file=keys["identity"],
                           target_path=str(tmp_path / "restored2.db")), check_mode=True)
    assert "20991231T000000Z" in res["artifact"]
    assert any("stamped in the future" in w for w in res["warnings"]), res["warnings"]
