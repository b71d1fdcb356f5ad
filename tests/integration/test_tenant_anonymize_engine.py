"""tenant_anonymize's engine on a real PostgreSQL cluster: refusals before any write, batches that fail
and resume, lock timeouts, privileges, stability across runs. (The module path through ansible-playbook
is in test_tenant_anonymize.py; these call the engine directly, as the host agent does.)"""

import contextlib
import datetime
import secrets
import threading

import pytest
from test_tenant_anonymize import GUEST_RULE, KEY, SECRET, expect_guests, make_pg_tenant, pg_rows

import lbtest
from lifeboat_engine import anonymize, anonymize_pg
from lifeboat_engine import anonymize_scrub as scrub
from lifeboat_engine.errors import LifeboatError


def params(pg, db, **over):
    p = dict(pg.login, tenant=db, hmac_secret=SECRET, batch_size=50, rules=[GUEST_RULE])
    p.update(over)
    return p


@pytest.fixture(scope="module")
def refusals_db(pg):
    """One generated tenant with the odd columns and objects the refusal cases need."""
    name = "anon_r_" + secrets.token_hex(3)
    pg.psql('CREATE DATABASE "%s"' % name)
    conn = pg.connect(name)
    make_pg_tenant(conn, "public", n=150, seed=11)
    conn.execute("""
        ALTER TABLE guests ADD COLUMN short_code varchar(20), ADD COLUMN nick text,
                           ADD COLUMN name_upper text GENERATED ALWAYS AS (upper(full_name)) STORED;
        CREATE VIEW guest_view AS SELECT * FROM guests;
        CREATE TABLE nopk (a int, ts timestamptz, e text);
        CREATE TABLE nullkey (code text UNIQUE, ts timestamptz, e text);
        INSERT INTO nullkey VALUES (NULL, now() - interval '90 days', 'x@y.org'), ('a', now(), 'z@y.org');
    """)
    yield name, conn, lbtest.table_checksums(conn)
    conn.close()
    pg.psql('DROP DATABASE "%s" WITH (FORCE)' % name)


TS = "checked_out_at"
REFUSALS = [
    ({"columns": {"short_code": "hash"}},
     'rules[0].columns.short_code: column "short_code" of table "guests" is character varying(20), too short for a '
     'scrubbed hash value (69 characters)'),
    ({"columns": {"short_code": {"strategy": "redact", "text": "x" * 21}}},
     "too short for the redact text (21 characters)"),
    ({"columns": {"nick": "truncate_date"}},
     'rules[0].columns.nick: column "nick" of table "guests" is text; truncate_date needs date, timestamp or timestamptz'),
    ({"columns": {"visits": "redact"}}, 'column "visits" of table "guests" is integer; redact writes text'),
    ({"columns": {"passport": "redact"}}, 'rules[0].columns.passport: column "passport" of table "guests" is in a '
                                          'unique index'),
    ({"columns": {"full_name": None}}, 'rules[0].columns.full_name: column "full_name" of table "guests" is NOT NULL'),
    ({"columns": {"name_upper": "null"}}, 'column "name_upper" of table "guests" is generated'),
    ({"timestamp": "notes"}, 'rules[0].timestamp: column "notes" of table "guests" is text; the column that decides '
                             'age must be date, timestamp or timestamptz'),
    ({"key": "kind"}, 'rules[0].key: column "kind" of table "guests" is not unique'),
    ({"key": "nokey"}, 'rules[0].key: column "nokey" does not exist in table "guests"'),
    ({"table": "guest_view"}, 'rules[0].table: "guest_view" in schema "public" of database'),
    ({"table": "Guests"}, 'rules[0].table: table "Guests" does not exist'),  # names are literal, never folded
    ({"table": "nopk", "timestamp": "ts", "where": None, "columns": {"e": "email"}},
     'rules[0].key: table "nopk" has no single-column primary key; set key to a unique column'),
    ({"table": "nullkey", "timestamp": "ts", "key": "code", "where": None, "columns": {"e": "email"}},
     'rules[0].key: 1 rows older than the cut-off have a NULL "code"'),
    ({"where": "kind = 'guest' AND"}, 'rules[0]: counting the rows of table "guests" failed: syntax error'),
]


