"""Erasure of one tenant by destroying its keys (issue 19): tenant_erase, erase_tenant.yml, and what verify, prune,
info and the agent's status say of an erased tenant, on a local folder and on moto with object lock.

Three SQLite tenants: alpha and beta with keys of their own, gamma on a shared repository key. Erasing alpha leaves
beta and gamma verifiable and restorable; what object lock keeps of alpha cannot be decrypted by any key file left;
an artifact also encrypted to the shared key makes the erasure refuse, changing nothing; a second run changes nothing.
"""

import datetime
import hashlib
import io
import json
import os
import time

import subprocess

import pytest

import lbtest
from conftest import fresh_bucket
from lifeboat_engine import agefile, backup, crypto, erasure, info, prune, restore, verify
from lifeboat_engine._agent.status import tenant_status
from lifeboat_engine.errors import LifeboatError
from lifeboat_engine.repository import open_repository


def make_key(folder, name):
    ident, public = crypto.generate_identity()
    path = os.path.join(folder, "%s.key" % name)
    with open(path, "w") as f:
        f.write(crypto.identity_file_text(ident, public))
    os.chmod(path, 0o600)
    with open(os.path.join(folder, "%s.pub" % name), "w") as f:
        f.write(public + "\n")
    return path, public


class World(object):
    """Keys in a key folder, three SQLite tenants, and their backups in ``url``."""

    def __init__(self, base, url, options):
        self.base, self.url, self.options = base, url, options
        self.keys = str(base / "keys")
        os.makedirs(self.keys, 0o700)
        self.key, self.public = {}, {}
        for name in ("alpha", "beta", "shared"):
            self.key[name], self.public[name] = make_key(self.keys, name)
        self.own = {"alpha": "alpha", "beta": "beta", "gamma": "shared"}
        self.sources = {}

    def backup(self, tenant, recipients, rows=30):
        db = lbtest.sqlite_guests(self.base / ("%s.db" % tenant), rows)
        self.sources[tenant] = db
        out = backup.run(dict(tenant=tenant, engine="sqlite", path=db, repository=self.url,
                              recipients=[self.public[r] for r in recipients], **self.options))
        return os.path.basename(out["artifact"])

    def erase(self, tenant="alpha", check_mode=False, **extra):
        return erasure.run(dict(dict(tenant=tenant, repository=self.url, identity_dir=self.keys, reference="GDPR-42",
                                     requested_by="dpo@example.com", **self.options), **extra), check_mode=check_mode)

    def identities_left(self):
        """Every identity file left in the key folder, as one file (how a verifier holds several)."""
        path = str(self.base / "all-identities.txt")
        with open(path, "w") as f:
            for name in sorted(os.listdir(self.keys)):
                if name.endswith(".key"):
                    f.write(open(os.path.join(self.keys, name)).read())
        return path

    def verify_all(self):
        out = verify.run(dict(repository=self.url, identity_file=self.identities_left(), **self.options))
        return dict((r["tenant"], r["status"]) for r in out["tenants"]), out

    def restores(self, tenant):
        target = str(self.base / ("%s-restored.db" % tenant))
        restore.run(dict(tenant=tenant, engine="sqlite", repository=self.url, identity_file=self.key[self.own[tenant]],
                         target_path=target, **self.options))
        assert lbtest.sqlite_checksums(target) == lbtest.sqlite_checksums(self.sources[tenant])

    def no_key_left_opens(self, repo, tenant, names):
        """Each object ``names`` of ``tenant`` fails to decrypt with every identity file left in the key folder."""
        left = [os.path.join(self.keys, n) for n in sorted(os.listdir(self.keys)) if n.endswith(".key")]
        assert left and self.key["alpha"] not in left
        for name in names:
            for path in left:
                with repo.open_read(tenant, name) as f:
                    with pytest.raises(LifeboatError):
                        crypto.decrypt_stream(f, io.BytesIO(), crypto.load_identities(identity_file=path))


def fleet_playbook(name, inventory, *extra):
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inventory), str(lbtest.ROOT / "playbooks" / (name + ".yml"))]
    return subprocess.run(argv + list(extra), capture_output=True, text=True, check=False, cwd=str(lbtest.ROOT),
                          env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}))


