"""tenant_anonymize engine on real SQLite files with generated guests of many ages."""

import datetime
import hashlib
import os
import random
import re
import sqlite3

import pytest

import lbtest
from lifeboat_engine import anonymize
from lifeboat_engine import anonymize_scrub as scrub
from lifeboat_engine.errors import LifeboatError

SECRET = "sqlite-test-secret-0123456789"
KEY = SECRET.encode()
NOW = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
EMAILS = ["Ann%d@Example.com" % i for i in range(80)] + ["bob@mail.example.org", "no-domain"]


def _stamp(rng, moment):
    """The same moment in one of the forms SQLite applications store."""
    form = rng.randrange(5)
    if form == 0:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if form == 1:
        return moment.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat()
    if form == 2:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if form == 3:
        return int(moment.timestamp())  # Unix seconds (stored as text by TEXT affinity)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def make_tenant(path, n=600, seed=7, guests_table="guests", email_col="email"):
    """Guests and bookings across 0 to 400 days of age (never within 12 h of a whole day), and an untouched table."""
    rng = random.Random(seed)
    conn = sqlite3.connect(str(path))
    g, e = lbtest_ident(guests_table), lbtest_ident(email_col)
    conn.executescript("""
        CREATE TABLE %s (id INTEGER PRIMARY KEY, checked_out_at TEXT, kind TEXT NOT NULL, full_name TEXT NOT NULL,
                         %s VARCHAR(120), phone TEXT, passport TEXT, birth_date DATE, visits INTEGER, notes TEXT);
        CREATE UNIQUE INDEX passport_u ON %s (passport);
        CREATE TABLE bookings (booking_id TEXT PRIMARY KEY, created INTEGER, guest_email TEXT, amount REAL);
        CREATE TABLE rooms (id INTEGER PRIMARY KEY, label TEXT);
    """ % (g, e, g))
    for i in range(1, n + 1):
        moment = NOW - datetime.timedelta(days=rng.randrange(0, 400) + 0.5, seconds=rng.randrange(0, 3600))
        ts = None if i % 97 == 0 else _stamp(rng, moment)
        conn.execute("INSERT INTO %s VALUES (?,?,?,?,?,?,?,?,?,?)" % g, (
            i, ts, "staff" if i % 6 == 0 else "guest", "Guest Nr %d" % i, rng.choice(EMAILS + [None]),
            None if i % 4 == 0 else "+41 79 %07d" % rng.randrange(10 ** 7), "P%08d" % i,
            "19%02d-%02d-%02d" % (rng.randrange(30, 99), rng.randrange(1, 13), rng.randrange(1, 29)), i % 9, "note %d" % i))
        conn.execute("INSERT INTO bookings VALUES (?,?,?,?)", (
            "B-%05d" % i, int((NOW - datetime.timedelta(days=rng.randrange(0, 400) + 0.5)).timestamp()),
            rng.choice(EMAILS), round(rng.uniform(50, 900), 2)))
    conn.executemany("INSERT INTO rooms VALUES (?, ?)", [(i, "room %d" % i) for i in range(20)])
    conn.commit()
    conn.close()


def lbtest_ident(name):
    return '"%s"' % name.replace('"', '""')


def rows(path, table="guests"):
    conn = sqlite3.connect(str(path))
    try:
        cur = conn.execute("SELECT * FROM %s ORDER BY 1" % lbtest_ident(table))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        conn.close()


def file_digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


RULES = [
    {"table": "guests", "timestamp": "checked_out_at", "where": "kind = 'guest'",
     "columns": {"full_name": "redact", "email": "email", "phone": None, "passport": "hash",
                 "birth_date": "truncate_date"}},
    {"table": "bookings", "timestamp": "created", "columns": {"guest_email": "keep_domain"}},
]


def params(path, **over):
    p = {"tenant": "acme", "engine": "sqlite", "path": str(path), "hmac_secret": SECRET, "batch_size": 50,
         "rules": RULES}
    p.update(over)
    return p


def aged(value, cutoff):
    seconds = scrub.epoch_seconds(value)
    return seconds is not None and seconds < cutoff.timestamp()


