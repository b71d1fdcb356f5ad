# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``lifeboat alert UNIT`` (systemd's OnFailure=): the journal's tail to a command, and a webhook."""

import http.client
import json
import os
import socket
import subprocess

from urllib.parse import urlsplit

from ..version import TOOL_VERSION
from .session import EXIT_FAILED, EXIT_OK


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
