"""The README and the docs tell the truth about the repository (issue 23).

- No Markdown file of the collection points outside the repository (``../``
  leaving its root) or to a file of the repository that does not exist.
- The README starts with the two set-up commands, ``make demo`` and
  ``make test``.
- Every command the README's shell blocks show that starts with ``make``,
  ``ansible-playbook``, ``ansible-doc``, ``ansible-galaxy``, ``.venv/bin/...``
  or ``lifeboat`` names a Makefile target, playbook, inventory, module, role
  or file that exists, and a bare Ansible command comes after the line that
  activates the venv (without it, a fresh shell answers "command not found").

Static checks, quick and with a clear message; tests/integration/
test_readme_commands.py runs the commands themselves after ``make demo``.
"""

import fnmatch
import os
import pathlib
import re
import shlex

import pytest
import yaml

import lbtest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# Made by the Makefile or by runs, git-ignored: not the repository's files.
GENERATED = {".git", ".venv", "build", ".demo", ".ansible", ".pytest_cache", ".hypothesis", "__pycache__"}

FENCE_RE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
INLINE_CODE_RE = re.compile(r"`([^`\n]+)`")
LINK_RE = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
UP_RE = re.compile(r"(?<![\w./~-])(\.\./[\w./*-]*)")
SHELL_LANGS = ("sh", "bash", "shell", "console", "")
ANSIBLE_TOOLS = ("ansible", "ansible-playbook", "ansible-doc", "ansible-galaxy", "ansible-config",
                 "ansible-inventory", "ansible-vault", "ansible-test", "ansible-console", "ansible-pull")
VENV_TOOLS = ANSIBLE_TOOLS + ("python", "python3", "pip", "activate")


def markdown_files():
    files = [README] + sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "roles").glob("*/README.md"))
    return [f for f in files if f.is_file()]


def rel(path):
    return path.relative_to(ROOT).as_posix()


def top_level():
    return set(p.name for p in ROOT.iterdir()) - GENERATED


def inside(path):
    try:
        path.relative_to(ROOT)
        return True
    except ValueError:
        return False


def fenced_blocks(text):
    """(language, body) of every fenced code block."""
    return [(m.group(1).lower(), m.group(2)) for m in FENCE_RE.finditer(text)]


def code_words(text):
    """Every word of the inline code spans and code blocks, without quotes and punctuation around it."""
    spans = [m.group(2) for m in FENCE_RE.finditer(text)]
    prose = FENCE_RE.sub("", text)
    spans += INLINE_CODE_RE.findall(prose)
    words = []
    for span in spans:
        for line in span.splitlines():
            line = line.split(" #", 1)[0]
            for word in line.split():
                word = word.strip("\"'`,;:()[]")
                # VAR=value and --option=value: the value is the path
                if "=" in word:
                    word = word.split("=", 1)[1]
                word = word.split("::", 1)[0]  # pytest node ids
                if word:
                    words.append(word)
    return words


def is_placeholder(word):
    """``playbooks/X.yml``, ``<repository>/<tenant>/...``, ``lifeboat_<op>.prom``: a pattern, not a path."""
    if any(c in word for c in "<>{}$"):
        return True
    if "..." in word:
        return True
    return any(re.fullmatch(r"[A-Z]", pathlib.PurePosixPath(part).stem) for part in word.split("/"))


def path_problem(md, word):
    """Why ``word`` (a path-like word of ``md``) is not a file of the repository, or None."""
    if word.startswith(("http://", "https://", "mailto:", "s3://", "#", "/", "~")) or "://" in word:
        return None
    word = word.split("#", 1)[0]
    if not word:
        return None
    if word.startswith("../") or "/../" in word:
        target = (md.parent / word).resolve()
        if not inside(target):
            return "points outside the repository"
        candidates = [target]
    else:
        first = word.split("/", 1)[0]
        if "/" not in word or first not in top_level():
            return None  # not a repository path (an option value, a host path relative to somewhere else...)
        candidates = [ROOT / word, md.parent / word]
    if is_placeholder(word):
        return None
    for c in candidates:
        pattern = c.as_posix()
        if any(ch in pattern for ch in "*?["):
            if any(inside(pathlib.Path(p).resolve()) for p in sorted(pathlib.Path("/").glob(pattern.lstrip("/")))):
                return None
        elif c.exists():
            return None
    if not word.startswith("../") and any(fnmatch.fnmatchcase(p, "*/" + word.rstrip("/")) for p in repository_paths()):
        return None  # relative to a folder the text speaks of: a role's meta/argument_specs.yml
    return "names a file that does not exist in the repository"


_PATHS = []