def expected_guests(original, cutoff):
    out = []
    for r in original:
        r = dict(r)
        if r["kind"] == "guest" and aged(r["checked_out_at"], cutoff):
            r["full_name"] = "[redacted]"
            r["email"] = None if r["email"] is None else scrub.email_value(KEY, r["email"])
            r["phone"] = None
            r["passport"] = scrub.hash_value(KEY, r["passport"])
            r["birth_date"] = r["birth_date"][:4] + "-01-01"
        out.append(r)
    return out


@pytest.fixture
def tenant(tmp_path):
    path = tmp_path / "acme.db"
    make_tenant(path)
    return path


def test_scrubs_exactly_the_aged_guests_then_nothing(tenant):
    original = rows(tenant)
    original_bookings = rows(tenant, "bookings")
    rooms = lbtest.sqlite_checksums(str(tenant))["rooms"]
    res = anonymize.run(params(tenant), now=NOW, environ={})
    cutoff = NOW - datetime.timedelta(days=30)
    assert res["cutoff"] == "2026-05-02T12:00:00Z" and res["older_than_days_from"] == "default"
    after = rows(tenant)
    assert after == expected_guests(original, cutoff)
    n_aged = sum(1 for r in original if r["kind"] == "guest" and aged(r["checked_out_at"], cutoff))
    assert 200 < n_aged < len(original) - 50  # many ages on both sides of the cut-off
    g = res["tables"][0]
    assert (g["rows_in_scope"], g["rows_to_scrub"], g["rows_scrubbed"], g["rows_remaining"]) == (n_aged, n_aged, n_aged, 0)
    assert g["rows_without_timestamp"] == sum(1 for r in original if r["checked_out_at"] is None and r["kind"] == "guest")
    assert g["batches"] == len([c for c in chunks(original) if any(aged(r["checked_out_at"], cutoff) for r in c)])
    assert g["columns"]["phone"]["values_scrubbed"] == sum(1 for r in original if r["kind"] == "guest" and r["phone"]
                                                           and aged(r["checked_out_at"], cutoff))
    for b, a in zip(original_bookings, rows(tenant, "bookings")):
        if b["created"] < cutoff.timestamp():
            assert a["guest_email"] == scrub.keep_domain_value(KEY, b["guest_email"])
            assert a["guest_email"] != b["guest_email"]
        else:
            assert a == b
        assert a["amount"] == b["amount"]
    assert lbtest.sqlite_checksums(str(tenant))["rooms"] == rooms
    assert res["changed"] is True

    before = file_digest(tenant)
    again = anonymize.run(params(tenant), now=NOW, environ={})
    assert again["changed"] is False and again["rows_scrubbed"] == 0 and again["rows_to_scrub"] == 0
    assert file_digest(tenant) == before


def test_check_mode_counts_right_and_touches_nothing(tenant):
    before = file_digest(tenant)
    mtime = os.stat(tenant).st_mtime_ns
    res = anonymize.run(params(tenant, older_than_days=90), check_mode=True, now=NOW, environ={})
    cutoff = NOW - datetime.timedelta(days=90)
    original = rows(tenant)
    expect = sum(1 for r in original if r["kind"] == "guest" and aged(r["checked_out_at"], cutoff))
    assert res["changed"] is True and res["rows_scrubbed"] == 0
    assert res["tables"][0]["rows_to_scrub"] == expect
    assert res["tables"][0]["columns"]["email"]["values_to_scrub"] == sum(
        1 for r in original if r["kind"] == "guest" and r["email"] and aged(r["checked_out_at"], cutoff))
    assert file_digest(tenant) == before and os.stat(tenant).st_mtime_ns == mtime
    assert sorted(os.listdir(tenant.parent)) == ["acme.db"]  # no journal either
    real = anonymize.run(params(tenant, older_than_days=90), now=NOW, environ={})
    assert real["rows_scrubbed"] == res["rows_to_scrub"]


def test_pii_days_from_the_environment(tenant):
    res = anonymize.run(params(tenant), check_mode=True, now=NOW, environ={"PII_DAYS": "200"})
    assert (res["older_than_days"], res["older_than_days_from"], res["cutoff"]) == (200, "PII_DAYS", "2025-11-13T12:00:00Z")


