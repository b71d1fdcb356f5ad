# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML page of a drill or disaster-recovery report, from the very dict the playbook
writes as its JSON report (``kind`` drill or dr_restore).

One self-contained page: inline CSS, no script, no font, image or link to fetch (its
Content-Security-Policy forbids any), so that it opens from AWX's artifacts, a ticket or
the report folder alike. Per host, a timeline of the run against the RTO budget; per
tenant, its RTO and data-loss window (RPO) against their budgets and the verification
it rests on. PASS and FAIL read without colour too: every status is a word with a sign,
and failed bars are hatched. Every text that comes from the report is HTML-escaped.

Pure: ``render(report)`` reads nothing else (no clock), so tests reach every branch.
"""

from __future__ import annotations

import datetime
import html
import os

PASS, FAIL, WARN, SKIP, NONE = "PASS", "FAIL", "WARN", "SKIPPED", "NONE"
_WORDS = {"PASS": PASS, "OK": PASS, "FAIL": FAIL, "FAILED": FAIL, "WARN": WARN, "SKIP": SKIP, "SKIPPED": SKIP}
_SIGNS = {PASS: "\u2714 PASS", FAIL: "\u2718 FAIL", WARN: "! WARN", SKIP: "\u2013 SKIPPED", NONE: "? UNKNOWN"}
_ISO_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H%M%SZ")
# the kinds of a dr_restore timeline's items that are a tenant's own steps, as the page names them
_TENANT_STEPS = {"pre-check": "checked before the restore (plan, versions, target)",
                 "tenant": "restored, with its checksum and row counts"}
_MIN_BAR = 0.4  # per cent of a lane: a bar of a few milliseconds still shows


def render(report):
    """The HTML page (a str) of a drill (``kind: drill``) or dr_restore (``kind: dr_restore``) report."""
    kind = (report or {}).get("kind")
    if kind == "drill":
        view = _drill_view(report)
    elif kind == "dr_restore":
        view = _dr_view(report)
    else:
        raise ValueError("report_html: a report of kind drill or dr_restore is needed, got %r" % (kind,))
    return _page(view)


# -- small helpers ---------------------------------------------------------------------------------

def _e(value):
    return html.escape("" if value is None else str(value), quote=True)


def status_word(value):
    """PASS, FAIL, WARN, SKIPPED or NONE for any status the reports use (PASS/OK, FAIL/FAILED, SKIP, ...)."""
    return _WORDS.get(str(value or "").upper(), NONE)


def _moment(text):
    for fmt in _ISO_FORMATS:
        try:
            return datetime.datetime.strptime(str(text or ""), fmt)
        except ValueError:
            continue
    return None


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def duration(seconds):
    """12.3 s, 4 min 05 s, 2 h 05 min, 3 d 04 h; '' for None."""
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return "%.1f s" % seconds
    whole = int(round(seconds))
    if whole < 3600:
        return "%d min %02d s" % (whole // 60, whole % 60)
    if whole < 86400:
        return "%d h %02d min" % (whole // 3600, whole % 3600 // 60)
    return "%d d %02d h" % (whole // 86400, whole % 86400 // 3600)


def _badge(status, text=None):
    word = status_word(status) if status not in _SIGNS else status
    return '<span class="badge s-%s">%s</span>' % (word.lower(), _e(text or _SIGNS[word]))


def gauge(name, value, budget_seconds, budget_text):
    """A measure against its budget: ``{name, value, budget_seconds, budget_text, status}``."""
    value = _number(value)
    budget = _number(budget_seconds)
    if value is None:
        status = NONE
    elif not budget or budget <= 0:
        status = FAIL
    else:
        status = PASS if value <= budget else FAIL
    return {"name": name, "value": value, "budget": budget, "budget_text": budget_text, "status": status}


def _verdict(tenant):
    """A tenant is PASS when its step passed and every measure is within its budget; each measure over
    its budget (or without a budget) is named among its problems, unless the report already says it."""
    for g in tenant["gauges"]:
        if g["status"] != FAIL:
            continue
        tenant["status"] = FAIL
        if not any(str(p).startswith(g["name"].split()[0]) for p in tenant["problems"]):
            tenant["problems"].append("%s %s over its budget %s" % (g["name"], duration(g["value"]), g["budget_text"])
                                      if g["budget"] else "%s has no valid budget" % g["name"])
    return tenant


# -- the drill -------------------------------------------------------------------------------------

def _drill_view(report):
    rows = report.get("tenants") or []
    hosts, tenants = {}, []
    for row in rows:
        host = row.get("host", "")
        start = _moment(row.get("started"))
        status = status_word(row.get("status"))
        rto = gauge("RTO", row.get("rto_seconds"), row.get("rto_budget_seconds"), row.get("rto_budget"))
        rpo = gauge("RPO", row.get("rpo_seconds"), row.get("rpo_budget_seconds"), row.get("rpo_budget"))
        checks = [c for c in row.get("checks") or [] if isinstance(c, dict)]
        lanes = hosts.setdefault(host, {"lanes": [], "problems": []})
        if start is None or rto["value"] is None:  # the host or the tenant stopped before its drill
            lanes["problems"].extend(row.get("problems") or [])
        else:
            lanes["lanes"].append({
                # the lane is the RTO: restored and verified within its budget, or not (the RPO is the table's)
                "label": row.get("tenant", ""), "start": start, "seconds": rto["value"],
                "status": PASS if rto["status"] == PASS and status_word(row.get("verify")) == PASS else FAIL,
                "budget": rto["budget"],
                "segments": [{"label": c.get("name", ""), "seconds": _number(c.get("seconds")),
                              "status": status_word(c.get("status"))} for c in checks]})
        evidence = [("artifact", row.get("artifact")), ("snapshot", row.get("snapshot")),
                    ("verification", _SIGNS[status_word(row.get("verify"))] if row.get("verify") else "")]
        evidence = [(k, v) for k, v in evidence if v]
        evidence += [("verify record", os.path.basename(str(r))) for r in row.get("records") or []]
        tenants.append(_verdict({"host": host, "tenant": row.get("tenant", ""), "status": status, "gauges": [rto, rpo],
                                 "evidence": evidence, "checks": checks, "problems": list(row.get("problems") or [])}))
    return {
        "title": "Restore drill", "kind": "drill", "status": status_word(report.get("status")),
        "facts": [("started", report.get("started")), ("finished", report.get("finished")),
                  ("tenants", "%d (%d FAIL)" % (len(rows), sum(1 for t in tenants if t["status"] != PASS)))],
        "gauges": [],
        "timelines": [_lanes_of_drill(host, h["lanes"], h["problems"]) for host, h in hosts.items()],
        "tenants": tenants, "steps": [],
        "notes": ["RTO: from the start of each tenant's drill to verified data in a scratch target (restored, "
                  "checked, dropped), against the tenant's RTO budget.",
                  "RPO: from the snapshot of the artifact restored to the start of the drill, against the tenant's "
                  "RPO budget: the data a real restore at that moment would have lost.",
                  "The timeline places each tenant's checks one after the other from its start; the rest of its "
                  "bar is the time between them (Ansible, connections)."],
    }


def _lanes_of_drill(host, lanes, problems):
    starts = [lane["start"] for lane in lanes if lane["start"] is not None]
    origin = min(starts) if starts else None
    out = []
    for lane in lanes:
        offset = (lane["start"] - origin).total_seconds() if origin and lane["start"] else 0.0
        out.append(dict(lane, offset=offset, budget_at=offset + lane["budget"] if lane["budget"] else None))
    note = "" if out else "No tenant was drilled on this host: %s" % ("; ".join(problems) or "none was selected.")
    return {"host": host, "lanes": out, "note": note,
            "axis_note": "from %s (UTC)" % origin.strftime("%H:%M:%S") if origin else ""}


# -- dr_restore ------------------------------------------------------------------------------------

def _dr_view(report):
    rows = report.get("rows") or []
    timeline = dict((t.get("host"), t) for t in report.get("timeline") or [] if isinstance(t, dict))
    incident, started = _moment(report.get("incident")), _moment(report.get("started"))
    rto = gauge("RTO", report.get("rto_seconds"), report.get("rto_budget_seconds"), report.get("rto_budget"))
    hosts = []
    for row in rows:
        if row.get("host") not in hosts:
            hosts.append(row.get("host"))
    timelines = [_lanes_of_dr(host, timeline.get(host) or {}, incident, started, rto,
                              [r for r in rows if r.get("host") == host and r.get("what") == "host"]) for host in hosts]
    tenants = []
    for row in (r for r in rows if r.get("what") == "tenant"):
        extra = next((t for t in (timeline.get(row.get("host")) or {}).get("tenants") or []
                      if t.get("tenant") == row.get("tenant")), {})
        rpo = gauge("RPO (data loss)", row.get("rpo_seconds"), extra.get("rpo_budget_seconds"), extra.get("rpo_budget"))
        verified = row.get("verified_at")
        evidence = [("artifact", row.get("artifact")), ("snapshot", row.get("snapshot")),
                    ("verified at", verified or "NOT VERIFIED"),
                    ("verify record", os.path.basename(str(extra.get("verify_record") or "")) or "none"),
                    ("source server", row.get("server_version")), ("rows restored", row.get("rows"))]
        restored = status_word(row.get("status"))
        done = [i for p in (timeline.get(row.get("host")) or {}).get("phases") or [] for i in p.get("items") or []
                if i.get("kind") in _TENANT_STEPS and i.get("name") == row.get("tenant")]
        tenants.append(_verdict({
            "host": row.get("host", ""), "tenant": row.get("tenant", ""), "status": restored, "gauges": [rpo],
            "evidence": [("restore", _SIGNS[restored])] + [(k, v) for k, v in evidence if v not in (None, "")],
            "checks": [{"name": _TENANT_STEPS[i["kind"]], "status": i.get("status"), "seconds": i.get("seconds")}
                       for i in done],
            "problems": [] if restored == PASS else [row.get("message") or "not restored"],
            "note": row.get("message") if restored == PASS else ""}))
    steps = [r for r in rows if r.get("what") not in ("tenant", "host")]
    failed = sum(1 for r in rows if status_word(r.get("status")) != PASS)
    # the page's verdict: every step restored, and the RTO and every tenant's data loss within their budgets
    verdict = PASS if status_word(report.get("status")) == PASS and rto["status"] == PASS and all(
        t["status"] == PASS for t in tenants) else FAIL
    return {
        "title": "Disaster recovery", "kind": "dr_restore", "status": verdict,
        "facts": [("steps", "%d of %d restored or done" % (len(rows) - failed, len(rows))),
                  ("incident", report.get("incident")), ("rebuild started", report.get("started")),
                  ("incident to rebuild", duration((started - incident).total_seconds()) if incident and started else ""),
                  ("finished", report.get("finished")), ("this run took", duration(_number(report.get("run_seconds"))))],
        "gauges": [rto], "timelines": timelines, "tenants": tenants, "steps": steps,
        "notes": ["RTO: from the incident to the end of the rebuild, against the RTO budget (dr_rto).",
                  "RPO (data loss): what was written between the snapshot of the artifact restored and the "
                  "incident, against the tenant's RPO budget (its rpo, else dr_rpo).",
                  "In the timeline, each step of a phase (a tenant's check or restore, the roles, a bundle, a "
                  "command) is as long as its task said it took, placed one after the other from the start of "
                  "the phase; the rest of the phase is the time between them."],
    }


def _lanes_of_dr(host, timeline, incident, started, rto, stopped):
    """The rebuild's phases on an axis from its start; the RTO budget's line is what was left of it
    when the rebuild started (the incident came before)."""
    phases = [p for p in timeline.get("phases") or [] if isinstance(p, dict)]
    origin = started or (_moment(phases[0].get("started")) if phases else None)
    lanes = []
    for phase in phases:
        start = _moment(phase.get("started"))
        offset = (start - origin).total_seconds() if start and origin else 0.0
        lanes.append({"label": phase.get("name", ""), "start": start, "seconds": _number(phase.get("seconds")),
                      "status": status_word(phase.get("status")), "segments": [], "offset": offset})
        at = offset
        for item in phase.get("items") or []:
            seconds = _number(item.get("seconds"))
            label = item.get("name", "")
            if item.get("kind") and item.get("kind") != label:
                label = "%s %s" % (item["kind"], label)
            lanes.append({"label": label, "sub": True, "start": None, "seconds": seconds,
                          "status": status_word(item.get("status")), "segments": [], "offset": at})
            at += seconds or 0.0
    waited = (origin - incident).total_seconds() if origin and incident and origin > incident else 0.0
    if rto["budget"]:
        for lane in lanes:
            lane["budget_at"] = max(0.0, rto["budget"] - waited)
    note = ""
    if not phases:
        why = "; ".join(str(r.get("message", "")) for r in stopped)
        note = "No timeline for this host: " + (why or "its rebuild recorded no phase.")
    axis = ""
    if origin:
        after = ", %s after the incident" % duration(waited) if waited else ""
        axis = "from the rebuild's start, %s UTC%s" % (origin.strftime("%Y-%m-%d %H:%M:%S"), after)
    return {"host": host, "lanes": lanes, "note": note, "axis_note": axis}


# -- the page --------------------------------------------------------------------------------------

_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_CSS = """
:root { --pass: #1b5e20; --fail: #b71c1c; --skip: #757575; --ink: #1a1a1a; --line: #c8c8c8; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0 auto; padding: 1.2em 1.6em 3em; max-width: 1280px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 .2em; display: flex; gap: .6em; align-items: center; flex-wrap: wrap; }
h2 { font-size: 1.2em; margin: 1.6em 0 .5em; border-bottom: 2px solid var(--ink); padding-bottom: .15em; }
h3 { font-size: 1.05em; margin: 1.1em 0 .35em; }
dl.facts { display: flex; flex-wrap: wrap; gap: .3em 2em; margin: .4em 0 1em; }
dl.facts div { display: flex; gap: .4em; } dt { color: #555; } dd { margin: 0; font-weight: 600; }
.badge { display: inline-block; padding: .05em .55em; border-radius: 3px; font-weight: 700; font-size: .85em;
         letter-spacing: .03em; white-space: nowrap; border: 2px solid transparent; }
h1 .badge { font-size: .7em; }
.s-pass { background: var(--pass); color: #fff; }
.s-fail { background: var(--fail); color: #fff; border-color: #000; border-style: double; }
.s-warn { background: #ffd54f; color: var(--ink); border-color: #000; }
.s-skipped { background: #fff; color: var(--ink); border-color: var(--skip); border-style: dashed; }
.s-none { background: #eee; color: var(--ink); border-color: var(--skip); border-style: dotted; }
.bar.s-pass, .fill.s-pass { background: var(--pass); }
.bar.s-fail, .fill.s-fail { background: repeating-linear-gradient(135deg, var(--fail) 0 5px, #fff 5px 8px);
                            border: 1px solid #000; }
.bar.s-warn, .fill.s-warn { background: repeating-linear-gradient(90deg, #000 0 2px, #ffd54f 2px 7px); }
.bar.s-skipped, .fill.s-skipped { background: #fff; border: 1px dashed var(--skip); }
.bar.s-none, .fill.s-none { background: repeating-linear-gradient(90deg, #9e9e9e 0 2px, #eee 2px 6px); }
.timeline { border: 1px solid var(--line); border-radius: 4px; padding: .5em .8em .7em; margin-bottom: 1em; }
.lane { display: grid; grid-template-columns: 17em 1fr 12em; gap: .7em; align-items: center; min-height: 1.7em; }
.lane.sub .label { padding-left: 1.4em; color: #333; }
.lane.sub .label::before { content: "\\21B3\\00A0"; }
.label { overflow-wrap: anywhere; } .nw { white-space: nowrap; } .when { text-align: right; font-variant-numeric: tabular-nums; }
.track { position: relative; height: 1.15em; background: #f4f4f4; border-left: 1px solid #999; border-right: 1px solid #999; }
.bar { position: absolute; top: 0; bottom: 0; min-width: 2px; display: flex; overflow: hidden; }
.seg { height: 100%; border-right: 1px solid #fff; }
.seg.s-fail { background: #000; }
.budget { position: absolute; top: -.25em; bottom: -.25em; width: 0; border-left: 3px dashed #000; }
.axis { display: grid; grid-template-columns: 17em 1fr 12em; gap: .7em; color: #555; font-size: .85em; }
.ticks { display: flex; justify-content: space-between; }
.gauge { margin: .25em 0; }
.gauge .track { height: .9em; }
.fill { position: absolute; top: 0; bottom: 0; left: 0; min-width: 2px; }
.gtext { font-size: .9em; }
table { border-collapse: collapse; width: 100%; margin: .3em 0 1em; }
th, td { border: 1px solid var(--line); padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.name { font-weight: 700; min-width: 8em; overflow-wrap: break-word; }
ul.plain { margin: 0; padding-left: 1.1em; } .problems li { font-weight: 600; }
dl.evidence { display: grid; grid-template-columns: max-content 1fr; gap: 0 .6em; margin: 0; font-size: .9em; }
dl.evidence dd { font-weight: 400; overflow-wrap: anywhere; }
.legend { display: flex; gap: 1.2em; flex-wrap: wrap; font-size: .9em; margin: .3em 0; align-items: center; }
.legend .sample { display: inline-block; width: 2.2em; height: .9em; vertical-align: middle; position: relative; }
.notes { color: #333; font-size: .9em; }
@media print { body { padding: 0; } .timeline, tr { break-inside: avoid; }
               * { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""


def _pct(value, span):
    return max(0.0, min(100.0, 100.0 * value / span)) if span else 0.0


def _lane_html(lane, span):
    seconds = lane.get("seconds") or 0.0
    left = _pct(lane.get("offset") or 0.0, span)
    width = max(_MIN_BAR, min(100.0 - left, _pct(seconds, span)))
    segs = []
    for seg in lane.get("segments") or []:
        part = _pct(seg["seconds"] or 0.0, seconds) if seconds else 0.0
        if part > 0:
            segs.append('<span class="seg s-%s" style="width:%.3f%%" title="%s"></span>'
                        % (seg["status"].lower(), part,
                           _e("%s %s %s" % (seg["label"], duration(seg["seconds"]), seg["status"]))))
    budget = ""
    if lane.get("budget_at") is not None and lane["budget_at"] <= span:
        budget = '<span class="budget" style="left:%.3f%%" title="RTO budget"></span>' % _pct(lane["budget_at"], span)
    title = "%s: %s, %s" % (lane["label"], duration(lane.get("seconds")), lane["status"])
    return ('<div class="lane%s" data-lane="%s"><div class="label">%s</div>'
            '<div class="track" role="img" aria-label="%s"><span class="bar s-%s" style="left:%.3f%%;width:%.3f%%">'
            '%s</span>%s</div><div class="when">%s %s</div></div>'
            % (" sub" if lane.get("sub") else "", _e(lane["label"]), _e(lane["label"]), _e(title),
               lane["status"].lower(), left, width, "".join(segs), budget, _e(duration(lane.get("seconds"))),
               _badge(lane["status"]) if lane["status"] != NONE else ""))


def _budget_note(shown, budgets):
    if shown:
        return "budget line: dashed"
    return "budget %s: past the right edge" % duration(min(budgets)) if budgets else "no budget"


def _timeline_html(timeline):
    lanes = timeline["lanes"]
    out = ['<section class="timeline" data-host="%s"><h3>Host %s</h3>' % (_e(timeline["host"]), _e(timeline["host"]))]
    if timeline["note"]:
        out.append('<p>%s %s</p>' % (_badge(FAIL), _e(timeline["note"])))
    if lanes:
        ends = [(lane.get("offset") or 0.0) + (lane.get("seconds") or 0.0) for lane in lanes]
        span = max(ends + [0.001])
        budgets = [lane["budget_at"] for lane in lanes if lane.get("budget_at") is not None]
        shown = [b for b in budgets if b <= span]
        out.append('<div class="axis"><div>%s</div><div class="ticks">%s</div><div class="when">%s</div></div>'
                   % (_e(timeline["axis_note"]), "".join("<span>%s</span>" % _e(duration(span * i / 4)) for i in range(5)),
                      _e(_budget_note(shown, budgets))))
        out.extend(_lane_html(lane, span) for lane in lanes)
    out.append("</section>")
    return "\n".join(out)


def _share(value, budget):
    share = 100.0 * value / budget
    if 0 < share < 0.1:
        return "under 0.1%"
    return "%.0f%%" % share if share >= 100 else "%.1f%%" % share


def _gauge_html(g):
    value, budget = g["value"], g["budget"]
    if value is None:
        return ('<div class="gauge" data-gauge="%s"><div class="gtext">%s %s</div></div>'
                % (_e(g["name"]), _badge(NONE), _e("%s: not measured (no artifact was restored)" % g["name"])))
    scale = max(value, budget or 0.0) or 1.0
    fill = max(0.5, _pct(value, scale)) if value > 0 else 0.0
    mark = _pct(budget, scale) if budget else None
    text = ("%s %s of its %s budget (%s)" % (g["name"], duration(value), g["budget_text"], _share(value, budget))
            if budget else "%s %s, no valid budget (%s)" % (g["name"], duration(value), g["budget_text"] or "none"))
    budget_mark = '<span class="budget" style="left:%.3f%%"></span>' % mark if mark is not None else ""
    return ('<div class="gauge" data-gauge="%s"><div class="track" role="img" aria-label="%s">'
            '<span class="fill s-%s" style="width:%.3f%%"></span>%s</div><div class="gtext">%s %s</div></div>'
            % (_e(g["name"]), _e(text + ": " + g["status"]), g["status"].lower(), fill, budget_mark, _badge(g["status"]),
               _e(text)))


def _tenant_rows(tenants):
    out = []
    for t in tenants:
        checks = ""
        if t["checks"]:
            checks = '<ul class="plain">%s</ul>' % "".join(
                '<li>%s %s <span class="nw">%s</span></li>'
                % (_badge(c.get("status")), _e(c.get("name")), _e(duration(_number(c.get("seconds"))))) for c in t["checks"])
        evidence = '<dl class="evidence">%s</dl>' % "".join(
            "<dt>%s</dt><dd>%s</dd>" % (_e(k), _e(v)) for k, v in t["evidence"])
        problems = ('<ul class="plain problems">%s</ul>' % "".join("<li>%s</li>" % _e(p) for p in t["problems"])
                    if t["problems"] else "")
        note = '<p class="notes">%s</p>' % _e(t["note"]) if t.get("note") else ""
        out.append('<tr data-tenant="%s"><td class="name">%s<br>%s</td><td>%s</td><td>%s%s</td><td>%s%s</td><td>%s</td></tr>'
                   % (_e(t["tenant"]), _e(t["tenant"]), _badge(t["status"]), _e(t["host"]),
                      "".join(_gauge_html(g) for g in t["gauges"]), problems, evidence, note, checks))
    return "\n".join(out)


def _steps_html(steps):
    if not steps:
        return ""
    rows = "".join('<tr data-step="%s"><td>%s</td><td>%s</td><td class="name">%s</td><td>%s</td><td>%s</td></tr>'
                   % (_e(s.get("tenant")), _e(s.get("host")), _e(s.get("what")), _e(s.get("tenant")),
                      _badge(s.get("status")), _e(" ".join(str(x) for x in (s.get("artifact"), s.get("message")) if x)))
                   for s in steps)
    return ("<h2>Roles, bundles, migrations, health checks, timers</h2><table><thead><tr><th>Host</th><th>What</th>"
            "<th>Name</th><th>Result</th><th>Artifact, message</th></tr></thead><tbody>%s</tbody></table>" % rows)


def _legend():
    samples = [(PASS, "within budget, succeeded"), (FAIL, "over budget or failed (hatched)"),
               (WARN, "warning (barred)"), (SKIP, "skipped (dashed)"), (NONE, "waiting or unknown (striped)")]
    items = "".join('<span><span class="sample bar s-%s"></span> %s %s</span>' % (w.lower(), _badge(w), _e(text))
                    for w, text in samples)
    return '<div class="legend">%s<span>dashed vertical line: the budget</span></div>' % items


def _page(view):
    facts = "".join("<div><dt>%s</dt><dd>%s</dd></div>" % (_e(k), _e(v)) for k, v in view["facts"] if v not in (None, ""))
    title = "%s report: %s" % (view["title"], view["status"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="%s">' % _CSP,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>%s</title>" % _e(title),
        "<style>%s</style></head><body>" % _CSS,
        '<h1 data-kind="%s">%s report %s</h1>' % (_e(view["kind"]), _e(view["title"]), _badge(view["status"])),
        '<dl class="facts">%s</dl>' % facts,
        "".join(_gauge_html(g) for g in view["gauges"]),
        _legend(),
        "<h2>Timeline per host</h2>",
        "\n".join(_timeline_html(t) for t in view["timelines"]) or "<p>%s No host ran.</p>" % _badge(FAIL),
        "<h2>Tenants: RTO, data loss (RPO) and the verification they rest on</h2>",
        "<table><thead><tr><th>Tenant</th><th>Host</th><th>Against the budgets</th><th>Verification used</th>"
        "<th>Checks</th></tr></thead><tbody>",
        _tenant_rows(view["tenants"]) or '<tr><td colspan="5">%s No tenant in this report.</td></tr>' % _badge(FAIL),
        "</tbody></table>",
        _steps_html(view["steps"]),
        '<h2>How to read it</h2><ul class="notes">%s</ul>' % "".join("<li>%s</li>" % _e(n) for n in view["notes"]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
