"""Parsed values of informer objects, reused while an object's uid and resourceVersion stay the same.

The apiserver gives every change a new resourceVersion, so an unchanged (uid, resourceVersion) pair
means an unchanged object. A component that parses every object of its informers on every sync (the
proxy, the policy agent) parses only what changed since its last sync this way, and an unchanged
object keeps the very same value, which lets the next stage see "unchanged" by identity (upstream's
kube-proxy change trackers get the same effect from their handlers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

V = TypeVar("V")
JSON = dict[str, Any]


class ParseCache(Generic[V]):
    """`parse_all(objects)` -> the parsed values, in order; objects whose `parse` raised one of ERRORS
    are left out, and reported once per resourceVersion to ON_ERROR (not on every sync). A value of
    None (the parser says: nothing to use here) is left out too. Objects without both a uid and a
    resourceVersion (built by hand) are parsed every time."""

    def __init__(self, parse: Callable[[JSON], V | None], *, errors: tuple[type[Exception], ...] = (),
                 on_error: Callable[[JSON, Exception], None] | None = None) -> None:
        self.parse = parse
        self.errors = errors
        self.on_error = on_error
        self.values: dict[tuple[str, str], V | None] = {}

    def parse_all(self, objs: Iterable[JSON]) -> list[V]:
        values: dict[tuple[str, str], V | None] = {}
        out: list[V] = []
        for obj in objs:
            meta = obj.get("metadata") or {}
            uid, version = meta.get("uid"), meta.get("resourceVersion")
            key = (uid, version) if isinstance(uid, str) and isinstance(version, str) and uid and version else None
            if key is not None and key in self.values:
                value = self.values[key]
            else:
                try:
                    value = self.parse(obj)
                except self.errors as err:
                    if self.on_error is not None:
                        self.on_error(obj, err)
                    value = None  # remembered as unusable: reported once, not on every sync
            if key is not None:
                values[key] = value
            if value is not None:
                out.append(value)
        self.values = values  # forget what is gone, so the cache never outgrows the cluster
        return out