@pytest.mark.parametrize("change,message", REFUSALS, ids=[str(i) for i in range(len(REFUSALS))])
def test_refusals_name_the_rule_and_change_nothing(pg, refusals_db, change, message):
    db, conn, sums = refusals_db
    rule = dict(GUEST_RULE, columns={"email": "email"})
    rule.update(change)
    with pytest.raises(LifeboatError) as e:
        anonymize.run(params(pg, db, rules=[rule]))
    assert message in str(e.value), str(e.value)
    assert "othing was changed" in str(e.value)
    assert lbtest.table_checksums(conn) == sums


@pytest.mark.parametrize("over,option", [({"schema": "nope"}, "schema"), ({"database": "anon_missing"}, "database"),
                                         ({"login_password": "wrong"}, "login_host")])
def test_unreachable_tenants_name_the_option(pg, refusals_db, over, option):
    db, _conn, _sums = refusals_db
    with pytest.raises(LifeboatError) as e:
        anonymize.run(params(pg, db, **over))
    assert e.value.option == option
    assert "wrong" not in str(e.value) and pg.password not in str(e.value)


def test_a_reader_may_count_but_not_scrub(pg, refusals_db):
    db, conn, sums = refusals_db
    role, password = "anon_reader_" + secrets.token_hex(2), secrets.token_hex(8)
    pg.psql("CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s"
            % (role, password, role), db=db)
    reader = dict(params(pg, db), login_user=role, login_password=password)
    counted = anonymize.run(reader, check_mode=True)
    assert counted["rows_to_scrub"] > 0
    with pytest.raises(LifeboatError) as e:
        anonymize.run(reader)
    assert 'rules[0].columns.email: login_user may not update column "email"' in str(e.value)
    assert lbtest.table_checksums(conn) == sums


@pytest.fixture
def tenant_db(pg):
    name = "anon_e_" + secrets.token_hex(3)
    pg.psql('CREATE DATABASE "%s"' % name)
    conn = pg.connect(name)
    make_pg_tenant(conn, "public", n=400, seed=12)
    yield name, conn
    conn.close()
    pg.psql('DROP DATABASE "%s" WITH (FORCE)' % name)


def _aged_ids(original, cutoff):
    return [r["id"] for r in original if r["kind"] == "guest" and r["checked_out_at"] and r["checked_out_at"] < cutoff]


def refuse_updates_of(conn, row_id):
    """A trigger makes every UPDATE of guest ``row_id`` fail: the batch holding it fails."""
    conn.execute("""
        CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN IF old.id = %d THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN new; END $$;
        CREATE TRIGGER poison BEFORE UPDATE ON guests FOR EACH ROW EXECUTE FUNCTION poison();
    """ % row_id)


def test_a_failing_batch_is_rolled_back_and_the_next_run_continues(pg, tenant_db):
    db, conn = tenant_db
    original = pg_rows(conn, "public", "guests")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cutoff = now - datetime.timedelta(days=30)
    aged = _aged_ids(original, cutoff)
    poison = aged[130]  # third batch of 50
    refuse_updates_of(conn, poison)
    with pytest.raises(LifeboatError) as e:
        anonymize.run(params(pg, db), now=now)
    msg = str(e.value)
    assert "failed in batch 3, which was rolled back: refused by a trigger" in msg
    assert "2 batches (100 rows) of this table were committed before it" in msg and "run again" in msg
    assert e.value.details["tables"][0]["rows_scrubbed"] == 100
    state = dict((r["id"], r) for r in pg_rows(conn, "public", "guests"))
    assert [i for i in aged if state[i]["full_name"] == "(removed)"] == aged[:100]
    conn.execute("DROP TRIGGER poison ON guests")
    res = anonymize.run(params(pg, db), now=now)
    assert res["tables"][0]["rows_scrubbed"] == len(aged) - 100
    assert pg_rows(conn, "public", "guests") == expect_guests(original, cutoff)


