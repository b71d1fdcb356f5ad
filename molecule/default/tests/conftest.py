import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "molecule"))

import pytest  # noqa: E402

import lbmolecule  # noqa: E402


@pytest.fixture(scope="module")
def db():
    return lbmolecule.host("lb-db")
