"""No PASS without the data, no gap without an alarm (docs/RELIABILITY.md, "Silent failures").

Each test reproduces a case where lifeboat once reported success (or skipped quietly) while
data was lost or a gap opened, and checks what it does now. Real SQLite files and
PostgreSQL clusters, the real age keys, the engine as the modules run it.
"""

import datetime
import json
import os
import shutil

import lbtest
from lifeboat_engine import backup, naming, verify


def sqlite_tenant(tmp_path, keys, name="clock"):
    db = lbtest.sqlite_guests(tmp_path / ("%s.db" % name), 20)
    repo = str(tmp_path / "repo")
    base = dict(tenant=name, engine="sqlite", path=db, repository=repo, recipients=[keys["public"]])
    return base, repo


def future_copy(repo, tenant, art, stamp):
    """The artifact and its manifest again under another stamp, as a host whose clock ran ahead wrote it."""
    folder = os.path.join(repo, tenant)
    old = naming.parse_artifact_name(os.path.basename(art))["stamp"]
    for name in os.listdir(folder):
        if old in name and not name.endswith(".verify.json"):
            shutil.copy(os.path.join(folder, name), os.path.join(folder, name.replace(old, stamp)))


def test_an_artifact_stamped_in_the_future_never_stops_the_backups(tmp_path, keys):
    base, repo = sqlite_tenant(tmp_path, keys)
    first = backup.run(base)["artifact"]
    future_copy(repo, "clock", first, "20991231T000000Z")
    # the future artifact is "newest" by name, but it does not make tonight's backup unnecessary
    res = backup.run(dict(base, skip_if_newer_than="20h"))
    assert res["skipped"] is True  # the real artifact of a minute ago still counts
    now = naming.parse_stamp(naming.parse_artifact_name(os.path.basename(first))["stamp"])
    later = now + datetime.timedelta(hours=21)
    res = backup.run(dict(base, skip_if_newer_than="20h"), now=later)
    assert res["skipped"] is False and res["artifacts"][0]["action"] == "written"


def test_a_clock_running_behind_does_not_skip_backups(tmp_path, keys):
    base, _repo = sqlite_tenant(tmp_path, keys, "behind")
    first = backup.run(base)["artifact"]
    stamp = naming.parse_stamp(naming.parse_artifact_name(os.path.basename(first))["stamp"])
    res = backup.run(dict(base, skip_if_newer_than="20h"), now=stamp - datetime.timedelta(days=30))
    assert res["skipped"] is False


def test_verify_flags_a_future_stamp_instead_of_calling_it_fresh(tmp_path, keys):
    base, repo = sqlite_tenant(tmp_path, keys, "ahead")
    first = backup.run(base)["artifact"]
    future_copy(repo, "ahead", first, "20991231T000000Z")
    res = verify.run(dict(tenant="ahead", repository=repo, identity_file=keys["identity"], max_age="24h",
                          artifact=os.path.basename(first)))
    checks = dict((c["name"], c) for c in res["tenants"][0]["checks"])
    assert checks["freshness"]["status"] == "FAIL" and "in the future" in checks["freshness"]["detail"], checks


def test_a_failed_verification_means_the_artifact_is_not_fresh(tmp_path, keys):
    base, repo = sqlite_tenant(tmp_path, keys, "flipped")
    art = backup.run(base)["artifact"]
    with open(art, "r+b") as f:
        f.seek(os.path.getsize(art) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    res = verify.run(dict(tenant="flipped", repository=repo, identity_file=keys["identity"]))
    assert res["status"] == "FAIL"
    record = json.load(open(os.path.join(repo, "flipped", naming.verify_record_name(
        "flipped", naming.parse_artifact_name(os.path.basename(art))["stamp"]))))
    assert record["status"] == "FAIL"
    res = backup.run(dict(base, skip_if_newer_than="20h"))
    assert res["skipped"] is False and res["artifacts"][0]["action"] == "written"
