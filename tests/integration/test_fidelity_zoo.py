"""Fidelity: every PostgreSQL feature of the zoo (tests/zoo.py, tests/zoo/*.sql) survives pg_backup,
backup_verify and backup_restore, through the modules in real ansible-playbook runs.

The zoo is one database tenant (``Zoo Db``: the tenant's objects in ``public``, large objects, an event
trigger, a publication, the database's comment, grants and settings) and two schema tenants of a
multi-tenant database built as tests/saas.py builds one (extensions, shared tables and a non-tenant
schema beside them, and a saas tenant): ``zoo_plain`` and ``Zoo "Q" Co's``. One playbook backs them
up, verifies every artifact and restores each tenant into new databases twice: with the defaults
(``--no-owner --no-privileges``), and with ``privileges: true`` and ``owners: true``. Each copy must
equal its source: every table's, materialized view's and view's rows and checksum, every sequence's
value, every large object's bytes (and owner, grants and comment with the options), and
``pg_dump -s`` (without owners and grants for the defaults; whole with the options).

Also: a backup role that cannot read one table (or is subject to row-level security, or cannot read a
large object) fails the backup naming what and the grant that fixes it, and publishes nothing; and
pgbench writing during the backups leaves copies that satisfy its invariant.
"""

import json
import os
import signal
import subprocess
import time

import pytest

import lbtest
import saas
import zoo

DB = "Zoo Db"
MT = "zoo_saas"
SCHEMAS = {"zoo-plain": "zoo_plain", "zoo-quoted": 'Zoo "Q" Co\'s'}
MEMBERS = [{"tenant": t, "schema": s} for t, s in SCHEMAS.items()] + [{"tenant": "acme"}]
SHARED = ("public", "audit")
# (copy, restore options): the defaults, then grants and owners too
COPIES = {"": {}, "_p": {"privileges": True, "owners": True}}
BACKUP_PW = "zoo-backup-pw"


def _dumps(pg, db, scope, full):
    args = ["-n", zoo.ident(scope)] if scope else []
    return zoo.schema_dump(pg, db, *(args if full else ["--no-owner", "--no-privileges"] + args))


def facts(pg, db, scopes, full):
    """What a copy must equal: per scope (a schema, or None for the whole database) its rows, sequences and
    pg_dump -s; large objects for a whole database."""
    out = {}
    with pg.connect(db) as conn:
        for scope in scopes:
            out[scope] = {"rows": zoo.checksums(conn, scope), "sequences": zoo.sequences(conn, scope),
                          "dump": _dumps(pg, db, scope, full)}
        if None in scopes:
            out["large_objects"] = zoo.large_objects(conn, owners=full)
            out["database"] = zoo.database_properties(conn, owners=full)
    return out


