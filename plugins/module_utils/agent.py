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
"""

import argparse
import http.client
import inspect
import json
import os
import pwd
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from . import agent_config, agent_metrics, agent_pass, discovery, naming
from .agent_output import Log, Progress, human_age, table
from .agent_runner import Job, Runner
from .errors import LifeboatError, LockBusy
from .locking import FileLock, describe_holder, lock_holder
from .repository import S3_CONNECTION_OPTIONS, open_repository
from .version import TOOL_VERSION

try:
    from . import backup as backup_engine
    from . import backup_pass
    BACKUP_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - the engine always ships backup
    backup_engine = None
    BACKUP_IMPORT_ERROR = str(_e)
try:
    from . import restore as restore_engine
    RESTORE_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the engine version
    restore_engine = None
    RESTORE_IMPORT_ERROR = str(_e)
try:
    from . import verify as verify_engine
    VERIFY_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the engine version
    verify_engine = None
    VERIFY_IMPORT_ERROR = str(_e)
try:
    from . import prune as prune_engine
    PRUNE_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the engine version
    prune_engine = None
    PRUNE_IMPORT_ERROR = str(_e)
try:
    from . import anonymize as anonymize_engine
    ANONYMIZE_IMPORT_ERROR = None
except ImportError as _e:  # pragma: no cover - depends on the engine version
    anonymize_engine = None
    ANONYMIZE_IMPORT_ERROR = str(_e)

EXIT_OK = 0
EXIT_FAILED = 1          # at least one tenant failed
EXIT_CONFIG = 2          # bad command line or configuration: nothing ran
EXIT_UNAVAILABLE = 69    # EX_UNAVAILABLE: this version has no such engine
EXIT_LOCKED = 75         # EX_TEMPFAIL: another run holds the host lock
EXIT_LATE = 1            # status: a tenant is past its RPO, or its last verification failed
EXIT_UNPROTECTED = 3     # backup/verify ran, but a tenant, database or schema is unprotected, or discovery failed

CREDENTIAL_DEFAULT = "age-identity"


class Unavailable(LifeboatError):
    pass


def _engine(module, name, error):
    if module is None:
        raise Unavailable(
            "`lifeboat %s` is not available in this version of lifeboat (%s): its engine "
            "(%s.py) is not part of this installation (%s). Upgrade the agent's package." % (
                name, TOOL_VERSION, name, error or "not found"), option=name)
    return module


# -- parameters for the engine --------------------------------------------------------------

def _read_secret_file(path, key):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read(65536).strip()
    except OSError as e:
        raise LifeboatError("Cannot read %s %s: %s." % (key, path, e.strerror), option=key)


def connection_params(conn, key="connection"):
    out = {}
    for name in ("login_host", "login_port", "login_user", "login_unix_socket", "pg_bin_dir"):
        if conn.get(name) is not None:
            out[name] = conn[name]
    if conn.get("login_password_file"):
        out["login_password"] = _read_secret_file(conn["login_password_file"], key + ".login_password_file")
    return out


def s3_params(config):
    s3 = config["s3"] or {}
    out = {}
    for key in ("endpoint_url", "region", "access_key", "secret_key", "session_token", "storage_class", "sse",
                "sse_kms_key_id"):
        if s3.get(key) is not None:
            out["s3_" + key] = s3[key]
    if s3.get("secret_key_file"):
        out["s3_secret_key"] = _read_secret_file(s3["secret_key_file"], "s3.secret_key_file")
    return out


def tenant_params(config, name):
    t = config.tenant(name)
    out = {"tenant": name, "engine": t["engine"]}
    if t["engine"] == "sqlite":
        out["path"] = t["path"]
    else:
        out["database"] = t.get("database")
        if t.get("schema"):
            out["schema"] = t["schema"]
        out.update(connection_params(t["connection"], "tenants.%s.connection" % name if name in config["tenants"]
                                     else "connection"))
    return out


def filter_params(module, params, name):
    """Only options the engine knows; an unknown one would be a bug of ours, so say which."""
    options = getattr(module, "OPTIONS", None)
    if options is None:
        return params
    unknown = sorted(k for k in params if k not in options)
    if unknown:
        raise LifeboatError("The %s engine of this installation does not accept %s; the agent and the engine are "
                            "from different versions. Reinstall the agent's package." % (name, ", ".join(unknown)))
    return params


def globals_label(config):
    host = (config["connection"] or {}).get("login_host")
    if not host or host in ("localhost", "127.0.0.1", "::1"):
        host = os.uname()[1]
    # As pg_backup names it: a server on another port than 5432 is _globals_<host>-p<port>.
    return naming.globals_tenant(host, (config["connection"] or {}).get("login_port"))


def wants_globals(config, names):
    if config["globals"] is not None:
        return config["globals"]
    return any(config.tenant(n)["engine"] == "postgresql" for n in names)


# -- summaries the workers send back (small, secret-free) -----------------------------------

def summarize_backup(result):
    first = (result.get("artifacts") or [{}])[0]
    return {
        "skipped": bool(result.get("skipped")),
        "artifact": first.get("artifact"),
        "size_stored": first.get("size_stored"),
        "size_raw": first.get("size_raw"),
        "rows": first.get("rows"),
        "bytes": first.get("size_raw") or 0,
        "reason": first.get("reason"),
    }


def summarize_restore(result):
    return {"artifact": result.get("artifact"), "rows": result.get("rows"), "msg": result.get("msg"),
            "target": result.get("target_database") or result.get("target_path")}


def summarize_verify(result):
    tenants = result.get("tenants") or []
    report = tenants[0] if tenants else {}
    out = {"verify_status": result.get("status"), "artifact": report.get("artifact") or result.get("artifact"),
           "warnings": ",".join(report.get("warnings") or []) or None}
    if result.get("status") == "FAIL":
        fails = [c for c in report.get("checks") or [] if c.get("status") == "FAIL"]
        detail = "; ".join("%s: %s" % (c.get("name"), c.get("detail")) for c in fails)
        out["error"] = "verification FAILED: " + (detail or result.get("msg", ""))
    return out


def summarize_prune(result):
    summary = ((result.get("report") or {}).get("summary")) or {}
    out = {"deleted": len(result.get("deleted") or []), "kept": len(result.get("kept") or []),
           "bytes_deleted": summary.get("bytes_deleted")}
    skipped = result.get("skipped_tenants")
    if skipped:
        out["note"] = "; ".join(skipped.values())
    return out


def summarize_anonymize(result):
    return {"rows_scrubbed": result.get("rows_scrubbed"), "rows_to_scrub": result.get("rows_to_scrub"),
            "cutoff": result.get("cutoff"), "skipped": not result.get("changed")}


def _accepts(fn, name):
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def make_job(label, fn, params, summarize, check_mode=False, **kwargs):
    if check_mode:
        kwargs["check_mode"] = True
    return Job(label, fn, params, kwargs=kwargs, summarize=summarize, progress=_accepts(fn, "progress"))


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
            counts = {"finished": when}
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


def _figures_backup(o):
    return {k: o.info.get(k) for k in ("size_stored", "size_raw", "artifact") if o.info.get(k) is not None} \
        if o.status == "ok" else {}


def cmd_backup(args, config, log):
    engine = _engine(backup_engine, "backup", BACKUP_IMPORT_ERROR)
    config.require("repository", "to back up: the folder or s3://bucket/prefix that receives the artifacts")
    if not config.get("recipients") and not config.get("recipients_file") and not config["allow_unencrypted"]:
        raise agent_config.ConfigError(config.where, "recipients",
                                       "is required to back up (or recipients_file): the age public keys that "
                                       "artifacts are encrypted to. Database hosts hold recipients only.")
    found = find_tenants(config, log, "backup")
    names = select_tenants(config, args.tenant, "back up", found)
    common = {"repository": config["repository"], "compression_level": config["compression_level"],
              "skip_if_newer_than": config["skip_if_newer_than"], "tmp_dir": config.get("tmp_dir")}
    if config.get("recipients"):
        common["recipients"] = config["recipients"]
    if config.get("recipients_file"):
        common["recipients_file"] = config["recipients_file"]
    if config["allow_unencrypted"]:
        common["allow_unencrypted"] = True
    common.update(s3_params(config))
    common = dict((k, v) for k, v in common.items() if v is not None)
    jobs = []
    # The schema tenants of one database go in one pass (one snapshot, the shared part first).
    alone, passes = agent_pass.split_schema_tenants(names, lambda n: tenant_params(config, n))
    for name in alone:
        params = dict(common, **tenant_params(config, name))
        jobs.append(make_job(name, engine.run, filter_params(engine, params, "backup"), summarize_backup,
                             check_mode=args.check))
    for entry in passes:
        others = [t["schema"] for t in found.tenants if t.get("schema") and t.get("database") == entry["database"]
                  and t["name"] not in names]
        params = dict(common, database=entry["database"], schemas=entry["members"],
                      shared_exclude=[agent_pass.glob_literal(s) for s in others] or None, **entry["connection"])
        params = dict((k, v) for k, v in params.items() if v is not None)
        jobs.append(make_job(entry["label"], backup_pass.run, filter_params(engine, params, "backup"),
                             agent_pass.summarize_pass, check_mode=args.check))
    labels = list(alone) + [n for p in passes for n in [naming.shared_tenant(p["database"])] +
                            [m["tenant"] for m in p["members"]]]
    if wants_globals(config, names) and not args.no_globals and not args.tenant:
        params = dict(common, globals=True, **connection_params(config["connection"]))
        label = globals_label(config)
        labels.append(label)
        jobs.append(make_job(label, engine.run, filter_params(engine, params, "backup"), summarize_backup,
                             check_mode=args.check))
    # Every tenant runs in a fork of this process: ask pg_dump and pg_dumpall for their versions once, here.
    engine.postgres.warm_tool_versions(bin_dir=(config.get("connection") or {}).get("pg_bin_dir"))
    return _run_jobs(args, config, log, "backup", jobs, config["parallel"], labels, _figures_backup,
                     after=_protection(args, config, log, "backup", found, config["repository"]), passes=passes)


def find_tenants(config, log, operation):
    """Listed + discovered tenants (discovery.tenants_for_run), with the run's discovery line."""
    found = discovery.tenants_for_run(config, lambda: connection_params(config["connection"]))
    discovery.log_found(log, operation, found)
    return found


