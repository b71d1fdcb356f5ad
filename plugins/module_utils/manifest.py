# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifests: the commit marker of an artifact, written last.

A manifest records what is needed to trust and restore an artifact, and
never a secret: public keys of the recipients, never an identity; the
connection's host and user, never a password.
"""

import socket

from . import naming
from .errors import LifeboatError
from .version import TOOL_NAME, TOOL_VERSION

MANIFEST_VERSION = 1

REQUIRED = (
    "manifest_version",
    "tool",
    "tool_version",
    "tenant",
    "engine",
    "format",
    "artifact",
    "stamp",
    "started_at",
    "finished_at",
    "size",
    "sha256",
    "compression",
    "encryption",
    "row_counts",
    "source",
)


def build(tenant, engine, fmt, artifact, stamp, started, finished, sizes, sha256, compression_level,
          recipients, row_counts, source):
    return {
        "manifest_version": MANIFEST_VERSION,
        "tool": TOOL_NAME,
        "tool_version": TOOL_VERSION,
        "tenant": tenant,
        "engine": engine,
        "format": fmt,
        "artifact": artifact,
        "stamp": stamp,
        "started_at": naming.iso(started),
        "finished_at": naming.iso(finished),
        "seconds": round((finished - started).total_seconds(), 3),
        "size": {"raw": sizes["raw"], "stored": sizes["stored"]},
        "sha256": sha256,
        "compression": {"algorithm": "zstd", "level": compression_level} if compression_level is not None else None,
        "encryption": {"algorithm": "age", "recipients": list(recipients)} if recipients else None,
        "row_counts": row_counts,
        "source": source,
        "backup_host": socket.gethostname(),
    }


def validate(data, where):
    """Raise a clear error when ``data`` is not a usable manifest."""
    if not isinstance(data, dict):
        raise LifeboatError("%s is not a lifeboat manifest (not a JSON object)." % where)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise LifeboatError("%s is not a complete lifeboat manifest: missing %s." % (where, ", ".join(missing)))
    if data["manifest_version"] != MANIFEST_VERSION:
        raise LifeboatError(
            "%s has manifest_version %r; this lifeboat.backup (%s) reads version %d. Use a matching "
            "version of the collection." % (where, data["manifest_version"], TOOL_VERSION, MANIFEST_VERSION)
        )
    size = data["size"]
    if not (isinstance(size, dict) and isinstance(size.get("stored"), int) and isinstance(size.get("raw"), int)):
        raise LifeboatError("%s has a malformed size record." % where)
    if not (isinstance(data["sha256"], str) and len(data["sha256"]) == 64):
        raise LifeboatError("%s has a malformed sha256." % where)
    if not isinstance(data["row_counts"], dict):
        raise LifeboatError("%s has malformed row_counts." % where)
    return data
