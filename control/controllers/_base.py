"""What every controller shares: options, the shared informers, the worker loop over a work queue,
and ControllerExpectations.

A controller registers handlers that only enqueue keys (kube-controller-manager's pattern: handlers
record, workers reconcile), and implements
`sync(key)`: read the object from the informer cache, compare with the world, act through the API.
A sync that raises is retried with per-key exponential backoff (pkg/controller's
`handleErr` + `AddRateLimited`); one that succeeds resets the backoff (`Forget`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from control.api.meta import namespace_of, uid_of
from control.client import (
    ApiConnectionError,
    Client,
    Conflict,
    IndexFunc,
    Informer,
    KubeClientError,
    NotFound,
    Resource,
    index_by_namespace,
)
from control.controllers._util import JsonObject, controller_ref, deepcopy, index_by_owner_uid, index_by_uid, key_of
from control.controllers._workqueue import ShutDown, WorkQueue

log = logging.getLogger("control.controllers")


@dataclass
class Options:
    """Every tunable of the controller-manager; defaults are kube-controller-manager's."""

    cluster_cidr: str | None = None
    node_cidr_mask_size: int = 24
    lb_pool: str = ""
    #: --node-monitor-grace-period (upstream 40 s in 1.30).
    node_monitor_grace_period: float = 40.0
    #: --node-monitor-period: how often node health is checked (upstream 5 s).
    node_monitor_period: float = 5.0
    #: How long pods without a toleration for the not-ready/unreachable taints stay on a failed node;
    #: upstream admission (DefaultTolerationSeconds) adds a 300 s toleration to every pod.
    default_eviction_timeout: float = 300.0
    #: Periodic re-enqueue of every object (the informers' resync; upstream's --min-resync-period is 12 h,
    #: we resync more often since it is cheap here and repairs anything missed).
    resync_period: float = 300.0
    workers: int = 5
    #: ControllerExpectations' TTL (upstream ExpectationsTimeout, 5 min).
    expectations_timeout: float = 300.0
    base_backoff: float = 0.005
    max_backoff: float = 300.0
    #: How long the namespace controller waits before checking again for content still being deleted.
    namespace_recheck: float = 2.0
    #: Deployment progressDeadlineSeconds checks and pod availability rechecks never wait longer than this.
    max_requeue: float = 60.0
    #: A Job's first pod re-creation after a failure waits this long, doubling per failure (upstream's
    #: DefaultJobPodFailureBackOff, 10 s).
    job_backoff_base: float = 10.0
    #: --root-ca-file's certificate (PEM): published as kube-root-ca.crt in every namespace.
    root_ca: str = ""
    #: Where the local-path provisioner makes volume directories (one per node below it); "" = nowhere.
    local_path_root: str = ""
    #: --kube-api-qps / --kube-api-burst: each controller's own request rate limit (and the shared
    #: informers' one), as upstream's; a QPS of 0 or less: no limit.
    kube_api_qps: float = 20.0
    kube_api_burst: int = 30


# Indexes every shared informer carries, so any controller can look objects up by namespace, uid or owner.
NAMESPACE_INDEX = "namespace"
UID_INDEX = "uid"
OWNER_INDEX = "owner"
ORPHAN_INDEX = "orphan"  # by namespace, the objects no controller owns (upstream's orphan pod indexer)
NODE_INDEX = "node"
SERVICE_INDEX = "service"


def _pod_node(obj: JsonObject) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []


def _slice_service(obj: JsonObject) -> list[str]:
    # index_by_label alone would mix services of the same name in different namespaces.
    meta = obj.get("metadata") or {}
    svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
    return [f"{meta.get('namespace')}/{svc}"] if svc else []


def _orphan(obj: JsonObject) -> list[str]:
    return [] if controller_ref(obj) is not None else index_by_namespace(obj)


def indexers_for(resource: Resource) -> dict[str, IndexFunc]:
    indexers: dict[str, IndexFunc] = {UID_INDEX: index_by_uid, OWNER_INDEX: index_by_owner_uid}
    if resource.namespaced:
        indexers[NAMESPACE_INDEX] = index_by_namespace
        indexers[ORPHAN_INDEX] = _orphan
    if resource.plural == "pods":
        indexers[NODE_INDEX] = _pod_node
    if resource.plural == "endpointslices":
        indexers[SERVICE_INDEX] = _slice_service
    return indexers


