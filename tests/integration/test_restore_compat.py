"""Can the target server take the artifact? (issue 17: restore onto another PostgreSQL version)

A restore checks, in its plan and so in check mode too, before it touches anything, that the target
server is not older than the source and has every extension the artifact creates (which the
manifests record since this change). Real PostgreSQL 15 on loopback; the "newer source" and the
"missing extension" are written into copies of real manifests, since this host has one PostgreSQL
version and every contrib extension (the Molecule dr scenario restores onto PostgreSQL 17 for real).
"""

import json
import os
import shutil

import pytest

import lbtest
import saas
from lifeboat_engine import backup, backup_pass, postgres, restore, verify
from lifeboat_engine.errors import LifeboatError


@pytest.fixture(scope="module")
def world(pg, keys, tmp_path_factory):
    """compat_db (a database tenant with citext and hstore), saas_compat (schema tenants with the shared part)."""
    d = tmp_path_factory.mktemp("compat")
    repo = str(d / "repo")
    pg.psql("DROP DATABASE IF EXISTS compat_db WITH (FORCE)")
    pg.psql("CREATE DATABASE compat_db")
    pg.psql("CREATE EXTENSION citext; CREATE EXTENSION hstore; "
            "CREATE TABLE people (id int PRIMARY KEY, email citext, attrs hstore); "
            "INSERT INTO people SELECT i, 'P' || i || '@Example.org', 'tier=>gold' FROM generate_series(1, 40) i",
            db="compat_db")
    pg.psql("DROP DATABASE IF EXISTS saas_compat WITH (FORCE)")
    saas.build(pg, db="saas_compat", tenants=("acme", "globex"), rows=20)
    common = dict(repository=repo, recipients=[keys["public"]])
    db = backup.run(dict(pg.login, tenant="compat_db", **common))
    res = backup_pass.run(dict(pg.login, database="saas_compat", schemas=["acme", "globex"], **common))
    assert res["failed_tenants"] == []
    yield {"repo": repo, "db": db, "pass": res, "dir": d}
    for name in ("compat_db", "saas_compat", "compat_copy"):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def manifest(path):
    with open(path) as f:
        return json.load(f)


def test_manifests_record_the_extensions_a_restore_needs(world):
    doc = manifest(world["db"]["manifest"])
    assert [e["name"] for e in doc["source"]["extensions"]] == ["citext", "hstore"]
    assert all(e["version"] for e in doc["source"]["extensions"])
    shared = [a for a in world["pass"]["artifacts"] if a["tenant"].startswith("_shared_")]
    assert shared, world["pass"]
    names = [e["name"] for e in manifest(shared[0]["manifest"])["source"]["extensions"]]
    assert "plpgsql" not in names


def doctored_repo(world, tmp_path, edit):
    """A copy of the repository whose compat_db manifest was edited by ``edit(doc)``."""
    repo = str(tmp_path / "repo")
    shutil.copytree(world["repo"], repo)
    path = os.path.join(repo, "compat_db", os.path.basename(world["db"]["manifest"]))
    doc = manifest(path)
    edit(doc)
    with open(path, "w") as f:
        json.dump(doc, f)
    return repo


def databases(pg):
    return pg.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")


