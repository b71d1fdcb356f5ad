# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running pg_restore for both plans: the artifact streamed into its stdin (jobs: 1) or
decrypted into a private folder (jobs > 1); its failure explained; a failed step's message
completed with what it left; texts shared by the plans."""

import contextlib
import re
import subprocess

from .. import naming, pipeline
from ..errors import LifeboatError
from ..repository import describe_os_error
from ..restore_common import PipeSink, PrivateDir
from ..tools import Tool
from . import compat
from .pg_server import APP


def stream_into(tool, art, identities, progress):
    """Decrypt the artifact into ``tool``'s stdin. None when the tool stopped reading."""
    sink = PipeSink(tool.proc.stdin)
    src = art.open()
    try:
        sizes = pipeline.load(src, sink, identities, art.compressed, progress)
    except Exception:
        if sink.broken:
            tool.wait()
            return None
        raise
    finally:
        src.close()
    try:
        tool.proc.stdin.close()
    except BrokenPipeError:
        return None
    return sizes


def _decrypt_to_file(art, identities, tmp, progress):
    path, out = tmp.new_file("archive.pgdump")
    src = art.open()
    try:
        try:
            sizes = pipeline.load(src, out, identities, art.compressed, progress)
        finally:
            out.close()
    except OSError as e:
        if getattr(e, "errno", None) is None:
            raise
        raise LifeboatError(describe_os_error(e, "Decrypting the artifact into the private folder %s" % tmp.path) +
                            "; set tmp_dir to a folder with room for the whole archive, or use jobs: 1.",
                            option="tmp_dir")
    finally:
        src.close()
    art.verify(sizes)
    return path, sizes


def _hint(failure, req):
    text = failure or ""
    if re.search(r'role "[^"]+" does not exist', text):
        if req.owners:
            return (" The archive's objects belong to (or grant privileges to) roles this server does not have: "
                    "restore the server's globals first (globals_artifact), or set owners: false and "
                    "privileges: false.")
        return (" The archive grants privileges to (or its row-level security policies name) roles this server does "
                "not have: restore the server's globals first (globals_artifact), or create the roles; privileges: "
                "false leaves grants out, but a policy needs its roles.")
    if "unsupported version" in text:
        return " pg_restore is older than the pg_dump that wrote the archive: install a newer client or set pg_bin_dir."
    if "already exists" in text and req.allow_create_in_dump:
        return " The archive's database already exists under its name: set force: true to replace it."
    return ""


def restore_failed(what, failure, req, outcome):
    missing_role = "does not exist" in (failure or "") and "role" in (failure or "")
    return LifeboatError("%s failed: %s.%s %s" % (what, failure, _hint(failure, req), outcome),
                         option=("owners" if req.owners else "privileges") if missing_role else None)


def pg_restore_argv(server, req, dbname, create=False, art=None):
    argv = [server.tool("pg_restore", compat.dump_major(art)), "--format=custom", "--no-password", "--exit-on-error",
            "--dbname=" + server.conninfo(dbname, APP + "-pg_restore")]
    if not req.owners:
        argv.append("--no-owner")
    if not req.privileges:
        argv.append("--no-privileges")
    if create:
        argv.append("--create")
    return argv


def run_pg_restore(server, req, art, identities, dbname, progress, what, outcome, create=False):
    """pg_restore the artifact into ``dbname`` (with ``create``: connected to it, creating the
    archive's database). Raises with pg_restore's first errors; returns the sizes read."""
    argv = pg_restore_argv(server, req, dbname, create, art)
    env = server.env(APP + "-pg_restore")
    if req.jobs > 1:
        with PrivateDir(req.p["tmp_dir"]) as tmp:
            path, sizes = _decrypt_to_file(art, identities, tmp, progress)
            failure = Tool.run(argv + ["--jobs=%d" % req.jobs, path], env)
        if failure:
            raise restore_failed(what, failure, req, outcome)
        return sizes
    # No --single-transaction: the fresh database (or, with --create, the database created in this run) is
    # thrown away on failure, and one transaction over thousands of tables can exhaust max_locks_per_transaction.
    tool = Tool(argv, env, stdin=subprocess.PIPE)
    try:
        sizes = stream_into(tool, art, identities, progress)
        tool.wait()
        failure = tool.failure()
        if sizes is None and not failure:
            failure = "pg_restore stopped reading the archive"
        if failure:
            raise restore_failed(what, failure, req, outcome)
    finally:
        tool.close()
    art.verify(sizes)
    return sizes


@contextlib.contextmanager
def failing_with(outcome, undo=None):
    """A step whose failure leaves ``outcome`` (said at the end of its error, once) and runs ``undo``."""
    done = False
    try:
        yield
        done = True
    except LifeboatError as e:
        if outcome not in e.msg:
            e.msg = "%s %s" % (e.msg, outcome)
        raise
    finally:
        if not done and undo is not None:
            undo()


# -- texts of both plans ---------------------------------------------------------------------------


def describe_contents(contents):
    if contents is None:
        return "contents could not be inspected"
    parts = []
    for key in ("tables", "functions", "schemas", "extensions", "types"):
        if contents.get(key):
            parts.append("%d %s" % (contents[key], key if contents[key] != 1 else key[:-1]))
    other = contents.get("relations", 0) - contents.get("tables", 0)
    if other > 0:
        parts.append("%d other relation%s" % (other, "s" if other != 1 else ""))
    return ", ".join(parts) or "empty"


def manifest_figures(art):
    counts = art.manifest["row_counts"]
    return "taken %s, %d tables, %d rows, %s" % (art.stamp, len(counts), sum(counts.values()),
                                                 naming.human_size(art.manifest["size"]["raw"]))
