"""The watch cache: one store watch per resource, fanned out to every client watch of it.

Like kube-apiserver's cacher, it keeps the resource's current objects (so a watch from "now" or "0"
starts with synthetic ADDED events and a list at resourceVersion=0 needs no store read) and a window
of recent events (so a client resuming from a recent resourceVersion gets exactly what it missed).
A resume from before the window is served by a direct store watch, which answers 410 Expired once
the store has compacted that far — the same contract, at a higher cost, for the rare case.

Event objects carry metadata.resourceVersion = the revision of that change; a DELETED event carries
the last state of the object with the revision of the delete, as upstream does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from control.apiserver.resources import Resource
from control.store import CompactedError, Event, EventType, Store

log = logging.getLogger(__name__)

WINDOW = 20_000  # events kept per resource for resumption
WATCHER_QUEUE_LIMIT = 10_000  # a client this far behind is cut off (it will re-watch or relist)


def decode(value: bytes, revision: int) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def with_revision(obj: dict[str, Any], revision: int) -> dict[str, Any]:
    return {**obj, "metadata": {**obj.get("metadata", {}), "resourceVersion": str(revision)}}


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED (BOOKMARK and ERROR are made by the HTTP layer)
    object: dict[str, Any]
    previous: dict[str, Any] | None
    revision: int

    @cached_property
    def line(self) -> bytes:
        """The event as one line of a JSON watch stream: encoded once, however many watchers send it."""
        return json.dumps({"type": self.type, "object": self.object}, separators=(",", ":")).encode() + b"\n"


def convert(event: Event) -> WatchEvent:
    if event.type is EventType.DELETE:
        assert event.prev_kv is not None
        return WatchEvent("DELETED", decode(event.prev_kv.value, event.revision),
                          decode(event.prev_kv.value, event.prev_kv.mod_revision), event.revision)
    previous = decode(event.prev_kv.value, event.prev_kv.mod_revision) if event.prev_kv else None
    return WatchEvent("MODIFIED" if previous else "ADDED", decode(event.kv.value, event.revision), previous,
                      event.revision)


Filter = Callable[[dict[str, Any]], bool]


class Watcher:
    """One client's view: events after its start revision that pass its filter, in order."""

    def __init__(self, start_revision: int, accepts: Filter):
        self.start_revision = start_revision
        self.accepts = accepts
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.last_revision = start_revision
        self.closed = False

    def offer(self, event: WatchEvent) -> None:
        """Translate and enqueue; with a filter, an object entering or leaving it is ADDED/DELETED to this
        watcher (upstream cacher's behaviour for selector watches)."""
        if self.closed or event.revision <= self.start_revision:
            return
        now = self.accepts(event.object)
        before = event.previous is not None and self.accepts(event.previous)
        if event.type == "MODIFIED" and now != before:
            if now:
                event = WatchEvent("ADDED", event.object, None, event.revision)
            else:
                assert event.previous is not None
                event = WatchEvent("DELETED", with_revision(event.previous, event.revision), None, event.revision)
        elif not now:
            return
        if self.queue.qsize() >= WATCHER_QUEUE_LIMIT:
            log.warning("watcher fell %d events behind; closing it", WATCHER_QUEUE_LIMIT)
            self.close()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    async def events(self) -> AsyncIterator[WatchEvent]:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            self.last_revision = event.revision
            yield event


class WatchCache:
    def __init__(self, store: Store, resource: Resource):
        self.store = store
        self.resource = resource
        self.prefix = resource.key_prefix()
        self.objects: dict[str, dict[str, Any]] = {}
        self.history: deque[WatchEvent] = deque(maxlen=WINDOW)
        self.window_start = 0  # every event with a revision above this is in history
        self.revision = 0  # the last revision this cache has applied
        self.watchers: set[Watcher] = set()
        # Called with (event, key) for every applied event, before any watcher sees it: in-process indexes
        # (the Node authorizer's graph) stay exactly as current as the cache.
        self.listeners: list[Callable[[WatchEvent, str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        revision = 0
        start_after: str | None = None
        while True:
            result = await self.store.range(self.prefix, limit=1000, start_after=start_after, revision=revision)
            revision = result.revision
            for kv in result.items:
                self.objects[kv.key] = decode(kv.value, kv.mod_revision)
            if not result.more:
                break
            start_after = result.items[-1].key
        self.window_start = self.revision = revision
        watch = await self.store.watch(self.prefix, start_revision=revision + 1)
        self._task = asyncio.get_running_loop().create_task(self._run(watch), name=f"watchcache-{self.resource.plural}")
        self.ready.set()

    async def _run(self, watch: Any) -> None:
        async with watch:
            async for event in watch:
                self.apply(convert(event), event.key)

    def apply(self, event: WatchEvent, key: str) -> None:
        if event.type == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = event.object
        if len(self.history) == self.history.maxlen:
            self.window_start = self.history[0].revision
        self.history.append(event)
        self.revision = event.revision
        for listener in self.listeners:
            listener(event, key)
        for watcher in list(self.watchers):
            watcher.offer(event)
            if watcher.closed:
                self.watchers.discard(watcher)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for watcher in self.watchers:
            watcher.close()

    def snapshot(self, accepts: Filter) -> list[dict[str, Any]]:
        return [obj for key, obj in sorted(self.objects.items()) if accepts(obj)]

    def covers(self, revision: int) -> bool:
        return revision >= self.window_start

    def watch(self, start_revision: int | None, accepts: Filter) -> tuple[Watcher, list[dict[str, Any]]]:
        """Register a watcher. start_revision None: from now, with the current objects returned as the
        initial ADDED events. Otherwise replay the window after start_revision (caller checks covers())."""
        if start_revision is None:
            watcher = Watcher(self.revision, accepts)
            initial = self.snapshot(accepts)
        else:
            watcher = Watcher(start_revision, accepts)
            initial = []
            for event in self.history:
                watcher.offer(event)
        self.watchers.add(watcher)
        return watcher, initial

    def unwatch(self, watcher: Watcher) -> None:
        watcher.close()
        self.watchers.discard(watcher)


async def direct_watch(store: Store, resource: Resource, start_revision: int,
                       accepts: Filter) -> AsyncIterator[WatchEvent]:
    """A watch from before the cache's window, straight from the store's history. Raises
    CompactedError when that history is gone (the caller answers 410 Expired)."""
    watcher = Watcher(start_revision, accepts)
    watch = await store.watch(resource.key_prefix(), start_revision=start_revision + 1)
    async with watch:
        async for event in watch:
            watcher.offer(convert(event))
            while not watcher.queue.empty():
                item = watcher.queue.get_nowait()
                if item is None:
                    return
                yield item


__all__ = ["CompactedError", "WatchCache", "WatchEvent", "Watcher", "direct_watch"]
