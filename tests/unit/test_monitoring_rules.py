"""The shipped Prometheus rules (monitoring/rules) against series written by the agent's own code.

Each scenario plays agent runs on a clock that starts at 0 (promtool's time): the agent's
Session.record (state and lifeboat_<op>.prom), discovery.report_run (lifeboat_protection.prom)
and agent.record_start (lifeboat_agent_<op>.prom) write into a real metrics folder; the
folder is read after every step and its samples become promtool's input_series. promtool
then checks which alerts fire, when, and their text (annotations rendered from the rules'
own templates here, so a wrong label name in a template fails).
"""

import datetime
import io
import json
import pathlib
import re
import subprocess
import types

import pytest
import yaml

import lbtest
import monitoring
from lifeboat_engine import agent, agent_metrics, discovery, erasure, naming
from lifeboat_engine._agent import operations
from lifeboat_engine._agent.session import Session
from lifeboat_engine.agent_output import Log
from lifeboat_engine.agent_runner import Outcome
from lifeboat_engine.locking import FileLock

MIN = 60
HOUR = 3600


class Clock(object):
    """The scenario's time (seconds since 0), given to the writer instead of the host's clock."""

    def __init__(self):
        self.now = 0

    def datetime(self):
        return datetime.datetime.fromtimestamp(self.now, datetime.timezone.utc)


class Host(object):
    """One host's agent: its state and metrics folders, written by the agent's own functions."""

    def __init__(self, instance, base, clock):
        self.instance = instance
        self.clock = clock
        folder = base / instance.replace(":", "_")
        self.config = {"state_dir": str(folder / "state"), "metrics_dir": str(folder / "metrics"),
                       "lock_file": str(folder / "state" / "agent.lock")}
        (folder / "metrics").mkdir(parents=True)
        self.newest = {}
        self.erased = {}  # tenant -> erasure.Erased: what discovery's newest() says of a tenant tenant_erase erased
        self.log = Log(stream=io.StringIO(), journal=False)

    def artifact(self, tenant):
        stamp = naming.format_stamp(self.clock.datetime())
        self.newest[tenant] = stamp
        return naming.artifact_name(tenant, stamp, "pgdump", True, True)

    def _outcomes(self, results):
        out = []
        for tenant, (status, info) in results.items():
            o = Outcome(tenant)
            o.status, o.info = status, dict(info)
            o.started, o.finished = 0.0, 42.0
            o.error = None if status in ("ok", "skipped") else "failed in the scenario"
            out.append(o)
        return out

    def run(self, operation, results, figures_of=None, run_info=None):
        args = types.SimpleNamespace(no_progress=True, tenant=None, check=False)
        session = Session(args, self.config, operation, self.log)
        session.run_info = dict(run_info or {})
        outcomes = self._outcomes(results)
        assert session.record(outcomes, figures_of)
        return outcomes

    def backup(self, rpo, ok=(), failed=(), problems=(), discovery_ok=None):
        """A full backup run: the tenants' lines, then what is unprotected (lifeboat_protection.prom)."""
        results = {}
        for tenant in ok:
            results[tenant] = ("ok", {"artifact": self.artifact(tenant), "size_stored": 1000, "size_raw": 5000})
        for tenant in failed:
            results[tenant] = ("failed", {})
        outcomes = self.run("backup", results, operations._figures_backup)
        self.protection(rpo, list(ok) + list(failed), problems, discovery_ok, outcomes)

    def protection(self, rpo, tenants, problems=(), discovery_ok=None, outcomes=()):
        listed = [{"name": t, "engine": "postgresql", "database": t, "schema": None, "path": None, "found": "listed",
                   "rule": None, "rpo": rpo} for t in tenants]
        errors = [] if discovery_ok in (None, True) else ["cannot connect"]
        found = discovery.Found(listed, problems=problems, errors=errors, configured=discovery_ok is not None)
        bad, written = discovery.report_run(self.config, self.log, "backup", found,
                                            lambda n: (None, self.erased[n]) if n in self.erased
                                            else (self.newest.get(n), None), outcomes)
        assert written

    def start(self, operation, refused=None):
        args = types.SimpleNamespace(check=False)
        assert agent.record_start(args, self.config, operation, refused) == []

    def samples(self):
        out = {}
        for path in sorted(pathlib.Path(self.config["metrics_dir"]).glob("*.prom")):
            for (name, labels), value in monitoring.parse_textfile(path.read_text()).items():
                out[(name, tuple(sorted(labels + (("instance", self.instance), ("job", "node")))))] = value
        return out


