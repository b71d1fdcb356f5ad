"""The report filters of the fleet playbooks (plugins/filter/report.py): the table every
summary prints, what dr_restore chooses and reports per tenant, and a drill's row."""

import datetime
import random
import sys

import jinja2
import pytest

import lbtest

sys.path.insert(0, str(lbtest.COLLECTIONS))  # the filter imports the engine's naming through the collection

from ansible_collections.lifeboat.backup.plugins.filter import report  # noqa: E402  pylint: disable=wrong-import-position

# The table as the playbooks printed it before the filter (playbooks/templates/lifeboat_table.j2): the filter must
# print the very same text.
TABLE_J2 = """\
{%- set widths = [] -%}
{%- for c in __table_columns -%}
{%-   set cells = __table_rows | map(attribute=c.key, default='') | map('string') | map('length') | list -%}
{%-   set _ = widths.append(([c.title | length] + cells) | max) -%}
{%- endfor -%}
{%- set lines = [] -%}
{%- set cols = [] -%}
{%- for c in __table_columns -%}{%- set _ = cols.append(c.title.ljust(widths[loop.index0])) -%}{%- endfor -%}
{%- set _ = lines.append(cols | join('  ') | trim) -%}
{%- set dashes = [] -%}
{%- for w in widths -%}{%- set _ = dashes.append('-' * w) -%}{%- endfor -%}
{%- set _ = lines.append(dashes | join('  ')) -%}
{%- for r in __table_rows -%}
{%-   set cells = [] -%}
{%-   for c in __table_columns -%}{%- set _ = cells.append((r[c.key] | default('', true) | string).ljust(widths[loop.index0])) -%}{%- endfor -%}
{%-   set _ = lines.append(cells | join('  ') | trim) -%}
{%- endfor -%}
{{ lines | join('\\n') }}"""

COLUMNS = [{"key": "host", "title": "HOST"}, {"key": "tenant", "title": "TENANT"}, {"key": "seconds", "title": "SECONDS"},
           {"key": "status", "title": "STATUS"}]


def test_table_lines_up_columns_and_underlines_the_titles():
    rows = [{"host": "db1", "tenant": "acme", "seconds": 12.5, "status": "OK"},
            {"host": "db22", "tenant": "globex-eu", "seconds": None, "status": "FAILED"}]
    assert report.report_table(rows, COLUMNS) == [
        "HOST  TENANT     SECONDS  STATUS",
        "----  ---------  -------  ------",
        "db1   acme       12.5     OK",
        "db22  globex-eu           FAILED",
    ]


def test_table_of_no_rows_is_the_titles():
    assert report.report_table([], COLUMNS[:2]) == ["HOST  TENANT", "----  ------"]


def test_table_prints_the_same_text_as_the_template_it_replaces():
    env = jinja2.Environment()
    template = env.from_string(TABLE_J2)
    rnd = random.Random(21)
    values = [None, 0, 1, 0.0, 12.5, "", "x", "acme-20260101T030000Z.pgdump.zst.age", True, False, [], ["a"], "  lead",
              "trail  ", "a longer value than the title"]
    keys = ["a", "b", "c", "d"]
    for _round in range(2000):
        columns = [{"key": k, "title": rnd.choice(["HOST", "T", "A LONG TITLE", "X"])}
                   for k in rnd.sample(keys, rnd.randint(1, len(keys)))]
        rows = [dict((k, rnd.choice(values)) for k in rnd.sample(keys, rnd.randint(0, len(keys))))
                for _row in range(rnd.randint(0, 4))]
        expected = template.render(__table_columns=columns, __table_rows=rows).splitlines()
        assert report.report_table(rows, columns) == expected, (columns, rows)


def artifact(tenant, stamp, verified_at=None, skipped=None, version="15.4"):
    art = {"artifact": "%s-%s.pgdump.zst.age" % (tenant, stamp), "location": "/r/%s" % tenant, "stamp": stamp,
           "pg_major_needed": 15, "manifest_summary": {"source_server_version": version}}
    if verified_at:
        art["verified_at"] = verified_at
    if skipped is not None:
        art["skipped"] = skipped
    return art


INFO = {"tenants": {
    "acme": {"latest_verified": artifact("acme", "20260101T030000Z", "2026-01-02T00:00:00Z", ["a", "b"]),
             "latest": artifact("acme", "20260102T030000Z"), "latest_verified_error": None},
    "initech": {"latest_verified": None, "latest": artifact("initech", "20260102T030000Z", version=None),
                "latest_verified_error": "No verified artifact."},
    "hooli": {"latest_verified": None, "latest": None, "latest_verified_error": "No complete artifact."},
}}
TENANTS = [{"name": "acme"}, {"name": "initech", "engine": "sqlite", "path": "/srv/initech.db"}, {"name": "hooli"}]


