# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors raised by the lifeboat engine.

The engine never imports Ansible. Modules and the host agent turn a
``LifeboatError`` into ``fail_json(msg=...)`` or a non-zero exit with the same
text, so every message must say what failed, why, and what to do next.
"""

import importlib


def optional_import(name):
    """``(module, None)``, or ``(None, why)`` when the third-party library ``name`` cannot be imported.

    The engine imports its optional libraries (pyrage, zstandard...) through this, and raises
    MissingDependency, with ``why``, only where one is really needed.
    """
    try:
        return importlib.import_module(name), None
    except ImportError as e:  # pragma: no cover - depends on the interpreter
        return None, str(e)


class LifeboatError(Exception):
    """An error an operator can act on.

    ``option`` names the option (or configuration key) that fixes it, when
    there is one; ``details`` carries extra, secret-free facts for the result.
    """

    def __init__(self, msg, option=None, details=None):
        super(LifeboatError, self).__init__(msg)
        self.msg = msg
        self.option = option
        self.details = details or {}

    def __str__(self):
        return self.msg


class MissingDependency(LifeboatError):
    """A third-party Python library the engine needs is not importable."""

    def __init__(self, library, pip_name, error=None):
        msg = (
            "The Python library '%s' is required but could not be imported%s. "
            "Install it into the Python that runs this code "
            "(pip install '%s', or use the lifeboat venv /opt/lifeboat/venv "
            "through ansible_python_interpreter)."
            % (library, (": %s" % error) if error else "", pip_name)
        )
        super(MissingDependency, self).__init__(msg, details={"library": library})


def required(module, library, pip_name, error):
    """``module`` (from optional_import), or MissingDependency when it could not be imported."""
    if module is None:
        raise MissingDependency(library, pip_name, error)
    return module


class LockBusy(LifeboatError):
    """Another run holds the lock for the same tenant."""
