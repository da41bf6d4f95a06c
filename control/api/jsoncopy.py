"""A deep copy of a JSON tree (what API objects are once decoded): dicts, lists and scalars.

copy.deepcopy pays for generality (its memo of every object seen, __deepcopy__ and __reduce__ lookups):
on a Pod it is about 5x slower than walking the tree, and the apiserver copies an object several times
per write (the stored copy, the admission plugins' views, the update's base).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def json_copy(value: T) -> T:
    """VALUE copied all the way down; strings, numbers, booleans and None are shared (immutable). A
    container JSON has no word for (a tuple, a set, a Mapping that is not a dict) is left to
    copy.deepcopy, so nothing mutable is ever shared."""
    return _copy(value)  # type: ignore[no-any-return]


_SCALARS = (str, int, float, bool, type(None))


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else _copy(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _copy(v) for v in value]
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):  # a read-only view of an object, a dict subclass: copied into a dict
        return {k: _copy(v) for k, v in value.items()}
    return copy.deepcopy(value)
