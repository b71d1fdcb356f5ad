#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_verify
short_description: Prove backups restorable by restoring them into a scratch target
version_added: 0.1.0
description:
  - Checks one artifact, the latest of a tenant, or the latest of every tenant of a repository.
  - With O(tenants), verifies each listed tenant as the single call would (its own artifact selector, identity and
    checks), O(parallel) at a time, each in its own worker process, and returns one row per tenant (RV(rows)).
  - "Checks: C(manifest) (present and valid), C(checksum) (stored bytes match its SHA-256 and size), C(decrypt) (age and
    zstd), C(restore) (into a scratch PostgreSQL database named by a hash on the server given by the C(login_*) options,
    or a SQLite file in a private 0700 folder, with C(PRAGMA integrity_check); a pg_restore that printed any error is a
    FAIL), C(row_counts) (as in the manifest), one C(query) check per O(queries) item, C(freshness) (the newest complete
    artifact is younger than O(max_age)), C(size_anomaly) (a WARN when the dump is far smaller than the previous ones)."
  - The scratch target is always removed, also when the run fails or is killed (a janitor process removes it then).
  - Records the result beside the artifact as C(<tenant>-<stamp>.verify.json); M(lifeboat.backup.backup_prune) and the
    C(dr_restore) playbook read these records. That record is the only change the module makes.
  - A FAIL fails the task with a message naming the failed checks, unless O(fail_on_error=false).
  - Also verifies legacy plain dumps matched by O(legacy_glob) (for example C(/var/backups/acme-*.sql), optionally
    C(.age)). The newest match is loaded into a scratch SQLite or PostgreSQL target; the manifest checks are skipped.
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment: [lifeboat.backup.identity, lifeboat.backup.connection, lifeboat.backup.connection.pg_tools, lifeboat.backup.s3]
attributes:
  check_mode:
    support: full
    description: Verifies as usual (the scratch target is temporary) but writes no record.
  diff_mode:
    support: none
    description: There is nothing to compare; the verify record is the only change.
