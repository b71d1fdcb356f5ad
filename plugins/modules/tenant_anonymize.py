#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tenant_anonymize
short_description: Scrub personal data older than a retention period in a tenant, provably and idempotently
version_added: 0.1.0
description:
  - Scrubs the personal data of rows older than O(older_than_days) in one tenant (a PostgreSQL database, a schema of
    a shared database, or a SQLite file), column by column, as O(rules) say.
  - Idempotent from the data itself. Every scrubbed value is recognizable (a NULL, the redact text, a value carrying
    the C(anon:) or C(anon-) marker, a date already cut to its year), so a second run updates no row and reports
    C(changed=false). A hash is never hashed again.
  - Every rule is checked against the catalog before anything is written. A missing table or column, a key that
    is not unique, or a strategy that does not fit the column's type (for example C(hash) on an integer, C(null)
    on a NOT NULL column, a C(varchar) too short for the scrubbed value) fails the task with every problem named,
    for example C(rules[2].columns.email), and nothing changed.
  - Works in batches of O(batch_size) rows, each in its own transaction, so that a large table holds no long
    locks. A failure rolls back the current batch only; the message says how many batches and rows were committed,
    and the next run continues where it stopped.
  - On PostgreSQL, batches commit with C(synchronous_commit=off) (no wait for a disk flush per batch), and the last
    commit of each table, also after a failed batch, waits until every batch before it is on disk. Only a crash of
    the database server during the run can lose the last batches committed before it (at most about
    C(3 x wal_writer_delay) of work, whole batches, never part of one); the counts that run reported are then too
    high, and the next run finds those rows unscrubbed and scrubs them.
  - After the batches, it counts again and fails unless no row older than the cut-off keeps unscrubbed data.
  - With O(repository), reports which backup artifacts of the tenant were taken before the cut-off, and so still
    hold personal data past it, and, with O(retention_days), when rotation removes them.
  - Results hold counts, never row data, and never the HMAC secret.
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment: [lifeboat.backup.connection, lifeboat.backup.connection.pg_tools, lifeboat.backup.s3, lifeboat.backup.tenant]
attributes:
  check_mode:
    support: full
    description: Checks everything a real run checks and counts, per table and per column, the rows and values that
      would be scrubbed, with reads only (PostgreSQL sessions are read-only, SQLite files are opened read-only).
  diff_mode:
    support: full
    description: Shows, per table, the rows older than the cut-off that hold personal data, before and after.
