"""tenant_anonymize logic that needs no database: strategies, rules, where, options, backup report."""

import datetime
import hashlib
import hmac
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifeboat_engine import anonymize, anonymize_rules, repository
from lifeboat_engine import anonymize_scrub as scrub
from lifeboat_engine.errors import LifeboatError

SECRET = b"0123456789abcdef-test-secret"


# -- strategies -------------------------------------------------------------------

def test_hash_is_keyed_hmac_sha256_with_marker():
    value = "P1234567"
    expected = "anon:" + hmac.new(SECRET, value.encode(), hashlib.sha256).hexdigest()
    assert scrub.hash_value(SECRET, value) == expected
    assert len(expected) == scrub.HASH_LENGTH
    assert scrub.hash_value(b"another-secret-of-16b", value) != expected


def test_email_and_keep_domain_share_the_digits_and_normalize_case():
    a = scrub.email_value(SECRET, " Ann.Smith@Example.ORG ")
    b = scrub.email_value(SECRET, "ann.smith@example.org")
    assert a == b and a.endswith("@anonymized.invalid") and len(a) == scrub.EMAIL_LENGTH
    kd = scrub.keep_domain_value(SECRET, "Ann.Smith@Example.ORG")
    assert kd == a.split("@")[0] + "@example.org"


@pytest.mark.parametrize("value", ["no-at-sign", "x@", "x@localhost", "x@exa mple.com", "x@-bad-.com", ""])
def test_keep_domain_without_a_usable_domain_uses_the_fake_one(value):
    assert scrub.keep_domain_value(SECRET, value).endswith("@" + scrub.FAKE_DOMAIN)


def test_keep_domain_that_does_not_fit_falls_back_to_the_fake_domain():
    long_domain = "a" * 60 + ".example.com"
    out = scrub.keep_domain_value(SECRET, "x@" + long_domain, max_length=60)
    assert out.endswith("@" + scrub.FAKE_DOMAIN) and len(out) <= 60
    assert scrub.keep_domain_value(SECRET, "x@" + long_domain, max_length=200).endswith(long_domain)


@pytest.mark.parametrize("name,kwargs", [("null", {}), ("redact", {}), ("redact", {"text": "n/a"}), ("hash", {}),
                                         ("email", {}), ("keep_domain", {})])
@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.text(max_size=40), st.binary(max_size=20), st.integers()))
def test_scrubbing_is_idempotent_and_recognizable(name, kwargs, value):
    s = scrub.Strategy(name, **kwargs)
    once = s.scrub(value, SECRET)
    assert s.is_scrubbed(once)
    assert s.scrub(once, SECRET) == once
    if once is not None and not s.is_scrubbed(value):
        assert once != value


@pytest.mark.parametrize("name", scrub.STRATEGIES)
@settings(max_examples=80, deadline=None)
@given(value=st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=20), st.integers(),
                       st.sampled_from([" Ann@X.org ", "anon:" + "a" * 64, "ANON:" + "a" * 64, "\udcff@x.org",
                                        "anon-" + "b" * 24 + "@anonymized.invalid", "x@" + "d" * 50 + ".org"])))
def test_the_bound_scrubber_gives_what_scrub_gives(name, value):
    s = scrub.Strategy(name)
    if name == "truncate_date" and not s.is_scrubbed(value) and scrub.truncate_text(value, s.unit) is None:
        return  # scrub raises for what is not a date; the engine never hands one to it
    for max_length in (None, 60):
        assert s.scrubber(SECRET, max_length)(value) == s.scrub(value, SECRET, max_length)


@settings(max_examples=80, deadline=None)
@given(moment=st.datetimes(min_value=datetime.datetime(1900, 1, 1), max_value=datetime.datetime(2100, 1, 1)),
       unit=st.sampled_from(scrub.UNITS), with_time=st.booleans(), sep=st.sampled_from(["T", " "]))
def test_truncate_text_cuts_and_is_idempotent(moment, unit, with_time, sep):
    text = moment.strftime("%Y-%m-%d") + (moment.strftime(sep + "%H:%M:%S.%f") if with_time else "")
    out = scrub.truncate_text(text, unit)
    assert out.startswith("%04d-" % moment.year)
    if unit == "year":
        assert out[5:10] == "01-01"
    if with_time:
        assert out.endswith(sep + "00:00:00")
    assert scrub.truncate_text(out, unit) == out
    assert scrub.Strategy("truncate_date", unit=unit).is_scrubbed(out)


@pytest.mark.parametrize("value", ["2001-02-30", "yesterday", "2001/02/03", 12345, b"2001-01-01"])
def test_truncate_text_refuses_what_is_not_an_iso_date(value):
    assert scrub.truncate_text(value, "year") is None


