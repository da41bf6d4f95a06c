"""How server-side apply merges each field of a kind: the list types of structured-merge-diff.

A list is one of
    associative ("map")  items identified by their keys (upstream's x-kubernetes-list-map-keys): containers by
                         name, container ports by containerPort+protocol, env by name
    set                  items identified by their value (x-kubernetes-list-type: set): finalizers
    atomic               replaced whole, owned as one leaf (everything else, and every list of an unknown kind)
Maps are granular (x-kubernetes-map-type granular), every key a field of its own, unless a schema says a map is
atomic (a custom resource's x-kubernetes-map-type atomic: atomic_maps()); no built-in kind's is here, so their
writes never ask.

Built-in kinds derive their list types from the strategic-merge-patch tags (patch.BUILTIN_PATCH_META); where
upstream's list-map keys differ from its patchMergeKey (ports, topologySpreadConstraints) a table below says
so, with the key's default when the apiserver defaults it (a port's protocol), because a defaulted live item and
an applied item without that key are the same item. Another source of schemas (custom resources, whose
CRD controller registers crd/applyschema.py's per served version) plugs in with
`register(kind, schema, api_version)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from control.apiserver.patch import BUILTIN_PATCH_META, ListPatchInfo

Path = tuple[str, ...]
"""Field names from the object's root; list items add nothing (("spec", "template", "spec", "containers"))."""


@dataclass(frozen=True)
class ListType:
    kind: str  # "map", "set" or "atomic"
    keys: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)


ATOMIC = ListType("atomic")
SET = ListType("set")
AtomicMaps = Callable[[tuple[str, ...]], bool]
"""atomic(schema_path) -> whether the map there is owned as one leaf and replaced whole."""


class KindSchema(Protocol):
    def list_type(self, path: Path) -> ListType: ...


# Upstream's list-map keys where they are not just the patch merge key (k8s.io/api core/v1 types.go
# `+listMapKey` markers), by the path's last two names.
_TCP = {"protocol": "TCP"}
_CONTAINER_PORTS = ListType("map", ("containerPort", "protocol"), _TCP)
_LIST_MAP_KEYS: Mapping[tuple[str, str], ListType] = {
    ("containers", "ports"): _CONTAINER_PORTS,
    ("initContainers", "ports"): _CONTAINER_PORTS,
    ("ephemeralContainers", "ports"): _CONTAINER_PORTS,
    ("spec", "topologySpreadConstraints"): ListType("map", ("topologyKey", "whenUnsatisfiable")),
}
_SERVICE_PORTS = ListType("map", ("port", "protocol"), _TCP)


class PatchTagSchema:
    """A built-in kind's list types, from its patch tags (and the list-map key table)."""

    def __init__(self, kind: str, tags: Mapping[Path, ListPatchInfo]) -> None:
        self.kind = kind
        self.tags = tags

    def list_type(self, path: Path) -> ListType:
        if self.kind == "Service" and path == ("spec", "ports"):
            return _SERVICE_PORTS
        if len(path) >= 2 and path[-2:] in _LIST_MAP_KEYS:
            return _LIST_MAP_KEYS[path[-2], path[-1]]
        info = self.tags.get(path)
        if info is None or "merge" not in info.strategy.split(","):
            return ATOMIC
        return ListType("map", (info.merge_key,)) if info.merge_key else SET


_METADATA_TAGS = {path: info for path, info in BUILTIN_PATCH_META["ConfigMap"].items() if path[0] == "metadata"}


class UnknownKindSchema:
    """A kind nobody described: ObjectMeta's lists as upstream types them, every other list atomic."""

    def list_type(self, path: Path) -> ListType:
        return PatchTagSchema("", _METADATA_TAGS).list_type(path)


# By (apiVersion, kind): a custom resource's versions may type their lists differently, and its kind may be
# a built-in kind's name in another group. An empty apiVersion registers the kind in every version.
_REGISTERED: dict[tuple[str, str], KindSchema] = {}


def register(kind: str, schema: KindSchema, api_version: str = "") -> None:
    """Make `kind`'s lists (in `api_version`) merge as `schema` says (a custom resource's structural schema)."""
    _REGISTERED[api_version, kind] = schema


def unregister(kind: str, api_version: str = "") -> None:
    _REGISTERED.pop((api_version, kind), None)


def schema_for(kind: str, api_version: str = "") -> KindSchema:
    registered = _REGISTERED.get((api_version, kind)) or _REGISTERED.get(("", kind))
    if registered is not None:
        return registered
    tags = BUILTIN_PATCH_META.get(kind)
    return PatchTagSchema(kind, tags) if tags is not None else UnknownKindSchema()


def atomic_maps(kind: str, api_version: str = "") -> AtomicMaps | None:
    """The kind's atomic-map lookup, None when it has no atomic map (every map granular: nothing to ask)."""
    found: AtomicMaps | None = getattr(schema_for(kind, api_version), "atomic_maps", None)
    return found