def test_values_stay_stable_across_runs_as_rows_age(tenant):
    original = dict((r["id"], r) for r in rows(tenant))
    anonymize.run(params(tenant, older_than_days=200), now=NOW, environ={})
    first = dict((r["id"], r) for r in rows(tenant))
    later = NOW + datetime.timedelta(days=100)
    res = anonymize.run(params(tenant, older_than_days=200), now=later, environ={})
    assert res["rows_scrubbed"] > 0
    second = dict((r["id"], r) for r in rows(tenant))
    by_email = {}
    for i, r in second.items():
        if r["email"] and r["email"].startswith("anon-"):
            by_email.setdefault(original[i]["email"].lower(), set()).add(r["email"])
    newly = [i for i in second if first[i]["email"] != second[i]["email"]]
    assert newly, "the second run scrubbed more rows"
    assert all(len(v) == 1 for v in by_email.values())  # one fake address per address, whichever run made it
    for i in first:  # what the first run wrote, the second left alone
        if first[i]["passport"].startswith("anon:"):
            assert second[i]["passport"] == first[i]["passport"]


def test_hostile_names_are_quoted_not_executed(tmp_path):
    path = tmp_path / "h.db"
    table = 'gu"ests; DROP TABLE rooms; --'
    col = "e\"mail%s ? :lb_cutoff'); DELETE FROM bookings; --"
    make_tenant(path, n=120, guests_table=table, email_col=col)
    keep = dict((k, v) for k, v in lbtest.sqlite_checksums(str(path)).items() if k != table)
    rule = {"table": table.upper(), "timestamp": "checked_out_at", "columns": {col: "hash", "FULL_NAME": "redact"}}
    res = anonymize.run(params(path, rules=[rule]), now=NOW, environ={})
    assert res["tables"][0]["table"] == table  # the catalog's spelling
    assert res["rows_scrubbed"] > 0
    scrubbed = [r for r in rows(path, table) if r["full_name"] == "[redacted]"]
    assert len(scrubbed) == res["rows_scrubbed"]
    assert all(r[col] is None or scrub.is_hash(r[col]) for r in scrubbed)
    now_sums = lbtest.sqlite_checksums(str(path))
    assert dict((k, v) for k, v in now_sums.items() if k != table) == keep


BAD_RULES = [
    ({"table": "guest", "timestamp": "checked_out_at", "columns": {"email": "email"}},
     'rules[0].table: table "guest" does not exist in'),
    ({"table": "guests", "timestamp": "checked_out_at", "columns": {"mail": "email"}},
     'rules[0].columns.mail: column "mail" does not exist in table "guests"'),
    ({"table": "guests", "timestamp": "checkout", "columns": {"email": "email"}},
     'rules[0].timestamp: column "checkout" does not exist'),
    ({"table": "guests", "timestamp": "checked_out_at", "key": "kind", "columns": {"email": "email"}},
     'rules[0].key: column "kind" of table "guests" is not unique'),
    ({"table": "guests", "timestamp": "checked_out_at", "columns": {"visits": "hash"}},
     'rules[0].columns.visits: column "visits" of table "guests" is declared INTEGER; hash writes text'),
    ({"table": "guests", "timestamp": "checked_out_at", "columns": {"full_name": "null"}},
     'rules[0].columns.full_name: column "full_name" of table "guests" is NOT NULL'),
    ({"table": "guests", "timestamp": "checked_out_at", "columns": {"passport": "redact"}},
     'rules[0].columns.passport: column "passport" of table "guests" is in a unique index'),
    ({"table": "bookings", "timestamp": "created", "columns": {"amount": "truncate_date"}},
     'rules[0].columns.amount: column "amount" of table "bookings" is declared REAL; truncate_date'),
    ({"table": "guests", "timestamp": "checked_out_at", "columns": {"notes": "truncate_date"}},
     re.compile(r"rules\[0\]\.columns\.notes: [0-9]+ values older than the cut-off are not ISO 8601 dates")),
    ({"table": "guests", "timestamp": "full_name", "columns": {"email": "email"}},
     'rules[0].timestamp: 600 values of "full_name" in table "guests" are neither ISO 8601'),
    ({"table": "guests", "timestamp": "checked_out_at", "where": "kind = guest", "columns": {"email": "email"}},
     "rules[0]: counting the rows of table \"guests\" failed: no such column: guest. Check rules[0].where."),
]


