# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore's maintenance connection to a PostgreSQL server (``Server``): the advisory
lock of a target, databases, their sessions and contents, renames and settings."""

import secrets
import time

from .. import naming, postgres
from ..errors import LifeboatError
from ..tools import redact

APP = "lifeboat-restore"
SESSION_WAIT = 30.0


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


_SESSIONS = """
SELECT pid, usename, application_name, pg_catalog.host(client_addr), backend_start, state
  FROM pg_catalog.pg_stat_activity
 WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
 ORDER BY pid
"""


def psycopg_error():
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
        self._extensions = None
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

    def tool(self, name, need=0):
        """The client tool of this server's own major version when the host has it (and it reads archives of
        pg_dump major ``need``), else the newest one at least as new as both."""
        key = (name, need)
        if key not in self._tools:
            self._tools[key] = postgres.find_binary(name, self.bin_dir, max(self.major, need), prefer_major=self.major)[0]
        return self._tools[key]

    def available_extensions(self):
        """The extensions this server can create (``pg_available_extensions``), asked once per run."""
        if self._extensions is None:
            rows = self.execute("SELECT name FROM pg_catalog.pg_available_extensions",
                                what="Listing the server's available extensions").fetchall()
            self._extensions = set(r[0] for r in rows)
        return self._extensions

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
        except psycopg_error() as e:
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
        except psycopg_error():
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
        except psycopg_error():
            return None
        finally:
            self.disconnect(conn)
        keys = ("tables", "relations", "functions", "schemas", "extensions")
        return dict(zip(keys, [int(v) for v in row]))

    def sessions(self, dbname):
        rows = self.execute(_SESSIONS, (dbname,), "Listing the sessions on %r" % dbname).fetchall()
        return [session_of(r) for r in rows]

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
        except psycopg_error() as e:
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
            except psycopg_error() as e:
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
            except psycopg_error() as e:
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
        except psycopg_error() as e:
            self.warnings.append(
                "The owner, grants and comment of %r could not be carried over to the restored database (%s): "
                "check them with \\l+ %s." % (info["name"], postgres.first_line(str(e)), info["name"]))
        settings = self.execute(
            "SELECT r.rolname, s.setrole, s.setconfig FROM pg_catalog.pg_db_role_setting s "
            "LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = %s",
            (info["oid"],), "Reading the settings of %r" % info["name"]).fetchall()
        self.apply_settings(fresh, [{"role": role, "settings": config or []} for role, setrole, config in settings
                                    if not (setrole and role is None)], info["name"])

    def apply_properties(self, dbname, props, privileges, owners, source, target):
        """The source database's comment and connection limit on the new database ``dbname`` (to be renamed
        ``target``), its own grants with ``privileges`` and its owner with ``owners`` (``props``: the manifest's
        ``database_properties``; a dump of the contents has none). Failures, and grants left out, become
        warnings. Returns what was applied."""
        ident = self.ident(dbname)
        steps = []
        if (props or {}).get("comment") is not None:
            steps.append(("comment", ["COMMENT ON DATABASE %s IS %s" % (ident, self.literal(props["comment"]))]))
        if (props or {}).get("connection_limit") not in (None, -1):
            steps.append(("connection_limit", ["ALTER DATABASE %s CONNECTION LIMIT %d" % (
                ident, props["connection_limit"])]))
        if owners and (props or {}).get("owner"):
            steps.append(("owner", ["ALTER DATABASE %s OWNER TO %s" % (ident, self.ident(props["owner"]))]))
        grants = (props or {}).get("grants")

        def grant_statements(name):
            return ["REVOKE ALL ON DATABASE %s FROM PUBLIC" % name] + [
                "GRANT %s ON DATABASE %s TO %s%s" % (g["privilege"], name, self.ident(g["role"]) if g["role"] else "PUBLIC",
                                                     " WITH GRANT OPTION" if g["grantable"] else "") for g in grants]

        if grants is not None and privileges:
            steps.append(("grants", grant_statements(ident)))
        elif grants is not None:
            self.warnings.append(
                "%s had grants of its own, which a new database gets only with privileges: true: %r has "
                "PostgreSQL's defaults (PUBLIC may connect and create temporary tables). Restore with privileges: "
                "true (the roles must exist: globals_artifact), or run: %s." % (
                    source[0].upper() + source[1:], target, "; ".join(grant_statements(self.ident(target)))))
        applied = []
        for name, group in steps:
            try:
                with self.conn.transaction():
                    for statement in group:
                        self.conn.execute(statement)
                applied.append(name)
            except psycopg_error() as e:
                self.warnings.append("The %s of %s was not carried over to %r (%s): check it with \\l+ %s." % (
                    name.replace("_", " "), source, target, postgres.first_line(str(e)), target))
        return applied

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
                except psycopg_error() as e:
                    self.warnings.append("The setting %s%s of %r was not carried over (%s)." % (
                        item, " for role %s" % role if role else "", source, postgres.first_line(str(e))))
        return applied


def session_of(row):
    return {"pid": row[0], "user": row[1], "application": row[2], "client": row[3],
            "since": row[4].strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(row[4], "strftime") else row[4],
            "state": row[5]}
