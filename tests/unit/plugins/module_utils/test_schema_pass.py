"""Pure parts of the one-pass backup of schema tenants: names, members, lock-sized groups."""

import pytest

from lifeboat_engine import naming, schema_pass
from lifeboat_engine.errors import LifeboatError


@pytest.mark.parametrize("database, expected", [
    ("saas", "_shared_saas"),
    ("a_b-c", "_shared_a_b-c"),
    ("Saas", "_shared_saas-e6e90a36"),  # a lossy form keeps a hash of the real name
    ("my db", "_shared_my-db-7db90c8c"),
])
def test_shared_tenant_names(database, expected):
    assert naming.shared_tenant(database) == expected
    assert naming.validate_repo_tenant(expected) == expected
    assert naming.is_shared_tenant(expected) and naming.is_pseudo_tenant(expected)


def test_shared_tenant_names_stay_apart_and_short():
    names = set(naming.shared_tenant(d) for d in ("saas", "Saas", "SAAS", "saas ", "x" * 63, "x" * 62 + "y"))
    assert len(names) == 6
    assert all(len(n) <= 63 and naming.validate_repo_tenant(n) for n in names)


@pytest.mark.parametrize("bad", ["_shared_", "_shared_UP", "_shared_a/b", "_shared_" + "a" * 55])
def test_bad_shared_pseudo_tenants_are_refused(bad):
    with pytest.raises(LifeboatError):
        naming.validate_repo_tenant(bad)


def test_members_default_schema_and_plain_names():
    assert schema_pass.validate_members(["acme", {"tenant": "bigco", "schema": "Big Co"}]) == \
        [("acme", "acme"), ("bigco", "Big Co")]


@pytest.mark.parametrize("members, fragment", [
    ([], "non-empty list"),
    ("acme", "non-empty list"),
    ([{"schema": "x"}], "needs a tenant"),
    ([{"tenant": "Acme"}], "Invalid schemas"),
    ([{"tenant": "a"}, {"tenant": "a", "schema": "b"}], "named twice"),
    ([{"tenant": "a", "schema": "s"}, {"tenant": "b", "schema": "s"}], "named twice"),
    ([{"tenant": "a", "schema": "public"}], "cannot be a tenant"),
    ([{"tenant": "a", "schema": "pg_temp_1"}], "cannot be a tenant"),
    ([{"tenant": "a", "schema": "x" * 64}], "1 to 63 bytes"),
    ([{"tenant": "a", "database": "x"}], "Unknown key"),
])
def test_bad_members_name_the_option(members, fragment):
    with pytest.raises(LifeboatError) as e:
        schema_pass.validate_members(members)
    assert fragment in str(e.value) and e.value.option == "schemas"


def test_groups_fit_the_lock_budget_in_dump_order():
    facts = {"a": (100, 0), "b": (150, 0), "c": (60, 0), "d": (400, 0), "e": (10, 0)}
    groups = schema_pass.groups_within(["a", "b", "c", "d", "e"], facts, 300)
    assert groups == [["a", "b"], ["c"], ["d"], ["e"]]
    assert all(sum(facts[s][0] for s in g) <= 300 for g in groups if len(g) > 1)
    assert [s for g in groups for s in g] == ["a", "b", "c", "d", "e"]
    assert schema_pass.groups_within([], facts, 300) == []


def test_dump_order_is_bytewise_like_pg_dump():
    assert schema_pass.dump_order(["b", "B", "a", "é", "Z"]) == ["B", "Z", "a", "b", "é"]


@pytest.mark.parametrize("host, port, expected", [
    ("db1", None, "_globals_db1"),
    ("db1", 5432, "_globals_db1"),
    ("db1", 5433, "_globals_db1-p5433"),
    ("db1:5496", None, "_globals_db1-p5496"),
    ("h" * 300, 6000, None),
])
def test_globals_are_named_by_host_and_port(host, port, expected):
    name = naming.globals_tenant(host, port)
    if expected:
        assert name == expected
    assert naming.validate_repo_tenant(name) == name and len(name) <= 63
    assert naming.globals_tenant(host, 5497) != naming.globals_tenant(host, 5496)