@pytest.mark.parametrize("value,expected", [
    ("2020-01-01", 1577836800.0),
    ("2020-01-01 00:00:00", 1577836800.0),
    ("2020-01-01T02:00:00+02:00", 1577836800.0),
    ("2020-01-01T00:00:00Z", 1577836800.0),
    ("2020-01-01T00:00:00.250", 1577836800.25),
    (1577836800, 1577836800.0),
    ("1577836800", 1577836800.0),
    (1577836800.5, 1577836800.5),
    (None, None), ("soon", None), ("2020-13-01", None), (b"x", None), (True, None),
])
def test_sqlite_timestamps(value, expected):
    assert scrub.epoch_seconds(value) == expected


# -- where ------------------------------------------------------------------------

@pytest.mark.parametrize("engine,text", [
    ("postgresql", "kind = 'guest'"),
    ("postgresql", "kind = 'it''s; -- not a comment'"),
    ("postgresql", "(a > 1 AND b::text LIKE 'x%')"),
    ("postgresql", '"odd;name" IS NOT NULL'),
    ("sqlite", "kind IN ('guest', 'vip') AND [my col] > 3"),
    ("sqlite", "deleted_at IS NULL"),
])
def test_where_accepts_one_expression(engine, text):
    assert anonymize_rules.check_where(text, engine) is None


@pytest.mark.parametrize("engine,text,word", [
    ("postgresql", "true; DROP TABLE guests", ";"),
    ("postgresql", "true -- AND created_at < now()", "comment"),
    ("postgresql", "true /* x */", "comment"),
    ("postgresql", "true) OR (1=1", "without its"),
    ("postgresql", "(true", "unclosed"),
    ("postgresql", "kind = 'guest", "unterminated"),
    ("postgresql", "kind = $$guest$$", "$"),
    ("postgresql", "", "non-empty"),
    ("sqlite", "kind = ?", "placeholder"),
    ("sqlite", "kind = :kind", "placeholder"),
    ("sqlite", "kind = `x", "unterminated"),
])
def test_where_refuses_what_could_escape_the_statement(engine, text, word):
    problem = anonymize_rules.check_where(text, engine)
    assert problem and word in problem


# -- rules ------------------------------------------------------------------------

def _rule(**over):
    rule = {"table": "guests", "timestamp": "created_at", "columns": {"email": "email"}}
    rule.update(over)
    return rule


def test_rules_parse_with_defaults():
    columns = {"a": None, "b": "redact", "c": {"strategy": "truncate_date", "unit": "month"}}
    rules = anonymize_rules.parse_rules([_rule(columns=columns)], "postgresql")
    cols = dict((c.name, c.strategy) for c in rules[0].columns)
    assert cols["a"].name == "null"
    assert cols["b"].text == "[redacted]"
    assert cols["c"].unit == "month"
    assert rules[0].key is None


def test_every_rule_problem_is_named_at_once():
    with pytest.raises(LifeboatError) as e:
        anonymize_rules.parse_rules([
            _rule(),
            _rule(columns={"email": "scramble"}),
            _rule(table="bookings", columns={"note": {"strategy": "redact", "unit": "year"}}),
            _rule(where="1=1; DELETE FROM guests"),
            _rule(colums={"x": "null"}),
            _rule(columns={"created_at": "null"}),
        ], "postgresql")
    msg = str(e.value)
    assert "5 problems" in msg and "nothing was changed" in msg
    for part in ("rules[1].columns.email: unknown strategy 'scramble'", "rules[2].columns.note: unit applies",
                 "rules[3].where contains ';'", "rules[4]: unknown key(s) colums",
                 "rules[5].columns.created_at: \"created_at\" is the rule's timestamp column"):
        assert part in msg
    assert e.value.option == "rules[1].columns.email"


def test_two_strategies_for_one_column_are_refused():
    with pytest.raises(LifeboatError, match=r"rules\[1\].columns.email: column \"email\" of table \"guests\" already "
                                            r"has strategy email in rules\[0\]"):
        anonymize_rules.parse_rules([_rule(), _rule(where="kind = 'vip'", columns={"email": "hash"})], "postgresql")


def test_hostile_names_are_shown_escaped_and_long_names_refused():
    with pytest.raises(LifeboatError) as e:
        anonymize_rules.parse_rules([_rule(table="x" * 64), _rule(columns={'e"mail\n': "scramble"}, key="")], "postgresql")
    msg = str(e.value)
    assert "63-byte limit" in msg
    assert 'rules[1].columns["e\\"mail\\n"]' in msg
    assert "rules[1].key: give the column name" in msg


@pytest.mark.parametrize("rules", [None, [], "guests", [["guests"]]])
def test_rules_must_be_a_list_of_dicts(rules):
    with pytest.raises(LifeboatError, match="rules"):
        anonymize_rules.parse_rules(rules, "sqlite")


# -- options ----------------------------------------------------------------------

