"""dr_restore.yml restores a host's tenants with one backup_restore call per chunk, two at a time
(issue 20): 29 tenants (database tenants, the schema tenants of two databases that share tables and
extensions as tests/saas.py builds them, a SQLite file), one whose artifact the host cannot take
(refused by the check before the restore) and one whose artifact is damaged (its restore fails).
Their rows are FAILED as with one task per tenant; every other tenant is restored equal to its
source; each database's shared part is restored once, by the first of its tenants, before the
others start. Real ansible-playbook, real PostgreSQL, a local repository."""

import json
import os
import subprocess

import pytest

import lbtest
import saas
from lifeboat_engine import backup, backup_pass, batch

DATABASES = ["rl%02d" % i for i in range(12)] + ["rlrefused", "rlbroken"]
SCHEMAS = {"rlsaas_a": ["rla%d" % i for i in range(1, 9)], "rlsaas_b": ["rlb%d" % i for i in range(1, 7)]}


def playbook(inventory, *extra):
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inventory), str(lbtest.ROOT / "playbooks" / "dr_restore.yml")]
    proc = subprocess.run(argv + list(extra), capture_output=True, text=True, check=False, cwd=str(lbtest.ROOT),
                          env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}))
    return proc, json.loads(proc.stdout[proc.stdout.index("{"):])


def task_results(data, prefix):
    return [r for play in data["plays"] for t in play["tasks"] if t["task"]["name"].startswith(prefix)
            for r in t["hosts"].values()]


def drop_all(pg):
    with pg.connect() as conn:
        for db in DATABASES + list(SCHEMAS):
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


