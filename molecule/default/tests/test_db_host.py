"""The database host, checked as a running system: timers, units, a real
backup through systemd, its artifacts (decrypted on the controller with the
identity that never left it), metrics, rotation, anonymization, the host
lock, a failing run and its OnFailure alert, and no identity on the host.

The tests run in file order: the failing run comes last but one.
"""

import json
import os
import re
import subprocess
import time

from lbmolecule import AGENT, agent_lines, cursor, journal, journal_json, metrics, podman_cp, sh, unit_property, wait_for

TENANTS = ["acme", "globex", "initech"]
GLOBALS = "_globals_lb-db"
SHARED = "_shared_saas"  # the shared part of saas, backed up with its schema tenant globex
REPO = "/var/backups/lifeboat"
METRICS = "/var/lib/prometheus/node-exporter"
TIMERS = ["lifeboat-backup.timer", "lifeboat-prune.timer", "lifeboat-anonymize.timer"]
SERVICES = ["lifeboat-backup.service", "lifeboat-prune.service", "lifeboat-anonymize.service"]
IDENTITY_RE = "AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"
SEARCHED = "/etc /opt/lifeboat /var/lib/lifeboat /var/lib/postgresql /root /tmp /run"


def psql(db, sql, dbname="acme"):
    return sh(db, "runuser -u postgres -- psql -X -At -d %s -c %s" % (dbname, json.dumps(sql))).stdout.strip()


def test_timers_are_enabled_active_and_listed(db):
    listed = sh(db, "systemctl list-timers --all --no-pager --no-legend 'lifeboat-*'").stdout
    for timer in TIMERS:
        assert db.service(timer).is_enabled, timer
        assert unit_property(db, timer, "ActiveState") == "active", timer
        line = [x for x in listed.splitlines() if timer in x]
        assert line and not line[0].startswith("n/a"), "no next elapse for %s in:\n%s" % (timer, listed)
        assert unit_property(db, timer, "Persistent") == "yes"
        assert unit_property(db, timer, "RandomizedDelayUSec") not in ("0", "")
    assert "03:00:00" in unit_property(db, "lifeboat-backup.timer", "TimersCalendar")


def test_units_pass_systemd_analyze_verify(db):
    units = ["/etc/systemd/system/%s" % u for u in SERVICES + TIMERS] + ["lifeboat-alert@lifeboat-backup.service.service"]
    res = sh(db, "systemd-analyze verify %s" % " ".join(units), ok=False)
    assert res.rc == 0, res.stderr
    noise = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert noise == [], "systemd-analyze verify is not clean:\n%s" % "\n".join(noise)


def test_services_are_hardened_oneshots_that_alert_on_failure(db):
    for unit in SERVICES:
        assert unit_property(db, unit, "Type") == "oneshot"
        assert unit_property(db, unit, "User") == "postgres"
        assert unit_property(db, unit, "NoNewPrivileges") == "yes"
        assert unit_property(db, unit, "ProtectSystem") == "strict"
        assert unit_property(db, unit, "PrivateTmp") == "yes"
        assert unit_property(db, unit, "OnFailure") == "lifeboat-alert@%s.service" % unit
        assert "LoadCredential" not in sh(db, "systemctl cat %s" % unit).stdout
    assert REPO in unit_property(db, "lifeboat-backup.service", "ReadWritePaths")
    exposure = sh(db, "systemd-analyze security --no-pager lifeboat-backup.service", ok=False).stdout
    score = re.search(r"Overall exposure level for lifeboat-backup.service: ([0-9.]+)", exposure)
    assert score and float(score.group(1)) <= 5.0, exposure[-400:]


def test_configuration_is_private_and_valid(db):
    for path in ("/etc/lifeboat/lifeboat.yml", "/etc/lifeboat/tenants.env", "/etc/lifeboat/lifeboat.d/00-agent.yml",
                 "/etc/lifeboat/lifeboat.d/50-anonymize.yml"):
        f = db.file(path)
        assert f.user == "root" and f.group == "postgres" and f.mode == 0o640, path
    env = db.file("/etc/lifeboat/tenants.env").content_string
    assert 'TENANTS="acme globex initech"' in env and 'PII_DAYS="30"' in env
    out = sh(db, "%s check-config" % AGENT).stdout
    assert "initech: sqlite /srv/app/initech.db" in out and "globex: postgresql saas.globex" in out
    repo = db.file(REPO)
    assert repo.is_directory and repo.mode == 0o700 and repo.user == "postgres"


