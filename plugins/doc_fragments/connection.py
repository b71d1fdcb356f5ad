# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # How to reach a PostgreSQL server (argspec.LOGIN): lifeboat.backup.connection
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - Unset means the local server through the default unix socket, unless O(login_unix_socket) is set.
    type: str
  login_port:
    description:
      - Port of the PostgreSQL server.
    type: int
    default: 5432
  login_user:
    description:
      - The role to connect as. Unset means libpq's default (the user running the module).
    type: str
  login_password:
    description:
      - Password of O(login_user). It reaches libpq as a connection parameter or through
        E(PGPASSWORD), never on a command line, and never appears in results or logs.
    type: str
  login_unix_socket:
    description:
      - Folder of the server's unix socket, for example C(/var/run/postgresql). Takes precedence over O(login_host).
    type: str
"""

    # Where its client tools are (argspec.CONNECTION adds it to LOGIN), for every module that runs them:
    # lifeboat.backup.connection.pg_tools
    PG_TOOLS = r"""
options:
  pg_bin_dir:
    description:
      - Folder holding C(pg_dump), C(pg_dumpall) and C(pg_restore).
      - Unset means the newest C(/usr/lib/postgresql/*/bin) (Debian), else the tools on E(PATH).
        The tools must be at least as new as the server.
    type: path
notes:
  - The module runs on the database host or any host that reaches the server; the Python that runs it
    needs C(psycopg) (3), C(pyrage) and C(zstandard), as installed by the roles in C(/opt/lifeboat/venv).
"""
