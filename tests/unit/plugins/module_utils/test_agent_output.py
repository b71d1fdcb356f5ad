"""What the agent prints: logfmt lines, journal priorities, the live table."""

import io
import os
import re
import tempfile

import pytest

from lifeboat_engine import agent_output
from lifeboat_engine.agent_runner import Outcome


@pytest.mark.parametrize("value, text", [
    ("acme", "acme"),
    ("/var/backups/lifeboat/acme/acme-20260101T030000Z.pgdump.zst.age",
     "/var/backups/lifeboat/acme/acme-20260101T030000Z.pgdump.zst.age"),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("line\nbreak", '"line\\nbreak"'),
    ("", '""'),
    (None, '""'),
    (True, "true"),
    (1.23456, "1.235"),
    (42, "42"),
    ("a=b", '"a=b"'),
])
def test_logfmt_values(value, text):
    assert agent_output.logfmt_value(value) == text


def test_logfmt_drops_missing_values():
    assert agent_output.logfmt([("op", "backup"), ("tenant", "acme"), ("option", None), ("n", 0)]) == \
        "op=backup tenant=acme n=0"


def test_journal_priority_prefix_only_when_stdout_is_the_journal():
    buf = io.StringIO()
    log = agent_output.Log(buf, journal=True)
    log.line([("op", "backup"), ("status", "failed")], "err")
    log.line([("op", "backup"), ("status", "ok")])
    assert buf.getvalue() == "<3>op=backup status=failed\n<6>op=backup status=ok\n"
    buf = io.StringIO()
    agent_output.Log(buf, journal=False).line([("op", "backup")], "err")
    assert buf.getvalue() == "op=backup\n"


def test_stdout_is_the_journal_when_journal_stream_names_it():
    with tempfile.TemporaryFile("w") as f:
        st = os.fstat(f.fileno())
        assert agent_output.stdout_is_journal({"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}, f)
        assert not agent_output.stdout_is_journal({"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino + 1)}, f)
        assert not agent_output.stdout_is_journal({}, f)


def test_progress_is_wanted_on_a_terminal_only():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert agent_output.Progress.wanted(Tty(), {"TERM": "xterm"})
    assert not agent_output.Progress.wanted(Tty(), {"TERM": "dumb"})
    assert not agent_output.Progress.wanted(io.StringIO(), {"TERM": "xterm"})


def test_progress_redraws_in_place():
    buf = io.StringIO()
    progress = agent_output.Progress(buf, "backup", every=0)
    a, b = Outcome("acme"), Outcome("globex")
    a.status, a.started, a.bytes = "running", 0.0, 5_000_000
    progress.update([a, b])
    first = buf.getvalue()
    assert "\x1b[" not in first.split("\n")[0][4:] and "acme" in first and "5.0 MB" in first
    progress.update([a, b], final=True)
    second = buf.getvalue()[len(first):]
    assert second.startswith("\x1b[3A"), "moves up over the 3 lines it drew"
    rows = [re.sub(r"\x1b\[[0-9]*[A-Za-z]|\r", "", line) for line in second.split("\n")]
    assert rows[0].split() == ["TENANT", "STATE", "BYTES", "RATE", "ELAPSED"]
    assert rows[2].split()[:2] == ["globex", "pending"]


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1_500_000, "1.5 MB"),
                                     (2e12, "2.0 TB")])
def test_human_bytes(n, text):
    assert agent_output.human_bytes(n) == text


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (600, "10m"), (93600, "26h00m"), (200000, "2d07h")])
def test_human_age(seconds, text):
    assert agent_output.human_age(seconds) == text


def test_table_pads_columns():
    text = agent_output.table(["A", "LONGER"], [["xyz", 1], ["q", None]])
    assert text == "A    LONGER\nxyz  1\nq\n"
