"""backup_prune through ansible-playbook on a real repository folder."""

import datetime
import json
import os

import pytest

import lbtest
from lifeboat_engine import manifest, naming, repository

UTC = datetime.timezone.utc


def make_repo(root, tenant, days, verified=(), incomplete=(), now=None, **options):
    """A repository with one artifact a day at 03:00 UTC for ``days`` days before now."""
    now = now or naming.utcnow()
    repo = repository.open_repository(root, **options)
    names = []
    for back in range(days, 0, -1):
        moment = (now - datetime.timedelta(days=back)).replace(hour=3, minute=0, second=0)
        stamp = naming.format_stamp(moment)
        name = naming.artifact_name(tenant, stamp, "sqlite", True, True)
        w = repo.new_writer(tenant, name)
        w.write(b"x" * 1000)
        w.commit()
        if back not in incomplete:
            doc = manifest.build(tenant, "sqlite", "sqlite", name, stamp, moment, moment, {"raw": 2000, "stored": 1000},
                                 "0" * 64, 3, ["age1test"], {"t": 1}, {})
            repo.write_json(tenant, naming.manifest_name(tenant, stamp), doc)
        if back in verified:
            # As backup_verify writes it: the artifact's name and the SHA-256 it verified.
            repo.write_json(tenant, naming.verify_record_name(tenant, stamp), {
                "status": "PASS", "artifact": name, "sha256": "0" * 64,
                "checked_at": naming.iso(moment + datetime.timedelta(hours=1))})
        names.append((back, name))
    return dict(names)


def listing(root, tenant):
    return sorted(n for n in os.listdir(os.path.join(root, tenant)) if not n.startswith("."))


def test_check_mode_then_prune_then_idempotent(tmp_path):
    root = str(tmp_path / "repo")
    names = make_repo(root, "acme", 40, verified={25}, incomplete={30})
    before = listing(root, "acme")
    report = str(tmp_path / "report.json")
    args = dict(repository=root, keep_daily=7, keep_weekly=2, report=report)
    dry = lbtest.run_module("backup_prune", args, check=True, diff=True)
    assert dry.get("changed") is True and not dry.get("failed"), dry
    assert listing(root, "acme") == before  # the dry run deletes nothing
    assert json.load(open(report))["check_mode"] is True
    doomed = set(dry["deleted"])
    assert names[25] not in doomed  # newest verified, though old
    assert names[30] in doomed  # incomplete and older than the grace period
    assert all(names[back] not in doomed for back in range(1, 8))  # keep_daily: 7
    assert names[40] in doomed
    real = lbtest.run_module("backup_prune", args)
    assert real.get("changed") is True, real
    assert set(real["deleted"]) == doomed  # the dry run told the truth
    after = listing(root, "acme")
    for back, name in names.items():
        stamp = naming.parse_artifact_name(name)["stamp"]
        if name in doomed:
            assert name not in after and naming.manifest_name("acme", stamp) not in after
        else:
            assert name in after
    assert naming.verify_record_name("acme", naming.parse_artifact_name(names[25])["stamp"]) in after
    rep = json.load(open(report))
    assert rep["check_mode"] is False and rep["summary"]["deleted"] == len(doomed)
    every = {a["name"]: a for a in rep["tenants"]["acme"]["artifacts"]}
    assert every[names[25]]["decision"] == "keep" and "newest verified" in " ".join(every[names[25]]["reasons"])
    again = lbtest.run_module("backup_prune", args)
    assert again.get("changed") is False and again["deleted"] == [], again


def test_a_pass_record_that_no_longer_matches_its_artifact_does_not_protect_it(tmp_path):
    # Day 20 was verified, then rekeyed (its manifest's SHA-256 changed): its
    # record proves the old ciphertext only. The newest verified artifact, the
    # one latest_verified would restore, is day 25: prune must keep it.
    root = str(tmp_path / "repo")
    names = make_repo(root, "acme", 40, verified={20, 25})
    repo = repository.open_repository(root)
    stamp20 = naming.parse_artifact_name(names[20])["stamp"]
    mname = naming.manifest_name("acme", stamp20)
    doc = repo.read_json("acme", mname)
    doc["sha256"] = "1" * 64
    repo.delete("acme", mname)
    repo.write_json("acme", mname, doc)
    res = lbtest.run_module("backup_prune", dict(repository=root, keep_daily=7))
    assert res.get("changed") is True and not res.get("failed"), res
    left = listing(root, "acme")
    assert names[25] in left, "the newest artifact whose record still matches was deleted"
    assert names[20] not in left  # no longer proven, and outside keep_daily


