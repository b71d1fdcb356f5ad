# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database tenants: pg_restore into a fresh database, checked, then swapped with the target
(kept as a safety copy) in one transaction; or pg_restore --create (allow_create_in_dump)."""

import os
import time

from .. import naming, postgres, restore_guard
from ..errors import LifeboatError
from ..restore_common import compare_counts
from ..scratch import Janitor
from .pg_server import APP, describe_session, psycopg_error
from .pg_stream import describe_contents, failing_with, manifest_figures, run_pg_restore

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
                "target_database." % (target, server.where, describe_contents(self.contents)),
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
        self.properties_applied = []

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
            self.target, describe_contents(self.contents),
            ", %s" % naming.human_size(self.info["size_bytes"]) if self.info["size_bytes"] is not None else "",
            "afterwards" if self.keep else "until the restore succeeded, then dropped")

    def summary_check(self):
        text = "would restore %s (%s) into %s on %s%s." % (
            self.art.name, manifest_figures(self.art),
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
        with failing_with(unchanged, lambda: server.drop_database(fresh)):
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
                source = "the source database %r" % art.source.get("database")
                self.settings_applied = server.apply_settings(fresh, art.source.get("database_settings"), source)
                # and its comment, connection limit, grants (privileges) and owner (owners)
                self.properties_applied = server.apply_properties(
                    fresh, art.source.get("database_properties"), req.privileges, req.owners, source, self.target)
                try:
                    server.rename_database(fresh, self.target)
                except psycopg_error() as e:
                    raise LifeboatError("Renaming the restored database %s to %r failed: %s. %s" % (
                        fresh, self.target, postgres.first_line(str(e)), unchanged), option="target_database")
                terminated = []
        return {"row_counts": counts, "row_counts_match": True, "terminated_sessions": terminated,
                "subscriptions_detached": self.detached, "database_settings_applied": self.settings_applied,
                "database_properties_applied": self.properties_applied}

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
