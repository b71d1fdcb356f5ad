import datetime
import json

import pytest

from lifeboat_engine import manifest
from lifeboat_engine.errors import LifeboatError

T0 = datetime.datetime(2026, 1, 1, 3, 0, 0, tzinfo=datetime.timezone.utc)
T1 = T0 + datetime.timedelta(seconds=42)


def good():
    return manifest.build("acme", "postgresql", "pgdump", "acme-20260101T030000Z.pgdump.zst.age", "20260101T030000Z",
                          T0, T1, {"raw": 1000, "stored": 400}, "a" * 64, 3, ["age1xyz"], {"public.t": 5},
                          {"database": "acme", "server_version": "15.8"})


def test_build_records_what_design_md_asks():
    m = good()
    for key in ("tenant", "engine", "started_at", "finished_at", "size", "sha256", "compression", "encryption",
                "row_counts", "tool_version", "source"):
        assert key in m
    assert m["started_at"] == "2026-01-01T03:00:00Z" and m["finished_at"] == "2026-01-01T03:00:42Z"
    assert m["seconds"] == 42
    assert m["encryption"] == {"algorithm": "age", "recipients": ["age1xyz"]}
    assert m["compression"] == {"algorithm": "zstd", "level": 3}
    json.dumps(m)  # serializable
    assert manifest.validate(m, "x") is m


def test_unencrypted_uncompressed_manifest():
    m = manifest.build("t", "sqlite", "sqlite", "t-20260101T030000Z.sqlite", "20260101T030000Z", T0, T1,
                       {"raw": 1, "stored": 1}, "b" * 64, None, [], {}, {})
    assert m["encryption"] is None and m["compression"] is None


@pytest.mark.parametrize("mutate,words", [
    (lambda m: m.pop("sha256"), "missing sha256"),
    (lambda m: m.update(manifest_version=99), "manifest_version"),
    (lambda m: m.update(size={"raw": "1"}), "size"),
    (lambda m: m.update(sha256="abc"), "sha256"),
    (lambda m: m.update(row_counts=[]), "row_counts"),
])
def test_validate_refuses_broken_manifests(mutate, words):
    m = good()
    mutate(m)
    with pytest.raises(LifeboatError) as e:
        manifest.validate(m, "acme-x.manifest.json")
    assert words in str(e.value)
    assert "acme-x.manifest.json" in str(e.value)


def test_validate_refuses_non_objects():
    with pytest.raises(LifeboatError):
        manifest.validate([1, 2], "m")
