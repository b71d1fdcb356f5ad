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
  - With O(discover), it also reads the PostgreSQL server at O(login_host) (or O(login_unix_socket)) and returns the
    tenants the rules find there (RV(discovered)) and what is unprotected (RV(unprotected)), a listed or discovered
    tenant without a complete artifact within its RPO (O(max_age)), or a database or schema that no listed tenant and
    no rule covers, or whose name is invalid or taken. Without O(discover) the server is not contacted.
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment: [lifeboat.backup.connection, lifeboat.backup.s3]
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
        C(pseudo_tenant=true) and C(kind=globals), and the C(_shared_<database>) pseudo-tenants (the shared parts
        of databases that hold schema tenants), marked with C(kind=shared).
    type: bool
    default: false
  discover:
    description:
      - "Rules that find tenants on the server, the same as C(discover) in the agent's C(lifeboat.yml). Each rule is
        C({databases: PATTERN}) (every database whose name matches is a database tenant named like it) or
        C({database: NAME, schemas: PATTERN}) (every schema of database NAME that matches is a schema tenant named like
        the schema), optionally with C(exclude) (a pattern or a list of patterns of databases, or of schemas of the
        rule's database, that are deliberately not backed up and not reported) and C(rpo) (a duration)."
      - Patterns are shell-style globs (C(*), C(?), C([...])), case-sensitive.
      - Never matched, templates, C(postgres), databases that refuse connections, the names lifeboat derives
        (C(lb_<letter>_<20 hex>)), a database that holds schema tenants; schemas C(pg_*), C(information_schema),
        C(public) and those of extensions.
      - A name that is not a valid tenant name, a discovered name already taken by a listed tenant for another target,
        and one name found twice are returned in RV(unprotected) (C(invalid-name), C(conflict)), never backed up
        silently under a guessed name.
      - Unset means the server is not contacted. An empty list reports every database (and every schema of the
        databases of O(listed_tenants)' schema tenants) that O(listed_tenants) does not cover.
    type: list
    elements: dict
  listed_tenants:
    description:
      - The tenants configured for this server (the fleet inventory's C(lifeboat_tenants)), each C(name), C(engine)
        (C(postgresql) or C(sqlite)), C(database) (default the name), C(schema), C(path) and C(rpo); other keys are
        ignored.
      - A listed tenant wins over a discovered one of the same name, covers its database or schema, and is reported
        in RV(unprotected) when it has no complete artifact within its C(rpo) (else O(max_age)).
      - Used only with O(discover).
    type: list
    elements: dict
  max_age:
    description:
      - The RPO, as in M(lifeboat.backup.backup_verify), for RV(unprotected). A tenant whose newest complete artifact is
        older is unprotected (C(late)). Seconds, or a number with C(s), C(m), C(h), C(d) or C(w), for example C(26h).
      - Unset means any complete artifact protects a tenant (only C(no-artifact) is reported).
      - Used only with O(discover).
    type: str
  list_recipients:
    description:
      - Read every complete artifact's manifest and report whom each is encrypted to (RV(tenants)' C(recipients_by_artifact),
        and RV(artifacts_by_recipient)), that is which artifacts a key can open, for example that a shared key opens none of
        the artifacts of a tenant with keys of its own. One manifest read per artifact.
      - Without it, each tenant's C(recipients) (of its newest artifact) and C(shared_recipients) are reported.
    type: bool
    default: false
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server that O(discover) reads.
      - Unset means the local server through the default unix socket, unless O(login_unix_socket) is set.
      - Used only with O(discover).
  login_password:
    description:
      - Password of O(login_user). It reaches libpq as a connection parameter, never a command line, and never appears
        in results or logs.
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

- name: Which tenants of this server exist, and which of them are not protected
  lifeboat.backup.backup_info:
    repository: /var/backups/lifeboat
    login_unix_socket: /var/run/postgresql
    login_user: postgres
    discover:
      - databases: "acme_*"
      - database: saas
        schemas: "t_*"
        exclude: t_demo
    listed_tenants: "{{ lifeboat_tenants }}"
    max_age: 26h
  register: found

- name: Fail when anything is unprotected
  ansible.builtin.fail:
    msg: "{{ found.unprotected | map(attribute='message') | join(' ') }}"
  when: found.unprotected | length > 0
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
    - C(recipients) are the public keys the newest artifact is encrypted to (a tenant's own keys, or the
      repository-wide ones; empty when it is not encrypted), and C(shared_recipients) those of the shared part a
      schema tenant's newest artifact was taken with (else null). With O(list_recipients), C(recipients_by_artifact)
      lists every complete artifact grouped by its recipients (C(recipients), C(artifacts)).
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
artifacts_by_recipient:
  description: With O(list_recipients), per public key the artifacts (C(<tenant>/<artifact>)) encrypted to it, that
    is what the matching identity can open.
  returned: with O(list_recipients)
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
erased:
  description:
    - Tenants erased on purpose (M(lifeboat.backup.tenant_erase) left its erasure record); each tenant's entry in
      RV(tenants) has C(erased) with the record's location, C(erased_at) and C(reference). Never in RV(missing) or
      RV(unverified).
  returned: always
  type: list
  elements: str
globals_tenants:
  description: The C(_globals_<host>) pseudo-tenants the repository holds (reported only with O(include_globals)).
  returned: always
  type: list
  elements: str
shared_tenants:
  description: The C(_shared_<database>) pseudo-tenants (the shared parts of databases that hold schema tenants)
    the repository holds; reported in RV(tenants) only with O(include_globals) or when named in O(tenants).
  returned: always
  type: list
  elements: str
discovered:
  description:
    - The tenants the O(discover) rules found, each C(name), C(engine) (C(postgresql)), C(database), C(schema) (schema
      tenants), C(found) (C(discovered)) and C(rule) (which rule found it, for example C(discover[1])). A name that is
      listed in O(listed_tenants) is not repeated here.
  returned: when O(discover) is set
  type: list
  elements: dict
  sample: [{name: t_acme, engine: postgresql, database: saas, schema: t_acme, found: discovered, rule: "discover[1]"}]
discovered_names:
  description: The names of RV(discovered).
  returned: when O(discover) is set
  type: list
  elements: str
unprotected:
  description:
    - What is unprotected, each C(tenant) (the name, or the name it would have), C(database), C(schema), C(path),
      C(found) (C(listed), C(discovered) or C(none)), C(reason) and C(message) (what, why, and what to do).
    - C(reason) is C(no-artifact) or C(late) (a listed or discovered tenant without a complete artifact within its
      RPO), C(not-covered) (a database or schema that no listed tenant and no rule covers), C(invalid-name) (it
      matches a rule, but its name is not a valid tenant name) or C(conflict) (its name is taken by a listed tenant, or
      found twice).
  returned: when O(discover) is set
  type: list
  elements: dict
unprotected_names:
  description: The C(tenant) of each RV(unprotected) entry.
  returned: when O(discover) is set
  type: list
  elements: str
discovery:
  description:
    - C(server) (where discovery looked), C(rules) (how many), C(errors) (a rule's database that does not exist or
      cannot be read, with the fix), C(excluded) (what the rules' C(exclude) left out) and C(max_age_seconds).
  returned: when O(discover) is set
  type: dict
pg_major_needed:
  description: The newest PostgreSQL major version among the sources and C(pg_dump) versions of the reported
    C(latest) and C(latest_verified) artifacts; a restore needs C(pg_restore) (and a server) at least this new.
    V(0) when no PostgreSQL artifact is reported.
  returned: always
  type: int
  sample: 15
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import info as engine
from ansible_collections.lifeboat.backup.plugins.module_utils import module_main


def main():
    module_main.run(AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs()), engine.run)


if __name__ == "__main__":
    main()
