#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: s3_lifecycle
short_description: Declare an S3 bucket's protection for backups (lifecycle rules, versioning, encryption, public access)
version_added: 0.1.0
description:
  - Declares, in one idempotent task, how a bucket that holds backups is protected and aged out - lifecycle rules,
    versioning, default encryption, public access block (on by default) and object lock default retention.
  - Each aspect is read, normalized (sorted, server defaults dropped) and compared with what the options declare,
    and written only when it differs. A second identical run, rules given in another order, and defaults the
    server fills in all report C(changed=false).
  - An option left unset leaves its aspect alone. Lifecycle rules are matched by O(rules[].id); rules not named
    are kept unless O(purge_rules=true).
  - Rules that AWS would reject are refused before any call, since S3-compatible servers often accept them -
    a transition to C(STANDARD_IA) or C(ONEZONE_IA) before 30 days, transitions against the storage-class
    order (C(STANDARD_IA), C(INTELLIGENT_TIERING), C(ONEZONE_IA), C(GLACIER_IR), C(GLACIER), C(DEEP_ARCHIVE)) or
    sooner than 30 days after an IA class and 90 days after C(GLACIER_IR) or C(GLACIER), an expiration that does
    not come after the last transition, delete-marker or multipart actions with a tag filter.
  - With O(min_retention_days), a rule that would expire backups sooner than the retention the collection keeps is
    refused, naming both numbers.
  - Nothing is written when anything is refused.
  - S3-compatible stores often lack some aspects. An aspect the store does not implement (it answers 501
    NotImplemented, a C(NotImplemented) or C(Unsupported) error code, or takes the write of a bucket setting for
    CreateBucket) is never retried; it is listed in RV(unsupported) and the other aspects are managed all the same.
    The run fails only when an option asks for that aspect (O(versioning), O(encryption), O(object_lock),
    O(rules)), naming it and how to leave it unmanaged. See C(docs/S3-COMPATIBILITY.md).
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment: [lifeboat.backup.s3]
attributes:
  check_mode:
    support: full
    description: Reads the bucket and reports what would change, with the same checks, writing nothing.
  diff_mode:
    support: full
    description: Shows each managed aspect before and after, normalized.
