# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``lifeboat`` command line."""

import argparse
import os

from .. import agent_config, naming
from ..errors import LifeboatError
from ..version import TOOL_VERSION


def _duration_arg(value):
    try:
        seconds = naming.parse_duration(value, "--wait")
    except LifeboatError as e:
        raise argparse.ArgumentTypeError(e.msg)
    return seconds or 0


# The subcommands that run over the tenants (--tenant, --check, --wait): name, help, --check's help.
_TENANT_RUNS = (
    ("backup", "back up the tenants (and the server's globals)", "say what would be written, write nothing"),
    ("verify", "restore-verify the newest artifact of each tenant into a scratch database",
     "verify, but write no verify record"),
    ("prune", "delete artifacts the retention policy no longer keeps", "report what would be deleted, delete nothing"),
    ("anonymize", "scrub personal data older than PII_DAYS, per the rules", "count what would be scrubbed, change nothing"),
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lifeboat",
        description="lifeboat.backup host agent: back up, verify, prune, anonymize and restore this host's tenants.")
    parser.add_argument("--version", action="version", version="lifeboat %s" % TOOL_VERSION)
    parser.add_argument("--config", default=os.environ.get("LIFEBOAT_CONFIG", agent_config.CONFIG_FILE),
                        help="lifeboat.yml (default %(default)s); drop-ins are read from lifeboat.d/ beside it")
    parser.add_argument("--tenants-env", default=os.environ.get("LIFEBOAT_TENANTS_ENV", agent_config.TENANTS_ENV),
                        help="the tenants file (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress, even on a terminal")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def locked(p):
        p.add_argument("--wait", type=_duration_arg, default=None, metavar="DURATION",
                       help="wait this long for another run's host lock (default: lock_wait in lifeboat.yml, 0)")

    for name, text, check in _TENANT_RUNS:
        p = sub.add_parser(name, help=text)
        if name == "backup":
            p.add_argument("--tenant", action="append", help="only this tenant (repeat for more); globals are skipped")
            p.add_argument("--no-globals", action="store_true", help="do not back up the server's roles and grants")
        else:
            p.add_argument("--tenant", action="append")
        p.add_argument("--check", action="store_true", help=check)
        locked(p)
    p = sub.add_parser("restore", help="restore one tenant from the repository")
    p.add_argument("tenant_name", metavar="TENANT")
    p.add_argument("--artifact", default="latest", help="latest (default), an artifact name or a path")
    p.add_argument("--target-database", help="restore into this database instead of the tenant's")
    p.add_argument("--target-path", help="SQLite tenants: restore into this file instead")
    p.add_argument("--force", action="store_true", help="replace the tenant's own target when it holds data")
    p.add_argument("--replace-target", metavar="NAME",
                   help="the target database (or file) again, to replace one that is not the tenant's own")
    p.add_argument("--source-tenant", metavar="TENANT", help="restore an artifact of this other tenant (a tenant move)")
    p.add_argument("--drop-replaced", action="store_true",
                   help="drop what the restore replaced once it succeeded (default: keep it as a safety copy)")
    p.add_argument("--jobs", type=int, help="parallel pg_restore jobs (plaintext in a private temp folder)")
    p.add_argument("--identity-file", help="the age identity (default: the unit's credential or verify.identity_file)")
    p.add_argument("--check", action="store_true", help="say what would happen, change nothing")
    locked(p)
    p = sub.add_parser("status", help="every tenant's newest artifact, its age against the RPO, its last verification")
    p.add_argument("--tenant", action="append")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("check-config", help="validate tenants.env and lifeboat.yml (and the drop-ins)")
    p.add_argument("--file", help="validate only this one lifeboat.yml-format file (as the roles do before installing it)")
    p = sub.add_parser("alert", help="send the configured alert for a failed unit (OnFailure=)")
    p.add_argument("unit", metavar="UNIT")
    return parser
