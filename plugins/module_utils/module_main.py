# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared body of the modules' ``main()``.

No Ansible import: the module passes its AnsibleModule object in. Each module builds that object
from its engine's ``SPEC`` (see argspec.py), then::

    module_main.run(module, engine.run, diff=...)

or, when the result needs more (a failure of its own, warnings said differently), ``run_engine`` and
``exit_with`` apart.
"""

from .errors import LifeboatError


def failure(error):
    """fail_json keyword arguments for a LifeboatError."""
    result = {"msg": str(error)}
    if getattr(error, "option", None):
        result["option"] = error.option
    details = getattr(error, "details", None)
    if details:
        result["details"] = details
    return result


def run_engine(module, run, params=None, warnings=True):
    """The engine's result for the module's options (or ``params``) in the module's check mode.

    A LifeboatError fails the task with its message, option and details. The result's ``warnings``
    are said with module.warn (returning them is deprecated in Ansible), unless ``warnings`` is false.
    """
    try:
        result = run(dict(module.params) if params is None else params, check_mode=module.check_mode)
    except LifeboatError as e:
        module.fail_json(**failure(e))
    if warnings:
        for warning in result.pop("warnings", None) or []:
            module.warn(warning)
    return result


def exit_with(module, result, diff=None):
    """exit_json with the diff in diff mode only: ``diff(result)``, else the one the engine returned."""
    changes = result.pop("diff", None)
    if module._diff and diff is not None:
        changes = diff(result)
    if module._diff and changes is not None:
        result["diff"] = changes
    module.exit_json(**result)


def run(module, engine_run, diff=None):
    """The whole of a module's main() when its result needs nothing more: run_engine, then exit_with."""
    exit_with(module, run_engine(module, engine_run), diff=diff)
