"""dr_restore.yml against an s3:// repository (moto): the newest VERIFIED artifact of each
tenant is chosen on the host by backup_info and restored, even when a newer unverified one
exists; a tenant without a verified artifact is a FAILED row saying what to do, unless
dr_allow_unverified=true. Real ansible-playbook, real PostgreSQL, real S3 API."""

import glob
import json
import os
import subprocess
import time

import pytest

import lbtest
from lifeboat_engine import agefile, backup, verify

PLAYBOOKS = lbtest.ROOT / "playbooks"


def write_inventory(base, pg, keys, s3, tenants, name, bundles=()):
    return lbtest.write_fleet_inventory(base, name, tenants, {
        "lifeboat_repository": s3.url("dr"),
        "lifeboat_s3": s3.options(),
        "lifeboat_recipients": [keys["public"]],
        "lifeboat_identity_file": keys["identity"],
        "lifeboat_report_dir": str(base / "reports"),
        "lifeboat_connection": pg.login,
    }, lifeboat_bundles=list(bundles))


def playbook(name, inventory, *extra):
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / ("%s.yml" % name))] + list(extra)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=str(lbtest.ROOT),
                          env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}))
    return proc


def failures(proc):
    """The messages of the failed tasks (for assertion messages)."""
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        return proc.stdout[-3000:] + proc.stderr[-2000:]
    return ["%s: %s" % (t["task"]["name"], r.get("msg")) for p in data.get("plays", []) for t in p.get("tasks", [])
            for r in t.get("hosts", {}).values() if r.get("failed")]


def newest_report(base):
    return json.load(open(sorted(glob.glob(str(base / "reports" / "dr_restore-*.json")))[-1]))


@pytest.fixture
def disaster(pg, keys, s3, tmp_path):
    """Verified artifacts of a database and a SQLite tenant, then newer unverified ones; a third
    tenant that was never verified; then the data is lost."""
    pg.psql("DROP DATABASE IF EXISTS s3dracme")
    pg.psql("CREATE DATABASE s3dracme")
    pg.psql("CREATE TABLE bookings (id serial PRIMARY KEY, guest text); "
            "INSERT INTO bookings (guest) SELECT 'g' || i FROM generate_series(1, 200) i", db="s3dracme")
    init, never = tmp_path / "s3drinit.db", tmp_path / "s3drnever.db"
    lbtest.sqlite_guests(init, 80)
    lbtest.sqlite_guests(never, 15)
    url, opts = s3.url("dr"), s3.options()
    common = dict(repository=url, recipients=[keys["public"]], **opts)
    backup.run(dict(pg.login, tenant="s3dracme", globals=True, **common))
    backup.run(dict(tenant="s3drinit", engine="sqlite", path=str(init), **common))
    res = verify.run(dict(pg.login, repository=url, identity_file=keys["identity"], **opts))
    assert res["status"] == "PASS", res
    verified = dict((r["tenant"], os.path.basename(r["artifact"])) for r in res["tenants"])
    with pg.connect("s3dracme") as conn:
        state = {"s3dracme": lbtest.table_checksums(conn), "s3drinit": lbtest.sqlite_checksums(str(init))}
    # written after the verified backup, then backed up without verification: must not be restored
    pg.psql("INSERT INTO bookings (guest) SELECT 'late' FROM generate_series(1, 7)", db="s3dracme")
    lbtest.sqlite_guests(init, 9)
    newer = {"s3dracme": backup.run(dict(pg.login, tenant="s3dracme", **common))["artifact"],
             "s3drinit": backup.run(dict(tenant="s3drinit", engine="sqlite", path=str(init), **common))["artifact"]}
    never_art = backup.run(dict(tenant="s3drnever", engine="sqlite", path=str(never), **common))["artifact"]
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "app.ini").write_text("[app]\nkey = value\n")
    bundle = agefile.run(dict(state="encrypted", src=str(conf), repository=url, tenant="s3drconf",
                              recipients=[keys["public"]], **opts))
    assert bundle["changed"], bundle
    pg.psql("DROP DATABASE s3dracme")
    os.unlink(str(init))
    os.unlink(str(never))
    tenants = [{"name": "s3dracme", "engine": "postgresql", "database": "s3dracme"},
               {"name": "s3drinit", "engine": "sqlite", "path": str(init)},
               {"name": "s3drnever", "engine": "sqlite", "path": str(never)}]
    bundles = [{"name": "s3drconf", "path": str(tmp_path / "restored-conf")}]
    yield {"base": tmp_path, "inv": write_inventory(tmp_path, pg, keys, s3, tenants, "inv", bundles),
           "verified": verified, "bundle": os.path.basename(bundle["artifact"]),
           "newer": newer, "never": os.path.basename(never_art), "state": state, "init": init, "never_path": never}
    pg.psql("DROP DATABASE IF EXISTS s3dracme")


