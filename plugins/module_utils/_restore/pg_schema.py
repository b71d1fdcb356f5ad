# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schema tenants: pg_restore -f - piped into psql, in one transaction that only the last
write of this process (after the row-count check) commits."""

import json
import os
import re
import secrets
import subprocess
import time

from .. import naming, restore_guard, shared_part
from ..errors import LifeboatError
from ..restore_common import compare_counts
from ..tools import Tool
from . import compat
from .pg_server import APP, describe_session, session_of
from .pg_stream import describe_contents, failing_with, manifest_figures, restore_failed, stream_into

LOCK_WAIT = "60s"


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
                    self.holders = [session_of(r) for r in server.execute(
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
                % (where, describe_contents(self.contents)),
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
            self.schema, self.database, describe_contents(self.contents),
            "kept as %s" % self.safety if self.safety else "dropped (keep_safety_copy: false)")
            if self.schema_exists else
            "a new schema %r in %s database %r" % (
                self.schema, "the existing" if self.db_info is not None else "a new", self.database))
        return "would restore %s (%s) into %s on %s%s." % (self.art.name, manifest_figures(self.art), what,
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
        with failing_with(outcome, (lambda: server.drop_database(self.database)) if created_db else None):
            terminated = []
            if self.holders and req.terminate_connections:
                server.terminate([s["pid"] for s in self.holders], self.database)
                terminated = [describe_session(s) for s in self.holders]
            counts = self._restore(server, req, art, identities, progress, outcome)
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
            rargv = [server.tool("pg_restore", compat.dump_major(art, self.shared)), "--format=custom", "--file=-"]
            if not req.owners:
                rargv.append("--no-owner")
            if not req.privileges:
                rargv.append("--no-privileges")

            def feed(tool, source, write_fd, text, report):
                """One archive through its pg_restore into psql's next input, checked against its manifest."""
                _close(fds, write_fd)
                sizes = stream_into(tool, source, identities, report)
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


def _close(fds, *which):
    for fd in which:
        if fd in fds:
            fds.remove(fd)
            try:
                os.close(fd)
            except OSError:
                pass