def repository_paths():
    """Every file and folder of the repository (generated ones left out), relative to its root."""
    if not _PATHS:
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = sorted(d for d in dirs if d not in GENERATED)
            base = pathlib.Path(folder).relative_to(ROOT).as_posix()
            _PATHS.extend(n if base == "." else base + "/" + n for n in dirs + files)
    return _PATHS


def link_problem(md, target):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
        return None
    path = target.split("#", 1)[0]
    if not path:
        return None
    resolved = (md.parent / path).resolve()
    if not inside(resolved):
        return "links outside the repository"
    if not resolved.exists():
        return "links to a file that does not exist"
    return None


@pytest.mark.parametrize("md", markdown_files(), ids=rel)
def test_markdown_refers_only_to_files_of_the_repository(md):
    text = md.read_text(encoding="utf-8")
    problems = []
    for target in LINK_RE.findall(text):
        why = link_problem(md, target)
        if why:
            problems.append("link (%s): %s" % (target, why))
    words = code_words(text) + UP_RE.findall(text)
    for word in sorted(set(words)):
        if "/" not in word:
            continue
        why = path_problem(md, word)
        if why:
            problems.append("%s: %s" % (word, why))
    assert problems == [], "%s:\n  %s" % (rel(md), "\n  ".join(problems))


def test_the_path_check_catches_what_issue_23_found(tmp_path):
    """The check itself: ../shared/DESIGN.md from the root or docs/ fails; real files pass."""
    readme, doc = ROOT / "README.md", ROOT / "docs" / "CONTRIBUTING.md"
    assert path_problem(readme, "../shared/DESIGN.md") == "points outside the repository"
    assert path_problem(doc, "../shared/STYLE.md") == "names a file that does not exist in the repository"
    assert path_problem(doc, "../../shared/TESTING.md") == "points outside the repository"
    assert link_problem(readme, "../shared/DESIGN.md") == "links outside the repository"
    assert path_problem(readme, "docs/NOPE.md") == "names a file that does not exist in the repository"
    assert path_problem(readme, "meta/argument_specs.yml") is None  # each role's
    assert path_problem(readme, "meta/nope.yml") == "names a file that does not exist in the repository"
    assert path_problem(readme, "docs/DESIGN.md") is None
    assert path_problem(doc, "../README.md") is None
    assert path_problem(readme, "roles/*/meta/argument_specs.yml") is None
    assert path_problem(readme, "playbooks/X.yml") is None  # a placeholder
    assert path_problem(readme, "/etc/lifeboat/lifeboat.yml") is None  # a host's file, not the repository's
    assert link_problem(doc, "DESIGN.md") is None


# -- the README's commands ----------------------------------------------------------------------

def readme_commands():
    """Each command of the README's shell blocks, in order: (block number, command words)."""
    out = []
    for n, (lang, body) in enumerate(fenced_blocks(README.read_text(encoding="utf-8"))):
        if lang not in SHELL_LANGS:
            continue
        for line in body.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"\s*(?:&&|\|\||;)\s*", line):
                words = shlex.split(part, comments=True)
                if words:
                    out.append((n, words))
    return out


def test_readme_starts_with_the_two_setup_commands():
    first = [" ".join(words) for _n, words in readme_commands()[:2]]
    assert first == ["make demo", "make test"]
    blocks = fenced_blocks(README.read_text(encoding="utf-8"))
    assert README.read_text(encoding="utf-8").lstrip().splitlines()[1:3] == ["", "```sh"], \
        "the set-up commands are the README's first block"
    assert [ln.split("#")[0].strip() for ln in blocks[0][1].strip().splitlines()] == ["make demo", "make test"]


