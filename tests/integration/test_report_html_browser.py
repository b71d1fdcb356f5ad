"""The HTML report of a real drill, opened in a real browser: headless Chromium
(tests/browser.py) loads the page drill.yml wrote, with no console error, no failed load and
no request but the file itself, and shows every tenant with its verdict. The screenshot is
kept in build/screenshots/ for a person to look at. (The page of a real rebuild is opened
the same way by test_playbooks.py's dr_restore test, which already pays for that rebuild.)"""

import glob
import json
import os
import subprocess

import pytest

import browser
import lbtest

PLAYBOOKS = lbtest.ROOT / "playbooks"


def playbook(name, inventory, *extra):
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / ("%s.yml" % name))] + list(extra)
    return subprocess.run(argv, capture_output=True, text=True, env=lbtest.ansible_env({"ANSIBLE_PIPELINING": "1"}),
                          check=False, cwd=str(lbtest.ROOT))


def newest(base, kind, ext):
    found = sorted(glob.glob(str(base / "reports" / ("%s-*.%s" % (kind, ext)))))
    assert found, "no %s report in %s" % (kind, base / "reports")
    return found[-1]


@pytest.fixture
def drilled(pg, keys, tmp_path):
    """Three tenants backed up by backup.yml, then drilled by drill.yml: rhinitech's budget (rpo: 1s) fails."""
    pg.psql("DROP DATABASE IF EXISTS rhacme")
    pg.psql("CREATE DATABASE rhacme")
    pg.psql("CREATE TABLE guests AS SELECT i AS id, 'Guest ' || i AS name FROM generate_series(1, 200) i", db="rhacme")
    lbtest.sqlite_guests(tmp_path / "rhglobex.db", 50)
    lbtest.sqlite_guests(tmp_path / "rhinitech.db", 30)
    tenants = [{"name": "rhacme", "engine": "postgresql", "database": "rhacme"},
               {"name": "rhglobex", "engine": "sqlite", "path": str(tmp_path / "rhglobex.db")},
               {"name": "rhinitech", "engine": "sqlite", "path": str(tmp_path / "rhinitech.db"), "rpo": "1s"}]
    inv = lbtest.write_fleet_inventory(tmp_path, "inventory", tenants, {
        "lifeboat_repository": str(tmp_path / "repository"), "lifeboat_recipients": [keys["public"]],
        "lifeboat_identity_file": keys["identity"], "lifeboat_report_dir": str(tmp_path / "reports"),
        "lifeboat_connection": pg.login})
    backup = playbook("backup", inv)
    assert backup.returncode == 0, backup.stdout[-3000:]
    drill = playbook("drill", inv)
    assert drill.returncode != 0 and "1 of 3 tenant(s) FAILED the drill" in drill.stdout, drill.stdout[-3000:]
    yield {"base": tmp_path, "tenants": [t["name"] for t in tenants]}
    pg.psql("DROP DATABASE IF EXISTS rhacme")


def test_the_drill_report_opens_in_a_browser_and_shows_every_tenant(drilled):
    base = drilled["base"]
    report = json.load(open(newest(base, "drill", "json")))
    html_path = newest(base, "drill", "html")
    assert html_path[:-len(".html")] == newest(base, "drill", "json")[:-len(".json")]  # beside its JSON report
    assert oct(os.stat(html_path).st_mode & 0o777) == "0o600"
    page = browser.open_report(html_path, "drill-report.png")
    # every tenant of the JSON report is a row of the page, with the same verdict, and a lane of the timeline
    expected = [[t["tenant"], "\u2714 PASS" if t["status"] == "PASS" else "\u2718 FAIL"] for t in report["tenants"]]
    assert sorted(page.values["tenants"]) == sorted(expected) and len(expected) == 3, page.values
    assert dict(page.values["tenants"])["rhinitech"] == "\u2718 FAIL"
    assert sorted(page.values["lanes"]) == sorted(drilled["tenants"])
    for name in drilled["tenants"]:
        assert name in page.text
    # the verification it rests on: each tenant's checks and the verify record this drill wrote
    assert "rhacme-" in page.text and ".verify.json" in page.text and "row_counts" in page.text
    assert "RPO" in page.text and "over its budget 1s" in page.text


def test_the_browser_check_catches_what_a_broken_page_does(tmp_path):
    """The checks above can fail: a page with a script error, a console error, a missing
    image and a request to the network is caught by each of them."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>bad</title></head><body><p>x</p>'
                   '<img src="missing.png"><img src="http://127.0.0.1:9/x.png">'
                   '<script>console.error("boom"); undefinedFunction();</script></body></html>')
    page = browser.render(bad, tmp_path / "bad.png", browser.REPORT_JS)
    assert page.values["tenants"] == []
    assert "console.error: boom" in page.problems, page.problems
    assert any(p.startswith("exception: Uncaught") for p in page.problems), page.problems
    assert any("ERR_FILE_NOT_FOUND" in p for p in page.problems), page.problems
    assert "http://127.0.0.1:9/x.png" in page.requests, page.requests