class SharedInformers:
    """One informer per resource, shared by every controller that needs it (client-go's SharedInformerFactory)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[Resource, Informer] = {}
        self._started: set[Resource] = set()

    def get(self, resource: Resource) -> Informer:
        informer = self._informers.get(resource)
        if informer is None:
            informer = Informer(self.client, resource, indexers=indexers_for(resource))
            self._informers[resource] = informer
        return informer

    def __contains__(self, resource: Resource) -> bool:
        return resource in self._informers

    def all(self) -> list[Informer]:
        return list(self._informers.values())

    def discard(self, resource: Resource) -> Informer | None:
        """RESOURCE's informer, no longer shared (a custom resource whose CRD went); the caller stops it."""
        self._started.discard(resource)
        return self._informers.pop(resource, None)

    def start(self) -> None:
        for resource, informer in self._informers.items():
            if resource not in self._started:
                self._started.add(resource)
                informer.start()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        results = await asyncio.gather(*(i.wait_synced(timeout) for i in self._informers.values()))
        return all(results)

    async def stop(self) -> None:
        for informer in self._informers.values():
            await informer.stop()


class EventSpamFilter:
    """client-go's EventSourceObjectSpamFilter, which every recorder of upstream's controllers applies before
    an Event reaches the apiserver: a burst of 25 events about one object, then one per 5 minutes (a token
    bucket per source and involved object, in an LRU of 4096). A ReplicaSet creating 1000 pods records 25
    SuccessfulCreate events, not 1000 writes. (client-go's aggregation of similar events into one
    "combined from similar events" Event, whose count is then patched, is not modelled: the filter alone
    already bounds the writes the same way.)"""

    BURST: ClassVar[int] = 25
    QPS: ClassVar[float] = 1 / 300
    SIZE: ClassVar[int] = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, ...], tuple[float, float]] = {}  # key -> (tokens, when counted)

    def allow(self, involved: JsonObject) -> bool:
        meta = involved.get("metadata") or {}
        key = (str(involved.get("kind") or ""), str(involved.get("apiVersion") or ""), str(meta.get("namespace") or ""),
               str(meta.get("name") or ""), str(meta.get("uid") or ""))
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.BURST), now))
        tokens = min(float(self.BURST), tokens + (now - then) * self.QPS)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)  # re-inserted: most recently used last
        if len(self._buckets) > self.SIZE:
            del self._buckets[next(iter(self._buckets))]
        return allowed


@dataclass
class Context:
    client: Client
    informers: SharedInformers
    options: Options
    #: Wall clock for timestamps the API sees (lastTransitionTime, eviction deadlines).
    now: Callable[[], float] = time.time
    extra: dict[str, Any] = field(default_factory=dict)