@pytest.fixture(scope="module")
def lost_host(pg, keys, tmp_path_factory):
    """29 tenants backed up into a local repository, their checksums, then every one of them lost."""
    base = tmp_path_factory.mktemp("rl")
    repo = str(base / "repository")
    drop_all(pg)
    common = dict(pg.login, repository=repo, recipients=[keys["public"]])
    sums = {}
    with pg.connect() as conn:
        for db in DATABASES:
            conn.execute("CREATE DATABASE %s" % db)
    for i, db in enumerate(DATABASES):
        with pg.connect(db) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5((g + %d)::text) "
                         "FROM generate_series(1, 300) g" % i)
            sums[db] = lbtest.table_checksums(conn)
    # the database tenants' backups two at a time (batch.py's workers around the single backup)
    done = batch.run(backup.run, [(db, dict(common, tenant=db)) for db in DATABASES], parallel=2)
    assert not [r for r in done if r["failed"]], done
    arts = dict((r["tenant"], r) for r in done)
    for db, schemas in SCHEMAS.items():
        saas.build(pg, db=db, tenants=schemas, rows=8)
        res = backup_pass.run(dict(common, database=db, schemas=[{"tenant": s} for s in schemas]))
        assert not res["failed_tenants"], res
        with pg.connect(db) as conn:
            for s in schemas + ["public", "audit"]:
                sums[(db, s)] = lbtest.table_checksums(conn, s)
    lite = base / "rllite.db"
    lbtest.sqlite_guests(lite, 50)
    backup.run(dict(repository=repo, recipients=[keys["public"]], tenant="rllite", engine="sqlite", path=str(lite)))
    sums["rllite"] = lbtest.sqlite_checksums(str(lite))
    # rlrefused needs an extension this server lacks (its manifest says so): the check before the restore refuses it
    with open(arts["rlrefused"]["manifest"]) as f:
        doc = json.load(f)
    doc["source"]["extensions"].append({"name": "lb_not_on_this_host", "version": "1.0"})
    with open(arts["rlrefused"]["manifest"], "w") as f:
        json.dump(doc, f)
    # rlbroken's stored bytes are damaged (same size): the check passes, its restore fails
    with open(arts["rlbroken"]["artifact"], "r+b") as f:
        f.seek(os.path.getsize(arts["rlbroken"]["artifact"]) // 2)
        f.write(b"\0" * 32)
    # the host's tenants, each database's schema tenants among the others (dr_chunks keeps them in one chunk)
    singles = [{"name": db, "database": db} for db in DATABASES]
    singles.append({"name": "rllite", "engine": "sqlite", "path": str(lite)})
    schema_tenants = [{"name": s, "database": db, "schema": s} for db, schemas in SCHEMAS.items() for s in schemas]
    tenants = [t for pair in zip(singles, schema_tenants) for t in pair] + singles[len(schema_tenants):] \
        + schema_tenants[len(singles):]
    assert len(tenants) == 29
    drop_all(pg)
    os.unlink(str(lite))
    inv = lbtest.write_fleet_inventory(base, "inv", tenants, {
        "lifeboat_repository": repo, "lifeboat_identity_file": keys["identity"], "lifeboat_recipients": [keys["public"]],
        "lifeboat_report_dir": str(base / "reports"), "lifeboat_connection": pg.login})
    yield {"base": base, "inv": inv, "sums": sums, "lite": lite, "tenants": tenants}
    drop_all(pg)


def test_dr_restore_restores_the_tenants_in_chunks_in_parallel_and_reports_each_as_before(pg, lost_host):
    h = lost_host
    proc, data = playbook(h["inv"], "-e", "dr_hosts=localhost", "-e", "dr_provision=false", "-e", "dr_enable_timers=false",
                          "-e", "dr_allow_unverified=true", "-e", "dr_restore_globals=false",
                          "-e", "lifeboat_batch_size=20", "-e", "lifeboat_parallel=2")
    assert proc.returncode != 0, proc.stdout[-3000:]
    report = json.load(open(sorted((h["base"] / "reports").glob("dr_restore-*.json"))[-1]))
    rows = dict((r["tenant"], r) for r in report["rows"] if r["what"] == "tenant")
    assert sorted(rows) == sorted(t["name"] for t in h["tenants"])
    refused, broken = rows.pop("rlrefused"), rows.pop("rlbroken")
    assert refused["status"] == "FAILED" and "needs the extension lb_not_on_this_host" in refused["message"], refused
    assert "Nothing was changed" in refused["message"] and refused["artifact"].startswith("rlrefused-"), refused
    assert broken["status"] == "FAILED" and "modified after it was written" in broken["message"], broken
    assert "No database 'rlbroken' was created" in broken["message"], broken
    for name in ("rlrefused", "rlbroken"):
        assert pg.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % name) == "0"
    assert all(r["status"] == "OK" for r in rows.values()), [r for r in rows.values() if r["status"] != "OK"]
    # each equal to its source
    for db in DATABASES[:12]:
        with pg.connect(db) as conn:
            assert lbtest.table_checksums(conn) == h["sums"][db], db
    for db, schemas in SCHEMAS.items():
        with pg.connect(db) as conn:
            for s in schemas + ["public", "audit"]:
                assert lbtest.table_checksums(conn, s) == h["sums"][(db, s)], (db, s)
        # the shared part restored once, by the first of the database's tenants, the others after it
        first = [s for s in schemas if "the shared part" in rows[s]["message"]]
        assert first == [schemas[0]], [(s, rows[s]["message"]) for s in schemas]
    assert lbtest.sqlite_checksums(str(h["lite"])) == h["sums"]["rllite"]
    # one backup_restore call per chunk (two chunks of 20 at most), each schema database in one chunk
    checks = task_results(data, "Check, before anything is restored")[0]["results"]
    restores = task_results(data, "Restore each tenant")[0]["results"]
    assert [c["item"]["label"] for c in checks] == ["tenants 1-17 of 29", "tenants 18-29 of 29"], checks
    assert [len(c["rows"]) for c in checks] == [17, 12] and len(restores) == 2, [r.get("msg") for r in restores]
    assert sum(len(r["rows"]) for r in restores) == 28  # all but the refused one
    for r in restores:
        named = [row["tenant"] for row in r["rows"]]
        for schemas in SCHEMAS.values():
            assert not set(schemas) & set(named) or set(schemas) <= set(named), named
    # within a chunk, two restores at a time: some rows overlap in time
    spans = sorted((row["started"], row["finished"]) for r in restores for row in r["rows"])
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
    # the RTO per phase, with the tenants the restore phase restored
    phases = report["rto_phases"][0]
    assert phases["host"] == "localhost" and phases["tenants"] == 29 and phases["tenants_restored"] == 27, phases
    assert [pair[0] for pair in phases["seconds"]] == ["provisioning", "selection", "restore", "migrations",
                                                       "health checks", "timers"], phases
    assert "restore %.1f s" % dict(phases["seconds"])["restore"] in proc.stdout
    assert "the restore phase restored 27 of 29 tenant(s), 2 at a time" in proc.stdout
    failed = [r["msg"] for r in task_results(data, "Fail when anything was not restored")]
    assert failed and "2 of " in failed[0] and "rlrefused" in failed[0] and "rlbroken" in failed[0], failed
    print("dr_restore, 29 tenants in 2 chunks: restore phase %.1f s" % dict(phases["seconds"])["restore"])


def test_a_bad_list_is_refused_before_anything_runs(pg, lost_host):
    res = lbtest.run_module("backup_restore", dict(pg.login, repository=str(lost_host["base"] / "repository"),
                                                   identity_file="/nonexistent", force=True,
                                                   tenants=[{"tenant": "rl00"}, {"tenant": "rl01", "scheme": "x"}]))
    assert res.get("failed") and res["option"] == "tenants[1].scheme" and "Nothing was done" in res["msg"], res
    assert "rows" not in res
