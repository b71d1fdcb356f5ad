"""The collection tarball holds the collection only: `ansible-galaxy collection build`
leaves out the virtualenv, build output, test and lint caches and generated results
(galaxy.yml's build_ignore), even after a full test run has left them in the checkout."""

import shutil
import subprocess
import tarfile

import pytest

import lbtest

# Left in a checkout by `make test`, `make lint`, `make molecule`, `make bench` and the demo.
LEFTOVERS = [
    ".hypothesis/examples/0a1b2c/3d4e5f",
    ".hypothesis/constants/abcdef",
    "tests/.hypothesis/examples/x",
    ".pytest_cache/v/cache/lastfailed",
    "tests/unit/.pytest_cache/README.md",
    "plugins/module_utils/__pycache__/files.cpython-311.pyc",
    "tests/unit/__pycache__/conftest.cpython-311-pytest-8.pyc",
    "roles/agent/stray.pyc",
    ".venv/bin/python",
    "build/collections/x",
    "build/molecule/wheelhouse.tar",
    ".demo/repository/acme/x",
    ".ansible/roles/x",
    ".cache/molecule/x",
    "molecule/default/.cache/x",
    "tests/output/junit/x.xml",
    "benchmarks/results/tmp/x.json",
    ".coverage",
    ".mypy_cache/x",
    ".tox/py/x",
    "lifeboat-backup-0.0.1.tar.gz",
]
FORBIDDEN_PARTS = {".hypothesis", ".pytest_cache", "__pycache__", ".venv", ".demo", ".ansible", ".cache", ".mypy_cache",
                   ".tox"}
FORBIDDEN_PREFIXES = ("build/", "tests/output/", "benchmarks/results/")
# The collection itself must be there.
EXPECTED = ["MANIFEST.json", "FILES.json", "meta/runtime.yml", "plugins/modules/pg_backup.py",
            "plugins/module_utils/files.py", "plugins/filter/report.py", "roles/agent/tasks/main.yml",
            "playbooks/backup.yml", "playbooks/tasks/lifeboat_common.yml", "README.md",
            # the agent role installs these rules on a Prometheus host; the dashboard ships beside them
            "monitoring/rules/lifeboat-alerts.yml", "monitoring/rules/lifeboat-recording.yml",
            "monitoring/dashboards/lifeboat.json"]


def _copy_checkout(dst):
    skip = shutil.ignore_patterns(".git", ".venv", "build", ".hypothesis", ".pytest_cache", "__pycache__", ".demo",
                                  ".ansible", "*.tar.gz")
    shutil.copytree(str(lbtest.ROOT), str(dst), ignore=skip, symlinks=True)


@pytest.fixture(scope="module")
def tarball_names(tmp_path_factory):
    base = tmp_path_factory.mktemp("collection")
    src = base / "src"
    _copy_checkout(src)
    for rel in LEFTOVERS:
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left over\n")
    out = base / "dist"
    proc = subprocess.run([str(lbtest.BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(src)],
                          capture_output=True, text=True, env=lbtest.ansible_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = list(out.glob("lifeboat-backup-*.tar.gz"))
    assert len(built) == 1, built
    with tarfile.open(str(built[0])) as tar:
        return [m.name for m in tar.getmembers()]


def test_the_tarball_holds_no_cache_or_generated_file(tarball_names):
    bad = [n for n in tarball_names
           if FORBIDDEN_PARTS.intersection(n.split("/")) or n.endswith((".pyc", ".tar.gz", ".coverage"))
           or (n + "/").startswith(FORBIDDEN_PREFIXES)]
    assert bad == []


def test_the_tarball_holds_the_collection(tarball_names):
    assert [n for n in EXPECTED if n not in tarball_names] == []
