"""Schema-per-tenant databases as customers have them (tests/saas.py): extensions and
shared tables in ``public``, a non-tenant schema, tenant tables that use extension
types and reference ``public``. Real PostgreSQL, the real age CLI, real
ansible-playbook runs for the modules.

- ``pg_backup`` with ``schemas`` writes ``_shared_<database>`` and one artifact per
  tenant from one snapshot; each restores by hand with age | zstd | pg_restore.
- Every tenant's artifact restores to the same tables, row checksums and
  ``pg_dump -s -n`` schema as a plain ``pg_dump -n`` of the same data.
- ``backup_verify`` restores the shared part first (PASS), and names the missing
  dependency when there is none.
- ``backup_restore`` restores the shared part first into a database that lacks it,
  leaves it alone where it exists, and refuses a database that has part of it.
- The lock table is respected: runs are sized to it, and a shared part too large
  for it is an error that names max_locks_per_transaction.
"""

import json
import os
import shutil
import subprocess

import pytest

import lbtest
import saas
from lifeboat_engine import backup_pass, restore
from lifeboat_engine.errors import LifeboatError

TENANTS = ("acme", "globex", "Big Co", "o'hara", "empty_one")
MEMBERS = [{"tenant": "acme"}, {"tenant": "globex"}, {"tenant": "bigco", "schema": "Big Co"},
           {"tenant": "ohara", "schema": "o'hara"}, {"tenant": "empty-one", "schema": "empty_one"}]


@pytest.fixture(scope="module")
def shop(pg, tmp_path_factory):
    """The saas database with five schema tenants (one with no rows), backed up once by a pass."""
    db = "saas_mt"
    saas.build(pg, db=db, tenants=TENANTS[:4], rows=60)
    pg.psql('CREATE SCHEMA empty_one; CREATE TABLE empty_one.t (id int PRIMARY KEY)', db=db)
    d = tmp_path_factory.mktemp("mt")
    os.chmod(str(d), 0o700)
    key, public = lbtest.age_keygen(str(d))
    repo = str(d / "repo")
    res = lbtest.run_module("pg_backup", dict(pg.login, database=db, schemas=MEMBERS, repository=repo,
                                              recipients=[public]))
    assert not res.get("failed"), res
    yield {"db": db, "repo": repo, "key": key, "public": public, "result": res, "dir": d}
    pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


def checksums(pg, db, schema=None):
    with pg.connect(db) as conn:
        return lbtest.table_checksums(conn, schema)


def artifact_of(res, tenant):
    found = [a for a in res["artifacts"] if a["tenant"] == tenant]
    assert len(found) == 1, res["artifacts"]
    return found[0]


def hand_restore(pg, key, path, db):
    cmd = "age -d -i %s %s | zstd -d | %s -h %s -p %d -U postgres -d %s --exit-on-error" % (
        key, path, pg.bin("pg_restore"), pg.socket_dir, pg.port, saas.ident(db))
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def fresh_db(pg, name):
    pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % saas.ident(name))
    pg.psql("CREATE DATABASE %s" % saas.ident(name))
    return name


def test_pass_writes_the_shared_part_and_one_artifact_per_tenant(pg, shop):
    res = shop["result"]
    assert res["changed"] and res["failed_tenants"] == []
    written = sorted(a["tenant"] for a in res["artifacts"] if a["action"] == "written")
    assert written == sorted(["_shared_saas_mt", "acme", "globex", "bigco", "ohara", "empty-one"])
    shared = artifact_of(res, "_shared_saas_mt")
    sdoc = json.load(open(shared["manifest"]))
    assert sorted(sdoc["row_counts"]) == ["audit.events", "public.countries", "public.plans"]
    assert sdoc["shared_part"]["schemas"] == ["audit", "public"]
    for member in MEMBERS:
        a = artifact_of(res, member["tenant"])
        doc = json.load(open(a["manifest"]))
        schema = member.get("schema", member["tenant"])
        assert doc["source"]["schema"] == schema
        assert doc["shared"]["artifact"] == os.path.basename(shared["artifact"])
        assert doc["shared"]["sha256"] == sdoc["sha256"]
        # never another tenant's rows, never the shared tables
        assert all(t.startswith(schema + ".") for t in doc["row_counts"]), doc["row_counts"]
        if schema != "empty_one":
            assert doc["depends_on"]["extensions"] == ["btree_gist", "citext", "hstore", "pgcrypto", "uuid-ossp"]
            assert {"type": "table", "identity": "public.plans"} in doc["depends_on"]["objects"]
    source = checksums(pg, shop["db"], "acme")
    assert json.load(open(artifact_of(res, "acme")["manifest"]))["row_counts"] == dict(
        (k, v[0]) for k, v in source.items())