@pytest.fixture(scope="module")
def zoo_world(pg, keys, tmp_path_factory):
    """The zoo, backed up, verified and restored by one playbook; the sources' facts at backup time."""
    for db in (DB, MT):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % zoo.ident(db))
    zoo.load_database(pg, DB)
    saas.build(pg, db=MT, tenants=("acme",), rows=10)
    for schema in SCHEMAS.values():
        zoo.load_schema(pg, MT, schema)
    # the non-superuser backup role may read every table of the zoo but payroll
    zoo.run_sql(pg, zoo.backup_role_script("public", BACKUP_PW), db=DB)
    zoo.run_sql(pg, "".join(zoo.backup_role_script(s) for s in SCHEMAS.values()) + "".join(
        "GRANT USAGE ON SCHEMA {0} TO zoo_backup; GRANT SELECT ON ALL TABLES IN SCHEMA {0} TO zoo_backup; "
        "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {0} TO zoo_backup;\n".format(s)
        for s in ("public", "audit", "acme")), db=MT)
    base = tmp_path_factory.mktemp("zoo")
    repo = str(base / "repo")
    common = dict(pg.login, repository=repo)
    tasks = [
        {"name": "db", "lifeboat.backup.pg_backup": dict(common, tenant="zoo-db", database=DB,
                                                         recipients=[keys["public"]])},
        {"name": "pass", "lifeboat.backup.pg_backup": dict(common, database=MT, schemas=MEMBERS,
                                                           recipients=[keys["public"]])},
        {"name": "verify", "lifeboat.backup.backup_verify": dict(common, identity_file=keys["identity"])},
    ]
    for suffix, options in COPIES.items():
        tasks.append({"name": "restore zoo-db" + suffix, "lifeboat.backup.backup_restore": dict(
            common, tenant="zoo-db", identity_file=keys["identity"], target_database="zoo_copy" + suffix, **options)})
        for tenant in SCHEMAS:
            tasks.append({"name": "restore %s%s" % (tenant, suffix), "lifeboat.backup.backup_restore": dict(
                common, tenant=tenant, identity_file=keys["identity"], target_database="zoo_saas_copy" + suffix,
                **options)})
    for task in tasks:
        task["ignore_errors"] = True
    started = time.monotonic()
    run = lbtest.run_playbook(tasks)
    seconds = time.monotonic() - started
    results = dict((r["_task"], r) for r in run.results)
    assert len(results) == len(tasks), run
    sources = {}
    for full in (False, True):
        sources[(DB, full)] = facts(pg, DB, [None], full)
        sources[(MT, full)] = facts(pg, MT, list(SCHEMAS.values()) + list(SHARED), full)
    yield {"repo": repo, "results": results, "sources": sources, "seconds": seconds, "base": base}
    for db in (DB, MT) + tuple("%s%s" % (c, s) for c in ("zoo_copy", "zoo_saas_copy") for s in COPIES):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % zoo.ident(db))


def manifest(path):
    with open(path) as f:
        return json.load(f)


# what the zoo's pg_dump -s must show, so that comparing it is no empty proof
MARKERS = ("AS ENUM", "AS RANGE", "CREATE DOMAIN", "GENERATED ALWAYS AS IDENTITY", "GENERATED ALWAYS AS (",
           "DEFERRABLE INITIALLY DEFERRED", "EXCLUDE USING gist", "USING gin", "CREATE STATISTICS", "NOT VALID",
           "ATTACH PARTITION", "DEFAULT;", "INHERITS", "UNLOGGED SEQUENCE", "CYCLE", "CREATE PROCEDURE",
           "CREATE AGGREGATE", "CREATE CONSTRAINT TRIGGER", "REFERENCING NEW TABLE", "DISABLE TRIGGER",
           "security_barrier", "security_invoker", "CHECK OPTION", "CREATE MATERIALIZED VIEW", "WITH NO DATA",
           "FORCE ROW LEVEL SECURITY", "AS RESTRICTIVE", "GRANT SELECT(", "WITH GRANT OPTION",
           "ALTER DEFAULT PRIVILEGES", 'Order ""Lines"" 2026', "UNLOGGED TABLE", "COMMENT ON")


def test_the_zoo_has_what_it_claims(zoo_world):
    database = zoo_world["sources"][(DB, True)][None]["dump"]
    for marker in MARKERS + ("CREATE EXTENSION", "CREATE EVENT TRIGGER", "CREATE PUBLICATION"):
        assert marker in database, marker
    for schema in SCHEMAS.values():
        dump = zoo_world["sources"][(MT, True)][schema]["dump"]
        for marker in MARKERS:
            assert marker in dump, (schema, marker)
    assert len(zoo_world["sources"][(DB, True)]["large_objects"]) == 6