def test_a_row_locked_by_the_application_times_out_the_batch_not_the_run_forever(pg, tenant_db):
    db, conn = tenant_db
    original = pg_rows(conn, "public", "guests")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    aged = _aged_ids(original, now - datetime.timedelta(days=30))
    app = pg.connect(db, autocommit=False)
    app.execute("SELECT * FROM guests WHERE id = %s FOR UPDATE", (aged[60],))  # held by "the application"
    try:
        with pytest.raises(LifeboatError) as e:
            anonymize.run(params(pg, db, lock_timeout=1), now=now)
        assert "failed in batch 2, which was rolled back: canceling statement due to lock timeout" in str(e.value)
    finally:
        app.rollback()
        app.close()
    res = anonymize.run(params(pg, db, lock_timeout=1), now=now)
    assert res["tables"][0]["rows_scrubbed"] == len(aged) - 50


def test_hashes_are_stable_across_runs_and_concurrent_runs_agree(pg, tenant_db):
    db, conn = tenant_db
    original = dict((r["id"], r) for r in pg_rows(conn, "public", "guests"))
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    results, errors = [], []

    def one():
        try:
            results.append(anonymize.run(params(pg, db, older_than_days=200, batch_size=20), now=now))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one), threading.Thread(target=one)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    first = dict((r["id"], r) for r in pg_rows(conn, "public", "guests"))
    # each row once, by one of them; the earlier count saw them all
    assert sum(r["rows_scrubbed"] for r in results) == max(r["rows_to_scrub"] for r in results)
    assert [r["tables"][0]["rows_remaining"] for r in results] == [0, 0]
    later = anonymize.run(params(pg, db, older_than_days=200), now=now + datetime.timedelta(days=120))
    assert later["rows_scrubbed"] > 0
    second = dict((r["id"], r) for r in pg_rows(conn, "public", "guests"))
    for i, r in second.items():
        if first[i]["passport"].startswith("anon:"):
            assert r["passport"] == first[i]["passport"]
        if r["passport"].startswith("anon:"):
            assert r["passport"] == scrub.hash_value(KEY, original[i]["passport"])
            assert r["email"] is None or r["email"] == scrub.email_value(KEY, original[i]["email"])


def test_backups_in_an_s3_repository_are_reported(s3, tmp_path):
    import sqlite3

    from lifeboat_engine import naming, repository

    path = tmp_path / "lite.db"
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, checked_out_at TEXT, email TEXT)")
    conn.execute("INSERT INTO guests VALUES (1, '2001-01-01', 'a@b.org')")
    conn.commit()
    conn.close()
    repo = repository.open_repository(s3.url("lb"), **s3.options())
    now = naming.utcnow()
    stamps = [naming.format_stamp(now - datetime.timedelta(days=d)) for d in (50, 3)]
    for stamp in stamps:
        w = repo.new_writer("lite", naming.artifact_name("lite", stamp, "sqlite", True, True))
        w.write(b"x" * 10)
        w.commit()
        repo.write_json("lite", naming.manifest_name("lite", stamp), {"tenant": "lite"})
    rule = {"table": "guests", "timestamp": "checked_out_at", "columns": {"email": "email"}}
    p = {"tenant": "lite", "engine": "sqlite", "path": str(path), "hmac_secret": SECRET, "rules": [rule],
         "repository": s3.url("lb"), "retention_days": 14}
    p.update(s3.options())
    res = anonymize.run(p, check_mode=True, now=now)
    backups = res["backups"]
    assert [a["artifact"] for a in backups["before_cutoff"]] == [naming.artifact_name("lite", stamps[0], "sqlite", True, True)]
    assert backups["before_cutoff"][0]["overdue"] is True and backups["since_cutoff"] == 1
    assert backups["clear_by"] == naming.iso(naming.parse_stamp(stamps[1]) + datetime.timedelta(days=14))
    assert s3.options()["s3_secret_key"] not in repr(res)
    with pytest.raises(LifeboatError) as e:
        anonymize.run(dict(p, repository=str(tmp_path / "local")), check_mode=True, now=now)
    assert e.value.option == "s3_access_key"


