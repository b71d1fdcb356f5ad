#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: age_encrypt
short_description: Encrypt and decrypt files and folders with age, manage age key pairs, and rekey artifacts
version_added: 0.1.0
description:
  - Encrypts a file, or a folder streamed as a tar bundle, with L(age,https://age-encryption.org) (through the
    pyrage library) to X25519 recipients (C(age1...)), SSH public keys (ed25519, RSA), a recipients file, or a
    passphrase. Decrypts with age identities or SSH private keys, unpacks bundles safely, creates age identity
    files, and re-encrypts existing files or repository artifacts to a new set of recipients.
  - Data is streamed with bounded memory (a few MiB whatever the size); age runs in a small child process of the same
    Python so that it never competes for the interpreter lock. Files made here decrypt with the C(age) command line
    tool (C(age -d -i key.txt FILE), and for bundles C(| zstd -d | tar x)), and files made by C(age) decrypt here.
  - Every file is written under a temporary name in the destination folder, fsynced and renamed into place, mode
    C(0600) unless O(mode) says otherwise. On any error, including a wrong key or a truncated or tampered input (age
    authenticates every 64 KiB chunk), nothing is left under O(dest).
  - B(Idempotency.) age output is randomized, so whether something changed is decided from a record.
    For O(state=encrypted) to O(dest), the record is a sidecar file C(.<dest name>.lifeboat.json) (0600) beside
    O(dest); for a repository, the artifact's manifest. The record holds the recipients' public keys, the SHA-256 of
    the ciphertext and a salted, stretched digest (PBKDF2-SHA256) of the source content, never the source's plain
    hash and never a secret. A second run with the same source and recipients reports C(changed=false).
    O(state=decrypted) compares the decrypted content with what is in O(dest) and needs no record.
    Changing only the O(passphrase) is not noticed (it is not recorded); use O(force=true).
  - B(Passphrases.) pyrage encrypts and decrypts with a passphrase (scrypt) in memory only, so a passphrase is limited
    to inputs (a file, or a folder's compressed tar) of at most 16 MiB. Use recipients for anything larger.
  - B(Rekeying.) O(state=rekeyed) decrypts each file in a child process and re-encrypts it here through a pipe, so
    plaintext never reaches the disk. Before anything is published, the old ciphertext is checked against its
    manifest's SHA-256 and size. In a local repository (and for a single file) the new ciphertext is written under a
    temporary name and renamed over the old one; in an S3 repository it is streamed as a multipart upload onto the
    same key (one part buffer in memory, retries, the storage class and server-side encryption of O(storage_class)
    and O(sse)), which S3 makes the current object atomically when the upload completes, and only if the object is
    still the one that was read (C(If-Match)); on any failure the upload is aborted and the old object stays
    current, untouched (an upload a killed run left open is aborted by the next run on that tenant). Then the
    manifest (recipients, stored size, SHA-256) is replaced, so the manifest stays the commit marker. The tenant is
    locked meanwhile.
  - B(Interrupted rekeys.) A run that dies after publishing the new ciphertext but before rewriting the manifest
    leaves a manifest whose SHA-256 is the old ciphertext's. The rekey leaves a marker before it publishes (on S3,
    metadata of the new object itself, C(lifeboat-rekey-of) and C(lifeboat-rekey-to), the SHA-256 of the ciphertext it
    replaced and a digest of the new recipient set; in a local repository, a sidecar C(.<artifact>.rekey.json) written
    after the new ciphertext is complete and before the rename). Running the same task again finds the marker,
    checks the artifact (its SHA-256, and its age header's recipient count), and rewrites the manifest without
    decrypting anything (the C(action) of its entry in RV(rekeyed) is C(finished the interrupted rekey)). Asking
    for other recipients than the interrupted run's is refused with a message saying so; finish with the same
    recipients first.
  - B(Versioned buckets.) Rekeying replaces the current object only. On a versioned S3 bucket the old ciphertext,
    readable with the old identities, stays in earlier object versions (of the artifact and of its manifest) until a
    lifecycle rule expires them (M(lifeboat.backup.s3_lifecycle) with a noncurrent-version expiration) or they are
    deleted; the module warns when it leaves them. O(purge_old_versions=true) deletes them once the new version is
    written. Local repositories keep no versions (file-system snapshots and copies made elsewhere are not touched).
author: [Lifeboat maintainers (@lifeboat)]
extends_documentation_fragment: [lifeboat.backup.identity, lifeboat.backup.repository.recipients, lifeboat.backup.s3, lifeboat.backup.s3.storage]
attributes:
  check_mode:
    support: full
    description:
      - Computes everything (digests, and for O(state=decrypted) the decrypted content, in memory-bounded streams)
        and writes nothing.
  diff_mode:
    support: full
    description: Shows the recipients, and for bundles the paths that would be created or replaced.
options:
  state:
    description:
      - V(encrypted) encrypts O(src) to O(dest), or to a C(tar) artifact of O(repository) for O(tenant).
      - V(decrypted) decrypts O(src) to O(dest). A bundle (a name ending in C(.tar.age) or C(.tar.zst.age), or
        O(format=tar)) is merged into the folder O(dest); other files of O(dest) are left alone.
      - V(keypair) creates the age identity file O(identity_file) (0600) if it is missing and returns its public key;
        with O(identity_dir) and O(tenants), one key pair per tenant in that key folder (made 0700),
        C(<tenant>.key) (0600) and its public key beside it, C(<tenant>.pub). An existing identity is always kept.
        Make key folders on the controller or a verifier, never on database hosts (they hold public keys only).
      - V(rekeyed) re-encrypts O(src), or every artifact of O(repository) (of O(tenant) if given), to O(recipients),
        in place, in a local folder or an S3 repository. Artifacts whose manifest already lists exactly
        O(recipients) are left alone. On a versioned bucket the old ciphertext stays in earlier object versions
        unless O(purge_old_versions=true); see B(Versioned buckets) above.
    type: str
    choices: [encrypted, decrypted, keypair, rekeyed]
    default: encrypted
  src:
    description:
      - For V(encrypted), the file or folder to encrypt (a folder is streamed as a tar bundle; sockets, FIFOs and
        devices in it are skipped and listed in RV(skipped)).
      - For V(decrypted) and V(rekeyed), the age file (binary or armored). For V(decrypted) with O(repository),
        leave it out; O(artifact) chooses the repository's artifact then.
    type: path
  dest:
    description:
      - For V(encrypted), the encrypted file to write (not with O(repository)).
      - For V(decrypted), the file to write, or for a bundle the folder to unpack into (created 0700 if missing).
    type: path
  repository:
    description:
      - A repository folder. With O(state=encrypted), O(src) is stored as
        C(<repository>/<tenant>/<tenant>-<YYYYMMDDTHHMMSSZ>.tar.zst.age) with its manifest written last.
      - With O(state=rekeyed), every complete encrypted artifact of O(tenant) (or of every tenant) is rekeyed.
      - With O(state=decrypted), the artifact of O(tenant) named by O(artifact) is decrypted (a bundle unpacked)
        to O(dest), straight from the repository (a folder or C(s3://), streamed), after its stored bytes are
        checked against its manifest; O(src) is not given then.
    type: str
  artifact:
    description:
      - With O(state=decrypted) and O(repository), which artifact of O(tenant) to decrypt. V(latest) is the newest
        complete one; V(latest_verified) the newest one whose C(backup_verify) record still matches it (see
        M(lifeboat.backup.backup_info)); or an artifact's file name, like C(acme-config-20260101T030000Z.tar.zst.age).
      - Default V(latest) when O(repository) is given with O(state=decrypted).
    type: str
  tenant:
    description:
      - The tenant whose folder of O(repository) is used, matching C(^[a-z0-9][a-z0-9_-]{0,62}$).
    type: str
  tenants:
    description:
      - With O(state=keypair) and O(identity_dir), the tenants to make a key pair for (existing ones are kept).
    type: list
    elements: str
  recipients:
    description:
      - age recipients to encrypt to, X25519 (C(age1...)) or SSH (C(ssh-ed25519 ...), C(ssh-rsa ...)) public keys.
        Any one of the matching identities can decrypt. A malformed recipient is named in the error.
  passphrase:
    description:
      - Encrypt with a passphrase (scrypt) instead of recipients, or decrypt a passphrase-encrypted O(src).
        Limited to 16 MiB of data (pyrage works in memory for passphrases).
    type: str
  identity:
    description:
      - The age identity (C(AGE-SECRET-KEY-1...) lines) or unencrypted SSH private key to decrypt with.
        Never logged or returned. Prefer O(identity_file) or the E(BACKUP_PRIVATE_KEY) environment variable.
    type: str
  identity_file:
    description:
      - A file of age identities (as made by C(age-keygen)) or an unencrypted SSH private key (ed25519 or RSA).
        When neither O(identity) nor O(identity_file) is given, the E(BACKUP_PRIVATE_KEY) environment variable is used.
      - For O(state=keypair), the identity file to create.
    type: path
  armor:
    description:
      - Write ASCII-armored (PEM-like) output instead of binary, for O(state=encrypted) to O(dest).
        Decryption recognizes both. Rekeying keeps the form a file had.
    type: bool
    default: false
  format:
    description:
      - V(file) encrypts or decrypts the bytes as they are; V(tar) makes or unpacks a bundle.
      - V(auto) makes a bundle of a folder (and of anything stored in a O(repository)), and unpacks a O(src) whose
        name ends in C(.tar.age) or C(.tar.zst.age).
    type: str
    choices: [auto, file, tar]
    default: auto
  compression:
    description:
      - V(zstd) compresses before encrypting and decompresses after decrypting; V(none) does not.
      - V(auto) compresses bundles and not single files when encrypting, and decompresses a O(src) whose name has
        C(.zst) before C(.age) when decrypting.
    type: str
    choices: [auto, zstd, none]
    default: auto
  compression_level:
    description:
      - zstd level, 1 (fastest) to 19 (smallest).
    type: int
    default: 3
  mode:
    description:
      - Mode of the file written to O(dest), as an octal string such as C('0600'). Members of an unpacked bundle keep
        their own modes (and owners, when run as root), without setuid or setgid bits.
    type: raw
    default: '0600'
  remove_src:
    description:
      - Remove O(src) once its content is safely in place (for O(state=encrypted), the whole folder for a bundle).
        A later run with O(src) gone reports C(changed=false) when the record shows it was done.
        Removal is an unlink, not a secure erase. Refused for repository artifacts.
    type: bool
    default: false
  force:
    description:
      - Encrypt or rekey again even when the record says nothing changed.
    type: bool
    default: false
  purge_old_versions:
    description:
      - With O(state=rekeyed) on a versioned S3 repository, delete the non-current versions and delete markers of
        every selected artifact and of its manifest, once the new ciphertext and manifest are written. They hold
        the old ciphertext, which the old identities still decrypt. The current version is never deleted. Artifacts
        already rekeyed by an earlier run are purged too, so running again with this option cleans up after a rekey
        made without it.
      - Without it, the earlier versions stay until a lifecycle rule expires them (M(lifeboat.backup.s3_lifecycle),
        noncurrent-version expiration).
      - S3 refuses to delete a version under object-lock retention or legal hold (AWS error C(AccessDenied)), or when a
        bucket policy denies C(s3:DeleteObjectVersion). Every artifact is still rekeyed and every other version
        deleted; then the task fails with a message naming each refused key, version and AWS error code (also in
        C(details.refused_versions)), because the old ciphertext the operator asked to remove is still there.
      - On a bucket that never had versioning, and in local repositories, there is nothing to delete; RV(purge_note)
        says so.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for another run on the same tenant of O(repository) to finish before failing.
    type: int
    default: 0
notes:
  - Needs the Python libraries C(pyrage), and C(zstandard) for compression, in the interpreter that runs the module
    (the roles install them in C(/opt/lifeboat/venv)).
  - Encrypting hosts need recipients (public keys) only. Give identities only where decryption is meant to happen.
seealso:
  - name: age
    description: The age file encryption format and tool.
    link: https://age-encryption.org
"""

EXAMPLES = r"""
- name: Put a configuration bundle back from an S3 repository (disaster recovery)
  lifeboat.backup.age_encrypt:
    state: decrypted
    repository: s3://acme-backups/prod
    tenant: acme-config
    artifact: latest_verified
    dest: /etc/acme-app
    identity: "{{ vault_lifeboat_identity }}"

- name: Create the verifier's age identity and learn its public key
  lifeboat.backup.age_encrypt:
    state: keypair
    identity_file: /etc/lifeboat/identity.txt
  register: verifier_key

- name: One key pair per tenant in a key folder on the controller (existing keys are kept)
  lifeboat.backup.age_encrypt:
    state: keypair
    identity_dir: "{{ playbook_dir }}/keys"
    tenants: [acme, globex]
  delegate_to: localhost
  register: tenant_keys

- name: Encrypt a secrets folder as a bundle to the operators' SSH keys and an age key
  lifeboat.backup.age_encrypt:
    src: /etc/myapp
    dest: /var/backups/myapp-config.tar.zst.age
    recipients:
      - "{{ verifier_key.public_key }}"
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb9ZpsV8hEeOuoxJH4J1cFjY8jr7Gm2+VKU0cPfQ3Zs oncall@example.com

- name: Store a configuration bundle as a tar artifact of a repository
  lifeboat.backup.age_encrypt:
    src: /etc/myapp
    repository: /var/backups/lifeboat
    tenant: acme
    recipients_file: /etc/lifeboat/recipients.txt

- name: Encrypt a small file with a passphrase, ASCII-armored
  lifeboat.backup.age_encrypt:
    src: /root/recovery-codes.txt
    dest: /root/recovery-codes.txt.age
    passphrase: "{{ vault_recovery_passphrase }}"
    armor: true

- name: Restore a configuration bundle (merged into the folder, nothing outside it)
  lifeboat.backup.age_encrypt:
    state: decrypted
    src: /var/backups/myapp-config.tar.zst.age
    dest: /etc/myapp
    identity_file: /etc/lifeboat/identity.txt

- name: Rotate keys of every artifact of a repository without writing plaintext
  lifeboat.backup.age_encrypt:
    state: rekeyed
    repository: /var/backups/lifeboat
    recipients_file: /etc/lifeboat/recipients-2026.txt
    identity_file: /etc/lifeboat/identity-2025.txt

- name: Rotate keys of an S3 repository and delete the old ciphertext kept in earlier object versions
  lifeboat.backup.age_encrypt:
    state: rekeyed
    repository: s3://backups-example/nightly
    tenant: acme
    recipients_file: /etc/lifeboat/recipients-2026.txt
    identity_file: /etc/lifeboat/identity-2025.txt
    purge_old_versions: true
"""

RETURN = r"""
src:
  description: The source, as an absolute path; with O(state=decrypted) and O(repository), the artifact's location.
  returned: when O(src) is given, or with O(state=decrypted) and O(repository)
  type: str
dest:
  description: The destination, as an absolute path.
  returned: when O(dest) is given
  type: str
artifact:
  description:
    - The repository artifact written (or found up to date) with O(state=encrypted); the artifact's file name
      decrypted with O(state=decrypted).
  returned: with O(repository) and O(state=encrypted) or O(state=decrypted)
  type: str
verified_at:
  description: When C(backup_verify) proved the decrypted artifact (with O(artifact=latest_verified)), else null.
  returned: with O(repository) and O(state=decrypted)
  type: str
  sample: /var/backups/lifeboat/acme/acme-20260101T030000Z.tar.zst.age
manifest:
  description: The artifact's manifest.
  returned: with O(repository) and O(state=encrypted)
  type: str
recipients:
  description: The public keys encrypted to (normalized, duplicates removed).
  returned: for O(state=encrypted) and O(state=rekeyed)
  type: list
  elements: str
state_file:
  description: The sidecar record that makes O(state=encrypted) idempotent.
  returned: for O(state=encrypted) to O(dest)
  type: str
sha256:
  description: SHA-256 of the ciphertext (encrypted) or of the plaintext file (decrypted).
  returned: when known
  type: str
size:
  description: Bytes of the ciphertext (encrypted) or of the plaintext file (decrypted).
  returned: when known
  type: int
size_raw:
  description: Bytes of plaintext encrypted (for a bundle, of the uncompressed tar).
  returned: when something was encrypted
  type: int
reasons:
  description: Why O(state=encrypted) (re)encrypted, empty when up to date.
  returned: for O(state=encrypted)
  type: list
  elements: str
skipped:
  description: Members of a source folder that are not files, folders or symlinks and were left out of the bundle.
  returned: when a bundle was written
  type: list
  elements: str
changes:
  description: For an unpacked bundle, each path (relative to O(dest)) created, replaced or updated (mode, owner).
  returned: for O(state=decrypted) of a bundle
  type: list
  elements: dict
public_key:
  description: The public key (recipient) of O(identity_file). The identity itself is never returned.
  returned: for O(state=keypair), except in check mode when the file does not exist yet
  type: str
  sample: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
identity_dir:
  description: The key folder, as an absolute path.
  returned: for O(state=keypair) with O(identity_dir)
  type: str
keys:
  description:
    - Per tenant, its C(identity_file), C(public_key_file), C(public_key) (null in check mode before it exists) and
      whether it was created (C(changed)). The identities themselves are never returned.
  returned: for O(state=keypair) with O(identity_dir)
  type: dict
  sample: {"acme": {"identity_file": "/srv/keys/acme.key", "public_key_file": "/srv/keys/acme.pub",
                    "public_key": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "changed": true}}
public_keys:
  description: With O(identity_dir), each tenant's public key (tenant -> key); else the public keys of O(identity_file).
  returned: for O(state=keypair)
  type: raw
rekeyed:
  description: The files or artifacts rekeyed (or that would be, in check mode), with the recipients before.
  returned: for O(state=rekeyed)
  type: list
  elements: dict
unchanged:
  description: The files or artifacts that already use exactly O(recipients).
  returned: for O(state=rekeyed)
  type: list
  elements: dict
purged_versions:
  description: Earlier object versions deleted by O(purge_old_versions), each with C(key), C(version_id) and
    C(delete_marker).
  returned: for O(state=rekeyed)
  type: list
  elements: dict
  sample: [{"key": "nightly/acme/acme-20260101T030000Z.pgdump.zst.age", "version_id": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
            "delete_marker": false}]
would_purge:
  description: In check mode with O(purge_old_versions), the earlier versions present now that a real run would delete
    (it also deletes those its own rekey replaces).
  returned: in check mode, for O(state=rekeyed) with O(purge_old_versions) on a versioned bucket
  type: list
  elements: dict
purge_note:
  description: Why O(purge_old_versions) had nothing to delete (a local repository, or a bucket without versioning).
  returned: for O(state=rekeyed) with O(purge_old_versions), when it applies
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.backup.plugins.module_utils import agefile as engine
from ansible_collections.lifeboat.backup.plugins.module_utils import module_main


def main():
    module_main.run(AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs()), engine.run)


if __name__ == "__main__":
    main()