def test_every_zoo_tenant_is_backed_up_with_the_sources_row_counts(pg, zoo_world):
    res = zoo_world["results"]
    assert res["db"].get("changed") and not res["db"].get("failed") and not res["db"].get("warnings"), res["db"]
    with pg.connect(DB) as conn:
        assert manifest(res["db"]["manifest"])["row_counts"] == zoo.row_counts(conn)
    assert not res["pass"].get("failed") and res["pass"]["failed_tenants"] == [], res["pass"]
    assert not res["pass"].get("warnings"), res["pass"]["warnings"]
    written = dict((a["tenant"], a) for a in res["pass"]["artifacts"] if a["action"] == "written")
    assert sorted(written) == sorted(["_shared_zoo_saas", "acme"] + list(SCHEMAS))
    with pg.connect(MT) as conn:
        for tenant, schema in SCHEMAS.items():
            counts = manifest(written[tenant]["manifest"])["row_counts"]
            assert counts == zoo.row_counts(conn, schema) and len(counts) >= 15, counts
        shared = manifest(written["_shared_zoo_saas"]["manifest"])["row_counts"]
        assert shared == dict(kv for s in SHARED for kv in zoo.row_counts(conn, s).items())


def test_every_zoo_artifact_verifies(zoo_world):
    res = zoo_world["results"]["verify"]
    assert res["status"] == "PASS" and not res.get("failed"), res.get("msg")
    tenants = dict((t["tenant"], t) for t in res["tenants"])
    assert sorted(tenants) == sorted(["zoo-db", "_shared_zoo_saas", "acme"] + list(SCHEMAS))
    for name, tenant in tenants.items():
        checks = dict((c["name"], c["status"]) for c in tenant["checks"])
        assert tenant["status"] == "PASS" and checks["restore"] == checks["row_counts"] == "PASS", (name, checks)
    assert dict((c["name"], c["status"]) for c in tenants["zoo-db"]["checks"])["large_objects"] == "PASS"


@pytest.mark.parametrize("suffix", sorted(COPIES), ids=["defaults", "privileges-owners"])
def test_the_database_tenant_comes_back_equal(pg, zoo_world, suffix):
    """Rows, checksums, views, sequences, large objects and pg_dump -s (whole with privileges and owners)."""
    res = zoo_world["results"]["restore zoo-db" + suffix]
    assert res.get("changed") and not res.get("failed"), res.get("msg")
    full = bool(COPIES[suffix])
    if full:
        assert not res.get("warnings"), res["warnings"]
        assert res["database_properties_applied"] == ["comment", "owner", "grants"]
    else:  # the database's own grants come only with privileges: true; without, the restore says so
        assert len(res["warnings"]) == 1 and "had grants of its own" in res["warnings"][0], res["warnings"]
        assert 'REVOKE ALL ON DATABASE "zoo_copy" FROM PUBLIC; GRANT CONNECT ON DATABASE "zoo_copy" TO "zoo_app"' \
            in res["warnings"][0], res["warnings"]
        assert res["database_properties_applied"] == ["comment"]
    assert facts(pg, "zoo_copy" + suffix, [None], full) == zoo_world["sources"][(DB, full)]


@pytest.mark.parametrize("suffix", sorted(COPIES), ids=["defaults", "privileges-owners"])
def test_the_schema_tenants_come_back_equal_with_their_shared_part(pg, zoo_world, suffix):
    for tenant in SCHEMAS:
        res = zoo_world["results"]["restore %s%s" % (tenant, suffix)]
        assert res.get("changed") and not res.get("failed"), (tenant, res.get("msg"))
        assert not res.get("warnings"), res["warnings"]
    full = bool(COPIES[suffix])
    copy = facts(pg, "zoo_saas_copy" + suffix, list(SCHEMAS.values()) + list(SHARED), full)
    source = zoo_world["sources"][(MT, full)]
    for scope in copy:
        assert copy[scope] == source[scope], scope


# -- what the backup role cannot read ------------------------------------------------------------------------


def nothing_published(repo, tenant):
    folder = os.path.join(repo, tenant)
    return not os.path.isdir(folder) or sorted(os.listdir(folder)) == [".lock"]


