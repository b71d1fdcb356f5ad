#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_restore
short_description: Restore a tenant (PostgreSQL database or schema, or SQLite file), and a server's roles, from artifacts
version_added: 0.1.0
description:
  - Restores one tenant from an artifact written by M(lifeboat.backup.pg_backup), either fully or not at all, and
    says which. The target ends with the complete restored data, or with what it held before.
  - A database tenant is restored with C(pg_restore --no-owner --no-privileges) into a fresh database whose name
    is derived from a hash (C(lb_r_...)); the stored bytes are checked against the manifest's SHA-256 and sizes,
    pg_restore's messages are checked (any error fails the task, quoting the first errors), and the restored row
    counts are compared with the manifest's. Only then the target is renamed to a safety copy (C(lb_s_...)) and
    the fresh database to the target, in one transaction. The safety copy is kept after the swap succeeded (its
    name and how to get it back are in RV(safety_copy)), unless O(keep_safety_copy=false). The target's owner,
    database grants, settings and comment are carried over. A new target gets the source database's settings,
    comment and connection limit, its grants with O(privileges=true) (without, a warning gives the statements) and
    its owner with O(owners=true), as the manifest recorded them.
  - A schema tenant (its artifact records a schema) is restored into its own schema name in O(target_database),
    in one transaction that is committed only after the same checks passed; a failure, or the death of the
    restoring process, rolls it back.
  - A SQLite tenant is restored into a temporary file beside the target, checked (SHA-256, C(integrity_check), row
    counts) and renamed over the target.
  - With O(jobs=1) the plaintext never reaches the disk (artifact, age, zstd and pg_restore are streamed). With
    O(jobs) above 1, the archive is decrypted into a private 0700 temporary folder, always removed, because
    C(pg_restore --jobs) needs a seekable file.
  - With O(globals_artifact), the server's roles are restored first (from a C(pg_dumpall --globals-only)
    artifact, in one transaction), so that O(privileges=true) can restore the tenant's grants.
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment: [lifeboat.backup.identity, lifeboat.backup.connection, lifeboat.backup.connection.pg_tools,
                                 lifeboat.backup.s3, lifeboat.backup.tenant]
attributes:
  check_mode:
    support: full
    description: Reads the artifacts' manifests, checks the identity against their recipients, inspects the target
      read-only and says what would be replaced. With O(globals_artifact), the (small) globals artifact is decrypted
      in memory to list the roles that would be created.
  diff_mode:
    support: full
    description: Shows what the target held before and what it holds after.