def test_dr_choice_takes_the_newest_verified_artifact_and_says_what_it_passed_over():
    choice = report.dr_choice(TENANTS, INFO)
    assert choice["acme"] == {
        "artifact": "acme-20260101T030000Z.pgdump.zst.age", "location": "/r/acme", "verified": True,
        "verified_at": "2026-01-02T00:00:00Z", "snapshot": "20260101T030000Z", "server_version": "15.4", "pg_major": 15,
        "note": "newest verified artifact (verified 2026-01-02T00:00:00Z), 2 newer artifact(s) not verified, passed over"}
    assert choice["initech"]["artifact"] == "" and choice["initech"]["pg_major"] == 0
    assert choice["initech"]["note"] == ("No verified artifact. Or re-run with -e dr_allow_unverified=true to restore the "
                                         "newest complete artifact, unverified.")
    assert choice["hooli"]["artifact"] == "" and choice["hooli"]["note"] == "No complete artifact."


def test_dr_choice_takes_the_newest_complete_artifact_only_when_allowed():
    choice = report.dr_choice(TENANTS, INFO, allow_unverified=True)
    assert choice["initech"]["artifact"] == "initech-20260102T030000Z.pgdump.zst.age"
    assert choice["initech"]["verified"] is False and choice["initech"]["server_version"] == ""
    assert choice["initech"]["note"].startswith("NOT VERIFIED: restored the newest complete artifact")
    assert choice["hooli"]["artifact"] == ""
    verified = artifact("acme", "20260101T030000Z", "2026-01-02T00:00:00Z", [])
    one = {"tenants": {"acme": dict(INFO["tenants"]["acme"], latest_verified=verified)}}
    assert report.dr_choice([{"name": "acme"}], one)["acme"]["note"] == "newest verified artifact (verified 2026-01-02T00:00:00Z)"


def dr_inputs(globals_result):
    choice = report.dr_choice(TENANTS, INFO, allow_unverified=True)
    restores = {"results": [
        {"item": TENANTS[0], "changed": True, "artifact": "/r/acme/acme-20260101T030000Z.pgdump.zst.age", "rows": 10,
         "shared_part": {"artifact": "/r/_shared_saas/_shared_saas-20260101T030000Z.pgdump.zst.age"}},
        {"item": TENANTS[1], "changed": False, "failed": True, "msg": "Wrong key."},
    ]}
    bundles = {"results": [
        {"item": {"name": "acme", "path": "/etc/acme"}, "changed": True},
        {"item": {"name": "initech", "path": "/etc/initech"}, "failed": True, "msg": "cannot write"},
        {"item": {"name": "hooli", "path": "/etc/hooli"}, "skipped": True, "changed": False},
    ]}
    steps = [["migration", {"results": [{"item": "migrate", "changed": True, "stderr": ""},
                                        {"item": "m2", "failed": True, "stderr": "word " * 100, "msg": "non-zero"}]}],
             ["health check", {"results": [{"item": "check", "failed": True, "stderr": "", "msg": "rc 1"},
                                           {"item": "skipped", "skipped": True}]}],
             ["timer", {"skipped": True, "changed": False}]]
    return dict(host="db1", choice=choice, restores=restores, globals_result=globals_result, bundles=bundles, info=INFO,
                steps=steps, incident="2026-01-03T00:00:00Z", repository="s3://bucket/lifeboat")


def test_dr_rows_report_each_tenant_with_its_data_loss_window():
    rows = report.dr_rows(TENANTS, **dr_inputs({"skipped": True}))
    tenants = [r for r in rows if r["what"] == "tenant"]
    assert tenants[0] == {
        "host": "db1", "what": "tenant", "tenant": "acme", "artifact": "acme-20260101T030000Z.pgdump.zst.age",
        "snapshot": "20260101T030000Z", "verified_at": "2026-01-02T00:00:00Z", "server_version": "15.4",
        "rpo_seconds": 45 * 3600, "rows": 10, "status": "OK",
        "message": "newest verified artifact (verified 2026-01-02T00:00:00Z), 2 newer artifact(s) not verified, passed over"
                   "; the shared part _shared_saas-20260101T030000Z.pgdump.zst.age restored first"}
    assert tenants[1]["status"] == "FAILED" and tenants[1]["message"] == "Wrong key."
    assert tenants[1]["verified_at"] == "" and tenants[1]["rpo_seconds"] == 21 * 3600
    # nothing to restore: no restore ran, the choice's note says why
    assert tenants[2]["artifact"] == "" and tenants[2]["rpo_seconds"] is None and tenants[2]["message"] == "No complete artifact."
    assert "globals" not in [r["what"] for r in rows]