class Controller(abc.ABC):
    """One control loop: handlers enqueue keys, `workers` tasks call `sync(key)`."""

    name: ClassVar[str]
    #: The resources whose informers this controller reads.
    resources: ClassVar[tuple[Resource, ...]] = ()
    #: The resource whose keys are this controller's work items (for the periodic resync), if any.
    primary: ClassVar[Resource | None] = None

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # A client of its own, as kube-controller-manager's client builder gives each controller: its own
        # token bucket (a ReplicaSet's burst of creates does not starve the endpoint controllers).
        self.client = ctx.client.rate_limited(ctx.options.kube_api_qps, ctx.options.kube_api_burst)
        self.options = ctx.options
        self.log = logging.getLogger(f"control.controllers.{self.name}")
        self.queue = WorkQueue(self.name, base_delay=ctx.options.base_backoff, max_delay=ctx.options.max_backoff)
        self._tasks: list[asyncio.Task[None]] = []
        self._events: set[asyncio.Task[None]] = set()
        self.event_filter = EventSpamFilter()

    #: The event source component, as upstream's controllers name themselves in events.
    component: ClassVar[str] = ""

    def informer(self, resource: Resource) -> Informer:
        return self.ctx.informers.get(resource)

    def owned_or_orphaned(self, resource: Resource, owner: JsonObject) -> list[JsonObject]:
        """The cached RESOURCE objects OWNER's controller may claim: those whose controllerRef is OWNER,
        and those of its namespace no controller owns (upstream's FilterPodsByOwner with orphans), without
        walking the rest of the namespace."""
        store = self.informer(resource).store
        uid = uid_of(owner)
        owned = [o for o in store.by_index(OWNER_INDEX, uid) if (controller_ref(o) or {}).get("uid") == uid]
        return owned + store.by_index(ORPHAN_INDEX, namespace_of(owner))

    def event(self, obj: JsonObject, reason: str, message: str, *, warning: bool = False) -> None:
        """Records a core/v1 Event about OBJ in the background (client-go's EventRecorder is
        asynchronous too): a failure to record is logged, never fails the sync."""
        if self.queue.shutting_down:
            return
        if not self.event_filter.allow(obj):
            self.log.debug("event %s about %s dropped: too many about it (client-go's spam filter)", reason,
                           key_of(obj))
            return

        async def record() -> None:
            try:
                await self.client.create_event(obj, reason=reason, message=message,
                                               component=self.component or f"{self.name}-controller",
                                               event_type="Warning" if warning else "Normal")
            except KubeClientError as exc:
                self.log.debug("event %s about %s not recorded: %s", reason, key_of(obj), exc)

        task = asyncio.get_running_loop().create_task(record())
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    @abc.abstractmethod
    def register(self) -> None:
        """Adds the informer handlers (before the informers start)."""

    @abc.abstractmethod
    async def sync(self, key: str) -> None:
        """Brings one object's world to its desired state; raises to be retried with backoff."""

    def enqueue(self, obj: JsonObject) -> None:
        self.queue.add(key_of(obj))

    async def write_status(self, resource: Resource, obj: JsonObject, status: JsonObject) -> None:
        """OBJ's status subresource set to STATUS, unless it already is; an object gone meanwhile needs
        none, and a conflict (someone wrote it since our read) syncs it again."""
        if status == (obj.get("status") or {}):
            return
        body = deepcopy(obj)
        body["status"] = status
        try:
            await self.client.update_status(resource, body, namespace=(obj.get("metadata") or {}).get("namespace"))
        except NotFound:
            return
        except Conflict:
            self.queue.add_rate_limited(key_of(obj))

    def resync_keys(self) -> Iterable[str]:
        if self.primary is None:
            return []
        return self.informer(self.primary).store.keys()

    async def start(self) -> None:
        """Called once the informers have synced: enqueue everything, start the workers."""
        for key in self.resync_keys():
            self.queue.add(key)
        loop = asyncio.get_running_loop()
        for i in range(max(1, self.workers())):
            self._tasks.append(loop.create_task(self._worker(), name=f"{self.name}-worker-{i}"))
        if self.options.resync_period > 0:
            self._tasks.append(loop.create_task(self._resync(), name=f"{self.name}-resync"))
        self._tasks.extend(loop.create_task(coro, name=f"{self.name}-extra") for coro in self.background())

    def workers(self) -> int:
        return self.options.workers

    def background(self) -> list[Any]:
        """Extra coroutines to run beside the workers (periodic monitors)."""
        return []

    async def stop(self) -> None:
        self.queue.shut_down()
        if self._events:
            await asyncio.wait(set(self._events), timeout=2.0)
        for task in [*self._tasks, *self._events]:
            task.cancel()
        for task in [*self._tasks, *self._events]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.options.resync_period)
            for key in self.resync_keys():
                self.queue.add(key)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                raise
            except (Conflict, NotFound, ApiConnectionError) as exc:
                # Expected races (a stale read, an object deleted under us) and a briefly unreachable
                # apiserver: retry quietly; the next sync sees the cache catch up.
                self.log.info("%s %s: %s; retrying", self.name, key, exc)
                self.queue.add_rate_limited(key)
            except Exception:
                self.log.exception("%s %s failed; retrying (attempt %d)", self.name, key,
                                   self.queue.num_requeues(key) + 1)
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)


class Expectations:
    """pkg/controller's UIDTrackingControllerExpectations: how many creations and which deletions a
    controller is still waiting to see in its informer. Until they are seen (or expire), the controller
    must not act on its stale cache, or it would create or delete twice."""

    @dataclass
    class _Record:
        adds: int
        deletes: set[str]
        stamp: float

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._records: dict[str, Expectations._Record] = {}

    def satisfied(self, key: str) -> bool:
        record = self._records.get(key)
        if record is None:
            return True
        if record.adds <= 0 and not record.deletes:
            return True
        return self._clock() - record.stamp > self.ttl

    def expect(self, key: str, *, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        self._records[key] = self._Record(adds, set(deletes), self._clock())

    def creation_observed(self, key: str, count: int = 1) -> None:
        record = self._records.get(key)
        if record is not None:
            record.adds -= count

    def deletion_observed(self, key: str, pod_key: str) -> None:
        record = self._records.get(key)
        if record is not None:
            record.deletes.discard(pod_key)

    def forget(self, key: str) -> None:
        self._records.pop(key, None)
