# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scratch targets that never outlive the run that made them.

A scratch database or folder is registered with a janitor: a small child
process, in its own session, that waits for its stdin to close. The run
removes its scratch targets itself when it finishes; if it is killed (even
with SIGKILL) the pipe closes and the janitor removes them. Connection
details, the password included, travel through the pipe, never argv.
"""

import json
import os
import shutil
import subprocess
import sys

_JANITOR = r"""
import json, os, shutil, sys, time
items = []
for line in sys.stdin:
    try:
        items.append(json.loads(line))
    except ValueError:
        pass
done = set(t["id"] for t in items if t.get("done"))
for item in items:
    if item.get("done") or item["id"] in done:
        continue
    try:
        if item.get("kind") == "dir":
            shutil.rmtree(item["path"], ignore_errors=True)
        elif item.get("kind") == "database":
            import psycopg
            from psycopg import sql
            with psycopg.connect(autocommit=True, **item["params"]) as conn:
                back = item.get("put_back")
                if back and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (back,)).fetchone() is None:
                    continue  # the original was never moved aside: it is still the target, leave it
                subs = conn.execute("SELECT s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                                    "WHERE d.datname = %s", (item["name"],)).fetchall()
                if subs:  # a database with subscriptions cannot be dropped: detach and drop them first
                    with psycopg.connect(autocommit=True, **dict(item["params"], dbname=item["name"])) as sub:
                        for (name,) in subs:
                            for q in ("ALTER SUBSCRIPTION {} DISABLE", "ALTER SUBSCRIPTION {} SET (slot_name = NONE)",
                                      "DROP SUBSCRIPTION {}"):
                                sub.execute(sql.SQL(q).format(sql.Identifier(name)))
                # The killed run's pg_restore --create may outlive it and make the database again between the
                # drop and the rename: drop (FORCE ends its session) and rename until the name is free.
                for attempt in range(20):
                    try:
                        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(item["name"])))
                        if back:
                            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(back),
                                                                                          sql.Identifier(item["name"])))
                        break
                    except psycopg.Error:
                        if attempt == 19:
                            raise
                        time.sleep(0.5)
    except Exception as e:
        sys.stderr.write("lifeboat janitor: could not remove %s: %s\n" % (item.get("path") or item.get("name"), e))
"""


class Janitor(object):
    def __init__(self):
        self.proc = None
        self._next = 0

    def _ensure(self):
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, "-c", _JANITOR], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True, close_fds=True)

    def _send(self, item):
        self._ensure()
        self.proc.stdin.write((json.dumps(item) + "\n").encode("utf-8"))
        self.proc.stdin.flush()

    def register_dir(self, path):
        self._next += 1
        self._send({"id": self._next, "kind": "dir", "path": path})
        return self._next

    def register_database(self, name, params, put_back=None):
        """``params``: psycopg.connect keyword arguments to a maintenance database.

        With ``put_back`` (the name the original database was moved to), the janitor drops ``name`` and
        renames ``put_back`` to ``name`` again, but only if ``put_back`` exists: a run killed before it moved
        the original aside leaves the original alone.
        """
        self._next += 1
        item = {"id": self._next, "kind": "database", "name": name, "params": params}
        if put_back:
            item["put_back"] = put_back
        self._send(item)
        return self._next

    def register_database_of(self, connection, name, app, put_back=None):
        """Register ``name`` on the server of ``connection`` (a postgres.Connection), password included."""
        params = connection.params("postgres", app)
        if connection.password:
            params["password"] = connection.password
        return self.register_database(name, params, put_back)

    def done(self, ident):
        """The run removed that target itself."""
        self._send({"id": ident, "done": True})

    def close(self):
        """End of run: the janitor removes whatever was not marked done, then exits."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def remove_dir(path):
    if path and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
