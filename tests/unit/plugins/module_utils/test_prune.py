"""GFS selection over synthetic timelines, against fixed expected sets."""

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifeboat_engine import naming, prune
from lifeboat_engine.errors import LifeboatError

UTC = datetime.timezone.utc


def at(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def arts(*moments, **kw):
    out = []
    for m in moments:
        stamp = naming.format_stamp(at(m) if isinstance(m, str) else m)
        out.append({"name": "t-%s.pgdump.zst.age" % stamp, "stamp": stamp, "format": "pgdump",
                    "size": kw.get("size", 100), "complete": stamp not in kw.get("incomplete", ()),
                    "verified": stamp in kw.get("verified", ())})
    return out


def kept(decisions):
    return sorted(naming.parse_stamp(d["stamp"]).strftime("%Y-%m-%d %H:%M") for d in decisions if d["decision"] == "keep")


def daily(first, last, hour="03:00"):
    day = at("%s %s" % (first, hour))
    end = at("%s %s" % (last, hour))
    out = []
    while day <= end:
        out.append(day.strftime("%Y-%m-%d %H:%M"))
        day += datetime.timedelta(days=1)
    return out


def test_months_of_daily_backups():
    timeline = arts(*daily("2025-12-01", "2026-01-20"))
    policy = prune.Policy(keep_daily=3, keep_weekly=3, keep_monthly=2, keep_yearly=2)
    got = prune.select(timeline, policy, at("2026-01-20 12:00"))
    # days: 20, 19, 18; ISO weeks W04 (20th), W03 (18th), W02 (11th); months: Jan (20th), Dec (31st); years: same.
    assert kept(got) == ["2025-12-31 03:00", "2026-01-11 03:00", "2026-01-18 03:00", "2026-01-19 03:00",
                         "2026-01-20 03:00"]
    reasons = {naming.parse_stamp(d["stamp"]).strftime("%m-%d"): d["reasons"] for d in got}
    assert "keep_weekly (2026-W02)" in reasons["01-11"]
    assert "keep_monthly (2025-12)" in reasons["12-31"] and "keep_yearly (2025)" in reasons["12-31"]
    assert any(r.startswith("not kept by any rule") for r in reasons["01-05"])


def test_year_and_iso_week_boundaries():
    # 2025-12-28 is ISO 2025-W52; 2025-12-29 and 2026-01-02 are both ISO 2026-W01; 2026-01-05 is 2026-W02.
    timeline = arts("2025-12-28 03:00", "2025-12-29 03:00", "2026-01-02 03:00", "2026-01-05 03:00")
    got = prune.select(timeline, prune.Policy(keep_weekly=2, keep_yearly=2), at("2026-01-06 00:00"))
    assert kept(got) == ["2025-12-29 03:00", "2026-01-02 03:00", "2026-01-05 03:00"]
    got = prune.select(timeline, prune.Policy(keep_weekly=3), at("2026-01-06 00:00"))
    assert kept(got) == ["2025-12-28 03:00", "2026-01-02 03:00", "2026-01-05 03:00"]


def test_several_backups_in_one_day():
    timeline = arts("2026-01-09 03:00", "2026-01-10 01:00", "2026-01-10 09:00", "2026-01-10 17:00")
    assert kept(prune.select(timeline, prune.Policy(keep_daily=2), at("2026-01-11 00:00"))) == [
        "2026-01-09 03:00", "2026-01-10 17:00"]
    assert kept(prune.select(timeline, prune.Policy(keep_last=2), at("2026-01-11 00:00"))) == [
        "2026-01-10 09:00", "2026-01-10 17:00"]
    assert kept(prune.select(timeline, prune.Policy(keep_last=2, keep_daily=2), at("2026-01-11 00:00"))) == [
        "2026-01-09 03:00", "2026-01-10 09:00", "2026-01-10 17:00"]


def test_gaps_count_only_days_that_have_a_backup():
    timeline = arts("2026-01-01 03:00", "2026-01-02 03:00", "2026-01-10 03:00", "2026-01-20 03:00")
    assert kept(prune.select(timeline, prune.Policy(keep_daily=3), at("2026-02-01 00:00"))) == [
        "2026-01-02 03:00", "2026-01-10 03:00", "2026-01-20 03:00"]


def test_newest_verified_and_newest_complete_survive_any_policy():
    days = daily("2026-01-01", "2026-01-10")
    verified = {naming.format_stamp(at("2026-01-03 03:00"))}
    timeline = arts(*days, verified=verified)
    got = prune.select(timeline, prune.Policy(keep_last=0), at("2026-01-11 00:00"))
    assert kept(got) == ["2026-01-03 03:00", "2026-01-10 03:00"]
    got = prune.select(timeline, prune.Policy(max_age_days=1), at("2026-06-01 00:00"))
    assert kept(got) == ["2026-01-03 03:00", "2026-01-10 03:00"]


def test_incomplete_artifacts_grace_and_lock():
    now = at("2026-01-10 12:00")
    recent = naming.format_stamp(now - datetime.timedelta(minutes=10))
    old = naming.format_stamp(at("2026-01-07 03:00"))
    timeline = arts("2026-01-07 03:00", "2026-01-08 03:00", "2026-01-09 03:00", now - datetime.timedelta(minutes=10),
                    incomplete={recent, old})
    got = prune.select(timeline, prune.Policy(keep_daily=7), now, grace_seconds=86400)
    decisions = {d["stamp"]: d["decision"] for d in got}
    assert decisions[recent] == "keep" and decisions[old] == "delete"
    # the newest complete is the 9th (the incomplete newer one does not count)
    assert [d for d in got if d["stamp"] == naming.format_stamp(at("2026-01-09 03:00"))][0].get("protected")
    got = prune.select(timeline, prune.Policy(keep_daily=7), now, grace_seconds=86400, lock_free=False)
    assert {d["stamp"]: d["decision"] for d in got}[old] == "keep"


def test_max_age_days_overrides_keep_rules():
    timeline = arts(*daily("2025-11-01", "2026-01-09"))
    got = prune.select(timeline, prune.Policy(keep_daily=100, max_age_days=30), at("2026-01-10 00:00"))
    assert kept(got)[0] == "2025-12-11 03:00" and len(kept(got)) == 30


def test_max_total_size_deletes_oldest_first():
    decisions = prune.select(arts(*daily("2026-01-01", "2026-01-10"), size=100), prune.Policy(keep_daily=10),
                             at("2026-01-11 00:00"))
    prune.apply_total_size(decisions, 350)
    assert kept(decisions) == ["2026-01-08 03:00", "2026-01-09 03:00", "2026-01-10 03:00"]


def test_formats_are_kept_apart():
    a = arts("2026-01-01 03:00")
    b = arts("2026-01-02 03:00")
    b[0]["format"] = "globals"
    got = prune.select(a + b, prune.Policy(keep_last=0), at("2026-01-03 00:00"))
    assert all(d["decision"] == "keep" for d in got)  # each is the newest of its format


@pytest.mark.parametrize("kw,option", [
    ({}, "keep_daily"),
    ({"keep_daily": -1}, "keep_daily"),
    ({"keep_weekly": "4"}, "keep_weekly"),
    ({"max_age_days": 0}, "max_age_days"),
    ({"max_total_size": "lots"}, "max_total_size"),
])
def test_policy_errors_name_the_option(kw, option):
    with pytest.raises(LifeboatError) as e:
        prune.Policy(**kw)
    assert e.value.option == option


@pytest.mark.parametrize("text,size", [("500", 500), ("1k", 1000), ("2M", 2 * 10**6), ("1.5G", 1500 * 10**6),
                                       ("1GiB", 2**30), ("3 TB", 3 * 10**12), (42, 42)])
def test_sizes(text, size):
    assert prune.parse_size(text) == size


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=800 * 24), min_size=1, max_size=60, unique=True),
    verified_index=st.integers(min_value=0, max_value=59),
    rules=st.dictionaries(st.sampled_from(prune.KEEP_RULES), st.integers(min_value=0, max_value=10), min_size=1),
    max_age=st.one_of(st.none(), st.integers(min_value=1, max_value=400)),
)
def test_properties_over_random_timelines(offsets, verified_index, rules, max_age):
    base = at("2024-01-01 00:00")
    moments = [base + datetime.timedelta(hours=h) for h in sorted(offsets)]
    stamps = [naming.format_stamp(m) for m in moments]
    verified = {stamps[verified_index % len(stamps)]}
    timeline = arts(*moments, verified=verified)
    now = moments[-1] + datetime.timedelta(days=1)
    got = prune.select(timeline, prune.Policy(max_age_days=max_age, **rules), now)
    by_stamp = {d["stamp"]: d for d in got}
    assert by_stamp[stamps[-1]]["decision"] == "keep"  # newest complete
    assert by_stamp[sorted(verified)[-1]]["decision"] == "keep"  # newest verified
    assert len(got) == len(timeline)
    if "keep_daily" in rules and max_age is None:
        days = sorted({m.strftime("%Y-%m-%d") for m in moments}, reverse=True)[:rules["keep_daily"]]
        for day in days:
            newest_of_day = max(s for s, m in zip(stamps, moments) if m.strftime("%Y-%m-%d") == day)
            assert by_stamp[newest_of_day]["decision"] == "keep"
