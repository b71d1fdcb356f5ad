#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_backup
short_description: Back up a tenant (PostgreSQL database or schema, or SQLite file) into a repository
version_added: 0.1.0
description:
  - Backs up one tenant, and optionally the server's globals (roles and grants, C(pg_dumpall --globals-only)),
    into a repository, streaming dump, zstd and age with bounded memory.
  - PostgreSQL tenants are dumped with C(pg_dump -Fc -Z0) on an exported snapshot; row counts per table
    are taken in that same snapshot and recorded in the manifest. Their plaintext never reaches the disk.
  - SQLite tenants are copied with SQLite's online backup API (consistent while writers are active) into a
    private 0700 temporary folder that is always removed.
  - The artifact is written under a temporary name, fsynced and published by rename; the manifest (SHA-256,
    sizes, row counts, recipients' public keys, versions) is written last. A failure at any point leaves no
    artifact under its final name and no manifest.
  - A lock in the tenant's folder keeps two backups of one tenant from overlapping.
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment:
  - lifeboat.backup.connection
  - lifeboat.backup.connection.pg_tools
  - lifeboat.backup.repository
  - lifeboat.backup.repository.recipients
  - lifeboat.backup.s3
  - lifeboat.backup.s3.storage
  - lifeboat.backup.tenant
attributes:
  check_mode:
    support: full
    description: Validates the options, reaches the source and the repository read-only, and says what it would write.
  diff_mode:
    support: full
    description: Shows the artifact names before and after.
options:
  tenant:
    description:
      - The tenant, matching C(^[a-z0-9][a-z0-9_-]{0,62}$). Required unless O(globals=true) alone.
  schema:
    description:
      - For tenant-per-schema layouts, the schema holding the tenant in O(database); only that schema is dumped.
  allow_unencrypted:
    description:
      - Store plaintext artifacts when neither O(recipients) nor O(recipients_file) is given.
        Without it, a missing recipient is an error.
    type: bool
    default: false
  schemas:
    description:
      - Back up these schema tenants of O(database) in one pass, on one snapshot, instead of one O(tenant).
        Each entry is a dictionary with the keys C(tenant) and C(schema) (the schema defaults to the tenant's
        name), or just the tenant's name.
      - An entry may have recipients of its own, C(recipients) or C(recipients_file), which replace O(recipients)
        and O(recipients_file) for that tenant's artifact (C(recipients_mode=add) adds them instead). The shared
        part is always encrypted to O(recipients) and O(recipients_file).
      - Each tenant still gets its own artifact, manifest, row counts and lock, exactly as with O(tenant); the
        artifacts are cut from a few C(pg_dump -n ...) streams (sized to the server's lock table) instead of one
        C(pg_dump) per tenant, so a database of thousands of schema tenants reads its catalog a few times, not
        thousands. See C(docs/PERFORMANCE.md).
      - One tenant's failure does not stop the others; the task fails afterwards and lists it in RV(failed_tenants).
      - Mutually exclusive with O(tenant), O(schema) and O(path).
    type: list
    elements: raw
  shared:
    description:
      - With O(schemas), also back up the shared part of O(database), everything that is not one of the tenant
        schemas (extensions, C(public) tables the tenants reference, shared functions and types, other schemas,
        large objects), first and on the same snapshot, as the pseudo-tenant C(_shared_<database>). Each tenant's
        manifest then names the shared artifact it was taken with; verification and restores into a database
        that lacks the shared part restore it first.
      - Defaults to V(true) with O(schemas). Only with O(schemas), so that the shared part never holds a
        tenant schema.
    type: bool
  shared_exclude:
    description:
      - Schema name patterns (shell globs such as V(t_*)) to leave out of the shared part besides O(schemas),
        for example tenant schemas that another pass backs up.
    type: list
    elements: str
  tenants:
    description:
      - Back up many tenants of this host in one call instead of one task per tenant (which pays Ansible's module
        start-up for each). Each entry is a dictionary with C(tenant) and the tenant's own options of a single
        call, C(engine), C(database), C(schema), C(path), and optionally its own C(recipients) or
        C(recipients_file) (both replace the shared O(recipients) and O(recipients_file) for that tenant, so that
        destroying the tenant's key erases it; with C(recipients_mode=add) its artifacts are encrypted to both) and
        C(compression_level). The other options (repository, connection, S3, compression, O(skip_if_newer_than)...)
        are shared by every entry.
      - The list is checked as a whole before anything runs; a bad entry (an unknown key, a bad or repeated name, a
        value of the wrong type) fails the task naming it (for example C(tenants[3].scheme)), and nothing is backed
        up. A tenant whose options do not fit (a SQLite tenant without C(path)) is that tenant's failed row, as a
        single call would fail.
      - Each database or SQLite tenant is backed up in a worker process of its own, at most O(parallel) at a time;
        the schema tenants of one database are backed up together by one pass (as with O(schemas), with the
        database's shared part first), which is one worker. Their C(compression_level) must then be the same;
        each keeps its own recipients, and the shared part is encrypted to the shared O(recipients).
      - One tenant's failure does not stop the others; the task fails afterwards (not in check mode), and
        RV(rows) says what happened to each tenant.
      - Mutually exclusive with O(tenant), O(database), O(schema), O(path), O(schemas) and O(globals) (back up the
        globals with a call of their own).
    type: list
    elements: dict
  parallel:
    description:
      - With O(tenants), how many tenants (or passes over the schema tenants of a database) are backed up at once,
        1 to 64. One per core is a good start.
    type: int
    default: 2
  compression:
    description:
      - C(zstd) compresses before encryption; C(none) stores the dump as it is.
    type: str
    choices: [zstd, none]
    default: zstd
  compression_level:
    description:
      - zstd level, 1 (fastest) to 19 (smallest).
      - The default V(1) keeps the backup close to C(pg_dump)'s own speed on a busy database host; level 3 makes
        artifacts about 5 % smaller for about four times the compression CPU (see C(docs/PERFORMANCE.md)).
    type: int
    default: 1
  compression_threads:
    description:
      - zstd worker threads; V(0) means one per CPU, at most two.
    type: int
    default: 0
  globals:
    description:
      - Also back up the server's globals (roles, role memberships, grants on databases and tablespaces) as a
        C(globals) artifact of the pseudo-tenant C(_globals_<host>).
      - With no O(tenant), back up only the globals.
    type: bool
    default: false
  role_passwords:
    description:
      - Include role passwords in the globals artifact. Reading them needs a superuser; set V(false) for a
        non-superuser backup role (C(pg_dumpall --no-role-passwords)).
    type: bool
    default: true
  skip_if_newer_than:
    description:
      - Skip (C(changed=false)) when the newest complete artifact of the tenant is younger than this, for an
        idempotent nightly task. Seconds, or a number with C(s), C(m), C(h), C(d) or C(w), for example C(20h).
    type: str
  lock_timeout:
    description:
      - Seconds to wait for another backup of the same tenant to finish before failing.
    type: int
    default: 0
  tmp_dir:
    description:
      - Where SQLite snapshots are made (a private 0700 folder inside it, removed afterwards). Defaults to E(TMPDIR).
    type: path
seealso:
  - name: DESIGN of lifeboat.backup artifacts
    description: The artifact layout and manifest contents.
    link: https://example.invalid/lifeboat/backup/docs/DESIGN.md
"""

EXAMPLES = r"""
- name: Nightly backup of a database tenant, idempotent within 20 hours
  lifeboat.backup.pg_backup:
    tenant: acme
    repository: /var/backups/lifeboat
    recipients_file: /etc/lifeboat/recipients.txt
    login_unix_socket: /var/run/postgresql
    skip_if_newer_than: 20h

- name: A tenant stored as a schema of a shared database, with the server's globals
  lifeboat.backup.pg_backup:
    tenant: globex
    database: saas
    schema: globex
    globals: true
    repository: /var/backups/lifeboat
    recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    login_host: db1.example.com
    login_user: backup
    login_password: "{{ vault_backup_password }}"

- name: Nightly backup into S3, age-encrypted, with SSE-KMS
  lifeboat.backup.pg_backup:
    tenant: acme
    repository: s3://acme-backups/lifeboat
    s3_region: eu-west-1
    sse: aws:kms
    sse_kms_key_id: alias/backups
    recipients_file: /etc/lifeboat/recipients.txt
    skip_if_newer_than: 20h

- name: Every tenant of this host in one call, two at a time
  lifeboat.backup.pg_backup:
    tenants:
      - {tenant: acme}
      - {tenant: globex, database: saas, schema: globex}
      - {tenant: umbrella, database: saas, schema: umbrella}
      - {tenant: initech, engine: sqlite, path: /srv/app/tenants/initech.db}
    parallel: 2
    repository: /var/backups/lifeboat
    recipients_file: /etc/lifeboat/recipients.txt
  register: backups
  ignore_errors: true  # a failed tenant fails the task after the others are done; see backups.rows

- name: A SQLite tenant
  lifeboat.backup.pg_backup:
    tenant: initech
    engine: sqlite
    path: /srv/app/tenants/initech.db
    repository: /var/backups/lifeboat
    recipients_file: /etc/lifeboat/recipients.txt
"""

RETURN = r"""
artifact:
  description: Path of the tenant's artifact written (or, when skipped, the newest one).
  returned: when a tenant was given
  type: str
  sample: /var/backups/lifeboat/acme/acme-20260101T030000Z.pgdump.zst.age
manifest:
  description: Path of its manifest.
  returned: when an artifact was written
  type: str
globals_artifact:
  description: Path of the globals artifact, when O(globals=true).
  returned: always
  type: str
skipped:
  description: True when O(skip_if_newer_than) found a fresh enough artifact.
  returned: always
  type: bool
size_raw:
  description: Bytes of the dump before compression and encryption.
  returned: when an artifact was written
  type: int
size_stored:
  description: Bytes stored in the repository.
  returned: when an artifact was written
  type: int
sha256:
  description: SHA-256 of the stored bytes.
  returned: when an artifact was written
  type: str
seconds:
  description: Duration of the backup.
  returned: when an artifact was written
  type: float
mb_per_s:
  description: Raw megabytes (10^6 bytes) per second.
  returned: when an artifact was written
  type: float
tables:
  description: Number of tables whose rows were counted.
  returned: when an artifact was written
  type: int
artifacts:
  description: One entry per artifact considered (the tenant's, the shared part's, and the globals), with its
    action (V(written), V(skip), V(would write), V(failed)) and figures.
  returned: always
  type: list
  elements: dict
failed_tenants:
  description: With O(schemas), the tenants whose backup failed, each with its error.
  returned: with O(schemas)
  type: list
  elements: dict
shared_artifact:
  description: With O(schemas), the shared part's artifact written in this run.
  returned: with O(schemas)
  type: str
rows:
  description:
    - Without O(tenants), the sum of the row counts recorded in the manifest (an integer, when an artifact was
      written).
    - With O(tenants), a list of one entry per tenant, in the list's order (the schema tenants of a database where the first
      of them is listed, after their database's shared part C(_shared_<database>)), each with C(tenant),
      C(failed), C(msg) (when it failed), C(option), C(started), C(finished) (UTC, ISO 8601 with milliseconds) and
      C(seconds).
    - A database or SQLite tenant's entry holds what a single call returns for it (RV(artifact), RV(size_stored),
      RV(skipped), RV(artifacts)...); a schema tenant's, and the shared part's, hold its entry of RV(artifacts)
      (C(action), C(artifact), C(size_stored)...).
  returned: when an artifact was written, or with O(tenants)
  type: raw
  sample:
    - {tenant: acme, failed: false, artifact: /var/backups/lifeboat/acme/acme-20260101T030000Z.pgdump.zst.age,
       size_stored: 18211, seconds: 0.084, started: "2026-01-01T03:00:00.012Z", finished: "2026-01-01T03:00:00.101Z"}
    - {tenant: gone, failed: true, msg: "Cannot connect to database 'gone' ...", option: database, seconds: 0.02}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import backup as engine
from ansible_collections.lifeboat.backup.plugins.module_utils import backup_batch
from ansible_collections.lifeboat.backup.plugins.module_utils import module_main


def _diff(result):
    if isinstance(result.get("rows"), list):  # tenants: the union of the rows' (a pass's tenant's row is its artifact entry)
        artifacts = [a for r in result["rows"] for a in (r.get("artifacts") or ([r] if r.get("action") else []))]
    else:
        artifacts = result["artifacts"]
    return {
        "before": {"artifacts": []},
        "after": {"artifacts": [a["artifact"] for a in artifacts if a["action"] in ("written", "would write") and a.get("artifact")]
                  or [a["tenant"] + " (new artifact)" for a in artifacts if a["action"] == "would write"]},
    }


def main():
    module = AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs())
    result = module_main.run_engine(module, backup_batch.run)
    rows = result.get("rows") if module.params["tenants"] is not None else None  # else the tenant's row count
    failed = result.get("failed_tenants") or any(r.get("failed") for r in rows or [])
    if failed and not module.check_mode:
        module.fail_json(**result)
    module_main.exit_with(module, result, diff=_diff)


if __name__ == "__main__":
    main()
