# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One agent run: its exit codes, the host lock and the run-as user, the tenants it runs, the
workers' outcomes logged, recorded (state, metrics) and summed up; what is unprotected after it."""

import os
import pwd
import sys
import time

from .. import agent_config, agent_metrics, agent_pass, discovery, naming
from ..agent_output import Progress
from ..agent_runner import Runner
from ..errors import LifeboatError, LockBusy
from ..locking import FileLock, describe_holder, lock_holder
from ..repository import open_repository
from ..version import TOOL_VERSION
from .params import connection_params, repo_options


EXIT_OK = 0
EXIT_FAILED = 1          # at least one tenant failed
EXIT_CONFIG = 2          # bad command line or configuration: nothing ran


EXIT_LOCKED = 75         # EX_TEMPFAIL: another run holds the host lock
EXIT_LATE = 1            # status: a tenant is past its RPO, or its last verification failed
EXIT_UNPROTECTED = 3     # backup/verify ran, but a tenant, database or schema is unprotected, or discovery failed


# -- the host lock and the run-as user -------------------------------------------------------

def become(user, environ=None):
    """When started as root, run as ``user`` (the units' User=), so files keep one owner."""
    environ = os.environ if environ is None else environ
    if not user or os.geteuid() != 0 or user == "root":
        return False
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise agent_config.ConfigError("lifeboat.yml", "user", "there is no user %r on this host." % user)
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    environ.update({"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name})
    return True


def acquire_lock(config, operation, wait, log):
    path = config["lock_file"]
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory, 0o700, exist_ok=True)
        except OSError as e:
            raise LifeboatError("Cannot create %s for the agent's lock: %s. Check lock_file in lifeboat.yml."
                                % (directory, e.strerror), option="lock_file")
    holder = lock_holder(path)
    if holder and wait:
        log.line([("op", operation), ("event", "waiting"), ("lock", path), ("holder", describe_holder(holder)),
                  ("wait", wait)], "notice")
    lock = FileLock(path, "lifeboat %s" % operation, wait, subject="this host's lifeboat agent")
    try:
        return lock.acquire()
    except LockBusy:
        holder = lock_holder(path)
        raise LockBusy(
            "Another lifeboat run holds the host lock %s: %s. Two runs never overlap on one host, so this %s "
            "did nothing%s. Run it again when the other one has finished, or let it wait with --wait DURATION "
            "(lock_wait in lifeboat.yml)." % (
                path, describe_holder(holder) if holder else "another process", operation,
                " after waiting %ds" % wait if wait else ""),
            option="lock_wait")


# -- running tenants -------------------------------------------------------------------------

class Session(object):
    """One agent run of one operation over several tenants."""

    def __init__(self, args, config, operation, log):
        self.args = args
        self.config = config
        self.operation = operation
        self.log = log
        self.progress = Progress(sys.stderr, operation) if (
            operation in ("backup", "restore", "verify") and not args.no_progress and Progress.wanted()) else None
        self.lines = []
        self.start_pairs = []

    def line_for(self, outcome):
        pairs = [("op", self.operation), ("tenant", outcome.label), ("status", outcome.status),
                 ("seconds", round(outcome.seconds, 3))]
        info = outcome.info
        if outcome.status in ("ok", "skipped"):
            for key, name in (("size_stored", "size"), ("size_raw", "raw"), ("rows", "rows"),
                              ("rows_scrubbed", "rows_scrubbed"), ("deleted", "deleted"), ("kept", "kept"),
                              ("verify_status", "result"), ("warnings", "warnings"), ("artifact", "artifact"),
                              ("target", "target"), ("reason", "reason"), ("note", "note")):
                if info.get(key) is not None:
                    pairs.append((name, info[key]))
            return pairs, "info"
        if info.get("artifact"):
            pairs.append(("artifact", info["artifact"]))
        pairs.append(("error", outcome.error or "unknown error"))
        if outcome.option:
            pairs.append(("option", outcome.option))
        return pairs, "err"

    passes = ()

    def _done(self, outcome):
        for one in agent_pass.expand([outcome], self.passes):  # a pass: one line per tenant
            pairs, level = self.line_for(one)
            if self.progress:
                self.lines.append((pairs, level))
            else:
                self.log.line(pairs, level)

    def run(self, jobs, parallel):
        self.log.line([("op", self.operation), ("event", "start"), ("tenants", len(jobs)),
                       ("parallel", min(parallel, len(jobs)) or 1), ("version", TOOL_VERSION)] + self.start_pairs)
        t0 = time.monotonic()
        runner = Runner(parallel, on_update=self.progress.update if self.progress else None, on_done=self._done)
        outcomes = agent_pass.expand(runner.run(jobs), self.passes)
        if self.progress:
            self.progress.update(outcomes, final=True)
            for pairs, level in self.lines:
                self.log.line(pairs, level)
        self.outcomes = outcomes
        self.seconds = time.monotonic() - t0
        return outcomes

    def record(self, outcomes, figures_of=None):
        """State and metrics; returns False when they could not be written."""
        when = agent_metrics.now()
        state = agent_metrics.State(self.config["state_dir"]).load()
        for o in outcomes:
            figures = figures_of(o) if figures_of else {}
            state.record(self.operation, o.label, o.ok, when, o.seconds, figures, o.error, o.status == "skipped")
        entries = state.tenants(self.operation)
        keep = set(o.label for o in outcomes) | set(self.args_all_labels)
        for label in list(entries):
            if label not in keep:
                del entries[label]
        ok = True
        try:
            state.save()
        except LifeboatError as e:
            ok = False
            self.log.line([("op", self.operation), ("event", "state"), ("status", "failed"), ("error", e.msg)], "err")
        metrics_dir = self.config["metrics_dir"]
        if metrics_dir:
            counts = dict(self.run_info, finished=when)
            for o in outcomes:
                counts[o.status] = counts.get(o.status, 0) + 1
            try:
                path = agent_metrics.write(metrics_dir, self.operation, entries, counts)
                self.metrics_path = path
            except LifeboatError as e:
                ok = False
                self.log.line([("op", self.operation), ("event", "metrics"), ("status", "failed"), ("error", e.msg)],
                              "err")
        return ok

    args_all_labels = ()
    run_info = {}  # figures of the whole run for the metrics (agent_metrics._RUN_FIGURES)

    def finish(self, outcomes, recorded=True):
        failed = [o for o in outcomes if not o.ok]
        pairs = [("op", self.operation), ("event", "done"),
                 ("ok", sum(1 for o in outcomes if o.status == "ok")),
                 ("skipped", sum(1 for o in outcomes if o.status == "skipped")),
                 ("failed", len(failed)), ("seconds", round(self.seconds, 3))]
        if failed:
            pairs.append(("failed_tenants", ",".join(o.label for o in failed)))
        if not recorded:
            pairs.append(("metrics", "not written"))
        self.log.line(pairs, "err" if failed or not recorded else "info")
        return EXIT_FAILED if failed or not recorded else EXIT_OK


def select_tenants(config, requested, operation, found=None):
    names = found.names if found is not None else config.tenants
    if requested:
        for name in requested:
            naming.validate_tenant(name, "--tenant")
        return list(dict.fromkeys(requested))
    if found is not None and found.configured and not found.listed:
        return names  # discover rules: finding nothing (or failing to look) is reported, not a configuration error
    if not names:
        env = config.env
        where = env["path"] if env["exists"] else "%s (missing)" % env["path"]
        raise agent_config.ConfigError(os.path.basename(env["path"]), "TENANTS",
                                       "lists no tenant, so there is nothing to %s. Put TENANTS=\"tenant_a tenant_b\" "
                                       "in %s." % (operation, where))
    return names


def find_tenants(config, log, operation):
    """Listed + discovered tenants (discovery.tenants_for_run), with the run's discovery line."""
    found = discovery.tenants_for_run(config, lambda: connection_params(config["connection"]))
    discovery.log_found(log, operation, found)
    return found


def protection(args, config, log, operation, found, repository):
    """After a full run (not --tenant, not --check): report what is unprotected; exit 3 when anything is."""
    if args.tenant or getattr(args, "check", False):
        return None

    def after(outcomes, code):
        try:
            newest = discovery.repository_newest(open_repository(repository, create=False, **repo_options(config)))
        except LifeboatError as e:
            newest = discovery.unreadable(e.msg)  # every tenant is then unprotected, and says why
        bad, written = discovery.report_run(config, log, operation, found, newest, outcomes)
        if code != EXIT_OK:
            return code
        if not written:
            return EXIT_FAILED
        return EXIT_UNPROTECTED if bad or found.errors else EXIT_OK
    return after


def run_jobs(args, config, log, operation, jobs, parallel, labels, figures_of=None, start=(), after=None,
             passes=(), run_info=None):
    session = Session(args, config, operation, log)
    session.run_info = dict(run_info or {})
    session.passes = list(passes)
    session.start_pairs = list(start)
    session.args_all_labels = labels if not args.tenant else ()
    if args.tenant:
        # A partial run keeps the other tenants' history.
        state = agent_metrics.State(config["state_dir"]).load()
        session.args_all_labels = list(state.tenants(operation)) + list(labels)
    outcomes = session.run(jobs, parallel)
    recorded = True
    if not getattr(args, "check", False):
        recorded = session.record(outcomes, figures_of)
    code = session.finish(outcomes, recorded)
    return after(outcomes, code) if after is not None else code
