"""backup_verify on real artifacts: PASS, each kind of FAIL, and nothing left behind."""

import glob
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import lbtest
from lifeboat_engine import backup, crypto, manifest, naming, pipeline, repository


def scratch_databases(pg):
    return pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'lb\\_v\\_%'").split()


def leftovers():
    return glob.glob("/tmp/lifeboat-verify-*")


@pytest.fixture(scope="module")
def acme(pg, keys, tmp_path_factory):
    """A database tenant and one good encrypted artifact of it."""
    pg.psql("CREATE DATABASE vacme")
    pg.psql("CREATE TABLE bookings (id serial PRIMARY KEY, guest text, nights int, paid numeric, meta jsonb, doc bytea);"
            "INSERT INTO bookings (guest, nights, paid, meta, doc) SELECT 'g' || i, i % 9, i * 1.5, "
            "jsonb_build_object('i', i), decode(md5(i::text), 'hex') FROM generate_series(1, 3000) i", db="vacme")
    repo = str(tmp_path_factory.mktemp("verify") / "repo")
    res = backup.run(dict(pg.login, tenant="vacme", repository=repo, recipients=[keys["public"]]))
    return {"repo": repo, "artifact": res["artifact"], "manifest": res["manifest"]}


def copy_repo(src, dst):
    subprocess.run(["cp", "-a", src, dst], check=True)
    return dst


def verify_args(pg, keys, repo, **kw):
    args = dict(pg.login, repository=repo, identity_file=keys["identity"], fail_on_error=False)
    args.update(kw)
    return args


def by_name(result):
    return {c["name"]: c for c in result["checks"]}


def test_a_good_artifact_passes_and_is_recorded(pg, keys, acme, tmp_path):
    repo = copy_repo(acme["repo"], str(tmp_path / "r"))
    queries = [{"query": "SELECT count(*) FROM bookings", "min": 3000}]
    args = verify_args(pg, keys, repo, tenant="vacme", max_age="1h", fail_on_error=True, queries=queries)
    res = lbtest.run_module("backup_verify", args)
    assert res.get("failed") is not True, res
    assert res["status"] == "PASS" and res["changed"] is True
    checks = by_name(res)
    for name in ("manifest", "checksum", "decrypt", "restore", "row_counts", "query 0", "freshness"):
        assert checks[name]["status"] == "PASS", checks[name]
    assert checks["size_anomaly"]["status"] == "SKIP"
    record = json.load(open(res["records"][0]))
    assert record["status"] == "PASS" and record["artifact"] == os.path.basename(acme["artifact"])
    assert oct(os.stat(res["records"][0]).st_mode & 0o777) == "0o600"
    assert scratch_databases(pg) == [] and leftovers() == []
    assert pg.password not in json.dumps(res)
    # check mode verifies too but records nothing new
    os.unlink(res["records"][0])
    dry = lbtest.run_module("backup_verify", verify_args(pg, keys, repo, tenant="vacme"), check=True)
    assert dry["status"] == "PASS" and not os.path.exists(res["records"][0])


