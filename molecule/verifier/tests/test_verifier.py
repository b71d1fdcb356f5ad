"""A database host backing up to S3 and a verifier host proving the backups
by restoring them, checked as running systems; the bucket's lifecycle comes
from the same retention numbers as rotation. Tests run in file order: the
tampering test comes last.
"""

import json
import time

from lbmolecule import AGENT, agent_lines, cursor, journal, metrics, sh, unit_property, wait_for

BUCKET = "lifeboat-molecule"
PREFIX = "db2/"
IDENTITY_RE = "AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"
SEARCHED = "/etc /opt/lifeboat /var/lib/lifeboat /var/lib/postgresql /root /tmp /run"
CREDENTIAL = "/etc/lifeboat/credentials/age-identity"


def keys(s3, prefix=PREFIX):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_bucket_lifecycle_comes_from_the_retention_numbers(s3):
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    rule = [r for r in rules if r["ID"] == "lifeboat-retention"][0]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"].get("Prefix", rule.get("Prefix")) == PREFIX
    # Prune deletes current artifacts (it knows each tenant's newest complete and verified one; S3 does not):
    # no expiration of current versions unless bucket_expire_current (then 12 * 31 = 372 days + 30).
    assert "Expiration" not in rule
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values())


def test_timers_are_enabled_and_active_on_both_hosts(db2, verifier):
    for h, timers in ((db2, ["lifeboat-backup.timer", "lifeboat-prune.timer"]), (verifier, ["lifeboat-verify.timer"])):
        listed = sh(h, "systemctl list-timers --all --no-pager --no-legend 'lifeboat-*'").stdout
        for timer in timers:
            assert h.service(timer).is_enabled and unit_property(h, timer, "ActiveState") == "active", timer
            assert timer in listed
    assert not verifier.file("/etc/systemd/system/lifeboat-backup.service").exists
    assert not db2.file("/etc/systemd/system/lifeboat-verify.service").exists
    assert "Sun" in unit_property(verifier, "lifeboat-verify.timer", "TimersCalendar")


def test_units_pass_systemd_analyze_verify(db2, verifier):
    for h, units in ((db2, ["lifeboat-backup.service", "lifeboat-backup.timer", "lifeboat-prune.service",
                            "lifeboat-prune.timer"]),
                     (verifier, ["lifeboat-verify.service", "lifeboat-verify.timer"])):
        res = sh(h, "systemd-analyze verify %s" % " ".join("/etc/systemd/system/" + u for u in units), ok=False)
        noise = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
        assert res.rc == 0 and noise == [], "\n".join(noise)


def test_the_identity_is_root_only_on_the_verifier_and_absent_from_the_database_host(db2, verifier):
    cred = verifier.file(CREDENTIAL)
    assert cred.user == "root" and cred.mode == 0o600
    assert verifier.file("/etc/lifeboat/credentials").mode == 0o700
    assert sh(verifier, "runuser -u postgres -- cat %s" % CREDENTIAL, ok=False).rc != 0
    unit = sh(verifier, "systemctl cat lifeboat-verify.service").stdout
    assert "LoadCredential=age-identity:%s" % CREDENTIAL in unit
    for prop in ("Environment", "ExecStart"):
        assert "AGE-SECRET-KEY" not in unit_property(verifier, "lifeboat-verify.service", prop)
    found = sh(db2, "grep -rlsE -D skip '%s' $(ls -d %s 2>/dev/null)" % (IDENTITY_RE, SEARCHED), ok=False)
    assert found.stdout == "", found.stdout
    found = sh(verifier, "grep -rlsE -D skip '%s' $(ls -d %s 2>/dev/null)" % (IDENTITY_RE, SEARCHED), ok=False)
    assert found.stdout.split() == [CREDENTIAL]


