"""Hundreds of MB through age_encrypt with bounded memory.

Each run happens in a fresh subprocess (the engine, plus its age worker
child). The subprocess reports its own peak RSS (VmHWM) and its children's
(RUSAGE_CHILDREN); their sum bounds the peak of the process tree. (Measuring
from the pytest side would count pytest's own RSS, which a fork inherits.)
"""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

import lbtest

MB = 1000 * 1000
SIZE = 300 * MB
RSS_LIMIT_MB = 100

RUNNER = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
import lbtest
lbtest.load_engine()
from lifeboat_engine import agefile
result = agefile.run(json.loads(sys.argv[2]))
with open("/proc/self/status") as f:
    hwm = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")][0]
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"result": result, "self_kb": hwm, "children_kb": children}))
"""


def _run_measured(params):
    """(result, peak RSS in MB of the subprocess tree, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(lbtest.ROOT / "tests"), json.dumps(params)],
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = json.loads(proc.stdout)
    return out["result"], (out["self_kb"] + out["children_kb"]) / 1024.0, time.monotonic() - t0


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    block = os.urandom(SIZE // 3)
    (d / "tree").mkdir()
    with open(str(d / "one.bin"), "wb") as f:
        for i in range(3):
            f.write(bytes([i]) + block[1:])
    for i in range(3):
        with open(str(d / "tree" / ("part%d.bin" % i)), "wb") as f:
            f.write(bytes([i + 10]) + block[1:])
    return d


@pytest.mark.slow
def test_a_300_mb_file_round_trip_stays_under_100_mb(big_tree, keys, record_property):
    src = big_tree / "one.bin"
    enc = big_tree / "one.bin.age"
    res, rss_enc, t_enc = _run_measured({"src": str(src), "dest": str(enc), "recipients": [keys["public"]]})
    assert res["changed"] and res["size_raw"] == SIZE
    back = big_tree / "one.back"
    res, rss_dec, t_dec = _run_measured({"state": "decrypted", "src": str(enc), "dest": str(back),
                                         "identity_file": keys["identity"]})
    assert res["changed"] and res["size"] == SIZE and res["sha256"] == _sha(str(src))
    record_property("file_300MB", {"encrypt_s": round(t_enc, 2), "encrypt_rss_mb": round(rss_enc, 1),
                                   "decrypt_s": round(t_dec, 2), "decrypt_rss_mb": round(rss_dec, 1)})
    print("300 MB file: encrypt %.1f s %.0f MB RSS, decrypt %.1f s %.0f MB RSS" % (t_enc, rss_enc, t_dec, rss_dec))
    assert rss_enc < RSS_LIMIT_MB and rss_dec < RSS_LIMIT_MB
    os.unlink(str(back))


@pytest.mark.slow
def test_a_300_mb_folder_bundle_and_rekey_stay_under_100_mb(big_tree, keys, record_property):
    enc = big_tree / "tree.tar.zst.age"
    res, rss_enc, t_enc = _run_measured({"src": str(big_tree / "tree"), "dest": str(enc),
                                         "recipients": [keys["public"]], "compression_level": 1})
    assert res["changed"] and res["files"] == 3
    res, rss_rekey, t_rekey = _run_measured({"state": "rekeyed", "src": str(enc), "recipients": [keys["other_public"]],
                                             "identity_file": keys["identity"]})
    assert res["changed"] and len(res["rekeyed"]) == 1
    back = big_tree / "restored"
    res, rss_dec, t_dec = _run_measured({"state": "decrypted", "src": str(enc), "dest": str(back),
                                         "identity_file": keys["other_identity"]})
    assert res["changed"] and res["files"] == 3
    for i in range(3):
        name = "part%d.bin" % i
        assert os.path.getsize(str(back / name)) == SIZE // 3
        assert _sha(str(back / name)) == _sha(str(big_tree / "tree" / name))
    figures = {"encrypt_s": round(t_enc, 2), "encrypt_rss_mb": round(rss_enc, 1), "rekey_s": round(t_rekey, 2),
               "rekey_rss_mb": round(rss_rekey, 1), "decrypt_s": round(t_dec, 2), "decrypt_rss_mb": round(rss_dec, 1)}
    record_property("folder_300MB", figures)
    print("300 MB folder: %s" % figures)
    assert max(rss_enc, rss_rekey, rss_dec) < RSS_LIMIT_MB
