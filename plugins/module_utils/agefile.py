# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine behind ``age_encrypt``: encrypt, decrypt, key pairs, rekeying.

States:

- ``encrypted``: ``src`` (a file, or a folder streamed as a tar bundle) to
  ``dest``, or to a ``tar`` artifact of ``repository``/``tenant``.
- ``decrypted``: ``src`` to ``dest`` (a file, or a folder a bundle is merged
  into, safely: see age_tar).
- ``keypair``: an age identity file, created 0600 when missing.
- ``rekeyed``: existing age files (one, or every artifact of a repository)
  re-encrypted to a new recipient set, streaming, without plaintext on disk.

Idempotency. age output is randomized, so ``changed`` is decided from a
record: for ``dest`` files a sidecar ``.<dest name>.lifeboat.json`` in the
folder of ``dest`` (0600), for repository artifacts their manifest. Both hold
the recipients' public keys, the SHA-256 of the ciphertext and a *salted,
stretched* digest of the source (PBKDF2-SHA256 over the source's SHA-256,
so the record does not let anyone confirm a guess of a small secret
cheaply). Decryption compares the decrypted content with ``dest`` itself and
needs no record.

One code path for check mode: everything is computed, and only the writes
are skipped. Writes go to a temporary file in the destination folder, are
fsynced and renamed into place, mode 0600 unless ``mode`` says otherwise.

This module is the public face of age_encrypt's engine; the work is done in
``_age/``: ``request`` (options and their checks), ``records`` (sidecar
records, atomic writes), ``keypair``, ``encrypt``, ``decrypt``, ``rekey``
(one module a state), and ``worker`` (the age child process of age_stream).
"""

from ._age.decrypt import decrypted
from ._age.encrypt import encrypt_to, encrypted
from ._age.keypair import keypair
from ._age.records import RECORD_VERSION, AtomicFile, read_record, record_path, write_json_atomic
from ._age.rekey import _versioning, recipients_digest, rekeyed
from ._age.request import CHUNK, OPTIONS, SPEC, STATES, Request, identity_text, parse_mode
from .age_stream import PASSPHRASE_MAX_BYTES

__all__ = ["run", "Request", "SPEC", "OPTIONS", "STATES", "CHUNK", "PASSPHRASE_MAX_BYTES", "RECORD_VERSION",
           "AtomicFile", "parse_mode", "identity_text", "encrypt_to", "read_record", "record_path", "write_json_atomic",
           "recipients_digest", "_versioning"]

HANDLERS = {"encrypted": encrypted, "decrypted": decrypted, "keypair": keypair, "rekeyed": rekeyed}


def run(params, check_mode=False, environ=None):
    """Do what ``params`` say; return a secret-free result (with a ``diff``)."""
    req = Request(params, environ)
    result = HANDLERS[req.state](req, check_mode)
    result.setdefault("state", req.state)
    result.setdefault("check_mode", bool(check_mode))
    return result