def test_backup_to_s3_leaves_complete_artifacts(db2, s3):
    start = cursor(db2)
    sh(db2, "systemctl start lifeboat-backup.service")
    assert unit_property(db2, "lifeboat-backup.service", "Result") == "success"
    lines = [x for x in agent_lines(journal(db2, "lifeboat-backup.service", start), "backup") if "tenant" in x]
    assert sorted(x["tenant"] for x in lines) == ["_globals_lb-db2", "acme"]
    assert all(x["status"] == "ok" for x in lines), lines
    names = keys(s3)
    for tenant in ("acme", "_globals_lb-db2"):
        manifests = [k for k in names if k.startswith(PREFIX + tenant + "/") and k.endswith(".manifest.json")]
        assert len(manifests) == 1, names
        doc = json.loads(s3.get_object(Bucket=BUCKET, Key=manifests[0])["Body"].read())
        head = s3.head_object(Bucket=BUCKET, Key=PREFIX + tenant + "/" + doc["artifact"])
        assert head["ContentLength"] == doc["size"]["stored"]
    m = metrics(db2, "/var/lib/prometheus/node-exporter/lifeboat_backup.prom")
    assert m[("lifeboat_backup_status", '{tenant="acme"}')] == 1


def test_verify_service_restores_each_artifact_with_the_credential(verifier, s3):
    start = cursor(verifier)
    sh(verifier, "systemctl start lifeboat-verify.service")
    assert unit_property(verifier, "lifeboat-verify.service", "Result") == "success"
    every = agent_lines(journal(verifier, "lifeboat-verify.service", start), "verify")
    assert every[0]["event"] == "start" and every[0]["identity"] == "credential", every[0]
    lines = [x for x in every if "tenant" in x]
    by = dict((x["tenant"], x) for x in lines)
    assert by["acme"]["status"] == "ok" and by["acme"]["result"] == "PASS", lines
    records = [k for k in keys(s3) if k.endswith(".verify.json")]
    acme = [k for k in records if k.startswith(PREFIX + "acme/")]
    assert len(acme) == 1, records
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=acme[0])["Body"].read())
    assert record["status"] == "PASS" and record["verifier_host"] == "lb-verifier"
    text = " ".join(journal(verifier, "lifeboat-verify.service"))
    assert "AGE-SECRET-KEY" not in text
    m = metrics(verifier, "/var/lib/prometheus/node-exporter/lifeboat_verify.prom")
    assert m[("lifeboat_verify_status", '{tenant="acme"}')] == 1
    # No credential survives the run.
    assert sh(verifier, "ls /run/credentials/lifeboat-verify.service 2>/dev/null | wc -l").stdout.strip() == "0"


def test_status_on_both_hosts_shows_the_verification(db2, verifier):
    for h in (db2, verifier):
        out = sh(h, "%s status" % AGENT).stdout
        row = [line for line in out.splitlines() if line.startswith("acme ")]
        assert row and "OK (26h00m)" in row[0] and "PASS" in row[0], out


def test_a_tampered_artifact_fails_verification_and_alerts(verifier, s3):
    artifact = [k for k in keys(s3, PREFIX + "acme/") if ".pgdump" in k][0]
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=artifact)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=artifact, Body=bytes(body))
    start = cursor(verifier)
    res = sh(verifier, "systemctl start lifeboat-verify.service", ok=False)
    assert res.rc != 0
    assert unit_property(verifier, "lifeboat-verify.service", "Result") == "exit-code"
    lines = [x for x in agent_lines(journal(verifier, "lifeboat-verify.service", start), "verify") if "tenant" in x]
    acme = [x for x in lines if x["tenant"] == "acme"][0]
    assert acme["status"] == "failed" and "FAIL" in acme["error"], acme
    alerts = wait_for(lambda: verifier.file("/var/lib/lifeboat-alerts/failures").exists
                      and verifier.file("/var/lib/lifeboat-alerts/failures").content_string, 30, "the OnFailure alert")
    assert "lifeboat-verify.service" in alerts
    time.sleep(0.5)
    m = metrics(verifier, "/var/lib/prometheus/node-exporter/lifeboat_verify.prom")
    assert m[("lifeboat_verify_status", '{tenant="acme"}')] == 0