def test_dr_rows_report_the_globals_bundles_and_each_step():
    rows = report.dr_rows(TENANTS, **dr_inputs({"changed": True, "globals": {
        "artifact": "/r/_globals_db1/_globals_db1-20260101T030000Z.sql.zst.age", "roles_created": ["app", "reporting"]}}))
    by = dict(((r["what"], r["tenant"]), r) for r in rows)
    assert by[("globals", "(roles and grants)")] == {
        "host": "db1", "what": "globals", "tenant": "(roles and grants)", "status": "OK",
        "artifact": "_globals_db1-20260101T030000Z.sql.zst.age", "message": "roles created: app, reporting"}
    assert by[("bundle", "acme")]["status"] == "OK" and by[("bundle", "acme")]["message"] == "to /etc/acme"
    assert by[("bundle", "acme")]["verified_at"] == "2026-01-02T00:00:00Z"
    assert by[("bundle", "initech")]["status"] == "FAILED" and by[("bundle", "initech")]["message"] == "cannot write"
    assert by[("bundle", "hooli")]["message"] == "no complete bundle artifact hooli in s3://bucket/lifeboat"
    assert by[("migration", "migrate")]["status"] == "OK" and by[("migration", "migrate")]["message"] == ""
    long = by[("migration", "m2")]["message"]
    assert long.endswith("...") and len(long) <= 300 and long.startswith("word word")
    assert by[("health check", "check")]["message"] == "rc 1"
    assert ("health check", "skipped") not in by and "timer" not in [r["what"] for r in rows]


def test_dr_rows_report_a_failed_globals_restore():
    rows = report.dr_rows(TENANTS, **dr_inputs({"changed": False, "failed": True, "msg": "no globals artifact"}))
    row = [r for r in rows if r["what"] == "globals"][0]
    assert row["status"] == "FAILED" and row["message"] == "no globals artifact" and row["artifact"] == ""


T0 = "2026-01-03T00:00:00.000000Z"


def verify_result(status="PASS", stamp="20260102T220000Z", failed_checks=()):
    return {"tenants": [{"status": status, "artifact": "/r/acme/acme-%s.pgdump.zst.age" % stamp,
                         "failed_checks": list(failed_checks),
                         "checks": [{"name": "restore", "status": status, "seconds": 1.5, "detail": "restored"}]}],
            "records": ["/r/acme/acme-%s.verify.json" % stamp]}


def at(seconds):
    return datetime.datetime(2026, 1, 3) + datetime.timedelta(seconds=seconds)


def test_drill_row_within_budgets():
    row = report.drill_row({"name": "acme"}, verify_result(), T0, host="v1", now=at(42.34))
    assert row == {"host": "v1", "tenant": "acme", "artifact": "acme-20260102T220000Z.pgdump.zst.age",
                   "snapshot": "20260102T220000Z", "started": T0, "rto_seconds": 42.3, "rto_budget": "4h",
                   "rto_budget_seconds": 14400, "rpo_seconds": 7200, "rpo_budget": "24h", "rpo_budget_seconds": 86400,
                   "verify": "PASS", "status": "PASS", "problems": [],
                   "checks": [{"name": "restore", "status": "PASS", "seconds": 1.5}],
                   "records": ["/r/acme/acme-20260102T220000Z.verify.json"]}


def test_drill_row_over_the_tenants_own_budgets():
    row = report.drill_row({"name": "acme", "rto": "30s", "rpo": 3600}, verify_result(), T0, host="v1", rto="1h",
                           rpo="1d", now=at(31))
    assert row["rto_budget"] == "30s" and row["rpo_budget"] == "3600" and row["rpo_budget_seconds"] == 3600
    assert row["status"] == "FAIL"
    assert row["problems"] == ["RTO 31.0 s over its budget 30s", "RPO 7200 s over its budget 3600"]


@pytest.mark.parametrize("budget", ["2x", "0", "h", "1.5h"])
def test_drill_row_with_a_malformed_budget_fails(budget):
    row = report.drill_row({"name": "acme", "rpo": budget}, verify_result(), T0, host="v1", now=at(1))
    assert row["status"] == "FAIL" and row["rpo_budget_seconds"] == 0
    assert "budgets are malformed (use seconds or a number with s, m, h, d or w)" in row["problems"]