def _tricky():
    h = scrub.hash_value(KEY, "x")
    e = scrub.email_value(KEY, "x@y.org")
    k = scrub.keep_domain_value(KEY, "x@Example.ORG")
    local = k.split("@")[0]
    return [h, h.upper(), "ANON:" + h[5:], h[:-1], h + "0", h + "\n", " " + h, h[:5] + "g" + h[6:], "anon:", "",
            e, e.upper(), e[:-1], e.replace("anonymized", "anonymised"), local[:-1] + "@anonymized.invalid",
            k, local + "@", local, local + "x@example.org", "anon-" + "é" * 24 + "@x.org", "plain@example.org",
            "ünïcödé", None]


def test_postgresql_and_python_agree_on_what_is_already_scrubbed(pg, tenant_db):
    """The server decides which rows to select, Python what to write: they must agree value by value,
    or a run would never finish its work (or redo it)."""
    db, conn = tenant_db
    values = _tricky()
    conn.execute("CREATE TABLE tricky (id int PRIMARY KEY, ts timestamptz, h text, e varchar(200), k text)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO tricky VALUES (%s, now() - interval '400 days', %s, %s, %s)",
                        [(i, v, v, v) for i, v in enumerate(values)])
    rule = {"table": "tricky", "timestamp": "ts", "columns": {"h": "hash", "e": "email", "k": "keep_domain"}}
    res = anonymize.run(params(pg, db, rules=[rule]), check_mode=True)
    cols = res["tables"][0]["columns"]
    for name, strategy in (("h", "hash"), ("e", "email"), ("k", "keep_domain")):
        expected = sum(1 for v in values if not scrub.Strategy(strategy).is_scrubbed(v))
        assert cols[name]["values_to_scrub"] == expected, (name, cols[name], expected)
    anonymize.run(params(pg, db, rules=[rule]))
    again = anonymize.run(params(pg, db, rules=[rule]), check_mode=True)
    assert again["rows_to_scrub"] == 0


class _Recorder(object):
    """The engine's connection, logging transactions and plain-text statements (with the session's
    synchronous_commit at the moment of each ``txid_current()``)."""

    def __init__(self, conn, log):
        self._conn, self._log = conn, log

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, query, *args, **kwargs):
        if isinstance(query, str):
            self._log.append(query)
            if "txid_current" in query:
                self._log.append("synchronous_commit=" + self._conn.execute("SHOW synchronous_commit").fetchone()[0])
        else:
            self._log.append("query")
        cur = self._conn.execute(query, *args, **kwargs)
        if isinstance(query, str) and "set_config('synchronous_commit'" in query:
            self._log.append("synchronous_commit=" + self._conn.execute("SHOW synchronous_commit").fetchone()[0])
        return cur

    @contextlib.contextmanager
    def transaction(self):
        self._log.append("BEGIN")
        try:
            with self._conn.transaction():
                yield
        except BaseException:
            self._log.append("ROLLBACK")
            raise
        self._log.append("COMMIT")


@pytest.fixture
def recorded(monkeypatch):
    log = []
    enter = anonymize_pg.PgTenant.__enter__

    def recording_enter(self):
        out = enter(self)
        self.conn = _Recorder(self.conn, log)
        return out

    monkeypatch.setattr(anonymize_pg.PgTenant, "__enter__", recording_enter)
    return log


def _transactions(log):
    """The statements of each committed or rolled back transaction, in order."""
    out, cur = [], None
    for item in log:
        if item == "BEGIN":
            cur = []
        elif item in ("COMMIT", "ROLLBACK"):
            out.append((item, cur))
        elif cur is not None:
            cur.append(item)
    return out