options:
  repository:
    description:
      - The repository, a local folder or C(s3://bucket/prefix).
    type: str
  tenant:
    description:
      - Only this tenant. Unset means every tenant of the repository (or the tenants of O(tenants)).
      - Mutually exclusive with O(tenants).
    type: str
  tenants:
    description:
      - Verify these tenants in one call, each as the single call with O(tenant) would, at most O(parallel) at a time.
        The playbooks C(verify) and C(drill) hand each host's tenants to one call per chunk this way.
      - Each entry is a dict with C(tenant) (required) and any of the per-tenant options C(artifact),
        C(identity_file), C(max_age), C(queries), C(size_anomaly_ratio) and C(record), which win over the options of
        the call; every other option (O(repository), O(identity), the connection, S3) is shared by all entries.
      - An entry may not hold C(identity) (a secret in an entry would be logged); give the tenant's file as its
        C(identity_file), or every tenant's identity in O(identity) (each artifact is opened by the identity that
        matches it).
      - The list is checked as a whole before anything runs (unknown keys, bad or repeated names, an invalid option
        of an entry, an O(artifact) that names another tenant's artifact); the error names the entry, for example
        C(tenants[3].max_age), and nothing is verified.
      - One tenant's FAIL or error is its own row; the others are verified all the same. The task fails when any row
        failed (a FAIL verdict counts unless O(fail_on_error=false); an error always).
      - Each tenant's verify record is written beside its artifact, as by the single call. The scratch database of
        each verification has a name of its own (a hash of the tenant, the artifact's stamp and a random token), so
        parallel verifications never collide, and a janitor drops it if its worker is killed.
      - Mutually exclusive with O(tenant) and O(legacy_glob).
    type: list
    elements: dict
  parallel:
    description:
      - With O(tenants), how many tenants are verified at the same time (1 to 64), each in its own worker process.
        Each needs a connection to the server and restores one scratch copy at a time; one per core is a good start.
    type: int
    default: 2
  artifact:
    description:
      - C(latest) (the newest complete artifact of each tenant), V(latest_verified) (the newest complete artifact of
        each tenant whose verify record says PASS and still matches it, to prove it again, for example after a
        restore drill), an artifact's file name, or a path to an artifact inside a local repository.
      - With V(latest_verified) and no O(tenant), a tenant without a verified artifact is reported as a FAIL of its
        C(selection) check; with O(tenant), the task fails naming it and what to do.
    type: str
    default: latest
  identity:
    description:
      - An age identity (C(AGE-SECRET-KEY-1...)) or an unencrypted SSH private key, to decrypt.
    type: str
  identity_file:
    description:
      - A file of age identities (as made by C(age-keygen)) or an SSH private key. Unset means O(identity), else the
        environment variable E(BACKUP_PRIVATE_KEY).
    type: path
  tmp_dir:
    description:
      - Where the private 0700 scratch folder for SQLite and bundle checks is made. Defaults to E(TMPDIR).
    type: path
  max_age:
    description:
      - The RPO. The newest complete artifact of the tenant must be younger than this, else C(freshness) FAILs.
        Seconds, or a number with C(s), C(m), C(h), C(d) or C(w), for example C(24h). Unset skips the check.
    type: str
  size_anomaly_ratio:
    description:
      - WARN when the dump is smaller than this fraction of the median of the tenant's five previous dumps. V(0) turns
        the check off.
    type: float
    default: 0.5
  queries:
    description:
      - Sanity queries run on the scratch target, each returning one number.
    type: list
    elements: dict
    suboptions:
      query:
        description: SQL returning one row with one number, for example C(SELECT count(*) FROM bookings).
        type: str
        required: true
      name:
        description: A name for the check in the report.
        type: str
      min:
        description: The number must be at least this.
        type: float
      max:
        description: The number must be at most this.
        type: float
      equals:
        description: The number must equal this.
        type: float
  fail_on_error:
    description:
      - Fail the task when any artifact FAILs. With V(false) the task succeeds and returns C(status=FAIL).
    type: bool
    default: true
  record:
    description:
      - Write the C(.verify.json) record beside each verified complete artifact.
    type: bool
    default: true
  report:
    description:
      - Also write the whole result as JSON to this path (0600).
    type: path
  legacy_glob:
    description:
      - Verify the newest file matching this glob instead of a repository artifact (plain SQL, optionally C(.age)).
    type: str
  legacy_engine:
    description:
      - Where a legacy dump is loaded for the check.
    type: str
    choices: [sqlite, postgresql]
    default: sqlite
notes:
  - PostgreSQL artifacts need a PostgreSQL server to restore into (the C(login_*) options, a role allowed to create
    databases) and C(pg_restore) at least as new as the one that wrote the archive.
seealso:
  - module: lifeboat.backup.pg_backup
  - module: lifeboat.backup.backup_prune
"""

EXAMPLES = r"""
- name: Weekly restore-verification of every tenant's latest backup
  lifeboat.backup.backup_verify:
    repository: /var/backups/lifeboat
    identity_file: /run/credentials/lifeboat-verify.service/identity
    login_unix_socket: /var/run/postgresql
    max_age: 24h
    queries:
      - query: SELECT count(*) FROM bookings
        min: 1

- name: Verify a host's tenants in one call, two at a time (one row per tenant in result.rows)
  lifeboat.backup.backup_verify:
    repository: /var/backups/lifeboat
    identity_file: /run/credentials/lifeboat-verify.service/identity
    login_unix_socket: /var/run/postgresql
    tenants:
      - tenant: acme
      - tenant: globex
        max_age: 48h
      - tenant: initech
        artifact: latest_verified
    parallel: 2
    fail_on_error: false
  register: verified

- name: Check a legacy dump the way the old cron job did
  lifeboat.backup.backup_verify:
    legacy_glob: /var/backups/acme-*.sql
    legacy_engine: sqlite
"""

RETURN = r"""
status:
  description:
    - PASS or FAIL over everything verified; ERASED when every tenant asked for was erased on purpose
      (M(lifeboat.backup.tenant_erase)). An erased tenant's row has status ERASED, never FAIL.
  returned: always
  type: str
  sample: PASS
tenants:
  description: Per tenant, the artifact, its status, failed checks, warnings and every check with status, seconds and
    detail; C(artifact_name), C(selected_by), C(previously_verified_at), C(source_server_version), C(snapshot_at).
  returned: always
  type: list
  elements: dict
warned_checks:
  description: The names of the checks that gave WARN, when one artifact was verified (each is also shown as a
    warning).
  returned: when one artifact was verified and a check gave WARN
  type: list
  elements: str
checks:
  description: The checks of the artifact, when one artifact was verified.
  returned: when one artifact was verified
  type: list
  elements: dict
failed_checks:
  description: Names of the failed checks, when one artifact was verified.
  returned: when one artifact was verified
  type: list
  elements: str
artifact_name:
  description: The file name of the artifact verified, when one artifact was verified.
  returned: when one artifact was verified
  type: str
  sample: acme-20260101T030000Z.pgdump.zst.age
selected_by:
  description: V(latest) or V(latest_verified) when O(artifact) chose it, else null.
  returned: when one artifact was verified
  type: str
previously_verified_at:
  description: With O(artifact=latest_verified), when the artifact had been verified before this run (UTC).
  returned: when one artifact was verified
  type: str
source_server_version:
  description: The version of the PostgreSQL server the artifact was taken from (its manifest's C(source)).
  returned: when one artifact was verified
  type: str
snapshot_at:
  description: When the artifact's snapshot was taken (UTC, the manifest's C(started_at)).
  returned: when one artifact was verified
  type: str
rows:
  description:
    - With O(tenants), one per entry, in the list's order; each is the single call's result for that tenant (C(status),
      C(tenants), C(checks), C(failed_checks), C(artifact_name), C(records), C(changed)...) with C(tenant), C(failed),
      C(msg) (the error, when the verification stopped with one), C(started) and C(finished) (UTC, ISO 8601 with
      milliseconds; the tenant's verification from its start to its end) and C(seconds).
  returned: with O(tenants)
  type: list
  elements: dict
  sample:
    - tenant: acme
      status: PASS
      failed: false
      artifact_name: acme-20260101T030000Z.pgdump.zst.age
      started: "2026-01-01T04:00:00.120Z"
      finished: "2026-01-01T04:00:02.480Z"
      seconds: 2.36
records:
  description: The verify records written (in check mode, those that would be). Each record holds the report, the
    artifact's name, C(checked_at), C(verifier_host), and the C(sha256) and C(size_stored) verified, which tie it to
    those bytes.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import module_main
from ansible_collections.lifeboat.backup.plugins.module_utils import verify as engine


def main():
    module = AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs())
    params = dict(module.params)
    if params["queries"]:
        params["queries"] = [dict((k, v) for k, v in q.items() if v is not None) for q in params["queries"]]
    result = module_main.run_engine(module, engine.run, params, warnings=False)
    # Ansible's own "warnings" key is deprecated in results: WARN checks are said with module.warn and
    # returned as warned_checks (and per tenant in tenants[].warnings).
    warned = result.pop("warnings", None) or []
    if warned:
        result["warned_checks"] = warned
        details = dict((c["name"], c["detail"]) for c in result.get("checks") or [] if c.get("status") == "WARN")
        for name in warned:
            module.warn("%s: %s" % (name, details.get(name, "WARN")))
    rows = result.get("rows")  # with tenants: a row failed (an error, or a FAIL with fail_on_error)
    if any(r.get("failed") for r in rows) if rows is not None else (
            result["status"] == "FAIL" and module.params["fail_on_error"]):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