def test_backup_service_succeeds_and_leaves_complete_artifacts(db, tmp_path):
    start = cursor(db)
    sh(db, "systemctl start lifeboat-backup.service")
    assert unit_property(db, "lifeboat-backup.service", "Result") == "success"
    assert unit_property(db, "lifeboat-backup.service", "ExecMainStatus") == "0"
    lines = agent_lines(journal(db, "lifeboat-backup.service", start), "backup")
    per_tenant = dict((x["tenant"], x) for x in lines if "tenant" in x)
    assert sorted(per_tenant) == sorted(TENANTS + [GLOBALS, SHARED])
    assert all(x["status"] == "ok" for x in per_tenant.values()), lines
    assert per_tenant[SHARED]["artifact"].startswith("%s/%s/%s-" % (REPO, SHARED, SHARED))
    assert [x for x in lines if x.get("event") == "done"][0]["failed"] == "0"
    identity = os.environ["LIFEBOAT_MOLECULE_IDENTITY"]
    for tenant in TENANTS + [GLOBALS]:
        folder = db.file("%s/%s" % (REPO, tenant))
        assert folder.mode == 0o700 and folder.user == "postgres"
        path = per_tenant[tenant]["artifact"]
        assert path.startswith("%s/%s/%s-" % (REPO, tenant, tenant)), path
        manifest = db.file(re.sub(r"\.(pgdump|sqlite|globals)(\.zst)?(\.age)?$", ".manifest.json", path))
        assert manifest.exists and manifest.mode == 0o600, manifest.path
        doc = json.loads(manifest.content_string)
        artifact = db.file(path)
        assert doc["artifact"] == path.rsplit("/", 1)[1]
        assert artifact.exists and artifact.mode == 0o600 and artifact.size == doc["size"]["stored"]
        assert doc["encryption"]["recipients"] == [os.environ["LIFEBOAT_MOLECULE_RECIPIENT"]]
        local = podman_cp("lb-db", artifact.path, str(tmp_path / doc["artifact"]))
        plain = str(tmp_path / (tenant + ".plain"))
        subprocess.run("age -d -i %s %s | zstd -d -q -o %s" % (identity, local, plain), shell=True, check=True)
        if doc["format"] == "pgdump":
            listing = subprocess.run(["pg_restore", "-l", plain], capture_output=True, text=True, check=True).stdout
            assert "TABLE DATA" in listing
        elif doc["format"] == "sqlite":
            count = subprocess.run(["sqlite3", plain, "SELECT count(*) FROM staff"], capture_output=True, text=True,
                                   check=True).stdout.strip()
            assert count == "300"
        else:
            assert b"CREATE ROLE app" in open(plain, "rb").read()
        if tenant == "acme":
            assert doc["row_counts"] == {"public.guests": 100, "public.orders": 1000}
        if tenant == "globex":
            assert doc["row_counts"] == {"globex.invoices": 250}
            assert doc["shared"]["tenant"] == SHARED and per_tenant[SHARED]["artifact"].endswith(
                doc["shared"]["artifact"])


def test_metrics_are_written_for_node_exporter(db):
    f = db.file("%s/lifeboat_backup.prom" % METRICS)
    assert f.mode == 0o644
    m = metrics(db, f.path)
    now = time.time()
    for tenant in TENANTS + [GLOBALS]:
        label = '{tenant="%s"}' % tenant
        assert m[("lifeboat_backup_status", label)] == 1
        assert now - m[("lifeboat_backup_last_success_timestamp_seconds", label)] < 900
        assert m[("lifeboat_backup_size_bytes", label)] > 0
        assert m[("lifeboat_backup_duration_seconds", label)] > 0
    assert m[("lifeboat_backup_tenants", '{status="failed"}')] == 0
    assert not [n for n in sh(db, "ls -a %s" % METRICS).stdout.split() if n.endswith(".tmp")]


def test_status_shows_every_tenant_within_its_rpo(db):
    out = sh(db, "%s status" % AGENT).stdout
    for tenant in TENANTS + [GLOBALS]:
        row = [line for line in out.splitlines() if line.startswith(tenant + " ")]
        assert row and "OK (26h00m)" in row[0] and "never" in row[0], out
    data = json.loads(sh(db, "%s status --json" % AGENT).stdout)
    assert data["problems"] == 0 and len(data["tenants"]) == 4


def test_a_second_run_exits_with_a_clear_message_while_the_lock_is_held(db):
    holder = ("from lifeboat_engine.locking import FileLock; import time; "
              "FileLock('/var/lib/lifeboat/agent.lock', 'lifeboat backup (test holder)').acquire(); time.sleep(60)")
    sh(db, "systemd-run --unit lb-lock-holder --uid postgres --collect /opt/lifeboat/venv/bin/python -c \"%s\"" % holder)
    try:
        wait_for(lambda: "test holder" in db.file("/var/lib/lifeboat/agent.lock").content_string, 15, "the lock holder")
        res = sh(db, "runuser -u postgres -- %s backup --wait 1" % AGENT, ok=False)
        assert res.rc == 75, (res.stdout, res.stderr)
        assert "Another lifeboat run holds the host lock" in res.stdout and "test holder" in res.stdout
        assert "after waiting 1s" in res.stdout
    finally:
        sh(db, "systemctl stop lb-lock-holder.service", ok=False)