options:
  bucket:
    description:
      - Name of the bucket.
    type: str
    required: true
  create_bucket:
    description:
      - Create the bucket when it does not exist (in O(s3_region); with object lock when O(object_lock) is set).
        Without it, a missing bucket is an error.
    type: bool
    default: false
  rules:
    description:
      - Lifecycle rules, matched by O(rules[].id). Unset leaves the lifecycle configuration alone.
      - Days only (no dates); a rule applies to the whole bucket unless it has a O(rules[].prefix) or O(rules[].tags).
    type: list
    elements: dict
    suboptions:
      id:
        description:
          - Unique name of the rule (1 to 255 characters).
        type: str
        required: true
      enabled:
        description:
          - Whether the rule acts.
        type: bool
        default: true
      prefix:
        description:
          - Key prefix the rule applies to, for example C(lifeboat/). Include the trailing C(/) of a folder.
        type: str
      tags:
        description:
          - Object tags the rule applies to (all must match).
        type: dict
      transitions:
        description:
          - Moves of current versions to other storage classes, each after O(rules[].transitions[].days) days.
        type: list
        elements: dict
        suboptions:
          days:
            description:
              - Days after creation. At least 30 for C(STANDARD_IA) and C(ONEZONE_IA).
            type: int
            required: true
          storage_class: &transition_storage_class  # the same in noncurrent_version_transitions
            description:
              - Storage class to move to.
            type: str
            required: true
            choices: [STANDARD_IA, INTELLIGENT_TIERING, ONEZONE_IA, GLACIER_IR, GLACIER, DEEP_ARCHIVE]
      expiration_days:
        description:
          - Days after creation when current versions expire (deleted, or hidden by a delete marker when the bucket
            is versioned). Checked against O(min_retention_days).
        type: int
      expired_object_delete_marker:
        description:
          - Remove delete markers that no longer hide any version. Not together with O(rules[].expiration_days) or
            O(rules[].tags).
        type: bool
      noncurrent_version_transitions:
        description:
          - Moves of noncurrent versions to other storage classes, days after they became noncurrent.
        type: list
        elements: dict
        suboptions:
          days:
            description:
              - Days after the version became noncurrent (at least 1; 30 for C(STANDARD_IA) and C(ONEZONE_IA)).
            type: int
            required: true
          storage_class: *transition_storage_class
      noncurrent_version_expiration_days:
        description:
          - Days after becoming noncurrent when versions are deleted for good (at least 1).
        type: int
      abort_incomplete_multipart_upload_days:
        description:
          - Days after which multipart uploads that were never completed are aborted (at least 1). Keep it longer
            than the longest backup upload.
        type: int
  purge_rules:
    description:
      - Remove lifecycle rules not named in O(rules). With V(false), they are kept as they are.
    type: bool
    default: false
  min_retention_days:
    description:
      - The retention, in days, that the collection keeps for backups under O(retention_prefix). An enabled rule
        whose prefix overlaps it and that expires current versions sooner is refused (also when it is an existing
        rule that would be kept).
    type: int
  retention_prefix:
    description:
      - The key prefix of the backups O(min_retention_days) protects, for example the prefix of an C(s3://) repository.
        Empty means the whole bucket.
    type: str
    default: ""
  versioning:
    description:
      - V(true) enables versioning, V(false) suspends it (a bucket never versioned stays so). Unset leaves it alone.
    type: bool
  encryption:
    description:
      - Default server-side encryption of the bucket. Unset leaves it alone.
    type: str
    choices: [AES256, aws:kms]
  encryption_key_id:
    description:
      - KMS key for O(encryption=aws:kms). Unset keeps the current key (or the C(aws/s3) key when switching to KMS).
    type: str
  bucket_key_enabled:
    description:
      - Use an S3 Bucket Key with O(encryption=aws:kms) (fewer KMS calls). Unset leaves it alone.
    type: bool
  public_access_block:
    description:
      - V(block) blocks every kind of public access (all four settings of the bucket's public access block);
        V(remove) deletes the bucket's public access block; V(unmanaged) leaves it alone.
      - V(block) by default, so that a bucket of backups is never public by omission.
      - On a store that does not implement the public access block (for example SeaweedFS, rclone serve s3), V(block)
        and V(remove) are a warning, not a failure, and the aspect is listed in RV(unsupported); V(unmanaged) says
        nothing.
    type: str
    choices: [block, remove, unmanaged]
    default: block
  object_lock:
    description:
      - Object lock with an optional default retention. Needs versioning. Once enabled, object lock cannot be
        turned off; a dictionary without O(object_lock.mode) removes the default retention.
    type: dict
    suboptions:
      mode:
        description:
          - Default retention mode.
        type: str
        choices: [GOVERNANCE, COMPLIANCE]
      days:
        description:
          - Default retention in days (or O(object_lock.years)).
        type: int
      years:
        description:
          - Default retention in years.
        type: int
notes:
  - S3-compatible test servers such as moto store lifecycle rules but never apply them.
seealso:
  - module: lifeboat.backup.pg_backup
"""

EXAMPLES = r"""
- name: Protect the backup bucket (Glacier after a year, old versions for 30 days)
  lifeboat.backup.s3_lifecycle:
    bucket: acme-backups
    s3_region: eu-west-1
    versioning: true
    encryption: aws:kms
    encryption_key_id: alias/backups
    min_retention_days: 400
    retention_prefix: lifeboat/
    rules:
      - id: lifeboat-archive
        prefix: lifeboat/
        transitions:
          - days: 365
            storage_class: GLACIER
        expiration_days: 730
        noncurrent_version_expiration_days: 30
      - id: expired-delete-markers
        expired_object_delete_marker: true
      - id: abort-stale-uploads
        abort_incomplete_multipart_upload_days: 7

- name: A bucket on an S3-compatible store, created if missing, with a default retention
  lifeboat.backup.s3_lifecycle:
    bucket: lifeboat
    create_bucket: true
    s3_endpoint_url: https://minio.example.com:9000
    s3_access_key: "{{ vault_s3_access_key }}"
    s3_secret_key: "{{ vault_s3_secret_key }}"
    versioning: true
    object_lock:
      mode: GOVERNANCE
      days: 35

- name: Only the lifecycle rules, removing rules not named here
  lifeboat.backup.s3_lifecycle:
    bucket: acme-backups
    public_access_block: unmanaged
    purge_rules: true
    rules:
      - id: abort-stale-uploads
        abort_incomplete_multipart_upload_days: 7
"""

RETURN = r"""
created:
  description: Whether the bucket was (or, in check mode, would be) created.
  returned: always
  type: bool
changes:
  description: The aspects that changed (or would change), among C(bucket), C(versioning), C(encryption),
    C(public_access_block), C(object_lock) and C(lifecycle_rules).
  returned: always
  type: list
  elements: str
  sample: [lifecycle_rules]
rules_added:
  description: IDs of the lifecycle rules added.
  returned: always
  type: list
  elements: str
rules_changed:
  description: IDs of the lifecycle rules modified.
  returned: always
  type: list
  elements: str
rules_removed:
  description: IDs of the lifecycle rules removed (O(purge_rules=true)).
  returned: always
  type: list
  elements: str
lifecycle_rules:
  description: All the bucket's lifecycle rules after the task, normalized as options.
  returned: when O(rules) is set
  type: list
  elements: dict
versioning:
  description: Versioning after the task, V(enabled), V(suspended) or V(disabled) (never enabled).
  returned: always
  type: str
unsupported:
  description: The aspects the store does not implement, left unmanaged (each also said in a warning), among
    C(versioning), C(object_lock), C(public_access_block) and C(lifecycle_rules). On such a store RV(versioning) is
    V(disabled).
  returned: always
  type: list
  elements: str
  sample: [public_access_block]
encryption:
  description: Default encryption after the task.
  returned: when O(encryption) is set
  type: dict
public_access_block:
  description: The four public access block settings after the task.
  returned: when O(public_access_block) is set
  type: dict
object_lock:
  description: Object lock after the task.
  returned: when O(object_lock) is set
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import lifecycle as engine
from ansible_collections.lifeboat.backup.plugins.module_utils import module_main


def main():
    module_main.run(AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs()), engine.run)


if __name__ == "__main__":
    main()
