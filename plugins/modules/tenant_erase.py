#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tenant_erase
short_description: Erase one tenant from a repository by destroying its keys (crypto-shredding)
version_added: 0.2.0
description:
  - Erases one tenant (a GDPR Article 17 request, a contract's end) from one repository, a local folder or
    C(s3://bucket/prefix), while the other tenants' artifacts stay as they are.
  - First checks that every artifact of the tenant (each version on a versioned bucket) is encrypted only to the
    tenant's own recipients (O(tenant_recipients) and the public keys of the identities to destroy). When one is
    unencrypted or also encrypted to another key (a shared repository key), or when object lock keeps a copy whose
    recipients no manifest proves, it refuses and changes nothing; the message lists those artifacts and how to rekey
    them first (M(lifeboat.backup.age_encrypt) with C(state=rekeyed)).
  - Then writes the erasure record C(<tenant>-<stamp>.erasure.json) into the tenant's folder (who, when, the
    request's O(reference), every artifact with its SHA-256, what is deleted and what object lock keeps until when),
    destroys the identity files given (overwritten, fsynced, unlinked, the folder fsynced) and deletes every object of
    the tenant that object lock allows, all versions included. Locked objects stay until their lock ends,
    unreadable, as no identity able to decrypt them is left in lifeboat's care.
  - Idempotent. A second run finds the record, deletes what has become deletable and reports the tenant as already
    erased. From then on M(lifeboat.backup.backup_verify), M(lifeboat.backup.backup_prune),
    M(lifeboat.backup.backup_info), the agent and C(dr_restore.yml) report the tenant as erased, prune deletes the
    kept objects once their locks end, and M(lifeboat.backup.pg_backup) refuses to back up the erased name.
  - Without O(repository), only destroys the identity files given (the controller's key folder).
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment: [lifeboat.backup.s3]
attributes:
  check_mode:
    support: full
    description: The same check and plan (the refusal too); no record written, no key destroyed, nothing deleted.
  diff_mode:
    support: full
    description: The tenant's objects and identity files before and after.
options:
  tenant:
    description:
      - The tenant to erase. Pseudo-tenants (C(_globals_*), C(_shared_*)) belong to no one tenant and cannot be erased.
    type: str
    required: true
  repository:
    description:
      - The repository, a local folder or C(s3://bucket/prefix). Unset means only the identity files are destroyed.
    type: str
  tenant_recipients:
    description:
      - The tenant's own public keys (C(age1...)), besides those of the identities in O(identity_file) and
        O(identity_dir). An artifact encrypted to any other recipient makes the erasure refuse.
    type: list
    elements: str
  identity_file:
    description:
      - The tenant's identity files to destroy where lifeboat keeps them. Their public keys count as the tenant's own
        recipients. A file already gone is reported, not an error.
    type: list
    elements: path
  identity_dir:
    description:
      - A key folder with one identity file per tenant; C(<identity_dir>/<tenant>) and C(<identity_dir>/<tenant>.*)
        (except C(*.pub)) are destroyed as with O(identity_file).
    type: path
  requested_by:
    description:
      - Who asked for the erasure, for the record. Unset means C(user@host) of the run.
    type: str
  reference:
    description:
      - The request's reference for the record, for example a ticket number.
    type: str
  allow_missing:
    description:
      - Erase (write the record, destroy the keys) although the repository holds nothing of the tenant. Without it
        a tenant with nothing in the repository is refused, so that a typo never writes a record for a wrong name.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for the tenant's lock (held by a running backup, prune or restore) before giving up.
    type: int
    default: 0
  report:
    description:
      - Write the result as JSON to this path (0600). Written in check mode too.
    type: path
notes:
  - Copies of a key outside lifeboat's care (another machine, a password manager, a backup of the key folder) can
    still decrypt the kept artifacts; the erasure record names the tenant. See docs/RELIABILITY.md, "Erasure".
seealso:
  - module: lifeboat.backup.age_encrypt
  - module: lifeboat.backup.backup_prune
"""

EXAMPLES = r"""
- name: Erase acme (its key is in the controller's key folder)
  lifeboat.backup.tenant_erase:
    tenant: acme
    repository: s3://backups/db1
    identity_dir: /etc/lifeboat/keys
    reference: GDPR-2026-117

- name: What would be erased, and would it refuse?
  lifeboat.backup.tenant_erase:
    tenant: acme
    repository: /var/backups/lifeboat
    tenant_recipients: [age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq]
  check_mode: true
"""

RETURN = r"""
erased:
  description: Whether the tenant is erased in the repository (in check mode, would be).
  returned: always
  type: bool
already_erased:
  description: The repository already held an erasure record of the tenant.
  returned: always
  type: bool
record:
  description: Where the erasure record is (in check mode, would be written).
  returned: when a repository is given
  type: str
deleted:
  description: The objects deleted (in check mode, that would be), with kind, version and size.
  returned: always
  type: list
  elements: dict
kept:
  description: The objects object lock keeps, with what holds them and C(locked_until).
  returned: always
  type: list
  elements: dict
artifacts:
  description: Every artifact of the tenant the manifests name, with its SHA-256 and recipients.
  returned: always
  type: list
  elements: dict
identity_files:
  description: The identity files looked at, whether they were present, and their public keys.
  returned: always
  type: list
  elements: dict
identities_left:
  description: Identity files of the tenant still present where lifeboat was told to look (none after a real run).
  returned: always
  type: list
  elements: str
report_path:
  description: Where the JSON report was written.
  returned: when O(report) is set
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import erasure as engine
from ansible_collections.lifeboat.backup.plugins.module_utils import module_main


def _diff(result):
    before = sorted(o["name"] for o in result["deleted"] + result["kept"]) + sorted(
        k["path"] for k in result["identity_files"] if k["present"])
    after = sorted(o["name"] for o in result["kept"])
    return {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"}


def main():
    module_main.run(AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs()), engine.run, diff=_diff)


if __name__ == "__main__":
    main()
