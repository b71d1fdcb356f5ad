import datetime

import pytest

from lifeboat_engine import naming
from lifeboat_engine.errors import LifeboatError


@pytest.mark.parametrize("name", ["a", "acme", "tenant_a", "t-1", "0abc", "a" * 63])
def test_valid_tenants(name):
    assert naming.validate_tenant(name) == name


@pytest.mark.parametrize("name", [
    "", "A", "Acme", "_x", "-x", "a" * 64, "a/b", "../etc", "a b", "a;drop table x", "a\0b", "a'b", 'a"b',
    "é", "a.b", None, 5, "lb_s_0123456789abcdef0123",
])
def test_invalid_tenants_are_refused_with_the_option_named(name):
    with pytest.raises(LifeboatError) as e:
        naming.validate_tenant(name)
    assert e.value.option == "tenant"
    assert "tenant" in str(e.value)


def test_artifact_names_round_trip():
    stamp = naming.format_stamp(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))
    assert stamp == "20260102T030405Z"
    name = naming.artifact_name("my-tenant_1", stamp, "pgdump", True, True)
    assert name == "my-tenant_1-20260102T030405Z.pgdump.zst.age"
    assert naming.parse_artifact_name(name) == {
        "tenant": "my-tenant_1", "stamp": stamp, "format": "pgdump", "compressed": True, "encrypted": True}
    assert naming.parse_artifact_name("x-20260102T030405Z.sqlite")["compressed"] is False
    assert naming.manifest_name("t", stamp) == "t-20260102T030405Z.manifest.json"
    assert naming.parse_manifest_name("t-20260102T030405Z.manifest.json") == ("t", stamp)
    assert naming.parse_stamp(stamp).hour == 3


@pytest.mark.parametrize("name", [
    ".t-20260102T030405Z.pgdump.zst.age.ab12.partial", "t-2026010T030405Z.pgdump", "t-20260102T030405Z.exe",
    "t-20260102T030405Z.pgdump.age.zst", "../t-20260102T030405Z.pgdump", "t-20260102T030405Z.manifest.json",
])
def test_non_artifacts_are_not_parsed(name):
    assert naming.parse_artifact_name(name) is None


def test_derived_names_never_extend_the_tenant_name():
    tenant = "a" * 63
    scratch = naming.derived_name("s", "db", tenant)
    assert scratch != tenant and not scratch.startswith(tenant[:10])
    assert len(scratch) <= 63
    assert naming.derived_name("s", "db", tenant) == scratch  # stable
    assert naming.derived_name("r", "db", tenant) != scratch
    # and no tenant may ever take a derived name
    with pytest.raises(LifeboatError):
        naming.validate_tenant(scratch)


@pytest.mark.parametrize("value,seconds", [
    (None, None), ("", None), (0, 0), (90, 90), ("90", 90), ("90s", 90), ("30m", 1800), ("20h", 72000),
    ("2d", 172800), ("1w", 604800), (" 5 h ", 18000)])
def test_durations(value, seconds):
    assert naming.parse_duration(value, "x") == seconds


@pytest.mark.parametrize("value", ["abc", "-5", "5y", True, -1, "1.5h"])
def test_bad_durations_name_the_option(value):
    with pytest.raises(LifeboatError) as e:
        naming.parse_duration(value, "skip_if_newer_than")
    assert e.value.option == "skip_if_newer_than"


def test_globals_tenant_names_are_safe():
    assert naming.globals_tenant("DB1.Example.com") == "_globals_db1-example-com"
    long_name = naming.globals_tenant("h" * 300)
    assert naming.validate_repo_tenant(long_name) == long_name
    assert naming.globals_tenant("../../etc") == "_globals_etc"


@pytest.mark.parametrize("n, text", [(None, "unknown size"), (0, "0 B"), (999, "999 B"), (1000, "1.0 kB"),
                                     (112_900, "112.9 kB"), (999_949, "999.9 kB"), (999_950, "1.0 MB"),
                                     (35_200_000, "35.2 MB"), (64 << 20, "67.1 MB"), (999_999_999_999, "1.0 TB"),
                                     (5e15, "5000.0 TB")])
def test_human_size_is_one_decimal_unit_everywhere(n, text):
    assert naming.human_size(n) == text
