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

The code lives in the private package ``_restore``: ``pg_server`` (the maintenance
connection), ``pg_stream`` (running pg_restore), ``pg_database``, ``pg_schema`` and
``pg_globals`` (the three plans). This module is their public face.
"""

from . import restore_guard
from ._restore import compat
from ._restore.pg_database import DatabasePlan
from ._restore.pg_globals import GlobalsPlan, apply_globals, plan_globals, transform_globals
from ._restore.pg_schema import SchemaPlan
from ._restore.pg_server import APP, Server, describe_session
from ._restore.pg_stream import pg_restore_argv, restore_failed, run_pg_restore
from .errors import LifeboatError

__all__ = ["APP", "DatabasePlan", "GlobalsPlan", "SchemaPlan", "Server", "apply_globals", "describe_session",
           "pg_restore_argv", "plan_globals", "plan_tenant", "restore_failed", "run_pg_restore", "transform_globals"]


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
    plan = SchemaPlan(server, req, art, schema, shared, owners) if schema else DatabasePlan(server, req, art, owners)
    # the server's version and extensions, for the tenant and the shared part restored first (if any)
    compat.check(server, [art, getattr(plan, "shared", None)])
    return plan
