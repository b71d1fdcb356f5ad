"""Options are defined once per engine (argspec.ArgumentSpec); the modules' main() body is module_main."""

import importlib.util

import pytest
import yaml

import lbtest
from lifeboat_engine import agefile, anonymize, argspec, backup, info, lifecycle, module_main, prune, restore, verify
from lifeboat_engine.errors import LifeboatError

ENGINES = [agefile, anonymize, backup, info, lifecycle, prune, restore, verify]
FRAGMENTS = lbtest.ROOT / "plugins" / "doc_fragments"


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.__name__)
def test_each_engine_derives_its_options_from_its_spec(engine):
    assert engine.OPTIONS == engine.SPEC.defaults()
    names = set(engine.SPEC.argument_spec)
    assert set(engine.SPEC.engine_only) <= set(engine.OPTIONS)
    kwargs = engine.SPEC.ansible_kwargs()
    for group in kwargs.get("mutually_exclusive", []) + kwargs.get("required_one_of", []):
        assert set(group) <= names
    for key, _value, requires, *_rest in kwargs.get("required_if", []):
        assert key in names and set(requires) <= names
    for key, requires in kwargs.get("required_by", {}).items():
        assert key in names and requires in names


def test_resolve_defaults_unset_options_and_refuses_unknown_ones():
    spec = argspec.ArgumentSpec(dict(a=dict(type="int", default=1), b=dict(type="str")), engine_only=("c",))
    assert spec.resolve({"a": None, "b": "x"}) == {"a": 1, "b": "x", "c": None}
    with pytest.raises(LifeboatError) as e:
        spec.resolve({"a": 2, "zz": 1})
    assert e.value.option == "zz" and "zz" in str(e.value)
    with pytest.raises(TypeError):
        argspec.ArgumentSpec({}, required_iff=[])


def test_ansible_kwargs_are_copies():
    kwargs = backup.SPEC.ansible_kwargs()
    kwargs["argument_spec"]["tenant"]["required"] = True
    kwargs["required_if"].append(("x", 1, ("y",)))
    assert "required" not in backup.SPEC.argument_spec["tenant"]
    assert backup.SPEC.ansible_kwargs()["required_if"] == [("engine", "sqlite", ("path",))]


def _fragments(*names):
    """The options of the doc fragments ``names`` (as in extends_documentation_fragment, without the collection)."""
    options = {}
    for name in names:
        file, _dot, var = name.partition(".")
        spec = importlib.util.spec_from_file_location("fragment_" + file, FRAGMENTS / (file + ".py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        text = getattr(module.ModuleDocFragment, (var or "documentation").upper())
        assert isinstance(text, str)  # a literal: ansible-test's yamllint reads fragments without running them
        options.update(yaml.safe_load(text)["options"])
    return options


@pytest.mark.parametrize("group,fragments", [
    (argspec.LOGIN, ["connection"]),
    (argspec.CONNECTION, ["connection", "connection.pg_tools"]),
    (argspec.RECIPIENTS, ["repository.recipients"]),
    (argspec.REPOSITORY, ["repository", "repository.recipients"]),
    (argspec.S3_CONNECTION, ["s3"]),
    (argspec.S3_STORAGE, ["s3.storage"]),
    (argspec.TENANT, ["tenant"]),
])
def test_each_shared_group_is_documented_by_its_fragments(group, fragments):
    docs = _fragments(*fragments)
    assert sorted(docs) == sorted(group)
    for name, option in group.items():
        for key in ("type", "default", "choices", "required", "elements"):
            assert docs[name].get(key) == option.get(key), (name, key)


class FakeModule(object):
    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []
        self.exited = None

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, **kwargs):
        self.exited = ("fail", kwargs)
        raise SystemExit(1)

    def exit_json(self, **kwargs):
        self.exited = ("exit", kwargs)
        raise SystemExit(0)


def test_a_lifeboat_error_fails_the_task_with_its_option_and_details():
    def run(params, check_mode):
        raise LifeboatError("no such tenant", option="tenant", details={"known": ["a"]})
    module = FakeModule({"tenant": "b"})
    with pytest.raises(SystemExit):
        module_main.run(module, run)
    assert module.exited == ("fail", {"msg": "no such tenant", "option": "tenant", "details": {"known": ["a"]}})


@pytest.mark.parametrize("diff_mode", [False, True])
def test_warnings_are_said_and_the_diff_is_returned_in_diff_mode_only(diff_mode):
    seen = {}

    def run(params, check_mode):
        seen.update(params=params, check_mode=check_mode)
        return {"changed": True, "warnings": ["careful"], "diff": {"before": 1, "after": 2}}
    module = FakeModule({"a": 1}, check_mode=True, diff=diff_mode)
    with pytest.raises(SystemExit):
        module_main.run(module, run)
    assert seen == {"params": {"a": 1}, "check_mode": True}
    assert module.warnings == ["careful"]
    expected = {"changed": True, "diff": {"before": 1, "after": 2}} if diff_mode else {"changed": True}
    assert module.exited == ("exit", expected)

    module = FakeModule({}, diff=diff_mode)
    with pytest.raises(SystemExit):
        module_main.run(module, lambda params, check_mode: {"n": 3}, diff=lambda result: {"after": result["n"]})
    assert module.exited == ("exit", {"n": 3, "diff": {"after": 3}} if diff_mode else {"n": 3})
