# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The age child process that age_stream.AgeProcess starts (``main``).

It reads its keys from a pipe, parses them with crypto.py (the engine's one
key parser), streams stdin to stdout through pyrage, and reports the outcome
as one JSON line on a status pipe. It runs in a fresh interpreter: keep its
imports to crypto.py and the standard library.
"""

import json
import os

from .. import crypto


def parse_keys(op, text):
    """Identities (``decrypt``) or recipients (``encrypt``, one a line) from ``text``."""
    if op == "decrypt":
        return crypto.parse_identities(text, "the identity given to the age worker")
    lines = [line.strip() for line in text.splitlines()]
    return [crypto.parse_recipient(line)[0] for line in lines if line and not line.startswith("#")]


def main(argv):
    """``argv``: the operation (encrypt or decrypt), the key and status fds, "1" for armored output."""
    op, key_fd, status_fd, armored = argv[0], int(argv[1]), int(argv[2]), argv[3] == "1"
    status = os.fdopen(status_fd, "w")

    def report(**kw):
        status.write(json.dumps(kw))
        status.flush()

    with os.fdopen(key_fd, "rb") as f:
        text = f.read().decode("utf-8")
    pyrage = crypto.pyrage
    if pyrage is None:
        report(error="import", msg=crypto.PYRAGE_IMPORT_ERROR)
        return 2
    try:
        parsed = parse_keys(op, text)
    except Exception as e:
        report(error="keys", msg=str(e))
        return 2
    text = None
    src = os.fdopen(0, "rb", buffering=0)
    dst = os.fdopen(1, "wb", buffering=0)
    try:
        if op == "decrypt":
            pyrage.decrypt_io(src, dst, parsed)
        else:
            pyrage.encrypt_io(src, dst, parsed, armored=armored)
    except pyrage.DecryptError as e:
        report(error="decrypt", msg=str(e))
        return 3
    except pyrage.EncryptError as e:
        report(error="encrypt", msg=str(e))
        return 3
    except BrokenPipeError:
        report(error="pipe", msg="the reader went away")
        return 4
    except OSError as e:
        report(error="truncated" if e.errno is None else "os", msg=str(e))
        return 3
    report(ok=True)
    return 0
