"""After dr_restore.yml rebuilt lb-dr from the bucket (converge.yml), with the
artifacts the verifier host proved: the data,
roles and grants of the verified backup are back, the timers run again, the
rebuilt host backs up again, and the report states the RTO and each tenant's
data-loss window. Tests run in file order: the backup after the rebuild comes last.
"""

import json
import os
import re

from lbmolecule import AGENT, agent_lines, cursor, journal, sh, unit_property

BUCKET = "lifeboat-molecule"
PREFIX = "dr/"
TENANTS = ("acme", "globex", "initech", "zoo", "zoo_s")
CHECKSUMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "files", "checksums.py")


def keys(s3, prefix=PREFIX):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def state_now(dr):
    with open(CHECKSUMS) as f:
        script = f.read()
    return json.loads(sh(dr, "python3 - <<'LIFEBOAT_EOF'\n%s\nLIFEBOAT_EOF" % script).stdout)


def verified_artifact(s3, tenant):
    """The artifact named by the tenant's PASS verify record (there is one: verify.yml ran once)."""
    records = [k for k in keys(s3, PREFIX + tenant + "/") if k.endswith(".verify.json")]
    assert len(records) == 1, records
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=records[0])["Body"].read())
    assert record["status"] == "PASS" and record["verifier_host"] == "lb-dr-verifier", record
    return record["artifact"]


def test_every_table_equals_the_verified_backup(dr, verified_state):
    now = state_now(dr)
    for tenant in TENANTS:
        assert now[tenant] == verified_state[tenant], tenant
    # Not vacuous: the tables are there and hold rows.
    assert verified_state["acme"]["public.orders"].startswith("3000 ")
    assert verified_state["globex"]["globex.invoices"].startswith("250 ")
    assert verified_state["initech"]["staff"].startswith("300 ")
    # The zoo (tests/zoo), from PostgreSQL 15 onto 17: relations with odd names, sequences, large objects.
    zoo = verified_state["zoo"]
    assert len(zoo["relations"]) >= 15 and len(zoo["sequences"]) >= 3 and zoo["large_objects"], zoo
    assert any('"' in name for name in zoo["relations"]), zoo["relations"]
    assert {"citext", "hstore", "pgcrypto", "btree_gist", "uuid-ossp"} <= set(zoo["extensions"])
    assert len(verified_state["zoo_s"]["relations"]) >= 10
    assert now["zoo_roles"] == verified_state["zoo_roles"] and "zoo_owner" in now["zoo_roles"]
    # The schema tenant's artifact holds its schema only; the shared part of saas (citext, public.plans that
    # globex.invoices references, the other schema) came back from _shared_saas, restored before globex.
    assert "other.not_this_tenant" not in now["globex"]
    assert now["saas_shared"] == verified_state["saas_shared"]
    assert verified_state["saas_shared"]["public.plans"].startswith("2 ")
    assert "citext" in verified_state["saas_extensions"]
    assert now["saas_extensions"] == verified_state["saas_extensions"]


def test_the_shared_part_was_backed_up_and_restored_with_the_schema_tenant(s3, report):
    shared = [k for k in keys(s3, PREFIX + "_shared_saas/") if k.endswith(".manifest.json")]
    assert shared, "no _shared_saas artifact in the bucket"
    row = [r for r in report["rows"] if r["what"] == "tenant" and r["tenant"] == "globex"][0]
    assert "shared part" in row["message"], row


def test_roles_and_grants_are_back(dr, verified_state):
    now = state_now(dr)
    assert now["roles"] == verified_state["roles"] == ["app login=true", "reporting login=false"]
    assert now["grants"] == verified_state["grants"]
    assert "reporting SELECT orders" in now["grants"] and "reporting SELECT globex.invoices" in now["grants"]
    # The application's role owns its tables again (owners: true), as before the disaster.
    assert now["owners"] == verified_state["owners"]
    assert verified_state["owners"] == ["acme guests app", "acme orders app", "globex invoices app"]
    # The role's password came back with the globals, so the application can log in and use its tables.
    res = sh(dr, "PGPASSWORD=app-secret-in-the-globals-only psql -X -A -t -h 127.0.0.1 -U app -d acme "
                 "-c 'SELECT count(*) FROM orders'")
    assert res.stdout.strip() == "3000"


def test_the_newest_verified_artifact_was_restored_not_the_newer_unverified_one(s3, report):
    rows = dict((r["tenant"], r) for r in report["rows"] if r["what"] == "tenant")
    assert sorted(rows) == sorted(TENANTS)
    acme_artifacts = [k.rsplit("/", 1)[1] for k in keys(s3, PREFIX + "acme/") if ".pgdump" in k]
    assert len(acme_artifacts) == 2, acme_artifacts
    for tenant in TENANTS:
        assert rows[tenant]["artifact"] == verified_artifact(s3, tenant), rows[tenant]
        assert rows[tenant]["status"] == "OK", rows[tenant]
    assert rows["acme"]["artifact"] != max(acme_artifacts)


