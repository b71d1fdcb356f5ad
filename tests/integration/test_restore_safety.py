"""Operator mistakes at restore time (docs/RELIABILITY.md, "Operator mistakes").

Each case is what a tired on-call engineer plausibly types: a mistyped target, the
maintenance database, a shared database that holds other customers' schemas, another
tenant's artifact, an application's file as a SQLite target, an older artifact over
newer data. A refused case leaves every database, schema and file as it was (checksums);
a case done on purpose keeps what it replaced, and says how to get it back.
Real PostgreSQL, real age keys, the engine and the module through ansible-playbook.
"""

import hashlib
import json
import os
import sqlite3

import pytest

import lbtest
import saas
from lifeboat_engine import backup, backup_pass, restore
from lifeboat_engine.errors import LifeboatError


@pytest.fixture(scope="module")
def world(pg, keys, tmp_path_factory):
    """hard_db (a database tenant), saas (schema tenants acme, globex), other_app (not a tenant),
    initech (a SQLite tenant), all backed up into one repository."""
    d = tmp_path_factory.mktemp("safety")
    repo = str(d / "repo")
    for db in ("hard_db", "other_app"):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
        pg.psql("CREATE DATABASE %s" % db)
    pg.psql("CREATE TABLE orders AS SELECT i, md5(i::text) AS note FROM generate_series(1, 300) i", db="hard_db")
    pg.psql("CREATE TABLE precious AS SELECT i FROM generate_series(1, 7) i", db="other_app")
    pg.psql("CREATE TABLE IF NOT EXISTS public.ops_marker (note text); INSERT INTO public.ops_marker VALUES ('x')")
    pg.psql("DROP DATABASE IF EXISTS saas_safe WITH (FORCE)")
    saas.build(pg, db="saas_safe", tenants=("acme", "globex"), rows=30)
    initech = str(d / "initech.db")
    lbtest.sqlite_guests(initech, 50)
    common = dict(repository=repo, recipients=[keys["public"]])
    arts = {
        "hard_db": backup.run(dict(pg.login, tenant="hard_db", **common))["artifact"],
        "initech": backup.run(dict(tenant="initech", engine="sqlite", path=initech, **common))["artifact"],
    }
    res = backup_pass.run(dict(pg.login, database="saas_safe", schemas=["acme", "globex"], **common))
    assert res["failed_tenants"] == []
    for a in res["artifacts"]:
        arts[a["tenant"]] = a["artifact"]
    yield {"repo": repo, "arts": arts, "initech": initech, "dir": d}
    for db in ("hard_db", "other_app", "saas_safe"):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


def params(pg, keys, world, **extra):
    p = dict(pg.login, repository=world["repo"], identity_file=keys["identity"])
    p.update(extra)
    return p


def state(pg):
    """Checksums of every database of the cluster (its tables) and the list of databases."""
    names = pg.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datallowconn").split(",")
    out = {}
    for name in names:
        with pg.connect(name) as conn:
            out[name] = lbtest.table_checksums(conn)
    return out


def file_sum(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def refused(pg, p, option, *fragments, check_mode=False):
    before = state(pg)
    with pytest.raises(LifeboatError) as e:
        restore.run(p, check_mode=check_mode)
    assert e.value.option == option, str(e.value)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)
    assert "Nothing was changed" in str(e.value)
    assert state(pg) == before
    return e.value


# -- database tenants -------------------------------------------------------------------------------


@pytest.mark.parametrize("target, fragment", [("postgres", "PostgreSQL's own"), ("template1", "template")])
def test_maintenance_databases_are_never_a_target(pg, keys, world, target, fragment):
    refused(pg, params(pg, keys, world, tenant="hard_db", target_database=target, force=True,
                       replace_target=target), "target_database", fragment, "whatever the options")


def test_a_shared_database_of_other_tenants_is_never_replaced(pg, keys, world):
    for extra in ({}, {"replace_target": "saas_safe"}):
        err = refused(pg, params(pg, keys, world, tenant="hard_db", target_database="saas_safe", force=True, **extra),
                      "target_database", "acme (schema acme)", "globex (schema globex)", "hard_db_restored")
        assert "whatever the options" in str(err)


