"""Tenants found by discover rules, and unprotected tenants, on a real PostgreSQL cluster of
their own (so that every database on it is one these tests made): the `lifeboat` agent from its
built wheel, backup_info through ansible-playbook, and playbooks/backup.yml."""

import glob
import json
import os
import subprocess

import pytest

import lbtest
import test_agent
from test_agent import Agent, metric

agent_pkg = test_agent.agent_pkg  # the session fixture that builds the agent's wheel, shared with test_agent

PLAYBOOKS = lbtest.ROOT / "playbooks"


@pytest.fixture(scope="module")
def dpg():
    cluster = lbtest.PgCluster(tag="discovery").start()
    yield cluster
    cluster.drop()


@pytest.fixture
def clean(dpg):
    """Drop every database and the schemas of saas that an earlier test of this module made."""
    for name in dpg.psql("SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', "
                         "'template1')").splitlines():
        dpg.psql('ALTER DATABASE "%s" IS_TEMPLATE false ALLOW_CONNECTIONS true' % name)
        dpg.psql('DROP DATABASE "%s" WITH (FORCE)' % name)
    return dpg


def make_db(pg, name, rows=10):
    pg.psql('CREATE DATABASE "%s"' % name)
    pg.psql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, %d)" % rows, db=name)
    return name


def make_schema(pg, database, schema, rows=3):
    pg.psql('CREATE SCHEMA "%s"; CREATE TABLE "%s".s (y int); INSERT INTO "%s".s SELECT generate_series(1, %d)'
            % (schema, schema, schema, rows), db=database)


@pytest.fixture
def dagent(agent_pkg, tmp_path, clean, keys):
    a = Agent(agent_pkg["site"], str(tmp_path))
    pwfile = tmp_path / "pw"
    pwfile.write_text(clean.password + "\n")
    a.conn = {"login_host": "127.0.0.1", "login_port": clean.port, "login_user": clean.user,
              "login_password_file": str(pwfile), "pg_bin_dir": os.path.dirname(clean.bin("pg_dump"))}
    a.repo = str(tmp_path / "repo")
    a.pg = clean

    def configure(discover, listed=(), settings=None):
        base = {"repository": a.repo, "recipients": [keys["public"]], "connection": a.conn,
                "verify": {"identity_file": keys["identity"]}}
        if discover is not None:
            base["discover"] = discover
        base.update(settings or {})
        a.configure(base, list(listed))
    a.setup = configure
    return a


def events(proc, event):
    return [x for x in proc.lines if x.get("event") == event]


def unprotected_lines(proc):
    return dict((x["name"], x) for x in events(proc, "unprotected"))


def artifacts(agent, tenant):
    return sorted(glob.glob(os.path.join(agent.repo, tenant, "%s-*.manifest.json" % tenant)))


def status_json(agent):
    proc = agent.run("status", "--json")
    data = json.loads(proc.stdout)
    return proc.returncode, data


# -- the agent ----------------------------------------------------------------------------------

