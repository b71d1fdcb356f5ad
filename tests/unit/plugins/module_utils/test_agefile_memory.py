"""Hundreds of MB through age_encrypt with bounded memory.

Bounded means: peak memory does not grow with the input. Each operation runs
on a 30 MB input and on a 300 MB input, and the test asserts that the larger
run's peak exceeds the smaller's by far less than the input's size (buffering
the input, or one of its files, would add 100-300 MB). Absolute figures depend
on the machine and are recorded, not asserted; they live in the benchmarks.

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
SMALL = 30 * MB
# Allowed growth of the peak from the 30 MB to the 300 MB run. Bounded
# streaming stays within a few MB (30 MB already fills the zstd job pool);
# anything holding one 100 MB file, or the input, would not.
GROWTH_LIMIT_MB = 24

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


def _make_inputs(d, size):
    block = os.urandom(size // 3)
    (d / "tree").mkdir()
    with open(str(d / "one.bin"), "wb") as f:
        for i in range(3):
            f.write(bytes([i]) + block[1:])
    for i in range(3):
        with open(str(d / "tree" / ("part%d.bin" % i)), "wb") as f:
            f.write(bytes([i + 10]) + block[1:])
    return d


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    return _make_inputs(tmp_path_factory.mktemp("big"), SIZE)


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    return _make_inputs(tmp_path_factory.mktemp("small"), SMALL)


def _file_round_trip(tree, keys, size):
    src = tree / "one.bin"
    enc = tree / "one.bin.age"
    res, rss_enc, t_enc = _run_measured({"src": str(src), "dest": str(enc), "recipients": [keys["public"]]})
    assert res["changed"] and res["size_raw"] == size
    back = tree / "one.back"
    res, rss_dec, t_dec = _run_measured({"state": "decrypted", "src": str(enc), "dest": str(back),
                                         "identity_file": keys["identity"]})
    assert res["changed"] and res["size"] == size and res["sha256"] == _sha(str(src))
    os.unlink(str(back))
    return {"encrypt_s": round(t_enc, 2), "encrypt_rss_mb": round(rss_enc, 1),
            "decrypt_s": round(t_dec, 2), "decrypt_rss_mb": round(rss_dec, 1)}


def _folder_round_trip(tree, keys, size):
    enc = tree / "tree.tar.zst.age"
    res, rss_enc, t_enc = _run_measured({"src": str(tree / "tree"), "dest": str(enc),
                                         "recipients": [keys["public"]], "compression_level": 1})
    assert res["changed"] and res["files"] == 3
    res, rss_rekey, t_rekey = _run_measured({"state": "rekeyed", "src": str(enc), "recipients": [keys["other_public"]],
                                             "identity_file": keys["identity"]})
    assert res["changed"] and len(res["rekeyed"]) == 1
    back = tree / "restored"
    res, rss_dec, t_dec = _run_measured({"state": "decrypted", "src": str(enc), "dest": str(back),
                                         "identity_file": keys["other_identity"]})
    assert res["changed"] and res["files"] == 3
    for i in range(3):
        name = "part%d.bin" % i
        assert os.path.getsize(str(back / name)) == size // 3
        assert _sha(str(back / name)) == _sha(str(tree / "tree" / name))
    return {"encrypt_s": round(t_enc, 2), "encrypt_rss_mb": round(rss_enc, 1), "rekey_s": round(t_rekey, 2),
            "rekey_rss_mb": round(rss_rekey, 1), "decrypt_s": round(t_dec, 2), "decrypt_rss_mb": round(rss_dec, 1)}


def _assert_bounded(small, big):
    growth = dict((k.replace("_rss_mb", ""), round(big[k] - small[k], 1)) for k in big if k.endswith("_rss_mb"))
    over = dict((k, v) for k, v in growth.items() if v >= GROWTH_LIMIT_MB)
    assert not over, "peak memory grew with the input by %s MB (30 MB run %s, 300 MB run %s)" % (over, small, big)
    return growth


@pytest.mark.slow
def test_a_300_mb_file_round_trip_keeps_memory_bounded(small_tree, big_tree, keys, record_property):
    small = _file_round_trip(small_tree, keys, SMALL)
    big = _file_round_trip(big_tree, keys, SIZE)
    record_property("file_30MB", small)
    record_property("file_300MB", big)
    print("file: 30 MB %s, 300 MB %s" % (small, big))
    record_property("file_growth_mb", _assert_bounded(small, big))


@pytest.mark.slow
def test_a_300_mb_folder_bundle_and_rekey_keep_memory_bounded(small_tree, big_tree, keys, record_property):
    small = _folder_round_trip(small_tree, keys, SMALL)
    big = _folder_round_trip(big_tree, keys, SIZE)
    record_property("folder_30MB", small)
    record_property("folder_300MB", big)
    print("folder: 30 MB %s, 300 MB %s" % (small, big))
    record_property("folder_growth_mb", _assert_bounded(small, big))