def test_a_mistyped_target_needs_its_name_twice_and_is_then_kept(pg, keys, world):
    p = params(pg, keys, world, tenant="hard_db", target_database="other_app", force=True)
    refused(pg, p, "replace_target", "replace_target: other_app", "not tenant hard_db's own")
    refused(pg, dict(p, replace_target="other_ap"), "replace_target")  # the second spelling must match
    with pg.connect("other_app") as conn:
        before = lbtest.table_checksums(conn)
    res = restore.run(dict(p, replace_target="other_app"))
    kept = res["safety_copy"]["database"]
    assert res["safety_copy"]["kept"] is True and kept in res["msg"]
    assert "ALTER DATABASE" in res["safety_copy"]["note"]
    with pg.connect(kept) as conn:
        assert lbtest.table_checksums(conn) == before  # what was replaced can be had back
    with pg.connect("other_app") as conn:
        assert list(lbtest.table_checksums(conn)) == ["public.orders"]
    pg.psql("DROP DATABASE %s" % kept)


def test_the_tenants_own_database_is_replaced_with_force_and_kept(pg, keys, world):
    pg.psql("INSERT INTO orders VALUES (1000, 'written after the backup')", db="hard_db")
    with pg.connect("hard_db") as conn:
        before = lbtest.table_checksums(conn)
    check = restore.run(params(pg, keys, world, tenant="hard_db", force=True), check_mode=True)
    assert "kept as a safety copy" in check["msg"] and "afterwards" in check["msg"], check["msg"]
    assert check["replaced"]["existed"] is True and check["safety_copy"]["kept"] is True
    with pg.connect("hard_db") as conn:
        assert lbtest.table_checksums(conn) == before
    res = restore.run(params(pg, keys, world, tenant="hard_db", force=True))
    kept = res["safety_copy"]["database"]
    with pg.connect(kept) as conn:
        assert lbtest.table_checksums(conn) == before
    # opting out drops it
    res = restore.run(params(pg, keys, world, tenant="hard_db", force=True, keep_safety_copy=False))
    assert res["safety_copy"]["dropped"] is True
    assert res["safety_copy"]["database"] not in pg.psql("SELECT string_agg(datname, ',') FROM pg_database")
    pg.psql("DROP DATABASE %s" % kept)


def test_another_tenants_artifact_is_refused_unless_named_as_a_move(pg, keys, world):
    globex = os.path.basename(world["arts"]["globex"])
    for spec in (globex, world["arts"]["globex"]):
        refused(pg, params(pg, keys, world, tenant="acme", artifact=spec, force=True), "artifact",
                "a backup of tenant globex, not of tenant acme", "source_tenant: globex")
        refused(pg, params(pg, keys, world, tenant="acme", artifact=spec, force=True), "artifact",
                check_mode=True)
    refused(pg, params(pg, keys, world, tenant="acme", artifact=globex, source_tenant="initech"), "source_tenant")
    res = restore.run(params(pg, keys, world, tenant="acme", artifact=globex, source_tenant="globex",
                             target_database="moved_here"))
    assert res["changed"] and "globex" in res["msg"]
    pg.psql("DROP DATABASE moved_here")


def test_an_older_artifact_over_newer_data_warns_and_keeps_the_newer(pg, keys, world, tmp_path):
    first = world["arts"]["hard_db"]
    backup.run(dict(pg.login, tenant="hard_db", repository=world["repo"], recipients=[keys["public"]]))
    res = restore.run(params(pg, keys, world, tenant="hard_db", artifact=os.path.basename(first), force=True))
    assert any("older than the newest complete artifact" in w for w in res["warnings"]), res["warnings"]
    assert res["safety_copy"]["kept"] is True
    pg.psql("DROP DATABASE %s" % res["safety_copy"]["database"])


# -- schema tenants ------------------------------------------------------------------------------------


def test_a_schema_replaced_with_force_is_kept_renamed_in_its_database(pg, keys, world):
    with pg.connect("saas_safe") as conn:
        before = lbtest.table_checksums(conn, "acme")
    pg.psql("DELETE FROM acme.orders", db="saas_safe")
    res = restore.run(params(pg, keys, world, tenant="acme", force=True))
    kept = res["safety_copy"]["schema"]
    assert kept.startswith("lb_s_") and "ALTER SCHEMA" in res["safety_copy"]["note"]
    with pg.connect("saas_safe") as conn:
        assert lbtest.table_checksums(conn, "acme") == before
        assert lbtest.table_checksums(conn, kept)["%s.orders" % kept][0] == 0  # the replaced state, kept
    # the next pass leaves the kept copy out of the shared part
    res = backup_pass.run(dict(pg.login, database="saas_safe", schemas=["acme", "globex"], repository=world["repo"],
                               recipients=[keys["public"]]))
    shared = [a for a in res["artifacts"] if a["tenant"] == "_shared_saas_safe"][0]
    assert kept not in json.load(open(shared["manifest"]))["shared_part"]["schemas"]
    pg.psql("DROP SCHEMA %s CASCADE" % kept, db="saas_safe")


