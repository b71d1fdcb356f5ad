# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL restores: database tenants, schema tenants, server globals.

Database tenant: ``pg_restore`` into a fresh database named
``naming.derived_name("r", ...)``; the stored bytes are checked against the
manifest (SHA-256, sizes), pg_restore's messages are checked, row counts are
compared; only then the target is renamed to the safety copy
(``derived_name("s", ...)``) and the fresh database to the target, both in
one transaction. A failure before that drops the fresh database (created in
this run) and leaves the target untouched.

Schema tenant: ``pg_restore -f -`` piped into ``psql``, which runs
``BEGIN``, drops the old schema (with ``force``), runs the restore script,
then reads its last input from a pipe that Python fills only after every
check passed: a row-count check and ``COMMIT``. If anything fails, or this
process dies, psql's input ends without ``COMMIT`` and PostgreSQL rolls the
transaction back.

Globals: ``pg_dumpall --globals-only`` output, filtered so that roles and
tablespaces that already exist are left as they are, run by psql in one
transaction.

jobs: 1 streams (artifact -> age -> zstd -> pg_restore's stdin): the
plaintext never reaches the disk. jobs > 1 decrypts into a private 0700
temporary folder (pg_restore -j needs a seekable file), removed in all cases.
"""

import json
import os
import re
import secrets
import subprocess
import time

from . import naming, pipeline, postgres, restore_guard, shared_part
from .errors import LifeboatError
from .repository import describe_os_error
from .restore_common import PipeSink, PrivateDir, compare_counts
from .scratch import Janitor
from .tools import Tool, redact

APP = "lifeboat-restore"
SESSION_WAIT = 30.0
LOCK_WAIT = "60s"
GLOBALS_LIMIT = 64 << 20

_USER_NS = ("n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'")
_NOT_EXT = ("NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = '%s'::pg_catalog.regclass "
            "AND e.objid = %s AND e.deptype = 'e')")

_CONTENTS = """
SELECT
  (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND {ns} AND {ext_c}),
  (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE {ns} AND {ext_c}),
  (SELECT count(*) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE {ns} AND {ext_p}),
  (SELECT count(*) FROM pg_catalog.pg_namespace n WHERE {ns} AND n.nspname <> 'public'),
  (SELECT count(*) FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql')
""".format(ns=_USER_NS, ext_c=_NOT_EXT % ("pg_catalog.pg_class", "c.oid"),
           ext_p=_NOT_EXT % ("pg_catalog.pg_proc", "p.oid"))

_SCHEMA_CONTENTS = """
SELECT
  (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')),
  (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid),
  (SELECT count(*) FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid),
  (SELECT count(*) FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid AND t.typrelid = 0 AND t.typcategory <> 'A')
FROM pg_catalog.pg_namespace n WHERE n.nspname = %(schema)s
"""

# Objects outside the schema that depend on objects inside it: DROP SCHEMA ... CASCADE would
# silently drop them (and the restore would not bring them back), so they make the restore refuse.
_EXTERNAL_DEPENDENTS = """
WITH s AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s),
inside AS (
  SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, c.oid FROM pg_catalog.pg_class c, s
   WHERE c.relnamespace = s.oid
  UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid FROM pg_catalog.pg_proc p, s
   WHERE p.pronamespace = s.oid
  UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid FROM pg_catalog.pg_type t, s
   WHERE t.typnamespace = s.oid)
SELECT DISTINCT o.type, o.identity
  FROM pg_catalog.pg_depend d
  JOIN inside i ON i.classid = d.refclassid AND i.oid = d.refobjid
  CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) o
  LEFT JOIN pg_catalog.pg_class oc ON oc.oid = CASE d.classid
       WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass
         THEN (SELECT a.adrelid FROM pg_catalog.pg_attrdef a WHERE a.oid = d.objid)
       WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass
         THEN (SELECT p.polrelid FROM pg_catalog.pg_policy p WHERE p.oid = d.objid)
       WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass
         THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid)
       WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass
         THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = d.objid)
     END
 WHERE d.deptype IN ('n', 'a')
   AND COALESCE(oc.relnamespace, (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = o.schema))
       IS DISTINCT FROM (SELECT oid FROM s)
 ORDER BY 1, 2 LIMIT 20
"""

_LOCK_HOLDERS = """
SELECT DISTINCT a.pid, a.usename, a.application_name, pg_catalog.host(a.client_addr), a.backend_start, a.state
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_class c ON c.oid = l.relation
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
   AND n.nspname = %(schema)s AND a.pid <> pg_catalog.pg_backend_pid()
 ORDER BY a.pid
"""

_SESSIONS = """
SELECT pid, usename, application_name, pg_catalog.host(client_addr), backend_start, state
  FROM pg_catalog.pg_stat_activity
 WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
 ORDER BY pid
"""

_ROW_COUNT_CHECK = """
DO {tag}
DECLARE
  expected jsonb := {expected}::jsonb;
  actual jsonb := '{{}}'::jsonb;
  r record;
  n bigint;
BEGIN
  FOR r IN SELECT ns.nspname, c.relname,
                  c.relforcerowsecurity AND pg_catalog.pg_has_role(c.relowner, 'USAGE') AS forced
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
            WHERE c.relkind = 'r' AND ns.nspname = {schema}
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                               WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                 AND d.objid = c.oid AND d.deptype = 'e')
  LOOP
    -- FORCE ROW LEVEL SECURITY would show the owner (the restoring role) only what a policy lets
    -- through: lifted for the count, set again, all inside the restore's transaction.
    IF r.forced THEN
      EXECUTE pg_catalog.format('ALTER TABLE %I.%I NO FORCE ROW LEVEL SECURITY', r.nspname, r.relname);
    END IF;
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %I.%I', r.nspname, r.relname) INTO n;
    IF r.forced THEN
      EXECUTE pg_catalog.format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', r.nspname, r.relname);
    END IF;
    actual := actual || pg_catalog.jsonb_build_object(r.nspname || '.' || r.relname, n);
  END LOOP;
  IF actual <> expected THEN
    RAISE EXCEPTION 'lifeboat-row-counts-differ %', actual::text;
  END IF;
  RAISE WARNING 'lifeboat-row-counts %', actual::text;
