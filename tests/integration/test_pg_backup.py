"""pg_backup through the real ansible-playbook, against a real PostgreSQL
cluster made for the session, real SQLite files and the real age CLI."""

import json
import os
import signal
import sqlite3
import stat
import subprocess
import threading
import time

import pytest

import lbtest
from lifeboat_engine import backup
from lifeboat_engine.errors import LifeboatError

SCHEMA_SQL = """
CREATE TABLE guests (
  id serial PRIMARY KEY, name text NOT NULL, email text, born date, created timestamptz DEFAULT now(),
  balance numeric(12,2), prefs jsonb, avatar bytea);
CREATE TABLE bookings (id bigserial PRIMARY KEY, guest_id int REFERENCES guests(id), nights int,
  price double precision, notes text, "Odd ""Name"" col" text);
INSERT INTO guests (name, email, born, created, balance, prefs, avatar)
  SELECT 'Guest ' || i || ' Ünïcödé', 'g' || i || '@example.com', date '1950-01-01' + (i % 20000),
         timestamptz '2020-01-01 00:00:00+00' + i * interval '37 minutes', (i * 1.25)::numeric(12,2),
         jsonb_build_object('lang', 'de', 'n', i, 'tags', jsonb_build_array('a', i)),
         decode(md5(i::text) || md5((i+1)::text), 'hex')
    FROM generate_series(1, GUESTS) i;
INSERT INTO bookings (guest_id, nights, price, notes, "Odd ""Name"" col")
  SELECT 1 + (i % GUESTS), i % 14, i / 7.0, repeat('note ' || i, 3), 'x'
    FROM generate_series(1, BOOKINGS) i;
"""


def make_tenant_db(pg, name, guests=500, bookings=2000):
    pg.psql('CREATE DATABASE "%s"' % name)
    pg.psql(tenant_sql(guests, bookings), db=name)


def tenant_sql(guests, bookings):
    return SCHEMA_SQL.replace("GUESTS", str(guests)).replace("BOOKINGS", str(bookings))


@pytest.fixture(scope="module")
def tenants(pg):
    """acme: a database tenant; saas: a shared database with schema tenants."""
    make_tenant_db(pg, "acme")
    pg.psql("CREATE DATABASE saas")
    for schema in ("globex", "initech"):
        pg.psql('CREATE SCHEMA %s; SET search_path = %s; %s' % (
            schema, schema, tenant_sql(200, 300)), db="saas")
    pg.psql("CREATE TABLE public.shared_settings (k text PRIMARY KEY, v text); "
            "INSERT INTO shared_settings VALUES ('plan', 'gold')", db="saas")
    return pg


def restore_by_hand(pg, artifact, identity, dbname):
    """age -d | zstd -d | pg_restore, with the standard tools only."""
    pg.psql('CREATE DATABASE "%s"' % dbname)
    cmd = "age -d -i %s %s | zstd -d -q | %s --no-owner --exit-on-error -d %s" % (
        identity, artifact, pg.bin("pg_restore"), dbname)
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=pg.env(), check=False)
    assert res.returncode == 0, res.stderr


def test_database_tenant_backs_up_and_restores_by_hand(tenants, keys, repo):
    pg = tenants
    res = lbtest.run_module("pg_backup", dict(pg.login, tenant="acme", repository=repo, recipients=[keys["public"]]))
    assert res.get("changed") is True and not res.get("failed"), res
    art, man = res["artifact"], res["manifest"]
    assert os.path.basename(art).startswith("acme-") and art.endswith(".pgdump.zst.age")
    for path in (art, man):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(art)).st_mode) == 0o700
    manifest = json.load(open(man))
    # the manifest tells the truth about the stored bytes
    import hashlib
    blob = open(art, "rb").read()
    assert manifest["sha256"] == hashlib.sha256(blob).hexdigest() == res["sha256"]
    assert manifest["size"]["stored"] == len(blob)
    assert manifest["size"]["raw"] > manifest["size"]["stored"]
    assert manifest["encryption"]["recipients"] == [keys["public"]]
    assert manifest["source"]["server_version"].split(".")[0] == str(pg.version)
    assert manifest["tenant"] == "acme" and manifest["engine"] == "postgresql" and manifest["format"] == "pgdump"
    with pg.connect("acme") as conn:
        source = lbtest.table_checksums(conn)
    assert manifest["row_counts"] == {k: v[0] for k, v in source.items()}
    assert pg.password not in open(man).read()
    assert pg.password not in json.dumps(res)
    # restore by hand with the standard tools; data equal
    restore_by_hand(pg, art, keys["identity"], "acme_by_hand")
    with pg.connect("acme_by_hand") as conn:
        assert lbtest.table_checksums(conn) == source


