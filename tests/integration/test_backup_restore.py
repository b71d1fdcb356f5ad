"""backup_restore against a real PostgreSQL cluster (and a second, fresh one for
globals), real SQLite files, the real age CLI, and real ansible-playbook runs.

Backups are made with the real pg_backup engine. Every restore is compared
with the source by row counts and per-table checksums; every failure is
checked to leave the target's checksums as they were and no derived
database behind.
"""

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys

import pytest

import lbtest
from lifeboat_engine import backup, naming, restore
from lifeboat_engine.errors import LifeboatError

DATA_SQL = """
CREATE TABLE customers (
  id serial PRIMARY KEY, name text NOT NULL, balance numeric(12,2), created timestamptz,
  prefs jsonb, avatar bytea, "Odd ""Name"" col" text);
CREATE TABLE orders (
  id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), total double precision,
  note text, placed date);
CREATE TABLE blobs (id int PRIMARY KEY, payload bytea);
INSERT INTO customers (name, balance, created, prefs, avatar, "Odd ""Name"" col")
  SELECT 'Customer ' || i || ' Ünïcödé ''q''', (i * 1.25)::numeric(12,2),
         timestamptz '2021-03-01 00:00:00+00' + i * interval '61 minutes',
         jsonb_build_object('lang', 'fr', 'n', i, 'tags', jsonb_build_array('x', i)),
         decode(md5(i::text), 'hex'), CASE WHEN i % 3 = 0 THEN NULL ELSE 'odd' END
    FROM generate_series(1, ROWS) i;
INSERT INTO orders (customer_id, total, note, placed)
  SELECT 1 + (i % ROWS), i / 7.0, repeat('note ' || i, 2), date '2022-01-01' + (i % 900)
    FROM generate_series(1, ROWS * 3) i;
INSERT INTO blobs
  SELECT i, decode(string_agg(md5(i || '-' || j), '' ORDER BY j), 'hex')
    FROM generate_series(1, BLOBS) i, generate_series(1, 16) j GROUP BY i;
"""


def data_sql(rows=300, blobs=4000):
    # blobs: 256 pseudo-random (incompressible) bytes each, so that the stored artifact spans many
    # 64 KiB age chunks and a flipped byte in its middle is found only after data reached pg_restore.
    return DATA_SQL.replace("ROWS", str(rows)).replace("BLOBS", str(blobs))


def checksums(pg, db, schema=None):
    with pg.connect(db) as conn:
        return lbtest.table_checksums(conn, schema)


def databases(pg):
    return set(pg.psql("SELECT datname FROM pg_database").split())


def derived(pg):
    return sorted(d for d in databases(pg) if d.startswith(("lb_r_", "lb_s_")))


def make_sqlite(path, rows=400):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript("""
        CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT, score REAL, created TEXT, meta TEXT, img BLOB);
        CREATE TABLE tags (note_id INTEGER REFERENCES notes(id), tag TEXT);
    """)
    conn.executemany("INSERT INTO notes VALUES (?, ?, ?, ?, ?, ?, ?)", [
        (i, "Note %d é" % i, "body " * (i % 9), i / 3.0, "2024-01-%02dT10:00:00Z" % (1 + i % 28),
         json.dumps({"n": i}), os.urandom(48)) for i in range(1, rows + 1)])
    conn.executemany("INSERT INTO tags VALUES (?, ?)", [(1 + i % rows, "t%d" % (i % 5)) for i in range(rows * 2)])
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def world(pg, keys, tmp_path_factory):
    """Tenants and their artifacts, with the checksums of the source at backup time."""
    base = tmp_path_factory.mktemp("restore")
    repo = str(base / "repo")
    pg.psql("CREATE DATABASE rs_acme")
    pg.psql(data_sql(), db="rs_acme")
    pg.psql("CREATE DATABASE rs_saas")
    for schema, blobs in (("rs_globex", 1500), ("rs_neighbour", 50)):
        pg.psql("CREATE SCHEMA %s; SET search_path = %s; %s" % (schema, schema, data_sql(200, blobs)), db="rs_saas")
    pg.psql("CREATE TABLE public.shared_settings (k text PRIMARY KEY, v text); "
            "INSERT INTO shared_settings VALUES ('plan', 'gold')", db="rs_saas")
    sqlite_dir = base / "sqlite"
    sqlite_dir.mkdir()
    make_sqlite(str(sqlite_dir / "initech.db"))
    common = dict(repository=repo, recipients=[keys["public"]])
    arts = {
        "acme": backup.run(dict(pg.login, tenant="rs_acme", **common))["artifact"],
        "globex": backup.run(dict(pg.login, tenant="rs_globex", database="rs_saas", schema="rs_globex",
                                  **common))["artifact"],
        "initech": backup.run(dict(tenant="rs_initech", engine="sqlite", path=str(sqlite_dir / "initech.db"),
                                   **common))["artifact"],
    }
    return {
        "repo": repo, "base": base, "arts": arts,
        "acme": checksums(pg, "rs_acme"),
        "globex": checksums(pg, "rs_saas", "rs_globex"),
        "neighbour": checksums(pg, "rs_saas", "rs_neighbour"),
        "initech": lbtest.sqlite_checksums(str(sqlite_dir / "initech.db")),
        "sqlite_src": str(sqlite_dir / "initech.db"),
        "manifest": {k: json.load(open(_manifest_of(v))) for k, v in arts.items()},
    }


