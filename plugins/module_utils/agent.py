# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``lifeboat``: the host agent that systemd timers run, without a controller.

It is the same engine as the Ansible modules (no Ansible import), installed
in its own venv (``/opt/lifeboat/venv``) as the ``lifeboat_engine`` package
with a ``lifeboat`` console script:

    lifeboat backup [--tenant T]... [--no-globals] [--check]
    lifeboat verify [--tenant T]...
    lifeboat prune [--tenant T]... [--check]
    lifeboat anonymize [--tenant T]... [--check]
    lifeboat restore TENANT [--artifact A] [--target-database D | --target-path P] [--force]
    lifeboat status [--json]
    lifeboat check-config [--file F]
    lifeboat alert UNIT

It reads ``/etc/lifeboat/tenants.env`` and ``/etc/lifeboat/lifeboat.yml``
(see ``agent_config``), validated before anything runs; runs the tenants in
parallel worker processes (``parallel``, default 2); prints one structured
line per tenant (the journal under systemd); writes Prometheus textfile
metrics; and exits non-zero when any tenant failed (1), or when a tenant,
database or schema is unprotected (3; tenants found by ``discover`` rules and
what is unprotected: discovery.py). Two runs on one host never
overlap: a host-wide lock, which a second run waits for (``--wait``,
``lock_wait``) or reports and exits 75.

The code lives in the private package ``_agent``: ``params`` (what the engines are
given), ``session`` (a run: lock, user, tenants, outcomes, exit codes), ``operations``
(backup, restore, verify, prune, anonymize), ``status`` (status, check-config),
``alert`` (alert, its webhook) and ``parser`` (the command line). This module is the
console script's entry point (``lifeboat = lifeboat_engine.agent:main``) and their face.
"""

import os

# strptime imports _strptime on first use; after become() has switched users the interpreter's own files
# may be unreadable (an interpreter under /root), so it is imported now, while they are readable.
import _strptime  # noqa: F401  # pylint: disable=unused-import

from . import agent_config, agent_metrics, naming
from ._agent.alert import cmd_alert, post_webhook
from ._agent.operations import cmd_anonymize, cmd_backup, cmd_prune, cmd_restore, cmd_verify
from ._agent.params import (CREDENTIAL_DEFAULT, connection_params, credential_path, filter_params, globals_label,
                            identity_source, make_job, s3_params, summarize_anonymize, summarize_backup,
                            summarize_prune, summarize_restore, summarize_verify, tenant_params, wants_globals)
from ._agent.parser import build_parser
from ._agent.session import (EXIT_CONFIG, EXIT_FAILED, EXIT_LATE, EXIT_LOCKED, EXIT_OK, EXIT_UNPROTECTED, Session,
                             acquire_lock, become, find_tenants, select_tenants)
from ._agent.status import cmd_check_config, cmd_status, tenant_status
from .agent_output import Log
from .errors import LifeboatError, LockBusy
from .locking import lock_holder

__all__ = ["CREDENTIAL_DEFAULT", "COMMANDS", "EXIT_CONFIG", "EXIT_FAILED", "EXIT_LATE", "EXIT_LOCKED", "EXIT_OK",
           "EXIT_UNPROTECTED", "LOCKED", "Session", "acquire_lock", "become", "build_parser", "cmd_alert",
           "cmd_anonymize", "cmd_backup", "cmd_check_config", "cmd_prune", "cmd_restore", "cmd_status", "cmd_verify",
           "connection_params", "credential_path", "filter_params", "find_tenants", "globals_label", "identity_source",
           "main", "make_job", "post_webhook", "s3_params", "select_tenants", "summarize_anonymize", "summarize_backup",
           "summarize_prune", "summarize_restore", "summarize_verify", "tenant_params", "tenant_status",
           "wants_globals"]

COMMANDS = {
    "backup": cmd_backup,
    "verify": cmd_verify,
    "prune": cmd_prune,
    "anonymize": cmd_anonymize,
    "restore": cmd_restore,
    "status": cmd_status,
    "check-config": cmd_check_config,
    "alert": cmd_alert,
}
LOCKED = ("backup", "verify", "prune", "anonymize", "restore")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("tenant", "check", "no_globals"):
        if not hasattr(args, name):
            setattr(args, name, None)
    log = Log()
    operation = args.command
    config = None
    try:
        if operation == "check-config" and args.file:
            return cmd_check_config(args, None, log)
        config = agent_config.load(args.config, args.tenants_env,
                                   require_file=operation not in ("alert",))
        if operation != "alert":
            become(config.get("user"))
        lock = None
        if operation in LOCKED:
            wait = args.wait if args.wait is not None else config["lock_wait"]
            lock = acquire_lock(config, operation, wait, log)
            record_start(args, config, operation, None)
        try:
            return COMMANDS[operation](args, config, log)
        finally:
            if lock is not None:
                lock.release()
    except LockBusy as e:
        log.line([("op", operation), ("status", "locked"), ("error", e.msg)] + record_start(args, config, operation,
                                                                                            "locked"), "err")
        return EXIT_LOCKED
    except agent_config.ConfigError as e:
        log.line([("op", operation), ("status", "config-error"), ("key", e.key), ("error", e.msg)]
                 + record_start(args, config, operation, "config-error"), "err")
        return EXIT_CONFIG
    except LifeboatError as e:
        log.line([("op", operation), ("status", "failed"), ("error", e.msg), ("option", e.option)], "err")
        return EXIT_CONFIG if operation == "check-config" else EXIT_FAILED
    except KeyboardInterrupt:
        log.line([("op", operation), ("status", "interrupted")], "err")
        return 130


STARTS = ("backup", "verify", "prune", "anonymize")  # timer runs: lifeboat_agent_<op>.prom says whether they started


def record_start(args, config, operation, refused):
    """Write whether this run started (agent_metrics.write_start); log pairs when that failed.

    A configuration that did not load has no metrics_dir: the default's folder is used.
    """
    if operation not in STARTS or getattr(args, "check", False):
        return []
    metrics_dir = config["metrics_dir"] if config is not None else agent_config.DEFAULTS["metrics_dir"]
    if not metrics_dir or (config is None and not os.path.isdir(metrics_dir)):
        return []
    since = None
    if refused == "locked":
        holder = lock_holder(config["lock_file"]) or {}
        try:
            since = int(naming.parse_iso(holder.get("since") or "").timestamp())
        except ValueError:
            since = None
    try:
        agent_metrics.write_start(metrics_dir, operation, refused, agent_metrics.now(), since)
    except LifeboatError as e:
        return [("metrics", "not written: " + e.msg)]
    return []


if __name__ == "__main__":
    raise SystemExit(main())
