"""age_encrypt state=rekeyed on s3:// repositories, against moto's server on 127.0.0.1.

The new ciphertext replaces each artifact in place (multipart upload onto
the same key, atomic on completion), then the manifest is rewritten. Covered:
several tenants rekeyed through the module (check mode, idempotency,
backup_verify afterwards), versioned buckets with and without
purge_old_versions, an unversioned bucket, a network fault mid-upload, and a
run that dies between the artifact and its manifest (S3 and local).
"""

import hashlib
import json
import subprocess

import pytest

import lbtest
from lifeboat_engine import agefile, backup, repository, s3 as s3mod
from lifeboat_engine._age import rekey as age_rekey
from lifeboat_engine.errors import LifeboatError

from test_s3_repository import key_of, sqlite_tenant

MiB = 1 << 20


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def make_repo(s3, tmp_path, keys, prefix="rk", tenants=(("acme", 10), ("globex", 0)), endpoint=None):
    """SQLite tenants backed up to S3 with keys["public"]; the first spans two parts (8 MiB + rest)."""
    made = {}
    for name, blob_mib in tenants:
        db = sqlite_tenant(tmp_path / ("%s.db" % name), blob_mib=blob_mib, rows=300)
        res = backup.run(dict(tenant=name, engine="sqlite", path=db, repository=s3.url(prefix),
                              recipients=[keys["public"]], **s3.options(endpoint=endpoint)))
        made[name] = {"db": db, "artifact": key_of(s3, res["artifact"]), "manifest": key_of(s3, res["manifest"])}
    return made


def age_decrypts(identity, data, tmp_path):
    path = tmp_path / "probe.age"
    path.write_bytes(data)
    res = subprocess.run(["age", "-d", "-i", identity, str(path)], capture_output=True, check=False)
    return res.returncode == 0


def etags(s3, keys):
    return {k: s3.client.head_object(Bucket=s3.bucket, Key=k)["ETag"] for k in keys}


def versions_of(s3, key):
    page = s3.client.list_object_versions(Bucket=s3.bucket, Prefix=key)
    found = [(v["VersionId"], v["IsLatest"]) for v in page.get("Versions", []) if v["Key"] == key]
    found += [("marker:" + v["VersionId"], v["IsLatest"]) for v in page.get("DeleteMarkers", []) if v["Key"] == key]
    return found


def rekey_args(s3, keys, url, **extra):
    args = dict(s3.options(), state="rekeyed", repository=url, identity_file=keys["identity"],
                recipients=[keys["other_public"]])
    args.update(extra)
    return args


# -- the module, end to end -----------------------------------------------------------

def test_module_rekeys_every_tenant_of_an_s3_repository(s3, keys, tmp_path):
    made = make_repo(s3, tmp_path, keys)
    all_keys = [m[k] for m in made.values() for k in ("artifact", "manifest")]
    before = etags(s3, all_keys)
    old_cipher = {n: s3.get(m["artifact"]) for n, m in made.items()}
    url = s3.url("rk")

    check = lbtest.run_module("age_encrypt", rekey_args(s3, keys, url), check=True, diff=True)
    assert check.get("changed") is True and not check.get("failed"), check
    assert len(check["rekeyed"]) == 2 and all(e["action"] == "would rekey" for e in check["rekeyed"]), check
    assert etags(s3, all_keys) == before, "check mode changed an object"
    assert s3.open_uploads() == []

    res = lbtest.run_module("age_encrypt", rekey_args(s3, keys, url), diff=True)
    assert res.get("changed") is True and not res.get("failed"), res
    assert sorted(e["artifact"] for e in res["rekeyed"]) == sorted("s3://%s/%s" % (s3.bucket, m["artifact"])
                                                                   for m in made.values())
    assert res["diff"]["after"] == {e["artifact"]: [keys["other_public"]] for e in res["rekeyed"]}
    for name, m in made.items():
        data = s3.get(m["artifact"])
        assert data != old_cipher[name]
        assert not age_decrypts(keys["identity"], data, tmp_path), "the old identity still decrypts %s" % name
        assert age_decrypts(keys["other_identity"], data, tmp_path), "the new identity does not decrypt %s" % name
        doc = json.loads(s3.get(m["manifest"]))
        assert doc["encryption"]["recipients"] == [keys["other_public"]]
        assert doc["sha256"] == sha256(data) and doc["size"]["stored"] == len(data)
        assert "rekeyed_at" in doc
    # The large artifact went up as a multipart upload onto the same key.
    assert s3.client.head_object(Bucket=s3.bucket, Key=made["acme"]["artifact"])["ETag"].strip('"').endswith("-2")
    assert s3.open_uploads() == []
    # Nothing else appeared under the tenants' prefixes.
    assert sorted(s3.keys("rk/")) == sorted(all_keys)

    verified = lbtest.run_module("backup_verify", dict(s3.options(), repository=url, tenant="acme",
                                                       identity_file=keys["other_identity"]))
    assert verified.get("status") == "PASS", verified

    again = lbtest.run_module("age_encrypt", rekey_args(s3, keys, url, identity_file=keys["other_identity"],
                                                        purge_old_versions=True))
    assert again.get("changed") is False and not again.get("failed"), again
    assert again["purged_versions"] == [] and "versioning was never enabled" in again["purge_note"], again
    assert len(again["unchanged"]) == 2