def _manifest_of(artifact):
    info = naming.parse_artifact_name(os.path.basename(artifact))
    return os.path.join(os.path.dirname(artifact), naming.manifest_name(info["tenant"], info["stamp"]))


def params(pg, keys, world, **extra):
    # These tests check the path that drops the replaced target once the restore succeeded; what is kept by
    # default (keep_safety_copy: true) is tested in test_restore_safety.py.
    p = dict(pg.login, tenant="rs_acme", repository=world["repo"], identity_file=keys["identity"],
             keep_safety_copy=False)
    p.update(extra)
    return p


def fresh_copy(pg, keys, world, name):
    """A database holding the acme backup, then changed so that it differs from the artifact."""
    restore.run(params(pg, keys, world, target_database=name, force=True))
    pg.psql("DELETE FROM orders WHERE id % 2 = 0; CREATE TABLE extra (x int); INSERT INTO extra VALUES (1)", db=name)
    sums = checksums(pg, name)
    assert sums != world["acme"]
    return sums


def assert_counts(result, manifest):
    assert result["row_counts_match"] is True
    assert result["row_counts"] == manifest["row_counts"]
    assert result["rows"] == sum(manifest["row_counts"].values()) > 0


# -- database tenants ----------------------------------------------------------------------------


def test_database_tenant_into_a_new_target_equals_the_source(pg, keys, world):
    before = databases(pg)
    res = restore.run(params(pg, keys, world, target_database="rs_acme_new"))
    assert checksums(pg, "rs_acme_new") == world["acme"]
    assert_counts(res, world["manifest"]["acme"])
    assert res["replaced"] == {"database": "rs_acme_new", "existed": False}
    assert res["safety_copy"] is None and res["changed"] is True
    assert res["artifact"] == world["arts"]["acme"]
    assert databases(pg) == before | {"rs_acme_new"}
    # a second run refuses the now non-empty target (not the tenant's own database), and changes nothing
    with pytest.raises(LifeboatError) as e:
        restore.run(params(pg, keys, world, target_database="rs_acme_new"))
    assert e.value.option == "replace_target" and "not empty" in str(e.value)
    assert "force: true and replace_target: rs_acme_new" in str(e.value)


