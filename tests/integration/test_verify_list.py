"""verify.yml and drill.yml hand a host's tenants to backup_verify in chunks (its tenants option), each chunk
verified lifeboat_parallel at a time: through the real ansible-playbook, on one host with 30 tenants
(database, schema and SQLite) of which one artifact is corrupt, against a real PostgreSQL cluster.

The rows, messages and reports are what the single calls give; one backup_verify call runs per chunk; each
drilled tenant's RTO is its own verification's start to end. About 25 s (the two playbooks, one module call).
"""

import glob
import json
import os
import subprocess
import time

import pytest

import lbtest
from lifeboat_engine import backup, backup_pass, naming

PLAYBOOKS = lbtest.ROOT / "playbooks"
DATABASES = ["vl-d%02d" % i for i in range(12)]
SCHEMAS = ["vl-s%d" % i for i in range(4)]
SQLITES = ["vl-q%02d" % i for i in range(14)]
CORRUPT = "vl-d03"
CHUNK = 16  # lifeboat_batch_size: 31 repository tenants (with the schemas' shared part) are two chunks


def playbook(name, inventory, *extra):
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / ("%s.yml" % name)),
            "-e", "lifeboat_batch_size=%d" % CHUNK] + list(extra)
    started = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}),
                          check=False, cwd=str(lbtest.ROOT))
    run = lbtest.PlaybookRun(proc, json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else None)
    run.wall = (started, time.time())
    return run


def task_results(run, name):
    """The loop results of the task ``name`` (one per backup_verify call)."""
    found = [r for r in run.results if r["_task"].startswith(name)]
    assert len(found) == 1, run
    return found[0].get("results") or []


def moment(text):
    """A row's UTC time (2026-01-01T02:40:00.123Z) as Unix seconds."""
    return naming.parse_iso(text[:19] + "Z").timestamp() + (int(text[20:23]) / 1000.0 if "." in text else 0)