def test_dr_restore_on_s3_restores_the_newest_verified_artifacts(pg, disaster):
    d = disaster
    time.sleep(1)  # the incident comes after the last backup's stamp
    incident = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.monotonic()
    proc = playbook("dr_restore", d["inv"], "-e", "dr_hosts=localhost", "-e", "dr_provision=false",
                    "-e", "dr_enable_timers=false", "-e", "dr_incident_time=%s" % incident)
    first_seconds = time.monotonic() - t0
    # s3drnever has no verified artifact: the run fails for it alone, and says what to do
    assert proc.returncode != 0, proc.stdout[-3000:]
    report = newest_report(d["base"])
    rows = dict((r["tenant"], r) for r in report["rows"] if r["what"] == "tenant")
    for tenant in ("s3dracme", "s3drinit"):
        row = rows[tenant]
        assert row["status"] == "OK", row
        assert row["artifact"] == d["verified"][tenant] != os.path.basename(d["newer"][tenant]), row
        assert row["verified_at"] and row["snapshot"] in row["artifact"] and row["rpo_seconds"] >= 1, row
        assert "newest verified artifact" in row["message"] and "passed over" in row["message"], row
    assert rows["s3dracme"]["server_version"] == pg.psql("SHOW server_version").split()[0]
    never = rows["s3drnever"]
    assert never["status"] == "FAILED" and never["artifact"] == "", never
    assert "backup_verify" in never["message"] and "dr_allow_unverified=true" in never["message"], never
    assert report["status"] == "FAILED"
    globals_row = [r for r in report["rows"] if r["what"] == "globals"][0]
    assert globals_row["status"] == "OK", globals_row
    with pg.connect("s3dracme") as conn:
        assert lbtest.table_checksums(conn) == d["state"]["s3dracme"]
    assert lbtest.sqlite_checksums(str(d["init"])) == d["state"]["s3drinit"]
    assert "VERIFIED AT" in proc.stdout and "AGE-SECRET-KEY" not in proc.stdout + proc.stderr
    assert not os.path.exists(str(d["never_path"]))
    # a bundle in an s3:// repository: found through backup_info, decrypted straight from the bucket to its path
    bundle = [r for r in report["rows"] if r["what"] == "bundle"][0]
    assert bundle["tenant"] == "s3drconf" and bundle["artifact"] == d["bundle"] and bundle["status"] == "OK", bundle
    assert "NOT VERIFIED" in bundle["message"], bundle  # it was never verified: restored, and said so
    with open(str(d["base"] / "restored-conf" / "app.ini")) as f:
        assert f.read() == "[app]\nkey = value\n"

    # the same tenant with dr_allow_unverified=true: its newest complete artifact, marked NOT VERIFIED
    proc = playbook("dr_restore", d["inv"], "-e", "dr_hosts=localhost", "-e", "dr_provision=false",
                    "-e", "dr_enable_timers=false", "-e", "tenants=s3drnever", "-e", "dr_allow_unverified=true",
                    "-e", "dr_restore_globals=false", "-e", json.dumps({"lifeboat_bundles": []}))
    assert proc.returncode == 0, failures(proc)
    report = newest_report(d["base"])
    row = [r for r in report["rows"] if r["what"] == "tenant"][0]
    assert row["tenant"] == "s3drnever" and row["status"] == "OK" and row["artifact"] == d["never"], row
    assert row["message"].startswith("NOT VERIFIED") and row["verified_at"] == "", row
    assert lbtest.sqlite_checksums(str(d["never_path"]))["guests"][0] == 15
    print("dr_restore on S3, 3 tenants: %.1f s" % first_seconds)


