"""Helpers for the Molecule scenarios' testinfra tests (molecule/*/tests).

Hosts are reached with testinfra's podman:// backend (``podman exec``), which
is about twice as fast as going through Ansible.
"""

import json
import os
import re
import shlex
import subprocess
import time

import testinfra

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT = "/opt/lifeboat/venv/bin/lifeboat"
METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$')


def host(name):
    return testinfra.get_host("podman://%s" % name)


def sh(h, command, ok=True):
    """Run ``command`` (a string for sh -c) on host ``h``; assert success unless ok is False."""
    res = h.run(command)
    if ok:
        assert res.rc == 0, "%s failed (rc %d):\n%s\n%s" % (command, res.rc, res.stdout, res.stderr)
    return res


def unit_property(h, unit, prop):
    return sh(h, "systemctl show -p %s --value %s" % (prop, shlex.quote(unit))).stdout.strip()


def journal(h, unit, since_cursor=None):
    """The unit's journal lines (message text only), optionally after a cursor."""
    cmd = "journalctl --no-pager -o cat -u %s" % shlex.quote(unit)
    if since_cursor:
        cmd += " --after-cursor=%s" % shlex.quote(since_cursor)
    return sh(h, cmd).stdout.splitlines()


def journal_json(h, unit):
    out = sh(h, "journalctl --no-pager -o json -u %s" % shlex.quote(unit)).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def cursor(h):
    out = sh(h, "journalctl --no-pager -n 1 -o json").stdout.strip().splitlines()
    return json.loads(out[-1])["__CURSOR"] if out else None


def logfmt(line):
    """key=value pairs of one agent line (values may be double-quoted)."""
    pairs = {}
    for m in re.finditer(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        value = m.group(2)
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        pairs[m.group(1)] = value
    return pairs


def agent_lines(lines, op):
    return [logfmt(line) for line in lines if line.startswith("op=%s " % op)]


def metrics(h, path):
    """Parse a textfile: {(name, labels-string): value}; asserts every line is well-formed."""
    text = h.file(path).content_string
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = METRIC_LINE.match(line)
        assert m, "malformed metrics line in %s: %r" % (path, line)
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))


def podman_cp(container, path, dest):
    subprocess.run(["podman", "cp", "%s:%s" % (container, path), dest], check=True, capture_output=True)
    return dest


def controller_env():
    return dict(os.environ)
