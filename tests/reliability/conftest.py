"""Fixtures of the reliability suite: a tenant that dumps to about 25 MB, and the
S3 fixtures of tests/integration (moto on loopback)."""

import importlib.util
import pathlib

import pytest

_spec = importlib.util.spec_from_file_location(
    "lbtest_integration_fixtures", pathlib.Path(__file__).resolve().parents[1] / "integration" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

moto = _fixtures.moto
s3 = _fixtures.s3
fault_proxy = _fixtures.fault_proxy


@pytest.fixture(scope="session")
def big(pg):
    """A tenant whose dump is about 25 MB raw (text, numbers, JSON, incompressible bytea)."""
    pg.psql("CREATE DATABASE rel")
    pg.psql("CREATE TABLE guests AS SELECT i AS id, 'guest ' || i AS name, md5(i::text) || '@example.com' AS email, "
            "jsonb_build_object('n', i) AS prefs, now() - i * interval '1 minute' AS seen, "
            "decode(md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text), 'hex') AS blob "
            "FROM generate_series(1, 160000) i", db="rel")
    return pg