def refused(pg, keys, world, tmp_path, edit, check_mode):
    """The restore of compat_db from a repository whose manifest ``edit`` changed: the error, after checking
    that no database was created or dropped."""
    repo = doctored_repo(world, tmp_path, edit)
    before = databases(pg)
    with pytest.raises(LifeboatError) as e:
        restore.run(dict(pg.login, repository=repo, tenant="compat_db", target_database="compat_copy",
                         identity_file=keys["identity"]), check_mode=check_mode)
    assert databases(pg) == before
    assert "Nothing was changed" in str(e.value), str(e.value)
    return e.value


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_source_newer_than_the_target_server_is_refused_before_anything(pg, keys, world, tmp_path, check_mode):
    def newer(doc):
        doc["source"]["server_version"] = "99.1"
    err = refused(pg, keys, world, tmp_path, newer, check_mode)
    text = str(err)
    assert "dumped from PostgreSQL 99.1" in text and "PostgreSQL 99 or newer" in text, text
    assert "dr_postgresql_version=99" in text and err.option == "login_host", text


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_missing_extension_on_the_target_is_named_before_anything(pg, keys, world, tmp_path, check_mode):
    def exotic(doc):
        doc["source"]["extensions"].append({"name": "lb_no_such_extension", "version": "1.0"})
    err = refused(pg, keys, world, tmp_path, exotic, check_mode)
    assert "needs the extension lb_no_such_extension, which" in str(err), str(err)
    assert err.details["missing_extensions"] == ["lb_no_such_extension"]


def test_a_manifest_without_the_extension_list_still_restores(pg, keys, world, tmp_path):
    """Manifests written before the list existed: no check, the restore goes on as before."""
    def older(doc):
        del doc["source"]["extensions"]
    repo = doctored_repo(world, tmp_path, older)
    res = restore.run(dict(pg.login, repository=repo, tenant="compat_db", target_database="compat_copy",
                           identity_file=keys["identity"]))
    assert res["row_counts_match"] is True
    with pg.connect("compat_copy") as conn:
        assert lbtest.table_checksums(conn) == lbtest.table_checksums(pg.connect("compat_db"))
    pg.psql("DROP DATABASE compat_copy WITH (FORCE)")


def test_verify_on_an_older_server_says_it_cannot_prove_it_here(pg, keys, world, tmp_path):
    def newer(doc):
        doc["source"]["server_version"] = "99.1"
    repo = doctored_repo(world, tmp_path, newer)
    res = verify.run(dict(pg.login, repository=repo, tenant="compat_db", identity_file=keys["identity"],
                          fail_on_error=False))
    checks = dict((c["name"], c) for c in res["checks"])
    assert checks["restore"]["status"] == "FAIL", checks
    assert "cannot be proven here" in checks["restore"]["detail"] and "PostgreSQL 99 or newer" in checks["restore"]["detail"]
    assert res["status"] == "FAIL"