def snapshot(*folders):
    out = {}
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                out[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def test_erasure_on_a_local_folder(tmp_path):
    w = World(tmp_path, str(tmp_path / "repo"), {})
    mixed = w.backup("alpha", ["alpha", "shared"])  # also encrypted to the shared key: the erasure must refuse
    time.sleep(1.05)
    w.backup("alpha", ["alpha"])
    w.backup("beta", ["beta"])
    w.backup("gamma", ["shared"])
    before = snapshot(w.url, w.keys)

    # The refusal: in check mode (the engine) and in a real run (the module) alike, nothing changes.
    with pytest.raises(LifeboatError, match="Refusing to erase tenant alpha") as refused:
        w.erase(check_mode=True)
    assert [b["artifact"] for b in refused.value.details["blockers"]] == [mixed]
    out = lbtest.run_module("tenant_erase", dict(tenant="alpha", repository=w.url, identity_dir=w.keys))
    assert out.get("failed") and "Refusing to erase tenant alpha" in out["msg"] and mixed in out["msg"], out
    assert "age_encrypt state: rekeyed" in out["msg"] and w.public["shared"] in out["msg"]
    assert [b["artifact"] for b in out["details"]["blockers"]] == [mixed]
    assert snapshot(w.url, w.keys) == before
    # A typo never writes a record for a tenant that never existed.
    with pytest.raises(LifeboatError, match="Tenant alpah has nothing in .*allow_missing"):
        w.erase("alpah")
    assert not os.path.exists(os.path.join(w.url, "alpah"))

    # As the refusal says: rekey alpha's artifacts to its own key, then erase.
    agefile.run(dict(state="rekeyed", repository=w.url, tenant="alpha", identity_file=w.key["shared"],
                     recipients=[w.public["alpha"]]))
    rekeyed = snapshot(w.url, w.keys)
    plan = w.erase(check_mode=True)
    assert plan["changed"] and len(plan["deleted"]) == 4 and plan["kept"] == [] and plan["identities_left"]
    assert snapshot(w.url, w.keys) == rekeyed
    out = lbtest.run_module("tenant_erase", dict(tenant="alpha", repository=w.url, identity_dir=w.keys,
                                                 reference="GDPR-42"), diff=True)
    assert out["changed"] and out["erased"] and not out["already_erased"] and out["identities_left"] == [], out
    assert not os.path.exists(w.key["alpha"]) and os.path.exists(w.key["beta"]) and os.path.exists(w.key["shared"])
    left = sorted(os.listdir(os.path.join(w.url, "alpha")))
    assert left == [".lock", os.path.basename(out["record"])]
    record = json.load(open(out["record"]))
    assert record["tenant"] == "alpha" and record["reference"] == "GDPR-42" and "@" in record["requested_by"]
    assert sorted(a["name"] for a in record["artifacts"]) == sorted(a["name"] for a in plan["artifacts"])
    assert all(len(a["sha256"]) == 64 and a["recipients"] == [w.public["alpha"]] for a in record["artifacts"])
    assert record["identities_destroyed"][0]["path"] == w.key["alpha"] and record["kept"] == []

    # Idempotent: the second run finds the record and changes nothing.
    erased = snapshot(w.url, w.keys)
    again = w.erase()
    assert again["changed"] is False and again["already_erased"] and "already erased" in again["msg"]
    assert snapshot(w.url, w.keys) == erased

    # The others stay verifiable and restorable; alpha is ERASED everywhere, never FAIL.
    statuses, out = w.verify_all()
    assert statuses == {"alpha": "ERASED", "beta": "PASS", "gamma": "PASS"} and out["status"] == "PASS", out["msg"]
    w.restores("beta")
    w.restores("gamma")
    pruned = prune.run(dict(repository=w.url, keep_last=1))
    assert "alpha" in pruned["report"]["tenants"] and pruned["report"]["tenants"]["alpha"]["erased"]
    facts = info.run(dict(repository=w.url))
    assert facts["erased"] == ["alpha"] and facts["missing"] == [] and "ERASED" in facts["msg"]
    row = tenant_status(open_repository(w.url), "alpha", 3600, datetime.datetime.now(datetime.timezone.utc))
    assert row["rpo"] == "ERASED" and row["erased"]["reference"] == "GDPR-42"
    # A new backup under the erased name is refused, and says how to go on.
    with pytest.raises(LifeboatError, match="was erased on .*GDPR-42"):
        w.backup("alpha", ["beta"])


def test_erasure_under_object_lock_and_the_playbook(moto, tmp_path):
    bucket = fresh_bucket(moto, "erase", tmp_path, ObjectLockEnabledForBucket=True)
    w = World(tmp_path, bucket.url("lb"), bucket.options())
    locked = w.backup("alpha", ["alpha"])
    time.sleep(1.05)
    w.backup("alpha", ["alpha"])
    w.backup("beta", ["beta"])
    w.backup("gamma", ["shared"])
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).replace(microsecond=0)
    bucket.client.put_object_retention(Bucket=bucket.bucket, Key="lb/alpha/" + locked,
                                       Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})

    # delta was also encrypted to the shared key, and object lock keeps that version: rekeying it (the current
    # version) is not enough, the kept version stays readable with the shared key, so the erasure refuses.
    w.key["delta"], w.public["delta"] = make_key(w.keys, "delta")
    old = w.backup("delta", ["delta", "shared"])
    bucket.client.put_object_retention(Bucket=bucket.bucket, Key="lb/delta/" + old,
                                       Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    agefile.run(dict(bucket.options(), state="rekeyed", repository=w.url, tenant="delta", identity_file=w.key["shared"],
                     recipients=[w.public["delta"]]))
    before = bucket.client.list_object_versions(Bucket=bucket.bucket, Prefix="lb/delta/")
    with pytest.raises(LifeboatError, match="object lock keeps it .* also encrypted to %s" % w.public["shared"]):
        w.erase("delta")
    after = bucket.client.list_object_versions(Bucket=bucket.bucket, Prefix="lb/delta/")
    assert [(v["Key"], v["VersionId"]) for v in after["Versions"]] == \
        [(v["Key"], v["VersionId"]) for v in before["Versions"]]
    assert os.path.exists(w.key["delta"])

    inv = lbtest.write_fleet_inventory(tmp_path, "inventory", [], {
        "lifeboat_repository": w.url, "lifeboat_s3": bucket.options(), "lifeboat_identity_dir": w.keys,
        "lifeboat_report_dir": str(tmp_path / "reports")})
    run = fleet_playbook("erase_tenant", inv, "-e", "tenant=alpha", "-e", "confirm_erase=alpah")
    assert run.returncode != 0 and "give the tenant twice" in run.stdout, run.stdout[-2000:]
    assert os.path.exists(w.key["alpha"])
    run = fleet_playbook("erase_tenant", inv, "-e", "tenant=alpha", "-e", "confirm_erase=alpha",
                         "-e", "erase_reference=GDPR-43")
    assert run.returncode == 0, run.stdout[-3000:]
    report = json.load(open(sorted((tmp_path / "reports").glob("erase-alpha-*.json"))[0]))
    row = report["repositories"][0]
    assert report["status"] == "ERASED" and row["status"] == "ERASED" and row["kept"] == 1 and row["deleted"] == 3
    assert row["kept_until"] == until.strftime("%Y-%m-%dT%H:%M:%SZ") and report["identities_left"] == []
    assert report["identities_destroyed"] == [w.key["alpha"]] and not os.path.exists(w.key["alpha"])

    repo = open_repository(w.url, **bucket.options())
    assert sorted(repo.names("alpha")) == sorted([locked, os.path.basename(row["record"])])
    w.no_key_left_opens(repo, "alpha", [locked])
    statuses, _out = w.verify_all()
    assert statuses == {"alpha": "ERASED", "beta": "PASS", "gamma": "PASS", "delta": "PASS"}
    w.restores("beta")
    w.restores("gamma")
    run = fleet_playbook("erase_tenant", inv, "-e", "tenant=alpha", "-e", "confirm_erase=alpha")
    assert run.returncode == 0, run.stdout[-3000:]
    report = json.load(open(sorted((tmp_path / "reports").glob("erase-alpha-*.json"))[-1]))
    assert report["repositories"][0]["status"] == "ALREADY ERASED" and report["identities_destroyed"] == [], report
    again = w.erase()  # the lock holds: nothing more to delete, nothing changes
    assert again["changed"] is False and [o["name"] for o in again["kept"]] == [locked], again
    pruned = prune.run(dict(repository=w.url, keep_last=1, **bucket.options()))
    assert locked in pruned["kept"] and "kept under object lock" in pruned["msg"], pruned["msg"]
    # The lock ends (shortened here, as GOVERNANCE mode allows): the next prune deletes what is left.
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    bucket.client.put_object_retention(Bucket=bucket.bucket, Key="lb/alpha/" + locked, BypassGovernanceRetention=True,
                                       Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    time.sleep(3)
    pruned = prune.run(dict(repository=w.url, keep_last=1, **bucket.options()))
    assert locked in pruned["deleted"], pruned["msg"]
    versions = bucket.client.list_object_versions(Bucket=bucket.bucket, Prefix="lb/alpha/")
    assert [v["Key"] for v in versions.get("Versions", [])] == ["lb/alpha/" + os.path.basename(row["record"])]
    assert versions.get("DeleteMarkers", []) == []
    assert tenant_status(repo, "alpha", 60, datetime.datetime.now(datetime.timezone.utc))["rpo"] == "ERASED"