def test_pruning_an_artifact_removes_the_marker_of_its_interrupted_rekey(tmp_path):
    root = str(tmp_path / "repo")
    names = make_repo(root, "acme", 20)
    folder = os.path.join(root, "acme")
    doomed, kept = names[20], names[1]
    for name in (doomed, kept):
        with open(os.path.join(folder, naming.rekey_marker_name(name)), "w") as f:
            f.write("{}")
    res = lbtest.run_module("backup_prune", dict(repository=root, keep_daily=7))
    assert doomed in res["deleted"], res
    hidden = sorted(n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".rekey.json"))
    assert hidden == [naming.rekey_marker_name(kept)]


def test_keep_last_zero_still_keeps_the_newest_complete(tmp_path):
    root = str(tmp_path / "repo")
    names = make_repo(root, "acme", 5, incomplete={1})
    res = lbtest.run_module("backup_prune", dict(repository=root, keep_last=0, incomplete_grace="1h"))
    assert res.get("changed") is True
    assert listing(root, "acme") == sorted([names[2], naming.manifest_name("acme", naming.parse_artifact_name(names[2])["stamp"])])


def test_a_running_backup_makes_prune_skip_the_tenant(tmp_path):
    root = str(tmp_path / "repo")
    make_repo(root, "acme", 10)
    before = listing(root, "acme")
    repo = repository.open_repository(root)
    with repo.lock("acme", "backup of tenant acme (test holder)"):
        res = lbtest.run_module("backup_prune", dict(repository=root, keep_last=1))
    assert not res.get("failed"), res
    assert res["changed"] is False and "acme" in res["skipped_tenants"]
    assert "test holder" in res["skipped_tenants"]["acme"]
    assert "run prune again" in res["msg"]
    assert listing(root, "acme") == before


@pytest.mark.parametrize("args,words", [
    ({}, "No retention policy"),
    ({"keep_daily": -2}, "keep_daily"),
    ({"keep_daily": 1, "tenant": "../etc"}, "tenant"),
    ({"keep_daily": 1, "max_total_size": "huge"}, "max_total_size"),
])
def test_bad_policies_are_refused(tmp_path, args, words):
    root = str(tmp_path / "repo")
    make_repo(root, "acme", 3)
    before = listing(root, "acme")
    res = lbtest.run_module("backup_prune", dict(repository=root, **args))
    assert res.get("failed") is True and words in res["msg"], res
    assert listing(root, "acme") == before


def test_interrupted_prune_leaves_no_lying_artifact(tmp_path):
    """Deleting manifest first: an artifact without manifest is incomplete, and the next run removes it."""
    root = str(tmp_path / "repo")
    names = make_repo(root, "acme", 3)
    stamp = naming.parse_artifact_name(names[3])["stamp"]
    os.unlink(os.path.join(root, "acme", naming.manifest_name("acme", stamp)))  # as if killed right after
    repo = repository.open_repository(root)
    art = [a for a in repo.artifacts("acme") if a["name"] == names[3]][0]
    assert art["complete"] is False
    res = lbtest.run_module("backup_prune", dict(repository=root, keep_daily=7))
    assert names[3] in res["deleted"]


def test_prune_on_s3(s3):
    url = s3.url("fleet")
    names = make_repo(url, "acme", 20, verified={15}, **s3.options())
    args = dict(s3.options(), repository=url, keep_daily=3)
    dry = lbtest.run_module("backup_prune", args, check=True)
    assert dry.get("changed") is True, dry
    assert len(s3.keys("fleet/acme/")) == 20 * 2 + 1  # artifacts, manifests, one verify record
    res = lbtest.run_module("backup_prune", args)
    assert set(res["deleted"]) == set(dry["deleted"]) and names[15] not in res["deleted"]
    left = s3.keys("fleet/acme/")
    assert sorted(k.rsplit("/", 1)[1] for k in left if ".manifest.json" not in k and ".verify.json" not in k) == \
        sorted([names[1], names[2], names[3], names[15]])
    assert s3.aws_json("s3api", "list-objects-v2", "--bucket", s3.bucket, "--prefix", "fleet/acme/")["Contents"].__len__() == len(left)
