# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL: connections, exported snapshots, row counts, client binaries.

Identifiers reach SQL only through psycopg.sql; passwords reach libpq only
through the connection parameters (psycopg) or PGPASSWORD (client tools),
never argv.
"""

import glob
import os
import re
import shutil
import subprocess

from .errors import LifeboatError, MissingDependency

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    PSYCOPG_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the interpreter
    psycopg = None
    sql = None
    make_conninfo = None
    PSYCOPG_IMPORT_ERROR = str(_e)

APP_NAME = "lifeboat"


def require_psycopg():
    if psycopg is None:
        raise MissingDependency("psycopg", "psycopg[binary]", PSYCOPG_IMPORT_ERROR)
    return psycopg


class Connection(object):
    """The shared login_* options (same names as community.postgresql)."""

    def __init__(self, login_host=None, login_port=5432, login_user=None, login_password=None,
                 login_unix_socket=None, connect_timeout=10):
        self.host = login_host or None
        self.port = int(login_port or 5432)
        self.user = login_user or None
        self.password = login_password or None
        self.unix_socket = login_unix_socket or None
        self.connect_timeout = connect_timeout

    @classmethod
    def from_params(cls, params):
        return cls(
            login_host=params.get("login_host"),
            login_port=params.get("login_port"),
            login_user=params.get("login_user"),
            login_password=params.get("login_password"),
            login_unix_socket=params.get("login_unix_socket"),
        )

    @property
    def server(self):
        """Where the server is, for messages and manifests (no secret)."""
        return "%s:%s" % (self.unix_socket or self.host or "local socket", self.port)

    def params(self, dbname, app=APP_NAME):
        params = {"dbname": dbname, "port": self.port, "application_name": app,
                  "connect_timeout": self.connect_timeout}
        host = self.unix_socket or self.host
        if host:
            params["host"] = host
        if self.user:
            params["user"] = self.user
        return params

    def conninfo(self, dbname, app=APP_NAME):
        """A conninfo string for client tools' --dbname: never with the password."""
        require_psycopg()
        return make_conninfo(**self.params(dbname, app))

    def env(self, app=APP_NAME):
        """Environment for client tools: the password travels as PGPASSWORD."""
        env = dict(os.environ)
        for key in ("PGPASSWORD", "PGSERVICE", "PGOPTIONS"):
            env.pop(key, None)
        if self.password:
            env["PGPASSWORD"] = self.password
        env["PGAPPNAME"] = app
        env["PGCONNECT_TIMEOUT"] = str(self.connect_timeout)
        return env

    def connect(self, dbname, app=APP_NAME, autocommit=True, option="database"):
        require_psycopg()
        kwargs = self.params(dbname, app)
        if self.password:
            kwargs["password"] = self.password
        try:
            return psycopg.connect(autocommit=autocommit, **kwargs)
        except psycopg.OperationalError as e:
            text = first_line(str(e))
            if "does not exist" in text and "database" in text:
                raise LifeboatError(
                    "The database %r does not exist on %s (%s). Check the %s option, or create the "
                    "database first." % (dbname, self.server, text, option),
                    option=option,
                )
            raise LifeboatError(
                "Cannot connect to PostgreSQL at %s as %s, database %r: %s. Check login_host, "
                "login_port, login_user, login_password or login_unix_socket."
                % (self.server, self.user or "the default user", dbname, text),
                option="login_host",
            )