def test_a_table_the_backup_role_cannot_read_fails_the_backup_naming_it_and_its_grant(pg, keys, zoo_world, tmp_path):
    repo = str(tmp_path / "repo")
    login = dict(pg.login, login_user="zoo_backup", login_password=BACKUP_PW, repository=repo,
                 recipients=[keys["public"]])
    tasks = [{"name": "db", "lifeboat.backup.pg_backup": dict(login, tenant="zoo-db", database=DB)},
             {"name": "pass", "lifeboat.backup.pg_backup": dict(login, database=MT, schemas=MEMBERS)}]
    for task in tasks:
        task["ignore_errors"] = True
    run = lbtest.run_playbook(tasks)
    res = dict((r["_task"], r) for r in run.results)
    assert res["db"].get("failed"), res["db"]
    assert '"public"."payroll"' in res["db"]["msg"] and 'GRANT SELECT ON "public"."payroll" TO "zoo_backup"' \
        in res["db"]["msg"] and "Nothing was published" in res["db"]["msg"], res["db"]["msg"]
    assert nothing_published(repo, "zoo-db")
    # in a pass, only the tenants with the table fail, each naming its own table and grant
    assert res["pass"].get("failed"), res["pass"]
    failed = dict((f["tenant"], f["error"]) for f in res["pass"]["failed_tenants"])
    assert sorted(failed) == sorted(SCHEMAS), failed
    for tenant, schema in SCHEMAS.items():
        grant = 'GRANT SELECT ON %s."payroll" TO "zoo_backup"' % zoo.ident(schema)
        assert "cannot read table" in failed[tenant] and grant in failed[tenant], failed
        assert nothing_published(repo, tenant)
    assert sorted(a["tenant"] for a in res["pass"]["artifacts"] if a["action"] == "written") == \
        ["_shared_zoo_saas", "acme"]


def test_row_level_security_and_large_objects_the_backup_role_cannot_read_are_named_with_the_fix(pg, keys,
                                                                                                 zoo_world, tmp_path):
    from lifeboat_engine import backup
    from lifeboat_engine.errors import LifeboatError

    repo = str(tmp_path / "repo")
    params = dict(pg.login, login_user="zoo_backup", login_password=BACKUP_PW, repository=repo,
                  recipients=[keys["public"]], tenant="zoo-db", database=DB)
    pg.psql("GRANT SELECT ON payroll TO zoo_backup", db=DB)
    try:
        with pytest.raises(LifeboatError) as e:  # every table readable now: the large objects are not
            backup.run(params)
        assert "cannot read large object" in str(e.value) and "GRANT SELECT ON LARGE OBJECT" in str(e.value)
        assert e.value.option == "login_user"
        pg.psql("GRANT zoo_owner TO zoo_backup; ALTER ROLE zoo_backup NOBYPASSRLS")
        with pytest.raises(LifeboatError) as e:  # the large objects' owner's member: row-level security next
            backup.run(params)
        assert 'row-level security policies of table "public"."notes"' in str(e.value), str(e.value)
        assert 'ALTER ROLE "zoo_backup" BYPASSRLS' in str(e.value) and e.value.option == "login_user"
        assert nothing_published(repo, "zoo-db")
        pg.psql("ALTER ROLE zoo_backup BYPASSRLS")
        assert backup.run(params)["artifact"]  # all of it readable: the backup runs
    finally:
        pg.psql("REVOKE SELECT ON payroll FROM zoo_backup", db=DB)
        pg.psql("REVOKE zoo_owner FROM zoo_backup; ALTER ROLE zoo_backup BYPASSRLS")


# -- pgbench writing during the backups -----------------------------------------------------------------------


