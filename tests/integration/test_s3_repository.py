"""s3:// repositories against moto's standalone server on 127.0.0.1, through
real boto3, the AWS CLI and ansible-playbook; network faults through a TCP
proxy on loopback (tests/s3server.py).

restore from S3 goes by hand here (AWS CLI download, then age, zstd and
pg_restore or sqlite3): backup_restore reads local repositories only so far.
"""

import hashlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import lbtest
import s3server
from lifeboat_engine import backup, crypto, pipeline, repository, s3 as s3mod
from lifeboat_engine.errors import LifeboatError

MiB = 1 << 20

PG_SQL = """
CREATE TABLE guests (id serial PRIMARY KEY, name text NOT NULL, email text, born date, prefs jsonb, avatar bytea);
CREATE TABLE bookings (id bigserial PRIMARY KEY, guest_id int REFERENCES guests(id), nights int, notes text);
INSERT INTO guests (name, email, born, prefs, avatar)
  SELECT 'Guest ' || i || ' Ünïcödé', 'g' || i || '@example.com', date '1950-01-01' + (i % 20000),
         jsonb_build_object('n', i), decode(md5(i::text), 'hex') FROM generate_series(1, 3000) i;
INSERT INTO bookings (guest_id, nights, notes) SELECT 1 + (i % 3000), i % 14, repeat('n' || i, 4)
  FROM generate_series(1, 8000) i;
"""


def sqlite_tenant(path, blob_mib=0, rows=2000):
    """A SQLite tenant; ``blob_mib`` MiB of random blobs make its artifact span several parts."""
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
    conn.executemany("INSERT INTO guests (name, email) VALUES (?, ?)",
                     [("Guest %d" % i, "g%d@example.com" % i) for i in range(rows)])
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    rng = random.Random(42)
    conn.executemany("INSERT INTO blobs (data) VALUES (?)", [(rng.randbytes(256 * 1024),) for _blob in range(blob_mib * 4)])
    conn.commit()
    conn.close()
    return str(path)