class Scenario(object):
    """Steps of ``interval`` seconds; events run at their step; every host's folder is read after each."""

    def __init__(self, name, base, monkeypatch, interval=MIN):
        self.name = name
        self.base = base / name
        self.interval = interval
        self.clock = Clock()
        self.hosts = {}
        self.steps = []
        self.next = 0
        monkeypatch.setattr(agent_metrics, "now", lambda: float(self.clock.now))
        monkeypatch.setattr(naming, "utcnow", self.clock.datetime)

    def host(self, instance):
        if instance not in self.hosts:
            self.hosts[instance] = Host(instance, self.base, self.clock)
        return self.hosts[instance]

    def until(self, t):
        """Read every host's folder at each step up to ``t`` (seconds) included."""
        while self.next <= t:
            snapshot = {}
            for h in self.hosts.values():
                snapshot.update(h.samples())
            self.steps.append(snapshot)
            self.next += self.interval
        self.clock.now = t

    def at(self, t):
        """The events that follow happen at ``t``, before the step of ``t`` is read."""
        assert t % self.interval == 0 and t >= self.clock.now
        self.until(t - 1)
        self.clock.now = t

    def input_series(self):
        keys = sorted(set(k for s in self.steps for k in s))
        out = []
        for key in keys:
            values = [s.get(key) for s in self.steps]
            out.append({"series": monitoring.series_name(*key), "values": compress(values)})
        return out


def compress(values):
    """promtool's expanding notation: runs of one value as 'v+0xN', missing samples as '_'."""
    parts, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        if values[i] is None:
            parts += ["_"] * (j - i + 1)
        else:
            parts.append("%s+0x%d" % (repr(values[i]), j - i))
        i = j + 1
    return " ".join(parts)


def humanize_duration(v):
    """Prometheus' humanizeDuration for values of one second and more."""
    v = int(v)
    days, hours, minutes, seconds = v // 86400, v // 3600 % 24, v // 60 % 60, v % 60
    if days:
        return "%dd %dh %dm %ds" % (days, hours, minutes, seconds)
    if hours:
        return "%dh %dm %ds" % (hours, minutes, seconds)
    return "%dm %ds" % (minutes, seconds)


TEMPLATE = re.compile(r"\{\{\s*(\$labels\.(\w+)|\$value \| humanizeDuration)\s*\}\}")
WITH = re.compile(r"\{\{\s*with \$labels\.(\w+)\s*\}\}(.*?)\{\{\s*end\s*\}\}")


def render(text, labels, value):
    """The subset of Go templates the rules use: labels, `with` a label, and a humanized $value."""
    out = WITH.sub(lambda m: m.group(2).replace("{{ . }}", labels[m.group(1)]) if labels.get(m.group(1)) else "", text)
    out = TEMPLATE.sub(lambda m: labels[m.group(2)] if m.group(2) else humanize_duration(value), out)  # a typo: KeyError
    assert "{{" not in out, "a template construct this test does not know: %r" % out
    return out


def firing(alertname, labels, value=None):
    rule = monitoring.alert_rules()[alertname]
    full = dict(rule["labels"], **labels)
    return {"exp_labels": dict((k, v) for k, v in full.items() if v != ""),  # an empty label is no label
            "exp_annotations": dict((k, render(v, full, value)) for k, v in rule["annotations"].items())}