def test_pgbench_writing_during_the_backups_leaves_copies_that_keep_its_invariant(pg, keys, tmp_path):
    """pgbench's tables in public (a database tenant) and in schema bench (a schema tenant, public being its
    shared part) of one database, both written by pgbench while they are backed up; each copy's sums of
    abalance, bbalance, tbalance and delta agree, and it holds more history than before the backups and less
    than after."""
    db = "zoo_bench"
    for name in (db, "zoo_bench_copy", "zoo_bench_scopy"):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    pg.psql("CREATE DATABASE %s" % db)
    pg.psql("CREATE SCHEMA bench", db=db)
    envs = {"public": pg.env(), "bench": dict(pg.env(), PGOPTIONS="-c search_path=bench")}
    for env in envs.values():
        subprocess.run([pg.bin("pgbench"), "-i", "-s", "1", "-q", db], env=env, check=True, capture_output=True)
    load = [subprocess.Popen([pg.bin("pgbench"), "-n", "-c", "2", "-R", "100", "-T", "300", db], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for env in envs.values()]
    try:
        def history(schema):
            return int(pg.psql("SELECT count(*) FROM %s.pgbench_history" % schema, db=db))

        deadline = time.monotonic() + 60
        while min(history(s) for s in envs) < 20:
            assert time.monotonic() < deadline and all(p.poll() is None for p in load), "pgbench is not writing"
            time.sleep(0.2)
        before = dict((s, history(s)) for s in envs)
        common = dict(pg.login, repository=str(tmp_path / "repo"))
        restore = dict(common, identity_file=keys["identity"])
        run = lbtest.run_playbook([
            {"name": "db", "lifeboat.backup.pg_backup": dict(common, tenant="zoo-bench", database=db,
                                                             recipients=[keys["public"]])},
            {"name": "pass", "lifeboat.backup.pg_backup": dict(common, database=db, recipients=[keys["public"]],
                                                               schemas=[{"tenant": "zoo-bench-s", "schema": "bench"}])},
            {"name": "restore db", "lifeboat.backup.backup_restore": dict(restore, tenant="zoo-bench",
                                                                          target_database="zoo_bench_copy")},
            {"name": "restore schema", "lifeboat.backup.backup_restore": dict(restore, tenant="zoo-bench-s",
                                                                              target_database="zoo_bench_scopy")},
        ])
        assert all(p.poll() is None for p in load), "pgbench stopped during the backups"
        after = dict((s, history(s)) for s in envs)
    finally:
        for p in load:
            p.send_signal(signal.SIGINT)
        for p in load:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert run.rc == 0 and len(run.results) == 4, run
    for copy, schemas in (("zoo_bench_copy", ["public"]), ("zoo_bench_scopy", ["public", "bench"])):
        with pg.connect(copy) as conn:
            for schema in schemas:
                conn.execute("SET search_path = %s" % schema)
                sums = zoo.pgbench_sums(conn)
                assert sums[0] == sums[1] == sums[2] == sums[3], (copy, schema, sums)
                assert before[schema] < sums[4] < after[schema], (copy, schema, before, sums, after)
    for name in (db, "zoo_bench_copy", "zoo_bench_scopy"):
        pg.psql("DROP DATABASE %s WITH (FORCE)" % name)


# -- what pg_restore cannot restore: functions it runs with an empty search_path -------------------------------

FRAGILE = """
CREATE TABLE prices (id int PRIMARY KEY, cents int NOT NULL);
INSERT INTO prices SELECT g, 100 * g FROM generate_series(1, 10) g;
CREATE FUNCTION total_cents() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT sum(cents) FROM prices $$;
CREATE MATERIALIZED VIEW totals AS SELECT total_cents() AS total;
CREATE FUNCTION safe_total() RETURNS bigint LANGUAGE sql STABLE SET search_path = public
  AS $$ SELECT sum(cents) FROM prices $$;
CREATE MATERIALIZED VIEW safe_totals AS SELECT safe_total() AS total;
CREATE SCHEMA shop;
CREATE FUNCTION shop.sku_pattern() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT '^[A-Z]-[0-9]$' $$;
CREATE FUNCTION shop.valid_sku(s text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
  AS $$ BEGIN RETURN s ~ sku_pattern(); END $$;
CREATE TABLE shop.skus (sku text PRIMARY KEY);
INSERT INTO shop.skus VALUES ('A-1'), ('B-2');
CREATE FUNCTION shop.known_sku(s text) RETURNS boolean LANGUAGE sql STABLE SET search_path = shop
  AS $$ SELECT EXISTS (SELECT 1 FROM skus WHERE sku = s) $$;
CREATE TABLE shop.lines (id int PRIMARY KEY, sku text NOT NULL CONSTRAINT sku_valid CHECK (shop.valid_sku(sku))
                         CONSTRAINT sku_known CHECK (shop.known_sku(sku)));
SET search_path = shop, public;  -- as the application's role has it
INSERT INTO shop.lines VALUES (1, 'A-1'), (2, 'B-2');
"""


def test_a_function_a_restore_runs_and_fails_in_is_a_warning_and_verify_fails_it(pg, keys, tmp_path):
    """pg_restore runs the functions of materialized views and checks with an empty search_path, and checks
    each row as it loads it: a function that names a table or function without its schema (and sets no
    search_path), or a check that reads another table, is dumped as it is but cannot be restored. The
    backup warns naming the function, its user and the fix; verify FAILs the artifact."""
    db = "zoo_fragile"
    pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    pg.psql("CREATE DATABASE %s" % db)
    pg.psql(FRAGILE, db=db)
    common = dict(pg.login, repository=str(tmp_path / "repo"))
    tasks = [{"name": "db", "lifeboat.backup.pg_backup": dict(common, tenant="zoo-fragile", database=db,
                                                              recipients=[keys["public"]])},
             {"name": "pass", "lifeboat.backup.pg_backup": dict(common, database=db, schemas=["shop"],
                                                                recipients=[keys["public"]])},
             {"name": "verify", "lifeboat.backup.backup_verify": dict(common, identity_file=keys["identity"]),
              "ignore_errors": True}]
    run = lbtest.run_playbook(tasks)
    res = dict((r["_task"], r) for r in run.results)
    warned = res["db"].get("warnings", [])
    assert not res["db"].get("failed") and len(warned) == 3, res["db"]
    assert "public.total_cents(), used by materialized view public.totals, may make a restore" in warned[0], warned
    assert "ALTER FUNCTION public.total_cents() SET search_path = public;" in warned[0], warned
    assert "shop.known_sku(s text), used by check constraint sku_known of table shop.lines" in warned[1], warned
    assert "not IMMUTABLE" in warned[1] and "search_path" not in warned[1], warned
    assert "shop.valid_sku(s text), used by check constraint sku_valid of table shop.lines" in warned[2], warned
    assert "ALTER FUNCTION shop.valid_sku(s text) SET search_path = shop, public;" in warned[2], warned
    # in a pass, each artifact has its own: the materialized view is the shared part's, the checks the tenant's
    assert sorted(res["pass"].get("warnings", [])) == sorted(warned), res["pass"]
    own = dict((a["tenant"], a["warnings"]) for a in res["pass"]["artifacts"])
    assert own == {"_shared_zoo_fragile": warned[:1], "shop": warned[1:]}, own
    statuses = dict((t["tenant"], t["status"]) for t in res["verify"]["tenants"])
    assert statuses == {"zoo-fragile": "FAIL", "shop": "FAIL", "_shared_zoo_fragile": "FAIL"}, res["verify"]
    # fixed as the warnings say: no warning, and verify PASSes
    pg.psql("ALTER FUNCTION total_cents() SET search_path = public; "
            "ALTER FUNCTION shop.valid_sku(text) SET search_path = shop, public; "
            "ALTER TABLE shop.lines DROP CONSTRAINT sku_known", db=db)
    run = lbtest.run_playbook(tasks)
    res = dict((r["_task"], r) for r in run.results)
    assert not res["db"].get("warnings") and not res["pass"].get("warnings"), run
    assert res["verify"]["status"] == "PASS", [(t["tenant"], [c for c in t["checks"] if c["status"] == "FAIL"])
                                               for t in res["verify"]["tenants"]]
    pg.psql("DROP DATABASE %s WITH (FORCE)" % db)