def test_a_database_created_after_the_config_is_backed_up_by_the_next_run(dagent):
    pg = dagent.pg
    make_db(pg, "acme_one", 5)
    dagent.setup([{"databases": "acme_*"}])
    config_before = open(dagent.config).read(), open(dagent.tenants_env).read()
    proc = dagent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.tenants["acme_one"]["status"] == "ok" and proc.tenants["acme_one"]["rows"] == "5"
    disc = events(proc, "discovery")[0]
    assert disc["status"] == "ok" and disc["discovered_tenants"] == "acme_one" and disc["listed"] == "0"

    make_db(pg, "acme_two", 7)  # a customer onboarded today; nobody touches the configuration
    proc = dagent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (open(dagent.config).read(), open(dagent.tenants_env).read()) == config_before
    assert proc.tenants["acme_two"]["status"] == "ok" and proc.tenants["acme_two"]["rows"] == "7"
    assert len(artifacts(dagent, "acme_two")) == 1
    manifest = json.load(open(artifacts(dagent, "acme_two")[0]))
    assert manifest["tenant"] == "acme_two"
    text = dagent.metrics_text("backup")
    assert metric(text, "lifeboat_backup_status", "acme_two") == 1
    prot = dagent.metrics_text("protection")
    assert "lifeboat_unprotected_tenants 0" in prot and "lifeboat_discovered_tenants 2" in prot
    assert ('lifeboat_tenant_unprotected{tenant="acme_two",found="discovered",database="acme_two",schema="",'
            'reason="none"} 0') in prot

    code, data = status_json(dagent)
    assert code == 0, json.dumps(data)[:4000]
    found = dict((r["tenant"], r["found"]) for r in data["tenants"])
    assert found["acme_one"] == "discovered" and found["acme_two"] == "discovered"
    assert data["unprotected"] == [] and data["discovery"]["discovered"] == ["acme_one", "acme_two"]

    # verify covers the discovered tenants too
    proc = dagent.run("verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.tenants["acme_two"]["result"] == "PASS" and proc.tenants["acme_one"]["result"] == "PASS"
    # and prune rotates them
    proc = dagent.run("prune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.tenants["acme_two"]["status"] == "ok" and proc.tenants["acme_two"]["kept"] == "1"


def test_a_new_schema_in_a_schema_rules_database_is_backed_up_by_the_next_run(dagent):
    pg = dagent.pg
    make_db(pg, "saas")
    make_schema(pg, "saas", "t_acme", 4)
    dagent.setup([{"database": "saas", "schemas": "t_*"}])
    proc = dagent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.tenants["t_acme"]["status"] == "ok" and proc.tenants["t_acme"]["rows"] == "4"
    assert "saas" not in proc.tenants, "the database of schema tenants is not a database tenant"

    make_schema(pg, "saas", "t_globex", 6)
    proc = dagent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.tenants["t_globex"]["status"] == "ok" and proc.tenants["t_globex"]["rows"] == "6"
    manifest = json.load(open(artifacts(dagent, "t_globex")[-1]))
    assert manifest["tenant"] == "t_globex"
    assert json.dumps(manifest).count("t_acme") == 0, "t_globex's artifact holds only its own schema"
    # --tenant may name a discovered schema tenant: it is backed up from its schema, not a database named like it
    proc = dagent.run("backup", "--tenant", "t_globex")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [t for t in proc.tenants if not t.startswith("_")] == ["t_globex"], proc.stdout
    assert proc.tenants["t_globex"]["status"] == "ok" and proc.tenants["t_globex"]["rows"] == "6"


def test_rules_that_match_nothing_and_no_tenants_is_a_quiet_night_not_an_error(dagent):
    dagent.setup([{"databases": "acme_*"}])
    proc = dagent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert events(proc, "discovery")[0]["discovered"] == "0" and not proc.tenants
    assert metric(dagent.metrics_text("protection"), "lifeboat_unprotected_tenants") == 0


def test_invalid_names_are_reported_not_backed_up_and_the_run_goes_on(dagent):
    pg = dagent.pg
    make_db(pg, "good_one")
    make_db(pg, "Bad-Name")
    make_db(pg, "lb_v_0123456789abcdef0123")
    make_db(pg, "tmpl_db")
    pg.psql('ALTER DATABASE tmpl_db IS_TEMPLATE true')
    make_db(pg, "closed_db")
    pg.psql("ALTER DATABASE closed_db ALLOW_CONNECTIONS false")
    dagent.setup([{"databases": "*"}])
    proc = dagent.run("backup")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.tenants["good_one"]["status"] == "ok"
    backed_up = set(t for t in proc.tenants if not t.startswith("_globals_"))
    assert backed_up == {"good_one"}, "never postgres, templates, derived names or closed databases"
    bad = unprotected_lines(proc)["Bad-Name"]
    assert bad["reason"] == "invalid-name" and bad["found"] == "discovered"
    assert "not a valid tenant name" in bad["error"] and "TENANTS" in bad["error"]
    assert set(unprotected_lines(proc)) == {"Bad-Name"}
    assert sorted(os.listdir(dagent.repo)) == sorted(["good_one"] + [t for t in proc.tenants if t.startswith("_glob")])
    prot = dagent.metrics_text("protection")
    assert ('lifeboat_tenant_unprotected{tenant="Bad-Name",found="discovered",database="Bad-Name",schema="",'
            'reason="invalid-name"} 1') in prot
    assert "lifeboat_unprotected_tenants 1" in prot
    for never in ("postgres", "template1", "tmpl_db", "closed_db", "lb_v_"):
        assert 'database="%s' % never not in prot
    code, data = status_json(dagent)
    assert code == 1 and [e["tenant"] for e in data["unprotected"]] == ["Bad-Name"], data
    status = dagent.run("status")
    row = [line for line in status.stdout.splitlines() if line.startswith("Bad-Name ")][0]
    assert "invalid-name" in row and "UNPROTECTED" in row and "discovered" in row, status.stdout


def test_an_uncovered_database_is_unprotected_in_status_metrics_and_exit_code(dagent):
    pg = dagent.pg
    make_db(pg, "acme_one")
    make_db(pg, "grafana")
    dagent.setup([{"databases": "acme_*"}])
    proc = dagent.run("backup")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.tenants["acme_one"]["status"] == "ok" and "grafana" not in proc.tenants
    line = unprotected_lines(proc)["grafana"]
    assert line["reason"] == "not-covered" and line["found"] == "none"
    assert "TENANTS" in line["error"] and "discover" in line["error"]
    summary = events(proc, "protection")[0]
    assert summary["unprotected"] == "1" and summary["unprotected_names"] == "grafana"
    prot = dagent.metrics_text("protection")
    assert metric(prot, "lifeboat_unprotected_tenants") == 1
    assert ('lifeboat_tenant_unprotected{tenant="grafana",found="none",database="grafana",schema="",'
            'reason="not-covered"} 1') in prot
    status = dagent.run("status")
    assert status.returncode == 1
    assert "UNPROTECTED: 1 " in status.stdout
    row = [line for line in status.stdout.splitlines() if line.startswith("grafana ")][0]
    assert "not backed up: not-covered (database grafana)" in row and "UNPROTECTED" in row, status.stdout
    assert "database grafana" in status.stdout and "not-covered" in status.stdout
    assert "Add it to TENANTS" in status.stdout
    # a rule's exclude says it needs no backup: no longer reported
    dagent.setup([{"databases": "acme_*", "exclude": "grafana"}])
    proc = dagent.run("backup")
    assert proc.returncode == 0, proc.stdout
    assert metric(dagent.metrics_text("protection"), "lifeboat_unprotected_tenants") == 0
    assert dagent.run("status").returncode == 0


def test_a_listed_tenant_without_an_artifact_is_unprotected_until_it_is_backed_up(dagent):
    pg = dagent.pg
    make_db(pg, "acme_one")
    dagent.setup([{"databases": "acme_*"}], listed=["billing"])
    code, data = status_json(dagent)
    assert code == 1
    by = dict((e["tenant"], e) for e in data["unprotected"])
    assert by["billing"]["reason"] == "no-artifact" and by["billing"]["found"] == "listed"
    assert by["acme_one"]["reason"] == "no-artifact" and by["acme_one"]["found"] == "discovered"
    proc = dagent.run("backup")
    assert proc.returncode == 1, "billing's database does not exist: its backup fails"
    assert proc.tenants["billing"]["status"] == "failed" and proc.tenants["acme_one"]["status"] == "ok"
    assert unprotected_lines(proc)["billing"]["reason"] == "no-artifact"
    prot = dagent.metrics_text("protection")
    assert ('lifeboat_tenant_unprotected{tenant="billing",found="listed",database="billing",schema="",'
            'reason="no-artifact"} 1') in prot
    assert 'tenant="acme_one",found="discovered",database="acme_one",schema="",reason="none"} 0' in prot

    make_db(pg, "billing")
    proc = dagent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prot = dagent.metrics_text("protection")
    assert 'tenant="billing",found="listed",database="billing",schema="",reason="none"} 0' in prot
    assert "lifeboat_unprotected_tenants 0" in prot
    code, data = status_json(dagent)
    assert code == 0 and data["unprotected"] == [], data
    assert dict((r["tenant"], r["found"]) for r in data["tenants"])["billing"] == "listed"


def test_a_listed_tenant_wins_over_a_discovered_one_and_a_taken_name_is_reported(dagent):
    pg = dagent.pg
    make_db(pg, "saas")
    make_schema(pg, "saas", "acme")
    make_db(pg, "acme")
    listed = {"tenants": {"acme": {"database": "saas", "schema": "acme"}}}
    dagent.setup([{"databases": "*"}], listed=["acme"], settings=listed)
    proc = dagent.run("backup")
    assert proc.returncode == 3, proc.stdout
    assert proc.tenants["acme"]["status"] == "ok"
    manifest = json.load(open(artifacts(dagent, "acme")[-1]))
    assert "saas" in json.dumps(manifest), "the listed tenant (saas.acme) was backed up, not the database acme"
    line = unprotected_lines(proc)["acme"]
    assert line["reason"] == "conflict" and line["database"] == "acme"
    assert "already listed in TENANTS" in line["error"]


def test_discovery_failing_does_not_stop_the_listed_tenants(dagent, tmp_path):
    db = str(tmp_path / "initech.db")
    lbtest.sqlite_guests(db, 5)
    dagent.setup([{"databases": "acme_*"}], listed=["initech"], settings={
        "tenants": {"initech": {"engine": "sqlite", "path": db}},
        "connection": dict(dagent.conn, login_port=lbtest.free_port())})
    proc = dagent.run("backup")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.tenants["initech"]["status"] == "ok"
    disc = events(proc, "discovery")[0]
    assert disc["status"] == "failed" and "discovery failed" in disc["error"] and "connection" in disc["error"]
    prot = dagent.metrics_text("protection")
    assert "lifeboat_discovery_status 0" in prot
    status = dagent.run("status")
    assert status.returncode == 1 and "DISCOVERY FAILED" in status.stdout


def test_without_discover_rules_nothing_changes(dagent):
    make_db(dagent.pg, "acme_one")
    make_db(dagent.pg, "grafana")
    dagent.setup(None, listed=["acme_one"])
    proc = dagent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not events(proc, "discovery") and not events(proc, "unprotected")
    assert [x["event"] for x in proc.lines if "event" in x] == ["start", "done"]
    prot = dagent.metrics_text("protection")
    assert "lifeboat_discovery_status" not in prot and "lifeboat_unprotected_tenants 0" in prot


# -- backup_info ---------------------------------------------------------------------------------

def test_backup_info_with_discover_returns_discovered_and_unprotected(dagent):
    pg = dagent.pg
    make_db(pg, "acme_one")
    make_db(pg, "acme_two")
    make_db(pg, "grafana")
    make_db(pg, "saas")
    make_schema(pg, "saas", "t_one")
    make_schema(pg, "saas", "T_Two")
    dagent.setup([{"databases": "acme_*"}], listed=["acme_one"])
    assert dagent.run("backup", "--tenant", "acme_one").returncode == 0
    login = dict((k, v) for k, v in dagent.conn.items() if k.startswith("login_") and k != "login_password_file")
    login["login_password"] = pg.password
    res = lbtest.run_module("backup_info", dict(
        login, repository=dagent.repo, max_age="1h",
        discover=[{"databases": "acme_*"}, {"database": "saas", "schemas": "[tT]_*"}],
        listed_tenants=[{"name": "acme_one", "engine": "postgresql", "rto": "2h"}]))
    assert not res.get("failed"), res
    assert res["discovered_names"] == ["acme_two", "t_one"], res
    t_one = [t for t in res["discovered"] if t["name"] == "t_one"][0]
    assert t_one == {"name": "t_one", "engine": "postgresql", "database": "saas", "schema": "t_one",
                     "found": "discovered", "rule": "discover[1]"}
    by = dict(((e["tenant"], e["reason"]) , e) for e in res["unprotected"])
    assert set(by) == {("acme_two", "no-artifact"), ("t_one", "no-artifact"), ("T_Two", "invalid-name"),
                       ("grafana", "not-covered")}, res["unprotected"]
    assert "acme_one" not in res["unprotected_names"], "it has a fresh artifact"
    assert "UNPROTECTED" in res["msg"] and pg.password not in json.dumps(res)
    assert res["tenants"]["acme_one"]["latest"] is not None, "the per-tenant report is still there"
    # without discover: exactly as before, the server is not contacted
    plain = lbtest.run_module("backup_info", dict(repository=dagent.repo, login_port=lbtest.free_port()))
    assert not plain.get("failed") and "discovered" not in plain and "unprotected" not in plain, plain
    # a bad rule names its key
    bad = lbtest.run_module("backup_info", dict(login, repository=dagent.repo, discover=[{"database": "saas"}]))
    assert bad.get("failed") and "discover[0].schemas" in bad["msg"] and bad["option"] == "discover", bad


# -- the fleet playbook --------------------------------------------------------------------------

def test_backup_playbook_with_lifeboat_discover_backs_up_a_discovered_tenant(dagent, keys, tmp_path):
    pg = dagent.pg
    make_db(pg, "acme_one", 3)
    make_db(pg, "acme_new", 9)
    make_db(pg, "grafana")
    login = {"login_host": "127.0.0.1", "login_port": pg.port, "login_user": pg.user, "login_password": pg.password}
    inv = lbtest.write_fleet_inventory(tmp_path, "inv", [{"name": "acme_one", "engine": "postgresql"}], {
        "lifeboat_repository": str(tmp_path / "repository"),
        "lifeboat_recipients": [keys["public"]],
        "lifeboat_report_dir": str(tmp_path / "reports"),
        "lifeboat_connection": login,
        "lifeboat_discover": [{"databases": "acme_*"}],
    })
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inv), str(PLAYBOOKS / "backup.yml")]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=str(lbtest.ROOT),
                          env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, "grafana is not covered: the run fails after backing up the rest"
    assert len(glob.glob(str(tmp_path / "repository" / "acme_new" / "acme_new-*.manifest.json"))) == 1, out[-3000:]
    assert len(glob.glob(str(tmp_path / "repository" / "acme_one" / "acme_one-*.manifest.json"))) == 1, out[-3000:]
    report = json.load(open(sorted(glob.glob(str(tmp_path / "reports" / "backup-*.json")))[-1]))
    rows = dict((r["tenant"], r) for r in report["rows"])
    assert rows["acme_new"]["status"] == "OK" and rows["acme_one"]["status"] == "OK", report
    assert rows["grafana"]["status"] == "UNPROTECTED" and "not-covered" in rows["grafana"]["message"], report
    assert report["status"] == "FAILED"
    assert "UNPROTECTED" in out and "lifeboat_discover" in out
    # -e tenants= accepts a discovered tenant
    proc = subprocess.run(argv + ["-e", "tenants=acme_new"], capture_output=True, text=True, check=False,
                          cwd=str(lbtest.ROOT), env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert len(glob.glob(str(tmp_path / "repository" / "acme_new" / "acme_new-*.manifest.json"))) == 2