def test_schema_tenant_holds_only_its_schema(tenants, keys, repo):
    pg = tenants
    res = lbtest.run_module("pg_backup", dict(pg.socket_login, tenant="globex", database="saas", schema="globex",
                                              repository=repo, recipients=[keys["public"]]))
    assert res.get("changed") is True, res
    manifest = json.load(open(res["manifest"]))
    assert sorted(manifest["row_counts"]) == ["globex.bookings", "globex.guests"]
    assert manifest["source"]["schema"] == "globex"
    restore_by_hand(pg, res["artifact"], keys["identity"], "globex_by_hand")
    with pg.connect("saas") as conn:
        source = lbtest.table_checksums(conn, "globex")
    with pg.connect("globex_by_hand") as conn:
        assert lbtest.table_checksums(conn) == source  # nothing but the schema came along


def test_sqlite_tenant_backs_up_consistently_while_written(tmp_path, keys, repo):
    db = str(tmp_path / "initech.db")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, name TEXT, email TEXT, created TEXT, balance REAL, "
                 "prefs TEXT, avatar BLOB)")
    conn.execute("CREATE TABLE \"odd \"\"table\"\"\" (v INTEGER)")
    conn.executemany("INSERT INTO guests (name, email, created, balance, prefs, avatar) VALUES (?,?,?,?,?,?)",
                     [("Guest %d ☃" % i, "g%d@example.com" % i, "2026-01-%02dT10:00:00Z" % (1 + i % 28), i * 1.5,
                       json.dumps({"n": i}), os.urandom(32)) for i in range(20000)])
    conn.commit()
    stop = threading.Event()

    def writer():
        w = sqlite3.connect(db, timeout=30)
        i = 0
        while not stop.is_set():
            w.execute("INSERT INTO \"odd \"\"table\"\"\" VALUES (?)", (i,))
            w.commit()
            i += 1
        w.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        res = lbtest.run_module("pg_backup", dict(tenant="initech", engine="sqlite", path=db, repository=repo,
                                                  recipients=[keys["public"]]))
    finally:
        stop.set()
        t.join()
    assert res.get("changed") is True, res
    manifest = json.load(open(res["manifest"]))
    out = str(tmp_path / "restored.db")
    subprocess.run(["bash", "-o", "pipefail", "-c", "age -d -i %s %s | zstd -d -q > %s" % (keys["identity"], res["artifact"], out)],
                   check=True)
    assert subprocess.run(["sqlite3", out, "PRAGMA integrity_check"], capture_output=True, text=True, check=False).stdout.strip() == "ok"
    restored = lbtest.sqlite_checksums(out)
    # row counts in the manifest are those of the snapshot, even with a writer active
    assert manifest["row_counts"] == {k: v[0] for k, v in restored.items()}
    assert restored["guests"] == lbtest.sqlite_checksums(db)["guests"]
    assert manifest["source"]["path"] == db


def test_globals_are_backed_up_as_a_pseudo_tenant(tenants, keys, repo):
    pg = tenants
    pg.psql("DO $$ BEGIN CREATE ROLE app_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; "
            "GRANT CONNECT ON DATABASE acme TO app_reader")
    res = lbtest.run_module("pg_backup", dict(pg.login, globals=True, repository=repo, recipients=[keys["public"]]))
    assert res.get("changed") is True, res
    g = res["globals_artifact"]
    assert os.path.basename(os.path.dirname(g)).startswith("_globals_") and ".globals.zst.age" in g
    text = subprocess.run(["bash", "-o", "pipefail", "-c", "age -d -i %s %s | zstd -d -q" % (keys["identity"], g)],
                          capture_output=True, text=True, check=True).stdout
    assert "CREATE ROLE app_reader" in text and "CREATE ROLE lbadmin" in text


def test_check_mode_writes_nothing_and_skip_if_newer_than_is_idempotent(tenants, keys, repo):
    pg = tenants
    args = dict(pg.login, tenant="acme", repository=repo, recipients=[keys["public"]], skip_if_newer_than="1h")
    res = lbtest.run_module("pg_backup", args, check=True, diff=True)
    assert res.get("changed") is True and not res.get("failed"), res
    assert "would write" in res["msg"]
    assert not os.path.exists(repo)
    run = lbtest.run_playbook([
        {"name": "first", "lifeboat.backup.pg_backup": args},
        {"name": "second", "lifeboat.backup.pg_backup": args},
    ])
    assert run.rc == 0, run
    assert run.results[0]["changed"] is True
    assert run.results[1]["changed"] is False and run.results[1]["skipped"] is True
    assert run.results[1]["artifact"] == run.results[0]["artifact"]
    assert len([n for n in os.listdir(os.path.join(repo, "acme")) if n.endswith(".manifest.json")]) == 1


