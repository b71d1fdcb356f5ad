"""Shared fixtures. Real components only: PostgreSQL clusters made and
dropped here, SQLite files, the age CLI, and ansible-playbook."""

import os
import shutil

import pytest

import lbtest

lbtest.load_engine()


def pytest_sessionstart(session):
    lbtest.drop_stale_clusters()


@pytest.fixture(scope="session")
def engine():
    return lbtest.load_engine()


@pytest.fixture(scope="session")
def pg():
    if not lbtest.pg_versions() or not shutil.which("pg_createcluster"):
        pytest.fail("PostgreSQL server packages are missing: run `make test`, which installs them.")
    cluster = lbtest.PgCluster().start()
    yield cluster
    cluster.drop()


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """Two age key pairs made by the real age-keygen."""
    if not shutil.which("age-keygen"):
        pytest.fail("The age CLI is missing: run `make test`, which installs it.")
    d = tmp_path_factory.mktemp("keys")
    os.chmod(d, 0o700)
    a = lbtest.age_keygen(str(d))
    b = lbtest.age_keygen(str(d))
    return {"identity": a[0], "public": a[1], "other_identity": b[0], "other_public": b[1]}


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    return str(path)
