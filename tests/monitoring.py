"""What the monitoring tests share: the shipped rules and dashboard, the textfile parser.

``monitoring/`` holds the Prometheus rules and the Grafana dashboard that ship with the
collection; tests/unit/test_monitoring_rules.py runs ``promtool`` on them with series the
agent's own writer produced, tests/integration/test_monitoring_e2e.py a real Prometheus
scraping a real node exporter.
"""

import json
import re
import shutil

import pytest
import yaml

import lbtest

MONITORING = lbtest.ROOT / "monitoring"
RULES = sorted((MONITORING / "rules").glob("*.yml"))
DASHBOARD = MONITORING / "dashboards" / "lifeboat.json"

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def tool(name):
    """A Debian monitoring binary; `make test` installs it (scripts/install-deps.sh)."""
    path = shutil.which(name)
    if not path:
        pytest.fail("%s is missing: run `make test` (scripts/install-deps.sh installs prometheus and "
                    "prometheus-node-exporter)." % name)
    return path


def parse_textfile(text):
    """{(name, ((label, value), ...)): float} of a node_exporter textfile."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                              for k, v in LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def series_name(name, labels):
    body = ",".join('%s="%s"' % (k, v.replace("\\", "\\\\").replace('"', '\\"')) for k, v in labels)
    return "%s{%s}" % (name, body)


def alert_rules():
    """{alertname: rule} of the shipped alerting rules."""
    out = {}
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    out[rule["alert"]] = rule
    return out


def dashboard_queries():
    """[(panel title, expr)] of every panel target of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets") or []:
            out.append((panel["title"], target["expr"]))
    return out
