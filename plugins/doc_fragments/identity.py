# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # A key folder of one identity file per tenant (argspec.IDENTITY's identity_dir): lifeboat.backup.identity
    DOCUMENTATION = r"""
options:
  identity_dir:
    description:
      - A key folder on the host that runs the module, holding one age identity file per tenant,
        C(<identity_dir>/<tenant>.key) (as M(lifeboat.backup.age_encrypt) with C(state=keypair) and C(tenants) writes it),
        for tenants whose artifacts are encrypted to keys of their own.
      - Each tenant's artifacts are decrypted with its own file there and, when given, the repository-wide identity
        (O(identity), O(identity_file) or E(BACKUP_PRIVATE_KEY)), which opens the shared parts, the globals and the
        tenants without a key of their own. A schema tenant's restore also reads C(_shared_<database>.key) when it exists.
      - A tenant with neither its own file nor a repository-wide identity fails alone, with a message that names it and
        the file expected; the other tenants go on.
      - Keep key folders on the controller or a verifier, never on database hosts.
    type: path
"""
