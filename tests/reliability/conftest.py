"""The S3 fixtures of tests/integration (moto on loopback), for the reliability suite too."""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "lbtest_integration_fixtures", pathlib.Path(__file__).resolve().parents[1] / "integration" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

moto = _fixtures.moto
s3 = _fixtures.s3
fault_proxy = _fixtures.fault_proxy
