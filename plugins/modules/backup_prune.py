#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_prune
short_description: Rotate a repository's artifacts with grandfather-father-son retention
version_added: 0.1.0
description:
  - Applies a retention policy to one tenant or to every tenant of a repository (a local folder or C(s3://bucket/prefix)).
  - C(keep_daily=N) keeps the newest artifact of each of the N most recent UTC days that have one; C(keep_weekly) counts
    ISO weeks, C(keep_monthly) months and C(keep_yearly) years, all in UTC. An artifact kept by any rule is kept.
  - Whatever the policy says, the newest complete artifact and the newest verified one (from the C(.verify.json)
    records written by M(lifeboat.backup.backup_verify)) of each tenant and format are never deleted.
  - Incomplete artifacts (no manifest) older than O(incomplete_grace) are removed, but only while the tenant's lock is
    free, so the files of a running backup are never touched. A tenant whose lock is held is skipped for the run.
  - Deletes the manifest first, then the artifact, then its verify record, so that an interrupted prune never leaves
    an artifact that looks complete; orphaned manifests and records are removed by the next run.
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment: [lifeboat.backup.s3]
attributes:
  check_mode:
    support: full
    description: The dry run. The same report, nothing deleted.
  diff_mode:
    support: full
    description: Artifact names before and after.
options:
  repository:
    description:
      - The repository, a local folder or C(s3://bucket/prefix).
    type: str
    required: true
  tenant:
    description:
      - Only this tenant (a tenant name or a C(_globals_<host>) pseudo-tenant). Unset means every tenant of the repository.
    type: str
  keep_last:
    description: Keep the N newest artifacts.
    type: int
  keep_daily:
    description: Keep the newest artifact of each of the N most recent UTC days that have one.
    type: int
  keep_weekly:
    description: Keep the newest artifact of each of the N most recent ISO weeks that have one.
    type: int
  keep_monthly:
    description: Keep the newest artifact of each of the N most recent months that have one.
    type: int
  keep_yearly:
    description: Keep the newest artifact of each of the N most recent years that have one.
    type: int
  max_age_days:
    description:
      - Delete artifacts older than this many days even when a C(keep_*) rule keeps them (never the protected ones).
    type: int
  max_total_size:
    description:
      - Delete the oldest artifacts until the kept ones fit in this size (over the tenants pruned), for example
        C(500G) or C(2TiB). Never the protected ones.
    type: str
  incomplete_grace:
    description:
      - Age after which an artifact without a manifest counts as abandoned and is removed. Seconds, or a number with
        C(s), C(m), C(h), C(d) or C(w).
    type: str
    default: 1d
  lock_timeout:
    description:
      - Seconds to wait for a tenant's lock (held by a running backup or restore) before skipping that tenant.
    type: int
    default: 0
  report:
    description:
      - Write the report (every artifact, kept or deleted, and the rules that decided) as JSON to this path (0600).
        Written in check mode too.
    type: path
notes:
  - At least one of the C(keep_*) rules, O(max_age_days) or O(max_total_size) is required; deleting is never a default.
  - On a versioned S3 bucket a deleted artifact stays as a non-current version until the bucket's lifecycle rules
    expire it (see M(lifeboat.backup.s3_lifecycle)).
seealso:
  - module: lifeboat.backup.pg_backup
"""

EXAMPLES = r"""
- name: Nightly rotation, 7 daily, 4 weekly, 12 monthly
  lifeboat.backup.backup_prune:
    repository: /var/backups/lifeboat
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 12

- name: Dry run for one tenant, with a report
  lifeboat.backup.backup_prune:
    repository: s3://acme-backups/db1
    tenant: acme
    keep_daily: 7
    report: /var/tmp/prune-acme.json
  check_mode: true
"""

RETURN = r"""
deleted:
  description: Names of the artifacts deleted (in check mode, those that would be).
  returned: always
  type: list
  elements: str
kept:
  description: Names of the artifacts kept.
  returned: always
  type: list
  elements: str
report:
  description: Per tenant, every artifact with its decision (keep or delete) and the reasons; the policy; totals.
  returned: always
  type: dict
report_path:
  description: Where the JSON report was written.
  returned: when O(report) is set
  type: str
skipped_tenants:
  description: Tenants left alone because their lock was held, with the holder.
  returned: when a lock was held
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import module_main
from ansible_collections.lifeboat.backup.plugins.module_utils import prune as engine


def _diff(result):
    return {
        "before": "\n".join(sorted(result["kept"] + result["deleted"])) + "\n",
        "after": "\n".join(sorted(result["kept"])) + "\n",
    }


def main():
    module_main.run(AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs()), engine.run, diff=_diff)


if __name__ == "__main__":
    main()