def test_a_schema_in_a_database_that_is_not_the_tenants_needs_its_name_twice(pg, keys, world):
    pg.psql("DROP DATABASE IF EXISTS saas_copy WITH (FORCE)")
    pg.psql("CREATE DATABASE saas_copy TEMPLATE saas_safe")
    p = params(pg, keys, world, tenant="acme", target_database="saas_copy", force=True)
    refused(pg, p, "replace_target", "replace_target: saas_copy")
    res = restore.run(dict(p, replace_target="saas_copy"))
    assert res["safety_copy"]["kept"] is True
    pg.psql("DROP DATABASE saas_copy WITH (FORCE)")


# -- SQLite tenants ----------------------------------------------------------------------------------


def test_an_application_file_is_never_a_sqlite_target(pg, keys, world):
    app = world["dir"] / "app.conf"
    app.write_text("DATABASE_URL=postgresql://app@db/acme\n")
    before = file_sum(str(app))
    with pytest.raises(LifeboatError) as e:
        restore.run(dict(tenant="initech", engine="sqlite", repository=world["repo"], identity_file=keys["identity"],
                         target_path=str(app), force=True, replace_target=str(app)))
    assert e.value.option == "target_path" and "not a SQLite database" in str(e.value)
    assert file_sum(str(app)) == before


def test_a_sqlite_file_of_another_tenant_or_path_needs_care(pg, keys, world):
    other = str(world["dir"] / "other.db")
    lbtest.sqlite_guests(other, 3)
    before = file_sum(other)
    p = dict(tenant="initech", engine="sqlite", repository=world["repo"], identity_file=keys["identity"],
             target_path=other, force=True)
    with pytest.raises(LifeboatError) as e:
        restore.run(p)
    assert e.value.option == "replace_target" and file_sum(other) == before
    res = restore.run(dict(p, replace_target=other))
    kept = res["safety_copy"]["path"]
    assert file_sum(kept) == before and "mv " in res["safety_copy"]["note"]
    # the tenant's own file, replaced with force, is kept too
    conn = sqlite3.connect(world["initech"])
    conn.execute("DELETE FROM guests WHERE id > 10")
    conn.commit()
    conn.close()
    own_before = file_sum(world["initech"])
    res = restore.run(dict(p, target_path=world["initech"]))
    assert file_sum(res["safety_copy"]["path"]) == own_before


# -- through Ansible -----------------------------------------------------------------------------------


def test_the_module_refuses_a_mistyped_target_and_check_mode_says_why(pg, keys, world):
    before = state(pg)
    args = params(pg, keys, world, tenant="hard_db", target_database="other_app", force=True)
    for check in (True, False):
        res = lbtest.run_module("backup_restore", args, check=check)
        assert res.get("failed") and res["option"] == "replace_target", res
        assert "replace_target: other_app" in res["msg"]
    assert state(pg) == before


def test_the_module_refuses_for_schema_and_sqlite_tenants_too(pg, keys, world, tmp_path):
    # a schema tenant into the shared database of other tenants, named as a database tenant's target
    pg.psql("DROP DATABASE IF EXISTS saas_twin WITH (FORCE)")
    pg.psql("CREATE DATABASE saas_twin TEMPLATE saas_safe")
    before = state(pg)
    res = lbtest.run_module("backup_restore", params(pg, keys, world, tenant="acme", target_database="saas_twin",
                                                     force=True))
    assert res.get("failed") and res["option"] == "replace_target" and "replace_target: saas_twin" in res["msg"], res
    assert state(pg) == before
    pg.psql("DROP DATABASE saas_twin WITH (FORCE)")
    # a SQLite tenant over another application's file, even named twice
    app = tmp_path / "settings.ini"
    app.write_text("[db]\nurl=postgresql://app@db/acme\n")
    res = lbtest.run_module("backup_restore", dict(tenant="initech", engine="sqlite", repository=world["repo"],
                                                   identity_file=keys["identity"], target_path=str(app), force=True,
                                                   replace_target=str(app)))
    assert res.get("failed") and res["option"] == "target_path" and "not a SQLite database" in res["msg"], res
    assert app.read_text() == "[db]\nurl=postgresql://app@db/acme\n"


