import re

import lbtest
from lifeboat_engine import version


def test_engine_version_matches_galaxy_yml():
    galaxy = (lbtest.ROOT / "galaxy.yml").read_text()
    assert re.search(r"^version:\s*(\S+)", galaxy, re.M).group(1) == version.TOOL_VERSION
