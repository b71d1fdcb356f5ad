"""The fleet playbooks (playbooks/*.yml) through the real ansible-playbook and
through ansible-runner (AWX's engine), against a real PostgreSQL cluster and
SQLite tenants on localhost, with an inventory written by the test."""

import glob
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

import browser
import lbtest
import saas

PLAYBOOKS = lbtest.ROOT / "playbooks"


def make_sqlite(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS guests (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
    conn.executemany("INSERT INTO guests (name, email) VALUES (?, ?)",
                     [("Guest %d" % i, "g%d@example.com" % i) for i in range(rows)])
    conn.commit()
    conn.close()


def write_inventory(base, pg, keys, tenants, name="inventory"):
    return lbtest.write_fleet_inventory(base, name, tenants, {
        "lifeboat_repository": str(base / "repository"),
        "lifeboat_recipients": [keys["public"]],
        "lifeboat_identity_file": keys["identity"],
        "lifeboat_report_dir": str(base / "reports"),
        "lifeboat_connection": pg.login,
    })


class Run(object):
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            self.data = None

    def failures(self):
        """Message of the task that failed the play (tasks with ignore_errors come before it)."""
        msgs = []
        for play in (self.data or {}).get("plays", []):
            for task in play.get("tasks", []):
                for res in task.get("hosts", {}).values():
                    if res.get("failed"):
                        msgs.append("%s: %s" % (task["task"]["name"], res.get("msg", "")))
        return msgs[-1:]

    def __repr__(self):
        return "Run(rc=%s, failures=%r, tail=%s)" % (self.rc, self.failures(), self.out[-3000:])


def playbook(name, inventory, *extra):
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / ("%s.yml" % name))] + list(extra)
    proc = subprocess.run(argv, capture_output=True, text=True, env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}), check=False,
                          cwd=str(lbtest.ROOT))
    return Run(proc)


def reports(base, kind, ext="json"):
    return sorted(glob.glob(str(base / "reports" / ("%s-*.%s" % (kind, ext)))))


@pytest.fixture(scope="module")
def fleet(pg, keys, tmp_path_factory):
    """A PostgreSQL database tenant, a SQLite tenant, both backed up once by backup.yml,
    and a SQLite tenant whose file is missing (its backup fails)."""
    base = tmp_path_factory.mktemp("fleet")
    pg.psql("DROP DATABASE IF EXISTS pbacme")
    pg.psql("CREATE DATABASE pbacme")
    pg.psql("CREATE TABLE guests (id serial PRIMARY KEY, name text, email text); "
            "INSERT INTO guests (name, email) SELECT 'Guest ' || i, 'g' || i || '@example.com' "
            "FROM generate_series(1, 300) i; CREATE TABLE notes (id int, body text); "
            "INSERT INTO notes SELECT i, repeat('x', i) FROM generate_series(1, 50) i", db="pbacme")
    pg.psql("DROP ROLE IF EXISTS pbreader; CREATE ROLE pbreader NOLOGIN; GRANT SELECT ON guests TO pbreader", db="pbacme")
    make_sqlite(str(base / "pbinitech.db"), 120)
    with pg.connect("pbacme") as conn:
        checksums = {"pbacme": lbtest.table_checksums(conn), "pbinitech": lbtest.sqlite_checksums(str(base / "pbinitech.db"))}
    good = [{"name": "pbacme", "engine": "postgresql", "database": "pbacme"},
            {"name": "pbinitech", "engine": "sqlite", "path": str(base / "pbinitech.db"), "rpo": "1s"}]
    broken = {"name": "pbbroken", "engine": "sqlite", "path": str(base / "missing" / "pbbroken.db")}
    pg.psql("DROP DATABASE IF EXISTS pbsaas")
    saas.build(pg, db="pbsaas", tenants=("pbglobex", "pbumbrella"), rows=20)
    schema_tenants = [{"name": "pbglobex", "database": "pbsaas", "schema": "pbglobex"},
                      {"name": "pbumbrella", "database": "pbsaas", "schema": "pbumbrella"}]
    backup = playbook("backup", write_inventory(base, pg, keys, good + [broken] + schema_tenants, name="with-broken"))
    inv = write_inventory(base, pg, keys, good)
    yield {"base": base, "inv": inv, "backup": backup, "pg": pg, "keys": keys, "backup_reports": reports(base, "backup"),
           "checksums": checksums}
    pg.psql("DROP DATABASE IF EXISTS pbacme")
    pg.psql("DROP DATABASE IF EXISTS pbsaas")
    pg.psql("DROP ROLE IF EXISTS pbreader")


