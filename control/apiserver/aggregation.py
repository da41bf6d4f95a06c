"""ClusterRole aggregation (pkg/controller/clusterroleaggregation), run inside the apiserver: a ClusterRole
with an aggregationRule holds the union of the rules of every other ClusterRole its selectors match, in name
order, each rule once. The aggregator listens to the clusterroles watch cache (so it sees every change as
the cache applies it) and re-reconciles, coalesced, after each one.

    aggregated_rules(role, roles)    -> the rules ROLE should hold, or None if it does not aggregate
    Aggregator(registry).start()     reconcile now and after every ClusterRole change; stop() ends it
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from control.api import SelectorError, label_selector_as_selector
from control.apiserver.errors import APIError
from control.apiserver.registry import Registry, Tracking
from control.apiserver.resources import BY_KIND
from control.apiserver.watchcache import WatchEvent

log = logging.getLogger(__name__)


def aggregated_rules(role: dict[str, Any], roles: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    rule = role.get("aggregationRule")
    if not isinstance(rule, dict):
        return None
    selectors = []
    for selector in rule.get("clusterRoleSelectors") or []:
        try:
            selectors.append(label_selector_as_selector(selector))
        except SelectorError:
            continue  # validation refuses these; an old stored one selects nothing
    name = role["metadata"]["name"]
    rules: list[dict[str, Any]] = []
    for other in sorted(roles, key=lambda r: str(r["metadata"]["name"])):
        if other["metadata"]["name"] == name:
            continue
        labels = other["metadata"].get("labels") or {}
        if not any(selector.matches(labels) for selector in selectors):
            continue
        for candidate in other.get("rules") or []:
            if candidate not in rules:
                rules.append(candidate)
    return rules


class Aggregator:
    def __init__(self, registry: Registry):
        self.registry = registry
        self._cache = registry.caches["clusterroles"]
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _changed(self, event: WatchEvent, key: str) -> None:
        self._wake.set()

    async def reconcile(self) -> None:
        res = BY_KIND["ClusterRole"]
        roles = list(self._cache.objects.values())
        for role in roles:
            wanted = aggregated_rules(role, roles)
            if wanted is None or wanted == (role.get("rules") or []):
                continue
            name = role["metadata"]["name"]
            try:
                await self.registry.update(res, None, name, {**role, "rules": wanted},
                                           tracking=Tracking("clusterrole-aggregation-controller"))
            except APIError as exc:  # a conflict or a delete meanwhile: the next change reconciles again
                log.info("aggregating clusterrole %s: %s", name, exc.message)
                self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:  # never let one bad object end aggregation for every role
                log.exception("clusterrole aggregation failed")
            await asyncio.sleep(0.05)  # coalesce a burst of changes into one pass

    def start(self) -> None:
        self._cache.listeners.append(self._changed)
        self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="clusterrole-aggregation")

    async def stop(self) -> None:
        if self._changed in self._cache.listeners:
            self._cache.listeners.remove(self._changed)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


__all__ = ["Aggregator", "aggregated_rules"]
