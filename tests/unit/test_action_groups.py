"""meta/runtime.yml's action groups, which the playbooks' module_defaults use: `all`
holds every module, `connection` every module with all the PostgreSQL connection options
(the doc fragments lifeboat.backup.connection and lifeboat.backup.connection.pg_tools: login_* and
pg_bin_dir), so that the playbooks' module_defaults for the group reach no module without them."""

import ast

import yaml

import lbtest

MODULES = sorted(p.stem for p in (lbtest.ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


def action_groups():
    return yaml.safe_load((lbtest.ROOT / "meta" / "runtime.yml").read_text())["action_groups"]


def documentation(module):
    tree = ast.parse((lbtest.ROOT / "plugins" / "modules" / ("%s.py" % module)).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % module)


def test_the_group_all_holds_every_module():
    assert sorted(action_groups()["all"]) == MODULES


def test_the_group_connection_holds_the_modules_with_the_connection_options():
    fragments = set(["lifeboat.backup.connection", "lifeboat.backup.connection.pg_tools"])
    with_connection = [m for m in MODULES
                       if fragments <= set(documentation(m).get("extends_documentation_fragment") or [])]
    assert sorted(action_groups()["connection"]) == with_connection
