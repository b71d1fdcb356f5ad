"""The agent's state between runs and its node_exporter textfile metrics."""

import json
import os
import re
import stat

import pytest

from lifeboat_engine import agent_metrics
from lifeboat_engine.errors import LifeboatError

LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? -?[0-9.e+-]+$')


def textfile_is_valid(text):
    """The node_exporter textfile format: HELP and TYPE once per metric, before its samples."""
    seen_type = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in seen_type, "TYPE twice for %s" % name
            seen_type.add(name)
            continue
        assert LINE.match(line), "malformed sample %r" % line
        name = re.split(r"[{ ]", line, 1)[0]
        assert name in seen_type, "sample before its TYPE: %r" % line
    return True


def test_a_failed_run_keeps_the_last_success(tmp_path):
    state = agent_metrics.State(str(tmp_path))
    state.record("backup", "acme", True, 1000.0, 2.5, {"size_stored": 123, "size_raw": 456})
    state.save()
    state = agent_metrics.State(str(tmp_path)).load()
    state.record("backup", "acme", False, 2000.0, 0.5, {}, error="pg_dump failed")
    entry = state.tenants("backup")["acme"]
    assert entry["last_run"] == 2000.0 and entry["last_success"] == 1000.0
    assert entry["last_status"] == "failed" and entry["error"] == "pg_dump failed"
    assert entry["size_stored"] == 123, "the last success's figures stay"


def test_a_damaged_state_file_starts_over(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    state = agent_metrics.State(str(tmp_path)).load()
    assert state.tenants("backup") == {}


def test_state_file_is_private_and_written_atomically(tmp_path):
    d = tmp_path / "state"
    state = agent_metrics.State(str(d))
    state.record("verify", "acme", True, 1.0, 1.0)
    state.save()
    assert stat.S_IMODE(os.stat(d / "state.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert json.loads((d / "state.json").read_text())["operations"]["verify"]["acme"]["last_status"] == "ok"
    assert [p.name for p in d.iterdir()] == ["state.json"]


def test_rendered_metrics_are_valid_textfile_format():
    entries = {
        "acme": {"last_run": 2000.0, "last_success": 1000.0, "last_status": "failed", "duration_seconds": 0.5,
                 "size_stored": 123, "size_raw": 456},
        "glo\"bex": {"last_run": 2000.0, "last_success": 2000.0, "last_status": "ok", "duration_seconds": 3,
                     "size_stored": 7, "size_raw": 9},
        "new": {"last_run": 2000.0, "last_status": "failed", "duration_seconds": 0.1},
    }
    text = agent_metrics.render("backup", entries, {"finished": 2000.5, "ok": 1, "failed": 2})
    assert textfile_is_valid(text)
    assert 'lifeboat_backup_status{tenant="acme"} 0' in text
    assert 'lifeboat_backup_status{tenant="glo\\"bex"} 1' in text
    assert 'lifeboat_backup_last_success_timestamp_seconds{tenant="acme"} 1000.0' in text
    assert 'lifeboat_backup_last_success_timestamp_seconds{tenant="new"}' not in text, "never succeeded: no sample"
    assert 'lifeboat_backup_size_bytes{tenant="acme"} 123' in text
    assert 'lifeboat_backup_tenants{status="failed"} 2' in text
    assert "lifeboat_backup_run_timestamp_seconds 2000.5" in text


@pytest.mark.parametrize("operation, figure", [("anonymize", "rows_scrubbed"), ("prune", "artifacts_deleted"),
                                               ("verify", None)])
def test_each_operation_has_its_own_figures(operation, figure):
    text = agent_metrics.render(operation, {"a": {"last_run": 1.0, "last_status": "ok", "rows_scrubbed": 5,
                                                  "deleted": 2}}, {"finished": 1.0})
    assert textfile_is_valid(text)
    assert ("lifeboat_%s_%s" % (operation, figure) in text) if figure else "rows_scrubbed" not in text


def test_write_replaces_the_file_atomically_and_leaves_no_temp(tmp_path):
    path = agent_metrics.write(str(tmp_path), "backup", {}, {"finished": 1.0})
    first_inode = os.stat(path).st_ino
    agent_metrics.write(str(tmp_path), "backup", {"a": {"last_run": 2.0, "last_status": "ok"}}, {"finished": 2.0})
    assert os.stat(path).st_ino != first_inode, "a new file renamed over the old one"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ["lifeboat_backup.prom"]


def test_write_into_a_missing_folder_names_the_key(tmp_path):
    with pytest.raises(LifeboatError) as e:
        agent_metrics.write(str(tmp_path / "missing"), "backup", {}, {"finished": 1.0})
    assert e.value.option == "metrics_dir" and "metrics_dir" in e.value.msg


def test_render_refuses_odd_operation_names():
    with pytest.raises(ValueError):
        agent_metrics.render("back up", {}, {"finished": 1.0})