def first_line(text):
    text = (text or "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0].strip() if lines else text


def server_version(conn):
    return conn.execute("SHOW server_version").fetchone()[0].split()[0]


def system_identifier(conn):
    """The cluster's system identifier (pg_control_system(), as text), or None where it cannot be read.

    It tells two servers apart that answer to the same host name and port (pods of one
    StatefulSet, a rebuilt host); artifacts record it so that a restore never mixes them up.
    """
    try:
        with conn.transaction():
            row = conn.execute("SELECT system_identifier::text FROM pg_catalog.pg_control_system()").fetchone()
    except Exception:  # pylint: disable=broad-except
        return None  # a server without it, or a role that may not call it
    return row[0] if row else None


def major(version):
    m = re.match(r"(\d+)", version or "")
    return int(m.group(1)) if m else 0


def schema_exists(conn, schema):
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


_TABLES = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
   AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
 ORDER BY 1, 2
"""


_FORCED_RLS = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relforcerowsecurity AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
   AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
"""


def row_counts(conn, schema=None, lift_forced_rls=False):
    """Exact row counts of every user table (of ``schema`` when given).

    ``lift_forced_rls``, for a copy this run restored (a scratch or fresh database, owned by the
    restoring role when it is not a superuser): tables with FORCE ROW LEVEL SECURITY would show
    their owner only the rows a policy lets through, so the force is lifted while counting and set
    again afterwards.
    """
    forced = conn.execute(_FORCED_RLS, {"schema": schema}).fetchall() if lift_forced_rls else []
    for nsp, rel in forced:
        conn.execute(sql.SQL("ALTER TABLE {}.{} NO FORCE ROW LEVEL SECURITY").format(
            sql.Identifier(nsp), sql.Identifier(rel)))
    try:
        tables = conn.execute(_TABLES, {"schema": schema}).fetchall()
        counts = {}
        for nsp, rel in tables:
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(nsp), sql.Identifier(rel))
            try:
                counts["%s.%s" % (nsp, rel)] = conn.execute(query).fetchone()[0]
            except psycopg.errors.InsufficientPrivilege as e:
                raise unreadable_table(e, conn.info.dbname, conn.info.user, nsp, rel)
        return counts
    finally:
        for nsp, rel in forced:
            conn.execute(sql.SQL("ALTER TABLE {}.{} FORCE ROW LEVEL SECURITY").format(
                sql.Identifier(nsp), sql.Identifier(rel)))


def unreadable_table(error, database, user, schema, table):
    """The error for a table the backup role may not read: which table, and the grant that fixes it."""
    return _unreadable(user, "table", "%s.%s" % (_ident(schema), _ident(table)), _ident(schema), database,
                       first_line(str(error)))


def _ident(name):
    return sql.Identifier(name).as_string(None) if sql is not None else '"%s"' % name.replace('"', '""')


def _unreadable(user, kind, qualified, schema, database, cause, details=None):
    role = _ident(user) if user else "<the backup role>"
    return LifeboatError(
        "The backup role %s cannot read %s %s of database %r (%s), so this backup cannot hold it. Grant it: "
        "GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT ON %s TO %s; (or GRANT pg_read_all_data TO %s), or back up "
        "as a role that can read every table (login_user). Nothing was published."
        % (user or "of this backup", kind, qualified, database, cause, schema, role, qualified, role, role),
        option="login_user", details=details)


_NAME = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = re.compile(r"(%s)\.(%s)" % (_NAME, _NAME))
_DENIED = re.compile(r"permission denied for (table|sequence|view|materialized view) (.+?)\s*$", re.M)
_RLS = re.compile(r'query would be affected by row-level security policy for table "(.*)"\s*$', re.M)
_LARGE_OBJECT = re.compile(r"permission denied for large object (\d+)")


def _unquote(name):
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _query_object(text, name):
    """(schema, name) of the object ``name`` in pg_dump's "Query was:" line, or None."""
    query = text.split("Query was:", 1)[1] if "Query was:" in text else ""
    for schema, rel in _QUALIFIED.findall(query):
        if _unquote(rel) == name:
            return _unquote(schema), name
    return None