@pytest.mark.parametrize("rule,message", BAD_RULES, ids=[str(i) for i in range(len(BAD_RULES))])
def test_bad_rules_fail_clearly_and_change_nothing(tenant, rule, message):
    sums = lbtest.sqlite_checksums(str(tenant))
    before = file_digest(tenant)
    with pytest.raises(LifeboatError) as e:
        anonymize.run(params(tenant, rules=[rule]), now=NOW, environ={})
    if isinstance(message, str):
        assert message in str(e.value)
    else:
        assert message.search(str(e.value)), str(e.value)
    assert "nothing was changed" in str(e.value).lower()
    assert lbtest.sqlite_checksums(str(tenant)) == sums and file_digest(tenant) == before


def test_all_problems_of_all_rules_are_reported_together(tenant):
    with pytest.raises(LifeboatError) as e:
        anonymize.run(params(tenant, rules=[
            {"table": "guests", "timestamp": "checked_out_at", "columns": {"mail": "email", "visits": "redact"}},
            {"table": "nope", "timestamp": "x", "columns": {"y": "hash"}},
        ]), now=NOW, environ={})
    assert "3 problems" in str(e.value) and e.value.option == "rules[0].columns.mail"


def chunks(original, size=50):
    """The batches of the guest rule: its rows (where kind = 'guest') in key order, size by size."""
    scope = [r for r in original if r["kind"] == "guest"]
    return [scope[i:i + size] for i in range(0, len(scope), size)]


def test_a_failing_batch_is_rolled_back_and_the_next_run_continues(tenant):
    original = rows(tenant)
    cutoff = NOW - datetime.timedelta(days=30)
    aged_ids = [r["id"] for r in original if r["kind"] == "guest" and aged(r["checked_out_at"], cutoff)]
    batches = [[r["id"] for r in c if aged(r["checked_out_at"], cutoff)] for c in chunks(original)]
    batches = [b for b in batches if b]
    poison = batches[2][-1]  # the last row of the third batch that scrubs anything
    committed = batches[0] + batches[1]
    conn = sqlite3.connect(str(tenant))
    conn.execute("CREATE TRIGGER poison BEFORE UPDATE ON guests WHEN old.id = %d BEGIN SELECT RAISE(ABORT, 'boom'); END"
                 % poison)
    conn.commit()
    conn.close()
    with pytest.raises(LifeboatError) as e:
        anonymize.run(params(tenant), now=NOW, environ={})
    msg = str(e.value)
    assert "failed in batch 3, which was rolled back" in msg and "boom" in msg
    assert "2 batches (%d rows) of this table were committed" % len(committed) in msg
    assert e.value.details["tables"][0]["rows_scrubbed"] == len(committed)
    state = dict((r["id"], r) for r in rows(tenant))
    assert [i for i in aged_ids if state[i]["full_name"] == "[redacted]"] == committed
    conn = sqlite3.connect(str(tenant))
    conn.execute("DROP TRIGGER poison")
    conn.commit()
    conn.close()
    res = anonymize.run(params(tenant), now=NOW, environ={})
    assert res["tables"][0]["rows_scrubbed"] == len(aged_ids) - len(committed)
    assert rows(tenant) == expected_guests(original, cutoff)


def test_engine_results_hold_no_row_data_and_no_secret(tenant):
    original = rows(tenant)
    res = anonymize.run(params(tenant), now=NOW, environ={})
    text = repr(res)
    assert SECRET not in text
    for r in original[:50]:
        for value in (r["email"], r["passport"], r["full_name"], r["phone"]):
            if value and len(value) > 6:
                assert value not in text
    assert "anon" not in text  # no scrubbed value either


def test_progress_reports_rows_scrubbed_so_far_as_a_number(tenant):
    seen = []
    res = anonymize.run(params(tenant), now=NOW, environ={}, progress=seen.append)
    assert all(isinstance(n, int) for n in seen)
    assert seen == sorted(seen) and len(seen) == sum(t["batches"] for t in res["tables"])
    assert seen[-1] == res["rows_scrubbed"]
