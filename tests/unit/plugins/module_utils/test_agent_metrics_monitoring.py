"""The metrics the shipped alerts need (monitoring/rules): budgets, artifact times, and whether a run started."""

import json
import re

from lifeboat_engine import agent, agent_metrics, discovery, naming
from lifeboat_engine._agent import operations
from lifeboat_engine.agent_runner import Outcome
from lifeboat_engine.locking import FileLock

from test_agent_metrics import textfile_is_valid

STAMP = "20260102T030405Z"
WHEN = naming.parse_stamp(STAMP).timestamp()


def outcome(status, **info):
    o = Outcome("acme")
    o.status, o.info = status, info
    return o


def test_verify_writes_the_verified_artifacts_time_and_the_budget():
    figures = operations._figures_verify(outcome("ok", artifact="acme-%s.pgdump.zst.age" % STAMP))
    assert figures == {"artifact_time": WHEN}
    assert operations._figures_verify(outcome("ok", artifact="/r/acme/acme-%s.sqlite.zst.age" % STAMP)) == figures
    assert operations._figures_verify(outcome("failed", artifact="acme-%s.pgdump.zst.age" % STAMP)) == {}
    entries = {"acme": dict(figures, last_run=1.0, last_status="ok", duration_seconds=2.0)}
    text = agent_metrics.render("verify", entries, {"finished": 3.0, "ok": 1, "budget": 691200})
    assert textfile_is_valid(text)
    assert 'lifeboat_verify_artifact_timestamp_seconds{tenant="acme"} %r' % WHEN in text
    assert "lifeboat_verify_budget_seconds 691200\n" in text
    assert "budget" not in agent_metrics.render("backup", entries, {"finished": 3.0, "budget": 1})


def test_anonymize_writes_its_cutoff_and_pii_budget():
    figures = operations._figures_anonymize(outcome("skipped", rows_scrubbed=0, cutoff="2026-01-02T03:04:05Z",
                                                    older_than_days=30))
    assert figures == {"rows_scrubbed": 0, "cutoff_time": WHEN, "pii_budget": 30 * 86400}
    assert operations._figures_anonymize(outcome("failed")) == {}
    text = agent_metrics.render("anonymize", {"acme": dict(figures, last_run=1.0, last_status="ok")}, {"finished": 2})
    assert textfile_is_valid(text)
    assert 'lifeboat_anonymize_cutoff_timestamp_seconds{tenant="acme"} %d' % WHEN in text
    assert 'lifeboat_anonymize_pii_budget_seconds{tenant="acme"} 2592000' in text


def test_protection_writes_each_tenants_rpo_and_newest_artifact():
    listed = [{"name": n, "engine": "postgresql", "database": n, "schema": None, "found": "listed", "rule": None,
               "rpo": 3600} for n in ("acme", "fresh", "never")]
    found = discovery.Found(listed)
    now = naming.parse_stamp("20260103T000000Z")
    entries = discovery.protection(found, lambda n: ({"acme": STAMP}.get(n), None), now,
                                   fresh={"fresh": "fresh-20260102T235959Z.pgdump.zst.age"})
    text = agent_metrics.render_protection(entries, {"finished": 1, "operation": "backup", "discovery": None})
    assert textfile_is_valid(text)
    assert 'lifeboat_tenant_rpo_seconds{tenant="never"} 3600' in text
    assert 'lifeboat_tenant_newest_artifact_timestamp_seconds{tenant="acme"} %r' % WHEN in text
    assert ('lifeboat_tenant_newest_artifact_timestamp_seconds{tenant="fresh"} %r'
            % naming.parse_stamp("20260102T235959Z").timestamp() in text), "the artifact this run wrote"
    assert 'newest_artifact_timestamp_seconds{tenant="never"}' not in text, "no artifact: no sample"
    # a name set (older callers): a fresh tenant's artifact is as new as the run
    entries = discovery.protection(found, lambda n: (None, None), now, fresh={"fresh"})
    assert [e["newest_time"] for e in entries if e["tenant"] == "fresh"] == [now.timestamp()]


def test_start_metrics_say_why_a_run_did_nothing():
    text = agent_metrics.render_start("prune", "locked", 100.0, 40.0)
    assert textfile_is_valid(text)
    assert 'lifeboat_agent_refused{op="prune",reason="locked"} 1' in text
    assert 'lifeboat_agent_refused{op="prune",reason="config-error"} 0' in text
    assert 'lifeboat_agent_lock_holder_since_timestamp_seconds{op="prune"} 40.0' in text
    ran = agent_metrics.render_start("prune", None, 100.0, 40.0)
    assert re.findall(r'refused\{.*\} (\d)', ran) == ["0", "0"] and "holder" not in ran
    assert 'lifeboat_agent_start_timestamp_seconds{op="prune"} 100.0' in ran


def _agent_files(tmp_path, config):
    (tmp_path / "metrics").mkdir()
    conf = tmp_path / "lifeboat.yml"
    conf.write_text(json.dumps(dict({"metrics_dir": str(tmp_path / "metrics"), "state_dir": str(tmp_path / "state"),
                                     "lock_file": str(tmp_path / "state" / "agent.lock")}, **config)))
    env = tmp_path / "tenants.env"
    env.write_text('TENANTS="acme"\n')
    return ["--config", str(conf), "--tenants-env", str(env)]


def test_a_configuration_error_is_written_for_the_alerts(tmp_path):
    argv = _agent_files(tmp_path, {"repository": str(tmp_path / "repo")})  # no recipients: a configuration error
    assert agent.main(argv + ["--no-progress", "backup"]) == agent.EXIT_CONFIG
    text = (tmp_path / "metrics" / "lifeboat_agent_backup.prom").read_text()
    assert 'lifeboat_agent_refused{op="backup",reason="config-error"} 1' in text
    assert agent.main(argv + ["--no-progress", "backup", "--check"]) == agent.EXIT_CONFIG
    assert (tmp_path / "metrics" / "lifeboat_agent_backup.prom").read_text() == text, "check mode records nothing"


def test_a_run_refused_by_the_host_lock_is_written_with_its_holder(tmp_path):
    argv = _agent_files(tmp_path, {"repository": str(tmp_path / "repo")})
    (tmp_path / "state").mkdir()
    holder = FileLock(str(tmp_path / "state" / "agent.lock"), "lifeboat backup").acquire()
    try:
        assert agent.main(argv + ["prune"]) == agent.EXIT_LOCKED
    finally:
        holder.release()
    text = (tmp_path / "metrics" / "lifeboat_agent_prune.prom").read_text()
    assert 'lifeboat_agent_refused{op="prune",reason="locked"} 1' in text
    assert "lifeboat_agent_lock_holder_since_timestamp_seconds" in text
    agent.main(argv + ["prune"])  # the lock is free: the run starts (and finds nothing to prune)
    text = (tmp_path / "metrics" / "lifeboat_agent_prune.prom").read_text()
    assert 'lifeboat_agent_refused{op="prune",reason="locked"} 0' in text
