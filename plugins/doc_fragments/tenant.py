# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Which tenant and where it is stored (argspec.TENANT), shared by the modules that work on one tenant.
    # A module that says more about an option gives only that option's description.
    DOCUMENTATION = r"""
options:
  tenant:
    description:
      - The tenant, matching C(^[a-z0-9][a-z0-9_-]{0,62}$).
    type: str
  engine:
    description:
      - What the tenant is stored in.
    type: str
    choices: [postgresql, sqlite]
    default: postgresql
  database:
    description:
      - The PostgreSQL database of the tenant. Defaults to the tenant's name.
    type: str
  schema:
    description:
      - For tenant-per-schema layouts, the schema holding the tenant in O(database).
    type: str
  path:
    description:
      - The SQLite database file of the tenant (O(engine=sqlite)).
    type: path
"""