def test_each_tenant_restores_by_hand_like_a_plain_pg_dump_n(pg, shop):
    """Equivalence: the pass's artifact and a plain pg_dump -n give the same tables, rows and schema."""
    res = shop["result"]
    shared = artifact_of(res, "_shared_saas_mt")["artifact"]
    for member in MEMBERS:
        schema = member.get("schema", member["tenant"])
        ours = fresh_db(pg, "eq_ours")
        hand_restore(pg, shop["key"], shared, ours)
        hand_restore(pg, shop["key"], artifact_of(res, member["tenant"])["artifact"], ours)
        plain = fresh_db(pg, "eq_plain")
        hand_restore(pg, shop["key"], shared, plain)
        dump = subprocess.run([pg.bin("pg_dump"), "-h", pg.socket_dir, "-p", str(pg.port), "-U", "postgres", "-Fc",
                               "-n", saas.ident(schema), shop["db"]], capture_output=True, check=True).stdout
        subprocess.run([pg.bin("pg_restore"), "-h", pg.socket_dir, "-p", str(pg.port), "-U", "postgres", "-d", plain,
                        "--exit-on-error"], input=dump, check=True, capture_output=True)
        assert checksums(pg, ours, schema) == checksums(pg, plain, schema) == checksums(pg, shop["db"], schema)
        assert saas.schema_dump(pg, ours, schema) == saas.schema_dump(pg, plain, schema)
        if schema != "empty_one":  # sequences advanced past their data come back where they were
            query = "SELECT last_value FROM %s.invoice_no" % saas.ident(schema)
            assert pg.psql(query, db=ours) == pg.psql(query, db=shop["db"]) != "1000"


def test_verify_restores_the_shared_part_first(pg, shop):
    res = lbtest.run_module("backup_verify", dict(pg.login, tenant="acme", repository=shop["repo"],
                                                  identity_file=shop["key"]))
    assert res["status"] == "PASS", res["msg"]
    checks = dict((c["name"], c) for c in res["tenants"][0]["checks"])
    assert checks["shared_part"]["status"] == "PASS" and "_shared_saas_mt-" in checks["shared_part"]["detail"]
    assert checks["row_counts"]["status"] == "PASS"


def test_verify_without_a_shared_artifact_names_the_missing_dependency(pg, shop, tmp_path):
    repo = str(tmp_path / "repo")
    res = lbtest.run_module("pg_backup", dict(pg.login, tenant="acme", database=shop["db"], schema="acme",
                                              repository=repo, recipients=[shop["public"]]))
    assert not res.get("failed"), res
    res = lbtest.run_module("backup_verify", dict(pg.login, tenant="acme", repository=repo, identity_file=shop["key"]))
    assert res["status"] == "FAIL"
    assert "does not exist" in res["msg"] and "_shared_saas_mt" in res["msg"], res["msg"]


def test_restore_into_a_new_database_restores_the_shared_part_first(pg, shop):
    pg.psql("DROP DATABASE IF EXISTS rebuilt WITH (FORCE)")
    args = dict(pg.login, tenant="globex", repository=shop["repo"], identity_file=shop["key"],
                target_database="rebuilt")
    check = lbtest.run_module("backup_restore", args, check=True)
    assert "would restore the shared part" in check["msg"], check["msg"]
    assert "rebuilt" not in pg.psql("SELECT datname FROM pg_database").split()
    res = lbtest.run_module("backup_restore", args)
    assert not res.get("failed"), res.get("msg")
    assert "restored the shared part" in res["msg"]
    assert checksums(pg, "rebuilt", "globex") == checksums(pg, shop["db"], "globex")
    assert checksums(pg, "rebuilt", "public") == checksums(pg, shop["db"], "public")
    # a second tenant into the same database: the shared part is there now and is left alone
    before = checksums(pg, "rebuilt", "public")
    res = lbtest.run_module("backup_restore", dict(args, tenant="acme"))
    assert not res.get("failed"), res.get("msg")
    assert "shared part" not in res["msg"] and "left alone" in res["shared_part"]["note"]
    assert checksums(pg, "rebuilt", "public") == before
    assert checksums(pg, "rebuilt", "acme") == checksums(pg, shop["db"], "acme")


def test_restore_refuses_a_database_with_part_of_the_shared_part(pg, shop):
    fresh_db(pg, "halfway")
    pg.psql("CREATE EXTENSION citext; CREATE TABLE public.plans (id int PRIMARY KEY)", db="halfway")
    before = checksums(pg, "halfway")
    with pytest.raises(LifeboatError) as e:
        restore.run(dict(pg.login, tenant="acme", repository=shop["repo"], identity_file=shop["key"],
                         target_database="halfway"))
    assert e.value.option == "target_database"
    assert "lacks extension btree_gist" in str(e.value) and "Nothing was changed" in str(e.value)
    assert checksums(pg, "halfway") == before
    assert pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'acme'", db="halfway") == "0"


def test_a_failed_tenant_does_not_stop_the_others(pg, shop, tmp_path):
    members = MEMBERS[:2] + [{"tenant": "gone", "schema": "no_such_schema"}]
    res = lbtest.run_module("pg_backup", dict(pg.login, database=shop["db"], schemas=members,
                                              repository=str(tmp_path / "r"), recipients=[shop["public"]]))
    assert res.get("failed")
    assert [f["tenant"] for f in res["failed_tenants"]] == ["gone"]
    assert "no_such_schema" in res["msg"] and "schemas" in res["msg"]
    assert sorted(a["tenant"] for a in res["artifacts"] if a["action"] == "written") == \
        ["_shared_saas_mt", "acme", "globex"]