def fake_tool(root, major_version, name="pg_restore"):
    bindir = os.path.join(root, str(major_version), "bin")
    os.makedirs(bindir)
    path = os.path.join(bindir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho '%s (PostgreSQL) %d.3'\n" % (name, major_version))
    os.chmod(path, 0o755)
    return path


def test_the_target_servers_own_pg_restore_is_preferred(tmp_path, monkeypatch):
    """Several PostgreSQL versions on one host: the restore uses the target server's own pg_restore when it
    is new enough for the archive, else the newest one (fake bin folders that only answer --version)."""
    root = str(tmp_path / "pglib")
    own15, own17 = fake_tool(root, 15), fake_tool(root, 17)
    monkeypatch.setattr(postgres, "PG_LIB", root)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert postgres.find_binary("pg_restore", None, 15, prefer_major=15)[0] == own15
    assert postgres.find_binary("pg_restore", None, 17, prefer_major=17)[0] == own17
    # an archive of pg_dump 17 on a PostgreSQL 15 server: 15's pg_restore cannot read it
    assert postgres.find_binary("pg_restore", None, 17, prefer_major=15)[0] == own17
    # no preference: the newest, as before
    assert postgres.find_binary("pg_restore", None, 15)[0] == own17


def test_verification_makes_the_roles_that_policies_name_and_drops_them_after(pg, keys, tmp_path):
    """A tenant's row-level security policies name application roles; a verifier's scratch server rarely has
    them (here: dropped after the backup, as on another host). The manifest records them, the verification
    makes them NOLOGIN for its check, PASSes, and drops them; a manifest without the record fails as before."""
    repo = str(tmp_path / "repo")
    pg.psql("DROP DATABASE IF EXISTS rls_db WITH (FORCE)")
    pg.psql("DROP ROLE IF EXISTS rls_app")
    pg.psql("DROP ROLE IF EXISTS rls_auditor")
    pg.psql("CREATE ROLE rls_app NOLOGIN; CREATE ROLE rls_auditor NOLOGIN")
    pg.psql("CREATE DATABASE rls_db")
    pg.psql("CREATE TABLE notes (id int, owner text, body text); ALTER TABLE notes ENABLE ROW LEVEL SECURITY; "
            "CREATE POLICY own ON notes TO rls_app USING (owner = current_user); "
            "CREATE POLICY audit ON notes FOR SELECT TO rls_auditor USING (true); CREATE POLICY anyone ON notes FOR SELECT TO PUBLIC USING (false); "
            "INSERT INTO notes SELECT i, 'rls_app', 'n' || i FROM generate_series(1, 12) i", db="rls_db")
    res = backup.run(dict(pg.login, tenant="rls_db", repository=repo, recipients=[keys["public"]]))
    assert manifest(res["manifest"])["source"]["policy_roles"] == ["rls_app", "rls_auditor"]
    pg.psql("DROP DATABASE rls_db WITH (FORCE)")
    pg.psql("DROP ROLE rls_app; DROP ROLE rls_auditor")

    out = verify.run(dict(pg.login, repository=repo, tenant="rls_db", identity_file=keys["identity"],
                          fail_on_error=False))
    checks = dict((c["name"], c) for c in out["checks"])
    assert out["status"] == "PASS", checks
    assert "rls_app, rls_auditor" in checks["restore"]["detail"], checks["restore"]
    assert pg.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'rls\\_%'") == "0"

    doc = manifest(res["manifest"])
    del doc["source"]["policy_roles"]
    with open(res["manifest"], "w") as f:
        json.dump(doc, f)
    out = verify.run(dict(pg.login, repository=repo, tenant="rls_db", identity_file=keys["identity"],
                          fail_on_error=False, record=False))
    checks = dict((c["name"], c) for c in out["checks"])
    assert checks["restore"]["status"] == "FAIL" and 'role "rls_' in checks["restore"]["detail"], checks["restore"]


def test_a_pass_records_the_policy_roles_of_each_schema_tenant(pg, keys, tmp_path):
    pg.psql("DROP DATABASE IF EXISTS saas_rls WITH (FORCE)")
    saas.build(pg, db="saas_rls", tenants=("acme", "globex"), rows=5)
    pg.psql("DROP ROLE IF EXISTS rls_tenant_app")
    pg.psql("CREATE ROLE rls_tenant_app NOLOGIN")
    pg.psql("CREATE TABLE acme.secrets (id int); ALTER TABLE acme.secrets ENABLE ROW LEVEL SECURITY; "
            "CREATE POLICY p ON acme.secrets TO rls_tenant_app USING (true)", db="saas_rls")
    res = backup_pass.run(dict(pg.login, database="saas_rls", schemas=["acme", "globex"],
                               repository=str(tmp_path / "repo"), recipients=[keys["public"]]))
    by = dict((a["tenant"], manifest(a["manifest"])["source"]) for a in res["artifacts"])
    assert by["acme"]["policy_roles"] == ["rls_tenant_app"]
    assert "policy_roles" not in by["globex"]
    pg.psql("DROP DATABASE saas_rls WITH (FORCE)")
    pg.psql("DROP ROLE rls_tenant_app")


@pytest.mark.parametrize("check_mode", [True, False])
def test_an_archive_newer_than_every_pg_restore_here_is_refused_before_anything(pg, keys, world, tmp_path, check_mode):
    def newer_dump(doc):
        doc["source"]["pg_dump_version"] = "99.0"
    err = refused(pg, keys, world, tmp_path, newer_dump, check_mode)
    assert "written by pg_dump 99.0" in str(err) and "postgresql-client-99" in str(err), str(err)
    assert err.option == "pg_bin_dir"
