"""lifeboat.backup.agent_s3 (plugins/filter/settings.py): the fleet's lifeboat_s3, in the modules'
option names, as the roles and the agent name the S3 settings, with the engine's mapping."""

import sys

import lbtest

sys.path.insert(0, str(lbtest.COLLECTIONS))

from ansible_collections.lifeboat.backup.plugins.filter import settings  # noqa: E402  pylint: disable=wrong-import-position


def test_the_modules_s3_options_lose_their_prefix():
    assert settings.agent_s3({"s3_endpoint_url": "http://minio:9000", "s3_region": "eu-west-1", "s3_access_key": "AK",
                              "s3_secret_key": "SK", "s3_session_token": "ST", "storage_class": "STANDARD_IA",
                              "sse": "aws:kms", "sse_kms_key_id": "k"}) == {
        "endpoint_url": "http://minio:9000", "region": "eu-west-1", "access_key": "AK", "secret_key": "SK",
        "session_token": "ST", "storage_class": "STANDARD_IA", "sse": "aws:kms", "sse_kms_key_id": "k"}


def test_keys_only_the_agent_knows_lose_the_prefix_too():
    assert settings.agent_s3({"s3_endpoint_url": "http://minio:9000", "s3_secret_key_file": "/etc/lifeboat/s3.key"}) == {
        "endpoint_url": "http://minio:9000", "secret_key_file": "/etc/lifeboat/s3.key"}


def test_nothing_set_is_nothing():
    assert settings.agent_s3({}) == {} and settings.agent_s3(None) == {}
    assert settings.agent_s3({"s3_region": None}) == {}


def test_the_filter_is_registered():
    assert settings.FilterModule().filters() == {"agent_s3": settings.agent_s3}
