"""The fleet playbooks on the embedded default of a fresh clone (issue 18).

A copy of the checkout without ``.demo/`` (as ``git clone`` leaves it), with
the collection linked under ``build/collections`` as the Makefile's
``collection`` target does, and ansible.cfg's default inventory
(``inventories/local``): each playbook creates what the embedded default
needs (playbooks/tasks/lifeboat_demo.yml: the demo's folders, age key pair and
SQLite tenants, and a first backup for the playbooks that read artifacts) and
succeeds, without ``make demo`` first; a second run creates nothing. A run
where every tenant failed says that none was done, and variables the
operator set to paths outside ``.demo/`` are never created.

Cost: one copy of the checkout (no .git, venv or build) and seven runs of
ansible-playbook on three small SQLite tenants, about 70 s on 2 cores.
"""

import json
import os
import shutil
import stat
import subprocess

import pytest

import lbtest

SKIP = shutil.ignore_patterns(".git", ".venv", "build", ".hypothesis", ".pytest_cache", "__pycache__", ".demo",
                              ".ansible", "*.tar.gz", "tests", "benchmarks", "molecule", "docs")
TENANTS = ["acme", "globex", "initech"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    base = tmp_path_factory.mktemp("fresh")
    src = base / "clone"
    shutil.copytree(str(lbtest.ROOT), str(src), ignore=SKIP, symlinks=True)
    link = src / "build" / "collections" / "ansible_collections" / "lifeboat" / "backup"
    link.parent.mkdir(parents=True)
    os.symlink("../../../..", str(link))  # as the Makefile's collection target
    home = base / "home"
    home.mkdir()
    return src, home


def run(clone, name, *extra):
    """``ansible-playbook playbooks/<name>.yml`` in the clone, with its ansible.cfg and nothing else."""
    src, home = clone
    env = lbtest.ansible_env({
        "ANSIBLE_COLLECTIONS_PATH": str(src / "build" / "collections"),
        "ANSIBLE_CONFIG": str(src / "ansible.cfg"),
        "HOME": str(home),
    })
    proc = subprocess.run([str(lbtest.BIN / "ansible-playbook"), "playbooks/%s.yml" % name] + list(extra),
                          cwd=str(src), env=env, capture_output=True, text=True, check=False)
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        data = {}
    return proc, data


def task_results(data, prefix):
    """{task name: [host results]} of the tasks whose name starts with ``prefix``."""
    out = {}
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"].startswith(prefix):
                out.setdefault(task["task"]["name"], []).extend(task["hosts"].values())
    return out


def messages(data):
    said = []
    for results in task_results(data, "").values():
        for res in results:
            msg = res.get("msg", "")
            said += msg if isinstance(msg, list) else [msg]
    return " ".join(" ".join(str(m) for m in said).split())


@pytest.mark.parametrize("name, extra", [
    ("backup", ()),
    ("verify", ()),
    ("drill", ()),
    ("restore", ("-e", "tenant=acme", "-e", "confirm_restore=acme")),
])
def test_a_playbook_on_the_embedded_default_works_on_a_fresh_clone(clone, name, extra):
    src = clone[0]
    shutil.rmtree(str(src / ".demo"), ignore_errors=True)
    proc, data = run(clone, name, *extra)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    demo = src / ".demo"
    identity = demo / "keys" / "demo-identity.txt"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert stat.S_IMODE(demo.stat().st_mode) == 0o700
    assert (demo / "keys" / "demo-recipients.txt").read_text().startswith("age1")
    assert all((demo / "tenants" / (t + ".db")).is_file() for t in TENANTS)  # (restore keeps a safety copy beside)
    # every tenant has a complete artifact: backup made it, or the first backup of the others
    for tenant in TENANTS:
        assert list((demo / "repository" / tenant).glob("*.manifest.json")), (name, tenant)
    if name == "backup":
        assert "All 3 backup(s) are done." in messages(data), messages(data)[-2000:]
    if name == "verify":
        assert "All 3 artifact(s) PASSED verification." in messages(data), messages(data)[-2000:]


def test_a_second_run_creates_nothing(clone):
    src = clone[0]
    shutil.rmtree(str(src / ".demo"), ignore_errors=True)
    first, data = run(clone, "verify")
    assert first.returncode == 0, first.stdout[-3000:]
    identity = (src / ".demo" / "keys" / "demo-identity.txt").read_text()
    proc, data = run(clone, "verify")
    assert proc.returncode == 0, proc.stdout[-3000:]
    prepared = task_results(data, "Create the demo") | task_results(data, "Write the demo") \
        | task_results(data, "Take a first backup")
    assert len(prepared) == 5, sorted(prepared)
    changed = [name for name, results in prepared.items() if any(r.get("changed") for r in results)]
    assert changed == [], changed
    assert (src / ".demo" / "keys" / "demo-identity.txt").read_text() == identity


def test_a_run_where_every_backup_failed_says_none_was_done(clone, tmp_path):
    """The operator's own recipients file (missing here) is theirs: not created, and every backup fails."""
    src = clone[0]
    shutil.rmtree(str(src / ".demo"), ignore_errors=True)
    theirs = tmp_path / "their-recipients.txt"
    proc, data = run(clone, "backup", "-e", "lifeboat_recipients_file=%s" % theirs,
                     "-e", "lifeboat_report_dir=%s" % (tmp_path / "reports"))
    assert proc.returncode != 0, proc.stdout[-3000:]
    said = messages(data)
    assert not theirs.exists()
    assert not list((src / ".demo" / "keys").iterdir())  # no demo key pair either: it would not match theirs
    assert "None of the 3 backup(s) was done" in said, said[-3000:]
    assert "All 3 backup(s) FAILED" in said and "No backup was done in this run." in said, said[-3000:]
    assert "other backups are done" not in said and "other backup(s) are done" not in said, said[-3000:]
    assert "--limit localhost -e tenants=acme,globex,initech" in said, said[-3000:]


def test_a_run_where_some_backups_failed_says_which_were_done(clone, tmp_path):
    src = clone[0]
    tenants = [{"name": "acme", "engine": "sqlite", "path": str(src / ".demo" / "tenants" / "acme.db"), "guests": 20},
               {"name": "ghost", "engine": "sqlite", "path": str(tmp_path / "ghost.db")}]
    proc, data = run(clone, "backup", "-e", json.dumps({"lifeboat_tenants": tenants}),
                     "-e", "lifeboat_report_dir=%s" % (tmp_path / "reports"))
    assert proc.returncode != 0, proc.stdout[-3000:]
    said = messages(data)
    assert "1 of 2 backup(s) are done; the others FAILED or were skipped" in said, said[-3000:]
    assert "1 of 2 backup(s) FAILED" in said and "1 other backup(s) are done." in said, said[-3000:]
    assert not (tmp_path / "ghost.db").exists()  # outside .demo/: never created


def test_a_check_run_on_a_fresh_clone_says_what_would_be_done(clone, tmp_path):
    """--check: the demo's fixtures are made (they are not the operator's data), no artifact and no report."""
    src = clone[0]
    shutil.rmtree(str(src / ".demo"), ignore_errors=True)
    proc, data = run(clone, "backup", "--check", "-e", "lifeboat_report_dir=%s" % (tmp_path / "reports"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    said = messages(data)
    assert "Check mode, nothing was written: 3 of 3 backup(s) would be done." in said, said[-3000:]
    assert "(not written: check mode)" in said, said[-3000:]
    assert not (tmp_path / "reports").exists()
    assert not list((src / ".demo").glob("repository/*/*.age"))