options:
  tenant:
    description:
      - The tenant to restore, matching C(^[a-z0-9][a-z0-9_-]{0,62}$). Required unless O(globals_artifact) alone.
      - With O(artifact=latest), the newest complete artifact of this tenant in O(repository) is restored.
  database:
    description:
      - The tenant's database. Defaults to the tenant's name; it is the default O(target_database).
      - For a schema tenant, the shared database holding the schema; defaults to the one the artifact was taken from.
  schema:
    description:
      - For a schema tenant, its schema. Optional (the artifact records it); when set, it must be the artifact's
        schema, since a schema tenant is restored into its own schema name.
  path:
    description:
      - The tenant's SQLite file (O(engine=sqlite)); the default O(target_path).
  repository:
    description:
      - Where the artifacts are, a local folder or C(s3://bucket/prefix). Required with O(artifact=latest) or
        O(globals_artifact=latest).
    type: str
  artifact:
    description:
      - V(latest) (the newest artifact of O(tenant) that has its manifest), V(latest_verified) (the newest
        complete artifact that M(lifeboat.backup.backup_verify) proved restorable), the file name of an artifact in
        O(repository), the C(s3://bucket/prefix/<tenant>/<artifact>) URL of an artifact, or the local path of an
        artifact (its manifest must be beside it).
      - With V(latest_verified), the artifact's C(.verify.json) record must say C(PASS), name the artifact and
        record the SHA-256 its manifest holds now (records written before the SHA-256 was recorded must not be
        older than the manifest). An artifact rekeyed or replaced after its verification is not verified anymore
        until M(lifeboat.backup.backup_verify) checks it again. When no artifact qualifies, the task fails naming
        the tenant and what to do (verify, or restore V(latest)).
      - Local and C(s3://) repositories alike.
      - An artifact without its manifest is incomplete and never restored.
    type: str
    default: latest
  identity:
    description:
      - The age identity (C(AGE-SECRET-KEY-1...) lines, or an unencrypted SSH private key) that decrypts the
        artifacts. Never logged or returned.
      - Without O(identity) and O(identity_file), the environment variable E(BACKUP_PRIVATE_KEY) is used.
    type: str
  identity_file:
    description:
      - A file holding the age identity, as written by C(age-keygen).
    type: path
  target_database:
    description:
      - The database to restore into (O(engine=postgresql)). Defaults to O(database), else the tenant's name.
      - For a schema tenant, the database the schema is restored into; it is created when missing.
    type: str
  target_path:
    description:
      - The SQLite file to restore into (O(engine=sqlite)). Defaults to O(path).
    type: path
  force:
    description:
      - Replace the tenant's own target when it is not empty. Without it, a non-empty target is refused and nothing
        is changed.
      - The tenant's own target is the database (or schema, or SQLite file) it is configured with (O(database),
        else the tenant's name; O(path)) or that the artifact's manifest names as its source. Any other existing,
        non-empty target also needs O(replace_target).
      - Never replaced, whatever the options, C(postgres), templates, a file that is not a SQLite database, and a
        database or schema that holds another tenant's data (the source of another tenant's newest artifact in
        the same repository).
    type: bool
    default: false
  replace_target:
    description:
      - The name of a non-empty target that is not the tenant's own (O(target_database), or O(target_path) for
        SQLite), given a second time to replace it on purpose, so that one mistyped name cannot. Needs O(force).
    type: str
  source_tenant:
    description:
      - Restore an artifact of this other tenant as O(tenant) (a tenant move). Without it, an artifact whose tenant
        is not O(tenant) (by its name and its manifest) is refused before anything is touched.
    type: str
  jobs:
    description:
      - Parallel C(pg_restore) jobs for a database tenant. V(1) streams with no plaintext on disk; more decrypts
        the archive into a private 0700 temporary folder in O(tmp_dir) first, removed afterwards in all cases.
      - A schema tenant is restored in one transaction, and a SQLite tenant by rename, both with one job.
    type: int
    default: 1
  terminate_connections:
    description:
      - End the client sessions connected to the target database at the moment of the swap (database tenants),
        or the sessions that use the target schema (schema tenants), with C(pg_terminate_backend).
      - Without it, such sessions make the task fail, naming them (pid, user, application, address), before
        anything is changed.
    type: bool
    default: false
  allow_create_in_dump:
    description:
      - Restore with C(pg_restore --create) into the database name recorded in the archive (with its encoding,
        locale, comment and settings), instead of into O(target_database). An existing database of that name is
        renamed to the safety copy first (needs O(force=true) when it is not empty) and renamed back on failure.
    type: bool
    default: false
  privileges:
    description:
      - Restore the archive's grants (C(GRANT), C(REVOKE)); without it, C(pg_restore --no-privileges).
      - The roles they name must exist; restore them first with O(globals_artifact).
      - Object owners are restored only with O(owners=true); otherwise the restored objects belong to O(login_user).
    type: bool
    default: false
  owners:
    description:
      - Restore the owners of the archive's objects (tables, sequences, schemas, functions), so that an application
        role that owned its tables owns them again; without it, C(pg_restore --no-owner) and the objects belong to
        O(login_user).
      - The roles must exist (restore them first with O(globals_artifact)), and O(login_user) must be allowed to
        give objects to them (a superuser, or a member of each role). A missing role fails the restore, which
        then changes nothing.
      - Applies to engine C(postgresql).
    type: bool
    default: false
  keep_safety_copy:
    description:
      - Keep what the restore replaced after it succeeded. A database is kept under a derived name (C(lb_s_...)),
        a schema is renamed to a derived name (C(lb_s_...)) in its database, in the restore's transaction, and a
        SQLite file is kept beside the target. RV(safety_copy) names it and says how to get it back; the message
        says so too.
      - V(false) drops (or removes) it once the restore succeeded.
    type: bool
    default: true
  globals_artifact:
    description:
      - Restore a server's globals (roles, role memberships, role settings) first, from a C(globals) artifact
        written by M(lifeboat.backup.pg_backup) with O(lifeboat.backup.pg_backup#module:globals=true), given
        as V(latest), V(latest_verified) (as for O(artifact)) or as a path.
      - Roles that already exist are left as they are (the role this task logs in as keeps its password); missing
        roles are created with their attributes and password hashes, in one transaction.
    type: str
  globals_host:
    description:
      - With O(globals_artifact=latest) or V(latest_verified), the server whose globals to restore (the host name pg_backup recorded).
        Needed only when the repository holds globals of several servers.
    type: str
  tmp_dir:
    description:
      - Where the private temporary folder for O(jobs) above 1 is made. Defaults to E(TMPDIR).
    type: path
  tenants:
    description:
      - Many tenants in one task, instead of O(tenant) (one task per tenant pays Ansible's module start-up each
        time). Each entry is a dict with C(tenant) and that tenant's own options, each as in the single call
        (C(engine), C(database), C(schema), C(path), C(artifact), C(target_database), C(target_path), C(force),
        C(jobs), C(terminate_connections), C(allow_create_in_dump), C(privileges), C(owners), C(keep_safety_copy),
        C(replace_target), C(source_tenant), C(identity_file); never C(identity), since an entry is not secret and a key
        there would be logged, and is refused). The options given outside the entries
        (O(repository), O(artifact) as V(latest) or V(latest_verified), the connection, S3 and identity options,
        O(force), O(privileges), ...) are shared by every entry that does not give its own; a SQLite entry does not
        take the shared PostgreSQL-only ones (O(privileges), O(owners), O(terminate_connections),
        O(allow_create_in_dump)).
      - The list is checked whole before anything is restored (unknown keys, names, each entry's options, two
        entries with one target); an error names the entry (C(tenants[3].target_path)) and nothing is done.
      - Each tenant is restored as by the single call (the same checks, C(force), fresh database and swap, one
        transaction, rename), in its own worker process, at most O(parallel) at a time; a tenant that fails (or
        whose worker dies) is its row in RV(rows), and the others go on. Stopped (SIGTERM), the running restores
        roll back or finish and no more start, so each tenant is restored or as it was.
      - Tenants restored into the same database (the schema tenants of one database) do not race; the first one
        restores the database's shared part (and creates the database) first; the others start once one of them
        succeeded.
      - The task fails when any tenant failed (not in check mode, where the rows say what would fail).
      - Mutually exclusive with O(tenant), O(database), O(schema), O(path), O(target_database), O(target_path),
        O(replace_target), O(source_tenant), O(globals_artifact) and O(globals_host) (restore the roles first, in a
        task of their own).
    type: list
    elements: dict
  parallel:
    description:
      - With O(tenants), how many tenants are restored at once (1 to 64). Each restore is one C(pg_restore) (or a
        SQLite copy); one per core is a good start.
    type: int
    default: 2
notes:
  - Never drops a database it did not create in the same run, except the replaced target kept as the safety copy,
    which is kept after the restore succeeded (O(keep_safety_copy=false) drops it).
  - The safety copy and the fresh restore database carry derived names (C(lb_s_...), C(lb_r_...)) built from a
    hash, never by appending to the tenant's name, so they cannot collide with a 63-character tenant database.
  - A SQLite target opened by a process is refused (the process would go on using the old file); stop the
    application first.
seealso:
  - module: lifeboat.backup.pg_backup
"""

EXAMPLES = r"""
- name: Restore the newest backup of a tenant over its database (kept as safety copy until success)
  lifeboat.backup.backup_restore:
    tenant: acme
    repository: /var/backups/lifeboat
    identity_file: /root/lifeboat-identity.txt
    force: true
    terminate_connections: true
    login_unix_socket: /var/run/postgresql

- name: Restore the newest backup that backup_verify proved restorable, from S3
  lifeboat.backup.backup_restore:
    tenant: acme
    repository: s3://lifeboat-backups/prod
    artifact: latest_verified
    identity_file: /root/lifeboat-identity.txt
    login_unix_socket: /var/run/postgresql
  register: restored
  # restored.verified_at, restored.source_server_version, restored.snapshot_at

- name: Restore a given artifact into a new database, with four parallel jobs
  lifeboat.backup.backup_restore:
    tenant: acme
    artifact: /var/backups/lifeboat/acme/acme-20260101T030000Z.pgdump.zst.age
    target_database: acme_investigation
    jobs: 4
    identity: "{{ vault_lifeboat_identity }}"

- name: Disaster recovery on a fresh server, roles first, then the tenant with its grants
  lifeboat.backup.backup_restore:
    tenant: globex
    repository: /var/backups/lifeboat
    globals_artifact: latest
    globals_host: db1.example.com
    privileges: true
    login_host: db2.example.com
    login_user: postgres
    login_password: "{{ vault_pg_password }}"

- name: Rebuild a host's tenants, two at a time, each from its own artifact (one task for all of them)
  lifeboat.backup.backup_restore:
    repository: s3://lifeboat-backups/prod
    identity_file: /root/lifeboat-identity.txt
    privileges: true
    parallel: 2
    tenants:
      - {tenant: acme, database: acme, artifact: acme-20260101T030000Z.pgdump.zst.age}
      - {tenant: globex, database: saas, schema: globex, artifact: latest_verified}
      - {tenant: initech, engine: sqlite, path: /srv/initech.db}
  register: restored
  ignore_errors: true
  # restored.rows: one per tenant (failed, msg, artifact, target, seconds, ...); restored.msg says which failed

- name: Restore a SQLite tenant into a scratch file
  lifeboat.backup.backup_restore:
    tenant: initech
    engine: sqlite
    repository: /var/backups/lifeboat
    target_path: /srv/scratch/initech.db
"""

RETURN = r"""
artifact:
  description: Path of the tenant's artifact restored (or that would be).
  returned: when a tenant was given
  type: str
  sample: /var/backups/lifeboat/acme/acme-20260101T030000Z.pgdump.zst.age
manifest:
  description: Path of its manifest.
  returned: when a tenant was given
  type: str
artifact_info:
  description: The artifact's stamp, tenant, sizes and SHA-256 from its manifest, the source server's version
    (C(source_server_version)), the snapshot time (C(snapshot_at), UTC), C(finished_at) and the PostgreSQL major
    version a restore needs (C(pg_major_needed), 0 for SQLite).
  returned: when a tenant was given
  type: dict
selection:
  description: How the artifact was chosen. C(selected_by) (V(latest), V(latest_verified), or null for an artifact
    given by name or path), C(artifact_name), and with V(latest_verified) C(verify_status), C(verified_at),
    C(verifier_host) and C(skipped) (newer complete artifacts passed over, each with the reason).
  returned: when a tenant was given
  type: dict
verified_at:
  description: When M(lifeboat.backup.backup_verify) proved the restored artifact (UTC), with O(artifact=latest_verified);
    else null.
  returned: when a tenant was given
  type: str
  sample: "2026-01-01T04:10:00Z"
source_server_version:
  description: The version of the PostgreSQL server the artifact was taken from (null for SQLite).
  returned: when a tenant was given
  type: str
  sample: "15.8"
snapshot_at:
  description: When the artifact's snapshot was taken (the backup's start, UTC); the data-loss window ends here.
  returned: when a tenant was given
  type: str
  sample: "2026-01-01T03:00:00Z"
target:
  description: Where the tenant was restored (C(kind) database, schema or sqlite; C(server), C(database), C(schema),
    C(path)).
  returned: when a tenant was given
  type: dict
target_database:
  description: The database restored into (for a schema tenant, the database holding the schema); null for SQLite.
  returned: when a tenant was given
  type: str
target_path:
  description: The SQLite file restored into; null for PostgreSQL.
  returned: when a tenant was given
  type: str
replaced:
  description: What the target held before (C(existed), owner, size, C(contents) counts of tables, functions, ...).
  returned: when a tenant was given
  type: dict
safety_copy:
  description: The replaced database (C(database)) or SQLite file (C(path)) kept until the restore succeeded,
    whether it is C(kept), C(dropped) and when (C(dropped_at), UTC). Null when nothing was replaced, and for schema
    tenants (their safety is the transaction).
  returned: when a tenant was given
  type: dict
row_counts:
  description: Rows per table in the restored target, checked equal to the manifest's.
  returned: success, not in check mode
  type: dict
row_counts_match:
  description: True when the restored row counts equal the manifest's (otherwise the task fails).
  returned: success, not in check mode
  type: bool
tables:
  description: Number of tables restored.
  returned: success, not in check mode
  type: int
rows:
  description:
    - Without O(tenants), the sum of the restored row counts (an int; success, not in check mode).
    - With O(tenants), one dict per entry, in the list's order, whether it failed or not (also when the task
      fails) - what the single call returns for that tenant, and C(tenant), C(failed), C(msg) (when it failed),
      C(option), C(started) and C(finished) (UTC, ISO 8601 with milliseconds) and C(seconds).
  returned: success, not in check mode; always with O(tenants)
  type: raw