def _protection(args, config, log, operation, found, repository):
    """After a full run (not --tenant, not --check): report what is unprotected; exit 3 when anything is."""
    if args.tenant or getattr(args, "check", False):
        return None

    def after(outcomes, code):
        try:
            newest = discovery.repository_newest(open_repository(repository, create=False, **_repo_options(config)))
        except LifeboatError as e:
            newest = discovery.unreadable(e.msg)  # every tenant is then unprotected, and says why
        bad, written = discovery.report_run(config, log, operation, found, newest, outcomes)
        if code != EXIT_OK:
            return code
        if not written:
            return EXIT_FAILED
        return EXIT_UNPROTECTED if bad or found.errors else EXIT_OK
    return after


def _run_jobs(args, config, log, operation, jobs, parallel, labels, figures_of=None, start=(), after=None,
              passes=()):
    session = Session(args, config, operation, log)
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


def cmd_restore(args, config, log):
    engine = _engine(restore_engine, "restore", RESTORE_IMPORT_ERROR)
    repo = config.require("repository", "to restore: where the artifacts are")
    naming.validate_tenant(args.tenant_name, "tenant")
    params = dict(tenant_params(config, args.tenant_name), repository=repo, artifact=args.artifact)
    identity = args.identity_file or credential_path(config)
    if identity:
        params["identity_file"] = identity
    for key in ("target_database", "target_path"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.force:
        params["force"] = True
    for key in ("replace_target", "source_tenant"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.drop_replaced:
        params["keep_safety_copy"] = False
    if args.jobs:
        params["jobs"] = args.jobs
    params.update(s3_params(config))
    job = make_job(args.tenant_name, engine.run, filter_params(engine, params, "restore"), summarize_restore,
                   check_mode=args.check)
    session = Session(args, config, "restore", log)
    outcomes = session.run([job], 1)
    return session.finish(outcomes)


def identity_source(config, environ=None):
    """(path, where): systemd's credential (LoadCredential=) first, then verify.identity_file."""
    environ = os.environ if environ is None else environ
    verify = config["verify"] or {}
    name = verify.get("identity_credential") or CREDENTIAL_DEFAULT
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path, "credential"
    if verify.get("identity_file"):
        return verify["identity_file"], "file"
    return None, ("environment" if environ.get("BACKUP_PRIVATE_KEY") else None)


def credential_path(config, environ=None):
    return identity_source(config, environ)[0]


def cmd_verify(args, config, log):
    engine = _engine(verify_engine, "verify", VERIFY_IMPORT_ERROR)
    verify = config["verify"] or {}
    repository = verify.get("repository") or config.get("repository")
    if not repository:
        raise agent_config.ConfigError(config.where, "verify.repository",
                                       "is required to verify (or the top-level repository): where the artifacts are.")
    identity, source = identity_source(config)
    if not source:
        raise agent_config.ConfigError(
            config.where, "verify.identity_credential",
            "no age identity: the unit gives it with LoadCredential=%s:<file> (CREDENTIALS_DIRECTORY is %s), or set "
            "verify.identity_file. Verification decrypts, so it needs the identity; database hosts never hold it."
            % (verify.get("identity_credential") or CREDENTIAL_DEFAULT,
               os.environ.get("CREDENTIALS_DIRECTORY") or "not set"))
    common = {"repository": repository}
    if identity:
        common["identity_file"] = identity
    common.update(connection_params(verify.get("connection") or config["connection"], "verify.connection"))
    common.update(s3_params(config))
    if config.get("tmp_dir"):
        common["tmp_dir"] = config["tmp_dir"]
    if verify.get("artifact"):
        common["artifact"] = verify["artifact"]
    common.update(verify.get("options") or {})
    found = None
    if not verify.get("tenants"):
        found = find_tenants(config, log, "verify")
    if args.tenant:
        names = select_tenants(config, args.tenant, "verify")
    else:
        names = verify.get("tenants") or found.names
        if not names:
            repo = open_repository(repository, create=False, **_repo_options(config))
            names = repo.tenants()
            if not names:
                raise LifeboatError("The repository %s holds no tenant yet: nothing to verify." % repository,
                                    option="verify.repository")
    jobs = []
    for name in names:
        params = dict(common, tenant=name)
        jobs.append(make_job(name, engine.run, filter_params(engine, params, "verify"), summarize_verify,
                             check_mode=args.check))
    after = _protection(args, config, log, "verify", found, repository) if found and found.configured else None
    return _run_jobs(args, config, log, "verify", jobs, verify.get("parallel") or config["parallel"], names,
                     start=[("identity", source)], after=after)


def _repo_options(config):
    return dict((k, v) for k, v in s3_params(config).items() if k in S3_CONNECTION_OPTIONS)


def _repository_tenants(config):
    try:
        return set(open_repository(config["repository"], create=False, **_repo_options(config)).tenants())
    except LifeboatError:
        return set()


def cmd_prune(args, config, log):
    engine = _engine(prune_engine, "prune", PRUNE_IMPORT_ERROR)
    repository = config.require("repository", "to prune: where the artifacts are")
    retention = config["retention"]
    common = {"repository": repository}
    for key in ("daily", "weekly", "monthly", "yearly"):
        if retention.get(key) is not None:  # 0 keeps none by that rule, as keep_<rule>: 0 does in backup_prune
            common["keep_" + key] = retention[key]
    common.update(s3_params(config))
    common.update((config["prune"] or {}).get("options") or {})
    # Discovered tenants are rotated too (a tenant that is not discovered anymore keeps its artifacts).
    names = select_tenants(config, args.tenant, "prune", find_tenants(config, log, "prune"))
    labels = list(names)
    if wants_globals(config, names) and not args.tenant:
        labels.append(globals_label(config))
    if not args.tenant:
        # The shared parts of the databases that hold schema tenants rotate too (prune keeps the ones that
        # kept tenant artifacts name); a database never backed up in a pass has none.
        repo_tenants = _repository_tenants(config)
        labels += sorted(set(naming.shared_tenant(config.tenant(n)["database"]) for n in names
                             if config.tenant(n).get("schema")) & repo_tenants)
    jobs = [make_job(n, engine.run, filter_params(engine, dict(common, tenant=n), "prune"), summarize_prune,
                     check_mode=args.check) for n in labels]
    # Prune is metadata work: one at a time is plenty and keeps S3 requests low.
    return _run_jobs(args, config, log, "prune", jobs, 1, labels,
                     lambda o: {"deleted": o.info.get("deleted")} if o.status == "ok" else {})


def cmd_anonymize(args, config, log):
    engine = _engine(anonymize_engine, "anonymize", ANONYMIZE_IMPORT_ERROR)
    anon = config["anonymize"] or {}
    names = select_tenants(config, args.tenant, "anonymize")
    environ = {}
    if config.env.get("pii_days") is not None:
        environ["PII_DAYS"] = str(config.env["pii_days"])
    jobs, skipped = [], []
    for name in names:
        t = config.tenant(name)
        rules = (anon.get("tenant_rules") or {}).get(name) or t.get("anonymize_rules") or anon.get("rules")
        if t.get("anonymize") is False or not rules:
            skipped.append(name)
            continue
        params = dict(tenant_params(config, name), rules=rules)
        for key in ("older_than_days", "hmac_secret_file", "batch_size", "lock_timeout"):
            if anon.get(key) is not None:
                params[key] = anon[key]
        if anon.get("retention_days") is not None and config.get("repository"):
            params["retention_days"] = anon["retention_days"]
            params["repository"] = config["repository"]
        jobs.append(make_job(name, engine.run, filter_params(engine, params, "anonymize"), summarize_anonymize,
                             check_mode=args.check, environ=environ))
    for name in skipped:
        log.line([("op", "anonymize"), ("tenant", name), ("status", "skipped"),
                  ("reason", "no anonymize rules for this tenant (anonymize.rules or tenants.%s.anonymize_rules)"
                   % name)])
    if not jobs:
        raise agent_config.ConfigError(config.where, "anonymize.rules",
                                       "no tenant has anonymize rules, so there is nothing to anonymize.")
    return _run_jobs(args, config, log, "anonymize", jobs, config["parallel"], [j.label for j in jobs],
                     lambda o: {"rows_scrubbed": o.info.get("rows_scrubbed")} if o.status in ("ok", "skipped") else {})


# -- status ----------------------------------------------------------------------------------

def _verify_result(record):
    if not isinstance(record, dict):
        return None
    status = record.get("status")
    if status is None and "ok" in record:
        status = "PASS" if record["ok"] else "FAIL"
    return str(status).upper() if status is not None else None


def tenant_status(repo, name, rpo, now, state_entry=None):
    row = {"tenant": name, "rpo_seconds": rpo, "newest": None, "age_seconds": None, "rpo": "NONE",
           "verified": None, "verified_artifact": None, "verified_at": None, "last_backup_run": None,
           "last_backup_status": None}
    try:
        arts = repo.artifacts(name)
    except LifeboatError as e:
        row["error"] = e.msg
        arts = []
    complete = [a for a in arts if a["complete"]]
    if complete:
        newest = complete[-1]
        age = (now - naming.parse_stamp(newest["stamp"])).total_seconds()
        row.update(newest=newest["name"], age_seconds=int(age), rpo="OK" if age <= rpo else "LATE")
    for art in reversed(complete):
        if art.get("verify_record"):
            try:
                record = repo.read_json(name, art["verify_record"])
            except LifeboatError:
                record = None
            row.update(verified=_verify_result(record) or "UNREADABLE", verified_artifact=art["name"],
                       verified_at=(record or {}).get("checked_at") if isinstance(record, dict) else None)
            break
    if state_entry:
        row["last_backup_run"] = state_entry.get("last_run")
        row["last_backup_status"] = state_entry.get("last_status")
    return row


def cmd_status(args, config, log):
    verify = config["verify"] or {}
    repository = config.get("repository") or verify.get("repository")
    if not repository:
        raise agent_config.ConfigError(config.where, "repository", "is required to show the status of backups.")
    repo = open_repository(repository, create=False, **_repo_options(config))
    found = discovery.tenants_for_run(config, lambda: connection_params(config["connection"]))
    names = list(args.tenant or found.names or verify.get("tenants") or [])
    if not args.tenant:
        if names and wants_globals(config, names):
            names.append(globals_label(config))
        if not names:
            names = repo.tenants()
    state = agent_metrics.State(config["state_dir"]).load()
    runs = state.tenants("backup")
    now = naming.utcnow()
    rows = []
    for name in names:
        rpo = config.tenant(name)["rpo"] if not naming.is_pseudo_tenant(name) else config["rpo"]
        rows.append(tenant_status(repo, name, rpo, now, runs.get(name)))
    unprotected = discovery.status_of(found, rows, now, partial=bool(args.tenant))
    problems = [r for r in rows if r["rpo"] != "OK" or r["verified"] == "FAIL" or r.get("error")]
    others = unprotected["server_problems"]  # databases, schemas, discovery errors: no row of their own
    if args.json:
        sys.stdout.write(json.dumps({"repository": str(repo), "checked_at": naming.iso(now), "tenants": rows,
                                     "problems": len(problems) + others, "unprotected": unprotected["unprotected"],
                                     "discovery": unprotected["discovery"]}, indent=2, sort_keys=True) + "\n")
        return EXIT_LATE if problems or others else EXIT_OK

    def when(ts):
        if not ts:
            return "never"
        return "%s ago" % human_age(time.time() - ts)

    table_rows = []
    for r in rows:
        age = human_age(r["age_seconds"]) if r["age_seconds"] is not None else "-"
        rpo = "%s (%s)" % (r["rpo"], human_age(r["rpo_seconds"]))
        verified = "never"
        if r["verified"]:
            verified = r["verified"]
            if r["verified_artifact"] and r["verified_artifact"] != r["newest"]:
                verified += " (older artifact)"
        last = "-"
        if r["last_backup_status"]:
            last = "%s %s" % (r["last_backup_status"], when(r["last_backup_run"]))
        table_rows.append([r["tenant"], r["newest"] or r.get("error") or "none", age, rpo, verified, last,
                           r["found"]])
    table_rows += discovery.status_rows(unprotected)
    sys.stdout.write("repository %s, %s\n" % (repo, naming.iso(now)))
    sys.stdout.write(table(["TENANT", "NEWEST ARTIFACT", "AGE", "RPO", "LAST VERIFICATION", "LAST BACKUP RUN",
                            "FOUND"], table_rows))
    sys.stdout.write("".join(line + "\n" for line in discovery.status_lines(unprotected)))
    if problems:
        sys.stdout.write("%d tenant(s) need attention: %s\n" % (len(problems), ", ".join(r["tenant"] for r in problems)))
    return EXIT_LATE if problems or others else EXIT_OK


# -- check-config, alert -----------------------------------------------------------------------

def cmd_check_config(args, config, log):
    if args.file:
        where = os.path.basename(args.file)
        agent_config.check_document(agent_config.parse_yaml(agent_config._read(args.file, "config"), where), where)
        sys.stdout.write("%s: valid\n" % args.file)
        return EXIT_OK
    tenants = config.tenants
    sys.stdout.write("configuration valid: %s\n" % (", ".join(config.files) or "(no file)"))
    sys.stdout.write("tenants (%s): %s\n" % (config.env["path"], " ".join(tenants) or "none"))
    for name in tenants:
        t = config.tenant(name)
        where = t.get("path") or ("%s%s" % (t.get("database"), ("." + t["schema"]) if t.get("schema") else ""))
        sys.stdout.write("  %s: %s %s\n" % (name, t["engine"], where))
    for rule in config["discover"] or []:
        what = rule["pattern"] if rule["kind"] == "databases" else "%s.%s" % (rule["database"], rule["pattern"])
        sys.stdout.write("discover (%s): %s %s%s\n" % (rule["origin"], rule["kind"], what, (
            " exclude " + ",".join(rule["exclude"])) if rule["exclude"] else ""))
    for name in config["tenants"]:
        if name not in tenants:
            sys.stdout.write("warning: tenants.%s is configured in lifeboat.yml but not listed in TENANTS\n" % name)
    return EXIT_OK


def _journal_tail(unit, lines):
    if not lines or not unit:
        return []
    try:
        proc = subprocess.run(["journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return proc.stdout.splitlines()[-lines:] if proc.returncode == 0 else []


def cmd_alert(args, config, log):
    alert = config["alert"] or {}
    unit = args.unit
    host = socket.getfqdn()
    journal = _journal_tail(unit, alert.get("journal_lines", 20))
    text = "lifeboat: %s failed on %s" % (unit, host)
    timeout = alert.get("timeout") or 30
    problems = []
    delivered = []
    if alert.get("command"):
        env = dict(os.environ, LIFEBOAT_FAILED_UNIT=unit, LIFEBOAT_HOST=host, LIFEBOAT_MESSAGE=text)
        try:
            proc = subprocess.run(alert["command"], input="\n".join(journal) + "\n", text=True, env=env,
                                  timeout=timeout, capture_output=True, check=False)
            if proc.returncode != 0:
                problems.append("alert.command exited with code %d: %s" % (proc.returncode, proc.stderr.strip()[-500:]))
            else:
                delivered.append("command")
        except (OSError, subprocess.SubprocessError) as e:
            problems.append("alert.command could not run: %s" % e)
    if alert.get("webhook_url"):
        error = post_webhook(alert["webhook_url"], {"text": text, "unit": unit, "host": host,
                                                    "journal": journal, "tool_version": TOOL_VERSION}, timeout)
        if error:
            problems.append(error)
        else:
            delivered.append("webhook")
    if not alert.get("command") and not alert.get("webhook_url"):
        problems.append("no alert is configured (alert.command or alert.webhook_url in lifeboat.yml)")
    pairs = [("op", "alert"), ("unit", unit), ("delivered", ",".join(delivered) or "none")]
    if problems:
        pairs.append(("error", "; ".join(problems)))
    log.line(pairs, "err" if problems else "notice")
    return EXIT_FAILED if problems else EXIT_OK


def post_webhook(address, payload, timeout):
    """POST ``payload`` as JSON; an error text, or None when the server answered 2xx."""
    parts = urlsplit(address)
    data = json.dumps(payload).encode("utf-8")
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    try:
        conn = conn_class(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.request("POST", path, body=data, headers={
                "Content-Type": "application/json", "User-Agent": "lifeboat/%s" % TOOL_VERSION})
            code = conn.getresponse().status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        return "alert.webhook_url could not be reached: %s" % e
    if not 200 <= code < 300:
        return "alert.webhook_url answered HTTP %d" % code
    return None


# -- command line ------------------------------------------------------------------------------

def _duration_arg(value):
    try:
        seconds = naming.parse_duration(value, "--wait")
    except LifeboatError as e:
        raise argparse.ArgumentTypeError(e.msg)
    return seconds or 0


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

    p = sub.add_parser("backup", help="back up the tenants (and the server's globals)")
    p.add_argument("--tenant", action="append", help="only this tenant (repeat for more); globals are skipped")
    p.add_argument("--no-globals", action="store_true", help="do not back up the server's roles and grants")
    p.add_argument("--check", action="store_true", help="say what would be written, write nothing")
    locked(p)
    p = sub.add_parser("verify", help="restore-verify the newest artifact of each tenant into a scratch database")
    p.add_argument("--tenant", action="append")
    p.add_argument("--check", action="store_true", help="verify, but write no verify record")
    locked(p)
    p = sub.add_parser("prune", help="delete artifacts the retention policy no longer keeps")
    p.add_argument("--tenant", action="append")
    p.add_argument("--check", action="store_true", help="report what would be deleted, delete nothing")
    locked(p)
    p = sub.add_parser("anonymize", help="scrub personal data older than PII_DAYS, per the rules")
    p.add_argument("--tenant", action="append")
    p.add_argument("--check", action="store_true", help="count what would be scrubbed, change nothing")
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
        try:
            return COMMANDS[operation](args, config, log)
        finally:
            if lock is not None:
                lock.release()
    except Unavailable as e:
        log.line([("op", operation), ("status", "unavailable"), ("error", e.msg)], "err")
        return EXIT_UNAVAILABLE
    except LockBusy as e:
        log.line([("op", operation), ("status", "locked"), ("error", e.msg)], "err")
        return EXIT_LOCKED
    except agent_config.ConfigError as e:
        log.line([("op", operation), ("status", "config-error"), ("key", e.key), ("error", e.msg)], "err")
        return EXIT_CONFIG
    except LifeboatError as e:
        log.line([("op", operation), ("status", "failed"), ("error", e.msg), ("option", e.option)], "err")
        return EXIT_CONFIG if operation == "check-config" else EXIT_FAILED
    except KeyboardInterrupt:
        log.line([("op", operation), ("status", "interrupted")], "err")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
