"""The HTML page of the drill and dr_restore reports (report_html.render): escaped everywhere,
every tenant shown, a measure over its budget shown as FAIL in words, hosts and phases
without a timeline said so, and nothing the page would fetch."""

import html.parser
import re

import pytest

from lifeboat_engine import report_html

# What a tenant's, host's or message's text may hold (the tenant pattern forbids it today; the page must not care).
NASTY = 'in<i>tech & "co" \'x\' </td><script>alert(1)</script>'
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "dl", "dt", "dd", "div", "span", "p", "ul",
        "li", "table", "thead", "tbody", "tr", "th", "td", "section", "br"}


class Parsed(html.parser.HTMLParser):
    """The page as a browser's parser sees it: tags, attributes and text."""

    def __init__(self, page):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text, self.in_style = set(), [], [], False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.extend(attrs)
        self.in_style = tag == "style"

    def handle_endtag(self, tag):
        self.in_style = False

    def handle_data(self, data):
        if not self.in_style:
            self.text.append(data)

    def values(self, name):
        return [v for k, v in self.attrs if k == name]

    def words(self):
        return " ".join(" ".join(self.text).split())


def drill_row(tenant, host="verifier1", status="PASS", rto=12.5, rto_budget=("4h", 14400), rpo=7200,
              rpo_budget=("24h", 86400), problems=(), started="2026-01-03T00:00:01.000000Z"):
    return {"host": host, "tenant": tenant, "artifact": "%s-20260102T220000Z.pgdump.zst.age" % tenant,
            "snapshot": "20260102T220000Z", "started": started, "rto_seconds": rto, "rto_budget": rto_budget[0],
            "rto_budget_seconds": rto_budget[1], "rpo_seconds": rpo, "rpo_budget": rpo_budget[0],
            "rpo_budget_seconds": rpo_budget[1], "verify": "PASS", "status": status, "problems": list(problems),
            "checks": [{"name": "decrypt", "status": "PASS", "seconds": 2.0},
                       {"name": "restore", "status": "PASS", "seconds": 6.0}],
            "records": ["/r/%s/%s-20260102T220000Z.verify.json" % (tenant, tenant)]}


def drill(rows, status="PASS"):
    return {"kind": "drill", "started": "2026-01-03T00:00:00Z", "finished": "2026-01-03T00:01:00Z", "status": status,
            "tenants": rows}


def dr(rows, timeline, rto=720, budget=("4h", 14400), status="OK"):
    return {"kind": "dr_restore", "incident": "2026-01-03T00:00:00Z", "started": "2026-01-03T00:10:00Z",
            "finished": "2026-01-03T00:12:00Z", "rto_seconds": rto, "run_seconds": 120, "rto_budget": budget[0],
            "rto_budget_seconds": budget[1], "status": status, "rows": rows, "timeline": timeline}


def dr_tenant(tenant, host="db1", status="OK", rpo=7200):
    return {"host": host, "what": "tenant", "tenant": tenant, "artifact": "%s-20260102T220000Z.pgdump.zst.age" % tenant,
            "snapshot": "20260102T220000Z", "verified_at": "2026-01-02T23:00:00Z", "server_version": "15.8",
            "rpo_seconds": rpo, "rows": 350, "status": status, "message": "newest verified artifact"}


def phase(name, start, seconds, status="OK", items=()):
    return {"name": name, "started": "2026-01-03T00:%02d:%02d.000000Z" % (10 + start // 60, start % 60),
            "finished": "", "seconds": seconds, "status": status, "items": list(items)}


def host_timeline(host, tenants, rpo_budget=("24h", 86400), phases=None):
    if phases is None:
        phases = [phase("provisioning", 0, 60), phase("globals", 60, 3),
                  phase("restore", 63, 30, items=[{"kind": "tenant", "name": t, "seconds": 10.0, "status": "OK"}
                                                  for t in tenants]),
                  phase("timers", 93, 2, items=[{"kind": "timer", "name": "lifeboat-backup.timer", "seconds": None,
                                                 "status": "OK"}])]
    return {"host": host, "started": "2026-01-03T00:10:00Z", "phases": phases,
            "tenants": [{"tenant": t, "rpo_budget": rpo_budget[0], "rpo_budget_seconds": rpo_budget[1],
                         "verify_record": "s3://b/p/%s/%s-20260102T220000Z.verify.json" % (t, t), "verify_status": "PASS",
                         "verified_at": "2026-01-02T23:00:00Z"} for t in tenants]}


def tenant_cells(page):
    """{tenant: the text of its row}, as the parser reads the page."""
    out = {}
    for chunk in page.split('<tr data-tenant="')[1:]:
        name = html.unescape(chunk[:chunk.index('"')])
        out[name] = Parsed(chunk[chunk.index(">") + 1:chunk.index("</tr>")]).words()
    return out


# -- escaping ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("report", [
    drill([drill_row(NASTY, host=NASTY, problems=[NASTY], status="FAIL")], status="FAIL"),
    dr([dr_tenant(NASTY, host=NASTY),
        {"host": NASTY, "what": "health check", "tenant": NASTY, "artifact": "", "status": "FAILED", "message": NASTY}],
       [dict(host_timeline(NASTY, [NASTY]),
             phases=[phase(NASTY, 0, 5, items=[{"kind": NASTY, "name": NASTY, "seconds": 1, "status": "OK"}])])]),
], ids=["drill", "dr_restore"])
def test_every_text_from_the_report_is_escaped(report):
    page = report_html.render(report)
    parsed = Parsed(page)
    # the parser sees only the page's own tags: nothing the tenant name holds became markup
    assert parsed.tags <= TAGS, parsed.tags - TAGS
    assert "<i>" not in page and "<script>" not in page and "</td><script" not in page
    # and reads every text back exactly as the report had it
    assert NASTY in parsed.words()
    assert NASTY in parsed.values("data-tenant") and NASTY in parsed.values("data-host")
    assert all(NASTY not in v or v == NASTY or v.startswith(NASTY) for v in parsed.values("aria-label"))