def test_database_force_through_ansible_keeps_owner_grants_settings(pg, keys, world):
    fresh_copy(pg, keys, world, "rs_acme_live")
    pg.psql("CREATE ROLE rs_owner NOLOGIN; CREATE ROLE rs_app LOGIN")
    pg.psql("ALTER DATABASE rs_acme_live OWNER TO rs_owner; REVOKE ALL ON DATABASE rs_acme_live FROM PUBLIC; "
            "GRANT CONNECT ON DATABASE rs_acme_live TO rs_app; "
            "ALTER DATABASE rs_acme_live SET search_path = app, public; "
            "ALTER ROLE rs_app IN DATABASE rs_acme_live SET work_mem = '3MB'; "
            "COMMENT ON DATABASE rs_acme_live IS 'the live one'")

    def props():
        return pg.psql(
            "SELECT pg_get_userbyid(datdba), datacl::text, shobj_description(oid, 'pg_database'), "
            "(SELECT string_agg(array_to_string(setconfig, ','), ';' ORDER BY setrole) FROM pg_db_role_setting "
            "WHERE setdatabase = d.oid) FROM pg_database d WHERE datname = 'rs_acme_live'")

    wanted = props()
    before = databases(pg)
    secret = open(keys["identity"]).read()
    args = dict(pg.login, keep_safety_copy=False, tenant="rs_acme", repository=world["repo"], identity=secret,
                target_database="rs_acme_live", force=True, replace_target="rs_acme_live")
    res = lbtest.run_module("backup_restore", args, diff=True)
    assert res.get("changed") is True and not res.get("failed"), res
    assert checksums(pg, "rs_acme_live") == world["acme"]
    assert_counts(res, world["manifest"]["acme"])
    assert props() == wanted
    assert res["replaced"]["existed"] is True and res["replaced"]["owner"] == "rs_owner"
    assert res["replaced"]["contents"]["tables"] == 4
    safety = res["safety_copy"]
    assert safety["dropped"] is True and safety["kept"] is False and safety["dropped_at"]
    assert safety["database"].startswith("lb_s_") and safety["database"] not in databases(pg)
    assert databases(pg) == before and derived(pg) == []
    assert "AGE-SECRET-KEY" not in json.dumps(res)
    assert res["diff"]["before"]["existed"] is True


def test_jobs_2_uses_a_private_folder_that_is_removed(pg, keys, world, tmp_path):
    target_sums = fresh_copy(pg, keys, world, "rs_acme_jobs")
    assert target_sums != world["acme"]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    seen = []

    def progress(count):
        for entry in os.scandir(str(tmp)):
            files = [(f.name, stat.S_IMODE(f.stat().st_mode)) for f in os.scandir(entry.path)]
            seen.append((stat.S_IMODE(entry.stat().st_mode), files))

    res = restore.run(params(pg, keys, world, target_database="rs_acme_jobs", force=True, replace_target="rs_acme_jobs", jobs=2,
                             tmp_dir=str(tmp)), progress=progress)
    assert checksums(pg, "rs_acme_jobs") == world["acme"]
    assert_counts(res, world["manifest"]["acme"])
    assert seen and all(mode == 0o700 and files == [("archive.pgdump", 0o600)] for mode, files in seen), seen
    assert os.listdir(str(tmp)) == []
    assert derived(pg) == []


def test_allow_create_in_dump_restores_under_the_archives_name(pg, keys, world):
    pg.psql("CREATE DATABASE rs_created")
    pg.psql(data_sql(50, 20) + "; COMMENT ON DATABASE rs_created IS 'from the dump'", db="rs_created")
    art = backup.run(dict(pg.login, tenant="rs_created", repository=world["repo"], recipients=[keys["public"]]))
    wanted = checksums(pg, "rs_created")
    pg.psql("DELETE FROM customers WHERE id > 10 AND id NOT IN (SELECT customer_id FROM orders)", db="rs_created")
    pg.psql("DELETE FROM orders", db="rs_created")
    pg.psql("COMMENT ON DATABASE rs_created IS 'changed'")
    res = restore.run(params(pg, keys, world, tenant="rs_created", artifact=art["artifact"], force=True,
                             allow_create_in_dump=True))
    assert checksums(pg, "rs_created") == wanted
    assert res["target"]["database"] == "rs_created" and res["safety_copy"]["dropped"] is True
    assert pg.psql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'rs_created'") \
        == "from the dump"
    assert derived(pg) == []