def _flip(path, where):
    data = bytearray(open(path, "rb").read())
    pos = {"middle": len(data) // 2, "header": 40, "end": len(data) - 3}[where]
    data[pos] ^= 0x10
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("damage,failed", [
    ("flip-middle", {"checksum", "decrypt"}),
    ("flip-header", {"checksum", "decrypt"}),
    ("truncate", {"checksum", "decrypt"}),
    ("no-manifest", {"manifest"}),
    ("wrong-key", {"decrypt"}),
    ("lying-rowcount", {"row_counts"}),
    ("lying-hash", {"checksum"}),
    ("lying-recipients", {"recipients"}),
    ("malformed-json", {"manifest"}),
])
def test_damage_fails_with_the_right_check_named(pg, keys, acme, tmp_path, damage, failed):
    repo = copy_repo(acme["repo"], str(tmp_path / "r"))
    art = os.path.join(repo, "vacme", os.path.basename(acme["artifact"]))
    man = os.path.join(repo, "vacme", os.path.basename(acme["manifest"]))
    kw = {}
    if damage.startswith("flip"):
        _flip(art, damage.split("-")[1])
    elif damage == "truncate":
        os.truncate(art, os.path.getsize(art) // 2)
    elif damage == "no-manifest":
        os.unlink(man)
        kw["artifact"] = os.path.basename(art)
    elif damage == "wrong-key":
        kw["identity_file"] = keys["other_identity"]
    elif damage.startswith("lying"):
        doc = json.load(open(man))
        if damage == "lying-rowcount":
            doc["row_counts"]["public.bookings"] += 1
        elif damage == "lying-recipients":
            doc["encryption"]["recipients"] = [keys["other_public"]]
        else:
            doc["sha256"] = "f" * 64
        os.chmod(man, 0o600)
        open(man, "w").write(json.dumps(doc))
    elif damage == "malformed-json":
        open(man, "w").write('{"manifest_version": 1, "tenant": ')
        kw["artifact"] = os.path.basename(art)
    res = lbtest.run_module("backup_verify", verify_args(pg, keys, repo, tenant="vacme", fail_on_error=True, **kw))
    assert res.get("failed") is True, res
    assert set(res["failed_checks"]) == failed, res["checks"]
    for name in failed:
        assert name in res["msg"]
    assert scratch_databases(pg) == [] and leftovers() == []


def test_a_dump_whose_restore_errors_fails_restore(pg, keys, tmp_path):
    """An artifact whose bytes match its manifest but are not a pg_dump archive."""
    repo = repository.open_repository(str(tmp_path / "r"))
    stamp = naming.format_stamp(naming.utcnow())
    name = naming.artifact_name("broken", stamp, "pgdump", True, True)
    w = repo.new_writer("broken", name)
    sizes = pipeline.store(io.BytesIO(b"PGDMP but not really\n" * 1000), w, crypto.load_recipients([keys["public"]])[0], 3, 0)
    w.commit()
    now = naming.utcnow()
    repo.write_json("broken", naming.manifest_name("broken", stamp), manifest.build(
        "broken", "postgresql", "pgdump", name, stamp, now, now, sizes, sizes["sha256"], 3, [keys["public"]], {}, {}))
    res = lbtest.run_module("backup_verify", verify_args(pg, keys, str(tmp_path / "r"), tenant="broken"))
    assert res["status"] == "FAIL" and res["failed_checks"] == ["restore"], res
    assert "pg_restore" in by_name(res)["restore"]["detail"]
    assert by_name(res)["checksum"]["status"] == "PASS"
    record = json.load(open(res["records"][0]))
    assert record["status"] == "FAIL"  # prune will not count it as verified
    assert scratch_databases(pg) == []


def test_a_stale_newest_backup_fails_freshness(pg, keys, acme, tmp_path):
    repo = copy_repo(acme["repo"], str(tmp_path / "r"))
    time.sleep(1.1)
    res = lbtest.run_module("backup_verify", verify_args(pg, keys, repo, tenant="vacme", max_age="1s"))
    assert res["status"] == "FAIL" and res["failed_checks"] == ["freshness"], res["checks"]
    assert "backup timer" in by_name(res)["freshness"]["detail"]


def test_sqlite_artifact_queries_and_size_anomaly(keys, tmp_path):
    db = str(tmp_path / "t.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, name TEXT, pad TEXT)")
    conn.executemany("INSERT INTO guests (name, pad) VALUES (?, ?)", [("g%d" % i, os.urandom(50).hex()) for i in range(5000)])
    conn.commit()
    repo = str(tmp_path / "r")
    for _round in range(2):
        backup.run(dict(tenant="tiny", engine="sqlite", path=db, repository=repo, recipients=[keys["public"]]))
        time.sleep(1.05)
    conn.execute("DELETE FROM guests WHERE id > 10")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    backup.run(dict(tenant="tiny", engine="sqlite", path=db, repository=repo, recipients=[keys["public"]]))
    res = lbtest.run_module("backup_verify", dict(repository=repo, identity_file=keys["identity"], fail_on_error=False,
                                                  queries=[{"query": "SELECT count(*) FROM guests", "min": 100, "name": "guests"}]))
    checks = by_name(res)
    assert checks["size_anomaly"]["status"] == "WARN" and "median" in checks["size_anomaly"]["detail"]
    assert checks["query guests"]["status"] == "FAIL" and "< min" in checks["query guests"]["detail"]
    assert checks["restore"]["status"] == "PASS" and checks["row_counts"]["status"] == "PASS"
    assert res["status"] == "FAIL" and res["failed_checks"] == ["query guests"]
    assert leftovers() == []


def test_legacy_plain_dumps(keys, tmp_path):
    folder = tmp_path / "legacy"
    folder.mkdir()
    db = str(tmp_path / "src.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO guests (name) VALUES (?)", [("g%d" % i,) for i in range(50)])
    conn.commit()
    conn.close()
    dump = subprocess.run(["sqlite3", db, ".dump"], capture_output=True, text=True, check=True).stdout
    old = folder / "acme-20250101.sql"
    old.write_text("this is not SQL;")
    os.utime(old, (1, 1))
    (folder / "acme-20250102.sql").write_text(dump)
    res = lbtest.run_module("backup_verify", dict(legacy_glob=str(folder / "acme-*.sql"), tenant="acme",
                                                  queries=[{"query": "SELECT count(*) FROM guests", "equals": 50}]))
    assert res.get("failed") is not True and res["status"] == "PASS", res
    assert by_name(res)["manifest"]["status"] == "SKIP" and res["artifact"].endswith("acme-20250102.sql")
    # encrypted legacy dump, newest
    subprocess.run(["age", "-r", keys["public"], "-o", str(folder / "acme-20250103.sql.age"), str(folder / "acme-20250102.sql")],
                   check=True)
    res = lbtest.run_module("backup_verify", dict(legacy_glob=str(folder / "acme-*.sql*"), identity_file=keys["identity"]))
    assert res["status"] == "PASS" and by_name(res)["decrypt"]["status"] == "PASS", res
    os.utime(old, None)  # the broken one is now the newest
    res = lbtest.run_module("backup_verify", dict(legacy_glob=str(folder / "acme-*.sql"), fail_on_error=False))
    assert res["status"] == "FAIL" and res["failed_checks"] == ["restore"]


def test_killed_verify_leaves_no_scratch_database(pg, keys, acme, tmp_path):
    pg.psql("CREATE DATABASE vbig")
    pg.psql("CREATE TABLE t AS SELECT i, md5(i::text) AS h, repeat('x', 200) AS pad FROM generate_series(1, 300000) i", db="vbig")
    repo = str(tmp_path / "r")
    backup.run(dict(pg.login, tenant="vbig", repository=repo, recipients=[keys["public"]]))
    code = textwrap.dedent("""
        import sys, json; sys.path.insert(0, %r)
        import lbtest; lbtest.load_engine()
        from lifeboat_engine import verify
        verify.run(json.loads(sys.argv[1]))
    """ % str(lbtest.ROOT / "tests"))
    args = json.dumps(dict(pg.login, repository=repo, tenant="vbig", identity_file=keys["identity"]))
    proc = subprocess.Popen([sys.executable, "-c", code, args])
    deadline = time.time() + 60
    seen = []
    while time.time() < deadline and not seen:
        seen = scratch_databases(pg)
        time.sleep(0.02)
    assert seen, "the scratch database never appeared"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and scratch_databases(pg):
        time.sleep(0.1)
    assert scratch_databases(pg) == [], "the janitor did not drop the scratch database"


def test_verify_on_s3(keys, s3, tmp_path):
    db = str(tmp_path / "s.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO guests (name) VALUES (?)", [("g%d" % i,) for i in range(500)])
    conn.commit()
    conn.close()
    url = s3.url("fleet")
    res = backup.run(dict(s3.options(), tenant="cloudy", engine="sqlite", path=db, repository=url, recipients=[keys["public"]]))
    out = lbtest.run_module("backup_verify", dict(s3.options(), repository=url, identity_file=keys["identity"]))
    assert out["status"] == "PASS", out
    stamp = res["artifacts"][0]["stamp"]
    record = json.loads(s3.get("fleet/cloudy/cloudy-%s.verify.json" % stamp))
    assert record["status"] == "PASS"
    assert leftovers() == []
