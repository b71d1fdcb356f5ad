"""Every changelog fragment is what antsibull-changelog reads: YAML, a mapping of the sections of
changelogs/config.yaml (or the trivial one) to lists of non-empty strings. A plain scalar holding ': '
made two fragments invalid YAML in one session; the release would have failed on them."""

import glob
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAGMENTS = sorted(glob.glob(os.path.join(ROOT, "changelogs", "fragments", "*.y*ml")))


def sections():
    with open(os.path.join(ROOT, "changelogs", "config.yaml")) as f:
        config = yaml.safe_load(f)
    return set(name for name, _title in config["sections"]) | set([config.get("trivial_section_name", "trivial")])


def test_there_are_fragments():
    assert FRAGMENTS


@pytest.mark.parametrize("path", FRAGMENTS, ids=os.path.basename)
def test_a_fragment_is_valid(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict) and doc, "%s: not a mapping of sections" % path
    unknown = set(doc) - sections()
    assert not unknown, "%s: unknown sections %s" % (path, sorted(unknown))
    for section, entries in doc.items():
        assert isinstance(entries, list) and entries, "%s: %s is not a list" % (path, section)
        for entry in entries:
            assert isinstance(entry, str) and entry.strip(), "%s: %s holds %r, not text" % (path, section, entry)
