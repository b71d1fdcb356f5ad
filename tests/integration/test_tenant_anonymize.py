"""tenant_anonymize through the real ansible-playbook, on a real PostgreSQL cluster (database and schema
tenants) and real SQLite files, with generated guests of many ages."""

import datetime
import hashlib
import hmac
import random
import secrets
import sqlite3

import pytest

import lbtest
from lifeboat_engine import anonymize_scrub as scrub
from lifeboat_engine import naming, repository

SECRET = "integration-secret-" + secrets.token_hex(8)
KEY = SECRET.encode()
EMAILS = ["Guest.%d@Hotel-Example.com" % i for i in range(60)] + ["x@localhost"]


def hmac_hex(value):
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()


# -- data ---------------------------------------------------------------------------

def make_pg_tenant(conn, schema, n=700, seed=1):
    """guests, bookings and an untouched rooms table in ``schema``: ages 0 to 400 days, never within
    12 hours of a whole day, so that a cut-off of whole days never falls next to a row."""
    from psycopg import sql

    rng = random.Random(seed)
    now = datetime.datetime.now(datetime.timezone.utc)
    s = sql.Identifier(schema)
    conn.execute(sql.SQL("""
        CREATE SCHEMA IF NOT EXISTS {s};
        CREATE TABLE {s}.guests (id bigint PRIMARY KEY, checked_out_at timestamptz, kind text NOT NULL,
            full_name varchar(100) NOT NULL, email varchar(120), phone text, passport varchar(80) UNIQUE,
            birth_date date, visits int, notes text);
        CREATE TABLE {s}.bookings (booking_id uuid PRIMARY KEY, created date, guest_email text, amount numeric(8,2));
        CREATE TABLE {s}.rooms (id int PRIMARY KEY, label text);
    """).format(s=s))
    guests, bookings = [], []
    for i in range(1, n + 1):
        age = datetime.timedelta(days=rng.randrange(0, 400) + 0.5, seconds=rng.randrange(3600))
        guests.append((i, None if i % 89 == 0 else now - age, "staff" if i % 7 == 0 else "guest", "Guest Nr %d" % i,
                       rng.choice(EMAILS + [None]), None if i % 5 == 0 else "+41 79 %07d" % rng.randrange(10 ** 7),
                       "P%08d" % i, datetime.date(rng.randrange(1930, 2005), rng.randrange(1, 13), rng.randrange(1, 29)),
                       i % 11, "note %d" % i))
        bookings.append(("%08x-0000-4000-8000-%012x" % (i, i), (now - datetime.timedelta(days=rng.randrange(400))).date(),
                         rng.choice(EMAILS), "%.2f" % rng.uniform(50, 900)))
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {}.guests FROM STDIN").format(s)) as copy:
            for row in guests:
                copy.write_row(row)
        with cur.copy(sql.SQL("COPY {}.bookings FROM STDIN").format(s)) as copy:
            for row in bookings:
                copy.write_row(row)
        cur.execute(sql.SQL("INSERT INTO {}.rooms SELECT g, 'room ' || g FROM generate_series(1, 30) g").format(s))


def pg_rows(conn, schema, table, order="1"):
    from psycopg import sql
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SELECT * FROM {}.{} ORDER BY " + order).format(sql.Identifier(schema), sql.Identifier(table)))
        return cur.fetchall()


GUEST_RULE = {"table": "guests", "timestamp": "checked_out_at", "where": "kind = 'guest'",
              "columns": {"full_name": {"strategy": "redact", "text": "(removed)"}, "email": "email", "phone": None,
                          "passport": "hash", "birth_date": "truncate_date"}}
BOOKING_RULE = {"table": "bookings", "timestamp": "created", "columns": {"guest_email": "keep_domain"}}


def expect_guests(original, cutoff):
    out = []
    for r in original:
        r = dict(r)
        if r["kind"] == "guest" and r["checked_out_at"] is not None and r["checked_out_at"] < cutoff:
            r["full_name"] = "(removed)"
            r["email"] = None if r["email"] is None else "anon-%s@anonymized.invalid" % hmac_hex(r["email"].strip().lower())[:24]
            r["phone"] = None
            r["passport"] = "anon:" + hmac_hex(r["passport"])
            r["birth_date"] = r["birth_date"].replace(month=1, day=1)
        out.append(r)
    return out


def date_aged(day, cutoff):
    return datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.timezone.utc) < cutoff


