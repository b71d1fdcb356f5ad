# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's settings as the roles and the agent name them: lifeboat.backup.agent_s3.

The fleet variable lifeboat_s3 uses the modules' option names (s3_endpoint_url,
s3_region, s3_access_key, s3_secret_key, storage_class, ...), which the playbooks give to
the modules; the roles (backup_host_s3, verifier_s3) and the agent's s3 settings name
them without the s3_ prefix (endpoint_url, ...). The engine's one mapping (s3.to_agent)
does it.
"""

from __future__ import annotations

from ansible_collections.lifeboat.backup.plugins.module_utils.s3 import S3_OPTIONS, to_agent

_PREFIX = "s3_"


def agent_s3(settings):
    """``settings`` (lifeboat_s3, the modules' option names) as the roles' and the agent's s3 settings.

    The modules' S3 options that are set go through the engine's mapping; any other key
    (one only the agent knows, such as s3_secret_key_file) loses its s3_ prefix alike.
    """
    settings = settings or {}
    out = to_agent(settings)
    for key, value in settings.items():
        if key not in S3_OPTIONS:
            out[key[len(_PREFIX):] if key.startswith(_PREFIX) else key] = value
    return out


class FilterModule(object):
    """lifeboat.backup's settings filters."""

    def filters(self):
        return {"agent_s3": agent_s3}