options:
  tenant:
    required: true
  schema:
    description:
      - For tenant-per-schema layouts, the schema holding the tenant's tables in O(database).
      - Unset means the database's current schema (usually C(public)).
  rules:
    description:
      - What to scrub, one rule per table (or per part of a table, with O(rules[].where)).
      - Table and column names are taken literally (no quoting needed, no schema prefix) and must exist in the
        catalog; on SQLite they match case-insensitively, as SQLite does.
    type: list
    elements: dict
    required: true
    suboptions:
      table:
        description:
          - The table, in O(schema) (PostgreSQL) or in the file (SQLite).
        type: str
        required: true
      timestamp:
        description:
          - The column whose value decides a row's age; rows where it is older than the cut-off are scrubbed, rows
            where it is NULL never are (they are counted in RV(tables[].rows_without_timestamp)).
          - PostgreSQL, C(date), C(timestamp) (read as UTC) or C(timestamptz). SQLite, ISO 8601 texts (UTC unless
            they carry an offset) or Unix seconds; any other value fails the task before anything is written.
          - Choose a column that updates do not change (for example the check-out date, not C(updated_at)).
        type: str
        required: true
      key:
        description:
          - A unique, NOT NULL column that orders the batches. Defaults to the table's single-column primary key.
        type: str
      columns:
        description:
          - "The personal-data columns, as a dict C(column: strategy). A strategy is a name, or a dict with
            C(strategy) and its setting."
          - V(null) sets NULL (a YAML C(null) or C(~) means the same). Not for NOT NULL columns.
          - "V(redact) writes a fixed text, C([redacted]) unless C(text) is given, for example
            C({strategy: redact, text: n/a}). Not for columns in a unique index."
          - V(hash) writes C(anon:) and the 64 hex digits of HMAC-SHA256(secret, value). The same value gives the
            same hash in every table and tenant scrubbed with the same secret, so joins and counts still work.
            Needs a text column of at least 69 characters.
          - V(email) writes a stable fake address C(anon-<24 hex>@anonymized.invalid) derived from the keyed hash
            of the address trimmed and lower-cased. Needs at least 48 characters.
          - V(keep_domain) writes C(anon-<24 hex>@<domain>), keeping the domain (lower-cased) for statistics; when
            the value has no usable domain or the result does not fit the column, the domain becomes
            C(anonymized.invalid).
          - "V(truncate_date) cuts a date or time stamp to C(unit) V(year) (default), V(month) or V(day), for
            example C({strategy: truncate_date, unit: month}); the time of day becomes midnight (UTC)."
        type: dict
        required: true
      where:
        description:
          - An SQL boolean expression over the table's columns that narrows the rule, for example
            C(kind = 'guest').
          - Trusted configuration, like a playbook. It must be one expression (no C(;), no comments, balanced
            parentheses, no parameter placeholders) and only ever runs inside the rule's own SELECT and its
            batches; all other values are query parameters.
        type: str
  older_than_days:
    description:
      - Rows whose O(rules[].timestamp) is older than this many days (from the start of the run) are scrubbed.
      - Unset means E(PII_DAYS) from the module's environment (as the C(lifeboat-anonymize) unit gets it from
        C(/etc/lifeboat/tenants.env)) when set, else V(30).
    type: int
  hmac_secret:
    description:
      - The key of the keyed hash behind V(hash), V(email) and V(keep_domain), at least 16 bytes. Required when a
        rule uses one of them. Never in results or logs.
      - Use the same secret for every tenant and keep it; a new secret gives new hashes for values scrubbed from
        then on (values already scrubbed are never hashed again).
    type: str
  hmac_secret_file:
    description:
      - A file holding the secret instead of O(hmac_secret) (surrounding white space ignored), for example a
        systemd credential.
    type: path
  batch_size:
    description:
      - Rows per batch; each batch is one transaction and holds row locks on its rows until it commits. A batch
        of 1000 rows takes tens of milliseconds on an idle server; larger batches barely scrub faster (5000 and
        10000 rows per batch measured within the noise of 1000), but hold their locks longer. At most 100000.
    type: int
    default: 1000
  lock_timeout:
    description:
      - Seconds a batch waits for rows or a SQLite file that the application has locked before it fails (rolled
        back, reported). On PostgreSQL, V(0) waits as long as it takes.
    type: int
    default: 30
  repository:
    description:
      - The backup repository (a folder or C(s3://bucket/prefix)) whose artifacts of the tenant are reported in
        RV(backups). Only listed, never changed; the C(s3_*) options reach an S3 repository.
    type: str
  retention_days:
    description:
      - How many days artifacts stay in O(repository) before rotation removes them, to report when the artifacts
        that still hold scrubbed data go. With grandfather-father-son retention, give the longest horizon kept.
    type: int
notes:
  - The secret never reaches the database server; keyed hashes are computed by the module.
  - PostgreSQL sessions run with C(row_security=off), so a table whose row-level security would hide rows from
    O(login_user) fails instead of being scrubbed in part. O(login_user) needs SELECT and UPDATE on the columns.
  - A value that already looks scrubbed (for example a text of the form C(anon:<64 hex digits>)) is left as it is.
seealso:
  - module: lifeboat.backup.pg_backup
"""

EXAMPLES = r"""
- name: Scrub guests older than 30 days in a database tenant
  lifeboat.backup.tenant_anonymize:
    tenant: acme
    login_unix_socket: /var/run/postgresql
    hmac_secret: "{{ vault_anonymize_secret }}"
    rules:
      - table: guests
        timestamp: checked_out_at
        where: "kind = 'guest'"
        columns:
          full_name: redact
          email: email
          phone: "null"
          passport_no: hash
          birth_date: truncate_date

- name: A schema tenant, with the backups that still hold older data
  lifeboat.backup.tenant_anonymize:
    tenant: globex
    database: saas
    schema: globex
    older_than_days: 90
    hmac_secret_file: /etc/lifeboat/anonymize.key
    repository: /var/backups/lifeboat
    retention_days: 35
    rules:
      - table: bookings
        timestamp: created_at
        key: booking_id
        columns:
          contact_email: keep_domain
          notes: {strategy: redact, text: "(removed)"}
          arrival: {strategy: truncate_date, unit: month}

- name: How many rows would change, touching nothing
  lifeboat.backup.tenant_anonymize:
    tenant: initech
    engine: sqlite
    path: /srv/app/tenants/initech.db
    hmac_secret_file: /etc/lifeboat/anonymize.key
    rules:
      - table: guests
        timestamp: created_at
        columns:
          email: email
  check_mode: true
"""

RETURN = r"""
cutoff:
  description: Rows older than this moment (UTC) were in scope.
  returned: always
  type: str
  sample: "2026-01-01T03:00:00Z"
older_than_days:
  description: The retention period used.
  returned: always
  type: int
  sample: 30
older_than_days_from:
  description: Where it came from, V(older_than_days), V(PII_DAYS) or V(default).
  returned: always
  type: str
rows_to_scrub:
  description: Rows, over all rules, that held unscrubbed data when the run started (what check mode would change).
  returned: always
  type: int
rows_scrubbed:
  description: Rows updated by this run (0 in check mode and on a second run).
  returned: always
  type: int
schema:
  description: The PostgreSQL schema the tables were found in.
  returned: always
  type: str
tables:
  description: One entry per rule, with counts only.
  returned: always
  type: list
  elements: dict
  contains:
    rule:
      description: Index of the rule.
      type: int
    table:
      description: The table.
      type: str
    key:
      description: The key column used for batches.
      type: str
    rows_in_scope:
      description: Rows older than the cut-off that match the rule's where.
      type: int
    rows_without_timestamp:
      description: Rows matching where whose timestamp is NULL (never scrubbed).
      type: int
    rows_to_scrub:
      description: Rows in scope holding at least one unscrubbed value before the run.
      type: int
    rows_scrubbed:
      description: Rows updated.
      type: int
    rows_remaining:
      description: Rows in scope still holding unscrubbed values after the run (0; in check mode, as before).
      type: int
    batches:
      description: Transactions committed.
      type: int
    seconds:
      description: Time spent in batches.
      type: float
    rows_per_second:
      description: Rows scrubbed per second.
      type: float
    columns:
      description: Per column, its strategy and C(values_to_scrub) and C(values_scrubbed).
      type: dict
backups:
  description: With O(repository), the tenant's artifacts that still hold personal data past the cut-off.
  returned: always
  type: dict
  contains:
    before_cutoff:
      description:
        - Artifacts taken before the cut-off (C(artifact), C(taken_at), C(complete), and with O(retention_days)
          C(removed_by) and C(overdue)). Every row they hold is now older than the cut-off.
      type: list
      elements: dict
    since_cutoff:
      description: How many artifacts were taken since the cut-off; they may hold values this run scrubbed.
      type: int
    overdue:
      description: Artifacts older than O(retention_days), which rotation should already have removed.
      type: int
    clear_by:
      description: When the last artifact taken before this run leaves the repository under O(retention_days),
        and with it the last copy of the values this run scrubbed.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import anonymize as engine
from ansible_collections.lifeboat.backup.plugins.module_utils import module_main


def _diff(result, check_mode):
    def text(after):
        return "".join("%s: %d rows older than %s hold personal data\n"
                       % (e["table"], (0 if check_mode else e["rows_remaining"]) if after else e["rows_to_scrub"],
                          result["cutoff"])
                       for e in result["tables"])
    return {"before": text(False), "after": text(True)}


def main():
    module = AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs())
    module_main.run(module, engine.run, diff=lambda result: _diff(result, module.check_mode))


if __name__ == "__main__":
    main()