@pytest.fixture(scope="module")
def host(pg, keys, tmp_path_factory):
    """30 small tenants backed up once (12 databases, 4 schemas of one database, 14 SQLite files); the artifact of
    CORRUPT has bytes flipped in its middle."""
    base = tmp_path_factory.mktemp("vlist")
    repo = str(base / "repository")
    common = {"repository": repo, "recipients": [keys["public"]]}
    tenants = []
    databases = [name.replace("-", "_") for name in DATABASES] + ["vl_mt"]
    with pg.connect() as admin:
        for db in databases:
            admin.execute('DROP DATABASE IF EXISTS "%s"' % db)
            admin.execute('CREATE DATABASE "%s"' % db)
    for name, db in zip(DATABASES, databases):
        with pg.connect(db) as conn:
            conn.execute("CREATE TABLE guests AS SELECT i AS id, 'Guest ' || i AS name FROM generate_series(1, 40) i")
        backup.run(dict(pg.login, tenant=name, database=db, **common))
        tenants.append({"name": name, "engine": "postgresql", "database": db})
    with pg.connect("vl_mt") as conn:
        conn.execute("CREATE TABLE public.plans (id int PRIMARY KEY); INSERT INTO public.plans VALUES (1), (2); " + " ".join(
            "CREATE SCHEMA vl_s%d; CREATE TABLE vl_s%d.orders AS SELECT i AS id, 1 AS plan FROM generate_series(1, 30) i;"
            % (i, i) for i in range(len(SCHEMAS))))
    members = [{"tenant": name, "schema": name.replace("-", "_")} for name in SCHEMAS]
    backup_pass.run(dict(pg.login, database="vl_mt", schemas=members, **common))
    tenants += [{"name": m["tenant"], "database": "vl_mt", "schema": m["schema"]} for m in members]
    for name in SQLITES:
        path = lbtest.sqlite_guests(base / ("%s.db" % name), 30)
        backup.run(dict(tenant=name, engine="sqlite", path=path, **common))
        tenants.append({"name": name, "engine": "sqlite", "path": path})
    art = glob.glob(os.path.join(repo, CORRUPT, "%s-*.pgdump*" % CORRUPT))[0]
    with open(art, "r+b") as f:
        f.seek(os.path.getsize(art) // 2)
        data = f.read(16)
        f.seek(os.path.getsize(art) // 2)
        f.write(bytes(b ^ 0xFF for b in data))
    inv = lbtest.write_fleet_inventory(base, "inventory", tenants, {
        "lifeboat_repository": repo, "lifeboat_recipients": [keys["public"]],
        "lifeboat_identity_file": keys["identity"], "lifeboat_report_dir": str(base / "reports"),
        "lifeboat_connection": pg.login})
    # what the single call says of the corrupt artifact (the message verify.yml's rows held before the list)
    single = lbtest.run_module("backup_verify", dict(pg.login, repository=repo, tenant=CORRUPT, record=False,
                                                     identity_file=keys["identity"], fail_on_error=False))
    yield {"base": base, "repo": repo, "inv": inv, "tenants": tenants, "pg": pg, "keys": keys, "single": single}
    with pg.connect() as admin:
        for db in databases:
            admin.execute('DROP DATABASE IF EXISTS "%s"' % db)


def no_scratch_left(pg):
    return pg.psql("SELECT count(*) FROM pg_database WHERE datname ~ '^lb_v_'") == "0"


def test_verify_yml_verifies_every_tenant_in_chunks_with_todays_rows(host):
    single = host["single"]["tenants"][0]
    assert single["status"] == "FAIL" and "checksum" in single["failed_checks"], host["single"]
    message = "; ".join(c["detail"] for c in single["checks"] if c["status"] == "FAIL")
    run = playbook("verify", host["inv"])
    assert run.rc != 0, run
    # every tenant of the repository (listed by backup_info), in two calls of backup_verify: one per chunk
    calls = task_results(run, "Restore-verify the latest artifacts")
    names = sorted(DATABASES + SCHEMAS + SQLITES + ["_shared_vl_mt"])
    assert [len(c["rows"]) for c in calls] == [CHUNK, len(names) - CHUNK], run
    assert [c["item"] for c in calls] == [[{"tenant": n} for n in names[:CHUNK]], [{"tenant": n} for n in names[CHUNK:]]]
    found = glob.glob(str(host["base"] / "reports" / "verify-*.json"))
    assert len(found) == 1, run
    report = json.load(open(found[0]))
    assert report["status"] == "FAIL" and [r["tenant"] for r in report["rows"]] == names, report
    for row in report["rows"]:
        assert set(row) == {"host", "tenant", "artifact", "status", "failed_checks", "warnings", "message"}, row
        if row["tenant"] == CORRUPT:
            assert (row["status"], row["failed_checks"], row["message"]) == (
                "FAIL", ",".join(single["failed_checks"]), message), row
            assert row["artifact"] == os.path.basename(single["artifact"])
        else:
            assert row["status"] == "PASS" and row["message"] == "" and row["artifact"].startswith(row["tenant"]), row
    failure = [r["msg"] for r in run.results if r.get("failed") and r["_task"] == "Fail when any artifact FAILed"]
    assert failure and failure[0].startswith("1 of %d artifact(s) FAILED verification: localhost/%s (%s): %s. Do not"
                                             % (len(names), CORRUPT, row_checks(single), message)), failure
    # a record per verified tenant, as before (the corrupt one's says FAIL), and no scratch database left
    records = glob.glob(os.path.join(host["repo"], "*", "*.verify.json"))
    assert sorted(os.path.basename(os.path.dirname(p)) for p in records) == names
    assert no_scratch_left(host["pg"])
    # a bad list is refused by the module before anything is verified
    bad = lbtest.run_module("backup_verify", dict(host["pg"].login, repository=host["repo"], record=False,
                                                  identity_file=host["keys"]["identity"],
                                                  tenants=[{"tenant": "vl-q00"}, {"tenant": "vl-q00"}]))
    assert bad["failed"] and bad["option"] == "tenants[1].tenant" and "Nothing was done" in bad["msg"], bad
    assert "rows" not in bad


def row_checks(single):
    return ",".join(single["failed_checks"])


def test_drill_yml_measures_each_tenants_rto_from_its_row(host):
    run = playbook("drill", host["inv"], "-e", "drill_record=false")
    assert run.rc != 0, run
    calls = task_results(run, "Drill the tenants")
    assert [len(c["rows"]) for c in calls] == [CHUNK, len(host["tenants"]) - CHUNK], run
    rows_by_tenant = dict((r["tenant"], r) for c in calls for r in c["rows"])
    found = glob.glob(str(host["base"] / "reports" / "drill-*.json"))
    assert len(found) == 1, run
    report = json.load(open(found[0]))
    assert [t["tenant"] for t in report["tenants"]] == [t["name"] for t in host["tenants"]], report
    start, end = run.wall
    spans = []
    for t in report["tenants"]:
        row = rows_by_tenant[t["tenant"]]
        # the RTO is the row's own verification, start to end, within the run's wall time
        assert t["started"] == row["started"], (t, row)
        assert t["rto_seconds"] == round(moment(row["finished"]) - moment(row["started"]), 1), (t, row)
        assert start <= moment(row["started"]) <= moment(row["finished"]) <= end, (t, row, run.wall)
        spans.append((moment(row["started"]), moment(row["finished"])))
        if t["tenant"] == CORRUPT:
            assert t["status"] == "FAIL" and t["verify"] == "FAIL", t
            assert t["problems"] == ["verify FAILED: " + ",".join(row["failed_checks"])], t
        else:
            assert t["status"] == "PASS" and t["verify"] == "PASS" and t["rpo_seconds"] >= 0, t
    # two at a time (lifeboat_parallel's default): some verifications overlap, which one task per tenant never did
    spans.sort()
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
    failure = [r["msg"] for r in run.results if r.get("failed") and r["_task"] == "Fail when any tenant failed the drill"]
    assert failure and "1 of %d tenant(s) FAILED the drill" % len(host["tenants"]) in failure[0], failure
    assert CORRUPT in failure[0] and "take a new backup of the tenant and drill again" in failure[0]
    assert glob.glob(str(host["base"] / "reports" / "drill-*.html")) and no_scratch_left(host["pg"])