def test_dr_restore_on_a_local_repository_restores_bundles_chosen_by_backup_info(pg, keys, s3, tmp_path):
    """The same selection for a surviving local folder; SQLite only (no PostgreSQL step runs), and the
    configuration bundle is decrypted to its path from the artifact backup_info chose."""
    repo = str(tmp_path / "repository")
    db = tmp_path / "lcinit.db"
    lbtest.sqlite_guests(db, 40)
    first = backup.run(dict(tenant="lcinit", engine="sqlite", path=str(db), repository=repo,
                            recipients=[keys["public"]]))
    assert verify.run(dict(repository=repo, identity_file=keys["identity"]))["status"] == "PASS"
    lbtest.sqlite_guests(db, 3)
    backup.run(dict(tenant="lcinit", engine="sqlite", path=str(db), repository=repo, recipients=[keys["public"]]))
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "app.ini").write_text("[app]\nkey = value\n")
    agefile.run(dict(state="encrypted", src=str(conf), repository=repo, tenant="lcconf", recipients=[keys["public"]]))
    os.unlink(str(db))
    inv = write_inventory(tmp_path, pg, keys, s3, [{"name": "lcinit", "engine": "sqlite", "path": str(db)}], "inv",
                          [{"name": "lcconf", "path": str(tmp_path / "restored-conf")}])
    proc = playbook("dr_restore", inv, "-e", "dr_hosts=localhost", "-e", "dr_provision=false",
                    "-e", "dr_enable_timers=false", "-e", json.dumps({"lifeboat_repository": repo, "lifeboat_s3": {}}))
    assert proc.returncode == 0, failures(proc)
    rows = dict((r["what"], r) for r in newest_report(tmp_path)["rows"])
    assert rows["tenant"]["artifact"] == os.path.basename(first["artifact"]) and rows["tenant"]["verified_at"], rows
    assert rows["bundle"]["status"] == "OK" and rows["bundle"]["artifact"].startswith("lcconf-"), rows
    assert (tmp_path / "restored-conf" / "app.ini").read_text() == "[app]\nkey = value\n"
    assert "globals" not in rows
    assert lbtest.sqlite_checksums(str(db))["guests"][0] == 40


def test_dr_restore_refuses_per_tenant_what_this_server_cannot_take_before_anything(pg, keys, s3, tmp_path):
    """Issue 17: an artifact that needs an extension the rebuilt host's server lacks, and one written by a newer
    pg_dump than any pg_restore on the host (their manifests say so: this host has every contrib extension and
    one PostgreSQL version), are FAILED rows naming what is missing and the fix, checked before the globals or
    any tenant are restored; the other tenant is restored."""
    repo = str(tmp_path / "repository")
    names = ("drexotic", "drnewdump", "drfine")
    arts = {}
    for db in names:
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
        pg.psql("CREATE DATABASE %s" % db)
        pg.psql("CREATE TABLE t AS SELECT i FROM generate_series(1, 25) i", db=db)
        arts[db] = backup.run(dict(pg.login, tenant=db, repository=repo, recipients=[keys["public"]]))
        pg.psql("DROP DATABASE %s WITH (FORCE)" % db)

    def doctor(tenant, edit):
        with open(arts[tenant]["manifest"]) as f:
            doc = json.load(f)
        edit(doc["source"])
        with open(arts[tenant]["manifest"], "w") as f:
            json.dump(doc, f)
    doctor("drexotic", lambda src: src["extensions"].append({"name": "lb_not_on_this_host", "version": "1.0"}))
    doctor("drnewdump", lambda src: src.update(pg_dump_version="99.0"))
    inv = write_inventory(tmp_path, pg, keys, s3, [{"name": n} for n in names], "inv")
    proc = playbook("dr_restore", inv, "-e", "dr_hosts=localhost", "-e", "dr_provision=false",
                    "-e", "dr_enable_timers=false", "-e", "dr_allow_unverified=true", "-e", "dr_restore_globals=false",
                    "-e", json.dumps({"lifeboat_repository": repo, "lifeboat_s3": {}}))
    assert glob.glob(str(tmp_path / "reports" / "dr_restore-*.json")), (failures(proc), proc.stdout[-3000:])
    rows = dict((r["tenant"], r) for r in newest_report(tmp_path)["rows"] if r["what"] == "tenant")
    assert rows["drfine"]["status"] == "OK", (rows, failures(proc))
    for tenant, fragment in (("drexotic", "needs the extension lb_not_on_this_host"),
                             ("drnewdump", "written by pg_dump 99.0")):
        refused = rows[tenant]
        assert refused["status"] == "FAILED", refused
        assert refused["artifact"] == os.path.basename(arts[tenant]["artifact"]), refused
        assert fragment in refused["message"] and "Nothing was changed" in refused["message"], refused
        assert pg.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % tenant) == "0"
    failed = failures(proc)
    assert any(f.startswith("Check, before anything is restored") for f in failed), failed
    assert not any(f.startswith("Restore each tenant") for f in failed), failed  # refused before, not tried
    assert pg.psql("SELECT count(*) FROM t", db="drfine") == "25"
    pg.psql("DROP DATABASE drfine WITH (FORCE)")