def test_drill_row_of_a_failed_verification():
    row = report.drill_row({"name": "acme"}, verify_result("FAIL", failed_checks=["rows", "checksum"]), T0, host="v1",
                           now=at(1))
    assert row["verify"] == "FAIL" and row["problems"] == ["verify FAILED: rows,checksum"]
    row = report.drill_row({"name": "acme"}, {"failed": True, "msg": "Wrong key."}, T0, host="v1", now=at(1))
    assert row["verify"] == "FAIL" and row["artifact"] == "" and row["snapshot"] == "" and row["rpo_seconds"] is None
    assert row["problems"] == ["verify FAILED: Wrong key."]
    row = report.drill_row({"name": "acme"}, {"tenants": []}, T0, host="v1", now=at(1))
    assert row["problems"] == ["verify FAILED: "]


def test_drill_row_of_a_batch_row_measures_the_tenants_own_verification():
    """backup_verify with tenants: the row's started and finished are the RTO; RPO runs to started."""
    row = dict(verify_result(), tenant="acme", failed=False, status="PASS", started="2026-01-03T00:00:10.250Z",
               finished="2026-01-03T00:00:52.600Z", seconds=42.35)
    out = report.drill_row({"name": "acme", "rto": "40s"}, row, host="v1", now=at(9999))
    assert out["started"] == "2026-01-03T00:00:10.250Z" and out["rto_seconds"] == 42.4 and out["rpo_seconds"] == 7210
    assert out["verify"] == "PASS" and out["problems"] == ["RTO 42.4 s over its budget 40s"]
    # a verification that stopped with an error is its row's message
    failed = {"tenant": "acme", "failed": True, "msg": "Wrong key.", "started": "2026-01-03T00:00:01.000Z",
              "finished": "2026-01-03T00:00:01.500Z"}
    out = report.drill_row({"name": "acme"}, failed, host="v1")
    assert out["rto_seconds"] == 0.5 and out["problems"] == ["verify FAILED: Wrong key."] and out["status"] == "FAIL"
    # a call that failed as a whole has no row: the drill's start (no fraction) is the start
    out = report.drill_row({"name": "acme"}, {"failed": True, "msg": "No python."}, "2026-01-03T00:00:00Z", host="v1",
                           now=at(3))
    assert out["rto_seconds"] == 3.0 and out["problems"] == ["verify FAILED: No python."]
    with pytest.raises(ValueError, match="started"):
        report.drill_row({"name": "acme"}, {"tenants": []}, host="v1")


def test_filters_are_registered_under_their_names():
    assert sorted(report.FilterModule().filters()) == ["dr_choice", "dr_rows", "drill_row", "human_size", "report_table"]


def test_sizes_and_seconds_look_the_same_in_every_table():
    columns = [{"key": "tenant", "title": "TENANT"}, {"key": "size", "title": "SIZE", "format": "size"},
               {"key": "seconds", "title": "SECONDS", "format": "seconds"}]
    rows = [{"tenant": "acme", "size": 112900, "seconds": 0.5}, {"tenant": "globex", "size": None, "seconds": ""},
            {"tenant": "initech", "size": 999, "seconds": 12}]
    assert report.report_table(rows, columns) == [
        "TENANT   SIZE      SECONDS",
        "-------  --------  -------",
        "acme     112.9 kB  0.50",
        "globex",
        "initech  999 B     12.00",
    ]
    assert rows[0]["size"] == 112900  # the caller's rows are not changed
    with pytest.raises(ValueError, match="unknown column format 'KB'"):
        report.report_table(rows, [{"key": "size", "title": "SIZE", "format": "KB"}])


def test_an_erased_tenant_is_an_erased_row_of_dr_restore_not_a_failed_one():
    gone = {"latest_verified": None, "latest": None, "erased": {"record": "gone-20260101T000000Z.erasure.json"},
            "latest_verified_error": "Tenant gone was erased on 2026-01-01T00:00:00Z (reference T-1, record /r/gone/"
                                     "gone-20260101T000000Z.erasure.json): there is nothing to restore."}
    info = {"tenants": dict(INFO["tenants"], gone=gone)}
    choice = report.dr_choice(TENANTS + [{"name": "gone"}], info, allow_unverified=True)
    assert choice["gone"]["artifact"] == "" and choice["gone"]["erased"] and choice["gone"]["pg_major"] == 0
    inputs = dr_inputs({"skipped": True})
    inputs.update(choice=choice, info=info)
    rows = report.dr_rows([{"name": "gone"}], **inputs)
    assert rows[0]["status"] == "ERASED" and rows[0]["message"].startswith("ERASED: Tenant gone was erased on")
