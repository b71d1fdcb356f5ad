import hashlib
import io
import os

import pytest

from lifeboat_engine import crypto, pipeline
from lifeboat_engine.errors import LifeboatError


@pytest.fixture(scope="module")
def keypair():
    ident, pub = crypto.generate_identity()
    return crypto.parse_identities(ident, "test"), crypto.load_recipients([pub])[0]


def _data(n):
    # half compressible text, half random bytes
    return (b"tenant,row,some text that repeats\n" * (n // 70)) + os.urandom(n // 2)


@pytest.mark.parametrize("level,encrypted", [(3, True), (3, False), (None, True), (None, False), (1, True)])
def test_store_then_load_round_trips(keypair, level, encrypted):
    identities, recipients = keypair
    data = _data(3 << 20)
    stored = io.BytesIO()
    stats = pipeline.store(io.BytesIO(data), stored, recipients if encrypted else None, level, 2)
    blob = stored.getvalue()
    assert stats["raw"] == len(data)
    assert stats["stored"] == len(blob)
    assert stats["sha256"] == hashlib.sha256(blob).hexdigest()
    if encrypted:
        assert blob.startswith(b"age-encryption.org/v1")
    out = io.BytesIO()
    back = pipeline.load(io.BytesIO(blob), out, identities if encrypted else None, level is not None)
    assert out.getvalue() == data
    assert back == {"stored": len(blob), "sha256": stats["sha256"], "raw": len(data)}


def test_progress_is_reported_while_streaming(keypair):
    seen = []
    pipeline.store(io.BytesIO(b"x" * (5 << 20)), io.BytesIO(), keypair[1], 3, 0, progress=seen.append)
    assert len(seen) >= 4 and seen == sorted(seen)


def test_wrong_key_fails_clearly(keypair):
    stored = io.BytesIO()
    pipeline.store(io.BytesIO(b"secret rows"), stored, keypair[1], 3, 0)
    other = crypto.parse_identities(crypto.generate_identity()[0], "other")
    with pytest.raises(LifeboatError) as e:
        pipeline.load(io.BytesIO(stored.getvalue()), io.BytesIO(), other, True)
    assert "identity" in str(e.value)


def test_truncated_unencrypted_zstd_is_detected():
    stored = io.BytesIO()
    pipeline.store(io.BytesIO(os.urandom(1 << 20)), stored, None, 3, 0)
    with pytest.raises(LifeboatError) as e:
        pipeline.load(io.BytesIO(stored.getvalue()[:-100]), io.BytesIO(), None, True)
    assert "truncated" in str(e.value)


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_tampered_ciphertext_is_detected(keypair, where):
    stored = io.BytesIO()
    pipeline.store(io.BytesIO(os.urandom(300000)), stored, keypair[1], 3, 0)
    blob = bytearray(stored.getvalue())
    pos = {"start": 200, "middle": len(blob) // 2, "end": len(blob) - 5}[where]
    blob[pos] ^= 0x01
    with pytest.raises(LifeboatError):
        pipeline.load(io.BytesIO(bytes(blob)), io.BytesIO(), keypair[0], True)


def test_hashing_writer_handles_short_writes():
    class Short(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            n = min(len(b), 7)
            self.buf += bytes(b[:n])
            return n

    sink = Short()
    w = pipeline.HashingWriter(sink)
    assert w.write(b"0123456789" * 10) == 100
    assert bytes(sink.buf) == b"0123456789" * 10
    assert w.count == 100
