# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An artifact decoded and restored into a scratch place: a PostgreSQL scratch database (with
the shared part a schema tenant needs first), a private SQLite file, or a tar or globals payload only read."""

import contextlib
import os
import secrets
import socket
import sqlite3
import subprocess
import tarfile

from .. import large_objects, naming, pipeline, policy_roles, postgres, shared_part
from .. import sqlite as sqlite_engine
from ..errors import LifeboatError
from .._restore import compat
from ..restore_common import PipeSink, PrivateDir
from ..scratch import Janitor
from ..tools import Tool, redact
from .checks import FAIL, PASS, SKIP, Check, counts_check, run_queries, skip


class DecodeFailed(Exception):
    pass


def load(repo, tenant, art, sink, identities, compressed):
    src = repo.open_read(tenant, art["name"])
    try:
        return pipeline.load(src, sink, identities, compressed)
    except LifeboatError as e:
        raise DecodeFailed(str(e))
    finally:
        src.close()


def hash_only(repo, tenant, art):
    src = repo.open_read(tenant, art["name"])
    try:
        return pipeline.load(src, _Null(), None, False)
    finally:
        src.close()


class _Null(object):
    def write(self, data):
        return len(data)

    def flush(self):
        pass


def restore_pg(ctx, repo, tenant, art, doc, identities, compressed):
    server_major = 0
    with Janitor() as janitor:
        admin = ctx.conn.connect("postgres", app="lifeboat-verify", option="login_host")
        try:
            server_version = postgres.server_version(admin)
            server_major = postgres.major(server_version)
            source = doc.get("source") or {}
            source_major = compat.newer_source_major(source, server_major)
            if source_major:
                return None, Check("restore").done(FAIL, (
                    "the artifact was dumped from PostgreSQL %s and the verifier's server %s runs PostgreSQL %s: "
                    "PostgreSQL restores a dump into the same or a newer major version only, so it cannot be "
                    "proven here (nothing says the artifact itself is faulty). Verify it on a server of PostgreSQL "
                    "%d or newer." % (source.get("server_version"), ctx.conn.server, server_version, source_major))), []
            dump_major = postgres.major(str(source.get("pg_dump_version") or ""))
            pg_restore, _v = postgres.find_binary("pg_restore", ctx.p["pg_bin_dir"], max(server_major, dump_major),
                                                  prefer_major=server_major)
            scratch = naming.derived_name("v", tenant, art["stamp"], secrets.token_hex(4))
            jid = janitor.register_database_of(ctx.conn, scratch, "lifeboat-verify-janitor")
            from psycopg import sql
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch)))
            admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(scratch), sql.Literal("lifeboat verify scratch of %s (pid %d on %s); safe to drop"
                                                     % (art["name"], os.getpid(), socket.gethostname()))))
            created = []  # roles made for the policies of the artifacts (dropped with the scratch copy)
            try:
                first = []
                try:
                    created += policy_roles.create_for_check(admin, policy_roles.recorded(doc), art["name"])
                except LifeboatError as e:
                    return None, Check("restore").done(FAIL, str(e)), []
                if shared_part.is_schema_tenant(doc):
                    first, ok = _restore_shared(ctx, pg_restore, scratch, repo, doc, identities, admin, created)
                    if not ok:
                        return None, skip("restore", "the shared part did not restore"), first
                c = Check("restore")
                sizes, failure = _pg_restore_into(ctx, pg_restore, scratch, repo, tenant, art, identities, compressed)
                if failure or sizes is None:
                    failure = failure or "pg_restore stopped reading the archive"
                    restored_shared = any(ch.status == PASS for ch in first)
                    if not restored_shared and shared_part.is_schema_tenant(doc) and "does not exist" in failure:
                        failure += (" -- the schema tenant needs the shared part of database %r (extensions, shared "
                                    "tables and types), and the repository holds no %s artifact to restore first: back up the shared "
                                    "part (pg_backup with schemas, or the agent, which does it with the schema tenants)"
                                    % (doc["source"].get("database"), naming.shared_tenant(doc["source"].get("database"))))
                    restore = c.done(FAIL, redact(failure))
                    return sizes, restore, first + [skip("row_counts", "the restore failed")]
                restore = c.done(PASS, "pg_restore into scratch database %s on %s%s" % (
                    scratch, ctx.conn.server, "; roles its row-level security policies name were made for the check "
                    "and dropped after: %s" % ", ".join(created) if created else ""))
                with ctx.conn.connect(scratch, app="lifeboat-verify") as conn:
                    actual = postgres.row_counts(conn, (doc.get("source") or {}).get("schema") or None,
                                                 lift_forced_rls=True)
                    extra = first + [counts_check(doc["row_counts"], actual), _large_objects_check(conn, doc)]
                    extra += run_queries(ctx, lambda q: conn.execute(q).fetchone()[0])
                return sizes, restore, extra
            finally:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
                janitor.done(jid)
                policy_roles.drop_created(admin, created)
        finally:
            admin.close()


def _large_objects_check(conn, doc):
    """Every value of the columns that pointed to large objects at backup time points to one in the copy."""
    c = Check("large_objects")
    recorded = (doc.get("source") or {}).get("large_objects")
    if not recorded:
        return c.done(SKIP, "no column pointed to large objects at backup time (or the manifest predates the check)")
    lost = large_objects.missing(conn, recorded)
    if lost:
        return c.done(FAIL, "values of %s point to large objects that are not in the restored copy (%s)" % (
            large_objects.describe(lost), (doc.get("source") or {}).get("large_objects_in")
            or "a schema tenant needs its database's shared part, which holds them"))
    return c.done(PASS, "%d column(s), %d large objects, all present" % (
        len(recorded), sum(e.get("count", 0) for e in recorded)))


def _pg_restore_into(ctx, pg_restore, dbname, repo, tenant, art, identities, compressed):
    """Stream ``art`` into pg_restore for ``dbname``. Returns (sizes or None, failure text or None)."""
    # --no-subscriptions: a scratch copy must never subscribe to (or block the drop with) a publisher's slot
    argv = [pg_restore, "--format=custom", "--no-owner", "--no-privileges", "--no-subscriptions", "--no-password",
            "--exit-on-error", "--dbname=" + ctx.conn.conninfo(dbname, "lifeboat-verify-pg_restore")]
    tool = Tool(argv, ctx.conn.env("lifeboat-verify-pg_restore"), stdin=subprocess.PIPE)
    sink = PipeSink(tool.proc.stdin)
    try:
        try:
            sizes = load(repo, tenant, art, sink, identities, compressed)
        except OSError:
            if not sink.broken:
                raise
            sizes = None
        try:
            tool.proc.stdin.close()
        except BrokenPipeError:
            pass
        tool.wait()
        return sizes, tool.failure()
    finally:
        tool.close()


def _restore_shared(ctx, pg_restore, scratch, repo, doc, identities, admin, created):
    """The shared part a schema tenant needs, into the scratch database first (the roles its policies name
    are added to ``created``). Returns (checks, ok)."""
    c = Check("shared_part")
    try:
        shared = shared_part.find(repo, doc)
        if shared is not None:
            created += policy_roles.create_for_check(admin, policy_roles.recorded(shared.doc), shared.name)
    except LifeboatError as e:
        return [c.done(FAIL, str(e))], False
    if shared is None:
        return [c.done(SKIP, "no %s artifact in the repository; the tenant is restored alone"
                       % naming.shared_tenant(doc["source"]["database"]))], True
    if shared.encrypted and not identities:
        identities = ctx.identities(shared.tenant)
    try:
        sizes, failure = _pg_restore_into(ctx, pg_restore, scratch, repo, shared.tenant, shared.art, identities,
                                          shared.compressed)
    except DecodeFailed as e:
        return [c.done(FAIL, "the shared part %s did not decrypt: %s" % (shared.name, e))], False
    if failure or sizes is None:
        return [c.done(FAIL, "the shared part %s (%s) did not restore: %s" % (
            shared.name, shared.how, redact(failure or "pg_restore stopped reading the archive")))], False
    if sizes["sha256"] != shared.doc["sha256"]:
        return [c.done(FAIL, "the shared part %s does not match its manifest's SHA-256" % shared.name)], False
    return [c.done(PASS, "restored %s first (%s)" % (shared.name, shared.how))], True


@contextlib.contextmanager
def decoded_file(ctx, repo, tenant, art, name, identities, compressed):
    """``art`` decoded into the file ``name`` of a private folder, which is removed afterwards (by the
    janitor if this process is killed): yields (path, sizes)."""
    with Janitor() as janitor, PrivateDir(ctx.p["tmp_dir"], prefix="lifeboat-verify-") as tmp:
        jid = janitor.register_dir(tmp.path)
        path, out = tmp.new_file(name)
        try:
            sizes = load(repo, tenant, art, out, identities, compressed)
        finally:
            out.close()
        yield path, sizes
        janitor.done(jid)


def restore_sqlite(ctx, repo, tenant, art, doc, identities, compressed):
    with decoded_file(ctx, repo, tenant, art, "scratch.sqlite", identities, compressed) as (path, sizes):
        c = Check("restore")
        problems = sqlite_engine.integrity_check(path)
        if problems != "ok":
            return sizes, c.done(FAIL, "PRAGMA integrity_check: %s" % problems), [skip("row_counts", "the restore failed")]
        restore = c.done(PASS, "SQLite file in a private folder; PRAGMA integrity_check ok")
        extra = [counts_check(doc["row_counts"], sqlite_engine.table_row_counts(path))]
        conn = sqlite3.connect(path)
        try:
            extra += run_queries(ctx, lambda q: conn.execute(q).fetchone()[0])
        finally:
            conn.close()
        return sizes, restore, extra


def decode_only(ctx, repo, tenant, art, fmt, identities, compressed):
    with decoded_file(ctx, repo, tenant, art, "payload", identities, compressed) as (path, sizes):
        c = Check("restore")
        if fmt == "tar":
            try:
                with tarfile.open(path, "r:") as tf:
                    members = len(tf.getmembers())
                result = c.done(PASS, "a readable tar bundle of %d members (not unpacked)" % members)
            except tarfile.TarError as e:
                result = c.done(FAIL, "not a readable tar bundle: %s" % e)
        else:
            with open(path, "rb") as f:
                head = f.read(1 << 20)
            ok = b"PostgreSQL database cluster dump" in head or b"CREATE ROLE" in head
            result = c.done(PASS if ok else FAIL, "pg_dumpall --globals-only output (not applied to a server)" if ok
                            else "does not look like pg_dumpall --globals-only output")
        return sizes, result, [skip("row_counts", "no tables in a %s artifact" % fmt)]