def test_connected_clients_are_named_or_terminated(pg, keys, world):
    fresh_copy(pg, keys, world, "rs_acme_busy")
    before = checksums(pg, "rs_acme_busy")
    conn = pg.connect("rs_acme_busy")
    conn.execute("SET application_name = 'rs-web-app'")
    pid = conn.info.backend_pid
    try:
        with pytest.raises(LifeboatError) as e:
            restore.run(params(pg, keys, world, target_database="rs_acme_busy", force=True, replace_target="rs_acme_busy"))
        assert e.value.option == "terminate_connections"
        assert "rs-web-app" in str(e.value) and ("pid %d" % pid) in str(e.value) and "Nothing was changed" in str(e.value)
        assert checksums(pg, "rs_acme_busy") == before
        res = restore.run(params(pg, keys, world, target_database="rs_acme_busy", force=True, replace_target="rs_acme_busy",
                                 terminate_connections=True))
        assert len(res["terminated_sessions"]) == 1 and "rs-web-app" in res["terminated_sessions"][0]
        assert checksums(pg, "rs_acme_busy") == world["acme"]
        assert pg.psql("SELECT datallowconn FROM pg_database WHERE datname = 'rs_acme_busy'") == "t"
    finally:
        try:
            conn.close()
        except Exception:
            pass
    assert derived(pg) == []


def test_check_mode_says_what_would_be_replaced_and_touches_nothing(pg, keys, world):
    sums = fresh_copy(pg, keys, world, "rs_acme_check")
    before = databases(pg)
    args = dict(pg.login, keep_safety_copy=False, tenant="rs_acme", repository=world["repo"], identity_file=keys["identity"],
                target_database="rs_acme_check", force=True, replace_target="rs_acme_check")
    res = lbtest.run_module("backup_restore", args, check=True)
    assert not res.get("failed"), res
    assert res["changed"] is True and res["check_mode"] is True
    assert "would restore" in res["msg"] and "rs_acme_check" in res["msg"] and "safety copy" in res["msg"]
    assert res["replaced"]["contents"]["tables"] == 4
    assert "row_counts" not in res
    assert databases(pg) == before and checksums(pg, "rs_acme_check") == sums


# -- failures leave the target as it was -------------------------------------------------------------


