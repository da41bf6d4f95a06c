"""The scheduler process's core: informers feed the queue and the cache; one loop pops a pod, runs the
algorithm synchronously, assumes the result and hands the binding to a background task
(upstream's scheduleOne: a scheduling cycle, then an asynchronous binding cycle).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from control.api import Selector, selector_from_set
from control.api.storage import ANN_SELECTED_NODE
from control.client import (
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    REPLICA_SETS,
    REPLICATION_CONTROLLERS,
    SERVICES,
    STORAGE_CLASSES,
    Client,
    Conflict,
    Informer,
    KubeClientError,
    NotFound,
    index_by_namespace,
)
from control.scheduler._cache import Cache
from control.scheduler._framework import Algorithm, SchedulingFailure, make_profile
from control.scheduler._queue import POD_INITIAL_BACKOFF, POD_MAX_BACKOFF, QueuedPodInfo, SchedulingQueue
from control.scheduler._types import (
    DEFAULT_SCHEDULER_NAME,
    JsonObject,
    NodeInfo,
    PodInfo,
    label_selector,
)
from control.scheduler._volumebinding import (
    DEFAULT_BIND_TIMEOUT,
    VolumeBindingFailed,
    VolumeLister,
    check_bindings,
    claims_to_select,
)

log = logging.getLogger("control.scheduler")

# Kubernetes' PodReasonUnschedulable / PodReasonSchedulerError (core/v1 types.go).
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_SCHEDULER_ERROR = "SchedulerError"
# Event messages are capped at 1 KiB (events API validation); upstream truncates to fit.
MAX_EVENT_MESSAGE = 1024
_TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass
class Stats:
    scheduled: int = 0
    unschedulable: int = 0
    errors: int = 0
    #: Seconds spent in the synchronous scheduling algorithm (filter + score), summed.
    algorithm_seconds: float = 0.0


class _PodGone(Exception):
    """The pod was deleted (or is being deleted) while PreBind waited for its volumes."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truncate(message: str) -> str:
    return message if len(message) <= MAX_EVENT_MESSAGE else message[:MAX_EVENT_MESSAGE - 3] + "..."


def _node_name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("nodeName") or "")


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


