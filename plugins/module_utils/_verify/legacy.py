# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Legacy plain dumps (legacy_glob): the newest SQL dump, decrypted when it is an age file, loaded
into a scratch SQLite file or PostgreSQL database."""

import glob
import os
import secrets
import sqlite3

from .. import naming, pipeline, postgres
from .. import sqlite as sqlite_engine
from ..errors import LifeboatError
from ..restore_common import PrivateDir
from ..scratch import Janitor
from ..tools import Tool, redact
from .checks import FAIL, PASS, SKIP, Check, run_queries, skip, tenant_report


def verify_legacy(ctx):
    pattern = ctx.p["legacy_glob"]
    matches = [m for m in glob.glob(pattern) if os.path.isfile(m)]
    if not matches:
        c = Check("legacy_dump").done(FAIL, "no file matches %s" % pattern)
        return tenant_report(ctx.p["tenant"] or "legacy", None, [c])
    newest = max(matches, key=lambda m: (os.path.getmtime(m), m))
    checks = [skip(n, "legacy dump: no manifest") for n in ("manifest", "checksum")]
    with Janitor() as janitor, PrivateDir(ctx.p["tmp_dir"], prefix="lifeboat-verify-") as tmp:
        jid = janitor.register_dir(tmp.path)
        sql_path = newest
        c = Check("decrypt")
        if newest.endswith(".age"):
            sql_path, out = tmp.new_file("dump.sql")
            try:
                with open(newest, "rb") as src:
                    pipeline.load(src, out, ctx.identities(), False)
                checks.append(c.done(PASS, "age"))
            except LifeboatError as e:
                checks.append(c.done(FAIL, str(e)))
                janitor.done(jid)
                return tenant_report(ctx.p["tenant"] or "legacy", newest, checks)
            finally:
                out.close()
        else:
            checks.append(c.done(SKIP, "plain SQL"))
        if ctx.p["legacy_engine"] == "sqlite":
            checks += _legacy_sqlite(ctx, tmp, sql_path)
        else:
            checks += _legacy_pg(ctx, janitor, sql_path, newest)
        janitor.done(jid)
    return tenant_report(ctx.p["tenant"] or "legacy", newest, checks)


def _legacy_sqlite(ctx, tmp, sql_path):
    c = Check("restore")
    db = os.path.join(tmp.path, "scratch.sqlite")
    conn = sqlite3.connect(db)
    try:
        with open(sql_path, "r", encoding="utf-8", errors="replace") as f:
            conn.executescript(f.read())
    except sqlite3.Error as e:
        conn.close()
        return [c.done(FAIL, "loading the dump into a scratch SQLite database failed: %s" % e)]
    conn.close()
    problems = sqlite_engine.integrity_check(db)
    if problems != "ok":
        return [c.done(FAIL, "PRAGMA integrity_check: %s" % problems)]
    counts = sqlite_engine.table_row_counts(db)
    checks = [c.done(PASS if counts else FAIL, "%d tables, %d rows loaded; PRAGMA integrity_check ok"
                     % (len(counts), sum(counts.values())) if counts else "the dump created no table")]
    checks.append(skip("row_counts", "legacy dump: no manifest to compare with"))
    conn = sqlite3.connect(db)
    try:
        checks += run_queries(ctx, lambda q: conn.execute(q).fetchone()[0])
    finally:
        conn.close()
    return checks


def _legacy_pg(ctx, janitor, sql_path, original):
    from psycopg import sql
    c = Check("restore")
    admin = ctx.conn.connect("postgres", app="lifeboat-verify", option="login_host")
    scratch = naming.derived_name("v", "legacy", original, secrets.token_hex(4))
    jid = janitor.register_database_of(ctx.conn, scratch, "lifeboat-verify-janitor")
    try:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch)))
        psql, _v = postgres.find_binary("psql", ctx.p["pg_bin_dir"], 0)
        failure = Tool.run([psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-f", sql_path,
                            "--dbname=" + ctx.conn.conninfo(scratch, "lifeboat-verify-psql")],
                           ctx.conn.env("lifeboat-verify-psql"))
        if failure:
            return [c.done(FAIL, redact(failure))]
        with ctx.conn.connect(scratch, app="lifeboat-verify") as conn:
            counts = postgres.row_counts(conn)
            checks = [c.done(PASS if counts else FAIL, "%d tables, %d rows loaded" % (len(counts), sum(counts.values()))
                             if counts else "the dump created no table")]
            checks.append(skip("row_counts", "legacy dump: no manifest to compare with"))
            checks += run_queries(ctx, lambda q: conn.execute(q).fetchone()[0])
        return checks
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        janitor.done(jid)
        admin.close()
