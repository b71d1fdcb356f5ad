import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "molecule"))

import pytest  # noqa: E402

import lbmolecule  # noqa: E402


@pytest.fixture(scope="module")
def db2():
    return lbmolecule.host("lb-db2")


@pytest.fixture(scope="module")
def verifier():
    return lbmolecule.host("lb-verifier")


@pytest.fixture(scope="module")
def s3():
    import boto3

    return boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % os.environ["LIFEBOAT_S3_PORT"],
                        region_name="us-east-1", aws_access_key_id="lifeboat-molecule",
                        aws_secret_access_key="lifeboat-molecule-secret")