@pytest.fixture
def pgdb(pg):
    name = "anon_" + secrets.token_hex(4)
    pg.psql('CREATE DATABASE "%s"' % name)
    conn = pg.connect(name)
    yield name, conn
    conn.close()
    pg.psql('DROP DATABASE "%s" WITH (FORCE)' % name)


def module_args(pg, tenant, **over):
    args = dict(pg.login, tenant=tenant, hmac_secret=SECRET, batch_size=97, rules=[GUEST_RULE, BOOKING_RULE])
    args.update(over)
    return args


def cutoff_of(result):
    return datetime.datetime.strptime(result["cutoff"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def no_leak(run, *values):
    text = run.stdout + run.stderr
    assert SECRET not in text
    for v in values:
        if v:
            assert str(v) not in text, "row data in the output: %r" % (v,)


# -- tests -------------------------------------------------------------------------

def test_database_tenant_check_run_and_run_again(pg, pgdb, tmp_path):
    db, conn = pgdb
    make_pg_tenant(conn, "public")
    original = pg_rows(conn, "public", "guests")
    original_bookings = pg_rows(conn, "public", "bookings")
    rooms = lbtest.table_checksums(conn)["public.rooms"]
    # a repository with artifacts of several ages
    repo_path = str(tmp_path / "repo")
    repo = repository.open_repository(repo_path)
    now = naming.utcnow()
    stamps = [naming.format_stamp(now - datetime.timedelta(days=d)) for d in (100, 40, 10)]
    for i, stamp in enumerate(stamps):
        w = repo.new_writer(db, naming.artifact_name(db, stamp, "pgdump", True, True))
        w.write(b"x")
        w.commit()
        if i != 1:
            repo.write_json(db, naming.manifest_name(db, stamp), {"tenant": db})

    args = module_args(pg, db, repository=repo_path, retention_days=60)
    run = lbtest.run_playbook([
        {"name": "check", "lifeboat.backup.tenant_anonymize": args, "check_mode": True, "diff": True},
        {"name": "scrub", "lifeboat.backup.tenant_anonymize": args},
        {"name": "again", "lifeboat.backup.tenant_anonymize": args},
    ])
    assert run.rc == 0, run
    check, first, again = run.results
    cutoff = cutoff_of(first)
    n_aged = sum(1 for r in original if r["kind"] == "guest" and r["checked_out_at"] and r["checked_out_at"] < cutoff)
    n_bookings = sum(1 for b in original_bookings if date_aged(b["created"], cutoff))
    assert 300 < n_aged < len(original) - 100

    # check mode: counts right (and changed nothing: the real run found the same rows)
    assert check["changed"] is True and check["rows_scrubbed"] == 0
    assert [t["rows_to_scrub"] for t in check["tables"]] == [n_aged, n_bookings]
    assert check["diff"]["before"].startswith("guests: %d rows older than" % n_aged)
    assert check["diff"]["after"].startswith("guests: 0 rows")

    # the run: every aged guest scrubbed exactly as specified, everything else identical
    assert first["changed"] is True
    g, b = first["tables"]
    assert (g["rows_to_scrub"], g["rows_scrubbed"], g["rows_remaining"], g["batches"]) == (n_aged, n_aged, 0, -(-n_aged // 97))
    assert g["rows_without_timestamp"] == sum(1 for r in original if r["checked_out_at"] is None and r["kind"] == "guest")
    assert b["rows_scrubbed"] == n_bookings
    assert pg_rows(conn, "public", "guests") == expect_guests(original, cutoff)
    for before, after in zip(original_bookings, pg_rows(conn, "public", "bookings")):
        if date_aged(before["created"], cutoff):
            local = "anon-" + hmac_hex(before["guest_email"].lower())[:24]
            domain = before["guest_email"].split("@")[1].lower()
            assert after["guest_email"] == local + "@" + (domain if "." in domain else "anonymized.invalid")
            after = dict(after, guest_email=before["guest_email"])
        assert after == before
    assert lbtest.table_checksums(conn)["public.rooms"] == rooms

    # the second run: nothing left, nothing written
    assert again["changed"] is False and again["rows_scrubbed"] == 0 and again["rows_to_scrub"] == 0

    # backups still holding rows past the cut-off, and when rotation removes them
    backups = first["backups"]
    assert [a["artifact"][len(db) + 1:len(db) + 17] for a in backups["before_cutoff"]] == stamps[:2]
    assert [a["complete"] for a in backups["before_cutoff"]] == [True, False]
    assert [a["overdue"] for a in backups["before_cutoff"]] == [True, False]
    assert backups["since_cutoff"] == 1 and backups["overdue"] == 1
    assert backups["clear_by"] == naming.iso(naming.parse_stamp(stamps[2]) + datetime.timedelta(days=60))
    assert "2 backup artifact(s) taken before the cut-off" in first["msg"]

    no_leak(run, *[r["email"] for r in original[:40]] + [r["passport"] for r in original[:40]])
    assert "anon-" not in run.stdout and "anon:" not in run.stdout


def test_schema_tenant_and_sqlite_tenant_hash_alike(pg, pgdb, tmp_path):
    db, conn = pgdb
    make_pg_tenant(conn, "tenant_b", n=300, seed=2)
    make_pg_tenant(conn, "tenant_c", n=100, seed=3)  # a neighbour in the same database: never touched
    neighbour = lbtest.table_checksums(conn, "tenant_c")
    lite = tmp_path / "tenant_d.db"
    sq = sqlite3.connect(str(lite))
    sq.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, checked_out_at TEXT, email TEXT, passport TEXT)")
    old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=200)).isoformat()
    sq.executemany("INSERT INTO guests VALUES (?, ?, ?, ?)",
                   [(i, old, e.upper(), "P%08d" % (i + 1)) for i, e in enumerate(EMAILS)])
    sq.commit()
    sq.close()
    key_file = tmp_path / "anonymize.key"
    key_file.write_text(SECRET + "\n")
    lite_rule = {"table": "guests", "timestamp": "checked_out_at", "columns": {"email": "email", "passport": "hash"}}
    run = lbtest.run_playbook([
        {"name": "schema tenant", "environment": {"PII_DAYS": "45"},
         "lifeboat.backup.tenant_anonymize": dict(module_args(pg, "tenant_b"), database=db, schema="tenant_b")},
        {"name": "sqlite tenant", "lifeboat.backup.tenant_anonymize": {
            "tenant": "tenant_d", "engine": "sqlite", "path": str(lite), "hmac_secret_file": str(key_file),
            "rules": [lite_rule]}},
    ])
    assert run.rc == 0, run
    schema_res, lite_res = run.results
    assert (schema_res["older_than_days"], schema_res["older_than_days_from"], schema_res["schema"]) == (45, "PII_DAYS", "tenant_b")
    assert schema_res["rows_scrubbed"] > 100 and lite_res["rows_scrubbed"] == len(EMAILS)
    assert lbtest.table_checksums(conn, "tenant_c") == neighbour
    fakes = {}
    for r in pg_rows(conn, "tenant_b", "guests"):
        if r["email"] and r["email"].startswith("anon-"):
            fakes.setdefault(r["email"], set())
    sq = sqlite3.connect(str(lite))
    lite_rows = dict((r[0], r[1:]) for r in sq.execute("SELECT id, email, passport FROM guests"))
    sq.close()
    for i, e in enumerate(EMAILS):
        email, passport = lite_rows[i]
        assert email == scrub.email_value(KEY, e)  # same address, same fake, whatever the tenant and engine
        assert passport == "anon:" + hmac_hex("P%08d" % (i + 1))
    shared = set(fakes) & set(r[0] for r in lite_rows.values())
    assert len(shared) > 10
    no_leak(run)


def test_check_mode_reads_only_and_leaves_every_checksum(pg, pgdb):
    db, conn = pgdb
    make_pg_tenant(conn, "public", n=300, seed=4)
    conn.execute("CREATE SEQUENCE lb_probe")
    sums = lbtest.table_checksums(conn)
    # a where that would write if it could: the read-only session refuses it
    run = lbtest.run_playbook([
        {"name": "probe", "ignore_errors": True, "lifeboat.backup.tenant_anonymize": module_args(pg, db, rules=[
            dict(GUEST_RULE, where="kind = 'guest' AND nextval('lb_probe') > 0")])},
        {"name": "count", "lifeboat.backup.tenant_anonymize": module_args(pg, db)},
    ], check=True)
    probe, res = run.results
    assert probe.get("failed") and "rules[0].where" in probe["msg"] and "read-only transaction" in probe["msg"], probe
    assert conn.execute("SELECT is_called FROM lb_probe").fetchone()[0] is False
    original = pg_rows(conn, "public", "guests")
    cutoff = cutoff_of(res)
    n_aged = sum(1 for r in original if r["kind"] == "guest" and r["checked_out_at"] and r["checked_out_at"] < cutoff)
    assert res["changed"] is True and res["rows_scrubbed"] == 0
    assert res["tables"][0]["rows_to_scrub"] == n_aged
    assert res["tables"][0]["columns"]["phone"]["values_to_scrub"] == sum(
        1 for r in original if r["kind"] == "guest" and r["phone"] and r["checked_out_at"] and r["checked_out_at"] < cutoff)
    assert lbtest.table_checksums(conn) == sums


HOSTILE_TABLE = 'Guests"; DROP TABLE public.rooms; --'
HOSTILE_COL = "mail%(x)s{0}'); DELETE FROM rooms; --"


def test_hostile_input_fails_clearly_and_changes_nothing(pg, pgdb):
    db, conn = pgdb
    make_pg_tenant(conn, "public", n=200, seed=5)
    conn.execute("ALTER TABLE guests ADD COLUMN short_code varchar(20)")
    sums = lbtest.table_checksums(conn)
    ts = "checked_out_at"
    cases = [
        ({"table": HOSTILE_TABLE, "timestamp": ts, "columns": {"email": "email"}},
         'rules[0].table: table "Guests\\"; DROP TABLE public.rooms; --" does not exist in schema "public"'),
        ({"table": "guests", "timestamp": ts, "columns": {HOSTILE_COL: "hash"}},
         "rules[0].columns[\"mail%(x)s{0}'); DELETE FROM rooms; --\"]: column"),
        ({"table": "guests", "timestamp": ts, "columns": {"emial": "email", "visits": "hash", "short_code": "email"}},
         '3 problems in the rules; nothing was changed:\n'
         '- rules[0].columns.emial: column "emial" does not exist in table "guests"\n'
         '- rules[0].columns.visits: column "visits" of table "guests" is integer; hash writes text and needs a text '
         'column (text, varchar, char)\n'
         '- rules[0].columns.short_code: column "short_code" of table "guests" is character varying(20), too short for '
         'a scrubbed email value (48 characters); widen it or choose another strategy'),
        ({"table": "guests", "timestamp": ts, "where": "true; DELETE FROM rooms", "columns": {"email": "email"}},
         "rules[0].where contains ';'"),
    ]
    tasks = [{"name": "case %d" % i, "lifeboat.backup.tenant_anonymize": module_args(pg, db, rules=[rule]),
              "ignore_errors": True} for i, (rule, _m) in enumerate(cases)]
    tasks.append({"name": "no secret", "ignore_errors": True, "lifeboat.backup.tenant_anonymize":
                  module_args(pg, db, hmac_secret=None)})
    run = lbtest.run_playbook(tasks)
    results = run.results
    for (rule, message), res in zip(cases, results):
        assert res.get("failed") is True, res
        assert message in res["msg"], (message, res["msg"])
        assert "Nothing was changed" in res["msg"] or "nothing was changed" in res["msg"]
    assert results[len(cases)]["option"] == "hmac_secret" and "rules[0].columns.email" in results[len(cases)]["msg"]
    assert lbtest.table_checksums(conn) == sums
    no_leak(run)


def test_hostile_names_that_exist_are_quoted_and_scrubbed(pg, pgdb):
    db, conn = pgdb
    from psycopg import sql

    conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, ts timestamptz, {} text, note text)").format(
        sql.Identifier(HOSTILE_TABLE), sql.Identifier(HOSTILE_COL)))
    conn.execute("CREATE TABLE rooms (id int)")
    conn.execute(sql.SQL("INSERT INTO {} SELECT g, now() - g * interval '1 day' - interval '12 hours', 'g' || g || "
                         "'@x.org', 'n' || g FROM generate_series(1, 60) g").format(sql.Identifier(HOSTILE_TABLE)))
    rule = {"table": HOSTILE_TABLE, "timestamp": "ts", "where": "note LIKE 'n%' AND note <> '%(x)s'",
            "columns": {HOSTILE_COL: "hash"}}
    res = lbtest.run_module("tenant_anonymize", module_args(pg, db, rules=[rule]))
    assert res.get("failed") is not True, res
    assert res["rows_scrubbed"] == 31  # ages 1.5 .. 60.5 days: 30.5 .. 60.5 are beyond 30 days
    rows = conn.execute(sql.SQL("SELECT id, {} FROM {} ORDER BY id").format(
        sql.Identifier(HOSTILE_COL), sql.Identifier(HOSTILE_TABLE))).fetchall()
    for i, value in rows:
        assert value == ("anon:" + hmac_hex("g%d@x.org" % i) if i >= 30 else "g%d@x.org" % i)
    assert conn.execute("SELECT count(*) FROM rooms").fetchone()[0] == 0  # still there
