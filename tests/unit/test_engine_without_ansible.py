"""The engine must run where Ansible is not installed (the host agent)."""

import json
import subprocess
import sys
import textwrap

import lbtest

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class NoAnsible(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ansible", "ansible_collections"):
                raise ImportError("ansible is not installed here (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoAnsible())
""")


def test_engine_imports_and_backs_up_with_ansible_blocked(tmp_path):
    db = tmp_path / "t.db"
    code = BLOCKER + textwrap.dedent("""
        import json, os, pkgutil, sqlite3, importlib
        sys.path.insert(0, %(tests)r)
        import lbtest
        engine = lbtest.load_engine()
        # Every module, in the private subpackages too.
        names = [m.name[len("lifeboat_engine."):] for m in pkgutil.walk_packages(engine.__path__, "lifeboat_engine.")]
        for name in names:
            importlib.import_module("lifeboat_engine." + name)
        from lifeboat_engine import backup, crypto
        c = sqlite3.connect(%(db)r); c.execute("CREATE TABLE t (x)"); c.execute("INSERT INTO t VALUES (1)"); c.commit()
        ident, pub = crypto.generate_identity()
        res = backup.run({"tenant": "t1", "engine": "sqlite", "path": %(db)r, "repository": %(repo)r, "recipients": [pub]})
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("ansible", "ansible_collections"))
        print(json.dumps({"modules": names, "rows": res["rows"], "ansible": loaded}))
    """ % {"tests": str(lbtest.ROOT / "tests"), "db": str(db), "repo": str(tmp_path / "repo")})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rows"] == 1
    assert out["ansible"] == []
    assert {"backup", "repository", "pipeline", "crypto", "postgres", "sqlite", "naming"} <= set(out["modules"])


def test_engine_files_never_import_ansible_textually():
    for path in sorted(lbtest.ENGINE_DIR.rglob("*.py")):
        text = path.read_text()
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert "ansible" not in stripped, "%s imports Ansible: %s" % (path.name, stripped)


def test_the_agent_wheel_lists_every_engine_package():
    """pyproject.toml names each package of the engine's tree: a subpackage
    it forgets would be missing from the host agent's wheel."""
    import tomllib

    conf = tomllib.loads((lbtest.ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert conf["package-dir"] == {"lifeboat_engine": "plugins/module_utils"}
    found = {"lifeboat_engine"}
    for init in lbtest.ENGINE_DIR.rglob("__init__.py"):
        rel = init.parent.relative_to(lbtest.ENGINE_DIR)
        if rel.parts:
            found.add(".".join(("lifeboat_engine",) + rel.parts))
    assert sorted(conf["packages"]) == sorted(found), "pyproject.toml's packages must be %s" % sorted(found)
