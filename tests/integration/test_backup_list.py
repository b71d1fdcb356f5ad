"""playbooks/backup.yml with 200 tenants on one host: one pg_backup call per chunk (tenants), not one task per
tenant, and the report as before: one row per tenant, a failed tenant says what a single call says."""

import glob
import json
import os
import sqlite3
import subprocess

import pytest

import lbtest
import saas
from lifeboat_engine import backup
from lifeboat_engine.errors import LifeboatError

DATABASES = 40  # database tenants (one of them gone)
SCHEMAS = {"blsaas": 100, "blshop": 50}  # schema tenants of two databases
SQLITE = 10
TASK = "Back up this host's tenants"


def _play(base, pg, keys, tenants):
    inv = lbtest.write_fleet_inventory(base, "inv", tenants, {
        "lifeboat_repository": str(base / "repository"),
        "lifeboat_recipients": [keys["public"]],
        "lifeboat_report_dir": str(base / "reports"),
        "lifeboat_connection": pg.login,
    })
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inv), str(lbtest.ROOT / "playbooks" / "backup.yml")]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=str(lbtest.ROOT),
                          env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}))
    return proc, json.loads(proc.stdout[proc.stdout.index("{"):])


@pytest.fixture(scope="module")
def host(pg, keys, tmp_path_factory):
    """200 small tenants: 40 databases (one of them dropped: its backup fails), 150 schema tenants of two
    databases, 10 SQLite files; backed up once by backup.yml."""
    base = tmp_path_factory.mktemp("list")
    with pg.connect() as conn:
        conn.execute("CREATE DATABASE bltmpl")
    with pg.connect("bltmpl") as conn:
        conn.execute("CREATE TABLE guests (id serial PRIMARY KEY, name text); "
                     "INSERT INTO guests (name) SELECT 'Guest ' || i FROM generate_series(1, 20) i")
    dbs = ["bldb%02d" % i for i in range(DATABASES)]
    with pg.connect() as conn:
        for name in dbs:
            conn.execute("CREATE DATABASE %s TEMPLATE bltmpl" % name)
        conn.execute("DROP DATABASE bldb07")  # gone since the inventory was written
    tenants = [{"name": name, "engine": "postgresql", "database": name} for name in dbs]
    for db, count in SCHEMAS.items():
        schemas = ["%s_t%02d" % (db[2:], i) for i in range(count)]
        pg.psql("CREATE DATABASE %s" % db)
        pg.psql(saas.SHARED, db=db)
        pg.psql("".join("CREATE SCHEMA %s; CREATE TABLE %s.notes (id int PRIMARY KEY, body text); "
                        "INSERT INTO %s.notes VALUES (1, 'x');" % (s, s, s) for s in schemas), db=db)
        tenants += [{"name": s, "database": db, "schema": s} for s in schemas]
    for i in range(SQLITE):
        path = str(base / ("bllite%d.db" % i))
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t (v) VALUES ('x')")
        conn.commit()
        conn.close()
        tenants.append({"name": "bllite%d" % i, "engine": "sqlite", "path": path})
    # interleaved, as an inventory grows: the schema tenants of a database need not be listed together
    tenants = tenants[::2] + tenants[1::2]
    assert len(tenants) == 200
    proc, data = _play(base, pg, keys, tenants)
    yield {"base": base, "proc": proc, "data": data, "pg": pg, "keys": keys, "tenants": tenants}
    with pg.connect() as conn:
        for db in ["bltmpl"] + dbs + list(SCHEMAS):
            conn.execute("DROP DATABASE IF EXISTS %s" % db)


def test_200_tenants_one_call_per_chunk_one_row_each_and_the_failed_one_as_before(host):
    proc, data = host["proc"], host["data"]
    assert proc.returncode != 0, proc.stdout[-3000:]
    calls = [task for play in data["plays"] for task in play["tasks"] if task["task"]["name"].startswith(TASK)]
    assert len(calls) == 1, [t["task"]["name"] for play in data["plays"] for t in play["tasks"]]
    chunks = calls[0]["hosts"]["localhost"]["results"]
    # default lifeboat_batch_size 50: blsaas's 100 schema tenants are one pass, so one chunk (a database's schema
    # tenants are never split); then blshop's 50; then the 50 others
    assert [len(c["item"]["tenants"]) for c in chunks] == [100, 50, 50], [c["item"]["first"] for c in chunks]
    assert [c["_ansible_item_label"] for c in chunks] == ["tenants 1-100 of 200", "tenants 101-150 of 200",
                                                          "tenants 151-200 of 200"]
    assert not any(t["task"]["name"].startswith("Back up each other tenant") or "in one pass" in t["task"]["name"]
                   for play in data["plays"] for t in play["tasks"])

    report = json.load(open(sorted(glob.glob(str(host["base"] / "reports" / "backup-*.json")))[-1]))
    rows = report["rows"]
    assert sorted(report) == ["finished", "kind", "rows", "started", "status"]
    assert all(sorted(r) == ["artifact", "host", "message", "seconds", "size", "size_bytes", "status", "tenant"]
               for r in rows), rows[0]
    names = [t["name"] for t in host["tenants"]]
    assert sorted(r["tenant"] for r in rows) == sorted(names + ["_shared_blsaas", "_shared_blshop", "(roles and grants)"])
    assert report["status"] == "FAILED"
    failed = [r for r in rows if r["status"] != "OK"]
    assert [r["tenant"] for r in failed] == ["bldb07"], failed
    # the failed tenant says what a single pg_backup call says (what backup.yml reported before)
    with pytest.raises(LifeboatError) as single:
        backup.run(dict(host["pg"].login, tenant="bldb07", database="bldb07", repository=str(host["base"] / "r1"),
                        recipients=[host["keys"]["public"]]))
    assert failed[0]["message"] == single.value.msg and "bldb07" in failed[0]["message"], failed[0]
    assert failed[0]["artifact"] == "" and failed[0]["seconds"] == "" and failed[0]["size_bytes"] is None
    for r in rows:
        if r["status"] == "OK" and r["tenant"] != "(roles and grants)":
            assert r["size_bytes"] > 0 and r["message"] == "" and isinstance(r["seconds"], float), r
            assert os.path.isfile(str(host["base"] / "repository" / r["tenant"] / r["artifact"])), r
    # the final message, as before: which failed, how many others are done, and how to re-run them only
    msgs = [res.get("msg", "") for play in data["plays"] for t in play["tasks"] for res in t["hosts"].values()
            if res.get("failed") and not res.get("ignore_errors") and t["task"]["name"].startswith("Fail when")]
    assert len(msgs) == 1, proc.stdout[-2000:]
    text = " ".join(msgs[0].split())
    assert text.startswith("1 of 203 backup(s) FAILED: localhost/bldb07: ") and "202 other backup(s) are done." in text
    assert text.endswith("--limit localhost -e tenants=bldb07."), text