restored:
  description: With O(tenants), how many tenants were restored (0 in check mode).
  returned: with O(tenants)
  type: int
failed_tenants:
  description: With O(tenants), the tenants that failed (or would, in check mode).
  returned: with O(tenants)
  type: list
  elements: str
waves:
  description: With O(tenants), in how many waves the tenants ran (the tenants of one database after its first).
  returned: with O(tenants)
  type: int
terminated_sessions:
  description: Sessions ended because of O(terminate_connections).
  returned: success, not in check mode
  type: list
  elements: str
connected_sessions:
  description: Sessions connected to the target when the task started.
  returned: when a tenant was given
  type: list
  elements: str
globals:
  description: The globals artifact restored, C(roles_created) and C(roles_existing) (left as they were).
  returned: when O(globals_artifact) was given
  type: dict
seconds:
  description: Duration of the whole task.
  returned: always
  type: float
seconds_restore:
  description: Duration of the restore itself (decrypt, pg_restore, checks, swap).
  returned: success, not in check mode
  type: float
mb_per_s:
  description: Plaintext megabytes (10^6 bytes) restored per second.
  returned: success, not in check mode
  type: float
jobs:
  description: The O(jobs) asked for.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import module_main
from ansible_collections.lifeboat.backup.plugins.module_utils import restore as engine


def _diff(result):
    if not result.get("target"):
        return None
    after = {"artifact": result.get("artifact"), "target": result.get("target")}
    if result.get("row_counts") is not None:
        after["row_counts"] = result["row_counts"]
    return {"before": dict(result.get("replaced") or {}), "after": after}


def _diff_of_rows(result):
    """With tenants: each tenant's diff, under its name."""
    diffs = [(r["tenant"], _diff(r)) for r in result.get("rows") or []]
    diffs = [(tenant, d) for tenant, d in diffs if d is not None]
    if not diffs:
        return None
    return {"before": dict((t, d["before"]) for t, d in diffs), "after": dict((t, d["after"]) for t, d in diffs)}


def main():
    module = AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs())
    if module.params.get("tenants") is None:
        module_main.run(module, engine.run, diff=_diff)
        return
    result = module_main.run_engine(module, engine.run)
    if result["failed_tenants"] and not module.check_mode:
        if module._diff:
            result["diff"] = _diff_of_rows(result)
        module.fail_json(**result)
    module_main.exit_with(module, result, diff=_diff_of_rows)


if __name__ == "__main__":
    main()
