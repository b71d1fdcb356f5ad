# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server globals: pg_dumpall --globals-only output, decrypted into memory, filtered so that
existing roles and tablespaces stay as they are, run by psql in one transaction."""

import collections
import re
import subprocess
import time

from .. import pipeline
from ..errors import LifeboatError
from ..tools import Tool
from .pg_server import APP

GLOBALS_LIMIT = 64 << 20


# -- globals -------------------------------------------------------------------------------------

_IDENT = r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_ROLE_LINE = re.compile(r"^(CREATE ROLE|ALTER ROLE|COMMENT ON ROLE) " + _IDENT + r"[ ;]")
_TABLESPACE_LINE = re.compile(r"^CREATE TABLESPACE " + _IDENT + r" .*LOCATION '((?:[^']|'')*)'")


def _unquote(name):
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def transform_globals(text, roles, tablespaces):
    """Filter ``pg_dumpall --globals-only`` output for this server.

    Roles that already exist are left as they are (their CREATE, ALTER and COMMENT lines are
    dropped: the role running the restore keeps its password); missing roles are created.
    Existing tablespaces are skipped; missing ones are reported (they need a folder on the host).
    Returns (script, created roles, existing roles, missing tablespaces [(name, location)]).
    """
    out = []
    created, existing, missing = [], [], []
    for line in text.splitlines(True):
        m = _ROLE_LINE.match(line)
        if m:
            name = _unquote(m.group(2))
            if name in roles:
                if m.group(1) == "CREATE ROLE" and name not in existing:
                    existing.append(name)
                continue
            if m.group(1) == "CREATE ROLE" and name not in created:
                created.append(name)
            out.append(line)
            continue
        m = _TABLESPACE_LINE.match(line)
        if m:
            name = _unquote(m.group(1))
            if name not in tablespaces:
                missing.append((name, m.group(2).replace("''", "'")))
            continue
        out.append(line)
    return "".join(out), created, existing, missing


class _Buffer(object):
    """A bounded in-memory writer (a globals script is small; never a tenant's data)."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.size = 0

    def write(self, data):
        self.size += len(data)
        if self.size > self.limit:
            raise LifeboatError("The globals artifact is larger than %d MiB: it is not a pg_dumpall --globals-only "
                                "output." % (self.limit >> 20), option="globals_artifact")
        self.parts.append(bytes(data))
        return len(data)

    def flush(self):
        pass

    def getvalue(self):
        return b"".join(self.parts)


class GlobalsPlan(collections.namedtuple("GlobalsPlan", "server art script created existing")):
    """What restoring a globals artifact would do: its filtered ``script``, the roles it creates and leaves."""

    __slots__ = ()

    def describe(self):
        return {"artifact": self.art.path, "manifest": self.art.manifest_path, "stamp": self.art.stamp,
                "source_server": self.art.source.get("server"), "roles_created": list(self.created),
                "roles_existing": list(self.existing)}

    def summary_check(self):
        return "would restore the globals %s on %s: create roles %s; leave existing roles %s as they are." % (
            self.art.name, self.server.where, ", ".join(self.created) or "(none)",
            ", ".join(self.existing) or "(none)")

    def summary_done(self):
        return "Restored the globals %s: created roles %s (existing roles left as they were: %s)." % (
            self.art.name, ", ".join(self.created) or "(none)", ", ".join(self.existing) or "(none)")


def plan_globals(server, art, identities):
    """Decrypt the globals artifact (into memory: it is small) and decide what it would change."""
    if art.manifest["size"]["raw"] > GLOBALS_LIMIT:
        raise LifeboatError("The globals artifact %s is larger than %d MiB: not a pg_dumpall --globals-only output."
                            % (art.path, GLOBALS_LIMIT >> 20), option="globals_artifact")
    buf = _Buffer(GLOBALS_LIMIT)
    src = art.open()
    try:
        sizes = pipeline.load(src, buf, identities, art.compressed)
    finally:
        src.close()
    art.verify(sizes)
    text = buf.getvalue().decode("utf-8", "replace")
    roles = set(r[0] for r in server.execute("SELECT rolname FROM pg_catalog.pg_roles", None, "Listing roles").fetchall())
    spaces = set(r[0] for r in server.execute("SELECT spcname FROM pg_catalog.pg_tablespace", None,
                                              "Listing tablespaces").fetchall())
    script, created, existing, missing = transform_globals(text, roles, spaces)
    if missing:
        raise LifeboatError(
            "The globals artifact %s creates tablespaces this server lacks: %s. Create them (and their folders) "
            "on %s first, then run again. Nothing was changed." % (
                art.path, ", ".join("%s at %s" % m for m in missing), server.where),
            option="globals_artifact",
        )
    return GlobalsPlan(server, art, script, created, existing)


def apply_globals(server, plan):
    t0 = time.monotonic()
    argv = [server.tool("psql"), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1",
            "--dbname=" + server.conninfo(server.maint, APP + "-psql"), "-c", "BEGIN", "-f", "-"]
    tool = Tool(argv, server.env(APP + "-psql"), stdin=subprocess.PIPE)
    try:
        try:
            tool.proc.stdin.write(plan.script.encode("utf-8") + b"\nCOMMIT;\n")
            tool.proc.stdin.close()
        except BrokenPipeError:
            pass
        tool.wait()
        failure = tool.failure()
    finally:
        tool.close()
    if failure:
        raise LifeboatError(
            "Restoring the globals %s on %s failed: %s. No role was created or changed (one transaction). Fix the "
            "cause, or restore without globals_artifact." % (plan.art.name, server.where, failure),
            option="globals_artifact",
        )
    result = plan.describe()
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result