class Scheduler:
    """A scheduler for pods whose spec.schedulerName is `scheduler_name` (empty counts as
    "default-scheduler", the API's default). Pods naming another scheduler are never touched.

        async with Scheduler(client, scheduler_name="default-scheduler", profile="default") as s:
            ...   # runs until the block ends

    Seams: `rng` (tie-breaking), `initial_backoff` / `max_backoff` (seconds), `bind_concurrency`
    (bindings in flight at once; one waiting for its volumes to be bound holds no slot meanwhile),
    `bind_timeout` (seconds PreBind waits for a pod's WaitForFirstConsumer claims to be bound),
    `record_events` (Scheduled / FailedScheduling Events).
    """

    def __init__(
        self,
        client: Client,
        *,
        scheduler_name: str = DEFAULT_SCHEDULER_NAME,
        profile: str = "default",
        rng: random.Random | None = None,
        initial_backoff: float = POD_INITIAL_BACKOFF,
        max_backoff: float = POD_MAX_BACKOFF,
        bind_concurrency: int = 64,
        bind_timeout: float = DEFAULT_BIND_TIMEOUT,
        record_events: bool = True,
    ) -> None:
        if bind_timeout <= 0:
            raise ValueError(f"bind_timeout: {bind_timeout!r} must be a positive number of seconds")
        self.client = client
        self.bind_timeout = bind_timeout
        self.scheduler_name = scheduler_name
        self.claims = Informer(client, PERSISTENT_VOLUME_CLAIMS)
        self.volumes = Informer(client, PERSISTENT_VOLUMES)
        self.storage_classes = Informer(client, STORAGE_CLASSES)
        self.volume_lister = VolumeLister(claim=lambda ns, name: self.claims.store.get(name, ns),
                                          volume=lambda name: self.volumes.store.get(name),
                                          storage_class=lambda name: self.storage_classes.store.get(name),
                                          volumes=lambda: self.volumes.store.list())
        self.profile = make_profile(profile, scheduler_name, default_selector=self._default_selector,
                                    volumes=self.volume_lister)
        self.algorithm = Algorithm(self.profile, rng=rng)
        self.cache = Cache()
        self.queue = SchedulingQueue(initial_backoff=initial_backoff, max_backoff=max_backoff)
        self.stats = Stats()
        self.record_events = record_events
        self.pods = Informer(client, PODS)
        self.nodes = Informer(client, NODES)
        self.services = Informer(client, SERVICES, indexers={"namespace": index_by_namespace})
        self.replica_sets = Informer(client, REPLICA_SETS)
        self.replication_controllers = Informer(client, REPLICATION_CONTROLLERS)
        self._informers = (self.nodes, self.pods, self.services, self.replica_sets, self.replication_controllers,
                           self.claims, self.volumes, self.storage_classes)
        # A claim or volume appearing or changing may make a waiting pod schedulable (upstream's PvcAdd,
        # PvcUpdate, PvAdd, PvUpdate cluster events of the VolumeBinding plugin).
        for informer in (self.claims, self.volumes, self.storage_classes):
            informer.add_handler(on_add=self._on_storage_change,
                                 on_update=lambda old, new: self._on_storage_change(new))
        # Bindings waiting in PreBind for their claims: woken on every claim, volume or pod change to look again.
        self._volume_waiters: set[asyncio.Event] = set()
        for informer in (self.claims, self.volumes):
            informer.add_handler(on_add=lambda obj: self._wake_volume_waiters(),
                                 on_update=lambda old, new: self._wake_volume_waiters(),
                                 on_delete=lambda obj: self._wake_volume_waiters())
        self._bind_slots = asyncio.Semaphore(bind_concurrency)
        self._event_slots = asyncio.Semaphore(16)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.pods.add_handler(on_add=self._on_pod_add, on_update=self._on_pod_update, on_delete=self._on_pod_delete)
        self.nodes.add_handler(on_add=self._on_node_add, on_update=self._on_node_update,
                               on_delete=self._on_node_delete)

    def __repr__(self) -> str:
        return f"Scheduler({self.scheduler_name!r}, profile={self.profile.kind!r})"

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self, *, sync_timeout: float | None = None) -> None:
        """Starts the informers, waits for their first lists, then starts scheduling."""
        for informer in self._informers:
            informer.start()
        for informer in self._informers:
            if not await informer.wait_synced(sync_timeout):
                raise TimeoutError(f"{informer!r} did not sync")
        log.info("%r: caches synced: %d node(s), %d bound pod(s), %d pending", self, len(self.cache.node_list()),
                 len(self.cache), len(self.queue))
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name=f"{self!r} loop")

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stops scheduling; bindings and events already under way get GRACE seconds to finish."""
        self.queue.close()
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            self._loop_task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for informer in self._informers:
            await informer.stop()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- informer handlers (record only; the scheduling loop acts) -------------------------------------------

    def _responsible(self, pod: PodInfo) -> bool:
        return pod.scheduler_name == self.scheduler_name

    def _on_pod_add(self, obj: JsonObject) -> None:
        pod = PodInfo.of(obj)
        if pod.node_name:
            if pod.phase not in _TERMINAL_PHASES:
                self.cache.add_pod(pod)
        elif self._responsible(pod) and pod.phase not in _TERMINAL_PHASES and not pod.gated:
            self.queue.add(pod)

    def _on_pod_update(self, old: JsonObject, new: JsonObject) -> None:
        pod = PodInfo.of(new)
        if pod.node_name:
            if not _node_name(old):
                self.queue.delete(pod.key)
            if pod.phase in _TERMINAL_PHASES:
                # Upstream's informer leaves finished pods out: their resources are free again.
                if self.cache.pod(pod.key) is not None:
                    self.cache.remove_pod(pod.key)
                    self.queue.move_all_to_active_or_backoff("AssignedPodDelete")
            else:
                self.cache.update_pod(pod)
            return
        if not self._responsible(pod) or pod.phase in _TERMINAL_PHASES or pod.gated:
            # The SchedulingGates PreEnqueue plugin: a gated pod waits outside the queue, untried.
            self.queue.delete(pod.key)
            return
        if self.cache.is_assumed(pod.key):
            return  # being bound: the informer will soon bring the bound version
        self.queue.update(old, pod)

    def _on_pod_delete(self, obj: JsonObject) -> None:
        self._wake_volume_waiters()
        key = _key(obj)
        if _node_name(obj):
            self.cache.remove_pod(key)
            self.queue.move_all_to_active_or_backoff("AssignedPodDelete")
        else:
            self.queue.delete(key)
            self.cache.forget_pod(key)

    def _on_node_add(self, obj: JsonObject) -> None:
        self.cache.add_node(obj)
        self.queue.move_all_to_active_or_backoff("NodeAdd")

    def _on_node_update(self, old: JsonObject, new: JsonObject) -> None:
        if self.cache.update_node(old, new):
            self.queue.move_all_to_active_or_backoff("NodeUpdate")

    def _on_storage_change(self, obj: JsonObject) -> None:
        self.queue.move_all_to_active_or_backoff(f"{obj.get('kind') or 'Storage'}Change")

    def _wake_volume_waiters(self) -> None:
        for event in self._volume_waiters:
            event.set()

    def _on_node_delete(self, obj: JsonObject) -> None:
        self.cache.remove_node(str((obj.get("metadata") or {}).get("name") or ""))

    # --- spreading's default selector (helper.DefaultSelector) -------------------------------------

    def _default_selector(self, pod: PodInfo) -> Selector:
        """The union of what the pod's Services and its controlling ReplicaSet / ReplicationController
        select: the pods PodTopologySpread's system defaults spread out."""
        labels: dict[str, str] = {}
        for svc in self.services.store.by_index("namespace", pod.namespace):
            selector = (svc.get("spec") or {}).get("selector")
            if selector and selector_from_set(selector).matches(pod.labels):
                labels.update({str(k): str(v) for k, v in selector.items()})
        extra: tuple[Any, ...] = ()
        if pod.controller is not None:
            api_version, kind, name = pod.controller
            if kind == "ReplicationController" and api_version == "v1":
                rc = self.replication_controllers.store.get(name, pod.namespace)
                if rc is not None:
                    labels.update({str(k): str(v) for k, v in ((rc.get("spec") or {}).get("selector") or {}).items()})
            elif kind == "ReplicaSet" and api_version.startswith("apps/"):
                rs = self.replica_sets.store.get(name, pod.namespace)
                if rs is not None:
                    selector = (rs.get("spec") or {}).get("selector")
                    if selector is not None:
                        extra = label_selector(selector).requirements
        # DefaultSelector: the ReplicaSet's requirements join the set's (Selector.add keeps them sorted).
        return selector_from_set(labels).add(*extra)

    # --- the scheduling loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            # A free binding slot first: the queue's backpressure when the apiserver is slow.
            await self._bind_slots.acquire()
            released = False
            try:
                qpi = await self.queue.pop()
                released = not self._schedule_one(qpi)
            except asyncio.CancelledError:
                self._bind_slots.release()
                raise
            except Exception:
                log.exception("%r: scheduling cycle failed", self)
                released = True
            if released:
                self._bind_slots.release()
            # Let the informers deliver what arrived meanwhile.
            await asyncio.sleep(0)

    def _schedule_one(self, qpi: QueuedPodInfo) -> bool:
        """One scheduling cycle. True if a binding task was started (it owns the slot)."""
        pod = qpi.pod
        if pod.terminating or self.cache.is_assumed(pod.key) or self.pods.store.get_by_key(pod.key) is None:
            self.queue.done(pod.key)  # skipPodSchedule: deleted, being deleted, or already assumed
            return False
        started = time.perf_counter()
        try:
            result = self.algorithm.schedule(pod, self.cache.node_list())
        except SchedulingFailure as failure:
            self.stats.algorithm_seconds += time.perf_counter() - started
            self.stats.unschedulable += 1
            self.queue.add_unschedulable(qpi)
            log.info('Unable to schedule pod; no fit; waiting pod="%s" err="%s"', pod.key, failure.message)
            self._spawn(self._record_failure(pod, REASON_UNSCHEDULABLE, failure.message), f"unschedulable {pod.key}")
            return False
        self.stats.algorithm_seconds += time.perf_counter() - started
        assumed = self.cache.assume_pod(pod, result.node)
        log.debug("%s: picked %s (score %d) among %d feasible of %d evaluated node(s)", pod.key, result.node,
                  result.score, result.feasible_nodes, result.evaluated_nodes)
        self._spawn(self._bind(qpi, assumed, result.evaluated_nodes, result.feasible_nodes), f"bind {pod.key}")
        return True

    async def _select_node_for_claims(self, pod: PodInfo) -> dict[str, JsonObject]:
        """VolumeBinding's PreBind, first half: the chosen node on the pod's unbound WaitForFirstConsumer
        claims, for the PV controller and the provisioner. Returns the claims it annotated, as written."""
        written: dict[str, JsonObject] = {}
        for name in claims_to_select(pod.obj, self.volume_lister):
            try:
                written[name] = await self.client.patch(
                    PERSISTENT_VOLUME_CLAIMS, name,
                    {"metadata": {"annotations": {ANN_SELECTED_NODE: pod.node_name}}}, namespace=pod.namespace)
            except NotFound:
                # The claim, not the pod, is gone: a binding failure (the pod waits for it), not a deleted pod.
                raise VolumeBindingFailed(f'pvc "{pod.namespace}/{name}" was deleted') from None
        return written

    async def _wait_for_claims(self, pod: PodInfo, written: dict[str, JsonObject]) -> bool:
        """VolumeBinding's PreBind, second half: waits until every claim of WRITTEN is bound on the pod's
        node (True), or the pod is deleted or being deleted meanwhile (False). VolumeBindingFailed when a
        claim never will be, or after `bind_timeout` seconds."""
        names = list(written)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bind_timeout
        woken = asyncio.Event()
        self._volume_waiters.add(woken)
        try:
            while True:
                woken.clear()  # before looking: a change from here on wakes the wait below
                current = self.pods.store.get_by_key(pod.key)
                if current is None or (current.get("metadata") or {}).get("deletionTimestamp") \
                        or (pod.uid and (current.get("metadata") or {}).get("uid") != pod.uid):
                    return False
                node = self.cache.node(pod.node_name) or NodeInfo(name=pod.node_name)
                if check_bindings(pod.namespace, names, node, self.volume_lister, written):
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise VolumeBindingFailed(
                        f"binding volumes: timed out waiting for the condition ({self.bind_timeout:g} s)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), remaining)
        finally:
            self._volume_waiters.discard(woken)

    async def _bind(self, qpi: QueuedPodInfo, pod: PodInfo, evaluated: int, feasible: int) -> None:
        holding = True  # the slot the scheduling loop took for this binding
        try:
            claims = await self._select_node_for_claims(pod)
            if claims:
                # Waiting on other components, not on the apiserver: the slot is for another pod meanwhile.
                # Not taken back for the one bind request left: the scheduling loop holds a slot while it
                # waits for a pod to pop, so with one slot taking it back would wait for ever.
                self._bind_slots.release()
                holding = False
                if not await self._wait_for_claims(pod, claims):
                    raise _PodGone
            await self.client.bind(pod.name, pod.node_name, namespace=pod.namespace, uid=pod.uid or None)
        except (NotFound, _PodGone):
            self.cache.forget_pod(pod.key)
            self.queue.done(pod.key)
            log.info('Pod was deleted before binding pod="%s"', pod.key)
            return
        except VolumeBindingFailed as failed:
            # handleBindingCycleError: Unreserve (the assumed place is forgotten), the freed room may fit
            # other pods, and this one goes back with backoff.
            self.cache.forget_pod(pod.key)
            self.queue.move_all_to_active_or_backoff("AssignedPodDelete")
            self.stats.errors += 1
            self.queue.add_backoff(qpi)
            message = f'running PreBind plugin "VolumeBinding": {failed}'
            log.warning('Error binding pod, retrying after backoff pod="%s" node="%s" err="%s"', pod.key,
                        pod.node_name, message)
            await self._record_failure(pod, REASON_SCHEDULER_ERROR, message)
            return
        except Exception as exc:
            self.cache.forget_pod(pod.key)
            current = self.pods.store.get_by_key(pod.key)
            if isinstance(exc, Conflict) and (current is None or _node_name(current)
                                              or (current.get("metadata") or {}).get("deletionTimestamp")):
                # Bound by someone else, or being deleted: nothing left for us to do.
                self.queue.done(pod.key)
                log.info('Pod no longer needs scheduling pod="%s" reason="%s"', pod.key, exc)
                return
            self.stats.errors += 1
            self.queue.add_backoff(qpi)
            log.warning('Error binding pod, retrying after backoff pod="%s" node="%s" err="%s"', pod.key,
                        pod.node_name, exc)
            await self._record_failure(pod, REASON_SCHEDULER_ERROR, f"Binding rejected: {exc}")
            return
        finally:
            if holding:
                self._bind_slots.release()
        self.cache.finish_binding(pod.key)
        self.queue.done(pod.key)
        self.stats.scheduled += 1
        log.info('Successfully bound pod to node pod="%s" node="%s" evaluatedNodes=%d feasibleNodes=%d',
                 pod.key, pod.node_name, evaluated, feasible)
        if self.record_events:
            await self._event(pod.obj, "Normal", "Scheduled",
                              f"Successfully assigned {pod.key} to {pod.node_name}")

    async def _record_failure(self, pod: PodInfo, reason: str, message: str) -> None:
        """PodScheduled=False with REASON and MESSAGE on the pod's status (only if that changes it, as
        upstream's updatePod), and a FailedScheduling event."""
        current = self.pods.store.get_by_key(pod.key) or pod.obj
        if _node_name(current):
            return  # bound meanwhile (by another scheduler, say): its PodScheduled is True now
        conditions = (current.get("status") or {}).get("conditions") or []
        existing = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        unchanged = (existing is not None and existing.get("status") == "False"
                     and existing.get("reason") == reason and existing.get("message") == message)
        if not unchanged:
            transition = existing.get("lastTransitionTime") if existing and existing.get("status") == "False" \
                else None
            condition = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                         "lastProbeTime": None, "lastTransitionTime": transition or _now()}
            try:
                await self.client.patch(PODS, pod.name, {"status": {"conditions": [condition]}},
                                        namespace=pod.namespace, patch_type="strategic", subresource="status")
            except NotFound:
                return
            except KubeClientError as exc:
                log.warning('Error updating pod status pod="%s" err="%s"', pod.key, exc)
        if self.record_events:
            await self._event(current, "Warning", "FailedScheduling", message)

    async def _event(self, involved: JsonObject, event_type: str, reason: str, message: str) -> None:
        async with self._event_slots:
            try:
                await self.client.create_event(
                    involved, reason=reason, message=_truncate(message), component=self.scheduler_name,
                    event_type="Warning" if event_type == "Warning" else "Normal", kind="Pod", api_version="v1")
            except KubeClientError as exc:
                # Events are best effort (client-go's recorder drops them too when the apiserver refuses).
                log.debug("event %s for %s not recorded: %s", reason, _key(involved), exc)