def test_prune_service_rotates(db):
    start = cursor(db)
    sh(db, "systemctl start lifeboat-prune.service")
    assert unit_property(db, "lifeboat-prune.service", "Result") == "success"
    lines = [x for x in agent_lines(journal(db, "lifeboat-prune.service", start), "prune") if "tenant" in x]
    assert sorted(x["tenant"] for x in lines) == sorted(TENANTS + [GLOBALS, SHARED])
    assert all(x["status"] == "ok" and int(x["kept"]) >= 1 for x in lines), lines
    m = metrics(db, "%s/lifeboat_prune.prom" % METRICS)
    assert m[("lifeboat_prune_status", '{tenant="acme"}')] == 1


def test_anonymize_service_scrubs_rows_older_than_pii_days(db):
    start = cursor(db)
    sh(db, "systemctl start lifeboat-anonymize.service")
    assert unit_property(db, "lifeboat-anonymize.service", "Result") == "success"
    lines = [x for x in agent_lines(journal(db, "lifeboat-anonymize.service", start), "anonymize") if "tenant" in x]
    by = dict((x["tenant"], x) for x in lines)
    assert by["acme"]["status"] == "ok" and int(by["acme"]["rows_scrubbed"]) >= 69
    assert by["globex"]["status"] == "skipped" and by["initech"]["status"] == "skipped"
    old_left = psql(db, "SELECT count(*) FROM guests WHERE checked_out_at < now() - interval '31 days' AND email IS NOT NULL")
    recent = psql(db, "SELECT count(*) FROM guests WHERE checked_out_at > now() - interval '29 days' AND email LIKE 'guest%'")
    assert old_left == "0" and recent == "28"
    m = metrics(db, "%s/lifeboat_anonymize.prom" % METRICS)
    assert m[("lifeboat_anonymize_rows_scrubbed", '{tenant="acme"}')] >= 69


def test_a_failing_run_fails_the_unit_and_triggers_the_on_failure_alert(db):
    before = metrics(db, "%s/lifeboat_backup.prom" % METRICS)
    start = cursor(db)
    sh(db, "systemctl stop postgresql@15-main.service")
    try:
        res = sh(db, "systemctl start lifeboat-backup.service", ok=False)
        assert res.rc != 0
        assert unit_property(db, "lifeboat-backup.service", "Result") == "exit-code"
        assert unit_property(db, "lifeboat-backup.service", "ExecMainStatus") == "1"
        alerts = wait_for(lambda: db.file("/var/lib/lifeboat-alerts/failures").exists
                          and db.file("/var/lib/lifeboat-alerts/failures").content_string, 30, "the OnFailure alert")
        assert "lifeboat-backup.service" in alerts
        alert_unit = "lifeboat-alert@lifeboat-backup.service.service"
        wait_for(lambda: unit_property(db, alert_unit, "Result") == "success", 15, "the alert unit to finish")
        assert "status=failed" in db.file("/var/lib/lifeboat-alerts/journal").content_string
        failed = [e for e in journal_json(db, "lifeboat-backup.service")
                  if "tenant=acme status=failed" in str(e.get("MESSAGE"))]
        assert failed and failed[-1]["PRIORITY"] == "3"
        lines = agent_lines(journal(db, "lifeboat-backup.service", start), "backup")
        by = dict((x["tenant"], x) for x in lines if "tenant" in x)
        assert by["acme"]["status"] == "failed" and by["acme"]["error"]
        assert by["initech"]["status"] == "ok", "a SQLite tenant does not need the server"
        after = metrics(db, "%s/lifeboat_backup.prom" % METRICS)
        assert after[("lifeboat_backup_status", '{tenant="acme"}')] == 0
        assert after[("lifeboat_backup_status", '{tenant="initech"}')] == 1
        key = ("lifeboat_backup_last_success_timestamp_seconds", '{tenant="acme"}')
        assert after[key] == before[key], "a failed run keeps the last success"
        assert after[("lifeboat_backup_tenants", '{status="failed"}')] >= 2
    finally:
        sh(db, "systemctl start postgresql@15-main.service")


def test_the_database_host_holds_no_identity(db):
    res = sh(db, "grep -rlsE -D skip '%s' $(ls -d %s /var/backups /srv 2>/dev/null)" % (IDENTITY_RE, SEARCHED), ok=False)
    assert res.stdout == "", "an age identity was found on the database host: %s" % res.stdout
    assert not db.file("/etc/lifeboat/credentials").exists
    recipients = [line for line in db.file("/etc/lifeboat/recipients.txt").content_string.splitlines()
                  if line and not line.startswith("#")]
    assert recipients == [os.environ["LIFEBOAT_MOLECULE_RECIPIENT"]]
    env = unit_property(db, "lifeboat-backup.service", "Environment")
    assert "BACKUP_PRIVATE_KEY" not in env