def test_versioned_bucket_keeps_old_ciphertext_until_purged(s3, keys, tmp_path):
    s3.client.put_bucket_versioning(Bucket=s3.bucket, VersioningConfiguration={"Status": "Enabled"})
    made = make_repo(s3, tmp_path, keys, tenants=(("acme", 0), ("globex", 0)))
    acme, globex = made["acme"], made["globex"]
    old = s3.get(acme["artifact"])
    url = s3.url("rk")

    # acme alone, without purge: the old ciphertext stays as an earlier version, and the result says so.
    res = lbtest.run_module("age_encrypt", rekey_args(s3, keys, url, tenant="acme"))
    assert res.get("changed") is True and not res.get("failed"), res
    assert any("purge_old_versions" in w and "versioned" in w for w in res.get("warnings", [])), res
    for key in (acme["artifact"], acme["manifest"]):
        assert sorted(latest for _v, latest in versions_of(s3, key)) == [False, True], versions_of(s3, key)
    old_version = [v for v, latest in versions_of(s3, acme["artifact"]) if not latest][0]
    kept = s3.client.get_object(Bucket=s3.bucket, Key=acme["artifact"], VersionId=old_version)["Body"].read()
    assert kept == old and age_decrypts(keys["identity"], kept, tmp_path)

    # Check mode lists what a purge would delete, and deletes nothing.
    check = lbtest.run_module("age_encrypt", rekey_args(s3, keys, url, tenant="acme", purge_old_versions=True,
                                                        identity_file=keys["other_identity"]), check=True)
    assert check.get("changed") is True and len(check["would_purge"]) == 2, check
    assert len(versions_of(s3, acme["artifact"])) == 2

    # Purge on a run where acme is already rekeyed: only its earlier versions go.
    purge = lbtest.run_module("age_encrypt", rekey_args(s3, keys, url, tenant="acme", purge_old_versions=True,
                                                        identity_file=keys["other_identity"]))
    assert purge.get("changed") is True and not purge.get("failed"), purge
    assert purge["rekeyed"] == [] and len(purge["purged_versions"]) == 2, purge
    assert {p["key"] for p in purge["purged_versions"]} == {acme["artifact"], acme["manifest"]}
    for key in (acme["artifact"], acme["manifest"]):
        assert [latest for _v, latest in versions_of(s3, key)] == [True], versions_of(s3, key)
    assert age_decrypts(keys["other_identity"], s3.get(acme["artifact"]), tmp_path)

    # globex: rekey and purge in one run.
    both = lbtest.run_module("age_encrypt", rekey_args(s3, keys, url, tenant="globex", purge_old_versions=True))
    assert both.get("changed") is True and len(both["rekeyed"]) == 1 and len(both["purged_versions"]) == 2, both
    for key in (globex["artifact"], globex["manifest"]):
        assert [latest for _v, latest in versions_of(s3, key)] == [True], versions_of(s3, key)
    doc = json.loads(s3.get(globex["manifest"]))
    assert doc["sha256"] == sha256(s3.get(globex["artifact"]))

    again = lbtest.run_module("age_encrypt", rekey_args(s3, keys, url, purge_old_versions=True,
                                                        identity_file=keys["other_identity"]))
    assert again.get("changed") is False and again["purged_versions"] == [], again


