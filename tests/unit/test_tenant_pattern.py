"""naming.TENANT_RE is the one tenant-name check. The YAML and documentation that cannot import it
(argument specs, role and playbook asserts, module documentation) quote it: every quote must be it."""
import pathlib
import re

from lifeboat_engine import naming

ROOT = pathlib.Path(__file__).resolve().parents[2]
# A quoted tenant pattern: ^[a-z0-9]... up to its {m,n}$ (the artifact-name patterns allow a leading '_').
QUOTED = re.compile(r"\^\[a-z0-9\]\[[^\]]*\]\{\d+,\d+\}\$")


def test_every_quoted_tenant_pattern_is_naming_tenant_re():
    places = []
    for folder in ("plugins", "roles", "playbooks", "inventories"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".yml", ".yaml", ".j2") or not path.is_file():
                continue
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for found in QUOTED.findall(line):
                    places.append((found, "%s:%d" % (path.relative_to(ROOT), lineno)))
    assert places, "no quoted tenant pattern found: the test looks in the wrong place"
    wrong = [where for found, where in places if found != naming.TENANT_RE.pattern]
    assert not wrong, "these quote another tenant pattern than naming.TENANT_RE (%s): %s" % (
        naming.TENANT_RE.pattern, ", ".join(wrong))
