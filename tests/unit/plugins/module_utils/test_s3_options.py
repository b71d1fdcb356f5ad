"""The one S3 option filter and mapping (_s3/options.py): module names (s3_endpoint_url) and the agent's and
roles' names (endpoint_url), as every engine and the agent use them."""

import pytest

from lifeboat_engine import agent, agent_config, argspec, backup, prune, repository, restore, s3, verify
from lifeboat_engine._s3 import options

ALL = {"s3_endpoint_url": "http://127.0.0.1:9000", "s3_region": "eu-west-1", "s3_access_key": "AK",
       "s3_secret_key": "SK", "s3_session_token": "ST", "storage_class": "STANDARD_IA", "sse": "aws:kms",
       "sse_kms_key_id": "key"}
AGENT = {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-1", "access_key": "AK", "secret_key": "SK",
         "session_token": "ST", "storage_class": "STANDARD_IA", "sse": "aws:kms", "sse_kms_key_id": "key"}


def test_one_list_of_names_behind_the_public_modules():
    assert repository.S3_OPTIONS == s3.S3_OPTIONS == options.S3_OPTIONS
    assert repository.S3_CONNECTION_OPTIONS == s3.S3_CONNECTION_OPTIONS == options.S3_CONNECTION_OPTIONS
    assert set(argspec.S3_STORAGE) == set(options.S3_STORAGE_OPTIONS)


def test_the_filter_keeps_the_s3_options_that_are_set():
    params = dict(ALL, tenant="acme", repository="s3://bucket/p", sse=None)
    assert repository.s3_options(params) == dict((k, v) for k, v in ALL.items() if k != "sse")
    assert repository.s3_options(params, connection_only=True) == dict(
        (k, v) for k, v in ALL.items() if k.startswith("s3_"))
    assert repository.s3_options({"repository": "/srv/backups"}) == {}


def test_agent_names_map_to_module_names_and_back():
    assert options.from_agent(AGENT) == ALL
    assert options.from_agent(dict(AGENT, secret_key_file="/etc/key")) == ALL
    assert options.from_agent(AGENT, connection_only=True) == dict((k, v) for k, v in ALL.items() if k.startswith("s3_"))
    assert options.from_agent(None) == {}
    assert options.to_agent(dict(ALL, tenant="acme")) == AGENT
    for option in options.S3_OPTIONS:
        assert options.option_name(options.agent_key(option)) == option


def test_the_agent_configuration_knows_every_s3_option():
    assert set(agent_config.S3) == set(AGENT) | {"secret_key_file"}


@pytest.mark.parametrize("engine, name, connection_only", [
    (backup, "backup", False), (verify, "verify", False), (prune, "prune", False), (restore, "restore", True)])
def test_the_agent_gives_each_engine_s3_options_it_accepts(engine, name, connection_only):
    """storage_class, sse and sse_kms_key_id of the agent's s3 settings reach the engines that upload."""
    params = agent.s3_params({"s3": AGENT}, connection_only=connection_only)
    assert agent.filter_params(engine, params, name) == params
    assert params == (options.from_agent(AGENT, connection_only=True) if connection_only else ALL)
