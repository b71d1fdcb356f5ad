#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_info
short_description: Read what a repository holds per tenant, and which artifact is the newest verified one
version_added: 0.1.0
description:
  - Read-only. For a repository (a local folder or C(s3://bucket/prefix)), returns per tenant the newest complete
    artifact (C(latest)) and the newest verified one (C(latest_verified)), with their location, stamp, format, stored
    size, verify status and time, and a summary of their manifests (engine, source server version, start and end,
    sizes, recipients' public keys, tool version); the counts of complete and incomplete artifacts; and, over all of
    them, the PostgreSQL major version a restore needs.
  - C(latest_verified) is chosen exactly as O(lifeboat.backup.backup_restore#module:artifact=latest_verified) chooses
    it, so a playbook can show the choice first and then restore that very artifact by name.
  - The newest verified artifact is the newest complete one whose C(.verify.json) record (written by
    M(lifeboat.backup.backup_verify)) says C(PASS), names it, and records the SHA-256 its manifest holds now. An
    artifact rekeyed or replaced after its verification is not verified anymore until it is verified again.
  - Nothing is written and no secret is returned (manifests and records hold public keys and host names only).
author:
  - Lifeboat maintainers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.backup.s3
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same result.
  diff_mode:
    support: none
    description: Nothing changes.
options:
  repository:
    description:
      - The repository, a local folder or C(s3://bucket/prefix) with the S3 options.
    type: str
    required: true
  tenants:
    description:
      - The tenants to report on. Unset means every tenant of the repository except the C(_globals_<host>)
        pseudo-tenants (see O(include_globals)).
      - A tenant given here that the repository does not hold is reported with C(present=false).
    type: list
    elements: str
  include_globals:
    description:
      - Also report the C(_globals_<host>) pseudo-tenants (the servers' roles and grants), marked with
        C(pseudo_tenant=true) and C(kind=globals).
    type: bool
    default: false
notes:
  - Reads one verify record (and manifest) per complete artifact from the newest down to the first verified one; on
    S3 that is a few small GET requests per tenant.
seealso:
  - module: lifeboat.backup.backup_verify
  - module: lifeboat.backup.backup_restore
"""

EXAMPLES = r"""
- name: What can be restored, and from which PostgreSQL version
  lifeboat.backup.backup_info:
    repository: s3://lifeboat-backups/prod
    s3_region: eu-west-1
    tenants: [acme, globex]
    include_globals: true
  register: info

- name: Restore the artifact backup_info chose
  lifeboat.backup.backup_restore:
    tenant: acme
    repository: s3://lifeboat-backups/prod
    artifact: "{{ info.tenants.acme.latest_verified.artifact }}"
    identity_file: /root/lifeboat-identity.txt
  when: info.tenants.acme.latest_verified is not none
"""

RETURN = r"""
repository:
  description: The repository read.
  returned: always
  type: str
  sample: s3://lifeboat-backups/prod
repository_kind:
  description: C(local) or C(s3).
  returned: always
  type: str
tenant_names:
  description: The tenants reported, in order.
  returned: always
  type: list
  elements: str
tenants:
  description:
    - Per tenant name, C(tenant), C(kind) (C(tenant) or C(globals)), C(pseudo_tenant), C(present) (the repository
      holds any artifact of it), C(artifacts_complete), C(artifacts_incomplete), C(newest_is_incomplete),
      C(pg_major_needed), C(latest), C(latest_verified), and C(latest_verified_error) (when there is no verified
      artifact, what to do).
    - C(latest) and C(latest_verified) are null or dicts with C(artifact) (file name), C(location), C(manifest),
      C(stamp), C(snapshot_at), C(format), C(compressed), C(encrypted), C(size_stored), C(complete), C(verify_record),
      C(verify_status), C(verified_at), C(verified) (the record proves these bytes), C(verify_note),
      C(pg_major_needed) and C(manifest_summary) (C(engine), C(format), C(source_server_version),
      C(source_pg_dump_version), C(source_database), C(source_schema), C(snapshot_at), C(started_at),
      C(finished_at), C(rekeyed_at), C(size_raw), C(size_stored), C(sha256), C(compression), C(recipients),
      C(tool_version), C(backup_host), C(tables), C(pg_major_needed)). C(latest_verified) also has C(skipped),
      the newer complete artifacts passed over with the reason.
  returned: always
  type: dict
missing:
  description: Tenants asked for in O(tenants) of which the repository holds no artifact.
  returned: always
  type: list
  elements: str
unverified:
  description: Tenants with artifacts but no verified one.
  returned: always
  type: list
  elements: str
globals_tenants:
  description: The C(_globals_<host>) pseudo-tenants the repository holds (reported only with O(include_globals)).
  returned: always
  type: list
  elements: str
pg_major_needed:
  description: The newest PostgreSQL major version among the sources and C(pg_dump) versions of the reported
    C(latest) and C(latest_verified) artifacts; a restore needs C(pg_restore) (and a server) at least this new.
    V(0) when no PostgreSQL artifact is reported.
  returned: always
  type: int
  sample: 15
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import argspec
from ansible_collections.lifeboat.backup.plugins.module_utils import info as engine
from ansible_collections.lifeboat.backup.plugins.module_utils.errors import LifeboatError


def main():
    module = AnsibleModule(
        argument_spec=argspec.merged(
            argspec.S3_CONNECTION,
            repository=dict(type="str", required=True),
            tenants=dict(type="list", elements="str"),
            include_globals=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    try:
        result = engine.run(dict(module.params), check_mode=module.check_mode)
    except LifeboatError as e:
        module.fail_json(**argspec.failure(e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