def decrypt_to(identity, src, dest):
    res = subprocess.run(["bash", "-o", "pipefail", "-c", "age -d -i %s %s | zstd -d -q > %s" % (identity, src, dest)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def key_of(s3, url):
    prefix = "s3://%s/" % s3.bucket
    assert url.startswith(prefix), url
    return url[len(prefix):]


def fast_repo(s3, endpoint, tmp_path, prefix="r", **extra):
    """An S3 repository with short time-outs and quick retries, for fault tests."""
    opts = dict(retries=3, backoff=0.01, connect_timeout=1, read_timeout=1, lock_dir=str(tmp_path / "locks"))
    opts.update(extra)
    return repository.open_repository(s3.url(prefix), **s3.options(endpoint=endpoint, **opts))


# -- backups to S3 and restores by hand ------------------------------------------------

def test_pg_backup_module_writes_to_s3_and_the_aws_cli_download_restores(pg, keys, s3, tmp_path):
    pg.psql('CREATE DATABASE "s3acme"')
    pg.psql(PG_SQL, db="s3acme")
    args = dict(pg.login, tenant="s3acme", repository=s3.url("nightly"), recipients=[keys["public"]], **s3.options())

    check = lbtest.run_module("pg_backup", args, check=True)
    assert check.get("changed") is True and not check.get("failed"), check
    assert check["artifacts"][0]["action"] == "would write"
    assert s3.keys() == [], "check mode uploaded something"

    res = lbtest.run_module("pg_backup", args)
    assert res.get("changed") is True and not res.get("failed"), res
    text = json.dumps(res)
    assert s3server.ACCESS_KEY not in text and s3server.SECRET_KEY not in text, "a credential leaked into the result"
    art, man = res["artifact"], res["manifest"]
    assert art.startswith("s3://%s/nightly/s3acme/s3acme-" % s3.bucket) and art.endswith(".pgdump.zst.age")

    # The AWS CLI lists exactly the artifact and its manifest, and downloads them; no upload is left open.
    listed = s3.aws("s3", "ls", "--recursive", s3.url("nightly/")).stdout.split()
    assert sorted(w for w in listed if w.startswith("nightly/")) == sorted([key_of(s3, art), key_of(s3, man)])
    assert s3.open_uploads() == []
    s3.aws("s3", "cp", "--recursive", s3.url("nightly/"), str(tmp_path / "dl"))
    local = tmp_path / "dl" / key_of(s3, art)[len("nightly/"):]
    manifest = json.loads((tmp_path / "dl" / key_of(s3, man)[len("nightly/"):]).read_text())
    blob = local.read_bytes()
    assert manifest["sha256"] == hashlib.sha256(blob).hexdigest() == res["sha256"]
    assert manifest["size"]["stored"] == len(blob)

    pg.psql('CREATE DATABASE "s3acme_restored"')
    cmd = "age -d -i %s %s | zstd -d -q | %s --no-owner --exit-on-error -d s3acme_restored" % (
        keys["identity"], local, pg.bin("pg_restore"))
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=pg.env(), check=False)
    assert out.returncode == 0, out.stderr
    with pg.connect("s3acme") as a, pg.connect("s3acme_restored") as b:
        original, restored = lbtest.table_checksums(a), lbtest.table_checksums(b)
    assert original == restored and original["public.guests"][0] == 3000
    assert manifest["row_counts"] == {"public.bookings": 8000, "public.guests": 3000}


def test_multipart_sqlite_backup_survives_a_cut_connection_and_restores_equal(s3, fault_proxy, keys, tmp_path):
    db = sqlite_tenant(tmp_path / "big.db", blob_mib=20)
    fault_proxy.fault("cut", "up", after=3 * MiB, times=1)  # mid-way through the first part
    res = backup.run(dict(tenant="bigco", engine="sqlite", path=db, repository=s3.url("lb"),
                          recipients=[keys["public"]], **s3.options(endpoint=fault_proxy.endpoint)))
    assert len(fault_proxy.hits) == 1, "the fault never fired: the test proved nothing"
    art = key_of(s3, res["artifact"])
    head = s3.client.head_object(Bucket=s3.bucket, Key=art)
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # 8 + 8 + ~4 MiB parts
    assert head["ContentLength"] == res["size_stored"] > 16 * MiB
    assert s3.open_uploads() == []
    local = tmp_path / "download.age"
    s3.aws("s3", "cp", res["artifact"], str(local))
    restored = tmp_path / "restored.db"
    decrypt_to(keys["identity"], local, restored)
    assert lbtest.sqlite_checksums(str(restored)) == lbtest.sqlite_checksums(db)

    # The engine's own streaming download feeds decryption and decompression directly (no copy on disk).
    repo = repository.open_repository(s3.url("lb"), **s3.options())
    streamed = tmp_path / "streamed.db"
    with repo.open_read("bigco", res["artifact"].rsplit("/", 1)[1]) as src, open(streamed, "wb") as sink:
        sizes = pipeline.load(src, sink, crypto.load_identities(identity_file=keys["identity"]))
    assert sizes["sha256"] == res["sha256"] and sizes["raw"] == res["size_raw"]
    assert lbtest.sqlite_checksums(str(streamed)) == lbtest.sqlite_checksums(db)


def test_failed_upload_leaves_no_object_says_why_and_the_next_run_succeeds(s3, fault_proxy, keys, tmp_path):
    db = sqlite_tenant(tmp_path / "big.db", blob_mib=12)
    params = dict(tenant="bigco", engine="sqlite", path=db, repository=s3.url("lb"), recipients=[keys["public"]],
                  **s3.options(endpoint=fault_proxy.endpoint))
    # Every connection that carries more than 1 MiB is cut: parts never get through, small requests do.
    fault_proxy.fault("cut", "up", after=MiB, times=None)
    with pytest.raises(LifeboatError) as e:
        backup.run(params)
    msg = str(e.value)
    assert "Uploading part 1" in msg and "s3://%s/lb/bigco/bigco-" % s3.bucket in msg, msg
    assert "gave up after 5 attempts" in msg and "s3_endpoint_url" in msg, msg
    assert len(fault_proxy.hits) == 5
    assert s3.keys() == [], "an object became visible after a failed upload"
    assert s3.open_uploads() == [], "the failed multipart upload was not aborted"

    fault_proxy.heal()
    res = backup.run(params)
    assert sorted(s3.keys()) == sorted([key_of(s3, res["artifact"]), key_of(s3, res["manifest"])])


def test_stalled_upload_times_out_aborts_and_works_once_healthy(s3, fault_proxy, tmp_path):
    repo = fast_repo(s3, fault_proxy.endpoint, tmp_path)
    data = random.Random(1).randbytes(12 * MiB)
    fault_proxy.fault("stall", "up", after=MiB, times=None, stall=30)
    writer = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    t0 = time.monotonic()
    with pytest.raises(LifeboatError) as e:
        writer.write(data)
        writer.commit()
    assert time.monotonic() - t0 < 25, "the stall was not cut by a time-out"
    assert "gave up after 3 attempts" in str(e.value) and e.value.option == "s3_endpoint_url", str(e.value)
    assert len(fault_proxy.hits) == 3
    assert s3.keys() == [] and s3.open_uploads() == []

    fault_proxy.heal()
    writer = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    writer.write(data)
    writer.commit()
    assert s3.get("r/acme/acme-20260101T000000Z.sqlite") == data


def test_upload_left_open_by_a_killed_run_is_aborted_by_the_next_run(s3, keys, tmp_path):
    code = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %(tests)r)
        import lbtest; lbtest.load_engine()
        from lifeboat_engine import repository
        repo = repository.open_repository(%(url)r, **%(opts)r)
        lock = repo.lock("killed", "backup of tenant killed").acquire()
        w = repo.new_writer("killed", "killed-20260101T000000Z.sqlite.zst.age")
        w.write(b"x" * (9 << 20))  # one 8 MiB part uploaded, the upload stays open
        print("READY", flush=True)
        time.sleep(60)
    """) % {"tests": str(lbtest.ROOT / "tests"), "url": s3.url("lb"), "opts": s3.options()}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "READY"
        assert len(s3.open_uploads("lb/killed/")) == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    db = sqlite_tenant(tmp_path / "k.db")
    res = backup.run(dict(tenant="killed", engine="sqlite", path=db, repository=s3.url("lb"),
                          recipients=[keys["public"]], **s3.options()))
    assert [p.split(" ")[0] for p in res["artifacts"][0]["removed_partials"]] == ["killed-20260101T000000Z.sqlite.zst.age"]
    assert s3.open_uploads() == []
    assert len(s3.keys("lb/killed/")) == 2


def test_a_live_upload_of_another_host_is_left_alone(s3, tmp_path):
    mine = fast_repo(s3, s3.endpoint, tmp_path / "host-a")
    # moto reports every upload as initiated in 2010: only a very long grace period makes it "young" here.
    other = fast_repo(s3, s3.endpoint, tmp_path / "host-b", stale_upload_age=50 * 365 * 86400)
    writer = mine.new_writer("acme", "acme-20260101T000000Z.sqlite")
    writer.write(b"y" * (9 * MiB))
    assert len(s3.open_uploads()) == 1
    with other.lock("acme", "backup of tenant acme"):
        assert other.remove_partials("acme") == []  # host B does not know this upload, and it is young
    assert len(s3.open_uploads()) == 1
    assert writer.commit() == "s3://%s/r/acme/acme-20260101T000000Z.sqlite" % s3.bucket
    assert s3.open_uploads() == []


# -- downloads ----------------------------------------------------------------------

def test_download_resumes_after_a_cut_and_fails_clearly_when_stalled(s3, fault_proxy, tmp_path):
    repo = fast_repo(s3, fault_proxy.endpoint, tmp_path)
    data = random.Random(2).randbytes(12 * MiB + 12345)
    w = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    w.write(data)
    w.commit()

    fault_proxy.fault("cut", "down", after=5 * MiB, times=1)
    digest, size = hashlib.sha256(), 0
    with repo.open_read("acme", "acme-20260101T000000Z.sqlite") as f:
        for chunk in iter(lambda: f.read(64 * 1024), b""):
            assert len(chunk) <= 64 * 1024  # streamed, never the whole object
            digest.update(chunk)
            size += len(chunk)
    assert len(fault_proxy.hits) == 1
    assert size == len(data) and digest.hexdigest() == hashlib.sha256(data).hexdigest()

    fault_proxy.fault("stall", "down", after=256 * 1024, times=None, stall=30)
    with pytest.raises(LifeboatError) as e:
        with repo.open_read("acme", "acme-20260101T000000Z.sqlite") as f:
            while f.read(64 * 1024):
                pass
    msg = str(e.value)
    assert "s3://%s/r/acme/acme-20260101T000000Z.sqlite" % s3.bucket in msg and "stopped answering" in msg, msg
    assert e.value.option == "s3_endpoint_url"


# -- errors that name the option -------------------------------------------------------

def test_unreachable_endpoint_and_missing_bucket_name_the_option(s3, fault_proxy, keys, tmp_path):
    fault_proxy.fault("refuse", times=None)
    repo = fast_repo(s3, fault_proxy.endpoint, tmp_path)
    with pytest.raises(LifeboatError) as e:
        repo.check_writable()
    assert e.value.option == "s3_endpoint_url" and fault_proxy.endpoint in str(e.value), str(e.value)

    db = sqlite_tenant(tmp_path / "t.db")
    with pytest.raises(LifeboatError) as e:
        backup.run(dict(tenant="acme", engine="sqlite", path=db, repository="s3://lbtest-no-such-bucket/x",
                        recipients=[keys["public"]], **s3.options()))
    assert "NoSuchBucket" in str(e.value) and e.value.option == "repository", str(e.value)
    assert "lbtest-no-such-bucket" not in [b["Name"] for b in s3.client.list_buckets()["Buckets"]]


def test_storage_class_and_server_side_encryption_are_applied(s3, keys, tmp_path):
    db = sqlite_tenant(tmp_path / "t.db")
    kms = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    res = backup.run(dict(tenant="acme", engine="sqlite", path=db, repository=s3.url("lb"),
                          recipients=[keys["public"]],
                          **s3.options(storage_class="STANDARD_IA", sse="aws:kms", sse_kms_key_id=kms)))
    art = s3.client.head_object(Bucket=s3.bucket, Key=key_of(s3, res["artifact"]))
    man = s3.client.head_object(Bucket=s3.bucket, Key=key_of(s3, res["manifest"]))
    assert art.get("StorageClass") == "STANDARD_IA"
    assert man.get("StorageClass", "STANDARD") == "STANDARD"  # manifests stay readable at once and cheap
    for head in (art, man):
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == kms


def test_existing_objects_are_never_replaced(s3, tmp_path):
    repo = fast_repo(s3, s3.endpoint, tmp_path)
    repo.write_json("acme", "acme-20260101T000000Z.manifest.json", {"n": 1})
    with pytest.raises(LifeboatError) as e:
        repo.write_json("acme", "acme-20260101T000000Z.manifest.json", {"n": 2})
    assert "Refusing to replace" in str(e.value)
    big = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    big.write(b"a" * (9 * MiB))
    big.commit()
    again = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    again.write(b"b" * (9 * MiB))
    with pytest.raises(LifeboatError) as e:
        again.commit()
    assert "Refusing to replace" in str(e.value)
    assert repo.read_json("acme", "acme-20260101T000000Z.manifest.json") == {"n": 1}
    assert s3.get("r/acme/acme-20260101T000000Z.sqlite")[:1] == b"a"
    assert s3.open_uploads() == []
    # moto honours If-None-Match (the probe before the first upload says so): no warning, no probe object left.
    assert repo.conditional_writes("If-None-Match") is True and repo.warnings == []
    assert [k for k in s3.keys() if ".lifeboat-probe-" in k] == []


def test_listing_stays_inside_the_prefix(s3, tmp_path):
    repo = fast_repo(s3, s3.endpoint, tmp_path, prefix="team/lb")
    for key in ("team/lb/acme/acme-20260101T000000Z.sqlite", "team/lb/acme/acme-20260101T000000Z.manifest.json",
                "team/lb/acme/acme-20260102T000000Z.sqlite", "team/lb/beta/beta-20260101T000000Z.pgdump",
                "team/lb/Bad Name/x", "team/lbx/acme/acme-20260103T000000Z.sqlite", "team/lb/acme/sub/deeper"):
        s3.client.put_object(Bucket=s3.bucket, Key=key, Body=b"z")
    assert repo.tenants() == ["acme", "beta"]
    assert sorted(repo.names("acme")) == ["acme-20260101T000000Z.manifest.json", "acme-20260101T000000Z.sqlite",
                                          "acme-20260102T000000Z.sqlite"]
    assert [(a["name"], a["complete"]) for a in repo.artifacts("acme")] == [
        ("acme-20260101T000000Z.sqlite", True), ("acme-20260102T000000Z.sqlite", False)]
    assert repo.latest_complete("acme")["stamp"] == "20260101T000000Z"
    assert repo.stamp_taken("acme", "20260102T000000Z") and not repo.stamp_taken("acme", "20260103T000000Z")


# -- memory ---------------------------------------------------------------------------

MEMORY_CHILD = """
import json, random, sys, time
sys.path.insert(0, %(tests)r)
import lbtest; lbtest.load_engine()
from lifeboat_engine import crypto, pipeline, repository

