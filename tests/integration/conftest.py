"""Fixtures for integration tests against an S3-compatible server on loopback.

``moto``: moto's standalone server, one per session, stopped afterwards; ``rclone`` and ``seaweed``: two
other S3 implementations, one per session too (``rc`` and ``sw``: a fresh bucket on each).
``s3``: a fresh bucket on it per test, with real boto3, the AWS CLI and the
options that point the collection at it. ``fault_proxy``: a TCP proxy in
front of moto that cuts or stalls connections (tests/s3server.py).
"""

import json
import os
import secrets
import subprocess

import pytest

import lbtest
import s3server


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    server = s3server.MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


class S3Env(object):
    """One bucket on the moto server, and ways to look at it that are not the collection's."""

    def __init__(self, server, bucket, tmp_path):
        self.server = server
        self.endpoint = server.endpoint
        self.bucket = bucket
        self.client = server.client()
        self.tmp_path = tmp_path

    def url(self, prefix=""):
        return "s3://%s/%s" % (self.bucket, prefix) if prefix else "s3://%s" % self.bucket

    def options(self, endpoint=None, **extra):
        """Module/engine options for this server; credentials as no_log options."""
        opts = {"s3_endpoint_url": endpoint or self.endpoint, "s3_region": s3server.REGION,
                "s3_access_key": s3server.ACCESS_KEY, "s3_secret_key": s3server.SECRET_KEY}
        opts.update(extra)
        return opts

    def keys(self, prefix=""):
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def open_uploads(self, prefix=""):
        return self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix).get("Uploads", [])

    def get(self, key):
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def aws(self, *args, check=True):
        """The AWS CLI (awscli from PyPI) against this server."""
        env = dict(os.environ)
        env.update(self.server.env())
        argv = [str(lbtest.BIN / "aws"), "--endpoint-url", self.endpoint, "--output", "json"] + list(args)
        res = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if check:
            assert res.returncode == 0, "aws %s failed: %s" % (" ".join(args), res.stderr)
        return res

    def aws_json(self, *args):
        out = self.aws(*args).stdout
        return json.loads(out) if out.strip() else None

    def pg_restores_identical(self, pg, keys, tenant, prefix):
        """backup_restore of the database tenant ``tenant`` from this bucket into ``<tenant>_restored``, through
        ansible-playbook; the copy is compared with the source table by table. Returns the source's checksums."""
        pg.psql('CREATE DATABASE "%s_restored"' % tenant)
        out = lbtest.run_module("backup_restore", dict(pg.login, tenant=tenant, repository=self.url(prefix),
                                                       identity_file=keys["identity"],
                                                       target_database=tenant + "_restored", **self.options()))
        assert not out.get("failed") and out.get("changed"), out
        with pg.connect(tenant) as a, pg.connect(tenant + "_restored") as b:
            original, restored = lbtest.table_checksums(a), lbtest.table_checksums(b)
        assert original == restored
        return original

    def sqlite_restores_identical(self, keys, tenant, prefix, source):
        """backup_restore of the SQLite tenant ``tenant`` from this bucket to a new file, through
        ansible-playbook; the copy is compared with ``source`` table by table."""
        target = str(self.tmp_path / ("%s-restored.db" % tenant))
        out = lbtest.run_module("backup_restore", dict(tenant=tenant, engine="sqlite", repository=self.url(prefix),
                                                       identity_file=keys["identity"], target_path=target,
                                                       **self.options()))
        assert not out.get("failed") and out.get("changed"), out
        assert lbtest.sqlite_checksums(target) == lbtest.sqlite_checksums(source)


def pg_guests(pg, database, rows=5000):
    """A database ``database`` with a table of ``rows`` guests (text and bytea)."""
    pg.psql('CREATE DATABASE "%s"' % database)
    pg.psql("CREATE TABLE guests (id serial PRIMARY KEY, name text, avatar bytea);"
            "INSERT INTO guests (name, avatar) SELECT 'Guest ' || i, decode(md5(i::text), 'hex') "
            "FROM generate_series(1, %d) i;" % rows, db=database)


@pytest.fixture
def s3(moto, tmp_path):
    bucket = "lbtest-%s" % secrets.token_hex(5)
    env = S3Env(moto, bucket, tmp_path)
    env.client.create_bucket(Bucket=bucket)
    return env


@pytest.fixture(scope="session")
def rclone(tmp_path_factory):
    """``rclone serve s3`` on 127.0.0.1: a second S3 implementation (tests/integration/test_s3_compat_rclone.py)."""
    server = s3server.RcloneServer(tmp_path_factory.mktemp("rclone")).start()
    yield server
    server.stop()


def fresh_bucket(server, prefix, tmp_path, **create):
    """A new bucket on ``server`` as an S3Env; the probes' per-process cache emptied, so each test probes."""
    from lifeboat_engine._s3 import probes

    bucket = "%s-%s" % (prefix, secrets.token_hex(4))
    env = S3Env(server, bucket, tmp_path)
    env.client.create_bucket(Bucket=bucket, **create)
    probes.forget_probes()
    return env


@pytest.fixture
def rc(rclone, tmp_path):
    """One bucket on the rclone server, as ``s3`` gives one on moto."""
    return fresh_bucket(rclone, "rbkt", tmp_path)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """SeaweedFS ``weed mini`` on 127.0.0.1 (every port a free one): a third S3 implementation, with
    versioning, conditional writes and object lock (tests/integration/test_s3_compat_seaweedfs.py)."""
    server = s3server.SeaweedServer(tmp_path_factory.mktemp("seaweed")).start()
    yield server
    server.stop()


@pytest.fixture
def sw(seaweed, tmp_path):
    """One bucket on the SeaweedFS server, as ``s3`` gives one on moto."""
    return fresh_bucket(seaweed, "swbkt", tmp_path)


@pytest.fixture
def fault_proxy(moto):
    proxy = s3server.FaultProxy(moto.port, lifetime=240)
    yield proxy
    proxy.stop()