def _damaged_copy(world, tmp_path, how):
    src = world["arts"]["acme"]
    d = tmp_path / "copy" / "rs_acme"
    d.mkdir(parents=True)
    dst = str(d / os.path.basename(src))
    shutil.copy(src, dst)
    if how != "missing_manifest":
        shutil.copy(_manifest_of(src), str(d))
    if how == "truncated":
        with open(dst, "r+b") as f:
            f.truncate(os.path.getsize(dst) - 1000)
    if how == "tampered":
        with open(dst, "r+b") as f:
            f.seek(os.path.getsize(dst) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
    return dst


FAILURES = {
    # case: (extra params, words the message must contain, option it must name)
    "wrong_key": (lambda k: {"identity_file": k["other_identity"]}, ["Wrong key", "recipients"], "identity_file"),
    "truncated": (lambda k: {}, ["truncated", "Nothing was changed"], "artifact"),
    "tampered": (lambda k: {}, ["age decryption failed", "not changed", "dropped"], None),
    "missing_manifest": (lambda k: {}, ["no manifest", "incomplete", "Nothing was changed"], "artifact"),
    "not_empty": (lambda k: {"force": False}, ["not empty", "force: true"], "force"),
    "pg_restore_error": (lambda k: {"privileges": True},
                         ["pg_restore", "does not exist", "globals_artifact", "not changed"], "privileges"),
}


@pytest.fixture(scope="module")
def victim(pg, keys, world):
    """A database with roles granted in the artifact, then changed: the target of failing restores."""
    pg.psql("CREATE ROLE rs_ghost")
    pg.psql("CREATE DATABASE rs_priv")
    pg.psql(data_sql(100, 600) + "; GRANT SELECT ON customers TO rs_ghost", db="rs_priv")
    art = backup.run(dict(pg.login, tenant="rs_priv", repository=world["repo"], recipients=[keys["public"]]))
    pg.psql("REVOKE ALL ON customers FROM rs_ghost", db="rs_priv")
    pg.psql("DROP ROLE rs_ghost")
    restore.run(params(pg, keys, world, target_database="rs_victim", force=True, replace_target="rs_victim"))
    pg.psql("UPDATE customers SET name = 'changed' WHERE id < 50; DROP TABLE blobs", db="rs_victim")
    return {"priv_artifact": art["artifact"], "sums": checksums(pg, "rs_victim")}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_database_failures_leave_the_target_unchanged(pg, keys, world, victim, tmp_path, case):
    extra, words, option = FAILURES[case]
    p = params(pg, keys, world, target_database="rs_victim", force=True, replace_target="rs_victim")
    p.update(extra(keys))
    if case in ("truncated", "tampered", "missing_manifest"):
        p["artifact"] = _damaged_copy(world, tmp_path, case)
    if case == "pg_restore_error":
        p.update(tenant="rs_priv", artifact=victim["priv_artifact"])
    before = databases(pg)
    with pytest.raises(LifeboatError) as e:
        restore.run(p)
    msg = str(e.value)
    for word in words:
        assert word in msg, (word, msg)
    if option:
        assert e.value.option == option, msg
    assert checksums(pg, "rs_victim") == victim["sums"]
    assert databases(pg) == before and derived(pg) == []
    assert "AGE-SECRET-KEY" not in msg


def test_failure_through_ansible_fails_the_task_with_the_message(pg, keys, world, victim, tmp_path):
    args = dict(pg.login, keep_safety_copy=False, tenant="rs_acme", artifact=_damaged_copy(world, tmp_path, "tampered"),
                identity_file=keys["identity"], target_database="rs_victim", force=True, replace_target="rs_victim")
    res = lbtest.run_module("backup_restore", args)
    assert res.get("failed") is True, res
    assert "age decryption failed" in res["msg"] and "rs_victim" in res["msg"]
    assert checksums(pg, "rs_victim") == victim["sums"]


# -- schema tenants --------------------------------------------------------------------------------------


def test_schema_tenant_into_a_new_database_then_over_itself(pg, keys, world):
    res = restore.run(params(pg, keys, world, tenant="rs_globex", target_database="rs_saas_new"))
    assert res["target"] == {"kind": "schema", "server": res["target"]["server"], "database": "rs_saas_new",
                             "schema": "rs_globex", "path": None}
    assert checksums(pg, "rs_saas_new", "rs_globex") == world["globex"]
    assert_counts(res, world["manifest"]["globex"])
    assert res["replaced"]["database_existed"] is False
    # over the original, changed: replaced in one transaction, the neighbours untouched
    pg.psql("DELETE FROM rs_globex.orders; CREATE TABLE rs_globex.extra (x int)", db="rs_saas")
    with pytest.raises(LifeboatError) as e:
        restore.run(params(pg, keys, world, tenant="rs_globex", database="rs_saas"))
    assert e.value.option == "force"
    res = restore.run(params(pg, keys, world, tenant="rs_globex", database="rs_saas", force=True, jobs=2))
    assert checksums(pg, "rs_saas", "rs_globex") == world["globex"]
    assert checksums(pg, "rs_saas", "rs_neighbour") == world["neighbour"]
    assert pg.psql("SELECT v FROM shared_settings", db="rs_saas") == "gold"
    assert any("jobs: 2 was not used" in w for w in res["warnings"])
    assert derived(pg) == []


@pytest.mark.parametrize("case", ["tampered", "pg_restore_error", "outside_dependent"])
def test_schema_failures_roll_back(pg, keys, world, tmp_path, case):
    pg.psql("DROP DATABASE IF EXISTS rs_saas_fail")
    restore.run(params(pg, keys, world, tenant="rs_globex", target_database="rs_saas_fail"))
    pg.psql("UPDATE rs_globex.customers SET balance = 0 WHERE id < 20; CREATE TABLE public.keep (x int)",
            db="rs_saas_fail")
    p = params(pg, keys, world, tenant="rs_globex", target_database="rs_saas_fail", force=True, replace_target="rs_saas_fail")
    if case == "tampered":
        art = world["arts"]["globex"]
        d = tmp_path / "rs_globex"
        d.mkdir()
        shutil.copy(art, str(d))
        shutil.copy(_manifest_of(art), str(d))
        p["artifact"] = str(d / os.path.basename(art))
        with open(p["artifact"], "r+b") as f:
            f.seek(os.path.getsize(p["artifact"]) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x80]))
        words = ["age decryption failed", "rolled back"]
    elif case == "pg_restore_error":
        # privileges: true with a grant to a role the server no longer has: pg_restore fails mid-script
        pg.psql("CREATE ROLE rs_schema_ghost")
        pg.psql("GRANT SELECT ON rs_globex.orders TO rs_schema_ghost", db="rs_saas")
        art = backup.run(dict(pg.login, tenant="rs_globex", database="rs_saas", schema="rs_globex",
                              repository=str(tmp_path / "r2"), recipients=[keys["public"]]))
        pg.psql("REVOKE ALL ON rs_globex.orders FROM rs_schema_ghost", db="rs_saas")
        pg.psql("DROP ROLE rs_schema_ghost")
        p.update(artifact=art["artifact"], privileges=True)
        words = ["does not exist", "rolled back"]
    else:
        pg.psql("CREATE VIEW public.peek AS SELECT id FROM rs_globex.customers", db="rs_saas_fail")
        words = ["depend on it", "public.peek", "Nothing was changed"]
    before = checksums(pg, "rs_saas_fail")
    with pytest.raises(LifeboatError) as e:
        restore.run(p)
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    assert checksums(pg, "rs_saas_fail") == before
    assert derived(pg) == []


