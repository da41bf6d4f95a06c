"""Server-side apply's list types for a custom resource, from its version's structural schema (upstream builds
the CRD's structured-merge-diff schema from the same markers):

    x-kubernetes-list-type: map   associative, by x-kubernetes-list-map-keys; a key with a schema default
                                  takes it when an item leaves it out (as the apiserver defaults it)
    x-kubernetes-list-type: set   items identified by their value
    atomic, or no list type       replaced whole, one leaf (upstream's default for a CRD's lists)

metadata (the object's own, and that of an x-kubernetes-embedded-resource inside it) is ObjectMeta, typed as
for every kind. The CRD controller registers one per served version (apply.register) and drops it when the
version is no longer served.
"""

from __future__ import annotations

from typing import Any

from control.apiserver.apply.schema import ATOMIC, SET, ListType, Path, UnknownKindSchema

_OBJECT_META = UnknownKindSchema()


def _items(node: dict[str, Any]) -> dict[str, Any]:
    """Through arrays to their items: a path names fields only, not list items."""
    while node.get("type") == "array" and isinstance(node.get("items"), dict):
        node = node["items"]
    return node


class StructuralListTypes:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema

    def list_type(self, path: Path) -> ListType:
        node: dict[str, Any] = self.schema
        for i, name in enumerate(path):
            node = _items(node)
            if name == "metadata" and (i == 0 or node.get("x-kubernetes-embedded-resource")):
                return _OBJECT_META.list_type(("metadata", *path[i + 1:]))
            properties = node.get("properties") or {}
            if isinstance(properties.get(name), dict):
                node = properties[name]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                return ATOMIC  # not described (x-kubernetes-preserve-unknown-fields): atomic, as upstream
        kind = node.get("x-kubernetes-list-type")
        if kind == "set":
            return SET
        if kind == "map":
            keys = tuple(str(k) for k in node.get("x-kubernetes-list-map-keys") or ())
            item = node.get("items")
            properties = (item.get("properties") if isinstance(item, dict) else None) or {}
            defaults = {k: properties[k]["default"] for k in keys
                        if isinstance(properties.get(k), dict) and "default" in properties[k]}
            return ListType("map", keys, defaults) if keys else ATOMIC
        return ATOMIC


__all__ = ["StructuralListTypes"]
