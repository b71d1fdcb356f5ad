"""backup_batch.py: pg_backup's tenants list, checked whole, planned as the agent plans it, one row per tenant."""

import os
import sqlite3

import pytest

from lifeboat_engine import backup_batch
from lifeboat_engine.errors import LifeboatError

SHARED = {"repository": "/r", "recipients": ["age1shared"], "recipients_file": None, "compression_level": 1,
          "login_host": "db1", "login_port": 5432}


def plan(tenants, **params):
    return backup_batch.plan(dict(SHARED, tenants=tenants, parallel=2, **params))


def test_the_schema_tenants_of_a_database_are_one_pass_where_the_first_is_listed():
    jobs, passes = plan([{"tenant": "acme"},
                         {"tenant": "globex", "database": "saas", "schema": "globex"},
                         {"tenant": "initech", "engine": "sqlite", "path": "/t/initech.db"},
                         {"tenant": "umbrella", "database": "saas", "schema": "umbrella", "recipients": ["age1shared"]},
                         {"tenant": "hooli", "schema": "hooli"},
                         {"tenant": "own", "recipients_file": "/keys/own.txt", "compression_level": "3"}])
    assert [label for label, p in jobs] == ["acme", "saas (2 schema tenants)", "initech", "hooli (1 schema tenant)", "own"]
    by = dict(jobs)
    assert by["acme"]["tenant"] == "acme" and by["acme"]["engine"] == "postgresql" and "schemas" not in by["acme"]
    assert by["acme"]["recipients"] == ["age1shared"] and by["acme"]["login_host"] == "db1"
    saas = by["saas (2 schema tenants)"]
    assert saas["database"] == "saas" and "tenant" not in saas and saas["recipients"] == ["age1shared"]
    # a member with keys of its own takes them into the pass (backup_pass.member_recipients), the others the pass's
    assert saas["schemas"] == [{"tenant": "globex", "schema": "globex"},
                               {"tenant": "umbrella", "schema": "umbrella", "recipients": ["age1shared"]}]
    assert by["hooli (1 schema tenant)"]["database"] == "hooli"  # a schema tenant's database defaults to its name
    assert by["initech"]["path"] == "/t/initech.db" and by["initech"]["engine"] == "sqlite"
    # the tenant's own keys replace the shared ones (both), and its level is a number
    assert by["own"]["recipients_file"] == "/keys/own.txt" and "recipients" not in by["own"]
    assert by["own"]["compression_level"] == 3
    assert set(passes) == {"saas (2 schema tenants)", "hooli (1 schema tenant)"}
    assert "tenants" not in by["acme"] and "parallel" not in by["acme"]


@pytest.mark.parametrize("tenants, params, option, words", [
    ([{"tenant": "a", "scheme": "x"}], {}, "tenants[0].scheme", "unknown key"),
    ([{"tenant": "a", "compression_level": 30}], {}, "tenants[0].compression_level", "1 (fastest) to 19"),
    ([{"tenant": "a", "recipients": [""]}], {}, "tenants[0].recipients", "list of age recipients"),
    ([{"tenant": "a", "database": 5}], {}, "tenants[0].database", "must be a string"),
    ([{"tenant": "a", "database": "s", "schema": "a"}, {"tenant": "b", "database": "s", "schema": "b",
                                                        "compression_level": 5}],
     {}, "tenants[1].compression_level", "one pass"),
    ([{"tenant": "a", "recipients_mode": "add"}], {}, "tenants[0].recipients_mode", "own recipients"),
    ([{"tenant": "a", "recipients": ["age1x"], "recipients_mode": "both"}], {}, "tenants[0].recipients_mode", "replace"),
    ([{"tenant": "a", "database": "s", "schema": "x"}, {"tenant": "b", "database": "s", "schema": "x"}],
     {}, "tenants[0].schema", "named twice"),
    ([{"tenant": "a"}], {"tenant": "b"}, "tenant", "do not go together"),
    ([{"tenant": "a"}], {"globals": True}, "globals", "a call of their own"),
    ([{"tenant": "a"}], {"parallel": 0}, "parallel", "1 to 64"),
])
def test_a_bad_list_is_refused_whole_naming_the_entry(tenants, params, option, words, tmp_path):
    call = dict(SHARED, tenants=tenants, repository=str(tmp_path / "repo"))
    call.update(params)
    with pytest.raises(LifeboatError) as e:
        backup_batch.run(call)
    assert e.value.option == option, e.value
    assert words in str(e.value) and ("Nothing was done" in str(e.value) or option == "parallel"), e.value
    assert not (tmp_path / "repo").exists()


