# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Byte streams handed from one thread to another in memory, within one byte budget.

A ``Spool`` is written by a producer thread (``put``, then ``finish`` or ``fail``) and read
like a file by a consumer thread (``read(n)``, ``b""`` at its end). Every spool of a
``Budget`` shares its limit: a producer that would go past it waits until the consumer has
read enough, so a stream larger than the budget simply streams (the producer runs at the
consumer's pace), and small streams are read ahead up to the budget. A consumer that gives
a spool up (``abandon``) lets its producer go on: what it still puts is dropped. ``Budget.stop``
wakes every waiting thread: the producer's ``put`` then raises ``Stopped``.
"""

import collections
import threading


class Stopped(Exception):
    """The budget was stopped while a producer waited (the consumer is gone)."""


class Budget(object):
    def __init__(self, limit):
        self.limit = max(1, int(limit))
        self.used = 0
        self.peak = 0
        self.stopped = False
        self.cond = threading.Condition()

    def stop(self):
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


class Spool(object):
    def __init__(self, name, budget):
        self.name = name
        self.budget = budget
        self._chunks = collections.deque()
        self._done = False
        self._error = None
        self._abandoned = False
        self.warnings = None  # what the producer has to say besides the bytes (a tool's messages)

    # -- the producer ------------------------------------------------------------------------------

    def put(self, chunk):
        """Queue ``chunk`` (bytes); waits while the budget is full (unless nothing is queued at all)."""
        if not chunk:
            return
        b = self.budget
        with b.cond:
            while not self._abandoned and not b.stopped and b.used and b.used + len(chunk) > b.limit:
                b.cond.wait()
            if b.stopped:
                raise Stopped()
            if self._abandoned:
                return
            self._chunks.append(chunk)
            b.used += len(chunk)
            b.peak = max(b.peak, b.used)
            b.cond.notify_all()

    def finish(self):
        with self.budget.cond:
            self._done = True
            self.budget.cond.notify_all()

    def fail(self, error):
        """The stream ends with ``error``: the consumer's next read past what is queued raises it."""
        with self.budget.cond:
            self._error = error
            self._done = True
            self.budget.cond.notify_all()

    # -- the consumer ------------------------------------------------------------------------------

    def readable(self):
        return True

    def read(self, size=-1):
        b = self.budget
        with b.cond:
            while not self._chunks and not self._done and not b.stopped:
                b.cond.wait()
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                if b.stopped and not self._done:
                    raise Stopped()
                return b""
            chunk = self._chunks.popleft()
            if size is not None and 0 <= size < len(chunk):
                self._chunks.appendleft(chunk[size:])
                chunk = chunk[:size]
            b.used -= len(chunk)
            b.cond.notify_all()
            return chunk

    def abandon(self):
        """The consumer will read no more: what is queued is dropped and the producer is not held up."""
        b = self.budget
        with b.cond:
            self._abandoned = True
            b.used -= sum(len(c) for c in self._chunks)
            self._chunks.clear()
            b.cond.notify_all()
