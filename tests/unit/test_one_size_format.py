"""Sizes are written one way for people (issue 18): naming.human_size, decimal SI units.

The modules' messages, the agent's status, the filters of the playbooks' tables
(lifeboat.backup.human_size, report_table's ``size`` format) and the demo's table
all call naming.human_size; no other code formats a size in decimal units by hand,
and nothing writes ``KB`` (kB is the SI symbol). Fixed limits that are powers of two
(S3's 5 MiB parts, a 1 MiB configuration file) are written in IEC units (MiB, GiB),
exactly, where they are defined.
"""

import re
import sys

import lbtest

sys.path.insert(0, str(lbtest.COLLECTIONS))  # the filters import the engine through the collection

# pylint: disable=wrong-import-position
from ansible_collections.lifeboat.backup.plugins.filter import report  # noqa: E402

lbtest.load_engine()
from lifeboat_engine import agent_output, naming, prune  # noqa: E402  pylint: disable=import-error
BY_HAND = re.compile(r"%[-0-9.]*[dfi] ?(?:KB|kB|MB|GB|TB)(?!/s)")
WRONG_CASE = re.compile(r"\d ?KB\b|['\"]KB\b")


def sources():
    roots = [lbtest.ROOT / "plugins", lbtest.ROOT / "scripts"]
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_only_naming_formats_sizes_in_decimal_units():
    found = []
    for path in sources():
        if path.name == "naming.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if BY_HAND.search(line) or WRONG_CASE.search(line):
                found.append("%s:%d: %s" % (path.relative_to(lbtest.ROOT), number, line.strip()))
    assert found == [], "format sizes with naming.human_size:\n" + "\n".join(found)


def test_the_filter_and_the_agent_use_the_engine_function():
    assert report.FilterModule().filters()["human_size"](112_900) == "112.9 kB"
    assert agent_output.human_bytes(112_900) == naming.human_size(112_900) == "112.9 kB"


def test_a_prune_message_gives_the_deleted_size_in_the_same_format(tmp_path):
    repo = tmp_path / "repo"
    (repo / "acme").mkdir(parents=True)
    result = prune.run({"repository": str(repo), "keep_last": 1}, check_mode=True)
    assert "artifact(s) (0 B) of" in result["msg"], result["msg"]