@pytest.mark.parametrize("value,env,expected", [
    (None, {}, (30, "default")),
    (None, {"PII_DAYS": "45"}, (45, "PII_DAYS")),
    (None, {"PII_DAYS": " "}, (30, "default")),
    (7, {"PII_DAYS": "45"}, (7, "older_than_days")),
    (0, {}, (0, "older_than_days")),
])
def test_older_than_days_option_then_pii_days_then_30(value, env, expected):
    assert anonymize.resolve_days(value, env) == expected


@pytest.mark.parametrize("value,env", [(None, {"PII_DAYS": "thirty"}), (None, {"PII_DAYS": "-1"}), (-3, {}), (True, {})])
def test_bad_days_are_named(value, env):
    with pytest.raises(LifeboatError) as e:
        anonymize.resolve_days(value, env)
    assert e.value.option == "older_than_days"
    assert ("PII_DAYS" in str(e.value)) == bool(env)


def test_secret_rules(tmp_path):
    f = tmp_path / "key"
    f.write_bytes(b"  %s\n" % SECRET)
    assert anonymize.load_secret(None, str(f)) == SECRET
    assert anonymize.load_secret(SECRET.decode(), None) == SECRET
    assert anonymize.load_secret(None, None) is None
    for args, option in (((SECRET.decode(), str(f)), "hmac_secret"), (("short-secret", None), "hmac_secret"),
                         ((None, str(tmp_path / "missing")), "hmac_secret_file")):
        with pytest.raises(LifeboatError) as e:
            anonymize.load_secret(*args)
        assert e.value.option == option
        assert "short-secret" not in str(e.value)


def _params(**over):
    p = {"tenant": "acme", "engine": "sqlite", "path": "/nonexistent/acme.db", "rules": [_rule()],
         "hmac_secret": SECRET.decode()}
    p.update(over)
    return p


@pytest.mark.parametrize("over,option", [
    ({"tenant": "Acme!"}, "tenant"),
    ({"tenant": None}, "tenant"),
    ({"hmac_secret": None}, "hmac_secret"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 10 ** 6}, "batch_size"),
    ({"retention_days": 30}, "repository"),
    ({"retention_days": -1, "repository": "/tmp/r"}, "retention_days"),
    ({"database": "acme"}, "database"),
    ({"path": None}, "path"),
    ({"engine": "mysql"}, "engine"),
    ({"colour": "blue"}, "colour"),
])
def test_request_errors_name_the_option(over, option):
    with pytest.raises(LifeboatError) as e:
        anonymize.Request(_params(**over), environ={})
    assert e.value.option == option
    assert SECRET.decode() not in str(e.value)


def test_a_missing_sqlite_file_fails_before_anything(tmp_path):
    with pytest.raises(LifeboatError) as e:
        anonymize.run(_params(path=str(tmp_path / "nope.db")), environ={})
    assert e.value.option == "path"
    assert not os.path.exists(tmp_path / "nope.db")


# -- backups holding unscrubbed rows -------------------------------------------------

def _artifact(repo, tenant, stamp, complete=True):
    w = repo.new_writer(tenant, "%s-%s.sqlite.zst.age" % (tenant, stamp))
    w.write(b"x")
    w.commit()
    if complete:
        repo.write_json(tenant, "%s-%s.manifest.json" % (tenant, stamp), {"tenant": tenant})


def test_backup_report_lists_artifacts_before_the_cutoff_and_when_they_go(tmp_path):
    repo = repository.open_repository(str(tmp_path / "repo"))
    for stamp, complete in (("20260101T030000Z", True), ("20260120T030000Z", False), ("20260210T030000Z", True),
                            ("20260301T030000Z", True)):
        _artifact(repo, "acme", stamp, complete)
    _artifact(repo, "other", "20250101T030000Z")
    now = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=datetime.timezone.utc)
    cutoff = now - datetime.timedelta(days=30)  # 2026-01-31T12:00Z
    report = anonymize.backup_report(repo, "acme", cutoff, now, 35)
    assert [(a["artifact"][:21], a["complete"], a["removed_by"], a["overdue"]) for a in report["before_cutoff"]] == [
        ("acme-20260101T030000Z", True, "2026-02-05T03:00:00Z", True),
        ("acme-20260120T030000Z", False, "2026-02-24T03:00:00Z", True),
    ]
    assert report["since_cutoff"] == 2
    assert report["overdue"] == 2
    assert report["clear_by"] == "2026-04-05T03:00:00Z"  # the newest artifact (1 March) + 35 days
    plain = anonymize.backup_report(repo, "acme", cutoff, now, None)
    assert plain["clear_by"] is None and "removed_by" not in plain["before_cutoff"][0]
    assert anonymize.backup_report(repo, "nobody", cutoff, now, 35)["before_cutoff"] == []
