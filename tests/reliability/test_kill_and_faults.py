"""Faults injected into real runs: SIGKILL at many points, a full file system,
PostgreSQL restarted mid-dump and mid-restore. Nothing may look complete that
is not, earlier artifacts stay intact, the next run succeeds."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import lbtest
from lifeboat_engine import backup, repository, restore
from lifeboat_engine.errors import LifeboatError

KILLER = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, %(tests)r)
    import lbtest; lbtest.load_engine()
    from lifeboat_engine import backup, repository
    mode, value = sys.argv[1], int(sys.argv[2])
    params = json.loads(sys.stdin.read())

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def progress(n):
        if mode == "bytes" and n >= value:
            die()

    if mode == "after-commit":
        commit = repository.LocalWriter.commit
        def patched(self):
            path = commit(self)
            if not self.final_name.endswith(".json"):
                die()
            return path
        repository.LocalWriter.commit = patched
    if mode == "mid-manifest":
        write = repository.LocalWriter.write
        def patched(self, data):
            if self.final_name.endswith(".manifest.json"):
                write(self, bytes(data[:len(data) // 2]))
                die()
            return write(self, data)
        repository.LocalWriter.write = patched
    backup.run(params, progress=progress)
    print("finished")
""") % {"tests": str(lbtest.ROOT / "tests")}


def test_sigkill_at_many_points_never_leaves_a_complete_looking_artifact(big, keys, tmp_path):
    root = str(tmp_path / "repo")
    params = dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]])
    first = backup.run(params)  # an earlier artifact that must survive everything
    raw_mib = first["size_raw"] // (1 << 20)
    assert raw_mib >= 20, "the tenant must dump to 20 MiB or more (got %d)" % raw_mib
    trials = [("bytes", mib) for mib in range(1, 21)] + [("after-commit", 0), ("mid-manifest", 0)]
    outcomes = []
    for mode, value in trials:
        proc = subprocess.run([sys.executable, "-c", KILLER, mode, str(value)], input=json.dumps(params), text=True,
                              capture_output=True, check=False, timeout=120)
        assert proc.returncode == -9, (mode, value, proc.stdout, proc.stderr[-2000:])
        honest = lbtest.complete_artifacts_are_honest(root, "rel")
        assert os.path.basename(first["artifact"]) in honest
        assert len(honest) == 1, "a killed run left something that looks complete: %s" % honest
        outcomes.append((mode, value))
    assert len(outcomes) >= 20
    # the next run succeeds: the lock is free and it clears what the killed runs left
    after = backup.run(params)
    assert after["changed"]
    assert repository.open_repository(root).partial_files("rel") == []
    assert len(lbtest.complete_artifacts_are_honest(root, "rel")) == 2
    # incomplete artifacts (published, never got a manifest) are visible as such, for prune to remove
    incomplete = [a for a in repository.open_repository(root).artifacts("rel") if not a["complete"]]
    assert len(incomplete) == 2  # after-commit and mid-manifest


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and needs root, as make test runs")
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(mnt)], check=True)
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_file_system_is_a_clear_error_and_keeps_what_was_there(big, keys, tmp_path, small_fs):
    import sqlite3
    db = str(tmp_path / "small.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    earlier = backup.run(dict(tenant="rel", engine="sqlite", path=db, repository=small_fs, recipients=[keys["public"]]))
    before = sorted(os.listdir(os.path.join(small_fs, "rel")))
    with pytest.raises(LifeboatError) as e:
        backup.run(dict(big.login, tenant="rel", repository=small_fs, recipients=[keys["public"]]))
    assert "full" in str(e.value) and "nothing was published" in str(e.value)
    assert sorted(os.listdir(os.path.join(small_fs, "rel"))) == before
    assert lbtest.complete_artifacts_are_honest(small_fs, "rel") == [os.path.basename(earlier["artifact"])]


def _restart(pg):
    subprocess.run(["pg_ctlcluster", str(pg.version), pg.name, "restart", "-m", "fast"], check=True, capture_output=True)


def test_postgresql_restarted_during_a_dump(big, keys, tmp_path):
    root = str(tmp_path / "repo")
    done = []

    def progress(n):
        if n >= 3 << 20 and not done:
            done.append(n)
            _restart(big)

    with pytest.raises(LifeboatError) as e:
        backup.run(dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]]), progress=progress)
    assert done and "pg_dump" in str(e.value)
    assert lbtest.complete_artifacts_are_honest(root, "rel") == []
    assert backup.run(dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]]))["changed"]


