import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "molecule"))

import pytest  # noqa: E402

import lbmolecule  # noqa: E402

SCENARIO_DIR = os.path.join(lbmolecule.ROOT, "build", "molecule", "dr")


@pytest.fixture(scope="module")
def dr():
    return lbmolecule.host("lb-dr")


@pytest.fixture(scope="module")
def verified_state():
    """Checksums of every table, the roles and grants, taken right after the verified backup."""
    with open(os.path.join(SCENARIO_DIR, "verified-state.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def report():
    """The JSON report dr_restore.yml wrote on the controller (the only one of this run)."""
    folder = os.path.join(SCENARIO_DIR, "reports")
    found = sorted(n for n in os.listdir(folder) if n.startswith("dr_restore-") and n.endswith(".json"))
    assert len(found) == 1, found
    with open(os.path.join(folder, found[0])) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def s3():
    import boto3

    return boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % os.environ["LIFEBOAT_S3_PORT"],
                        region_name="us-east-1", aws_access_key_id="lifeboat-molecule",
                        aws_secret_access_key="lifeboat-molecule-secret")
