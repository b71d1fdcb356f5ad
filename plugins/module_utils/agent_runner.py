# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs one engine call per tenant in worker processes, at most N at a time.

Processes, not threads: pyrage pulls its input through Python, and one busy
Python thread beside it slows encryption down by two orders of magnitude (see
TESTING.md). Each worker is a fork of the agent that calls the engine once
and sends its progress (throttled) and its result (a small secret-free dict)
back over a queue. A worker that dies without a result is a failed tenant,
never a hung run.
"""

import multiprocessing
import os
import queue
import signal
import time
import traceback
from multiprocessing import popen_fork, queues, synchronize

from .errors import LifeboatError

# Loaded now, while the agent may still be root: once it switched to its user
# (agent.become) it may not read an interpreter installed in a private place,
# and multiprocessing imports these lazily.
PRELOADED = (popen_fork, queues, synchronize)
PROGRESS_EVERY = 0.5


class Job(object):
    """One engine call: ``fn(params, **kwargs)`` for ``label`` (a tenant)."""

    def __init__(self, label, fn, params, kwargs=None, summarize=None, progress=True):
        self.label = label
        self.fn = fn
        self.params = params
        self.kwargs = kwargs or {}
        self.summarize = summarize
        self.progress = progress


class Outcome(object):
    def __init__(self, label):
        self.label = label
        self.status = "pending"
        self.started = None
        self.finished = None
        self.bytes = 0
        self.info = {}
        self.error = None
        self.option = None

    @property
    def seconds(self):
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def ok(self):
        return self.status in ("ok", "skipped")


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


def _child(job, q):
    # SIGTERM (systemctl stop) becomes SystemExit so that the engine's
    # cleanup (abort the temporary file, drop the scratch database) runs.
    signal.signal(signal.SIGTERM, _exit_on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    last = [0.0]

    def progress(count):
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            q.put(("progress", job.label, int(count)))

    try:
        kwargs = dict(job.kwargs)
        if job.progress:
            kwargs["progress"] = progress
        result = job.fn(job.params, **kwargs)
        info = job.summarize(result) if job.summarize else {}
        # A summary with an error is a failure the engine reported as a result (a FAIL verification).
        q.put(("failed" if info.get("error") else "done", job.label, info))
    except LifeboatError as e:
        q.put(("failed", job.label, {"error": e.msg, "option": e.option}))
    except SystemExit:
        q.put(("failed", job.label, {"error": "interrupted (the run was stopped)", "option": None}))
    except BaseException as e:  # a bug: report it, with where it happened
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = " (%s:%d)" % (os.path.basename(where.filename), where.lineno) if where else ""
        q.put(("failed", job.label, {"error": "unexpected %s: %s%s" % (type(e).__name__, e, at), "option": None}))
    finally:
        q.close()
        q.join_thread()


class Runner(object):
    """Run jobs with at most ``parallel`` at a time; ``on_update`` sees every change."""

    def __init__(self, parallel=2, on_update=None, on_done=None):
        self.parallel = max(1, int(parallel))
        self.on_update = on_update
        self.on_done = on_done
        self.ctx = multiprocessing.get_context("fork")
        self.stopping = False

    def run(self, jobs):
        outcomes = dict((j.label, Outcome(j.label)) for j in jobs)
        order = [j.label for j in jobs]
        pending = list(jobs)
        running = {}
        q = self.ctx.Queue()
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._stop)
        try:
            while pending or running:
                while pending and len(running) < self.parallel and not self.stopping:
                    job = pending.pop(0)
                    proc = self.ctx.Process(target=_child, args=(job, q), name="lifeboat-%s" % job.label)
                    proc.daemon = True
                    outcome = outcomes[job.label]
                    outcome.status = "running"
                    outcome.started = time.monotonic()
                    proc.start()
                    running[job.label] = proc
                    self._update(outcomes, order)
                if self.stopping:
                    for label in [j.label for j in pending]:
                        self._finish(outcomes[label], "failed", {"error": "not started: the run was stopped"})
                    pending = []
                    for proc in running.values():
                        if proc.is_alive():
                            proc.terminate()
                try:
                    msg = q.get(timeout=0.25)
                except queue.Empty:
                    msg = None
                if msg is not None:
                    kind, label, data = msg
                    outcome = outcomes[label]
                    if kind == "progress":
                        outcome.bytes = data
                    else:
                        self._finish(outcome, "ok" if kind == "done" else "failed", data)
                        proc = running.pop(label, None)
                        if proc is not None:
                            proc.join()
                    self._update(outcomes, order)
                for label, proc in list(running.items()):
                    if not proc.is_alive():
                        # Its last message may still be in the pipe: give it a moment.
                        if self._drain(q, outcomes, label):
                            running.pop(label).join()
                            self._update(outcomes, order)
                            continue
                        proc.join()
                        running.pop(label)
                        code = proc.exitcode
                        why = ("killed by signal %d" % -code) if code is not None and code < 0 else ("exit code %s" % code)
                        self._finish(outcomes[label], "failed",
                                     {"error": "the worker process died without a result (%s)" % why})
                        self._update(outcomes, order)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            q.close()
        return [outcomes[label] for label in order]

    def _drain(self, q, outcomes, label, wait=1.0):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                kind, got, data = q.get(timeout=0.1)
            except queue.Empty:
                continue
            outcome = outcomes[got]
            if kind == "progress":
                outcome.bytes = data
                continue
            self._finish(outcome, "ok" if kind == "done" else "failed", data)
            if got == label:
                return True
        return outcomes[label].finished is not None

    def _finish(self, outcome, status, data):
        if outcome.finished is not None:
            return
        outcome.finished = time.monotonic()
        if outcome.started is None:
            outcome.started = outcome.finished
        data = dict(data or {})
        if status == "ok" and data.pop("skipped", False):
            status = "skipped"
        outcome.status = status
        outcome.error = data.pop("error", None)
        outcome.option = data.pop("option", None)
        outcome.info = data
        if data.get("bytes"):
            outcome.bytes = data["bytes"]
        if self.on_done:
            self.on_done(outcome)

    def _update(self, outcomes, order):
        if self.on_update:
            self.on_update([outcomes[label] for label in order])

    def _stop(self, signum, frame):
        self.stopping = True