END
{tag};
COMMIT;
"""

_COUNTS_RE = re.compile(r"lifeboat-row-counts(-differ)? (\{.*\})\s*$", re.MULTILINE)


def _psycopg_error():
    return postgres.require_psycopg().Error


def describe_session(s):
    return "pid %s (user %s, application %r, from %s, connected since %s, %s)" % (
        s["pid"], s["user"], s["application"] or "", s["client"] or "local socket",
        s["since"], s["state"] or "unknown state")


class Server(object):
    """One maintenance connection to the server, kept for the whole run.

    It holds the advisory lock that keeps two restores of one target apart,
    and it is never connected to a target (see ``avoid``).
    """

    def __init__(self, req):
        self.c = req.conn
        self.bin_dir = req.p["pg_bin_dir"]
        self.maint = "postgres"
        self.warnings = []
        self._tools = {}
        self.conn = self.c.connect(self.maint, app=APP, option="login_host")
        self.version = postgres.server_version(self.conn)
        self.major = postgres.major(self.version)
        self.user = self.conn.execute("SELECT current_user").fetchone()[0]

    @property
    def where(self):
        return self.c.server

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass

    def avoid(self, dbname):
        """Move the maintenance session off ``dbname`` (a target can only be renamed without sessions)."""
        if dbname != self.maint:
            return
        self.conn.close()
        self.maint = "template1"
        self.conn = self.c.connect(self.maint, app=APP, option="login_host")

    def tool(self, name):
        if name not in self._tools:
            self._tools[name] = postgres.find_binary(name, self.bin_dir, self.major)[0]
        return self._tools[name]

    def env(self, app):
        return self.c.env(app)

    def conninfo(self, dbname, app):
        return self.c.conninfo(dbname, app)

    def ident(self, name):
        return postgres.sql.Identifier(name).as_string(self.conn)

    def literal(self, value):
        return postgres.sql.Literal(value).as_string(self.conn)

    def execute(self, query, params=None, what="A query", option=None, conn=None):
        try:
            return (conn or self.conn).execute(query, params)
        except _psycopg_error() as e:
            raise LifeboatError("%s failed on %s: %s" % (what, self.where, redact(postgres.first_line(str(e)))),
                                option=option, details={"sqlstate": getattr(e, "sqlstate", None)})

    def connect(self, dbname, option="target_database"):
        return self.c.connect(dbname, app=APP, option=option)

    def disconnect(self, conn):
        """Close a session and wait until its backend is gone (it would count as a client of the target)."""
        try:
            pid = conn.info.backend_pid
        except Exception:
            pid = None
        conn.close()
        deadline = time.monotonic() + 5
        while pid and time.monotonic() < deadline:
            if not self.conn.execute("SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                return
            time.sleep(0.02)

    # -- facts -----------------------------------------------------------------
    def lock(self, key, what):
        got = self.execute("SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended(%s, 0))",
                           ("lifeboat-restore:" + key,), "Taking the restore lock").fetchone()[0]
        if not got:
            raise LifeboatError(
                "Another lifeboat restore of %s on %s is running (it holds the restore lock). Wait for it to "
                "finish, then run again; nothing was changed." % (what, self.where),
                option="target_database",
            )

    def database(self, name):
        if self.major >= 17:
            loc = "d.datlocprovider, d.datlocale"
        elif self.major >= 15:
            loc = "d.datlocprovider, d.daticulocale"
        else:
            loc = "'c'::\"char\", NULL::text"
        row = self.execute(
            "SELECT d.oid, pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.pg_encoding_to_char(d.encoding), "
            "d.datcollate, d.datctype, d.datallowconn, d.datconnlimit, d.datistemplate, t.spcname, "
            "pg_catalog.shobj_description(d.oid, 'pg_database'), d.datacl IS NOT NULL, " + loc +
            " FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace "
            "WHERE d.datname = %s", (name,), "Looking up database %r" % name).fetchone()
        if row is None:
            return None
        keys = ("oid", "owner", "encoding", "collate", "ctype", "allow_connections", "connection_limit",
                "is_template", "tablespace", "comment", "has_acl", "locale_provider", "locale")
        info = dict(zip(keys, row))
        info["name"] = name
        try:
            info["size_bytes"] = self.conn.execute("SELECT pg_catalog.pg_database_size(%s)", (info["oid"],)).fetchone()[0]
        except _psycopg_error():
            info["size_bytes"] = None
        return info

    def contents(self, dbname):
        """What a database holds (user objects), or None when it cannot be inspected."""
        try:
            conn = self.connect(dbname)
        except LifeboatError:
            return None
        try:
            row = conn.execute(_CONTENTS).fetchone()
        except _psycopg_error():
            return None
        finally:
            self.disconnect(conn)
        keys = ("tables", "relations", "functions", "schemas", "extensions")
        return dict(zip(keys, [int(v) for v in row]))

    def sessions(self, dbname):
        rows = self.execute(_SESSIONS, (dbname,), "Listing the sessions on %r" % dbname).fetchall()
        return [_session(r) for r in rows]

    def terminate(self, pids, dbname):
        """End client sessions and wait until they are gone. Returns their descriptions."""
        for pid in pids:
            self.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (pid,), "Ending session %s" % pid,
                         option="terminate_connections")
        deadline = time.monotonic() + SESSION_WAIT
        while True:
            alive = self.execute("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = ANY(%s)",
                                 (list(pids),), "Waiting for ended sessions").fetchone()[0]
            if not alive:
                return
            if time.monotonic() > deadline:
                raise LifeboatError(
                    "%d session(s) on %r did not end within %d s after pg_terminate_backend; nothing was "
                    "replaced. Find them in pg_stat_activity and stop them, then run again."
                    % (alive, dbname, SESSION_WAIT),
                    option="terminate_connections",
                )
            time.sleep(0.1)

    def free_name(self, kind, *parts):
        for _attempt in range(10):
            name = naming.derived_name(kind, *(parts + (secrets.token_hex(8),)))
            if not self.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (name,),
                                "Checking a derived name").fetchone():
                return name
        raise LifeboatError("Could not find a free derived database name on %s." % self.where)

    # -- changes -----------------------------------------------------------------
    def create_database(self, name, like=None, comment=None):
        query = "CREATE DATABASE %s TEMPLATE template0" % self.ident(name)
        if like:
            query += " ENCODING %s LC_COLLATE %s LC_CTYPE %s" % (
                self.literal(like["encoding"]), self.literal(like["collate"]), self.literal(like["ctype"]))
            if like.get("locale_provider") == "i" and like.get("locale"):
                query += " LOCALE_PROVIDER icu ICU_LOCALE %s" % self.literal(like["locale"])
            elif like.get("locale_provider") == "b" and like.get("locale"):
                query += " LOCALE_PROVIDER builtin BUILTIN_LOCALE %s" % self.literal(like["locale"])
            if like.get("tablespace") and like["tablespace"] != "pg_default":
                query += " TABLESPACE %s" % self.ident(like["tablespace"])
        self.execute(query, None, "Creating the database %r" % name, option="login_user")
        if comment:
            self.comment(name, comment)

    def comment(self, name, text):
        try:
            self.conn.execute("COMMENT ON DATABASE %s IS %s" % (
                self.ident(name), self.literal(text) if text is not None else "NULL"))
        except _psycopg_error() as e:
            self.warnings.append("Could not set the comment of database %s: %s" % (name, postgres.first_line(str(e))))

    def drop_database(self, name):
        """Drop a database this run created (or the documented safety copy). Never raises."""
        force = " WITH (FORCE)" if self.major >= 13 else ""
        try:
            if postgres.subscriptions(self.conn, name):  # they would block the drop
                conn = self.connect(name)
                try:
                    postgres.detach_subscriptions(conn, drop=True)
                finally:
                    self.disconnect(conn)
            self.conn.execute("DROP DATABASE IF EXISTS %s%s" % (self.ident(name), force))
            return True
        except Exception as e:
            self.warnings.append(
                "Could not drop database %s on %s (%s): drop it by hand with DROP DATABASE %s;"
                % (name, self.where, postgres.first_line(str(e)), name))
            return False

    def rename_database(self, old, new):
        self.conn.execute("ALTER DATABASE %s RENAME TO %s" % (self.ident(old), self.ident(new)))

    def allow_connections(self, name, allow):
        self.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %s" % (self.ident(name), "true" if allow else "false"),
                     None, "Changing ALLOW_CONNECTIONS of %r" % name)

    def rename_guarded(self, renames, target, terminate, allow_before=True):
        """Run ``renames`` [(old, new)] in one transaction; ``target`` may have client sessions.

        Without ``terminate`` a session on the target is an error naming it. With it, the sessions
        are ended and the renames retried; if clients keep coming back, new connections to the
        target are refused (ALLOW_CONNECTIONS false, set back afterwards) for a last attempt.
        Returns the descriptions of the ended sessions.
        """
        in_use = postgres.require_psycopg().errors.ObjectInUse
        ended = []
        for attempt in range(4 if terminate else 1):
            try:
                with self.conn.transaction():
                    for old, new in renames:
                        self.rename_database(old, new)
                return ended
            except in_use as e:
                sessions = self.sessions(target)
                if not terminate:
                    raise self.sessions_error(target, sessions, postgres.first_line(str(e)))
                if attempt < 3:
                    # End them and retry at once; ALLOW_CONNECTIONS false (below) is the last resort, as it
                    # would stay set if this process were killed before setting it back.
                    self.terminate([s["pid"] for s in sessions], target)
                    ended.extend(describe_session(s) for s in sessions)
            except _psycopg_error() as e:
                raise LifeboatError("Renaming databases on %s failed: %s." % (self.where, postgres.first_line(str(e))))
        self.allow_connections(target, False)
        renamed = False
        try:
            sessions = self.sessions(target)
            self.terminate([s["pid"] for s in sessions], target)
            try:
                with self.conn.transaction():
                    for old, new in renames:
                        self.rename_database(old, new)
            except _psycopg_error() as e:
                raise LifeboatError("Renaming databases on %s failed after ending the sessions on %r: %s."
                                    % (self.where, target, postgres.first_line(str(e))),
                                    option="terminate_connections")
            renamed = True
        finally:
            new_name = dict(renames).get(target, target) if renamed else target
            try:
                self.allow_connections(new_name, allow_before)
            except LifeboatError as e:
                self.warnings.append(str(e))
        return ended + [describe_session(s) for s in sessions]

    def sessions_error(self, dbname, sessions, server_text=None):
        if sessions:
            listed = "; ".join(describe_session(s) for s in sessions[:10])
            more = " and %d more" % (len(sessions) - 10) if len(sessions) > 10 else ""
            text = "%d client session(s) are connected to it: %s%s" % (len(sessions), listed, more)
        else:
            text = server_text or "it is in use"
        return LifeboatError(
            "Cannot replace database %r on %s: %s. Stop those clients (or set terminate_connections: true to "
            "end them at the moment of the swap) and run again. Nothing was changed." % (dbname, self.where, text),
            option="terminate_connections",
            details={"sessions": sessions},
        )

    def adopt_properties(self, info, fresh):
        """Give ``fresh`` what the database it replaces had besides its contents: owner, grants,
        settings, comment, connection limit. Failures become warnings (the data is right)."""
        ident = self.ident(fresh)
        statements = []
        if info["owner"] and info["owner"] != self.user:
            statements.append("ALTER DATABASE %s OWNER TO %s" % (ident, self.ident(info["owner"])))
        if info["has_acl"]:
            statements.append("REVOKE ALL ON DATABASE %s FROM PUBLIC" % ident)
            statements.append("REVOKE ALL ON DATABASE %s FROM %s" % (ident, self.ident(info["owner"])))
            rows = self.execute(
                "SELECT a.grantee = 0, r.rolname, a.privilege_type, a.is_grantable "
                "FROM pg_catalog.pg_database d CROSS JOIN LATERAL pg_catalog.aclexplode(d.datacl) a "
                "LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee WHERE d.oid = %s",
                (info["oid"],), "Reading the grants of %r" % info["name"]).fetchall()
            for public, role, privilege, grantable in rows:
                if not public and role is None:
                    continue
                statements.append("GRANT %s ON DATABASE %s TO %s%s" % (
                    privilege, ident, "PUBLIC" if public else self.ident(role),
                    " WITH GRANT OPTION" if grantable else ""))
        if info["connection_limit"] not in (None, -1):
            statements.append("ALTER DATABASE %s CONNECTION LIMIT %d" % (ident, info["connection_limit"]))
        statements.append("COMMENT ON DATABASE %s IS %s" % (
            ident, self.literal(info["comment"]) if info["comment"] is not None else "NULL"))
        try:
            with self.conn.transaction():
                for statement in statements:
                    self.conn.execute(statement)
        except _psycopg_error() as e:
            self.warnings.append(
                "The owner, grants and comment of %r could not be carried over to the restored database (%s): "
                "check them with \\l+ %s." % (info["name"], postgres.first_line(str(e)), info["name"]))
        settings = self.execute(
            "SELECT r.rolname, s.setrole, s.setconfig FROM pg_catalog.pg_db_role_setting s "
            "LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = %s",
            (info["oid"],), "Reading the settings of %r" % info["name"]).fetchall()
        self.apply_settings(fresh, [{"role": role, "settings": config or []} for role, setrole, config in settings
                                    if not (setrole and role is None)], info["name"])

    def apply_settings(self, dbname, settings, source):
        """``ALTER DATABASE ... SET`` and ``ALTER ROLE ... IN DATABASE ... SET`` for ``settings``
        ([{"role": name or None, "settings": ["name=value", ...]}]); failures become warnings. Returns the count."""
        ident = self.ident(dbname)
        applied = 0
        for entry in settings or []:
            role = entry.get("role")
            for item in entry.get("settings") or []:
                name, _sep, value = item.partition("=")
                target = ("ALTER DATABASE %s" % ident if not role else
                          "ALTER ROLE %s IN DATABASE %s" % (self.ident(role), ident))
                try:
                    with self.conn.transaction():
                        # set_config then FROM CURRENT: list settings (search_path) keep their quoting
                        self.conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))
                        self.conn.execute("%s SET %s FROM CURRENT" % (target, self.ident(name)))
                    applied += 1
                except _psycopg_error() as e:
                    self.warnings.append("The setting %s%s of %r was not carried over (%s)." % (
                        item, " for role %s" % role if role else "", source, postgres.first_line(str(e))))
        return applied


def _session(row):
    return {"pid": row[0], "user": row[1], "application": row[2], "client": row[3],
            "since": row[4].strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(row[4], "strftime") else row[4],
            "state": row[5]}


# -- streaming into pg_restore ------------------------------------------------------------


def _stream(tool, art, identities, progress):
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
        return (" The archive grants privileges to roles this server does not have: restore the server's "
                "globals first (globals_artifact), or set privileges: false.")
    if "unsupported version" in text:
        return " pg_restore is older than the pg_dump that wrote the archive: install a newer client or set pg_bin_dir."
    if "already exists" in text and req.allow_create_in_dump:
        return " The archive's database already exists under its name: set force: true to replace it."
    return ""


def restore_failed(what, failure, req, outcome):
    missing_role = "does not exist" in (failure or "") and "role" in (failure or "")
    return LifeboatError("%s failed: %s.%s %s" % (what, failure, _hint(failure, req), outcome),
                         option=("owners" if req.owners else "privileges") if missing_role else None)


def pg_restore_argv(server, req, dbname, create=False):
    argv = [server.tool("pg_restore"), "--format=custom", "--no-password", "--exit-on-error",
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
    argv = pg_restore_argv(server, req, dbname, create)
    env = server.env(APP + "-pg_restore")
    if req.jobs > 1:
        with PrivateDir(req.p["tmp_dir"]) as tmp:
            path, sizes = _decrypt_to_file(art, identities, tmp, progress)
            tool = Tool(argv + ["--jobs=%d" % req.jobs, path], env)
            try:
                tool.wait()
                failure = tool.failure()
            finally:
                tool.close()
        if failure:
            raise restore_failed(what, failure, req, outcome)
        return sizes
    # No --single-transaction: the fresh database (or, with --create, the database created in this run) is
    # thrown away on failure, and one transaction over thousands of tables can exhaust max_locks_per_transaction.
    tool = Tool(argv, env, stdin=subprocess.PIPE)
    try:
        sizes = _stream(tool, art, identities, progress)
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


# -- database tenants -------------------------------------------------------------------------


class DatabasePlan(object):
    kind = "database"

    def __init__(self, server, req, art, owners):
        self.server = server
        self.art = art
        self.create_mode = req.allow_create_in_dump
        source = art.source
        if self.create_mode:
            target = source.get("database")
            if not target:
                raise LifeboatError("The manifest of %s does not record the archive's database name; "
                                    "set allow_create_in_dump: false and give target_database." % art.path,
                                    option="allow_create_in_dump")
        else:
            target = req.target_database or req.database or req.tenant
        self.target = target
        server.avoid(target)
        server.lock("database:" + target, "database %r" % target)
        self.info = server.database(target)
        self.existed = self.info is not None
        self.contents = server.contents(target) if self.existed else None
        if self.existed and self.info["is_template"]:
            raise LifeboatError("The target %r on %s is a template database; lifeboat never replaces templates, "
                                "whatever the options. Nothing was changed. Choose another target_database."
                                % (target, server.where), option="target_database")
        self.nonempty = self.existed and (self.contents is None or any(self.contents.values()))
        restore_guard.check_database(req, art, target, self.existed, self.nonempty, owners)
        if self.nonempty and not req.force:
            raise LifeboatError(
                "The target database %r on %s is not empty (%s). Nothing was changed. Set force: true to replace "
                "it (it is kept as a safety copy until the restore succeeded), or restore into another "
                "target_database." % (target, server.where, _describe_contents(self.contents)),
                option="force",
            )
        self.sessions = server.sessions(target) if self.existed else []
        if self.sessions and not req.terminate_connections:
            raise server.sessions_error(target, self.sessions)
        self.fresh = None if self.create_mode else server.free_name("r", server.where, target, art.name)
        self.safety = server.free_name("s", server.where, target, art.name) if self.existed else None
        self.keep = req.keep_safety_copy
        self.detached = []
        self.settings_applied = 0

    def describe(self):
        replaced = {"database": self.target, "existed": self.existed}
        if self.existed:
            replaced.update({"owner": self.info["owner"], "size_bytes": self.info["size_bytes"],
                             "contents": self.contents, "empty": not self.nonempty})
        return {
            "target": {"kind": "database", "server": self.server.where, "database": self.target, "schema": None,
                       "path": None},
            "replaced": replaced,
            "safety_copy": ({"database": self.safety, "kept": self.keep, "dropped": False,
                             "dropped_at": None} if self.safety else None),
            "connected_sessions": [describe_session(s) for s in self.sessions],
            "fresh_database": self.fresh,
        }

    def _what_replaced(self):
        if not self.existed:
            return "a new database %r" % self.target
        return "database %r (%s%s), kept as a safety copy with a derived name (lb_s_...) %s" % (
            self.target, _describe_contents(self.contents),
            ", %s" % naming.human_size(self.info["size_bytes"]) if self.info["size_bytes"] is not None else "",
            "afterwards" if self.keep else "until the restore succeeded, then dropped")

    def summary_check(self):
        text = "would restore %s (%s) into %s on %s%s." % (
            self.art.name, _manifest_figures(self.art),
            self._what_replaced(), self.server.where,
            "" if self.create_mode else " through a fresh database with a derived name (lb_r_...)")
        if self.sessions:
            text += " %d connected session(s) would be ended at the swap." % len(self.sessions)
        return text

    def summary_done(self, result):
        return "Restored %s into database %r on %s in %.1f s: %d tables, %d rows, equal to the manifest%s%s." % (
            self.art.name, self.target, self.server.where, result["seconds_restore"], len(result["row_counts"]),
            sum(result["row_counts"].values()),
            "" if not self.existed else "; the old database %s" % (
                "is kept as %s" % self.safety if result["safety_copy"]["kept"] else
                "(safety copy %s) was dropped" % self.safety if result["safety_copy"]["dropped"] else
                "is still there as %s (see warnings)" % self.safety),
            "; ended %d session(s)" % len(result["terminated_sessions"]) if result["terminated_sessions"] else "")

    def apply(self, server, req, art, identities, progress):
        t0 = time.monotonic()
        if self.create_mode:
            outcome = self._apply_create(server, req, art, identities, progress)
        else:
            outcome = self._apply_swap(server, req, art, identities, progress)
        outcome["seconds_restore"] = round(time.monotonic() - t0, 3)
        outcome["safety_copy"] = self._finish_safety(server, req)
        return outcome

    def _count(self, server, dbname, art, outcome):
        conn = server.connect(dbname)
        try:
            counts = postgres.row_counts(conn, lift_forced_rls=True)
        finally:
            server.disconnect(conn)
        problems = compare_counts(art.manifest["row_counts"], counts)
        if problems:
            raise LifeboatError(
                "The restored row counts differ from the manifest of %s (%s). %s Restore another artifact, and "
                "keep this one for investigation." % (art.name, "; ".join(problems[:5]), outcome),
                option="artifact", details={"row_counts": counts})
        return counts

    def _apply_swap(self, server, req, art, identities, progress):
        fresh = self.fresh
        unchanged = ("The target database %r was not changed; the partial restore %s was dropped."
                     % (self.target, fresh) if self.existed else
                     "No database %r was created; the partial restore %s was dropped." % (self.target, fresh))
        with Janitor() as janitor:
            # If this process is killed (even SIGKILL) before the swap, the janitor drops the partial
            # restore; after the swap no database has that name any more.
            jid = janitor.register_database_of(server.c, fresh, APP + "-janitor")
            outcome = self._swap_into(server, req, art, identities, progress, fresh, unchanged)
            janitor.done(jid)
        return outcome

    def _swap_into(self, server, req, art, identities, progress, fresh, unchanged):
        server.create_database(fresh, like=self.info, comment="lifeboat: restore of %s into %s in progress "
                               "(pid %d); drop it if no restore is running" % (art.name, self.target, os.getpid()))
        swapped = False
        try:
            what = "Restoring %s into the fresh database %s on %s" % (art.name, fresh, server.where)
            run_pg_restore(server, req, art, identities, fresh, progress, what, unchanged)
            self.detached = _detach(server, fresh)
            counts = self._count(server, fresh, art, unchanged)
            if self.existed:
                server.adopt_properties(self.info, fresh)
                terminated = server.rename_guarded([(self.target, self.safety), (fresh, self.target)],
                                                   self.target, req.terminate_connections,
                                                   self.info["allow_connections"])
                if not self.info["allow_connections"]:
                    server.allow_connections(self.target, False)
            else:
                server.comment(fresh, None)
                # A new target gets the settings the source database had (ALTER DATABASE/ROLE ... SET),
                # which are not in a dump of its contents.
                self.settings_applied = server.apply_settings(
                    fresh, art.source.get("database_settings"), "the source database %r" % art.source.get("database"))
                try:
                    server.rename_database(fresh, self.target)
                except _psycopg_error() as e:
                    raise LifeboatError("Renaming the restored database %s to %r failed: %s. %s" % (
                        fresh, self.target, postgres.first_line(str(e)), unchanged), option="target_database")
                terminated = []
            swapped = True
        except LifeboatError as e:
            if unchanged not in e.msg:
                e.msg = "%s %s" % (e.msg, unchanged)
            raise
        finally:
            if not swapped:
                server.drop_database(fresh)
        return {"row_counts": counts, "row_counts_match": True, "terminated_sessions": terminated,
                "subscriptions_detached": self.detached, "database_settings_applied": self.settings_applied}

    def _apply_create(self, server, req, art, identities, progress):
        """pg_restore --create: the archive creates its own database under its own name."""
        with Janitor() as janitor:
            # Killed (even SIGKILL) before the end, the janitor drops the partial database pg_restore created
            # under the target's name and renames the safety copy back to it.
            jid = janitor.register_database_of(server.c, self.target, APP + "-janitor",
                                               put_back=self.safety if self.existed else None)
            outcome = self._create_into(server, req, art, identities, progress)
            janitor.done(jid)
        return outcome

    def _create_into(self, server, req, art, identities, progress):
        target = self.target
        renamed = False
        terminated = []
        if self.existed:
            terminated = server.rename_guarded([(target, self.safety)], target, req.terminate_connections,
                                               self.info["allow_connections"])
            renamed = True
        outcome_text = ("The database %r was put back as it was; the partial restore was dropped." % target
                        if self.existed else "The partial database %r was dropped." % target)
        try:
            what = "Restoring %s with --create (database %r) on %s" % (art.name, target, server.where)
            run_pg_restore(server, req, art, identities, server.maint, progress, what, outcome_text, create=True)
            if server.database(target) is None:
                raise LifeboatError("pg_restore --create finished but no database %r exists on %s: the archive names "
                                    "another database. %s" % (target, server.where, outcome_text),
                                    option="allow_create_in_dump")
            counts = self._count(server, target, art, outcome_text)
        except BaseException:
            # The target did not exist when pg_restore started (it was renamed to the safety copy, or
            # never existed): a database under its name now was created by pg_restore in this run.
            server.drop_database(target)
            if renamed:
                try:
                    server.rename_database(self.safety, target)
                except Exception as e:
                    server.warnings.append("Could not rename the safety copy %s back to %r: %s. Do it by hand: "
                                           "ALTER DATABASE %s RENAME TO %s;" % (self.safety, target, e, self.safety,
                                                                                target))
                    raise LifeboatError("The restore failed, and the safety copy %s could not be renamed back to %r "
                                        "(%s). Do it by hand: ALTER DATABASE %s RENAME TO %s;" % (
                                            self.safety, target, e, self.safety, target))
            raise
        return {"row_counts": counts, "row_counts_match": True, "terminated_sessions": terminated}

    def _finish_safety(self, server, req):
        if not self.safety:
            return None
        entry = {"database": self.safety, "kept": self.keep, "dropped": False, "dropped_at": None}
        if self.keep:
            server.comment(self.safety, "lifeboat: safety copy of %s taken %s before restoring %s; drop it with "
                           "DROP DATABASE when no longer needed" % (self.target, naming.iso(naming.utcnow()),
                                                                    self.art.name))
            entry["note"] = ("Kept (keep_safety_copy: true, the default). To go back: ALTER DATABASE %s RENAME TO "
                             "%s; ALTER DATABASE %s RENAME TO %s; when no longer needed: DROP DATABASE %s;" % (
                                 self.server.ident(self.target), self.server.ident(self.target + "_restored"),
                                 self.safety, self.server.ident(self.target), self.safety))
        elif server.drop_database(self.safety):
            entry["dropped"] = True
            entry["dropped_at"] = naming.iso(naming.utcnow())
        else:
            entry["note"] = "Could not be dropped: see warnings."
        return entry


# -- schema tenants -----------------------------------------------------------------------------


class SchemaPlan(object):
    kind = "schema"

    def __init__(self, server, req, art, schema, shared=(None, None), owners=None):
        self.server = server
        self.art = art
        self.schema = schema
        self.shared = None  # the shared-part Artifact restored first, when the target lacks it
        self.shared_note = None
        if req.allow_create_in_dump:
            raise LifeboatError("allow_create_in_dump applies to database tenants; %s is a backup of schema %r. "
                                "Remove allow_create_in_dump." % (art.name, schema), option="allow_create_in_dump")
        self.database = req.target_database or req.database or art.source.get("database")
        if not self.database:
            raise LifeboatError("Set target_database: the database that holds (or will hold) schema %r." % schema,
                                option="target_database")
        server.avoid(self.database)
        server.lock("schema:%s.%s" % (self.database, schema), "schema %r in database %r" % (schema, self.database))
        self.db_info = server.database(self.database)
        self.schema_exists = False
        self.contents = None
        self.dependents = []
        self.holders = []
        if self.db_info is not None:
            conn = server.connect(self.database)
            try:
                row = server.execute(_SCHEMA_CONTENTS, {"schema": schema}, "Inspecting schema %r" % schema,
                                     conn=conn).fetchone()
                if row is not None:
                    self.schema_exists = True
                    self.contents = dict(zip(("tables", "relations", "functions", "types"), [int(v) for v in row]))
                    self.dependents = ["%s %s" % r for r in server.execute(
                        _EXTERNAL_DEPENDENTS, {"schema": schema}, "Looking for objects that depend on schema %r" % schema,
                        conn=conn).fetchall()]
                    self.holders = [_session(r) for r in server.execute(
                        _LOCK_HOLDERS, {"schema": schema}, "Listing sessions using schema %r" % schema,
                        conn=conn).fetchall()]
                self._plan_shared(server, conn, shared)
            finally:
                server.disconnect(conn)
        else:
            self._plan_shared(server, None, shared)
        self.nonempty = bool(self.contents and any(self.contents.values()))
        restore_guard.check_database(req, art, self.database, self.schema_exists, self.nonempty,
                                     owners or restore_guard.Owners(None), schema=schema)
        self.keep = req.keep_safety_copy and self.schema_exists
        self.safety = naming.derived_name("s", self.database, schema, art.name, secrets.token_hex(4)) \
            if self.keep else None
        where = "schema %r in database %r on %s" % (schema, self.database, server.where)
        if self.nonempty and not req.force:
            raise LifeboatError(
                "The target %s is not empty (%s). Nothing was changed. Set force: true to replace it (in one "
                "transaction: on any failure it stays as it is), or restore into another target_database."
                % (where, _describe_contents(self.contents)),
                option="force",
            )
        if self.dependents:
            raise LifeboatError(
                "Objects outside the target %s depend on it: %s. Replacing the schema would drop them too, and "
                "the restore would not bring them back. Nothing was changed. Drop or change those objects first, "
                "or restore into another target_database." % (where, "; ".join(self.dependents)),
                option="target_database",
            )
        if self.holders and not req.terminate_connections:
            raise LifeboatError(
                "Sessions are using the target %s: %s. Stop them (or set terminate_connections: true to end them "
                "before the restore starts) and run again. Nothing was changed."
                % (where, "; ".join(describe_session(s) for s in self.holders[:10])),
                option="terminate_connections", details={"sessions": self.holders},
            )

    def _plan_shared(self, server, conn, shared):
        """Decide whether the shared part (extensions, shared tables and types) is restored first.

        Into a new database: yes, when the repository has it. Into a database that has what the
        tenant depends on: no, it is left alone. Into one that has none of it: yes. Into one that
        has part of it: refused, since restoring it would collide with what is there.
        """
        candidate, error = shared
        depends_on = self.art.manifest.get("depends_on")
        database = self.art.source.get("database")
        if conn is None:
            missing = ["all of it (a new database)"]
        elif depends_on is None:
            self.shared_note = "the manifest does not record the tenant's shared dependencies (an older artifact)"
            return
        else:
            missing = shared_part.missing(conn, depends_on)
            if not missing:
                self.shared_note = "the target database already has the shared part the tenant uses; left alone"
                return
            if len(missing) < len(shared_part.wanted_items(depends_on)):
                raise LifeboatError(
                    "The target database %r on %s has only part of what schema tenant %r depends on from the shared "
                    "part of database %r: it lacks %s. Restoring the shared part would collide with what is there, and "
                    "without it the tenant cannot be restored. Nothing was changed. Create the missing objects (or "
                    "extensions) first, or restore into another target_database (a new one gets the shared part)."
                    % (self.database, server.where, self.schema, database, ", ".join(missing[:10])),
                    option="target_database")
        if error is not None:
            raise error
        if candidate is None:
            if depends_on:
                raise LifeboatError(
                    "Schema tenant %r depends on the shared part of database %r (%s), which the target database %r "
                    "lacks, and the repository holds no %s artifact to restore first. Nothing was changed. Restore "
                    "into a database that has the shared part (target_database), or restore the shared part first."
                    % (self.schema, database, ", ".join(missing[:10]), self.database, naming.shared_tenant(database)),
                    option="target_database")
            return
        self.shared = candidate
        self.shared_note = "restored first from %s: the target database lacked it" % candidate.name

    def describe(self):
        replaced = {"database": self.database, "schema": self.schema, "existed": self.schema_exists,
                    "database_existed": self.db_info is not None}
        if self.schema_exists:
            replaced.update({"contents": self.contents, "empty": not self.nonempty})
        return {
            "target": {"kind": "schema", "server": self.server.where, "database": self.database,
                       "schema": self.schema, "path": None},
            "replaced": replaced,
            "safety_copy": ({"database": self.database, "schema": self.safety, "kept": True, "dropped": False,
                             "dropped_at": None, "note": self._safety_note()} if self.safety else None),
            "connected_sessions": [describe_session(s) for s in self.holders],
            "fresh_database": None,
            "shared_part": {"artifact": self.shared.path if self.shared else None, "note": self.shared_note},
        }

    def _safety_note(self):
        return ("The old schema %r is kept in database %r as schema %s (keep_safety_copy: true, the default). To go "
                "back: ALTER SCHEMA %s RENAME TO %s_restored; ALTER SCHEMA %s RENAME TO %s; when no longer needed: "
                "DROP SCHEMA %s CASCADE;" % (
                    self.schema, self.database, self.safety, self.server.ident(self.schema), self.schema,
                    self.safety, self.server.ident(self.schema), self.safety))

    def _shared_text(self, done):
        if self.shared is None:
            return ""
        return "; %s the shared part of database %r (%s) first, in the same transaction" % (
            "restored" if done else "would restore", self.art.source.get("database"), self.shared.name)

    def summary_check(self):
        what = ("schema %r in database %r (%s), in one transaction; the old schema would be %s" % (
            self.schema, self.database, _describe_contents(self.contents),
            "kept as %s" % self.safety if self.safety else "dropped (keep_safety_copy: false)")
            if self.schema_exists else
            "a new schema %r in %s database %r" % (
                self.schema, "the existing" if self.db_info is not None else "a new", self.database))
        return "would restore %s (%s) into %s on %s%s." % (self.art.name, _manifest_figures(self.art), what,
                                                           self.server.where, self._shared_text(False))

    def summary_done(self, result):
        return ("Restored %s into schema %r of database %r on %s in %.1f s, in one transaction: %d tables, %d rows, "
                "equal to the manifest%s%s." % (
                    self.art.name, self.schema, self.database, self.server.where, result["seconds_restore"],
                    len(result["row_counts"]), sum(result["row_counts"].values()),
                    ("; the old schema is kept as %s in the same database" % self.safety if self.safety else
                     "; replaced the old schema (dropped: keep_safety_copy is false)") if self.schema_exists else "",
                    self._shared_text(True)))

    def apply(self, server, req, art, identities, progress):
        t0 = time.monotonic()
        created_db = False
        outcome = ("The schema %r in database %r was not changed (the transaction was rolled back)."
                   % (self.schema, self.database) if self.schema_exists else
                   "Nothing was committed (the transaction was rolled back).")
        if self.db_info is None:
            server.create_database(self.database)
            created_db = True
            outcome = "The database %r created for it was dropped." % self.database
        done = False
        try:
            terminated = []
            if self.holders and req.terminate_connections:
                server.terminate([s["pid"] for s in self.holders], self.database)
                terminated = [describe_session(s) for s in self.holders]
            counts = self._restore(server, req, art, identities, progress, outcome)
            done = True
        except LifeboatError as e:
            if outcome not in e.msg:
                e.msg = "%s %s" % (e.msg, outcome)
            raise
        finally:
            if created_db and not done:
                server.drop_database(self.database)
        return {"row_counts": counts, "row_counts_match": True, "terminated_sessions": terminated,
                "seconds_restore": round(time.monotonic() - t0, 3)}

    def _restore(self, server, req, art, identities, progress, outcome):
        """pg_restore -f - | psql, in one transaction that only Python's last write can commit."""
        if req.jobs > 1:
            server.warnings.append(
                "jobs: %d was not used: a schema tenant is restored in one transaction, in which pg_restore "
                "cannot run parallel jobs." % req.jobs)
        what = "Restoring %s into schema %r of database %r on %s" % (art.name, self.schema, self.database,
                                                                     server.where)
        prelude = ["BEGIN", "SET LOCAL lock_timeout = '%s'" % LOCK_WAIT]
        if self.schema_exists and self.safety:
            # The old schema stays, renamed, in the same transaction: what the restore replaces can be had back.
            prelude.append("ALTER SCHEMA %s RENAME TO %s" % (server.ident(self.schema), server.ident(self.safety)))
            prelude.append("COMMENT ON SCHEMA %s IS %s" % (server.ident(self.safety), server.literal(
                "lifeboat: schema %s as it was before %s was restored over it (%s); drop it with DROP SCHEMA ... "
                "CASCADE when no longer needed" % (self.schema, art.name, naming.iso(naming.utcnow())))))
        elif self.schema_exists:
            prelude.append("DROP SCHEMA %s CASCADE" % server.ident(self.schema))
        tag = "$lb_%s$" % secrets.token_hex(6)
        epilogue = _ROW_COUNT_CHECK.format(
            tag=tag, expected=server.literal(json.dumps(art.manifest["row_counts"], sort_keys=True)),
            schema=server.literal(self.schema)).encode("utf-8")
        r_read, r_write = os.pipe()
        h_read, h_write = os.pipe()
        fds = [r_read, r_write, h_read, h_write]
        reads = [r_read, h_read]
        if self.shared is not None:
            s_read, s_write = os.pipe()
            fds += [s_read, s_write]
            reads.insert(0, s_read)
        psql = restore = shared = None
        try:
            argv = [server.tool("psql"), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1",
                    "--dbname=" + server.conninfo(self.database, APP + "-psql")]
            for command in prelude:
                argv += ["-c", command]
            for fd in reads:
                argv += ["-f", "/dev/fd/%d" % fd]
            psql = Tool(argv, server.env(APP + "-psql"), pass_fds=tuple(reads))
            _close(fds, *reads)
            rargv = [server.tool("pg_restore"), "--format=custom", "--file=-"]
            if not req.owners:
                rargv.append("--no-owner")
            if not req.privileges:
                rargv.append("--no-privileges")

            def feed(tool, source, write_fd, text, report):
                """One archive through its pg_restore into psql's next input, checked against its manifest."""
                _close(fds, write_fd)
                sizes = _stream(tool, source, identities, report)
                tool.wait()
                failure = tool.failure()
                if sizes is None or failure:
                    if not psql.running():
                        failure = psql.failure() or failure
                    raise restore_failed(text, failure or "pg_restore stopped reading the archive", req, outcome)
                source.verify(sizes)

            env = server.env(APP + "-pg_restore")
            if self.shared is not None:
                # The shared part first, into the same transaction: psql reads its SQL to the end
                # before it reads the tenant's.
                shared = Tool(rargv, env, stdin=subprocess.PIPE, stdout=s_write)
                feed(shared, self.shared, s_write, "Restoring the shared part %s into database %r on %s" % (
                    self.shared.name, self.database, server.where), None)
            restore = Tool(rargv, env, stdin=subprocess.PIPE, stdout=r_write)
            feed(restore, art, r_write, what, progress)
            try:
                view = memoryview(epilogue)
                while view:
                    view = view[os.write(h_write, view):]
            except BrokenPipeError:
                pass
            _close(fds, h_write)
            psql.wait()
            text = psql.text()
            failure = psql.failure()
            match = _COUNTS_RE.search(text)
            counts = json.loads(match.group(2)) if match else None
            if match and match.group(1):
                problems = compare_counts(art.manifest["row_counts"], counts)
                raise LifeboatError(
                    "The restored row counts differ from the manifest of %s (%s). %s Restore another artifact, "
                    "and keep this one for investigation." % (art.name, "; ".join(problems[:5]), outcome),
                    option="artifact", details={"row_counts": counts})
            if failure:
                raise restore_failed(what, failure, req, outcome)
            if counts is None:
                raise LifeboatError("%s: psql did not report the row-count check; treat the restore as failed and "
                                    "check schema %r by hand." % (what, self.schema))
            return counts
        finally:
            # Kill psql first: its input must never reach an end-of-file it could take for success.
            for tool in (psql, restore, shared):
                if tool is not None:
                    tool.close()
            _close(fds, *list(fds))