def sample(record, instance, tenant=None, **value):
    """One expected sample of the recording rule ``record`` for a host (and tenant)."""
    labels = 'instance="%s",job="node"' % instance + (',tenant="%s"' % tenant if tenant else "")
    expr = '%s{instance="%s"%s}' % (record, instance, ',tenant="%s"' % tenant if tenant else "")
    return (expr, [{"labels": "%s{%s}" % (record, labels), "value": value["value"]}])


def check(scenario, alerts, exprs=()):
    """Run promtool on ``scenario`` with [(eval seconds, alertname, [expected alerts])] and exprs."""
    test = {
        "rule_files": [str(p) for p in monitoring.RULES],
        "evaluation_interval": "1m",
        "tests": [{
            "name": scenario.name,
            "interval": "%ds" % scenario.interval,
            "input_series": scenario.input_series(),
            "alert_rule_test": [{"eval_time": "%ds" % t, "alertname": name, "exp_alerts": exp}
                                for t, name, exp in alerts],
            "promql_expr_test": [{"expr": e, "eval_time": "%ds" % t, "exp_samples": s} for t, e, s in exprs],
        }],
    }
    path = scenario.base / "promtool-test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run([monitoring.tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def scenario(tmp_path, monkeypatch):
    return lambda name, interval=MIN: Scenario(name, tmp_path, monkeypatch, interval)


