# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the agent prints: structured lines, live progress, tables.

- One structured line per tenant on stdout, ``key=value`` pairs (logfmt),
  which the journal keeps under systemd. When stdout is the journal's stream
  (``JOURNAL_STREAM``), lines carry a syslog priority prefix (``<3>`` for a
  failure) that journald turns into the entry's priority.
- On a terminal, a live table per tenant (bytes, rate, elapsed) on stderr,
  redrawn in place; the structured lines follow once the table is final.
"""

import os
import re
import sys
import time

from . import naming

PRIORITY = {"err": 3, "warning": 4, "notice": 5, "info": 6}
_BARE = re.compile(r"^[A-Za-z0-9_./:@+,-]+$")


def human_bytes(n):
    return naming.human_size(n or 0)


def human_seconds(seconds):
    seconds = int(max(0, seconds))
    if seconds < 3600:
        return "%02d:%02d" % (seconds // 60, seconds % 60)
    return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)


def human_age(seconds):
    seconds = int(max(0, seconds))
    if seconds < 120:
        return "%ds" % seconds
    if seconds < 7200:
        return "%dm" % (seconds // 60)
    if seconds < 172800:
        return "%dh%02dm" % (seconds // 3600, (seconds % 3600) // 60)
    return "%dd%02dh" % (seconds // 86400, (seconds % 86400) // 3600)


def logfmt_value(value):
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        value = "%.3f" % value
    text = str(value)
    if text and _BARE.match(text):
        return text
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def logfmt(pairs):
    return " ".join("%s=%s" % (k, logfmt_value(v)) for k, v in pairs if v is not None)


def stdout_is_journal(environ=None, stream=None):
    environ = os.environ if environ is None else environ
    stream = sys.stdout if stream is None else stream
    value = environ.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        st = os.fstat(stream.fileno())
        dev, ino = value.split(":", 1)
        return st.st_dev == int(dev) and st.st_ino == int(ino)
    except (OSError, ValueError, AttributeError):
        return False


class Log(object):
    """Structured lines on stdout (``key=value``), with journal priorities."""

    def __init__(self, stream=None, journal=None):
        self.stream = stream or sys.stdout
        self.journal = stdout_is_journal(stream=self.stream) if journal is None else journal
        self.lines = []

    def line(self, pairs, level="info"):
        text = logfmt(pairs)
        self.lines.append(text)
        prefix = "<%d>" % PRIORITY[level] if self.journal else ""
        self.stream.write(prefix + text + "\n")
        self.stream.flush()


class Progress(object):
    """A live table on a terminal: one row per tenant, redrawn in place."""

    def __init__(self, stream, operation, every=0.2):
        self.stream = stream
        self.operation = operation
        self.every = every
        self.drawn = 0
        self.last = 0.0

    @staticmethod
    def wanted(stream=None, environ=None):
        stream = stream or sys.stderr
        environ = os.environ if environ is None else environ
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return tty and environ.get("TERM", "dumb") != "dumb"

    def rows(self, outcomes):
        width = max([len(o.label) for o in outcomes] + [6])
        out = ["%-*s  %-8s %10s %12s %8s" % (width, "TENANT", "STATE", "BYTES", "RATE", "ELAPSED")]
        for o in outcomes:
            seconds = o.seconds
            rate = (o.bytes / seconds) if seconds > 0 and o.bytes else 0
            state = o.status
            out.append("%-*s  %-8s %10s %12s %8s" % (
                width, o.label, state, human_bytes(o.bytes) if o.bytes else "-",
                (human_bytes(rate) + "/s") if rate else "-", human_seconds(seconds) if o.started else "-"))
        return out

    def update(self, outcomes, final=False):
        now = time.monotonic()
        if not final and now - self.last < self.every:
            return
        self.last = now
        lines = self.rows(outcomes)
        buf = []
        if self.drawn:
            buf.append("\x1b[%dA" % self.drawn)
        for line in lines:
            buf.append("\r\x1b[2K" + line + "\n")
        self.stream.write("".join(buf))
        self.stream.flush()
        self.drawn = len(lines)


def table(headers, rows):
    """A plain text table, columns padded to their widest cell."""
    cells = [list(headers)] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells) + "\n"
