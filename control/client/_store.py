"""The informer's in-memory store: objects by namespace/name, plus optional secondary indexes."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from control.api.meta import labels_of

JsonObject = dict[str, Any]
IndexFunc = Callable[[JsonObject], Iterable[str]]


def object_key(obj: Mapping[str, Any]) -> str:
    """client-go's MetaNamespaceKeyFunc: "namespace/name", or "name" for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError(f"object has no metadata.name: {dict(meta)!r}")
    ns = meta.get("namespace")
    return f"{ns}/{name}" if ns else str(name)


def index_by_namespace(obj: JsonObject) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [str(ns)] if ns else []


def index_by_field(dotted: str) -> IndexFunc:
    """An index on a scalar field, e.g. `index_by_field("spec.nodeName")` for pods by node."""
    parts = dotted.split(".")

    def index(obj: JsonObject) -> list[str]:
        value: Any = obj
        for part in parts:
            if not isinstance(value, Mapping):
                return []
            value = value.get(part)
        return [str(value)] if value not in (None, "") else []

    return index


def index_by_label(label: str) -> IndexFunc:
    """An index on a label, e.g. `index_by_label("kubernetes.io/service-name")` for EndpointSlices by Service."""

    def index(obj: JsonObject) -> list[str]:
        labels = labels_of(obj)
        value = labels.get(label)
        return [str(value)] if value is not None else []

    return index


class Indexer:
    """Objects by key, and for each named index the keys under each index value (client-go's cache.Indexer).

    The objects are the informer's own: read them, never mutate them (copy first), as with client-go.
    """

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, JsonObject] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, name: str, namespace: str | None = None) -> JsonObject | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> JsonObject | None:
        return self._items.get(key)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self) -> list[JsonObject]:
        return list(self._items.values())

    def by_index(self, index: str, value: str) -> builtins.list[JsonObject]:
        return [self._items[k] for k in sorted(self._index(index).get(value, ()))]

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return sorted(self._index(index).get(value, ()))

    def index_values(self, index: str) -> builtins.list[str]:
        return sorted(self._index(index))

    def _index(self, index: str) -> dict[str, set[str]]:
        try:
            return self._indices[index]
        except KeyError:
            raise KeyError(f"no index named {index!r}; this store has {sorted(self._indices)}") from None

    # Writes are the informer's alone.

    def put(self, obj: JsonObject) -> JsonObject | None:
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, func in self._indexers.items():
            for value in func(obj):
                self._indices[name].setdefault(value, set()).add(key)
        return old

    def remove(self, key: str) -> JsonObject | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: JsonObject) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
