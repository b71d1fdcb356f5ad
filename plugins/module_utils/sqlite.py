# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite tenants: consistent snapshots through the online backup API."""

import os
import sqlite3
from urllib.parse import quote

from .errors import LifeboatError


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def _open_readonly(path):
    return sqlite3.connect("file:%s?mode=ro" % quote(os.path.abspath(path)), uri=True, timeout=30)


def check_source(path):
    """Raise a clear error unless ``path`` is a readable SQLite database."""
    if not path:
        raise LifeboatError("engine sqlite needs path: the SQLite database file of the tenant.", option="path")
    if not os.path.isfile(path):
        raise LifeboatError("The SQLite file %s does not exist (path). Check the path option." % path, option="path")
    try:
        conn = _open_readonly(path)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise LifeboatError("%s is not a readable SQLite database: %s (path)." % (path, e), option="path")


def snapshot(path, dest):
    """Copy ``path`` into ``dest`` with the backup API (one consistent step)."""
    check_source(path)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    src = _open_readonly(path)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst, pages=-1)
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise LifeboatError("Snapshot of SQLite file %s failed: %s." % (path, e), option="path")
    finally:
        src.close()


def table_row_counts(path):
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                "ORDER BY name"
            )
        ]
        return dict((n, conn.execute("SELECT count(*) FROM %s" % quote_ident(n)).fetchone()[0]) for n in names)
    finally:
        conn.close()


def integrity_check(path, quick=False):
    """Return 'ok' or the first problems reported by SQLite."""
    conn = _open_readonly(path)
    try:
        rows = conn.execute("PRAGMA quick_check" if quick else "PRAGMA integrity_check").fetchall()
    except sqlite3.Error as e:
        return str(e)
    finally:
        conn.close()
    text = "; ".join(r[0] for r in rows[:5])
    return text


def version():
    return sqlite3.sqlite_version
