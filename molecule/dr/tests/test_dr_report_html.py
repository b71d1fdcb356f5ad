"""The HTML page dr_restore.yml wrote beside its JSON report, opened in headless Chromium on
the controller (tests/browser.py): it loads with no console error and no request but itself,
shows every tenant and the phases of the rebuild. Its screenshot is kept as
build/molecule/dr/dr-report.png, the scenario's CI artifact.
"""

import os
import sys

import lbmolecule
from test_dr import TENANTS

SCENARIO_DIR = os.path.join(lbmolecule.ROOT, "build", "molecule", "dr")
sys.path.insert(0, os.path.join(lbmolecule.ROOT, "tests"))

import browser  # noqa: E402  pylint: disable=wrong-import-position

PHASES = ["provisioning", "selection", "restore", "migrations", "health checks", "timers"]


def test_the_html_report_opens_in_a_browser_and_shows_every_tenant_and_phase(report):
    folder = os.path.join(SCENARIO_DIR, "reports")
    pages = sorted(n for n in os.listdir(folder) if n.startswith("dr_restore-") and n.endswith(".html"))
    assert len(pages) == 1, pages
    page = browser.open_report(os.path.join(folder, pages[0]), os.path.join(SCENARIO_DIR, "dr-report.png"))
    tenants = sorted(r["tenant"] for r in report["rows"] if r["what"] == "tenant")
    assert sorted(t for t, _verdict in page.values["tenants"]) == tenants == sorted(TENANTS), page.values
    assert [p["name"] for p in report["timeline"][0]["phases"]] == PHASES, report["timeline"]
    for lane in PHASES + ["globals", "bundle acme-config"] + ["tenant " + t for t in TENANTS]:
        assert lane in page.values["lanes"], page.values["lanes"]
