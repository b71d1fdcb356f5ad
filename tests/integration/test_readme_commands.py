"""The README's commands work as written (issue 23).

In a copy of the checkout, after the first set-up command (``make demo``,
with the checkout's venv: the suite runs inside the second one, ``make
test``), every command of the README's shell blocks that is meant for the
embedded default runs as written, one after the other in one fresh shell
(HOME in a temporary folder, a plain PATH, no venv activated beforehand):
the venv activation, a fleet backup of the demo tenants, the module and
role documentation, the collection's build and install, and ``ansible-doc``
of the installed collection from another folder.

Left out: the two set-up commands themselves, and the blocks that restore
an artifact by hand with ``age``/``zstd``/``pg_restore`` (they name an
example key and artifact, not the demo's).
"""

import os
import re
import shlex
import shutil
import subprocess

import pytest

import lbtest

FENCE_RE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
SETUP = ("make demo", "make test")


def readme_shell_lines():
    """The README's shell command lines, in order, as written."""
    lines = []
    for lang, body in FENCE_RE.findall((lbtest.ROOT / "README.md").read_text(encoding="utf-8")):
        if lang.lower() not in ("sh", "bash", "shell", ""):
            continue
        lines += [ln for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return lines


def meant_for_the_embedded_default(line):
    words = shlex.split(line, comments=True)
    if " ".join(words) in SETUP:
        return False
    return not (words and words[0] in ("age", "zstd", "pg_restore"))


@pytest.fixture(scope="module")
def checkout_after_make_demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("readme")
    src = base / "checkout"
    skip = shutil.ignore_patterns(".git", ".venv", "build", ".hypothesis", ".pytest_cache", "__pycache__", ".demo",
                                  ".ansible", "*.tar.gz")
    shutil.copytree(str(lbtest.ROOT), str(src), ignore=skip, symlinks=True)
    # The checkout's venv, used as it is: make must not reinstall into it (-o: its stamp counts as current).
    os.symlink(str(lbtest.ROOT / ".venv"), str(src / ".venv"))
    home = base / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb"}
    proc = subprocess.run(["make", "-o", ".venv/bin/.installed-demo", "demo"], cwd=str(src), env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the demo's table: sizes and seconds as every playbook table shows them, and the rotation it did
    assert "SIZE" in proc.stdout and "SECONDS" in proc.stdout and " kB " in proc.stdout, proc.stdout[-3000:]
    said = " ".join(proc.stdout.split())  # the YAML callback folds long lines
    assert "Rotation (keep_daily 7" in said and "kept 3 artifact(s), deleted 0" in said, proc.stdout[-3000:]
    return src, env


def test_the_readme_has_commands_for_the_embedded_default():
    lines = [ln for ln in readme_shell_lines() if meant_for_the_embedded_default(ln)]
    assert lines and lines[0].split("#")[0].strip() == ". .venv/bin/activate", lines


def test_every_readme_command_works_as_written(checkout_after_make_demo):
    src, env = checkout_after_make_demo
    lines = [ln for ln in readme_shell_lines() if meant_for_the_embedded_default(ln)]
    script = "set -e\n" + "".join("echo %s\n%s\n" % (shlex.quote("+ " + ln), ln) for ln in lines)
    proc = subprocess.run(["bash", "-c", script], cwd=str(src), env=env, capture_output=True, text=True,
                          check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for ln in lines:
        assert "+ " + ln in proc.stdout, "not run: %s\n%s" % (ln, out[-3000:])
    # Nothing warns: no deprecation, no plugin that failed to load, no missing collection.
    noise = [x for x in out.splitlines() if re.search(r"WARNING|DEPRECATION|Deprecation|ERROR", x)]
    assert noise == [], "\n".join(noise)
    home = env["HOME"]
    assert os.path.isdir(os.path.join(home, ".ansible", "collections", "ansible_collections", "lifeboat", "backup"))
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