def dump_failure(error, database, user):
    """The error of a failed pg_dump, made to say what the backup role may not read and the grant that fixes
    it (pg_dump names the object, not the fix); ``error`` itself when it is about something else."""
    text = str(error)
    details = getattr(error, "details", None)
    role = _ident(user) if user else "<the backup role>"
    found = _DENIED.search(text)
    if found:
        named = _query_object(text, found.group(2))
        if named:
            return _unreadable(user, found.group(1), "%s.%s" % (_ident(named[0]), _ident(named[1])),
                               _ident(named[0]), database, found.group(0), details)
    found = _RLS.search(text)
    if found:
        named = _query_object(text, found.group(1))
        table = "%s.%s" % (_ident(named[0]), _ident(named[1])) if named else _ident(found.group(1))
        return LifeboatError(
            "The backup role %s is subject to the row-level security policies of table %s of database %r (%s), and "
            "pg_dump refuses to dump only the rows a policy lets through. Let it bypass them: ALTER ROLE %s "
            "BYPASSRLS; (as a superuser), or back up as a superuser (login_user). Nothing was published."
            % (user or "of this backup", table, database, found.group(0), role), option="login_user", details=details)
    found = _LARGE_OBJECT.search(text)
    if found:
        return LifeboatError(
            "The backup role %s cannot read large object %s of database %r (%s), and a backup of a database holds "
            "all of its large objects. Grant it each one: GRANT SELECT ON LARGE OBJECT %s TO %s; (SELECT "
            "format('GRANT SELECT ON LARGE OBJECT %%s TO %s;', oid) FROM pg_largeobject_metadata writes them all), "
            "make it a member of their owner, or back up as a superuser (login_user). Nothing was published."
            % (user or "of this backup", found.group(1), database, found.group(0), found.group(1), role,
               role.replace("'", "''")), option="login_user", details=details)
    return error


def database_settings(conn):
    """The current database's own settings (ALTER DATABASE ... SET, ALTER ROLE ... IN DATABASE ... SET):
    [{"role": name or None, "settings": ["search_path=app, public", ...]}]. A dump of the contents has none."""
    rows = conn.execute(
        "SELECT r.rolname, s.setconfig FROM pg_catalog.pg_db_role_setting s "
        "JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase AND d.datname = pg_catalog.current_database() "
        "LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole WHERE s.setrole = 0 OR r.rolname IS NOT NULL "
        "ORDER BY 1 NULLS FIRST").fetchall()
    return [{"role": role, "settings": list(config or [])} for role, config in rows]


def extensions(conn):
    """The current database's extensions but plpgsql (every server has it): [{"name", "version"}], by name.
    A restore checks that the target server can create them (``pg_available_extensions``) before it starts."""
    rows = conn.execute("SELECT extname, extversion FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' "
                        "ORDER BY 1").fetchall()
    return [{"name": name, "version": version} for name, version in rows]


def database_properties(conn):
    """The current database's owner, comment, connection limit and own grants (None while it has PostgreSQL's
    defaults; else [{"role": name or None for PUBLIC, "privilege": "CONNECT", "grantable": false}]): a dump of
    its contents has none of them, and a restore into a new database sets them from here."""
    owner, comment, limit, has_acl = conn.execute(
        "SELECT pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.shobj_description(d.oid, 'pg_database'), "
        "d.datconnlimit, d.datacl IS NOT NULL FROM pg_catalog.pg_database d "
        "WHERE d.datname = pg_catalog.current_database()").fetchone()
    grants = None
    if has_acl:
        grants = [{"role": role, "privilege": privilege, "grantable": grantable} for role, privilege, grantable in conn.execute(
            "SELECT r.rolname, a.privilege_type, a.is_grantable FROM pg_catalog.pg_database d "
            "CROSS JOIN LATERAL pg_catalog.aclexplode(d.datacl) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee "
            "WHERE d.datname = pg_catalog.current_database() AND (a.grantee = 0 OR r.rolname IS NOT NULL) "
            "ORDER BY 1 NULLS FIRST, 2").fetchall()]
    return {"owner": owner, "comment": comment, "connection_limit": limit, "grants": grants}


