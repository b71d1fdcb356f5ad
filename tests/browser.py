"""A real browser for the tests: headless Chromium (Debian's ``chromium``) driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ended by a NUL byte on
file descriptors 3 and 4), so no websocket client, port or extra package is needed.

``render(path, screenshot, expressions)`` opens a local HTML file, waits for its load event,
takes a full-page PNG screenshot and returns what the page did: every request it made, every
console error or warning, uncaught exception, log entry and failed load, the rendered text,
and the value of each JavaScript expression asked for (evaluated in the loaded page).
"""

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

SHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "screenshots")
# what a report page shows: [tenant, its verdict] per row of the tenants' table, and the timeline's lanes
REPORT_JS = {
    "tenants": "[...document.querySelectorAll('tr[data-tenant]')].map(r => [r.dataset.tenant,"
               " r.querySelector('.badge').innerText])",
    "lanes": "[...document.querySelectorAll('[data-lane]')].map(e => e.dataset.lane)",
}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1280,900", "--hide-scrollbars"]


def chromium():
    path = shutil.which("chromium")
    assert path, "chromium is missing: run `make test` (scripts/install-deps.sh test installs Debian's chromium)"
    return path


class Page(object):
    """What the page did: ``requests`` (URLs), ``problems`` (console errors and warnings, exceptions,
    log entries of level warning or error, failed loads), ``text`` (document.body.innerText) and
    ``values`` (the expressions' values)."""

    def __init__(self):
        self.requests, self.problems, self.text, self.values = [], [], "", {}


def _evaluate(cdp, session, expression):
    res = cdp.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
    assert "exceptionDetails" not in res, res
    return res["result"].get("value")


class _Cdp(object):
    def __init__(self, timeout):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="lbtest-chromium-")
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def fds():  # the protocol's fixed descriptors: the browser reads 3 and writes 4
            a, b = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(a, 3)
            os.dup2(b, 4)

        # pylint: disable-next=subprocess-popen-preexec-fn
        self.proc = subprocess.Popen([chromium()] + FLAGS + ["--user-data-dir=" + self.profile, "about:blank"],
                                     pass_fds=(3, 4), preexec_fn=fds, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf, self._id, self.events = b"", 0, []

    def send(self, method, params=None, session=None):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        return self._id

    def until(self, wanted):
        """The first message ``wanted(message)`` accepts; the others are kept in ``events``."""
        end = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if wanted(msg):
                    return msg
                self.events.append(msg)
            left = end - time.monotonic()
            assert left > 0, "chromium did not answer within %s s" % self.timeout
            if select.select([self._read], [], [], left)[0]:
                data = os.read(self._read, 1 << 20)
                assert data, "chromium closed the DevTools pipe: %s" % self.proc.stderr.read()[-2000:]
                self._buf += data

    def call(self, method, params=None, session=None):
        ident = self.send(method, params, session)
        msg = self.until(lambda m: m.get("id") == ident)
        assert "error" not in msg, "%s: %s" % (method, msg["error"])
        return msg["result"]

    def close(self):
        try:
            self.send("Browser.close")
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        os.close(self._write)
        os.close(self._read)
        shutil.rmtree(self.profile, ignore_errors=True)


def _problems(events):
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params") or {}
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            out.append("console.%s: %s" % (p["type"], " ".join(str(a.get("value", a.get("description"))) for a in p["args"])))
        elif method == "Runtime.exceptionThrown":
            out.append("exception: %s" % p["exceptionDetails"].get("text"))
        elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append("log %s: %s" % (p["entry"]["level"], p["entry"]["text"]))
        elif method == "Network.loadingFailed":
            out.append("failed load: %s" % p.get("errorText"))
    return out


def render(path, screenshot, expressions=None, timeout=30):
    """Open ``path`` (a local HTML file) in headless Chromium, write a full-page PNG to ``screenshot``;
    ``expressions``: ``{name: JavaScript expression}`` evaluated in the loaded page."""
    cdp = _Cdp(timeout)
    try:
        target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(domain + ".enable", None, session)
        cdp.events = []
        cdp.call("Page.navigate", {"url": "file://" + os.path.abspath(str(path))}, session)
        cdp.until(lambda m: m.get("method") == "Page.loadEventFired")
        page = Page()
        page.text = _evaluate(cdp, session, "document.body.innerText")
        page.values = dict((name, _evaluate(cdp, session, js)) for name, js in (expressions or {}).items())
        shot = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
        with open(str(screenshot), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        _evaluate(cdp, session, "1")  # a last round trip: what the page sent before it is in cdp.events
        page.requests = [e["params"]["request"]["url"] for e in cdp.events if e.get("method") == "Network.requestWillBeSent"]
        page.problems = _problems(cdp.events)
        return page
    finally:
        cdp.close()


def open_report(html_path, screenshot):
    """Open a drill or dr_restore HTML report; assert that it loaded with no problem, fetched
    nothing but itself and drew something; keep its screenshot (a path, or a name in
    build/screenshots/)."""
    shot = screenshot if os.path.isabs(str(screenshot)) else os.path.join(SHOTS, screenshot)
    if not os.path.isdir(os.path.dirname(shot)):
        os.makedirs(os.path.dirname(shot))
    page = render(html_path, shot, REPORT_JS)
    assert page.problems == [], page.problems
    assert page.requests == ["file://" + os.path.abspath(str(html_path))], page.requests
    assert os.path.getsize(shot) > 20000, "a blank page? %s" % shot
    return page