def _assert_nothing_published(repo, tenant):
    folder = os.path.join(repo, tenant)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    assert [n for n in names if n != ".lock"] == [], names


def test_terminated_dump_connection_fails_the_task_and_publishes_nothing(pg, keys, repo):
    make_tenant_db(pg, "bigco", guests=20000, bookings=400000)
    stop = threading.Event()
    killed = []

    def terminator():
        with pg.connect() as conn:
            while not stop.is_set() and not killed:
                rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'lifeboat-backup-pg_dump' "
                                    "AND query LIKE 'COPY %%'").fetchall()
                for (pid,) in rows:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.append(pid)
                time.sleep(0.005)

    t = threading.Thread(target=terminator)
    t.start()
    try:
        res = lbtest.run_module("pg_backup", dict(pg.login, tenant="bigco", repository=repo, recipients=[keys["public"]]))
    finally:
        stop.set()
        t.join()
    assert killed, "the test never caught pg_dump in COPY: make the table bigger"
    assert res.get("failed") is True, res
    assert "pg_dump" in res["msg"] and "exited with code" in res["msg"], res["msg"]
    assert "terminat" in res["msg"]  # pg_dump's own words reach the operator
    _assert_nothing_published(repo, "bigco")


def _pg_dump_children():
    me = os.getpid()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
            ppid = int(open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and cmd and cmd[0].endswith(b"pg_dump"):
            found.append((int(pid), cmd))
    return found


def test_killed_pg_dump_fails_cleanly_and_never_shows_the_password(pg, keys, repo):
    if not os.path.exists("/proc/self/cmdline"):
        pytest.skip("needs /proc")
    pg.psql("SELECT 1 FROM pg_database WHERE datname = 'bigco'") or make_tenant_db(pg, "bigco", 20000, 400000)
    seen = {}

    def progress(nbytes):
        for pid, cmd in _pg_dump_children():
            seen["cmdline"] = b" ".join(cmd)
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(LifeboatError) as e:
        backup.run(dict(pg.login, tenant="bigco", repository=repo, recipients=[keys["public"]]), progress=progress)
    assert "pg_dump" in str(e.value) and "-9" in str(e.value)
    assert seen, "pg_dump was never seen running"
    assert pg.password.encode() not in seen["cmdline"]
    assert b"--snapshot=" in seen["cmdline"]
    _assert_nothing_published(repo, "bigco")
    # the next run succeeds
    res = backup.run(dict(pg.login, tenant="bigco", repository=repo, recipients=[keys["public"]]))
    assert res["changed"] and os.path.exists(res["manifest"])


@pytest.mark.parametrize("tenant", ["../etc", "Acme", "a;DROP DATABASE acme", "x" * 64, "", "a/b", "lb_r_0123456789abcdef0123"])
def test_hostile_tenant_names_are_refused_before_anything_runs(keys, repo, tmp_path, tenant):
    res = lbtest.run_module("pg_backup", dict(tenant=tenant, engine="sqlite", path=str(tmp_path / "x.db"),
                                              repository=repo, recipients=[keys["public"]]))
    assert res.get("failed") is True
    assert "tenant" in res["msg"] and res.get("option") == "tenant"
    assert not os.path.exists(repo)


@pytest.mark.parametrize("case,option,words", [
    ("password", "login_host", "password authentication failed"),
    ("port", "login_host", "Cannot connect"),
    ("database", "database", "does not exist"),
    ("schema", "schema", "does not exist"),
    ("engine", "engine", "engine"),
    ("recipient", "recipients", "Malformed age recipient"),
    ("norecipient", "recipients", "No age recipients"),
    ("repository", "repository", "repository"),
])
def test_bad_input_is_a_clear_error_and_publishes_nothing(tenants, keys, repo, tmp_path, case, option, words):
    pg = tenants
    args = dict(pg.login, tenant="acme", repository=repo, recipients=[keys["public"]])
    if case == "password":
        args["login_password"] = "wrong"
    elif case == "port":
        args["login_port"] = lbtest.free_port()
    elif case == "database":
        args["database"] = "no_such_db"
    elif case == "schema":
        args.update(database="saas", schema="no_such_schema")
    elif case == "engine":
        args["engine"] = "mysql"
    elif case == "recipient":
        args["recipients"] = ["age1broken"]
    elif case == "norecipient":
        args.pop("recipients")
    elif case == "repository":
        f = tmp_path / "a-file"
        f.write_text("x")
        args["repository"] = str(f)
    res = lbtest.run_module("pg_backup", args)
    assert res.get("failed") is True, res
    assert words in res["msg"], res["msg"]
    if case != "engine":  # Ansible's own choices check words it differently
        assert res.get("option") == option, res
    assert "Traceback" not in res["msg"]
    assert pg.password not in json.dumps(res)
    assert not os.path.exists(os.path.join(repo, "acme")) or os.listdir(os.path.join(repo, "acme")) in ([], [".lock"])


def test_a_running_backup_holds_the_tenant_lock(tenants, keys, repo):
    pg = tenants
    from lifeboat_engine import repository

    r = repository.open_repository(repo)
    with r.lock("acme", "backup of tenant acme (test holder)"):
        res = lbtest.run_module("pg_backup", dict(pg.login, tenant="acme", repository=repo, recipients=[keys["public"]]))
    assert res.get("failed") is True
    assert "test holder" in res["msg"] and "lock_timeout" in res["msg"]
    res = lbtest.run_module("pg_backup", dict(pg.login, tenant="acme", repository=repo, recipients=[keys["public"]]))
    assert res.get("changed") is True, res


def test_row_counts_are_the_dumps_snapshot_while_writers_change_the_tables(pg, keys, repo):
    """The counts run beside pg_dump on the exporting connection: they must still be the snapshot's."""
    pg.psql("SELECT 1 FROM pg_database WHERE datname = 'bigco'") or make_tenant_db(pg, "bigco", 20000, 400000)
    stop = threading.Event()
    writes = []

    def writer():
        with pg.connect("bigco") as conn:
            conn.autocommit = True
            while not stop.is_set():
                conn.execute("INSERT INTO bookings (guest_id, nights, price, notes) SELECT 1, 1, 1, 'late' "
                             "FROM generate_series(1, 500)")
                conn.execute("DELETE FROM bookings WHERE id IN (SELECT id FROM bookings ORDER BY id LIMIT 300)")
                writes.append(1)

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.2)
        res = backup.run(dict(pg.login, tenant="bigco", repository=repo, recipients=[keys["public"]]))
    finally:
        stop.set()
        t.join()
    assert len(writes) > 2, "the writer did not run during the backup"
    manifest = json.load(open(res["manifest"]))
    restore_by_hand(pg, res["artifact"], keys["identity"], "bigco_snapshot")
    with pg.connect("bigco_snapshot") as conn:
        restored = {k: v[0] for k, v in lbtest.table_checksums(conn).items()}
    with pg.connect("bigco") as conn:
        now = {k: v[0] for k, v in lbtest.table_checksums(conn).items()}
    assert manifest["row_counts"] == restored
    assert now["public.bookings"] != restored["public.bookings"]  # the table did change after the snapshot
    pg.psql('DROP DATABASE "bigco_snapshot"')