def test_bad_schemas_are_refused_before_anything_runs(pg, shop, tmp_path):
    repo = str(tmp_path / "r")
    for schemas, fragment in (([{"tenant": "Acme"}], "Invalid schemas"),
                              ([{"tenant": "a"}, {"tenant": "a"}], "named twice"),
                              ([{"tenant": "p", "schema": "public"}], "cannot be a tenant"),
                              ([{"tenant": "a", "db": "x"}], "Unknown key")):
        with pytest.raises(LifeboatError) as e:
            backup_pass.run(dict(pg.login, database=shop["db"], schemas=schemas, repository=repo,
                                 recipients=[shop["public"]]))
        assert fragment in str(e.value) and e.value.option == "schemas"
    with pytest.raises(LifeboatError) as e:
        backup_pass.run(dict(pg.login, database=shop["db"], tenant="acme", schema="acme", shared=True,
                             repository=repo, recipients=[shop["public"]]))
    assert e.value.option == "shared"
    assert not os.path.exists(os.path.join(repo, "acme"))


@pytest.fixture(scope="module")
def few_locks():
    """A cluster whose lock table is tiny (max_locks_per_transaction 10 x 60 connections)."""
    cluster = lbtest.PgCluster(tag="locks").start()
    conf = subprocess.run(["pg_conftool", "-s", str(cluster.version), cluster.name, "show", "config_file"],
                          capture_output=True, text=True, check=False).stdout.strip()
    conf = conf or "/etc/postgresql/%d/%s/postgresql.conf" % (cluster.version, cluster.name)
    with open(conf, "a") as f:
        f.write("\nmax_locks_per_transaction = 10\n")
    subprocess.run(["pg_ctlcluster", str(cluster.version), cluster.name, "restart"], check=True, capture_output=True)
    yield cluster
    cluster.drop()


def test_runs_are_sized_to_the_lock_table(few_locks, tmp_path, keys):
    pg = few_locks
    pg.psql("CREATE DATABASE many")
    body = "".join("CREATE SCHEMA t%02d; %s" % (i, "".join(
        "CREATE TABLE t%02d.r%02d (id int PRIMARY KEY, v text); INSERT INTO t%02d.r%02d VALUES (1, 'x%d');"
        % (i, j, i, j, i) for j in range(15))) for i in range(30))
    pg.psql(body, db="many")
    members = [{"tenant": "t%02d" % i} for i in range(30)]
    res = backup_pass.run(dict(pg.login, database="many", schemas=members, repository=str(tmp_path / "r"),
                               recipients=[keys["public"]]))
    assert res["failed_tenants"] == [], res["msg"]
    assert res["lock_budget"] == 300  # half of 10 x 60
    assert res["pg_dump_runs"] >= 3  # 450 tables need two runs, plus the shared part
    assert len([a for a in res["artifacts"] if a["action"] == "written"]) == 31
    # a shared part larger than one run may lock is refused with the setting to raise
    pg.psql("".join("CREATE TABLE public.s%03d (id int);" % i for i in range(310)), db="many")
    res = backup_pass.run(dict(pg.login, database="many", schemas=members, repository=str(tmp_path / "r2"),
                               recipients=[keys["public"]]))
    failed = dict((f["tenant"], f["error"]) for f in res["failed_tenants"])
    assert "max_locks_per_transaction" in failed["_shared_many"], failed
    assert len([a for a in res["artifacts"] if a["action"] == "written"]) == 30


def test_prune_keeps_the_shared_part_that_kept_tenant_artifacts_need(pg, shop, tmp_path):
    from lifeboat_engine import prune

    repo = str(tmp_path / "repo")
    shutil.copytree(shop["repo"], repo, ignore=shutil.ignore_patterns("*.verify.json"))
    first = os.path.basename(artifact_of(shop["result"], "_shared_saas_mt")["artifact"])
    res = backup_pass.run(dict(pg.login, database=shop["db"], schemas=MEMBERS[:2], repository=repo,
                               recipients=[shop["public"]]))
    assert res["failed_tenants"] == []
    # keep_last 1 alone would delete the first shared part, but acme's first artifact (kept) needs it
    out = prune.run(dict(repository=repo, tenant="_shared_saas_mt", keep_last=1))
    assert first in out["kept"], out["report"]
    reasons = [a["reasons"] for a in out["report"]["tenants"]["_shared_saas_mt"]["artifacts"] if a["name"] == first][0]
    assert any("shared part" in r for r in reasons)
    # once no kept artifact needs it (bigco, ohara and empty-one still do: prune every tenant), it goes
    out = prune.run(dict(repository=repo, keep_last=1))
    assert first in out["kept"]  # bigco, ohara and empty-one have only the first pass's artifact
    for tenant in ("bigco", "ohara", "empty-one"):
        shutil.rmtree(os.path.join(repo, tenant))
    out = prune.run(dict(repository=repo, keep_last=1))
    assert first in out["deleted"]