_RESTORE_TIME_CALLS = """
WITH fn AS (
  SELECT p.oid, n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args, p.provolatile,
         NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%%%%') %s AS no_path
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_catalog.pg_language l ON l.oid = p.prolang
   WHERE l.lanname IN ('sql', 'plpgsql') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                     AND e.objid = p.oid AND e.deptype = 'e')
), dep AS (
  SELECT fn.oid AS fn, d.classid::pg_catalog.regclass::text AS catalog, d.objid
    FROM fn JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid = fn.oid
), used AS (
  SELECT d.fn, rn.nspname, false AS per_row,
         'materialized view ' || pg_catalog.quote_ident(rn.nspname) || '.' || pg_catalog.quote_ident(rc.relname) AS what
    FROM dep d JOIN pg_catalog.pg_rewrite r ON d.catalog = 'pg_rewrite' AND r.oid = d.objid
    JOIN pg_catalog.pg_class rc ON rc.oid = r.ev_class AND rc.relkind = 'm'
    JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
  UNION ALL
  SELECT d.fn, rn.nspname, false, 'index ' || pg_catalog.quote_ident(rn.nspname) || '.' || pg_catalog.quote_ident(rc.relname)
    FROM dep d JOIN pg_catalog.pg_class rc ON d.catalog = 'pg_class' AND rc.oid = d.objid AND rc.relkind IN ('i', 'I')
    JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
  UNION ALL
  SELECT d.fn, rn.nspname, true, 'check constraint ' || pg_catalog.quote_ident(k.conname) || ' of '
         || CASE WHEN k.contypid <> 0 THEN 'domain ' || k.contypid::pg_catalog.regtype::text ELSE 'table '
         || k.conrelid::pg_catalog.regclass::text END
    FROM dep d JOIN pg_catalog.pg_constraint k ON d.catalog = 'pg_constraint' AND k.oid = d.objid AND k.contype = 'c'
    JOIN pg_catalog.pg_namespace rn ON rn.oid = k.connamespace
  UNION ALL
  SELECT d.fn, rn.nspname, true, 'generated column ' || a.adrelid::pg_catalog.regclass::text || '.'
         || pg_catalog.quote_ident(t.attname)
    FROM dep d JOIN pg_catalog.pg_attrdef a ON d.catalog = 'pg_attrdef' AND a.oid = d.objid
    JOIN pg_catalog.pg_attribute t ON t.attrelid = a.adrelid AND t.attnum = a.adnum AND t.attgenerated <> ''
    JOIN pg_catalog.pg_class rc ON rc.oid = a.adrelid JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
)
SELECT DISTINCT used.nspname, pg_catalog.quote_ident(fn.nspname), pg_catalog.quote_ident(fn.proname), fn.args,
       used.what, fn.no_path, used.per_row AND fn.provolatile <> 'i'
  FROM used JOIN fn ON fn.oid = used.fn
 WHERE (fn.no_path OR (used.per_row AND fn.provolatile <> 'i'))
   AND (%%(schema)s::text IS NULL OR used.nspname = %%(schema)s::text)
 ORDER BY 1, 5, 2, 3
"""


def restore_time_calls(conn, schema=None):
    """{schema: [warning]} for the SQL and plpgsql functions that a restore runs (materialized views, index
    expressions, check constraints, generated columns) and may fail in, in ``schema`` or in all.

    pg_restore runs them with an empty search_path: one without a search_path of its own that names a table,
    type or function outside pg_catalog without its schema fails. And it checks each row as it loads it: a
    check that reads another table (a function that is not IMMUTABLE) finds it not loaded yet. Either way
    the artifact cannot be restored (verify FAILs it); lifeboat cannot change that in the dump, so the
    backup says so, with the fix.
    """
    prosqlbody = "AND p.prosqlbody IS NULL" if major(server_version(conn)) >= 14 else ""
    out = {}
    for where, nsp, name, args, what, no_path, volatile in conn.execute(
            _RESTORE_TIME_CALLS % prosqlbody, {"schema": schema}).fetchall():
        function = "%s.%s(%s)" % (nsp, name, args)  # quoted where needed, by quote_ident
        problems = []
        if no_path:
            problems.append(
                "it sets no search_path, and a restore runs it with an empty one: if it names a table, type or "
                "function outside pg_catalog without its schema, the restore fails. Give it one: ALTER FUNCTION %s "
                "SET search_path = %s; (or qualify the names in its body)"
                % (function, nsp if nsp == "public" else "%s, public" % nsp))
        if volatile:
            problems.append(
                "it is not IMMUTABLE, and a restore checks each row as it loads it, before the rows of tables "
                "loaded after it: if it reads another table, the restore fails (PostgreSQL supports immutable "
                "checks only: use a foreign key or a trigger)")
        out.setdefault(where, []).append("The function %s, used by %s, may make a restore of this backup fail "
                                         "(verify would FAIL it): %s." % (function, what, "; and ".join(problems)))
    return out


_SUBSCRIPTIONS = """
SELECT s.subname FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
 WHERE d.datname = %s ORDER BY 1
"""


