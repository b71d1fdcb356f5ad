"""The age worker starts in a fresh interpreter that cannot import the packages above the
engine: in an Ansible module the engine is ansible_collections.lifeboat.backup.plugins.module_utils,
inside the module's zip, which the child does not have on its path (Molecule's dr scenario)."""

import json
import os
import subprocess
import sys

import pyrage

import lbtest
from lifeboat_engine import age_stream

DOTTED = "lbtest_nowhere.lifeboat.backup.plugins.module_utils"


def test_the_worker_runs_under_a_dotted_package_name_whose_parents_the_child_cannot_import():
    identity = pyrage.x25519.Identity.generate()
    key_r, key_w = os.pipe()
    st_r, st_w = os.pipe()
    argv = [sys.executable, "-c", age_stream.BOOTSTRAP, DOTTED, json.dumps([str(lbtest.ENGINE_DIR)]),
            "encrypt", str(key_r), str(st_w), "0"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=(key_r, st_w), cwd="/")
    os.close(key_r)
    os.close(st_w)
    with os.fdopen(key_w, "w") as f:
        f.write(str(identity.to_public()) + "\n")
    out, err = proc.communicate(b"hello")
    with os.fdopen(st_r) as f:
        status = f.read()
    assert proc.returncode == 0, err.decode()
    assert json.loads(status) == {"ok": True}
    assert pyrage.decrypt(out, [identity]) == b"hello"
