"""The pass's pipeline (backup_pass._Dumper, spool.py): the groups' pg_dump runs go one at a
time in a thread of their own, split into spools ahead of the artifacts' writes, which
``WRITERS`` threads do. Real PostgreSQL and age; the lock budget and the read-ahead limit are
made small so that a few dozen schema tenants need several groups.

- Never two pg_dump processes at once (the lock budget is per run), whatever the read-ahead.
- Every tenant's artifact holds its own rows, with read-ahead (everything spooled) and without
  (a spool of one byte: the dump streams at the writers' pace).
- A tenant whose write fails (its lock is held) is retried alone and reported; the rest of its
  group is written from the spools.
- A stream that breaks in the middle of a group: what it had not given goes alone.
"""

import os

import pytest

from lifeboat_engine import backup_pass, pgarchive, repository

SCHEMAS = 40
TABLES = 4


@pytest.fixture(scope="module")
def many(pg):
    db = "pipeline_mt"
    pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    pg.psql("CREATE DATABASE %s" % db)
    body = "".join("CREATE SCHEMA s%02d; %s" % (i, "".join(
        "CREATE TABLE s%02d.t%d (id int PRIMARY KEY, v text); "
        "INSERT INTO s%02d.t%d SELECT g, 's%02d.t%d.' || g FROM generate_series(1, %d) g;"
        % (i, j, i, j, i, j, 10 + i * 3 + j) for j in range(TABLES))) for i in range(SCHEMAS))
    pg.psql(body, db=db)
    yield db
    pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


class OneAtATime(object):
    """Tool.reading as backup_pass calls it, checking that no other pg_dump still runs."""

    def __init__(self, monkeypatch):
        self.procs = []
        self.overlaps = []
        real = backup_pass.Tool.reading

        def reading(argv, env):
            alive = [p for p in self.procs if p.poll() is None]
            if alive:
                self.overlaps.append(len(alive))
            tool = real(argv, env)
            self.procs.append(tool.proc)
            return tool
        monkeypatch.setattr(backup_pass.Tool, "reading", staticmethod(reading))


def run_pass(pg, db, repo, keys, **extra):
    params = dict(pg.login, database=db, repository=repo, recipients=[keys["public"]],
                  schemas=[{"tenant": "s%02d" % i} for i in range(SCHEMAS)])
    params.update(extra)
    return backup_pass.run(params)


def written(res):
    return sorted(a["tenant"] for a in res["artifacts"] if a["action"] == "written")


@pytest.mark.parametrize("spool_bytes", [1, 64 << 20], ids=["streaming", "read-ahead"])
def test_one_pg_dump_at_a_time_and_every_tenant_has_its_rows(pg, many, keys, tmp_path, monkeypatch, spool_bytes):
    monkeypatch.setattr(backup_pass, "LOCK_SHARE", 10 ** 6)  # the smallest budget: 64 tables, 16 schemas a run
    monkeypatch.setattr(backup_pass, "SPOOL_BYTES", spool_bytes)
    watch = OneAtATime(monkeypatch)
    res = run_pass(pg, many, str(tmp_path / "r"), keys)
    assert res["failed_tenants"] == [], res["msg"]
    assert res["lock_budget"] == 64
    assert res["pg_dump_runs"] == 4  # the shared part and three groups of 16, 16 and 8 schemas
    assert len(watch.procs) == 4 and watch.overlaps == []  # the shared part's pg_dump too
    assert written(res) == sorted(["_shared_" + many] + ["s%02d" % i for i in range(SCHEMAS)])
    if spool_bytes == 1:
        assert res["spool_peak_bytes"] <= 1 << 20  # one chunk at a time
    repo = repository.open_repository(str(tmp_path / "r"))
    for i in (0, 17, 39):
        tenant = "s%02d" % i
        art = [a for a in res["artifacts"] if a["tenant"] == tenant][0]
        doc = repo.read_json(tenant, os.path.basename(art["manifest"]))
        assert doc["row_counts"] == dict(('%s.t%d' % (tenant, j), 10 + i * 3 + j) for j in range(TABLES)), doc
        assert doc["source"]["schema"] == tenant


def test_a_tenant_whose_write_fails_is_retried_alone_and_its_group_goes_on(pg, many, keys, tmp_path, monkeypatch):
    monkeypatch.setattr(backup_pass, "LOCK_SHARE", 10 ** 6)
    repo_path = str(tmp_path / "r")
    repo = repository.open_repository(repo_path)
    with repo.lock("s05", "a test holding the lock", 0):
        res = run_pass(pg, many, repo_path, keys)
    assert [f["tenant"] for f in res["failed_tenants"]] == ["s05"], res["msg"]
    assert "a test holding the lock" in res["failed_tenants"][0]["error"]
    assert written(res) == sorted(["_shared_" + many] + ["s%02d" % i for i in range(SCHEMAS) if i != 5])
    assert res["pg_dump_runs"] == 4  # its retry stopped at the lock, before any pg_dump
    assert not [n for n in os.listdir(os.path.join(repo_path, "s05")) if n.endswith(".age")]


def test_a_stream_that_breaks_in_a_group_leaves_the_rest_to_runs_of_their_own(pg, many, keys, tmp_path, monkeypatch):
    monkeypatch.setattr(backup_pass, "LOCK_SHARE", 10 ** 6)
    real = pgarchive.Splitter.__next__
    seen = []

    def breaking(self):
        if len(seen) == 3:  # in the first group, after three schemas
            seen.append("broken")
            raise pgarchive.ArchiveError("the test broke the stream")
        item = real(self)
        seen.append(item[0])
        return item
    monkeypatch.setattr(pgarchive.Splitter, "__next__", breaking)
    watch = OneAtATime(monkeypatch)
    res = run_pass(pg, many, str(tmp_path / "r"), keys)
    assert res["failed_tenants"] == [], res["msg"]
    assert written(res) == sorted(["_shared_" + many] + ["s%02d" % i for i in range(SCHEMAS)])
    assert any("the test broke the stream" in w and "one by one" in w for w in res.get("warnings", [])), res
    assert watch.overlaps == []
    assert res["pg_dump_runs"] == 4 + 13  # the 13 schemas the broken group had not given, alone


def test_an_error_in_the_dump_thread_fails_the_pass_and_stops_its_pg_dump(pg, many, keys, tmp_path, monkeypatch):
    monkeypatch.setattr(backup_pass, "LOCK_SHARE", 10 ** 6)

    def crash(*args):
        raise RuntimeError("a bug in the dump thread")
    monkeypatch.setattr(pgarchive, "owners", crash)
    watch = OneAtATime(monkeypatch)
    with pytest.raises(RuntimeError, match="a bug in the dump thread"):
        run_pass(pg, many, str(tmp_path / "r"), keys)
    assert watch.procs and all(p.poll() is not None for p in watch.procs)
