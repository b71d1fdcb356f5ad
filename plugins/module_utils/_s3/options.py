# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The S3 options and their two spellings: the one home of the S3 option filter and mapping.

Modules and engines name them ``s3_endpoint_url``, ``s3_region``,
``s3_access_key``, ``s3_secret_key``, ``s3_session_token`` (how to reach the
store) and ``storage_class``, ``sse``, ``sse_kms_key_id`` (how to store
artifacts). The agent's configuration (its ``s3:`` section) and the roles
name the connection options without the ``s3_`` prefix (``endpoint_url``,
...) and the storage options alike. The modules' argument specs (argspec.S3,
S3_CONNECTION) list the same names; a unit test keeps them in step.
"""

S3_CONNECTION_OPTIONS = ("s3_endpoint_url", "s3_region", "s3_access_key", "s3_secret_key", "s3_session_token")
S3_STORAGE_OPTIONS = ("storage_class", "sse", "sse_kms_key_id")
S3_OPTIONS = S3_CONNECTION_OPTIONS + S3_STORAGE_OPTIONS
_PREFIX = "s3_"


def s3_options(params, connection_only=False):
    """The S3 options set (not None) in ``params``, as open_repository() takes them.

    ``connection_only``: only those that reach the store, for engines that read and never upload.
    """
    names = S3_CONNECTION_OPTIONS if connection_only else S3_OPTIONS
    return dict((k, params[k]) for k in names if params.get(k) is not None)


def option_name(agent_key):
    """The engine's name of a key of the agent's or a role's ``s3`` settings (``endpoint_url`` -> ``s3_endpoint_url``)."""
    return _PREFIX + agent_key if _PREFIX + agent_key in S3_CONNECTION_OPTIONS else agent_key


def agent_key(option):
    """The agent's and the roles' name of an engine S3 option (``s3_endpoint_url`` -> ``endpoint_url``)."""
    return option[len(_PREFIX):] if option in S3_CONNECTION_OPTIONS else option


def from_agent(settings, connection_only=False):
    """The engine's S3 options from the agent's ``s3:`` settings (other keys, such as secret_key_file, dropped)."""
    return s3_options(dict((option_name(k), v) for k, v in (settings or {}).items()), connection_only)


def to_agent(params):
    """The agent's and the roles' ``s3`` settings from the S3 options set in ``params`` (module option names)."""
    return dict((agent_key(k), v) for k, v in s3_options(params).items())