def test_a_pass_result_becomes_one_row_per_tenant_and_its_shared_part():
    passes = {"saas (3 schema tenants)": {"database": "saas", "members": [
        {"tenant": "globex", "schema": "globex"}, {"tenant": "umbrella", "schema": "umbrella"},
        {"tenant": "hooli", "schema": "hooli"}]},
        "down (1 schema tenant)": {"database": "down", "members": [{"tenant": "gone", "schema": "gone"}]}}
    when = {"started": "2026-12-06T02:00:00.000Z", "finished": "2026-12-06T02:00:01.000Z"}
    rows = [dict(when, tenant="acme", failed=False, changed=True, artifact="/r/acme/a1", size_stored=10, seconds=0.5),
            dict(when, tenant="saas (3 schema tenants)", failed=False, changed=True, seconds=1.0, warnings=["w1"],
                 failed_tenants=[{"tenant": "hooli", "error": "schema 'hooli' does not exist"}],
                 artifacts=[{"tenant": "_shared_saas", "action": "written", "artifact": "/r/_shared_saas/s1",
                             "size_stored": 5, "seconds": 0.1},
                            {"tenant": "umbrella", "action": "written", "artifact": "/r/umbrella/u1", "seconds": 0.2},
                            {"tenant": "hooli", "action": "failed", "error": "schema 'hooli' does not exist"},
                            {"tenant": "globex", "action": "skip", "artifact": "/r/globex/g0"}]),
            dict(when, tenant="down (1 schema tenant)", failed=True, msg="Cannot connect", option="database",
                 seconds=0.01)]
    out = backup_batch.result(rows, passes)
    assert [r["tenant"] for r in out["rows"]] == ["acme", "_shared_saas", "globex", "umbrella", "hooli", "gone"]
    by = dict((r["tenant"], r) for r in out["rows"])
    assert by["_shared_saas"]["failed"] is False and by["_shared_saas"]["size_stored"] == 5
    assert by["umbrella"]["seconds"] == 0.2 and by["umbrella"]["started"] == when["started"]
    assert by["globex"]["skipped"] is True and by["globex"]["failed"] is False
    assert by["hooli"]["failed"] is True and by["hooli"]["msg"] == "schema 'hooli' does not exist"
    # a pass that failed as a whole: each of its tenants failed with its message, and no shared row
    assert by["gone"]["failed"] is True and by["gone"]["msg"] == "Cannot connect" and by["gone"]["option"] == "database"
    assert "_shared_down" not in by
    assert out["changed"] is True and out["warnings"] == ["saas (3 schema tenants): w1"]
    assert out["msg"].startswith("2 of 6 tenant(s) FAILED: hooli: schema 'hooli' does not exist; gone: Cannot connect")


def make_sqlite(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [("v%d" % i,) for i in range(rows)])
    conn.commit()
    conn.close()


def test_sqlite_tenants_in_workers_one_failure_stays_its_own(tmp_path):
    """Real backups (SQLite, unencrypted): a missing file, or a tenant's options that do not fit (as a single call
    would say), are their tenant's rows; the others are done; check mode writes nothing."""
    for name in ("one", "two"):
        make_sqlite(str(tmp_path / (name + ".db")), 20)
    repo = str(tmp_path / "repo")
    tenants = [{"tenant": "one", "engine": "sqlite", "path": str(tmp_path / "one.db")},
               {"tenant": "gone", "engine": "sqlite", "path": str(tmp_path / "gone.db")},
               {"tenant": "two", "engine": "sqlite", "path": str(tmp_path / "two.db")},
               {"tenant": "nopath", "engine": "sqlite"}, {"tenant": "pgpath", "path": str(tmp_path / "one.db")}]
    params = {"repository": repo, "allow_unencrypted": True, "tenants": tenants, "parallel": 2}
    check = backup_batch.run(dict(params), check_mode=True)
    assert [r["tenant"] for r in check["rows"]] == ["one", "gone", "two", "nopath", "pgpath"]
    assert [r["failed"] for r in check["rows"]] == [False, True, False, True, True] and not os.path.exists(repo)
    out = backup_batch.run(dict(params))
    assert [r["failed"] for r in out["rows"]] == [False, True, False, True, True], out
    one, gone, two, nopath, pgpath = out["rows"]
    assert nopath["option"] == "path" and "engine sqlite needs path" in nopath["msg"]
    assert pgpath["option"] == "path" and "path applies to engine sqlite" in pgpath["msg"]
    assert os.path.isfile(one["artifact"]) and os.path.isfile(two["artifact"]) and one["rows"] == 20
    assert "gone.db" in gone["msg"] and gone["option"] == "path" and "artifact" not in gone
    assert sorted(os.listdir(repo)) == ["one", "two"]
    assert out["msg"].startswith("3 of 5 tenant(s) FAILED: gone: ")