def test_the_report_gives_the_rto_and_each_data_loss_window(report):
    assert report["status"] == "OK", [r for r in report["rows"] if r["status"] != "OK"]
    assert report["incident"] <= report["started"] <= report["finished"]
    assert 0 < report["rto_seconds"] < 3600
    assert report["run_seconds"] <= report["rto_seconds"]
    for row in (r for r in report["rows"] if r["what"] == "tenant"):
        stamp = re.search(r"-(\d{8}T\d{6}Z)\.", row["artifact"]).group(1)
        assert row["snapshot"] == stamp
        # The verified backup ran minutes before the incident: a positive window, under an hour.
        assert 0 < row["rpo_seconds"] < 3600, row
    whats = [r["what"] for r in report["rows"]]
    assert "globals" in whats and whats.count("timer") == 2


def test_the_configuration_bundle_is_back_in_place(dr, report):
    conf = dr.file("/etc/acme-app/app.env")
    assert conf.exists and conf.mode == 0o600
    assert conf.content_string == "DATABASE_URL=postgresql://app@localhost/acme\nFEATURE_FLAGS=dr-scenario\n"
    row = [r for r in report["rows"] if r["what"] == "bundle"][0]
    assert row["tenant"] == "acme-config" and row["status"] == "OK", row


def test_timers_are_enabled_and_active_again(dr):
    listed = sh(dr, "systemctl list-timers --all --no-pager --no-legend 'lifeboat-*'").stdout
    for timer in ("lifeboat-backup.timer", "lifeboat-prune.timer"):
        assert dr.service(timer).is_enabled and unit_property(dr, timer, "ActiveState") == "active", timer
        assert timer in listed


def test_the_identity_never_reached_the_rebuilt_host(dr):
    pattern = "AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"
    res = sh(dr, "grep -rlE '%s' /etc /opt/lifeboat /var/lib/lifeboat /var/lib/postgresql /root /tmp /srv "
                 "2>/dev/null || true" % pattern)
    assert res.stdout.strip() == ""


def test_the_host_was_rebuilt_onto_a_newer_postgresql_from_artifacts_of_the_older(dr, s3, report):
    """Issue 17: the lost host ran Debian 12 with PostgreSQL 15; the machine it was rebuilt on runs Debian 13
    with PostgreSQL 17, and every tenant came back from artifacts taken on 15 (the checks above are the same)."""
    assert dr.file("/etc/debian_version").content_string.startswith("13"), "the rebuilt host is not trixie"
    version = sh(dr, "runuser -u postgres -- psql -X -A -t -d postgres -c 'SHOW server_version'").stdout.strip()
    assert version.startswith("17"), version
    rows = [r for r in report["rows"] if r["what"] == "tenant" and r["tenant"] != "initech"]
    assert rows and all(r["server_version"].startswith("15") for r in rows), rows
    for row in rows:
        key = "%s%s/%s-%s.manifest.json" % (PREFIX, row["tenant"], row["tenant"], row["snapshot"])
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert manifest["source"]["server_version"].startswith("15"), manifest["source"]


def test_the_artifacts_of_postgresql_15_also_verify_on_the_rebuilt_postgresql_17(dr):
    """backup_verify ran on the rebuilt host (PostgreSQL 17) for each PostgreSQL tenant, the zoo included."""
    with open(os.path.join(os.path.dirname(CHECKSUMS), "..", "..", "..", "build", "molecule", "dr",
                           "verify-on-rebuilt-host.json")) as f:
        results = json.load(f)
    by = dict((r["tenant"], r) for r in results)
    assert sorted(by) == ["acme", "globex", "zoo", "zoo_s"], results
    for tenant, r in by.items():
        checks = dict((c["name"], c["status"]) for c in r["checks"])
        assert r["status"] == "PASS" and checks["restore"] == "PASS" and checks["row_counts"] == "PASS", (tenant, r)


def test_the_rebuilt_host_backs_up_again(dr, s3):
    before = set(keys(s3))
    start = cursor(dr)
    sh(dr, "systemctl start lifeboat-backup.service")
    assert unit_property(dr, "lifeboat-backup.service", "Result") == "success"
    lines = [x for x in agent_lines(journal(dr, "lifeboat-backup.service", start), "backup") if "tenant" in x]
    by = dict((x["tenant"], x) for x in lines)
    for tenant in TENANTS:
        assert by[tenant]["status"] == "ok", lines
    new = set(keys(s3)) - before
    for tenant in TENANTS:
        assert any(k.startswith(PREFIX + tenant + "/") and k.endswith(".manifest.json") for k in new), tenant
    out = sh(dr, "%s status" % AGENT).stdout
    assert all(any(line.startswith(t + " ") for line in out.splitlines()) for t in TENANTS), out