def test_batches_commit_without_waiting_for_the_disk_and_each_table_ends_with_a_durable_commit(pg, tenant_db, recorded):
    db, conn = tenant_db
    pg.psql('ALTER DATABASE "%s" SET synchronous_commit = on' % db)  # the test clusters run with it off
    original = pg_rows(conn, "public", "guests")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    res = anonymize.run(params(pg, db), now=now)
    assert res["tables"][0]["batches"] == -(-len(_aged_ids(original, now - datetime.timedelta(days=30))) // 50)
    txs = _transactions(recorded)
    batches = [t for t in txs if any("set_config('lock_timeout'" in s for s in t[1])]
    assert len(batches) == res["tables"][0]["batches"] + 1  # and the one that found nothing left
    assert all(s == "synchronous_commit=off" for _end, t in batches for s in t if s.startswith("synchronous_commit="))
    # after the last batch: one commit at the session's own setting, which waits for every batch before it
    last = txs.index(batches[-1])
    assert txs[last + 1] == ("COMMIT", ["SELECT txid_current()", "synchronous_commit=on"])
    assert not any("txid_current" in s for _end, t in txs[:last] for s in t)
    # the durable commit is the last write; the final count is a read
    assert pg_rows(conn, "public", "guests") == expect_guests(original, now - datetime.timedelta(days=30))
    recorded[:] = []
    again = anonymize.run(params(pg, db), now=now)
    assert again["rows_scrubbed"] == 0 and not any("txid_current" in s for s in recorded)


def test_a_failing_batch_first_makes_the_batches_before_it_durable(pg, tenant_db, recorded):
    db, conn = tenant_db
    original = pg_rows(conn, "public", "guests")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    poison = _aged_ids(original, now - datetime.timedelta(days=30))[60]  # second batch of 50
    refuse_updates_of(conn, poison)
    with pytest.raises(LifeboatError) as e:
        anonymize.run(params(pg, db), now=now)
    assert "1 batches (50 rows) of this table were committed before it." in str(e.value)
    ends = [(end, t[:1]) for end, t in _transactions(recorded)][-2:]
    assert ends == [("ROLLBACK", ["SELECT set_config('lock_timeout', %s, true), "
                                  "set_config('synchronous_commit', 'off', true)"]),
                    ("COMMIT", ["SELECT txid_current()"])]


def test_the_final_count_runs_once_when_it_finds_nothing_left(pg, tenant_db, monkeypatch):
    db, _conn = tenant_db
    calls = []
    verify = anonymize_pg.PgTenant.verify
    monkeypatch.setattr(anonymize_pg.PgTenant, "verify", lambda self, *a: calls.append(1) or verify(self, *a))
    res = anonymize.run(params(pg, db))
    assert res["rows_scrubbed"] > 0 and calls == [1]


@pytest.mark.parametrize("key_type,keys", [
    ("text", ["a,b", 'q"x', "{}", "a\\b", "é", "NULL", " "]),
    ("uuid", ["00000000-0000-0000-0000-00000000000%d" % i for i in range(7)]),
    ("numeric(10,2)", ["1.10", "2.00", "-3.50", "4", "5.25", "600", "7.01"]),
    ("lb_color", ["red", "green", "blue", "cyan", "magenta", "yellow", "black"]),
])
def test_keys_of_other_types_batch_and_update_the_same_rows(pg, tenant_db, key_type, keys):
    """The keys go back to the server as a binary array and as the batch's key range."""
    db, conn = tenant_db
    conn.execute("CREATE TYPE lb_color AS ENUM ('red', 'green', 'blue', 'cyan', 'magenta', 'yellow', 'black')")
    conn.execute("CREATE TABLE odd (k %s PRIMARY KEY, ts timestamptz, e text, n text)" % key_type)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO odd VALUES (%s::" + key_type + ", now() - interval '400 days', %s, %s)",
                        [(k, "u%d@example.org" % i, "n%d" % i) for i, k in enumerate(keys)])
    rule = {"table": "odd", "timestamp": "ts", "columns": {"e": "email", "n": "null"}}
    res = anonymize.run(params(pg, db, rules=[rule], batch_size=3))
    assert res["rows_scrubbed"] == len(keys) and res["tables"][0]["batches"] == 3
    got = dict(conn.execute("SELECT k::text, e FROM odd WHERE n IS NULL").fetchall())
    want = dict((conn.execute("SELECT %s::" + key_type + "::text", (k,)).fetchone()[0],
                 scrub.email_value(KEY, "u%d@example.org" % i)) for i, k in enumerate(keys))
    assert got == want
    assert anonymize.run(params(pg, db, rules=[rule]))["rows_scrubbed"] == 0