def test_object_lock_refusal_is_reported_by_key_and_code(s3, keys, tmp_path, moto):
    bucket = s3.bucket + "-lock"
    s3.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    locked = type(s3)(moto, bucket, tmp_path)
    made = make_repo(locked, tmp_path, keys, tenants=(("acme", 0),))
    art = made["acme"]["artifact"]
    old_version = versions_of(locked, art)[0][0]
    s3.client.put_object_retention(Bucket=bucket, Key=art, VersionId=old_version,
                                   Retention={"Mode": "COMPLIANCE", "RetainUntilDate": "2099-01-01T00:00:00Z"})
    res = lbtest.run_module("age_encrypt", rekey_args(locked, keys, locked.url("rk"), purge_old_versions=True))
    assert res.get("failed") is True, res
    assert "%s version %s" % (art, old_version) in res["msg"] and "AWS error AccessDenied" in res["msg"], res
    assert "Rekeyed 1 artifact(s)" in res["msg"], res
    refused = res["details"]["refused_versions"]
    assert refused == [{"key": art, "version_id": old_version, "aws_error_code": "AccessDenied"}], res
    # The rekey itself went through and the deletable old manifest version is gone.
    assert age_decrypts(keys["other_identity"], locked.get(art), tmp_path)
    assert [latest for _v, latest in versions_of(locked, made["acme"]["manifest"])] == [True]
    assert len(versions_of(locked, art)) == 2


# -- faults ------------------------------------------------------------------------------

def engine_rekey(s3, keys, url, endpoint=None, **extra):
    params = dict(s3.options(endpoint=endpoint), state="rekeyed", repository=url, identity_file=keys["identity"],
                  recipients=[keys["other_public"]])
    params.update(extra)
    return agefile.run(params)


def test_fault_mid_upload_leaves_the_old_object_current_and_the_upload_aborted(s3, keys, tmp_path, fault_proxy,
                                                                               monkeypatch):
    made = make_repo(s3, tmp_path, keys, tenants=(("acme", 12),))
    art, man = made["acme"]["artifact"], made["acme"]["manifest"]
    old, old_manifest = s3.get(art), s3.get(man)
    url = s3.url("rk")

    # Every connection carrying more than 1 MiB is cut: parts never get through; the abort does.
    fault_proxy.fault("cut", "up", after=MiB, times=None)
    with pytest.raises(LifeboatError) as e:
        engine_rekey(s3, keys, url, endpoint=fault_proxy.endpoint)
    assert "Uploading part 1" in str(e.value) and art in str(e.value), str(e.value)
    assert len(fault_proxy.hits) >= 1, "the fault never fired: the test proved nothing"
    assert s3.get(art) == old and s3.get(man) == old_manifest
    assert age_decrypts(keys["identity"], s3.get(art), tmp_path)
    assert s3.open_uploads() == [], "the failed upload was not aborted"

    # A run whose abort cannot get through either (a killed run behaves alike): the upload stays open and recorded
    # beside the lock; the next run aborts it before it starts.
    def unreachable(self, key, upload_id):
        raise LifeboatError("simulated: the endpoint cannot be reached")
    monkeypatch.setattr(s3mod.S3Repository, "abort_upload", unreachable)
    with pytest.raises(LifeboatError):
        engine_rekey(s3, keys, url, endpoint=fault_proxy.endpoint)
    monkeypatch.undo()
    assert [u["Key"] for u in s3.open_uploads()] == [art]
    assert s3.get(art) == old and s3.get(man) == old_manifest

    fault_proxy.heal()
    res = engine_rekey(s3, keys, url, endpoint=fault_proxy.endpoint)
    assert res["changed"] is True and len(res["rekeyed"]) == 1, res
    assert s3.open_uploads() == []
    data = s3.get(art)
    assert json.loads(s3.get(man))["sha256"] == sha256(data)
    assert age_decrypts(keys["other_identity"], data, tmp_path)