def test_the_page_fetches_nothing_and_forbids_fetching():
    page = report_html.render(drill([drill_row("acme")]))
    parsed = Parsed(page)
    assert {"script", "link", "img", "iframe", "object", "svg", "a"}.isdisjoint(parsed.tags)
    for needle in ("http:", "https:", "url(", "@import", "src=", "href="):
        assert needle not in page, needle
    csp = [v for k, v in parsed.attrs if k == "content" and "default-src" in v]
    assert csp == ["default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"]


# -- every tenant, PASS and FAIL in words --------------------------------------------------------------

def test_every_tenant_of_every_host_is_shown():
    names = ["t%02d" % i for i in range(30)]
    rows = [drill_row(n, host="verifier%d" % (i % 3), started="2026-01-03T00:00:%02d.000000Z" % i)
            for i, n in enumerate(names)]
    page = report_html.render(drill(rows))
    parsed = Parsed(page)
    assert parsed.values("data-tenant") == names
    assert parsed.values("data-host") == ["verifier0", "verifier1", "verifier2"]
    # each tenant is a lane of its host's timeline too
    assert sorted(parsed.values("data-lane")) == names


def test_a_drill_over_its_budgets_is_fail_in_words_and_hatched():
    over = drill_row("slow", status="FAIL", rto=31.0, rto_budget=("30s", 30), rpo=7200, rpo_budget=("1h", 3600),
                     problems=["RTO 31.0 s over its budget 30s", "RPO 7200 s over its budget 1h"])
    page = report_html.render(drill([drill_row("quick"), over], status="FAIL"))
    cells = tenant_cells(page)
    assert cells["quick"].count("PASS") >= 3 and "FAIL" not in cells["quick"], cells["quick"]
    assert "RTO 31.0 s of its 30s budget (103%)" in cells["slow"] and "RPO 2 h 00 min of its 1h budget (200%)" in cells["slow"]
    assert cells["slow"].startswith("slow \u2718 FAIL") and cells["slow"].count("\u2718 FAIL") == 3, cells["slow"]
    # the report's own problems are listed, not said twice
    assert cells["slow"].count("over its budget") == 2
    assert '<span class="fill s-fail"' in page and "repeating-linear-gradient" in page  # hatched, not colour alone
    assert "<title>Restore drill report: FAIL</title>" in page


def lane_status(page, name):
    return re.search(r'data-lane="%s".*?class="bar s-(\w+)"' % re.escape(name), page).group(1)


def test_a_drill_lane_is_the_rto_and_its_verification():
    old = drill_row("old", status="FAIL", rpo_budget=("1h", 3600), problems=["RPO 7200 s over its budget 1h"])
    slow = drill_row("slow", status="FAIL", rto=31.0, rto_budget=("30s", 30), problems=["RTO 31.0 s over its budget 30s"])
    broken = dict(drill_row("broken", status="FAIL", problems=["verify FAILED: row_counts"]), verify="FAIL")
    page = report_html.render(drill([drill_row("quick"), old, slow, broken], status="FAIL"))
    assert [lane_status(page, n) for n in ("quick", "old", "slow", "broken")] == ["pass", "pass", "fail", "fail"]
    assert tenant_cells(page)["old"].startswith("old \u2718 FAIL")


