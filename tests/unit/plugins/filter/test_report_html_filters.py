"""The HTML report's filters (plugins/filter/report_html.py): dr_restore's timeline of a host
from the times it noted and what each phase registered, budgets in seconds, and the page."""

import sys

import pytest

import lbtest

sys.path.insert(0, str(lbtest.COLLECTIONS))  # the filter imports the engine through the collection

from ansible_collections.lifeboat.backup.plugins.filter import report_html  # noqa: E402  pylint: disable=wrong-import-position

START = "2026-01-03T00:10:00Z"
MARKS = [["provisioning", "2026-01-03T00:11:00.250000Z"], ["selection", "2026-01-03T00:11:03.250000Z"],
         ["restore", "2026-01-03T00:11:40.000000Z"], ["migrations", "2026-01-03T00:11:41.000000Z"],
         ["health checks", "2026-01-03T00:11:42.500000Z"], ["timers", "2026-01-03T00:11:43.000000Z"]]
RESULTS = {
    "restore": [
        ["pre-check", {"results": [{"item": {"name": "acme"}, "changed": True, "seconds": 0.75},
                                   {"item": {"name": "globex"}, "changed": False, "seconds": 0.5}]}],
        ["globals", {"changed": True, "seconds": 2.5}],
        ["tenant", {"results": [{"item": {"name": "acme"}, "changed": True, "seconds": 20.25},
                                {"item": {"name": "globex"}, "failed": True, "msg": "Wrong key.", "seconds": 0.5}]}],
        ["bundle", {"results": [{"item": {"name": "acme-config", "path": "/etc/acme"}, "skipped": True}]}]],
    "migrations": [["migration", {"results": [], "skipped": False, "changed": False}]],
    "health checks": [["health check", {"results": [
        {"item": "test -s /srv/app/initech.db", "rc": 0, "delta": "0:00:00.003456"},
        {"item": "curl -f http://localhost/health", "rc": 7, "failed": True, "delta": "1:02:03.5"}]}]],
    "timers": [["timer", {"skipped": True, "changed": False}]],
}
INFO = {"tenants": {"acme": {"latest_verified": {"verify_record": "/r/acme/acme-20260102T220000Z.verify.json",
                                                 "verify_status": "PASS", "verified_at": "2026-01-02T23:00:00Z"}},
                    "globex": {"latest_verified": None}}}


def test_each_phase_starts_where_the_previous_ended():
    timeline = report_html.dr_timeline(MARKS, "db1", START, RESULTS, [{"name": "acme"}], INFO)
    phases = timeline["phases"]
    assert [p["name"] for p in phases] == [m[0] for m in MARKS]
    assert phases[0]["started"] == "2026-01-03T00:10:00.000000Z" and phases[0]["seconds"] == 60.25
    for before, after in zip(phases, phases[1:]):
        assert after["started"] == before["finished"]
    assert [p["seconds"] for p in phases[1:]] == [3.0, 36.75, 1.0, 1.5, 0.5]


def test_a_phase_takes_its_status_and_items_from_what_its_tasks_registered():
    by = dict((p["name"], p) for p in report_html.dr_timeline(MARKS, "db1", START, RESULTS, [], INFO)["phases"])
    # a phase whose tasks registered nothing here
    assert by["provisioning"]["status"] == "OK" and by["provisioning"]["items"] == []
    assert by["selection"]["status"] == "OK" and by["selection"]["items"] == []
    # each item of each task, in order, with its kind; a failed one fails the phase; skipped ones are left out
    assert by["restore"]["status"] == "FAILED"
    assert by["restore"]["items"] == [
        {"kind": "pre-check", "name": "acme", "seconds": 0.75, "status": "OK"},
        {"kind": "pre-check", "name": "globex", "seconds": 0.5, "status": "OK"},
        {"kind": "globals", "name": "globals", "seconds": 2.5, "status": "OK"},
        {"kind": "tenant", "name": "acme", "seconds": 20.25, "status": "OK"},
        {"kind": "tenant", "name": "globex", "seconds": 0.5, "status": "FAILED"}]
    # nothing to do: an empty loop, or every task skipped
    assert by["migrations"]["status"] == "SKIPPED" and by["migrations"]["items"] == []
    assert by["timers"]["status"] == "SKIPPED"
    # a command's seconds are its delta
    assert by["health checks"]["status"] == "FAILED" and by["health checks"]["items"] == [
        {"kind": "health check", "name": "test -s /srv/app/initech.db", "seconds": 0.003456, "status": "OK"},
        {"kind": "health check", "name": "curl -f http://localhost/health", "seconds": 3723.5, "status": "FAILED"}]


def test_each_tenant_gets_its_rpo_budget_and_the_verify_record_restored():
    tenants = [{"name": "acme", "rpo": "1h"}, {"name": "globex"}, {"name": "hooli", "rpo": "2x"}]
    timeline = report_html.dr_timeline([], "db1", START, {}, tenants, INFO, rpo="26h")
    assert timeline["host"] == "db1" and timeline["started"] == START and timeline["phases"] == []
    assert timeline["tenants"] == [
        {"tenant": "acme", "rpo_budget": "1h", "rpo_budget_seconds": 3600,
         "verify_record": "/r/acme/acme-20260102T220000Z.verify.json", "verify_status": "PASS",
         "verified_at": "2026-01-02T23:00:00Z"},
        {"tenant": "globex", "rpo_budget": "26h", "rpo_budget_seconds": 93600, "verify_record": "", "verify_status": "",
         "verified_at": ""},
        {"tenant": "hooli", "rpo_budget": "2x", "rpo_budget_seconds": 0, "verify_record": "", "verify_status": "",
         "verified_at": ""}]


@pytest.mark.parametrize("budget, seconds", [(3600, 3600), ("90", 90), ("90s", 90), ("30m", 1800), ("4h", 14400),
                                             ("2d", 172800), ("1w", 604800), ("1.5h", 0), ("2x", 0), ("", 0), (None, 0)])
def test_budgets_in_seconds(budget, seconds):
    assert report_html.duration_seconds(budget) == seconds


def test_the_page_filter_renders_the_report():
    report = {"kind": "drill", "started": "", "finished": "", "status": "PASS", "tenants": []}
    page = report_html.report_html(report)
    assert page.startswith("<!DOCTYPE html>") and "Restore drill report" in page


def test_filters_are_registered_under_their_names():
    assert sorted(report_html.FilterModule().filters()) == ["dr_timeline", "duration_seconds", "report_html"]