def test_crash_between_artifact_and_manifest_recovers_on_s3(s3, keys, tmp_path, monkeypatch):
    made = make_repo(s3, tmp_path, keys, tenants=(("acme", 10),))
    art, man = made["acme"]["artifact"], made["acme"]["manifest"]
    old_manifest = s3.get(man)
    url = s3.url("rk")

    def dies(self, tenant, name, data):
        raise LifeboatError("simulated: the run died before the manifest")
    monkeypatch.setattr(s3mod.S3Repository, "replace_json", dies)
    with pytest.raises(LifeboatError):
        engine_rekey(s3, keys, url)
    monkeypatch.undo()
    published = s3.get(art)
    assert s3.get(man) == old_manifest, "the manifest changed"
    assert json.loads(old_manifest)["sha256"] != sha256(published), "the artifact was not published"
    assert age_decrypts(keys["other_identity"], published, tmp_path)

    # Another recipient set than the interrupted run's: refused, with what to do.
    third = lbtest.age_keygen(str(tmp_path))
    with pytest.raises(LifeboatError) as e:
        engine_rekey(s3, keys, url, recipients=[third[1]])
    assert "stopped before rewriting its manifest" in str(e.value) and e.value.option == "recipients", str(e.value)

    check = agefile.run(dict(s3.options(), state="rekeyed", repository=url, identity_file=keys["identity"],
                             recipients=[keys["other_public"]]), check_mode=True)
    assert check["changed"] is True and check["rekeyed"][0]["action"] == "would finish the interrupted rekey", check
    assert s3.get(man) == old_manifest

    # The same run again (old identity, which can no longer open the artifact) finishes the job.
    res = engine_rekey(s3, keys, url)
    assert res["changed"] is True and res["rekeyed"][0]["action"] == "finished the interrupted rekey", res
    assert res["rekeyed"][0]["recovered"] is True
    assert s3.get(art) == published, "the artifact was rekeyed twice"
    doc = json.loads(s3.get(man))
    assert doc["sha256"] == sha256(published) and doc["size"]["stored"] == len(published)
    assert doc["encryption"]["recipients"] == [keys["other_public"]]
    verified = lbtest.run_module("backup_verify", dict(s3.options(), repository=url, tenant="acme",
                                                       identity_file=keys["other_identity"]))
    assert verified.get("status") == "PASS", verified
    assert engine_rekey(s3, keys, url)["changed"] is False


def test_crash_between_artifact_and_manifest_recovers_locally(keys, tmp_path, monkeypatch):
    root = tmp_path / "repo"
    db = sqlite_tenant(tmp_path / "acme.db", rows=300)
    made = backup.run(dict(tenant="acme", engine="sqlite", path=db, repository=str(root),
                           recipients=[keys["public"]]))
    art, man = made["artifact"], made["manifest"]
    old_manifest = open(man, "rb").read()
    params = dict(state="rekeyed", repository=str(root), identity_file=keys["identity"],
                  recipients=[keys["other_public"]])

    real = age_rekey._write_manifest

    def dies(t, doc):
        raise LifeboatError("simulated: the run died before the manifest")
    monkeypatch.setattr(age_rekey, "_write_manifest", dies)
    with pytest.raises(LifeboatError):
        agefile.run(params)
    monkeypatch.setattr(age_rekey, "_write_manifest", real)
    published = open(art, "rb").read()
    assert open(man, "rb").read() == old_manifest
    assert json.loads(old_manifest)["sha256"] != sha256(published)
    marker = root / "acme" / (".%s.rekey.json" % art.rsplit("/", 1)[1])
    assert marker.exists()

    res = agefile.run(params)
    assert res["rekeyed"][0]["action"] == "finished the interrupted rekey", res
    assert open(art, "rb").read() == published
    doc = json.loads(open(man, "rb").read())
    assert doc["sha256"] == sha256(published) and doc["encryption"]["recipients"] == [keys["other_public"]]
    assert not marker.exists()
    assert agefile.run(params)["changed"] is False


def test_marker_left_before_a_failed_rename_is_ignored_locally(keys, tmp_path, monkeypatch):
    """The local marker is written before the rename; if the rename never happens, the next run rekeys normally."""
    root = tmp_path / "repo"
    db = sqlite_tenant(tmp_path / "acme.db", rows=300)
    made = backup.run(dict(tenant="acme", engine="sqlite", path=db, repository=str(root),
                           recipients=[keys["public"]]))
    art = made["artifact"]
    old = open(art, "rb").read()
    params = dict(state="rekeyed", repository=str(root), identity_file=keys["identity"],
                  recipients=[keys["other_public"]])

    real_commit = agefile.AtomicFile.commit

    def no_rename(self, replace=True):
        if self.final_path == art:
            self.abort()
            raise LifeboatError("simulated: the run died before the rename")
        return real_commit(self, replace)
    monkeypatch.setattr(agefile.AtomicFile, "commit", no_rename)
    with pytest.raises(LifeboatError):
        agefile.run(params)
    monkeypatch.undo()
    assert open(art, "rb").read() == old
    assert (root / "acme" / (".%s.rekey.json" % art.rsplit("/", 1)[1])).exists()
    res = agefile.run(params)
    assert res["rekeyed"][0]["action"] == "rekeyed", res
    assert json.loads(open(made["manifest"], "rb").read())["sha256"] == sha256(open(art, "rb").read())
    assert repository.open_repository(str(root)).partial_files("acme") == []