def test_a_restored_tenant_over_its_rpo_budget_is_fail():
    timeline = [host_timeline("db1", ["acme", "globex"], rpo_budget=("1h", 3600))]
    page = report_html.render(dr([dr_tenant("acme", rpo=7200), dr_tenant("globex", rpo=600)], timeline))
    cells = tenant_cells(page)
    assert cells["acme"].startswith("acme \u2718 FAIL") and "RPO (data loss) 2 h 00 min over its budget 1h" in cells["acme"]
    assert "restore \u2714 PASS" in cells["acme"]  # the restore itself succeeded
    assert cells["globex"].startswith("globex \u2714 PASS") and "RPO (data loss) 10 min 00 s of its 1h budget (16.7%)" \
        in cells["globex"]
    assert "verify record globex-20260102T220000Z.verify.json" in cells["globex"]
    assert "restored, with its checksum and row counts 10.0 s" in cells["globex"]


def test_the_dr_rto_against_its_budget():
    timeline = [host_timeline("db1", ["acme"])]
    words = Parsed(report_html.render(dr([dr_tenant("acme")], timeline, rto=720, budget=("10m", 600)))).words()
    assert "\u2718 FAIL RTO 12 min 00 s of its 10m budget (120%)" in words
    # every step succeeded, but the rebuild came too late: the page says FAIL
    assert words.startswith("Disaster recovery report: FAIL Disaster recovery report \u2718 FAIL steps 1 of 1 restored")
    words = Parsed(report_html.render(dr([dr_tenant("acme")], timeline))).words()
    assert "\u2714 PASS RTO 12 min 00 s of its 4h budget (5.0%)" in words
    assert words.startswith("Disaster recovery report: PASS Disaster recovery report \u2714 PASS")


def test_a_malformed_or_missing_budget_is_fail():
    row = drill_row("acme", rpo_budget=("1.5h", 0))
    cells = tenant_cells(report_html.render(drill([row])))
    assert "RPO 2 h 00 min, no valid budget (1.5h)" in cells["acme"] and "RPO has no valid budget" in cells["acme"]
    assert cells["acme"].startswith("acme \u2718 FAIL")


# -- empty phases, hosts that stopped early -------------------------------------------------------

def test_a_host_without_phases_says_why():
    rows = [dr_tenant("acme"), {"host": "db2", "what": "host", "tenant": "(all)", "status": "FAILED",
                                "message": "the rebuild of this host stopped early"}]
    page = report_html.render(dr(rows, [host_timeline("db1", ["acme"])], status="FAILED"))
    words = Parsed(page).words()
    assert "Host db2 \u2718 FAIL No timeline for this host: the rebuild of this host stopped early" in words
    assert Parsed(page).values("data-host") == ["db1", "db2"]
    # a report from before timelines existed still renders
    words = Parsed(report_html.render(dr([dr_tenant("acme")], None))).words()
    assert "No timeline for this host: its rebuild recorded no phase." in words and "RPO (data loss) 2 h 00 min, no valid" \
        " budget (none)" in words


def test_phases_without_items_or_seconds_still_render():
    phases = [phase("provisioning", 0, None), phase("migrations", 1, 0.0, status="SKIPPED"),
              phase("restore", 1, 0.0, items=[])]
    page = report_html.render(dr([dr_tenant("acme")], [host_timeline("db1", ["acme"], phases=phases)]))
    parsed = Parsed(page)
    assert parsed.values("data-lane") == ["provisioning", "migrations", "restore"]
    assert "migrations 0.0 s \u2013 SKIPPED" in parsed.words()


def test_an_empty_drill_and_an_unreachable_host():
    words = Parsed(report_html.render(drill([], status="FAIL"))).words()
    assert "No host ran." in words and "No tenant in this report." in words
    unreachable = {"host": "v2", "tenant": "(all)", "status": "FAIL", "problems": ["unreachable: ssh timeout"]}
    page = report_html.render(drill([drill_row("acme"), unreachable], status="FAIL"))
    words = Parsed(page).words()
    assert "Host v2 \u2718 FAIL No tenant was drilled on this host: unreachable: ssh timeout" in words
    assert "RTO: not measured (no artifact was restored)" in tenant_cells(page)["(all)"]


def test_a_report_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="a report of kind drill or dr_restore is needed, got 'backup'"):
        report_html.render({"kind": "backup"})


@pytest.mark.parametrize("seconds, text", [(None, ""), (0, "0.0 s"), (12.34, "12.3 s"), (59.9, "59.9 s"),
                                           (61, "1 min 01 s"), (3600, "1 h 00 min"), (90061, "1 d 01 h")])
def test_durations_read_at_a_glance(seconds, text):
    assert report_html.duration(seconds) == text


@pytest.mark.parametrize("status, word", [("PASS", "PASS"), ("OK", "PASS"), ("FAIL", "FAIL"), ("FAILED", "FAIL"),
                                          ("skipped", "SKIPPED"), ("SKIP", "SKIPPED"), ("WARN", "WARN"), (None, "NONE"),
                                          ("?", "NONE")])
def test_statuses_of_both_reports(status, word):
    assert report_html.status_word(status) == word
