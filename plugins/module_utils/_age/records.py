# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What age_encrypt leaves beside its files so that a second run changes nothing, and how it writes them.

A ``dest`` file gets a sidecar record ``.<dest name>.lifeboat.json`` (0600) with the recipients, the SHA-256
of the ciphertext and a salted, stretched digest of the source. Every file is written through AtomicFile
(files.py: temporary name, fsync, rename, folder fsync).
"""

import hashlib
import json
import os
import secrets

from .. import files
from ..errors import LifeboatError
from ..repository import describe_os_error

RECORD_VERSION = 1
KDF_ITERATIONS = 100000


def record_path(dest):
    return os.path.join(os.path.dirname(dest), ".%s.lifeboat.json" % os.path.basename(dest))


def stretch(digest_hex, salt_hex, iterations=KDF_ITERATIONS):
    return hashlib.pbkdf2_hmac("sha256", bytes.fromhex(digest_hex), bytes.fromhex(salt_hex), iterations).hex()


def source_record(digest_hex):
    salt = secrets.token_hex(16)
    return {"algorithm": "pbkdf2-sha256", "iterations": KDF_ITERATIONS, "salt": salt,
            "value": stretch(digest_hex, salt)}


def source_matches(record, digest_hex):
    try:
        if record.get("algorithm") != "pbkdf2-sha256":
            return False
        return secrets.compare_digest(stretch(digest_hex, record["salt"], int(record["iterations"])), record["value"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return False


def read_record(path):
    """The sidecar record, or None when missing or unusable (then we redo the work)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(1 << 20).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION:
        return None
    return data


def ensure_parent(path, check_mode):
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent) and not check_mode:
        try:
            os.makedirs(parent, 0o700, exist_ok=True)
        except OSError as e:
            raise LifeboatError(describe_os_error(e, "Creating the folder %s" % parent), option="dest")


class AtomicFile(files.AtomicFile):
    """files.AtomicFile, its failures told as age_encrypt's (with the option that fixes them)."""

    def __init__(self, final_path, mode=0o600):
        try:
            super(AtomicFile, self).__init__(final_path, mode)
        except OSError as e:
            raise LifeboatError(describe_os_error(e, "Creating a file in %s" % (os.path.dirname(final_path) or ".")),
                                option="dest")

    def commit(self, replace=True):
        try:
            return super(AtomicFile, self).commit(replace)
        except FileExistsError:
            raise LifeboatError("Refusing to replace %s, which appeared meanwhile; nothing was changed."
                                % self.final_path)


def write_json_atomic(path, data, replace=True):
    with AtomicFile(path, 0o600) as f:
        f.write(files.json_bytes(data))
        return f.commit(replace=replace)
