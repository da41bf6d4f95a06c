"""The kubesim package has one exception tree (kubesim/errors.py): every error class it defines is a
KubesimError, and none is defined outside kubesim/errors.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import kubesim
from kubesim import errors


def test_every_kubesim_error_is_a_kubesim_error_defined_in_one_place() -> None:
    found = {}
    for info in pkgutil.iter_modules(kubesim.__path__, "kubesim."):
        if info.name == "kubesim.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, Exception) and value.__module__.startswith("kubesim"):
                found[name] = value
    assert {"KubesimError", "PreflightError", "StateError", "StateInputError", "ComponentError",
            "PolicyQueryError"} <= set(found)
    assert {name: cls.__module__ for name, cls in found.items() if cls.__module__ != "kubesim.errors"} == {}
    assert all(issubclass(cls, errors.KubesimError) for cls in found.values())