def make_targets():
    text = (ROOT / "Makefile").read_text()
    return set(m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


def agent_commands():
    """The sub-commands of the host agent's `lifeboat` command, from its own parser."""
    import importlib

    lbtest.load_engine()
    parser = importlib.import_module("lifeboat_engine._agent.parser").build_parser()
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(subs[0].choices)


def galaxy_tarball():
    g = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    return "%s-%s-%s.tar.gz" % (g["namespace"], g["name"], g["version"])


def collection_object(name, kind="module"):
    """Does lifeboat.backup.<name> exist as a module, role or playbook?"""
    if not name.startswith("lifeboat.backup."):
        return False
    short = name[len("lifeboat.backup."):]
    where = {"module": ROOT / "plugins" / "modules" / (short + ".py"), "role": ROOT / "roles" / short,
             "playbook": ROOT / "playbooks" / (short + ".yml")}
    return where[kind].exists()


def check_make(args):
    targets = make_targets()
    goals = [a for a in args if not a.startswith("-") and "=" not in a]
    return ["make: no target %r in the Makefile" % g for g in goals if g not in targets]


def check_ansible(tool, args, state):
    problems = []
    if tool == "ansible-playbook":
        opts_with_value = {"-i", "--inventory", "-e", "--extra-vars", "-l", "--limit", "-t", "--tags", "-u"}
        positional, it = [], iter(args)
        for a in it:
            if a in ("-i", "--inventory"):
                inv = next(it, "")
                if "," not in inv and not (ROOT / inv).exists():
                    problems.append("ansible-playbook: no inventory %s" % inv)
            elif a in ("-e", "--extra-vars"):
                val = next(it, "")
                if val.startswith("@") and not (ROOT / val[1:]).exists():
                    problems.append("ansible-playbook: no vars file %s" % val[1:])
            elif a in opts_with_value:
                next(it, None)
            elif not a.startswith("-"):
                positional.append(a)
        if not positional:
            problems.append("ansible-playbook: no playbook named")
        for p in positional:
            if not ((ROOT / p).is_file() or collection_object(p, "playbook")):
                problems.append("ansible-playbook: no playbook %s" % p)
    elif tool == "ansible-doc":
        kind = "module"
        names, it = [], iter(args)
        for a in it:
            if a in ("-t", "--type"):
                kind = next(it, "module")
            elif a in ("-l", "--list"):
                names = []
                rest = [x for x in it if not x.startswith("-")]
                if rest and rest[0] != "lifeboat.backup":
                    problems.append("ansible-doc -l: not this collection: %s" % rest[0])
                return problems
            elif not a.startswith("-"):
                names.append(a)
        if not names:
            problems.append("ansible-doc: nothing named")
        for n in names:
            if not collection_object(n, kind):
                problems.append("ansible-doc: no %s %s in the collection" % (kind, n))
    elif tool == "ansible-galaxy":
        words = [a for a in args if not a.startswith("-")]
        if words[:2] == ["collection", "build"]:
            out = args[args.index("--output-path") + 1] if "--output-path" in args else "."
            state["built"] = (out.rstrip("/") + "/" if out != "." else "") + galaxy_tarball()
        elif words[:2] == ["collection", "install"]:
            tarballs = [w for w in words[2:] if w.endswith(".tar.gz")]
            for t in tarballs:
                if t != state.get("built"):
                    problems.append("ansible-galaxy: %s is not what the README's build makes (%s)"
                                    % (t, state.get("built")))
    return problems


def test_readme_commands_name_what_exists():
    problems = []
    state = {"activated": False}
    for n, words in readme_commands():
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value before the command
        if not words:
            continue
        cmd, args = words[0], words[1:]
        line = " ".join(words)
        if cmd in (".", "source"):
            if args != [".venv/bin/activate"]:
                problems.append("block %d: %s: activate the venv the Makefile makes (.venv)" % (n, line))
            state["activated"] = True
            continue
        if cmd.startswith(".venv/bin/"):
            tool = cmd[len(".venv/bin/"):]
            if tool not in VENV_TOOLS:
                problems.append("block %d: %s: %s is not a tool the demo's venv installs" % (n, line, tool))
                continue
            cmd = tool
        elif cmd in ANSIBLE_TOOLS and not state["activated"]:
            problems.append("block %d: %s: comes before `. .venv/bin/activate` (command not found in a fresh "
                            "shell)" % (n, line))
        if cmd == "make":
            problems += ["block %d: %s" % (n, p) for p in check_make(args)]
        elif cmd in ANSIBLE_TOOLS:
            problems += ["block %d: %s" % (n, p) for p in check_ansible(cmd, args, state)]
        elif cmd == "lifeboat":
            sub = [a for a in args if not a.startswith("-")]
            if not sub or sub[0] not in agent_commands():
                problems.append("block %d: %s: not a command of the agent (%s)"
                                % (n, line, ", ".join(sorted(agent_commands()))))
    assert problems == [], "\n".join(problems)


def test_the_command_check_catches_a_bare_ansible_command(monkeypatch):
    """What issue 23 found: `ansible-playbook ...` shown before the venv is activated."""
    read = pathlib.Path.read_text
    fake = read(README, encoding="utf-8").replace(". .venv/bin/activate", "true")
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self, *a, **k: fake if self == README else read(self, *a, **k))
    with pytest.raises(AssertionError, match="comes before"):
        test_readme_commands_name_what_exists()


def test_the_helpers_know_the_agent_and_the_makefile():
    assert {"demo", "test", "pytest", "molecule", "bench"} <= make_targets()
    assert {"backup", "verify", "prune", "anonymize", "restore", "status", "check-config", "alert"} <= agent_commands()
