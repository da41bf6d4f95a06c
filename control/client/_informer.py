"""Informers: list, then watch from the list's resourceVersion; 410 -> relist; reconnect with backoff.

The shape is client-go's reflector + shared informer, and kopf's watching loop:
- list (paginated), replace the store, deliver the difference to the handlers, remember the list's RV;
- watch from that RV with bookmarks, moving the RV forward on every event and every BOOKMARK;
- a watch the server ends (its timeoutSeconds) is re-opened at once from the last RV;
- a broken one is re-opened from the last RV after an exponential, capped, jittered backoff;
- a 410 (an ERROR event with a 410 Status, or HTTP 410) means our RV left the server's history:
  list again and turn the difference into synthetic add / update / delete events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from control.client._client import Client
from control.client._errors import ApiConnectionError, ApiError, Gone, KubeClientError, TooManyRequests
from control.client._resource import Resource
from control.client._store import Indexer, IndexFunc, JsonObject, object_key

log = logging.getLogger("control.client.informer")

Sleep = Callable[[float], Awaitable[None]]
OnAdd = Callable[[JsonObject], None]
OnUpdate = Callable[[JsonObject, JsonObject], None]
OnDelete = Callable[[JsonObject], None]

# client-go's reflector asks for watches of a random length in [5 min, 10 min) so that many clients
# don't all reconnect at once.
MIN_WATCH_TIMEOUT = 300
# client-go treats a watch that ended within a second without a single event as a failure ("very short
# watch"), so a server that accepts and closes at once can't put us in a hot loop.
SHORT_WATCH_SECONDS = 1.0


class Backoff:
    """Exponential backoff, capped, with client-go's jitter: delay = base * (1 + jitter * rand), where
    base = min(maximum, initial * factor ** attempts). Defaults are the reflector's (800 ms, x2, 30 s, 1.0).
    """

    def __init__(
        self,
        initial: float = 0.8,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 1.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        base = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return base * (1.0 + self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempts = 0


@dataclass(frozen=True, slots=True)
class _Handler:
    on_add: OnAdd | None
    on_update: OnUpdate | None
    on_delete: OnDelete | None


class _ShortWatch(ApiConnectionError):
    pass


class Informer:
    """Keeps an in-memory copy of one resource (optionally one namespace, label and field selection)
    and tells handlers about every change, in order.

        nodes = Informer(client, NODES, field_selector=f"metadata.name={node}")
        nodes.add_handler(on_add=tracker.add, on_update=tracker.update, on_delete=tracker.delete)
        nodes.start()
        await nodes.wait_synced()
        ...
        await nodes.stop()

    Handlers are plain callables run inside the informer's task: they must only record, and
    leave the work to a worker. One that raises is logged and the stream goes on. After a relist,
    handlers get the difference:
    `on_add` for new keys, `on_update` for changed resourceVersions, `on_delete` (with the last state we
    knew; client-go wraps it in DeletedFinalStateUnknown, we pass the object itself) for vanished keys, and
    `on_delete` then `on_add` for a name that now belongs to a new object (another uid). Objects in the
    store and given to handlers are shared: never mutate them.

    `transform` (client-go's SetTransform) turns each object, as it arrives, into what the store keeps
    and the handlers see: a component that needs a little of each object keeps only that little. It
    must keep metadata.name, namespace, uid and resourceVersion, which the informer itself reads. It runs
    on each list page as the page arrives, so with `page_size` set a relist holds at most one page of
    whole objects; `strip_managed_fields` is the transform of components that only read (upstream's
    kube-proxy and scheduler set it).

    Seams: `sleep` (backoff waits), `clock` (short-watch detection), `rng` (jitter, watch lengths).
    """

    def __init__(
        self,
        client: Client,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        transform: Callable[[JsonObject], JsonObject] | None = None,
        page_size: int | None = 500,
        watch_timeout_seconds: int | None = None,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store = Indexer(indexers)
        self._transform = transform
        self._page_size = page_size
        self._watch_timeout = watch_timeout_seconds
        self._rng = rng or random.Random()
        self.backoff = backoff or Backoff(rng=self._rng)
        self._sleep = sleep
        self._clock = clock
        self._handlers: list[_Handler] = []
        self._resource_version = ""
        self._synced = False
        self._settled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        #: Counters, for tests and metrics.
        self.lists = 0
        self.watches = 0

    def __repr__(self) -> str:
        selection = ",".join(s for s in (self.namespace, self.label_selector, self.field_selector) if s)
        return f"Informer({self.resource.plural}{'[' + selection + ']' if selection else ''})"

    # --- public ------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (list, event or bookmark): where a re-watch starts."""
        return self._resource_version

    @property
    def has_synced(self) -> bool:
        """True once the first list has been stored and delivered to the handlers."""
        return self._synced

    def add_handler(
        self,
        *,
        on_add: OnAdd | None = None,
        on_update: OnUpdate | None = None,
        on_delete: OnDelete | None = None,
    ) -> None:
        """Registers handlers; added after the first list, they are first told of every stored object
        as an add (client-go's AddEventHandler does the same)."""
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self._synced and on_add is not None:
            for obj in self.store.list():
                self._call(on_add, obj)

    def start(self) -> None:
        """Starts the list-and-watch task in the running event loop; returns at once."""
        if self._task is not None:
            raise RuntimeError(f"{self!r} already started")
        if self._stopped:
            raise RuntimeError(f"{self!r} was stopped: make a new Informer")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=repr(self))
        self._task.add_done_callback(self._task_done)

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Waits for the first list to be delivered; False on timeout or if stopped before that."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return self._synced

    async def stop(self) -> None:
        """Stops the task and closes its watch; the store keeps its last contents."""
        self._stopped = True
        self._settled.set()
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Swallow only the cancellation we caused; if our caller is being cancelled, let it through.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def __aenter__(self) -> Informer:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- the loop ----------------------------------------------------------------------------------

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._settled.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("%r died: %r", self, task.exception())

    async def _run(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
            except Gone as exc:
                log.info("%r: resourceVersion %s is gone (%s); listing again", self, self._resource_version,
                         exc.message)
                need_list = True
                await self._sleep(self.backoff.next())
            except ApiError as exc:
                if _resource_version_too_large(exc):
                    # Our RV is ahead of this apiserver (a restored or different store): client-go's reflector
                    # then forgets it and relists, rather than waiting for the server to catch up forever.
                    log.info("%r: resourceVersion %s is ahead of the apiserver; listing again", self,
                             self._resource_version)
                    need_list = True
                await self._after_failure(exc)
            except KubeClientError as exc:
                await self._after_failure(exc)

    async def _after_failure(self, exc: KubeClientError) -> None:
        delay = self.backoff.next()
        if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        log.warning("%r: %s; retrying in %.2fs", self, exc, delay)
        await self._sleep(delay)

    def _as_stored(self, obj: JsonObject) -> JsonObject:
        # Items of a List carry no kind/apiVersion; watch objects do. Make both look alike for handlers.
        if self.resource.kind:
            obj.setdefault("kind", self.resource.kind)
            obj.setdefault("apiVersion", self.resource.api_version)
        return obj if self._transform is None else self._transform(obj)

    def _listed_item(self, item: Any) -> JsonObject | None:
        return self._as_stored(item) if _key_or_none(item) is not None else None

    async def _relist(self) -> None:
        # A consistent list (no resourceVersion): client-go starts from RV "0" (any cached state) and uses
        # a consistent read only after a 410; we always take the consistent one, so a relist can never go
        # back in time.
        # Each page's items are turned into what the store keeps as the page arrives (the transform runs
        # there), so a 10k-object list never has all its whole objects in memory at once.
        listed = await self.client.list(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            limit=self._page_size,
            transform=self._listed_item,
        )
        self.lists += 1
        self.backoff.reset()
        fresh: dict[str, JsonObject] = {object_key(obj): obj for obj in listed.get("items") or []}
        gone = [key for key in self.store.keys() if key not in fresh]  # noqa: SIM118 (a copy: we remove below)
        for obj in fresh.values():
            old = self.store.put(obj)
            if old is None:
                self._dispatch_add(obj)
            elif _uid(old) != _uid(obj):
                # Deleted and re-created under the same name while we weren't watching.
                self._dispatch_delete(old)
                self._dispatch_add(obj)
            elif _rv(old) != _rv(obj):
                self._dispatch_update(old, obj)
        for key in gone:
            old = self.store.remove(key)
            if old is not None:
                self._dispatch_delete(old)
        self._resource_version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        if not self._synced:
            self._synced = True
            self._settled.set()
            log.debug("%r synced: %d objects at resourceVersion %s", self, len(self.store), self._resource_version)

    async def _watch(self) -> None:
        timeout = self._watch_timeout or self._rng.randrange(MIN_WATCH_TIMEOUT, 2 * MIN_WATCH_TIMEOUT)
        started = self._clock()
        received = 0
        self.watches += 1
        async with self.client.watch(
            self.resource,
            namespace=self.namespace,
            resource_version=self._resource_version or None,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=timeout,
            allow_watch_bookmarks=True,
        ) as events:
            async for event in events:
                if event.type == "ERROR":
                    error = event.error()
                    assert error is not None
                    raise error
                received += 1
                if received == 1:
                    self.backoff.reset()
                self._apply(event.type, event.object)
        if received == 0 and self._clock() - started < SHORT_WATCH_SECONDS:
            raise _ShortWatch(f"watch of {self.resource.plural} ended within {SHORT_WATCH_SECONDS}s "
                              "without a single event")

    def _apply(self, kind: str, obj: JsonObject) -> None:
        rv = _rv(obj)
        if kind == "BOOKMARK":
            if rv:
                self._resource_version = rv
            return
        key = _key_or_none(obj)
        if key is None:
            if rv:
                self._resource_version = rv
            return
        obj = self._as_stored(obj)
        if kind in ("ADDED", "MODIFIED"):
            old = self.store.put(obj)
            if old is None:
                self._dispatch_add(obj)
            else:
                self._dispatch_update(old, obj)
        elif kind == "DELETED":
            self.store.remove(key)
            self._dispatch_delete(obj)
        if rv:
            self._resource_version = rv

    # --- delivery ----------------------------------------------------------------------------------

    def _call(self, func: Callable[..., None], *args: JsonObject) -> None:
        try:
            func(*args)
        except Exception:
            log.exception("%r: handler %r failed; the stream goes on", self, func)

    def _dispatch_add(self, obj: JsonObject) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _dispatch_update(self, old: JsonObject, new: JsonObject) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: JsonObject) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)


def strip_managed_fields(obj: JsonObject) -> JsonObject:
    """An informer transform that drops metadata.managedFields (client-go's TransformStripManagedFields,
    which kube-proxy and kube-scheduler set on their informers): server-side apply's bookkeeping, often
    the biggest part of a small object, which a component that only reads objects never looks at."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _key_or_none(obj: Any) -> str | None:
    if isinstance(obj, dict):
        try:
            return object_key(obj)
        except ValueError:
            pass
    log.warning("skipping an object without metadata.name: %.200r", obj)
    return None


def _resource_version_too_large(error: ApiError) -> bool:
    # kube-apiserver answers a watch or list from a future RV with 504 Timeout and this cause
    # (apimachinery's NewTooLargeResourceVersionError).
    return error.status == 504 and any(c.reason == "ResourceVersionTooLarge" for c in error.causes)


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


async def wait_for_cache_sync(*informers: Informer, timeout: float | None = None) -> bool:
    """True once every informer has synced (client-go's WaitForCacheSync); False on timeout."""
    try:
        results = await asyncio.wait_for(asyncio.gather(*(i.wait_synced() for i in informers)), timeout)
    except TimeoutError:
        return False
    return all(results)
