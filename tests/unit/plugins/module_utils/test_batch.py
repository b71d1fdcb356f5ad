"""batch.py: many tenants in one module call, each in its own worker, failures isolated."""

import os

import pytest

from lifeboat_engine import batch, naming
from lifeboat_engine.errors import LifeboatError


def engine(params, check_mode=False):
    if params.get("boom") == "error":
        raise LifeboatError("tenant %s refused" % params["tenant"], option="database")
    if params.get("boom") == "crash":
        os._exit(3)  # a worker that dies without a result
    return {"tenant": params["tenant"], "changed": not check_mode, "seen": params.get("x")}


def test_each_tenant_has_its_row_in_order_and_a_failure_stays_its_own():
    jobs = [("a", {"tenant": "a", "x": 1}), ("b", {"tenant": "b", "boom": "error"}),
            ("c", {"tenant": "c", "boom": "crash"}), ("d", {"tenant": "d", "x": 4})]
    seen = []
    rows = batch.run(engine, jobs, parallel=2, on_done=lambda r: seen.append(r["tenant"]))
    assert [r["tenant"] for r in rows] == ["a", "b", "c", "d"]
    assert [r["failed"] for r in rows] == [False, True, True, False]
    assert rows[0]["seen"] == 1 and rows[0]["changed"] is True and rows[3]["seen"] == 4
    assert rows[1]["msg"] == "tenant b refused" and rows[1]["option"] == "database"
    assert "died without a result" in rows[2]["msg"]
    assert sorted(seen) == ["a", "b", "c", "d"]
    for r in rows:
        assert naming.parse_iso(r["started"][:19] + "Z") <= naming.parse_iso(r["finished"][:19] + "Z")
        assert r["seconds"] >= 0
    assert batch.summary(rows).startswith("2 of 4 tenant(s) FAILED: b: tenant b refused; c: ")


def test_check_mode_reaches_the_engine():
    rows = batch.run(engine, [("a", {"tenant": "a"})], parallel=1, check_mode=True)
    assert rows[0]["changed"] is False


@pytest.mark.parametrize("items, option", [
    ("acme", "tenants"),
    (["acme"], "tenants[0]"),
    ([{"tenant": "acme", "scheme": "x"}], "tenants[0].scheme"),
    ([{"database": "x"}], "tenants[0].tenant"),
    ([{"tenant": "Bad Name!"}], "tenants[0].tenant"),
    ([{"tenant": "acme"}, {"tenant": "acme"}], "tenants[1].tenant"),
    ([{"tenant": "acme"}, {"tenant": "b", "identity": "AGE-SECRET-KEY-1X"}], "tenants[1].identity"),
    ([{"tenant": "acme", "login_password": "pw"}], "tenants[0].login_password"),
])
def test_a_bad_list_is_refused_whole_naming_the_entry(items, option):
    with pytest.raises(LifeboatError) as e:
        batch.entries({"tenants": items}, allowed=("schema", "database"))
    assert e.value.option == option
    assert "Nothing was done" in str(e.value) or "Nothing was run" in str(e.value)
    assert "AGE-SECRET-KEY" not in str(e.value) and "pw" not in str(e.value).split()


def test_entries_drop_unset_keys_and_parallel_is_bounded():
    assert batch.entries({"tenants": [{"tenant": "acme", "schema": None, "database": "d"}]},
                         allowed=("schema", "database")) == [{"tenant": "acme", "database": "d"}]
    assert batch.parallel_of({}) == 2
    for bad in (0, 65, "2", True):
        with pytest.raises(LifeboatError) as e:
            batch.parallel_of({"parallel": bad})
        assert e.value.option == "parallel"
    assert batch.common({"tenants": [], "parallel": 3, "repository": "/r", "x": 1}, drop=("x",)) == {"repository": "/r"}