def test_backup_goes_on_after_a_failed_tenant_and_reports_all(fleet):
    run = fleet["backup"]
    assert run.rc != 0, run
    fails = run.failures()
    assert len(fails) == 1 and "1 of 7 backup(s) FAILED" in fails[0] and "pbbroken" in fails[0], run
    assert "-e tenants=pbbroken" in fails[0] and "does not exist" in fails[0], fails
    assert len(fleet["backup_reports"]) == 1, run
    report = json.load(open(fleet["backup_reports"][0]))
    assert report["status"] == "FAILED"
    by_tenant = {r["tenant"]: r for r in report["rows"]}
    # the schema tenants of pbsaas went in one pass, with the database's shared part
    assert set(by_tenant) == {"pbacme", "pbinitech", "pbbroken", "(roles and grants)", "pbglobex", "pbumbrella",
                              "_shared_pbsaas"}, report
    for name in ("pbacme", "pbinitech", "pbglobex", "pbumbrella", "_shared_pbsaas"):
        row = by_tenant[name]
        assert row["status"] == "OK" and row["host"] == "localhost" and row["size_bytes"] > 0, row
        assert os.path.exists(os.path.join(str(fleet["base"] / "repository"), name, row["artifact"]))
    assert by_tenant["(roles and grants)"]["status"] == "OK"
    assert by_tenant["pbbroken"]["status"] == "FAILED"
    # the summary table is printed
    assert "TENANT" in run.out and "ARTIFACT" in run.out


def test_restore_refuses_without_confirmation_and_changes_nothing(fleet):
    pg = fleet["pg"]
    pg.psql("INSERT INTO guests (name) VALUES ('written after the backup')", db="pbacme")
    with pg.connect("pbacme") as conn:
        before = lbtest.table_checksums(conn)
    run = playbook("restore", fleet["inv"], "-e", "tenant=pbacme")
    assert run.rc != 0, run
    msg = " ".join(run.failures())
    assert "holds data" in msg and "-e confirm_restore=pbacme" in msg and "Nothing was changed" in msg, run
    assert "safety copy" in msg
    with pg.connect("pbacme") as conn:
        assert lbtest.table_checksums(conn) == before

    # confirmed, but with a key that is not a recipient: a clear failure, target unchanged
    run = playbook("restore", fleet["inv"], "-e", "tenant=pbacme", "-e", "confirm_restore=pbacme",
                   "-e", "lifeboat_identity_file=%s" % fleet["keys"]["other_identity"])
    assert run.rc != 0, run
    msg = " ".join(run.failures())
    assert "Wrong key" in msg and "cannot start" in msg and "Nothing was changed" in msg, run
    assert "AGE-SECRET-KEY" not in run.out
    with pg.connect("pbacme") as conn:
        assert lbtest.table_checksums(conn) == before

    # confirmed, into a mistyped database that holds another application's data: refused until it is named
    # a second time (replace_target), and the shared database of other tenants' schemas never
    pg.psql("DROP DATABASE IF EXISTS pbother")
    pg.psql("CREATE DATABASE pbother")
    pg.psql("CREATE TABLE precious AS SELECT generate_series(1, 9) AS i", db="pbother")
    for target, fragment in (("pbother", "replace_target: pbother"), ("pbsaas", "other tenants")):
        with pg.connect(target) as conn:
            other = lbtest.table_checksums(conn)
        run = playbook("restore", fleet["inv"], "-e", "tenant=pbacme", "-e", "confirm_restore=pbacme",
                       "-e", "target_database=%s" % target, "-e", "replace_target=%s" % target
                       if target == "pbsaas" else "restore_jobs=1")
        assert run.rc != 0, run
        msg = " ".join(run.failures())
        assert fragment in msg and "cannot start" in msg and "Nothing was changed" in msg, run
        with pg.connect(target) as conn:
            assert lbtest.table_checksums(conn) == other
    pg.psql("DROP DATABASE pbother")


def runner_events(result):
    return list(result.events)