class Source(object):
    # Incompressible bytes made on the fly: no copy of the artifact exists anywhere in this process.
    def __init__(self, total):
        self.left, self.rng = total, random.Random(7)
    def read(self, n=-1):
        n = min(self.left, (1 << 20) if n is None or n < 0 else n)
        self.left -= n
        return self.rng.randbytes(n)

def status(field):
    with open("/proc/self/status") as f:
        return int([line.split()[1] for line in f if line.startswith(field + ":")][0])

repo = repository.open_repository(%(url)r, **%(opts)r)
recipients, _keys = crypto.load_recipients([%(public)r])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS: measure the upload alone
base = status("VmRSS")
writer = repo.new_writer("big", %(name)r)
t0 = time.monotonic()
sizes = pipeline.store(Source(%(size)d), writer, recipients, 1, 2)
writer.commit()
print(json.dumps({"base_kb": base, "grew_kb": status("VmHWM") - base,
                  "seconds": time.monotonic() - t0, "stored": sizes["stored"], "parts": len(writer._parts)}))
"""


@pytest.mark.slow
def test_large_artifact_streams_by_multipart_with_bounded_memory(s3, keys):
    results = {}
    for size_mib in (24, 96):
        name = "big-20260101T0000%02dZ.tar.zst.age" % (size_mib % 60)
        code = MEMORY_CHILD % {"tests": str(lbtest.ROOT / "tests"), "url": s3.url("lb"), "opts": s3.options(),
                               "public": keys["public"], "size": size_mib * MiB, "name": name}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        head = s3.client.head_object(Bucket=s3.bucket, Key="lb/big/" + name)
        assert head["ContentLength"] == out["stored"] > size_mib * MiB
        parts = -(-out["stored"] // s3mod.MIN_PART_SIZE)
        assert out["parts"] == parts and head["ETag"].strip('"').endswith("-%d" % parts)
        results[size_mib] = out
    print("memory growth: %s" % {k: "%d KiB in %.1f s" % (v["grew_kb"], v["seconds"]) for k, v in results.items()})
    # Four times the data, the same memory: one part buffer (8 MiB) plus zstd/age working sets.
    assert results[96]["grew_kb"] < 64 * 1024, results
    assert results[96]["grew_kb"] - results[24]["grew_kb"] < 8 * 1024, results


# -- restore through backup_restore --------------------------------------------------------

def test_backup_restore_module_restores_from_s3_through_a_cut_download(s3, fault_proxy, keys, tmp_path):
    """backup_restore (real ansible-playbook) streams the artifact from S3; a connection cut mid-download
    is resumed (Range + If-Match) and the restored SQLite file equals the source."""
    db = sqlite_tenant(tmp_path / "src.db", blob_mib=10)
    res = backup.run(dict(tenant="rsfault", engine="sqlite", path=db, repository=s3.url("lb"),
                          recipients=[keys["public"]], **s3.options()))
    assert res["size_stored"] > 8 * MiB
    target = str(tmp_path / "restored.db")
    fault_proxy.fault("cut", "down", after=4 * MiB, times=1)
    out = lbtest.run_module("backup_restore", dict(
        s3.options(endpoint=fault_proxy.endpoint), tenant="rsfault", engine="sqlite", repository=s3.url("lb"),
        identity_file=keys["identity"], target_path=target))
    assert not out.get("failed") and out.get("changed"), out
    assert len(fault_proxy.hits) == 1, "the download was never cut: the test proved nothing"
    assert out["artifact"] == res["artifact"]
    assert lbtest.sqlite_checksums(target) == lbtest.sqlite_checksums(db)
    assert s3server.SECRET_KEY not in json.dumps(out)
