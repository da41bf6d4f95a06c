"""Server-side apply's list types for a custom resource, from its version's structural schema (upstream builds
the CRD's structured-merge-diff schema from the same markers):

    x-kubernetes-list-type: map   associative, by x-kubernetes-list-map-keys; a key with a schema default
                                  takes it when an item leaves it out (as the apiserver defaults it)
    x-kubernetes-list-type: set   items identified by their value
    atomic, or no list type       replaced whole, one leaf (upstream's default for a CRD's lists)
    x-kubernetes-map-type: atomic an object replaced whole, one leaf (else granular: a field per key)

metadata (the object's own, and that of an x-kubernetes-embedded-resource inside it) is ObjectMeta, typed as
for every kind. The CRD controller registers one per served version (apply.register) and drops it when the
version is no longer served.
"""

from __future__ import annotations

from typing import Any

from control.apiserver.apply.schema import ATOMIC, SET, AtomicMaps, ListType, Path, UnknownKindSchema

_OBJECT_META = UnknownKindSchema()


def _items(node: dict[str, Any]) -> dict[str, Any]:
    """Through arrays to their items: a path names fields only, not list items."""
    while node.get("type") == "array" and isinstance(node.get("items"), dict):
        node = node["items"]
    return node


def _has_atomic_map(node: Any) -> bool:
    if isinstance(node, list):
        return any(_has_atomic_map(n) for n in node)
    if not isinstance(node, dict):
        return False
    return node.get("x-kubernetes-map-type") == "atomic" or any(_has_atomic_map(v) for v in node.values())


class StructuralListTypes:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        # asked by every write's field walk only when some map is atomic (apply.schema.atomic_maps)
        self.atomic_maps: AtomicMaps | None = self._atomic if _has_atomic_map(schema) else None

    def _find(self, path: Path) -> tuple[dict[str, Any] | None, int | None]:
        """(the schema of the field at PATH, None if undescribed; where PATH enters an ObjectMeta, if it does)."""
        node: dict[str, Any] = self.schema
        for i, name in enumerate(path):
            node = _items(node)
            if name == "metadata" and (i == 0 or node.get("x-kubernetes-embedded-resource")):
                return None, i
            properties = node.get("properties") or {}
            if isinstance(properties.get(name), dict):
                node = properties[name]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                return None, None  # not described (x-kubernetes-preserve-unknown-fields)
        return node, None

    def _atomic(self, path: Path) -> bool:
        node, _ = self._find(path)
        return node is not None and node.get("x-kubernetes-map-type") == "atomic"

    def list_type(self, path: Path) -> ListType:
        node, meta_at = self._find(path)
        if meta_at is not None:  # ObjectMeta's lists as for every kind
            return _OBJECT_META.list_type(("metadata", *path[meta_at + 1:]))
        if node is None:
            return ATOMIC  # an undescribed list is atomic, as upstream
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