def _detach(server, dbname):
    """Restored subscriptions: disabled and detached from the publisher's slots (said so in the result)."""
    if not postgres.subscriptions(server.conn, dbname):
        return []
    conn = server.connect(dbname)
    try:
        names = postgres.detach_subscriptions(conn)
    finally:
        server.disconnect(conn)
    server.warnings.append(
        "The restored database holds logical replication subscriptions (%s): they are disabled and detached from "
        "the publisher's replication slots (slot_name = NONE), so that this copy never consumes them. To subscribe "
        "again: ALTER SUBSCRIPTION ... SET (slot_name = '...'); ALTER SUBSCRIPTION ... ENABLE; (or create new ones)."
        % ", ".join(names))
    return names


def _close(fds, *which):
    for fd in which:
        if fd in fds:
            fds.remove(fd)
            try:
                os.close(fd)
            except OSError:
                pass


def plan_tenant(server, req, art, shared=(None, None), owners=None):
    schema = art.source.get("schema")
    if req.schema and req.schema != schema:
        raise LifeboatError(
            "The artifact %s is a backup of %s, not of schema %r: a schema tenant is restored into its own schema "
            "name. Check the schema option, or restore another artifact." % (
                art.name, "schema %r" % schema if schema else "a whole database", req.schema),
            option="schema",
        )
    owners = owners or restore_guard.Owners(None)
    if schema:
        return SchemaPlan(server, req, art, schema, shared, owners)
    return DatabasePlan(server, req, art, owners)


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
            raise LifeboatError("The globals artifact is larger than %d MB: it is not a pg_dumpall --globals-only "
                                "output." % (self.limit >> 20), option="globals_artifact")
        self.parts.append(bytes(data))
        return len(data)

    def flush(self):
        pass

    def getvalue(self):
        return b"".join(self.parts)


class GlobalsPlan(object):
    def __init__(self, server, art, script, created, existing):
        self.server = server
        self.art = art
        self.script = script
        self.created = created
        self.existing = existing

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
        raise LifeboatError("The globals artifact %s is larger than %d MB: not a pg_dumpall --globals-only output."
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


# -- text helpers --------------------------------------------------------------------------------


def _describe_contents(contents):
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


def _manifest_figures(art):
    counts = art.manifest["row_counts"]
    return "taken %s, %d tables, %d rows, %s" % (art.stamp, len(counts), sum(counts.values()),
                                                 naming.human_size(art.manifest["size"]["raw"]))