def test_promtool_accepts_the_rules():
    proc = subprocess.run([monitoring.tool("promtool"), "check", "rules"] + [str(p) for p in monitoring.RULES],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_says_what_to_do_and_links_its_runbook():
    readme = (lbtest.ROOT / "README.md").read_text()
    repository = yaml.safe_load((lbtest.ROOT / "galaxy.yml").read_text())["repository"]
    anchors = set(re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                  for h in re.findall(r"^#+ (.*)$", readme, re.M))
    for name, rule in monitoring.alert_rules().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        notes = rule["annotations"]
        assert "$labels.instance" in notes["summary"] and "$labels.instance" in notes["description"], name
        assert "`" in notes["description"], "%s: the description names the command to run" % name
        url, anchor = notes["runbook_url"].split("#", 1)
        assert url == repository + "/blob/main/README.md" and anchor in anchors, (name, anchor)
        assert name in readme, "%s is listed in the README" % name


def test_a_failed_backup_pages_after_five_minutes_and_clears_with_the_next_success(scenario):
    s = scenario("failed-backup")
    db = s.host("db1:9100")
    s.at(0)
    db.start("backup")
    db.backup(2 * HOUR, ok=["acme", "globex"])
    s.at(30 * MIN)
    db.start("backup")
    db.backup(2 * HOUR, ok=["acme"], failed=["globex"])
    s.at(60 * MIN)
    db.start("backup")
    db.backup(2 * HOUR, ok=["acme", "globex"])
    s.until(70 * MIN)
    who = {"instance": "db1:9100", "job": "node", "tenant": "globex"}
    check(s, [
        (29 * MIN, "LifeboatBackupFailed", []),
        (34 * MIN, "LifeboatBackupFailed", []),  # pending: for 5m
        (36 * MIN, "LifeboatBackupFailed", [firing("LifeboatBackupFailed", who)]),
        (59 * MIN, "LifeboatBackupFailed", [firing("LifeboatBackupFailed", who)]),
        (61 * MIN, "LifeboatBackupFailed", []),
        (45 * MIN, "LifeboatBackupOlderThanRPO", []),
        (45 * MIN, "LifeboatTenantUnprotected", []),
    ], [
        (31 * MIN, "instance:lifeboat_tenants:count",
         [{"labels": 'instance:lifeboat_tenants:count{instance="db1:9100",job="node",state="protected"}', "value": 2},
          {"labels": 'instance:lifeboat_tenants:count{instance="db1:9100",job="node",state="backup-failed"}',
           "value": 1}]),
        (45 * MIN,) + sample("tenant:lifeboat_backup_age_seconds:now", "db1:9100", "globex", value=45 * MIN),
    ])


def test_a_backup_older_than_its_rpo_pages_even_when_the_agent_stopped_running(scenario):
    s = scenario("old-backup")
    db = s.host("db1:9100")
    s.at(0)
    db.backup(HOUR, ok=["acme"])
    s.until(100 * MIN)  # then the agent stops: nothing is written any more, the files stay
    who = {"instance": "db1:9100", "job": "node", "tenant": "acme"}
    check(s, [
        (60 * MIN, "LifeboatBackupOlderThanRPO", []),
        (75 * MIN, "LifeboatBackupOlderThanRPO", []),  # late since 60m, pending for 15m
        (77 * MIN, "LifeboatBackupOlderThanRPO", [firing("LifeboatBackupOlderThanRPO", who, 77 * MIN)]),
    ], [
        (30 * MIN,) + sample("tenant:lifeboat_backup_age_rpo:ratio", "db1:9100", "acme", value=0.5),
    ])


def test_a_failed_verification_and_an_old_verified_backup_page(scenario):
    s = scenario("verify")
    ver = s.host("verifier:9100")
    s.at(0)
    ver.start("verify")
    budget = HOUR
    ver.run("verify", {"acme": ("ok", {"verify_status": "PASS", "artifact": ver.artifact("acme")}),
                       "globex": ("failed", {"verify_status": "FAIL"})},
            operations._figures_verify, {"budget": budget})
    s.until(80 * MIN)
    check(s, [
        (4 * MIN, "LifeboatVerifyFailed", []),
        (6 * MIN, "LifeboatVerifyFailed",
         [firing("LifeboatVerifyFailed", {"instance": "verifier:9100", "job": "node", "tenant": "globex"})]),
        (75 * MIN, "LifeboatVerifiedBackupTooOld", []),
        (77 * MIN, "LifeboatVerifiedBackupTooOld",
         [firing("LifeboatVerifiedBackupTooOld", {"instance": "verifier:9100", "job": "node", "tenant": "acme"},
                 77 * MIN)]),
    ], [
        (30 * MIN,) + sample("tenant:lifeboat_verified_age_budget:ratio", "verifier:9100", "acme", value=0.5),
    ])


def test_a_database_on_the_server_without_a_backup_pages(scenario):
    s = scenario("undiscovered")
    db = s.host("db2:9100")
    server = {"server": "db2", "databases": [{"name": n, "template": False, "allowconn": True}
                                             for n in ("acme", "newshop")], "schemas": {}}
    listed = [{"name": "acme", "engine": "postgresql", "database": "acme", "schema": None}]
    problems = discovery.evaluate([], listed, server)["problems"]
    s.at(0)
    db.backup(26 * HOUR, ok=["acme"], problems=problems, discovery_ok=True)
    s.at(5 * MIN)
    db.protection(26 * HOUR, ["acme", "initech"], problems, discovery_ok=False)  # initech: listed, never backed up
    s.until(30 * MIN)
    newshop = {"instance": "db2:9100", "job": "node", "tenant": "newshop", "found": "none", "database": "newshop",
               "schema": "", "reason": "not-covered"}
    initech = {"instance": "db2:9100", "job": "node", "tenant": "initech", "found": "listed", "database": "initech",
               "schema": "", "reason": "no-artifact"}
    check(s, [
        (14 * MIN, "LifeboatTenantUnprotected", []),
        (16 * MIN, "LifeboatTenantUnprotected", [firing("LifeboatTenantUnprotected", newshop)]),
        (21 * MIN, "LifeboatTenantUnprotected", [firing("LifeboatTenantUnprotected", newshop),
                                                 firing("LifeboatTenantUnprotected", initech)]),
        (21 * MIN, "LifeboatDiscoveryFailed",
         [firing("LifeboatDiscoveryFailed", {"instance": "db2:9100", "job": "node"})]),
    ])


def test_an_agent_that_could_not_run_pages(scenario):
    s = scenario("refused")
    db = s.host("db3:9100")
    s.at(0)
    db.start("backup")
    db.backup(26 * HOUR, ok=["acme"])
    s.at(10 * MIN)
    holder = FileLock(db.config["lock_file"], "lifeboat backup", subject="this host's lifeboat agent").acquire()
    try:
        db.start("prune", "locked")  # a real lock held: record_start reads its holder
    finally:
        holder.release()
    db.start("anonymize", "config-error")
    s.at(30 * MIN)
    db.start("prune")
    s.until(40 * MIN)
    who = {"instance": "db3:9100", "job": "node"}
    check(s, [
        (14 * MIN, "LifeboatAgentLocked", []),
        (16 * MIN, "LifeboatAgentLocked", [firing("LifeboatAgentLocked", dict(who, op="prune", reason="locked"))]),
        (31 * MIN, "LifeboatAgentLocked", []),
        (16 * MIN, "LifeboatAgentConfigError",
         [firing("LifeboatAgentConfigError", dict(who, op="anonymize", reason="config-error"))]),
        (39 * MIN, "LifeboatAgentConfigError",
         [firing("LifeboatAgentConfigError", dict(who, op="anonymize", reason="config-error"))]),
    ])


def test_a_failed_anonymize_and_pii_older_than_its_budget_page(scenario):
    s = scenario("pii", interval=4 * MIN)
    db = s.host("db4:9100")
    day = 86400
    s.at(0)

    def anonymized(days):
        cutoff = naming.iso(s.clock.datetime() - datetime.timedelta(days=days))
        return ("ok", {"rows_scrubbed": 3, "cutoff": cutoff, "older_than_days": days})
    db.run("anonymize", {"acme": anonymized(1), "globex": anonymized(1)}, operations._figures_anonymize)
    s.at(8 * MIN)
    db.run("anonymize", {"acme": anonymized(1), "globex": ("failed", {})}, operations._figures_anonymize)
    s.until(day + 28 * MIN)
    globex = {"instance": "db4:9100", "job": "node", "tenant": "globex"}
    check(s, [
        (12 * MIN, "LifeboatAnonymizeFailed", []),
        (16 * MIN, "LifeboatAnonymizeFailed", [firing("LifeboatAnonymizeFailed", globex)]),
        # globex's personal data is a day over its budget (1 day) from 24h on: pending for 15m
        (day + 15 * MIN, "LifeboatPIIOlderThanBudget", []),
        (day + 17 * MIN, "LifeboatPIIOlderThanBudget", [firing("LifeboatPIIOlderThanBudget", globex, 2 * day + 17 * MIN)]),
        # acme was anonymized again at 8m: its turn comes 8 minutes later
        (day + 25 * MIN, "LifeboatPIIOlderThanBudget",
         [firing("LifeboatPIIOlderThanBudget", globex, 2 * day + 25 * MIN),
          firing("LifeboatPIIOlderThanBudget", dict(globex, tenant="acme"), 2 * day + 17 * MIN)]),
    ])


def written_names():
    """Every metric name the agent's writers (and the drill's) can write, from their own output."""
    entry = {"last_run": 1.0, "last_success": 1.0, "last_status": "ok", "duration_seconds": 1.0, "size_stored": 1,
             "size_raw": 1, "rows_scrubbed": 1, "cutoff_time": 1.0, "pii_budget": 1, "deleted": 1, "artifact_time": 1.0}
    texts = [agent_metrics.render(op, {"t": entry}, {"finished": 1.0, "budget": 1})
             for op in ("backup", "verify", "prune", "anonymize")]
    texts.append(agent_metrics.render_protection(
        [{"tenant": "t", "found": "listed", "reason": "none", "rpo_seconds": 1, "newest_time": 1.0},
         {"tenant": "e", "found": "listed", "reason": "erased", "erased": {"record": "r"}, "unprotected": False}],
        {"finished": 1.0, "operation": "backup", "discovery": {"ok": True, "discovered": 1}}))
    texts.append(agent_metrics.render_start("backup", "locked", 1.0, 1.0))
    texts.append(agent_metrics.render_drill([{"host": "h", "tenant": "t", "rto_seconds": 1, "rto_budget_seconds": 1,
                                              "rpo_seconds": 1, "rpo_budget_seconds": 1, "status": "PASS"}], 1.0))
    return set(name for text in texts for name, _labels in monitoring.parse_textfile(text))


def test_an_erased_tenant_raises_no_alert_for_its_missing_backups(scenario):
    s = scenario("erased")
    db = s.host("db3:9100")
    ver = s.host("verifier:9100")
    s.at(0)
    db.backup(HOUR, ok=["acme", "globex"])
    ver.run("verify", {"acme": ("ok", {"verify_status": "PASS", "artifact": ver.artifact("acme")})},
            operations._figures_verify, {"budget": HOUR})
    s.at(10 * MIN)  # acme is erased (tenant_erase): its artifacts are gone, its record stays
    db.erased["acme"] = erasure.Erased({"record": "acme-20260101T001000Z.erasure.json", "location": "/r/acme",
                                        "erased_at": "1970-01-01T00:10:00Z", "reference": "GDPR-1"})
    ver.run("verify", {"acme": ("ok", {"verify_status": "ERASED", "artifact": None})}, operations._figures_verify,
            {"budget": HOUR})
    db.backup(HOUR, ok=["globex"], failed=[])
    db.protection(HOUR, ["acme", "globex"])
    for t in (40 * MIN, 70 * MIN, 100 * MIN):
        s.at(t)
        db.backup(HOUR, ok=["globex"])
        db.protection(HOUR, ["acme", "globex"])
    s.until(110 * MIN)
    check(s, [
        (90 * MIN, "LifeboatBackupOlderThanRPO", []),  # acme's last artifact (0) is 90m old: it would fire at 75m
        (90 * MIN, "LifeboatTenantUnprotected", []),
        (90 * MIN, "LifeboatVerifiedBackupTooOld", []),  # acme's last verified artifact (0) would fire at 75m
        (90 * MIN, "LifeboatVerifyFailed", []),
    ], [
        (90 * MIN, "instance:lifeboat_tenants:count",
         [{"labels": 'instance:lifeboat_tenants:count{instance="db3:9100",job="node",state="protected"}', "value": 1},
          {"labels": 'instance:lifeboat_tenants:count{instance="db3:9100",job="node",state="erased"}', "value": 1}]),
        (90 * MIN, 'lifeboat_tenant_unprotected{tenant="acme"}',
         [{"labels": 'lifeboat_tenant_unprotected{database="acme",found="listed",instance="db3:9100",job="node",'
                     'reason="erased",tenant="acme"}', "value": 0}]),
    ])


def test_rules_and_dashboard_read_only_metrics_that_are_written():
    recorded = set()
    exprs = []
    for path in monitoring.RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                recorded.add(rule.get("record"))
                exprs.append((rule.get("alert") or rule["record"], rule["expr"]))
    exprs += monitoring.dashboard_queries()
    known = written_names() | recorded
    unknown = sorted(set((where, name) for where, expr in exprs
                         for name in re.findall(r"[a-z_:]*lifeboat[a-z_:]*", expr) if name not in known))
    assert unknown == []
    board = json.loads(monitoring.DASHBOARD.read_text())
    assert len(set(p["id"] for p in board["panels"])) == len(board["panels"])
    assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"])
