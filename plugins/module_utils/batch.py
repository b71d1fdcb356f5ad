# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many tenants in one module call: one engine call per tenant, at most ``parallel`` at a time.

The fleet playbooks hand all of a host's selected tenants to one module call (the ``tenants`` option
of pg_backup, backup_verify and backup_restore) instead of looping one task per tenant, which pays
Ansible's module start-up once per tenant. Each tenant runs in its own worker process
(``agent_runner.Runner``, as the agent does), so one tenant's failure, even a crash, is that
tenant's row and the others go on; a stopped run (SIGTERM) lets the running workers clean up and
starts no more, so every tenant is either done or untouched.

``entries(params, allowed)`` checks the list (names, unknown keys, duplicates) before anything runs;
``run(fn, jobs, ...)`` returns one dict per job, in the jobs' order: the engine's own result for that
tenant plus ``tenant``, ``failed``, ``msg`` (on failure), ``option``, ``started``, ``finished`` (UTC,
ISO 8601 with milliseconds) and ``seconds``.
"""

import datetime
import time

from . import naming
from .agent_runner import Job, Runner
from .errors import LifeboatError

# The options every list-taking module adds to its own: the list, and the bound.
SPEC = dict(
    tenants=dict(type="list", elements="dict"),
    parallel=dict(type="int", default=2),
)
# Options that are secrets (no_log) in the single call: never in an entry, whose values Ansible logs.
SECRETS = ("identity", "passphrase", "login_password")
DEFAULT_PARALLEL = 2
MAX_PARALLEL = 64


def parallel_of(params):
    """``parallel`` checked: 1 to MAX_PARALLEL."""
    value = params.get("parallel")
    value = DEFAULT_PARALLEL if value is None else value
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value > MAX_PARALLEL:
        raise LifeboatError("parallel must be a whole number from 1 to %d (got %r). Nothing was done. Give, for "
                            "example, parallel: 2 (one tenant per core is a good start)." % (MAX_PARALLEL, value),
                            option="parallel")
    return value


def entries(params, allowed, key="tenant"):
    """The ``tenants`` list, checked: each a dict with a valid, unique ``key`` and only ``allowed`` keys.

    Refused as a whole, before anything runs (an operator's typo must not back up half a host):
    the error names the entry (``tenants[3].scheme``) and what it may hold. A secret (``SECRETS``) in an
    entry is refused too: the entries are not no_log.
    """
    items = params.get("tenants")
    if not isinstance(items, list):
        raise LifeboatError("tenants must be a list of tenants, each a dict with at least %s. Nothing was done."
                            % key, option="tenants")
    for i, item in enumerate(items):
        for secret in SECRETS:
            if isinstance(item, dict) and item.get(secret) is not None:
                raise LifeboatError("tenants[%d] (%s) holds %s: a secret in a list entry would be logged (the entries "
                                    "are not no_log). Nothing was done. Give the tenant's identity file as its "
                                    "identity_file, or every identity in the call's identity option (each artifact is "
                                    "opened by the one that matches it), or identity_dir."
                                    % (i, item.get(key, "?"), "an identity" if secret == "identity" else secret),
                                    option="tenants[%d].%s" % (i, secret))
    seen = {}
    out = []
    for i, item in enumerate(items):
        where = "tenants[%d]" % i
        if not isinstance(item, dict):
            raise LifeboatError("%s is a %s, not a dict (%s: ..., and the tenant's own options). Nothing was done."
                                % (where, type(item).__name__, key), option=where)
        unknown = sorted(set(item) - set(allowed) - {key})
        if unknown:
            raise LifeboatError("%s (%s) has unknown key(s): %s. A tenant of this list may hold: %s. Nothing was "
                                "done; fix the list (a typo?) and run again."
                                % (where, item.get(key, "?"), ", ".join(unknown), ", ".join(sorted(set(allowed) | {key}))),
                                option="%s.%s" % (where, unknown[0]))
        name = item.get(key)
        if not isinstance(name, str) or not name:
            raise LifeboatError("%s has no %s. Each entry names its tenant. Nothing was done." % (where, key),
                                option="%s.%s" % (where, key))
        naming.validate_repo_tenant(name, option="%s.%s" % (where, key))
        if name in seen:
            raise LifeboatError("%s names tenant %s again (also tenants[%d]). Nothing was done; list each tenant "
                                "once." % (where, name, seen[name]), option="%s.%s" % (where, key))
        seen[name] = i
        out.append(dict((k, v) for k, v in item.items() if v is not None))
    return out


def entry_error(error, index, item, own):
    """``error`` from the single call's check of entry ``index``, as an error of the list: it names the entry's key
    (``tenants[2].max_age``) when ``own`` (the entry set the option), else the call's own option."""
    where = "tenants[%d]" % index
    return LifeboatError("%s (%s): %s Nothing was done; fix %s and run again."
                         % (where, item["tenant"], str(error).rstrip(), "that entry" if own else error.option),
                         option="%s.%s" % (where, error.option or "tenant") if own else error.option)


def first_few(rows, reason, limit=5):
    """``tenant: reason`` of the first ``limit`` rows, and how many more there are (for a module's ``msg``)."""
    shown = "; ".join("%s: %s" % (r["tenant"], reason(r)) for r in rows[:limit])
    return shown + (" (and %d more)" % (len(rows) - limit) if len(rows) > limit else "")


def common(params, drop=()):
    """The module's options without the list and the bound (and ``drop``): what every tenant shares."""
    return dict((k, v) for k, v in params.items() if k not in SPEC and k not in drop)


def _whole(result):
    return {"result": result}


def _iso_ms(wall):
    moment = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc)
    return "%s.%03dZ" % (naming.iso(moment)[:-1], moment.microsecond // 1000)


def run(fn, jobs, parallel, check_mode=False, on_done=None, state=None):
    """Run ``fn(params, check_mode=...)`` for each ``(label, params)`` of ``jobs``; one dict per job.

    A LifeboatError (or a crash, or a killed worker) is that job's ``failed: true`` with ``msg``; the
    others go on. ``on_done(row)`` sees each row as it completes (progress lines). ``state`` (a dict),
    when given, gets ``stopped``: whether the run was stopped (SIGTERM, SIGINT), for a caller that
    would start more jobs after these.
    """
    offset = time.time() - time.monotonic()
    runner_jobs = [Job(label, fn, params, kwargs={"check_mode": check_mode}, summarize=_whole, progress=False)
                   for label, params in jobs]

    def row(outcome):
        out = dict((outcome.info or {}).get("result") or {})
        out["tenant"] = out.get("tenant") or outcome.label
        out["failed"] = outcome.status == "failed"
        if outcome.status == "failed":
            out["msg"] = outcome.error or "failed (no message)"
            if outcome.option:
                out["option"] = outcome.option
        if outcome.status == "skipped":
            out["skipped"] = True
        started = outcome.started if outcome.started is not None else outcome.finished
        if started is not None:
            out["started"] = _iso_ms(started + offset)
            out["finished"] = _iso_ms((outcome.finished or started) + offset)
            out["seconds"] = out.get("seconds", round(outcome.seconds, 3))
        return out

    done = None
    if on_done is not None:
        def done(outcome):
            on_done(row(outcome))
    runner = Runner(parallel=parallel, on_done=done)
    outcomes = runner.run(runner_jobs)
    if state is not None:
        state["stopped"] = runner.stopping
    return [row(o) for o in outcomes]


def summary(rows, what="tenant(s)"):
    """One line for a module's ``msg``: how many rows failed, and the first few with their reason."""
    failed = [r for r in rows if r.get("failed")]
    if not failed:
        return "All %d %s are done." % (len(rows), what)
    return ("%d of %d %s FAILED: %s. The other %d are done; each row of the result says what happened. Fix the "
            "cause, then run again for those tenants only." % (len(failed), len(rows), what,
                                                               first_few(failed, lambda r: r.get("msg", "")),
                                                               len(rows) - len(failed)))