def test_rows_are_counted_while_pg_dump_runs_and_a_failed_count_publishes_nothing(pg, keys, repo, monkeypatch):
    pg.psql("SELECT 1 FROM pg_database WHERE datname = 'bigco'") or make_tenant_db(pg, "bigco", 20000, 400000)
    real = backup.postgres.row_counts
    seen = {}

    def counting(conn, schema=None):
        seen["pg_dump_running"] = bool(_pg_dump_children())
        if seen.get("fail"):
            raise backup.postgres.psycopg.errors.QueryCanceled("canceling statement due to user request")
        return real(conn, schema)

    monkeypatch.setattr(backup.postgres, "row_counts", counting)
    res = backup.run(dict(pg.login, tenant="bigco", repository=repo, recipients=[keys["public"]]))
    assert seen["pg_dump_running"], "the rows were counted before pg_dump started, not beside it"
    before = sorted(os.listdir(os.path.join(repo, "bigco")))
    seen["fail"] = True
    with pytest.raises(LifeboatError) as e:
        backup.run(dict(pg.login, tenant="bigco", repository=repo, recipients=[keys["public"]]))
    assert "Counting the rows of database 'bigco'" in str(e.value) and "canceling statement" in str(e.value)
    assert e.value.option == "database"
    assert sorted(os.listdir(os.path.join(repo, "bigco"))) == before  # nothing new, the earlier artifact intact
    assert res["artifact"].split("/")[-1] in before
