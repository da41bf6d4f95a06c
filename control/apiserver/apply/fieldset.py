"""The set of fields an object sets, and upstream's FieldsV1 encoding of it (structured-merge-diff).

A path element is one of:
    ("f", name)          a field of a map or struct            -> "f:name"
    ("k", ((key, value),)) an associative item by its keys -> 'k:{"name":"web"}' (sorted, compact JSON)
    ("v", value)         a set's item, by its value            -> 'v:"a"'
    ("i", index)         an atomic list's item (rare)          -> "i:0"

List types come from a lookup (kind's patch metadata): a merge key makes an associative list, a merge
strategy without a key a set, anything else is atomic (a leaf). Unknown kinds: lists atomic, maps granular.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

PathElement = tuple[str, Any]
FieldPath = tuple[PathElement, ...]
ListKeys = Callable[[tuple[str, ...]], "tuple[str, ...] | str | None"]
"""keys(schema_path) -> merge keys (associative), "set", or None (atomic); schema_path is field names only."""


def _element_text(element: PathElement) -> str:
    kind, value = element
    if kind == "f":
        return f"f:{value}"
    if kind == "k":
        return "k:" + json.dumps(dict(sorted(value)), separators=(",", ":"))
    if kind == "v":
        return "v:" + json.dumps(value, separators=(",", ":"))
    return f"i:{value}"


def fields_of(obj: dict[str, Any], keys: ListKeys) -> set[FieldPath]:
    """Every leaf and list item `obj` sets, as paths (apiVersion/kind and metadata's server fields excluded)."""
    found: set[FieldPath] = set()
    for name, value in obj.items():
        if name in ("apiVersion", "kind"):
            continue
        _walk(value, (("f", name),), (name,), keys, found)
    return found


def _walk(value: Any, path: FieldPath, schema_path: tuple[str, ...], keys: ListKeys, found: set[FieldPath]) -> None:
    if isinstance(value, dict) and value:
        for name, item in value.items():
            _walk(item, (*path, ("f", name)), (*schema_path, name), keys, found)
        return
    list_type = keys(schema_path) if isinstance(value, list) else None
    if isinstance(value, list) and list_type == "set":
        found.update((*path, ("v", item)) for item in value)
        return
    if isinstance(value, list) and isinstance(list_type, tuple):
        for item in value:
            if not isinstance(item, dict):
                raise ValueError(f"{'.'.join(schema_path)}: list items must be objects keyed by {list_type}")
            element: FieldPath = (*path, ("k", tuple((k, item[k]) for k in list_type if k in item)))
            found.add((*element, (".", None)))
            for name, child in item.items():
                _walk(child, (*element, ("f", name)), (*schema_path, name), keys, found)
        return
    found.add(path)  # a scalar, an empty map or an atomic list: one leaf


def encode(paths: set[FieldPath]) -> dict[str, Any]:
    """FieldsV1 JSON: nested maps of element texts; "." marks an item that is itself a member."""
    root: dict[str, Any] = {}
    for path in sorted(paths, key=lambda p: [_element_text(e) if e[0] != "." else "." for e in p]):
        node = root
        for element in path:
            text = "." if element[0] == "." else _element_text(element)
            node = node.setdefault(text, {})
    return root