def subscriptions(conn, dbname):
    """Names of the logical replication subscriptions of database ``dbname`` (a shared catalog)."""
    return [r[0] for r in conn.execute(_SUBSCRIPTIONS, (dbname,)).fetchall()]


def detach_subscriptions(conn, drop=False):
    """Disable the subscriptions of the database ``conn`` is connected to and detach them from their
    publisher's replication slots (``slot_name = NONE``), so that a restored or scratch copy never
    consumes the publisher's slot and can be dropped; ``drop`` drops them too. Returns their names."""
    names = subscriptions(conn, conn.info.dbname)
    for name in names:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
        if drop:
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    return names


class Snapshot(object):
    """A REPEATABLE READ transaction whose snapshot pg_dump shares."""

    def __init__(self, conn):
        self.conn = conn
        self.id = None

    def __enter__(self):
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        self.id = self.conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        return self

    def __exit__(self, *exc):
        try:
            self.conn.execute("ROLLBACK")
        except Exception:
            pass
        return False


PG_LIB = "/usr/lib/postgresql"  # Debian's folder of <major>/bin


def _candidates(name, bin_dir=None):
    """Executables named ``name``: in ``bin_dir`` alone; else the newest /usr/lib/postgresql/*/bin first, then PATH."""
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if not os.access(path, os.X_OK):
            raise LifeboatError("%s not found in pg_bin_dir %s." % (name, bin_dir), option="pg_bin_dir")
        return [path]
    dirs = sorted(glob.glob(os.path.join(PG_LIB, "*", "bin")), key=lambda d: major(d.split("/")[-2]), reverse=True)
    candidates = [os.path.join(d, name) for d in dirs if os.access(os.path.join(d, name), os.X_OK)]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    return candidates


def find_binary(name, bin_dir=None, min_major=0, prefer_major=0):
    """Path of a PostgreSQL client tool at least as new as ``min_major``.

    ``bin_dir`` wins; else /usr/lib/postgresql/``prefer_major``/bin when it is new enough (a restore uses
    the target server's own pg_restore); else the newest /usr/lib/postgresql/*/bin (Debian); else PATH.
    """
    candidates = _candidates(name, bin_dir)
    if prefer_major >= min_major and not bin_dir:
        own = os.path.join(PG_LIB, str(prefer_major), "bin", name)
        if own in candidates and major(tool_version(own)) >= min_major:
            return own, tool_version(own)
    if not candidates:
        raise LifeboatError(
            "%s was not found: install the PostgreSQL client tools (Debian: postgresql-client-%s) or "
            "set pg_bin_dir." % (name, min_major or "N"),
            option="pg_bin_dir",
        )
    for path in candidates:
        version = tool_version(path)
        if major(version) >= min_major:
            return path, version
    raise LifeboatError(
        "%s %s is older than needed (major %d, the server's or the archive's): an older %s cannot read a newer "
        "server or archive. Install postgresql-client-%d or set pg_bin_dir to its bin folder."
        % (name, tool_version(candidates[0]), min_major, name, min_major),
        option="pg_bin_dir",
    )


_TOOL_VERSIONS = {}


def tool_version(path):
    """``path --version``, asked once per process (and its forks) for each binary file."""
    try:
        st = os.stat(path)
        key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key in _TOOL_VERSIONS:
        return _TOOL_VERSIONS[key]
    try:
        out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=30, check=False).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError) as e:
        raise LifeboatError("Cannot run %s: %s." % (path, e), option="pg_bin_dir")
    m = re.search(r"(\d+(?:\.\d+)*)", out)
    version = m.group(1) if m else "unknown"
    if key is not None:
        _TOOL_VERSIONS[key] = version
    return version


def warm_tool_versions(names=("pg_dump", "pg_dumpall"), bin_dir=None):
    """Ask every candidate of ``names`` for its version now, before a runner forks one worker per tenant."""
    for name in names:
        try:
            for path in _candidates(name, bin_dir):
                tool_version(path)
        except LifeboatError:
            pass


def schema_pattern(schema):
    """A pg_dump -n pattern that matches exactly ``schema`` (quoted, literal)."""
    return '"%s"' % schema.replace('"', '""')
