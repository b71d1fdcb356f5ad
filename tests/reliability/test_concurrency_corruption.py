"""Concurrency (backup/backup, prune/backup, restore/backup) and corruption
of stored artifacts: locks hold, nothing corrupt, restore never loads
damaged data."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import lbtest
from lifeboat_engine import backup, prune, repository, restore, verify
from lifeboat_engine.errors import LifeboatError


SLOW_BACKUP = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, %(tests)r)
    import lbtest; lbtest.load_engine()
    from lifeboat_engine import backup
    from lifeboat_engine.errors import LifeboatError
    params = json.loads(sys.stdin.read())
    try:
        res = backup.run(params, progress=lambda n: time.sleep(0.08))
        print(json.dumps({"ok": True, "artifact": res["artifact"]}))
    except LifeboatError as e:
        print(json.dumps({"ok": False, "msg": str(e)}))
""") % {"tests": str(lbtest.ROOT / "tests")}


def start_slow_backup(params):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BACKUP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(params))
    proc.stdin.close()
    return proc


def wait_for(predicate, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def finish(proc):
    out = proc.stdout.read()
    proc.wait()
    return json.loads(out.strip().splitlines()[-1])


def test_two_backups_of_one_tenant(big, keys, tmp_path):
    root = str(tmp_path / "repo")
    params = dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]])
    first = start_slow_backup(params)
    repo = repository.open_repository(root)
    assert wait_for(lambda: os.path.isdir(os.path.join(root, "rel")) and repo.partial_files("rel"))
    with pytest.raises(LifeboatError) as e:
        backup.run(params)
    assert "already holds the lock" in str(e.value) and "lock_timeout" in str(e.value)
    waiting = backup.run(dict(params, lock_timeout=120))  # waits for the first, then runs
    assert finish(first)["ok"] is True
    assert len(lbtest.complete_artifacts_are_honest(root, "rel")) == 2
    assert waiting["changed"]


def test_prune_during_a_backup_leaves_it_alone(big, keys, tmp_path):
    root = str(tmp_path / "repo")
    params = dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]])
    backup.run(params)
    backup.run(params)  # two complete artifacts: keep_last 0 wants the older one gone
    running = start_slow_backup(params)
    repo = repository.open_repository(root)
    assert wait_for(lambda: repo.partial_files("rel"))
    partial = repo.partial_files("rel")
    res = prune.run(dict(repository=root, keep_last=0, incomplete_grace="0s"))
    assert res["changed"] is False and res["deleted"] == []
    assert "rel" in res["skipped_tenants"] and "backup of tenant rel" in res["skipped_tenants"]["rel"]
    assert set(partial) <= set(repo.partial_files("rel"))  # the running backup's file is untouched
    out = finish(running)
    assert out["ok"] is True, out
    assert len(lbtest.complete_artifacts_are_honest(root, "rel")) == 3
    res = prune.run(dict(repository=root, keep_last=0))  # now the lock is free
    assert len(res["deleted"]) == 2


def test_restore_during_a_backup_is_refused_or_safe(big, keys, tmp_path):
    root = str(tmp_path / "repo")
    params = dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]])
    backup.run(params)
    with big.connect("rel") as conn:
        before = lbtest.table_checksums(conn)
    running = start_slow_backup(params)
    assert wait_for(lambda: repository.open_repository(root).partial_files("rel"))
    try:
        res = restore.run(dict(big.login, tenant="rel", repository=root, artifact="latest", force=True,
                               identity_file=keys["identity"]))
        outcome = "restored: " + str(res.get("replaced"))
    except LifeboatError as e:
        outcome = "refused: " + str(e)
        assert "connect" in str(e) or "session" in str(e) or "lock" in str(e), str(e)
    out = finish(running)
    assert out["ok"] or "pg_dump" in out["msg"], out  # the backup finished, or failed and said why
    lbtest.complete_artifacts_are_honest(root, "rel")
    with big.connect("rel") as conn:
        assert lbtest.table_checksums(conn) == before, outcome  # same data either way


@pytest.fixture
def sqlite_artifact(keys, tmp_path):
    db = str(tmp_path / "src.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, name TEXT, blob BLOB)")
    conn.executemany("INSERT INTO guests (name, blob) VALUES (?, ?)", [("g%d" % i, os.urandom(64)) for i in range(20000)])
    conn.commit()
    conn.close()
    root = str(tmp_path / "repo")
    res = backup.run(dict(tenant="cor", engine="sqlite", path=db, repository=root, recipients=[keys["public"]]))
    target = str(tmp_path / "target.db")
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE precious (v TEXT)")
    conn.execute("INSERT INTO precious VALUES ('do not lose me')")
    conn.commit()
    conn.close()
    return {"root": root, "artifact": res["artifact"], "manifest": res["manifest"], "target": target}


def _damage(art, man, how, keys):
    if how.startswith("flip-"):
        data = bytearray(open(art, "rb").read())
        pos = {"header": 30, "first-chunk": 300, "middle": len(data) // 2, "last-chunk": len(data) - 20}[how[5:]]
        data[pos] ^= 0x01
        open(art, "wb").write(bytes(data))
    elif how == "truncate":
        os.truncate(art, os.path.getsize(art) - 1000)
    elif how == "malformed-json":
        open(man, "w").write("{not json")
    else:
        doc = json.load(open(man))
        if how == "lie-size":
            doc["size"]["stored"] += 1
        elif how == "lie-hash":
            doc["sha256"] = "0" * 64
        elif how == "lie-rows":
            doc["row_counts"]["guests"] -= 1
        elif how == "lie-recipients":
            doc["encryption"]["recipients"] = [keys["other_public"]]
        open(man, "w").write(json.dumps(doc))


DAMAGES = ["flip-header", "flip-first-chunk", "flip-middle", "flip-last-chunk", "truncate", "malformed-json",
           "lie-size", "lie-hash", "lie-rows", "lie-recipients"]


@pytest.mark.parametrize("how", DAMAGES)
def test_corruption_is_detected_by_verify_and_restore(keys, sqlite_artifact, how):
    art, man, target = sqlite_artifact["artifact"], sqlite_artifact["manifest"], sqlite_artifact["target"]
    _damage(art, man, how, keys)
    before = lbtest.sqlite_checksums(target)
    res = verify.run(dict(repository=sqlite_artifact["root"], tenant="cor", artifact=os.path.basename(art),
                          identity_file=keys["identity"]))
    assert res["status"] == "FAIL", (how, res["checks"])
    if how == "lie-recipients":
        # the data itself is intact; only the record of who can decrypt it lies: verify catches it,
        # restoring the (authentic, checksummed) data is not loading corrupt data.
        assert res["failed_checks"] == ["recipients"]
        return
    with pytest.raises(LifeboatError):
        restore.run(dict(tenant="cor", engine="sqlite", repository=sqlite_artifact["root"], artifact=os.path.basename(art),
                         target_path=target, force=True, identity_file=keys["identity"]))
    assert lbtest.sqlite_checksums(target) == before, "restore loaded damaged data"