def test_restore_through_ansible_runner_with_survey_extravars(fleet, tmp_path):
    """As AWX runs a job template: ansible-runner, extravars from a survey (strings)."""
    ansible_runner = pytest.importorskip("ansible_runner")
    base = fleet["base"]
    path = str(base / "pbinitech.db")
    expected = lbtest.sqlite_checksums(path)
    make_sqlite(path, 7)  # rows written after the backup: the restore replaces them
    assert lbtest.sqlite_checksums(path) != expected
    marks = tmp_path / "marks"
    marks.mkdir()
    private = tmp_path / "runner"
    (private / "project").mkdir(parents=True)
    env = lbtest.ansible_env({"ANSIBLE_STDOUT_CALLBACK": "default"})
    result = ansible_runner.run(
        private_data_dir=str(private),
        playbook=str(PLAYBOOKS / "restore.yml"),
        inventory=str(fleet["inv"]),
        extravars={"tenant": "pbinitech", "artifact": "latest", "confirm_restore": "pbinitech",
                   "pre_restore": "touch %s/stopped" % marks, "post_restore": "touch %s/started" % marks,
                   "target_database": "", "target_path": ""},
        envvars={k: env[k] for k in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_CONFIG", "ANSIBLE_LOCAL_TEMP", "PATH")},
        quiet=True,
    )
    assert result.rc == 0, "".join(result.stdout.read() if hasattr(result.stdout, "read") else "")[-3000:]
    assert (marks / "stopped").exists() and (marks / "started").exists()
    assert lbtest.sqlite_checksums(path) == expected
    stats = [e for e in runner_events(result) if e.get("event") == "playbook_on_stats"]
    artifacts = stats[-1]["event_data"].get("artifact_data", {})
    res = artifacts["lifeboat_restore"]
    assert res["status"] == "OK" and res["tenant"] == "pbinitech", artifacts
    assert res["replaced"]["existed"] is True and res["safety_copy"]["kept"] is True, res
    assert os.path.exists(res["safety_copy"]["path"]) and lbtest.sqlite_checksums(res["safety_copy"]["path"]) != expected
    assert json.load(open(res["report"]))["status"] == "OK"


def test_drill_measures_rto_and_rpo_against_budgets(fleet):
    run = playbook("drill", fleet["inv"])
    # pbinitech declares rpo: 1s, which its artifact cannot meet; pbacme meets the defaults (4h, 24h)
    assert run.rc != 0, run
    msg = " ".join(run.failures())
    assert "1 of 2 tenant(s) FAILED the drill" in msg and "pbinitech" in msg and "RPO" in msg, run
    base = fleet["base"]
    report = json.load(open(reports(base, "drill")[-1]))
    by_tenant = {t["tenant"]: t for t in report["tenants"]}
    acme, initech = by_tenant["pbacme"], by_tenant["pbinitech"]
    assert acme["status"] == "PASS" and acme["verify"] == "PASS", acme
    assert 0 < acme["rto_seconds"] < 14400 and acme["rto_budget_seconds"] == 14400, acme
    assert acme["rpo_budget_seconds"] == 86400 and acme["rpo_seconds"] >= 1, acme
    assert initech["status"] == "FAIL" and initech["verify"] == "PASS", initech
    assert any("RPO" in p for p in initech["problems"]), initech
    summary = open(reports(base, "drill", "txt")[-1]).read()
    assert "pbacme" in summary and "RTO" in summary and "FAIL" in summary


def test_dr_restore_rebuilds_from_the_newest_verified_artifacts(fleet):
    """The host lost its tenants and roles: dr_restore brings back every tenant as
    backed up (per-table checksums), the role and its grant, and reports RTO/RPO."""
    pg, base = fleet["pg"], fleet["base"]
    # a newer artifact of pbacme (with the row written after the first backup) that was never verified:
    # dr_restore must not choose it
    newer = lbtest.run_module("pg_backup", dict(pg.login, tenant="pbacme", repository=str(base / "repository"),
                                                recipients=[fleet["keys"]["public"]]))
    assert newer.get("changed") and not newer.get("failed"), newer
    pg.psql("DROP DATABASE pbacme")
    pg.psql("DROP ROLE pbreader")
    os.unlink(str(base / "pbinitech.db"))
    newest_verified = sorted(glob.glob(str(base / "repository" / "pbacme" / "*.verify.json")))[-1]
    incident = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    run = playbook("dr_restore", fleet["inv"], "-e", "dr_hosts=localhost", "-e", "dr_provision=false",
                   "-e", "dr_enable_timers=false", "-e", "dr_incident_time=%s" % incident,
                   "-e", json.dumps({"dr_health_checks": ["test -s %s" % (base / "pbinitech.db")]}))
    assert run.rc == 0, run
    with pg.connect("pbacme") as conn:
        assert lbtest.table_checksums(conn) == fleet["checksums"]["pbacme"]
        assert conn.execute("SELECT has_table_privilege('pbreader', 'public.guests', 'SELECT')").fetchone()[0] is True
    assert lbtest.sqlite_checksums(str(base / "pbinitech.db")) == fleet["checksums"]["pbinitech"]
    report = json.load(open(reports(base, "dr_restore")[-1]))
    assert report["status"] == "OK" and report["incident"] == incident, report
    assert report["rto_seconds"] >= report["run_seconds"] > 0, report
    rows = {(r["what"], r["tenant"]): r for r in report["rows"]}
    acme = rows[("tenant", "pbacme")]
    assert acme["status"] == "OK" and os.path.basename(newest_verified).split(".")[0] == acme["artifact"].split(".")[0], acme
    assert acme["rpo_seconds"] > 0 and rows[("tenant", "pbinitech")]["status"] == "OK"
    assert rows[("globals", "(roles and grants)")]["status"] == "OK"
    assert rows[("health check", "test -s %s" % (base / "pbinitech.db"))]["status"] == "OK"
    # the HTML page beside the JSON report, opened in a real browser: the phases of the rebuild and every tenant,
    # pbinitech over its RPO budget (rpo: 1s)
    assert [p["name"] for p in report["timeline"][0]["phases"]] == [
        "provisioning", "selection", "restore", "migrations", "health checks", "timers"], report["timeline"]
    page = browser.open_report(reports(base, "dr_restore", "html")[-1], "dr-report.png")
    assert sorted(page.values["tenants"]) == [["pbacme", "\u2714 PASS"], ["pbinitech", "\u2718 FAIL"]], page.values
    assert "tenant pbacme" in page.values["lanes"] and "globals" in page.values["lanes"], page.values


def test_verify_fails_fleet_wide_on_a_corrupt_artifact_and_shows_all(fleet):
    base = fleet["base"]
    # corrupt pbinitech's newest artifact: verify names it, still verifies pbacme, and fails
    art = sorted(glob.glob(str(base / "repository" / "pbinitech" / "*.sqlite.zst.age")))[-1]
    with open(art, "r+b") as f:
        f.seek(200)
        f.write(b"\0" * 16)
    run = playbook("verify", fleet["inv"], "-e", "tenants=pbacme,pbinitech")
    assert run.rc != 0, run
    msg = " ".join(run.failures())
    assert "1 of 2 artifact(s) FAILED" in msg and "pbinitech" in msg and "checksum" in msg, run
    report = json.load(open(reports(base, "verify")[-1]))
    statuses = {r["tenant"]: r["status"] for r in report["rows"]}
    assert statuses == {"pbacme": "PASS", "pbinitech": "FAIL"}, report


@pytest.mark.parametrize("name, kind, failed", [("backup", "backup", "FAILED"), ("verify", "verify", "FAIL")])
def test_an_unreachable_host_is_a_failed_row_of_the_table_and_the_report(fleet, tmp_path, name, kind, failed):
    """Every host of the play unreachable: Ansible would run no later play, so no summary at all."""
    inv = tmp_path / "unreachable"
    (inv / "group_vars").mkdir(parents=True)
    host = {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody", "ansible_connection": "ssh",
            "lifeboat_tenants": [{"name": "gone", "engine": "sqlite", "path": "/srv/gone.db"}]}
    (inv / "hosts.yml").write_text(json.dumps({"all": {
        "children": {"lifeboat_database_hosts": {"hosts": {"db-gone": host}},
                     "lifeboat_verifiers": {"hosts": {"db-gone": host}}},
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    (inv / "group_vars" / "all.yml").write_text(json.dumps({
        "lifeboat_repository": str(tmp_path / "repository"), "lifeboat_recipients": [fleet["keys"]["public"]],
        "lifeboat_identity_file": fleet["keys"]["identity"], "lifeboat_report_dir": str(tmp_path / "reports")}))
    run = playbook(name, inv)
    assert run.rc != 0, run
    found = sorted(glob.glob(str(tmp_path / "reports" / ("%s-*.json" % kind))))
    assert len(found) == 1, run  # the summary ran: report written
    rows = json.load(open(found[0]))["rows"]
    assert [(r["host"], r["status"]) for r in rows] == [("db-gone", failed)], rows
    message = rows[0].get("message") or ""
    assert message.startswith("unreachable:") and "port 1" in message, rows
    assert "db-gone" in run.out and "TENANT" in run.out, run  # and the table printed
