"""What can be checked about the roles and the scenarios without running them
(Molecule runs them): every public variable is prefixed, in defaults/main.yml
and in meta/argument_specs.yml with the same default; units are hardened
oneshots that alert on failure; timers are persistent and spread; every
template says it is managed; every platform has the settings podman needs here.
"""

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = ["agent", "backup_host", "verifier", "anonymize", "bucket"]
HARDENING = ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=read-only",
             "RestrictSUIDSGID=yes", "ReadWritePaths="]


def load(path):
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_are_prefixed_defaulted_and_specified(role):
    base = ROOT / "roles" / role
    defaults = load(base / "defaults" / "main.yml") or {}
    spec = load(base / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(spec), "defaults/main.yml and argument_specs.yml differ"
    for name, option in spec.items():
        assert name.startswith(role + "_"), name
        assert option.get("description"), name
        assert option.get("default") == defaults[name], "%s: argument_specs default %r, defaults/main.yml %r" % (
            name, option.get("default"), defaults[name])
    for path in (base / "vars").glob("*.yml"):
        for name in load(path) or {}:
            assert name.startswith("__%s_" % role), "%s: internal variable %s" % (path, name)


def unit_templates():
    return sorted(ROOT.glob("roles/*/templates/*.service.j2")) + sorted(ROOT.glob("roles/*/templates/*.timer.j2"))


def unit_text(path):
    """A unit template with the agent role's shared blocks ({% include %}) written out, as systemd gets it."""
    return re.sub(r"\{% include '([^']+)' %\}", lambda m: (ROOT / "roles" / "agent" / "templates" / m.group(1)).read_text(),
                  path.read_text())


@pytest.mark.parametrize("path", unit_templates(), ids=lambda p: p.name)
def test_units(path):
    text = unit_text(path)
    assert text.startswith("{{ ansible_managed | comment }}\n")
    if path.name.endswith(".service.j2"):
        assert "Type=oneshot" in text
        for directive in HARDENING:
            if directive == "ReadWritePaths=" and "alert" in path.name:
                continue
            assert directive in text, "%s lacks %s" % (path.name, directive)
        if "alert" not in path.name:
            assert "OnFailure=lifeboat-alert@%n.service" in text
            assert re.search(r"^User=\{\{ agent_user \}\}$", text, re.M)
            assert "--no-progress" in text and "--wait" in text
    else:
        for directive in ("OnCalendar=", "Persistent=true", "RandomizedDelaySec=", "WantedBy=timers.target"):
            assert directive in text, "%s lacks %s" % (path.name, directive)


def test_only_the_verifier_unit_gets_the_identity():
    for path in unit_templates():
        text = path.read_text()
        assert ("LoadCredential=" in text) == (path.name == "lifeboat-verify.service.j2"), path.name
        assert "BACKUP_PRIVATE_KEY" not in text and "identity_file" not in text


@pytest.mark.parametrize("path", sorted(ROOT.glob("roles/*/templates/*.yml.j2")) +
                         sorted(ROOT.glob("roles/*/templates/*.txt.j2")), ids=lambda p: p.name)
def test_configuration_templates_say_they_are_managed(path):
    assert path.read_text().startswith("{{ ansible_managed | comment }}\n")


def test_configuration_templates_are_validated_by_the_agent():
    for path in ROOT.glob("roles/*/tasks/*.yml"):
        for task in load(path) or []:
            template = task.get("ansible.builtin.template") or {}
            if str(template.get("dest", "")).startswith(("/etc/lifeboat/", "{{ __backup_host_config_dir")) and \
                    template.get("src", "").endswith(".yml.j2"):
                assert "validate" in template, "%s: %s is not validated" % (path, task["name"])


@pytest.mark.parametrize("scenario", sorted(p.parent.name for p in ROOT.glob("molecule/*/molecule.yml")))
def test_platforms_have_what_podman_needs_here(scenario):
    data = load(ROOT / "molecule" / scenario / "molecule.yml")
    assert data["platforms"], scenario
    for platform in data["platforms"]:
        assert platform["image"].startswith("${LIFEBOAT_MOLECULE_IMAGE")
        assert platform["pre_build_image"] is True and platform["systemd"] == "always"
        assert platform["command"] == "/sbin/init" and "SYS_ADMIN" in platform["capabilities"]
        assert sorted(platform["ulimits"]) == ["nofile=20000:20000", "nproc=32768:32768"]
        assert platform["network"].startswith("lifeboat-molecule-")
    assert (ROOT / "molecule" / scenario / "tests").is_dir(), "verify checks the running system with testinfra"