def test_the_wrong_repository_replaces_only_what_force_allows_and_keeps_it(pg, keys, world, tmp_path):
    """A staging repository whose acme came from another database: the tenant's own target is replaced (force),
    the result names where the artifact came from, and what was replaced is kept."""
    pg.psql("DROP DATABASE IF EXISTS hard_db_staging WITH (FORCE)")
    pg.psql("CREATE DATABASE hard_db_staging")
    pg.psql("CREATE TABLE orders AS SELECT 1 AS i", db="hard_db_staging")
    staging = str(tmp_path / "staging")
    backup.run(dict(pg.login, tenant="hard_db", database="hard_db_staging", repository=staging,
                    recipients=[keys["public"]]))
    with pg.connect("hard_db") as conn:
        before = lbtest.table_checksums(conn)
    res = restore.run(dict(pg.login, tenant="hard_db", repository=staging, identity_file=keys["identity"], force=True))
    assert res["artifact_info"]["source_database"] == "hard_db_staging" and res["replaced"]["database"] == "hard_db"
    with pg.connect(res["safety_copy"]["database"]) as conn:
        assert lbtest.table_checksums(conn) == before
    pg.psql("DROP DATABASE %s" % res["safety_copy"]["database"])
    pg.psql("DROP DATABASE hard_db_staging WITH (FORCE)")


# -- the repository ----------------------------------------------------------------------------------


def test_one_folder_reached_through_a_symlinked_parent_shares_its_locks(keys, tmp_path):
    """Two repository paths that are one folder (/mnt -> /disk): prune through one respects a backup's lock
    taken through the other. A symlink as the repository itself is refused (tests/unit/.../test_repository.py)."""
    from lifeboat_engine import prune, repository

    (tmp_path / "disk" / "repo").mkdir(parents=True)
    os.symlink(str(tmp_path / "disk"), str(tmp_path / "mnt"))
    real, alias = str(tmp_path / "disk" / "repo"), str(tmp_path / "mnt" / "repo")
    db = lbtest.sqlite_guests(tmp_path / "t.db", 5)
    for _i in range(2):
        backup.run(dict(tenant="t1", engine="sqlite", path=db, repository=real, recipients=[keys["public"]]))
    with repository.open_repository(real).lock("t1", "backup of t1 (held by this test)"):
        out = prune.run(dict(repository=alias, keep_last=1))
        assert out["deleted"] == [] and "t1" in out["skipped_tenants"]
    assert len(prune.run(dict(repository=alias, keep_last=1))["deleted"]) == 1


def test_prune_of_the_artifact_being_restored_does_not_break_the_restore(pg, keys, world, tmp_path):
    """restore and prune at once: the restore reads the artifact it opened to its end and checks it against
    the manifest it read first; the target is replaced only by verified data."""
    from lifeboat_engine import prune

    repo = str(tmp_path / "repo")
    src = lbtest.sqlite_guests(tmp_path / "src.db", 100000)
    first = backup.run(dict(tenant="pr", engine="sqlite", path=src, repository=repo, recipients=[keys["public"]],
                            compression="none"))["artifact"]
    lbtest.sqlite_guests(tmp_path / "src.db", 5)
    backup.run(dict(tenant="pr", engine="sqlite", path=src, repository=repo, recipients=[keys["public"]]))
    pruned = []

    def progress(_count):
        if not pruned:
            pruned.append(prune.run(dict(repository=repo, keep_last=1)))

    target = str(tmp_path / "restored.db")
    res = restore.run(dict(tenant="pr", engine="sqlite", repository=repo, identity_file=keys["identity"],
                           artifact=os.path.basename(first), target_path=target), progress=progress)
    assert pruned and os.path.basename(first) in pruned[0]["deleted"]
    assert not os.path.exists(first)
    assert res["rows"] == 100000 and lbtest.sqlite_checksums(target)["guests"][0] == 100000