# -- SQLite tenants --------------------------------------------------------------------------------------


def test_sqlite_into_a_scratch_path_then_over_it(keys, world, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = str(scratch / "initech.db")
    p = dict(tenant="rs_initech", engine="sqlite", repository=world["repo"], identity_file=keys["identity"],
             target_path=target)
    res = restore.run(p)
    assert lbtest.sqlite_checksums(target) == world["initech"]
    assert_counts(res, world["manifest"]["initech"])
    assert res["safety_copy"] is None and res["target"]["path"] == target
    # changed, then replaced with force; the mode of the old file is kept, nothing is left beside it
    conn = sqlite3.connect(target)
    conn.execute("DELETE FROM tags")
    conn.commit()
    conn.close()
    os.chmod(target, 0o640)
    with pytest.raises(LifeboatError) as e:
        restore.run(p)
    assert e.value.option == "replace_target"  # not the tenant's own file: named twice to replace it
    res = restore.run(dict(p, force=True, replace_target=target, keep_safety_copy=False, jobs=3))
    assert lbtest.sqlite_checksums(target) == world["initech"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert res["safety_copy"]["dropped"] is True
    assert os.listdir(str(scratch)) == ["initech.db"]
    assert any("jobs: 3" in w for w in res["warnings"])


@pytest.mark.parametrize("case", ["tampered", "in_use", "wrong_key"])
def test_sqlite_failures_leave_the_file_unchanged(keys, world, tmp_path, case):
    target = str(tmp_path / "live.db")
    shutil.copy(world["sqlite_src"], target)
    conn = sqlite3.connect(target)
    conn.execute("DELETE FROM notes WHERE id > 300")
    conn.commit()
    conn.close()
    before = lbtest.sqlite_checksums(target)
    p = dict(tenant="rs_initech", engine="sqlite", repository=world["repo"], identity_file=keys["identity"],
             target_path=target, force=True, replace_target=target)
    holder = None
    if case == "tampered":
        art = world["arts"]["initech"]
        d = tmp_path / "rs_initech"
        d.mkdir()
        shutil.copy(art, str(d))
        shutil.copy(_manifest_of(art), str(d))
        p["artifact"] = str(d / os.path.basename(art))
        with open(p["artifact"], "r+b") as f:
            f.seek(os.path.getsize(p["artifact"]) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
        words = ["age decryption failed", "not changed"]
    elif case == "in_use":
        # another process has the file open (the restoring process itself is not counted)
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'rb'); "
                                   "print('ok', flush=True); time.sleep(60)", target], stdout=subprocess.PIPE)
        holder.stdout.readline()
        words = ["in use", "pid %d" % holder.pid, "Nothing was changed"]
    else:
        p["identity_file"] = keys["other_identity"]
        words = ["Wrong key"]
    try:
        with pytest.raises(LifeboatError) as e:
            restore.run(p)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    assert lbtest.sqlite_checksums(target) == before
    assert sorted(os.listdir(str(tmp_path))) == sorted(["live.db"] + (["rs_initech"] if case == "tampered" else []))