def test_postgresql_restarted_during_a_restore_leaves_the_target_as_it_was(big, keys, tmp_path):
    root = str(tmp_path / "repo")
    backup.run(dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]]))
    big.psql("CREATE DATABASE rel_target")
    big.psql("CREATE TABLE keep_me AS SELECT i FROM generate_series(1, 1000) i", db="rel_target")
    with big.connect("rel_target") as conn:
        before = lbtest.table_checksums(conn)
    done = []

    def progress(n):
        if n >= 3 << 20 and not done:
            done.append(n)
            _restart(big)

    with pytest.raises(LifeboatError):
        restore.run(dict(big.login, tenant="rel", repository=root, artifact="latest", target_database="rel_target",
                         force=True, replace_target="rel_target", keep_safety_copy=False, identity_file=keys["identity"]), progress=progress)
    assert done
    with big.connect("rel_target") as conn:
        assert lbtest.table_checksums(conn) == before


RESTORE_KILLER = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, %(tests)r)
    import lbtest; lbtest.load_engine()
    from lifeboat_engine import restore
    limit = int(sys.argv[1])

    def progress(n):
        if n >= limit:
            os.kill(os.getpid(), signal.SIGKILL)

    restore.run(json.loads(sys.stdin.read()), progress=progress)
    print("finished")
""") % {"tests": str(lbtest.ROOT / "tests")}


def test_a_restore_killed_mid_stream_leaves_the_target_and_no_partial_database(big, keys, tmp_path):
    root = str(tmp_path / "repo")
    backup.run(dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]]))
    big.psql("CREATE DATABASE rel_killed")
    big.psql("CREATE TABLE keep_me AS SELECT i FROM generate_series(1, 1000) i", db="rel_killed")
    with big.connect("rel_killed") as conn:
        before = lbtest.table_checksums(conn)
    params = dict(big.login, tenant="rel", repository=root, artifact="latest", target_database="rel_killed",
                  force=True, replace_target="rel_killed", keep_safety_copy=False, identity_file=keys["identity"])
    proc = subprocess.run([sys.executable, "-c", RESTORE_KILLER, str(2 << 20)], input=json.dumps(params).encode(),
                          capture_output=True, timeout=300, check=False)
    assert proc.returncode == -9 and b"finished" not in proc.stdout, proc.stderr.decode()[-2000:]

    def partial():
        return big.psql("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'lb\\_r\\_%'")

    # The janitor (its own session, fed through a pipe) drops the partial restore once the run is gone.
    deadline = time.monotonic() + 30
    while partial() != "" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert partial() == "", "a partial restore database was left behind: %s" % partial()
    with big.connect("rel_killed") as conn:
        assert lbtest.table_checksums(conn) == before
    # The next run succeeds.
    out = restore.run(params)
    assert out["changed"] is True
    big.psql("DROP DATABASE rel_killed")


def test_a_create_mode_restore_killed_mid_stream_puts_the_original_database_back(big, keys, tmp_path):
    """allow_create_in_dump: pg_restore --create makes the target itself; killed, the janitor undoes it."""
    root = str(tmp_path / "repo")
    backup.run(dict(big.login, tenant="rel", repository=root, recipients=[keys["public"]]))
    big.psql("CREATE TABLE added_after_backup AS SELECT 1 AS i", db="rel")  # tells the original from a restore
    with big.connect("rel") as conn:
        before = lbtest.table_checksums(conn)
    params = dict(big.login, tenant="rel", repository=root, artifact="latest", allow_create_in_dump=True,
                  force=True, keep_safety_copy=False, identity_file=keys["identity"])
    earlier = set((big.psql("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'lb\\_s\\_%'")
                   or "").split(","))
    proc = subprocess.run([sys.executable, "-c", RESTORE_KILLER, str(2 << 20)], input=json.dumps(params).encode(),
                          capture_output=True, timeout=300, check=False)
    assert proc.returncode == -9 and b"finished" not in proc.stdout, proc.stderr.decode()[-2000:]

    def state():
        # the session's cluster may hold other tests' safety copies: only this restore's count
        found = big.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database "
                         "WHERE datname = 'rel' OR datname LIKE 'lb\\_s\\_%'").split(",")
        return ",".join(n for n in found if n not in earlier)

    deadline = time.monotonic() + 30
    while state() != "rel" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state() == "rel", "the safety copy was not put back: %s" % state()
    with big.connect("rel") as conn:
        assert lbtest.table_checksums(conn) == before  # the original, not a partial restore
    # The next run succeeds, and replaces the database with the backup's contents.
    out = restore.run(params)
    assert out["changed"] is True and out["safety_copy"]["dropped"] is True
    with big.connect("rel") as conn:
        after = lbtest.table_checksums(conn)
    assert "public.added_after_backup" not in after and after["public.guests"] == before["public.guests"]
