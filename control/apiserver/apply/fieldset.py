"""The set of fields an object sets, and upstream's FieldsV1 encoding of it (structured-merge-diff).

A path element is one of:
    ("f", name)          a field of a map or struct            -> "f:name"
    ("k", ((key, value),)) an associative item by its keys -> 'k:{"name":"web"}' (sorted, compact JSON)
    ("v", value)         a set's item, by its value            -> 'v:"a"'
    ("i", index)         an atomic list's item (rare)          -> "i:0"
    (".", None)          ends the path of a list item that is itself a member of the set -> "."

List types come from a lookup: a ListType (see schema.py), or the short forms a tuple of merge keys
(associative), "set", or None (atomic, a leaf). Unknown kinds: lists atomic, maps granular.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from control.apiserver.apply.schema import ATOMIC, SET, AtomicMaps, ListType

PathElement = tuple[str, Any]
FieldPath = tuple[PathElement, ...]
ListKeys = Callable[[tuple[str, ...]], "ListType | tuple[str, ...] | str | None"]
"""keys(schema_path) -> the list's type; schema_path is field names only."""

ITEM: PathElement = (".", None)


def list_type(keys: ListKeys, schema_path: tuple[str, ...]) -> ListType:
    found = keys(schema_path)
    if isinstance(found, ListType):
        return found
    if found == "set":
        return SET
    if isinstance(found, tuple):
        return ListType("map", found)
    return ATOMIC


def item_key(item: Any, kind: ListType, schema_path: tuple[str, ...]) -> PathElement:
    """An associative item's key element; a key the item leaves out takes the key's default (TCP)."""
    if not isinstance(item, dict):
        raise ValueError(f"{'.'.join(schema_path)}: list items must be objects keyed by {', '.join(kind.keys)}")
    pairs = [(k, hashable(item[k]) if k in item else kind.defaults[k])
             for k in kind.keys if k in item or k in kind.defaults]
    if not pairs:
        raise ValueError(f"{'.'.join(schema_path)}: an item has none of its keys ({', '.join(kind.keys)})")
    return ("k", tuple(sorted(pairs)))


@functools.lru_cache(maxsize=8192)  # the same few elements recur in every object of a kind
def _element_text(element: PathElement) -> str:
    kind, value = element
    if kind == "f":
        return f"f:{value}"
    if kind == "k":
        return "k:" + json.dumps(dict(sorted(value)), separators=(",", ":"))
    if kind == "v":
        return "v:" + json.dumps(value, separators=(",", ":"))
    if kind == ".":
        return "."
    return f"i:{value}"


def path_text(path: FieldPath) -> str:
    """A path as upstream prints it in conflicts: .spec.containers[name="web"].image"""
    out = []
    for kind, value in path:
        if kind == "f":
            out.append(f".{value}")
        elif kind == "k":
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in value) + "]")
        elif kind == "v":
            out.append(f"[={json.dumps(value)}]")
        elif kind == "i":
            out.append(f"[{value}]")
    return "".join(out)


def leaves_of(obj: dict[str, Any], keys: ListKeys, *, strict: bool = False,
              atomic: AtomicMaps | None = None) -> dict[FieldPath, Any]:
    """Every leaf and list item `obj` sets, with its value (None for an item's "." path). Strict: two items of
    an associative list or a set with the same key are refused (an applied configuration must not have them).
    ATOMIC names the maps that are one leaf each (none if None)."""
    found: dict[FieldPath, Any] = {}
    for name, value in obj.items():
        if name in ("apiVersion", "kind"):
            continue
        _walk(value, (("f", name),), (name,), keys, found, strict, atomic)
    return found


def fields_of(obj: dict[str, Any], keys: ListKeys) -> set[FieldPath]:
    """Every leaf and list item `obj` sets, as paths (apiVersion and kind excluded)."""
    return set(leaves_of(obj, keys))


def _walk(value: Any, path: FieldPath, schema_path: tuple[str, ...], keys: ListKeys,
          found: dict[FieldPath, Any], strict: bool, atomic: AtomicMaps | None) -> None:
    if isinstance(value, dict) and value and (atomic is None or not atomic(schema_path)):
        for name, item in value.items():
            _walk(item, (*path, ("f", name)), (*schema_path, name), keys, found, strict, atomic)
        return
    kind = list_type(keys, schema_path) if isinstance(value, list) else ATOMIC
    if isinstance(value, list) and kind.kind in ("set", "map"):
        for item in value:
            element = ("v", hashable(item)) if kind.kind == "set" else item_key(item, kind, schema_path)
            member: FieldPath = (*path, element) if kind.kind == "set" else (*path, element, ITEM)
            if strict and member in found:
                raise ValueError(f"{'.'.join(schema_path)}: duplicate entries for {_element_text(element)[2:]}")
            found[member] = item if kind.kind == "set" else None
            if kind.kind == "map":
                for name, child in item.items():
                    _walk(child, (*path, element, ("f", name)), (*schema_path, name), keys, found, strict,
                          atomic)
        return
    found[path] = value  # a scalar, an empty or atomic map, or an atomic list: one leaf


def hashable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def encode(paths: set[FieldPath]) -> dict[str, Any]:
    """FieldsV1 JSON: nested maps of element texts, sorted; "." marks an item that is itself a member."""
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(_element_text(element), {})
    return _sorted(root)


def _sorted(node: dict[str, Any]) -> dict[str, Any]:
    return {text: _sorted(node[text]) for text in sorted(node)}


def decode(fields: Any, where: str = "fieldsV1") -> set[FieldPath]:
    """The inverse of encode; ValueError naming `where` for anything that is not FieldsV1."""
    found: set[FieldPath] = set()

    def walk(node: Any, path: FieldPath) -> None:
        if not isinstance(node, dict):
            raise ValueError(f"{where}: expected a map at {path_text(path) or 'the root'}")
        if not node and path:
            found.add(path)
        for text, child in node.items():
            if text == ".":
                found.add((*path, ITEM))
                continue
            walk(child, (*path, _parse_element(text, where)))

    walk(fields, ())
    return found


@functools.lru_cache(maxsize=8192)
def _parse_element(text: str, where: str) -> PathElement:
    prefix, _, rest = text.partition(":")
    try:
        if prefix == "f" and rest:
            return ("f", rest)
        if prefix == "k":
            keyed = json.loads(rest)
            if isinstance(keyed, dict) and keyed:
                return ("k", tuple(sorted((k, hashable(v)) for k, v in keyed.items())))
        if prefix == "v":
            return ("v", hashable(json.loads(rest)))
        if prefix == "i":
            return ("i", int(rest))
    except ValueError:
        pass
    raise ValueError(f"{where}: {text!r} is not a field path element (f:NAME, k:{{KEYS}}, v:VALUE or i:INDEX)")