# -- long names ---------------------------------------------------------------------------------------------


def test_63_character_tenant_never_collides_with_derived_names(pg, keys, world):
    tenant = "t" + "0123456789abcdefghijklmnopqrstuvwxyz-_0123456789abcdefghijklmnop"[:62]
    assert len(tenant) == 63
    naming.validate_tenant(tenant)
    pg.psql('CREATE DATABASE "%s"' % tenant)
    pg.psql(data_sql(40, 10), db=tenant)
    wanted = checksums(pg, tenant)
    backup.run(dict(pg.login, tenant=tenant, repository=world["repo"], recipients=[keys["public"]]))
    pg.psql("DELETE FROM orders", db=tenant)
    res = restore.run(params(pg, keys, world, tenant=tenant, force=True, keep_safety_copy=True))
    safety = res["safety_copy"]["database"]
    fresh = res["fresh_database"]
    for name in (safety, fresh):
        assert name != tenant and len(name.encode()) <= 63 and not tenant.startswith(name)
    assert checksums(pg, tenant) == wanted
    assert res["safety_copy"]["kept"] is True and safety in databases(pg)
    assert checksums(pg, safety)["public.orders"][0] == 0  # the old data, under the derived name
    pg.psql('DROP DATABASE "%s"' % safety)
    assert derived(pg) == []


# -- globals on a fresh cluster ------------------------------------------------------------------------------


@pytest.fixture
def other():
    cluster = lbtest.PgCluster(tag="other").start()
    yield cluster
    cluster.drop()


def test_globals_then_tenant_with_privileges_on_a_fresh_cluster(pg, other, keys, tmp_path):
    repo = str(tmp_path / "repo")
    pg.psql("CREATE ROLE rs_rw NOLOGIN; CREATE ROLE rs_ro LOGIN PASSWORD 'ro-secret-42'; GRANT rs_rw TO rs_ro")
    pg.psql("CREATE DATABASE rs_granted")
    pg.psql(data_sql(60, 30) + "; GRANT SELECT ON customers, orders TO rs_ro; GRANT ALL ON blobs TO rs_rw",
            db="rs_granted")
    res = backup.run(dict(pg.login, tenant="rs_granted", globals=True, repository=repo, recipients=[keys["public"]]))
    assert res["globals_artifact"]
    wanted = checksums(pg, "rs_granted")
    args = dict(other.login, tenant="rs_granted", repository=repo, identity_file=keys["identity"],
                globals_artifact="latest", privileges=True)
    out = lbtest.run_module("backup_restore", args)
    assert out.get("changed") is True and not out.get("failed"), out
    assert {"rs_rw", "rs_ro"} <= set(out["globals"]["roles_created"])
    assert {"lbadmin", "postgres"} <= set(out["globals"]["roles_existing"])
    assert "SCRAM" not in json.dumps(out)
    assert checksums(other, "rs_granted") == wanted
    assert other.psql("SELECT has_table_privilege('rs_ro', 'public.customers', 'SELECT'), "
                      "has_table_privilege('rs_ro', 'public.blobs', 'SELECT'), "
                      "has_table_privilege('rs_rw', 'public.blobs', 'DELETE'), "
                      "pg_has_role('rs_ro', 'rs_rw', 'MEMBER')", db="rs_granted") == "t|t|t|t"
    # the restored role logs in with its own password; the restoring role kept its own
    import psycopg

    psycopg.connect(host="127.0.0.1", port=other.port, user="rs_ro", password="ro-secret-42", dbname="rs_granted").close()
    other.connect().close()


