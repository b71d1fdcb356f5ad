"""The shipped rules and dashboard on a real Prometheus, after real backups by the agent.

The agent (``python -m lifeboat_engine.agent``, the engine tree as its wheel has it) backs up
SQLite tenants, one of which fails, and verifies the others; Debian's node exporter serves
its textfile folder (only the textfile collector) and Debian's Prometheus scrapes it every
second with the rules of monitoring/rules, evaluated every second. Both run on free loopback
ports as plain processes of this test, stopped by pid. Every query of the dashboard must
return series, and the failed backup's alert must be pending (its ``for:`` is 5 minutes).
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

import lbtest
import monitoring

sys.path.insert(0, str(lbtest.COLLECTIONS))  # the drill's filters import the engine through the collection

# pylint: disable=wrong-import-position
from ansible_collections.lifeboat.backup.plugins.filter import monitoring as monitoring_filters  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.filter import report  # noqa: E402


class Server(object):
    """A monitoring binary on a loopback port, in its own process group, stopped by pid."""

    def __init__(self, argv, log):
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def get(url, **params):
    with urllib.request.urlopen(url + "?" + urllib.parse.urlencode(params), timeout=10) as r:
        return json.loads(r.read().decode("utf-8"))


def wait_for(what, check, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        time.sleep(0.25)


@pytest.fixture(scope="module")
def agent_metrics_dir(tmp_path_factory, keys):
    """Real runs of the agent: two tenants backed up and verified, one whose backup failed; a drill's file."""
    base = tmp_path_factory.mktemp("monitoring")
    engine = base / "engine"
    engine.mkdir()
    (engine / "lifeboat_engine").symlink_to(lbtest.ENGINE_DIR)
    metrics = base / "metrics"
    metrics.mkdir()
    tenants = {"acme": {"engine": "sqlite", "path": lbtest.sqlite_guests(base / "acme.db", 500)},
               "globex": {"engine": "sqlite", "path": lbtest.sqlite_guests(base / "globex.db", 50)},
               "broken": {"engine": "sqlite", "path": str(base / "missing.db")}}
    config = {"state_dir": str(base / "state"), "lock_file": str(base / "state" / "agent.lock"),
              "metrics_dir": str(metrics), "repository": str(base / "repo"), "recipients": [keys["public"]],
              "tenants": tenants, "rpo": "26h",
              "verify": {"identity_file": keys["identity"], "tenants": ["acme", "globex"], "budget": "8d"}}
    (base / "lifeboat.yml").write_text(json.dumps(config))
    (base / "tenants.env").write_text('TENANTS="%s"\n' % " ".join(tenants))
    env = dict(os.environ, PYTHONPATH=str(engine))
    for key in ("JOURNAL_STREAM", "CREDENTIALS_DIRECTORY", "BACKUP_PRIVATE_KEY"):
        env.pop(key, None)

    def run(*args):
        argv = [sys.executable, "-m", "lifeboat_engine.agent", "--config", str(base / "lifeboat.yml"),
                "--tenants-env", str(base / "tenants.env"), "--no-progress"] + list(args)
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    backup = run("backup")
    assert backup.returncode == 1 and "tenant=broken status=failed" in backup.stdout, backup.stdout + backup.stderr
    verify = run("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The drill's file, from drill_row over the artifacts just verified (drill.yml writes it on the controller).
    rows = []
    for name in ("acme", "globex"):
        artifact = sorted(p.name for p in (base / "repo" / name).iterdir() if ".sqlite" in p.name)[-1]
        result = {"status": "PASS", "tenants": [{"artifact": artifact, "status": "PASS"}]}
        started = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        rows.append(report.drill_row({"name": name}, result, started, host="verifier"))
    (metrics / "lifeboat_drill.prom").write_text(monitoring_filters.drill_metrics(rows))
    return metrics


@pytest.fixture(scope="module")
def prometheus(agent_metrics_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("prometheus")
    node_port, prom_port = lbtest.free_port(), lbtest.free_port()
    node = Server([monitoring.tool("prometheus-node-exporter"), "--web.listen-address=127.0.0.1:%d" % node_port,
                   "--collector.disable-defaults", "--collector.textfile", "--web.disable-exporter-metrics",
                   "--collector.textfile.directory=%s" % agent_metrics_dir], base / "node-exporter.log")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(p) for p in monitoring.RULES],
              "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": ["127.0.0.1:%d" % node_port]}]}]}
    (base / "prometheus.yml").write_text(json.dumps(config))
    prom = Server([monitoring.tool("prometheus"), "--config.file=%s" % (base / "prometheus.yml"),
                   "--storage.tsdb.path=%s" % (base / "data"), "--web.listen-address=127.0.0.1:%d" % prom_port],
                  base / "prometheus.log")
    url = "http://127.0.0.1:%d/api/v1/" % prom_port
    try:
        wait_for("Prometheus to scrape the agent's metrics", lambda: _query(url, "lifeboat_backup_status"), 60)
        wait_for("the recording rules", lambda: _query(url, "instance:lifeboat_tenants:count"), 30)
        yield url
    finally:
        prom.stop()
        node.stop()


def _query(url, expr):
    try:
        answer = get(url + "query", query=expr)
    except OSError:
        return None
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_every_dashboard_query_returns_series(prometheus):
    queries = monitoring.dashboard_queries()
    assert len(queries) >= 9
    empty = []
    for title, expr in queries:
        concrete = expr.replace("$instance", ".*").replace("$tenant", ".*")
        if not _query(prometheus, concrete):
            empty.append("%s: %s" % (title, concrete))
    assert empty == []
    states = dict((r["metric"]["state"], float(r["value"][1]))
                  for r in _query(prometheus, "sum by (state) (instance:lifeboat_tenants:count)"))
    assert states == {"protected": 2, "no-artifact": 1, "backup-failed": 1}


def test_a_failed_backup_makes_its_alert_pending(prometheus):
    def pending():
        alerts = get(prometheus + "alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "LifeboatBackupFailed"]
    alerts = wait_for("LifeboatBackupFailed", pending)
    assert [(a["labels"]["tenant"], a["state"]) for a in alerts] == [("broken", "pending")]
    assert alerts[0]["annotations"]["summary"].startswith("lifeboat backup of broken on 127.0.0.1:")
    firing = [a["labels"]["alertname"] for a in get(prometheus + "alerts")["data"]["alerts"]]
    assert "LifeboatBackupOlderThanRPO" not in firing and "LifeboatVerifyFailed" not in firing
