"""The agent role installs the collection's Prometheus rules on a Prometheus host
(agent_prometheus_rules_dir, entry point `prometheus`), and drill.yml's task file writes
the drill's metrics; both through the real ansible-playbook on localhost."""

import filecmp
import json

import lbtest
import monitoring
from lifeboat_engine import agent_config


def install_rules(folder, check=False):
    task = {"name": "rules", "ansible.builtin.include_role": {"name": "lifeboat.backup.agent", "tasks_from": "prometheus"},
            "vars": {"agent_prometheus_rules_dir": str(folder)}}
    run = lbtest.run_playbook([task], check=check)
    assert run.rc == 0, run
    ours = [r for r in run.results if r.get("action") in ("ansible.builtin.file", "ansible.builtin.copy")]
    assert len(ours) == 2, run
    return ours


def test_the_rules_are_installed_once_and_then_left_alone(tmp_path):
    folder = tmp_path / "rules.d" / "lifeboat"
    assert all(r["changed"] for r in install_rules(folder, check=True))
    assert not folder.exists(), "check mode writes nothing"
    assert all(r["changed"] for r in install_rules(folder))
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(p.name for p in monitoring.RULES)
    assert filecmp.cmpfiles(str(folder), str(monitoring.RULES[0].parent), names, shallow=False)[0] == names
    assert oct(folder.joinpath(names[0]).stat().st_mode & 0o777) == "0o644"
    assert [r["changed"] for r in install_rules(folder)] == [False, False], "a second run changes nothing"


def test_the_entry_point_says_which_folder_it_needs():
    run = lbtest.run_playbook([{"name": "rules", "ansible.builtin.include_role": {
        "name": "lifeboat.backup.agent", "tasks_from": "prometheus"}}])
    assert run.rc != 0 and "Set agent_prometheus_rules_dir" in run.stdout, run


def test_the_drill_writes_its_metrics_when_asked(tmp_path):
    rows = [{"host": "v1", "tenant": "acme", "rto_seconds": 12.5, "rto_budget_seconds": 14400, "rpo_seconds": 600,
             "rpo_budget_seconds": 86400, "status": "PASS"}]
    tasks_file = lbtest.ROOT / "playbooks" / "tasks" / "drill_metrics.yml"
    task = {"name": "drill metrics", "ansible.builtin.include_tasks": str(tasks_file),
            "vars": {"__rows": rows, "lifeboat_drill_metrics_dir": str(tmp_path)}}
    run = lbtest.run_playbook([task])
    assert run.rc == 0, run
    samples = monitoring.parse_textfile((tmp_path / "lifeboat_drill.prom").read_text())
    assert samples[("lifeboat_drill_rto_seconds", (("host", "v1"), ("tenant", "acme")))] == 12.5
    assert samples[("lifeboat_drill_status", (("host", "v1"), ("tenant", "acme")))] == 1


def test_the_verifier_role_writes_the_verify_budget(tmp_path):
    """verifier_budget reaches the agent's 60-verify.yml as verify.budget, which the agent accepts."""
    roles = lbtest.ROOT / "roles" / "verifier"
    tasks = [{"name": "defaults", "ansible.builtin.include_vars": str(roles / "defaults" / "main.yml")},
             {"name": "vars", "ansible.builtin.include_vars": str(roles / "vars" / "main.yml")},
             {"name": "settings", "ansible.builtin.copy": {"content": "{{ __verifier_settings | to_nice_yaml }}",
                                                           "dest": str(tmp_path / "60-verify.yml"), "mode": "0600"}}]
    run = lbtest.run_playbook(tasks, extra_args=["-e", json.dumps({"verifier_repository": "s3://bucket/lifeboat",
                                                                   "verifier_budget": "9d"})])
    assert run.rc == 0, run
    text = (tmp_path / "60-verify.yml").read_text()
    checked = agent_config.check_document(agent_config.parse_yaml(text, "60-verify.yml"), "60-verify.yml")
    assert checked["verify"]["budget"] == 9 * 86400