def test_owners_true_gives_the_application_its_tables_back(pg, other, keys, tmp_path):
    # In a rebuild the application's role must own its tables again, or it
    # cannot write them: owners: true restores the archive's owners.
    repo = str(tmp_path / "repo")
    pg.psql("CREATE ROLE rs_appowner LOGIN PASSWORD 'owner-secret-42'")
    pg.psql("CREATE DATABASE rs_owned OWNER rs_appowner")
    pg.psql("SET ROLE rs_appowner; " + data_sql(40, 20), db="rs_owned")
    res = backup.run(dict(pg.login, tenant="rs_owned", globals=True, repository=repo, recipients=[keys["public"]]))
    assert res["globals_artifact"]
    wanted = checksums(pg, "rs_owned")
    args = dict(other.login, tenant="rs_owned", repository=repo, identity_file=keys["identity"], owners=True)
    # Without the roles on the server, the restore fails, names the option and the fix, and creates nothing.
    out = lbtest.run_module("backup_restore", args)
    assert out.get("failed") is True and "globals_artifact" in out["msg"], out
    assert other.psql("SELECT count(*) FROM pg_database WHERE datname = 'rs_owned'") == "0"
    out = lbtest.run_module("backup_restore", dict(args, globals_artifact="latest"))
    assert out.get("changed") is True and not out.get("failed"), out
    assert checksums(other, "rs_owned") == wanted
    owners = other.psql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", db="rs_owned")
    assert owners == "rs_appowner", owners
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=other.port, user="rs_appowner", password="owner-secret-42",
                         dbname="rs_owned") as conn:
        conn.execute("DELETE FROM orders")  # the owner may write its tables again
    # Without owners, the restoring user owns them (the default, --no-owner).
    out = lbtest.run_module("backup_restore", dict(other.login, tenant="rs_owned", repository=repo,
                                                   identity_file=keys["identity"], target_database="rs_owned_plain"))
    assert out.get("changed") is True and not out.get("failed"), out
    plain = other.psql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", db="rs_owned_plain")
    assert plain == other.login["login_user"], plain


# -- s3:// repositories ----------------------------------------------------------------------------------------


def test_restore_from_an_s3_repository(pg, keys, s3, tmp_path):
    repo = s3.url("lifeboat")
    pg.psql("CREATE DATABASE rs_s3db")
    pg.psql(data_sql(80, 300), db="rs_s3db")
    wanted = checksums(pg, "rs_s3db")
    common = dict(s3.options(), repository=repo, recipients=[keys["public"]])
    backup.run(dict(pg.login, tenant="rs_s3db", **common))
    src = str(tmp_path / "src.db")
    make_sqlite(src, rows=50)
    art = backup.run(dict(tenant="rs_s3lite", engine="sqlite", path=src, **common))["artifact"]
    assert art.startswith("s3://")
    res = restore.run(dict(pg.login, **s3.options(), tenant="rs_s3db", repository=repo, identity_file=keys["identity"],
                           target_database="rs_s3_copy"))
    assert res["artifact"].startswith(repo + "/rs_s3db/") and res["manifest"].startswith("s3://")
    assert checksums(pg, "rs_s3_copy") == wanted
    target = str(tmp_path / "restored.db")
    res = restore.run(dict(s3.options(), tenant="rs_s3lite", engine="sqlite", artifact=art,
                           identity_file=keys["identity"], target_path=target))
    assert lbtest.sqlite_checksums(target) == lbtest.sqlite_checksums(src)
    assert res["target_path"] == target and res["target_database"] is None
    # a byte flipped in the stored object: refused, the target keeps what it held
    key = art[len("s3://%s/" % s3.bucket):]
    blob = bytearray(s3.get(key))
    blob[len(blob) // 2] ^= 0x01
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(blob))
    before = lbtest.sqlite_checksums(target)
    with pytest.raises(LifeboatError) as e:
        restore.run(dict(s3.options(), tenant="rs_s3lite", engine="sqlite", artifact=art,
                         identity_file=keys["identity"], target_path=target, force=True, replace_target=target))
    assert "age decryption failed" in str(e.value) and "not changed" in str(e.value)
    assert lbtest.sqlite_checksums(target) == before
    assert sorted(os.listdir(str(tmp_path))) == ["restored.db", "src.db"]
