"""Node lifecycle (pkg/controller/nodelifecycle) and taint-based eviction (pkg/controller/tainteviction).

Health: a node is heard from when its Lease in kube-node-lease is renewed or its Ready condition's
heartbeat moves. As upstream, what counts is when *we* saw that change on our own clock (the
"probeTimestamp"), so clock skew between machines doesn't matter. Silent for longer than
--node-monitor-grace-period: every kubelet-owned condition becomes Unknown (NodeStatusUnknown,
"Kubelet stopped posting node status.") and the node's pods are marked not Ready.

Taints follow the Ready condition: Unknown -> node.kubernetes.io/unreachable, False ->
node.kubernetes.io/not-ready, each as NoSchedule and NoExecute; True -> neither.

Eviction: a pod on a node with NoExecute taints is deleted once a taint it doesn't tolerate is there, or
after the smallest tolerationSeconds of the tolerations that match. Upstream's DefaultTolerationSeconds
admission gives every pod a 300 s toleration of not-ready/unreachable; our apiserver may not, so a pod
without any toleration for those two taints is evicted after --default-eviction-timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar

from control.api.meta import name_of, namespace_of
from control.client import LEASES, NODES, PODS, Conflict, NotFound, Resource
from control.controllers._base import NODE_INDEX, Context, Controller
from control.controllers._util import (
    JsonObject,
    deepcopy,
    is_deleting,
    parse_time,
    pod_condition,
    rfc3339,
)

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
# The conditions the kubelet owns (nodelifecycle's nodeConditionsToUpdate... set to Unknown together).
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass
class _Health:
    probe: float
    renew: str | None
    heartbeat: str | None
    ready: str | None


def tolerates(toleration: JsonObject, taint: JsonObject) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if not key:
        return False  # an empty key only works with Exists
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def eviction_delay(pod: JsonObject, taint: JsonObject, default_timeout: float) -> float | None:
    """Seconds after the taint was added when POD must go; None if it tolerates TAINT forever."""
    tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or [] if tolerates(t, taint)]
    if not tolerations:
        return default_timeout if taint.get("key") in (UNREACHABLE, NOT_READY) else 0.0
    finite = [float(t["tolerationSeconds"]) for t in tolerations if t.get("tolerationSeconds") is not None]
    if not finite:
        return None
    return max(0.0, min(finite))


class NodeLifecycleController(Controller):
    name: ClassVar[str] = "nodelifecycle"
    component: ClassVar[str] = "node-controller"
    primary: ClassVar[Resource | None] = NODES
    resources: ClassVar[tuple[Resource, ...]] = (NODES, LEASES, PODS)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._health: dict[str, _Health] = {}
        self.clock = time.monotonic

    def register(self) -> None:
        self.informer(NODES).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                                         on_delete=self._node_deleted)
        self.informer(LEASES).add_handler(on_add=self._lease_changed, on_update=lambda o, n: self._lease_changed(n))
        self.informer(PODS).add_handler(on_add=self._pod_changed, on_update=lambda o, n: self._pod_changed(n))

    def _node_deleted(self, node: JsonObject) -> None:
        self._health.pop(name_of(node), None)

    def _lease_changed(self, lease: JsonObject) -> None:
        if namespace_of(lease) == LEASE_NAMESPACE:
            self.queue.add(name_of(lease))

    def _pod_changed(self, pod: JsonObject) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and not is_deleting(pod):
            self.queue.add(str(node))

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._monitor()]

    async def _monitor(self) -> None:
        # monitorNodeHealth runs every --node-monitor-period.
        while True:
            await asyncio.sleep(self.options.node_monitor_period)
            for key in self.resync_keys():
                self.queue.add(key)

    # --- sync ------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.informer(NODES).store.get(key)
        if cached is None:
            self._health.pop(key, None)
            return
        node = deepcopy(cached)
        now = self.clock()
        ready = self._ready(node)
        lease = self.informer(LEASES).store.get(key, LEASE_NAMESPACE)
        renew = str(((lease or {}).get("spec") or {}).get("renewTime") or "") or None
        heartbeat = str((ready or {}).get("lastHeartbeatTime") or "") or None
        ready_status = (ready or {}).get("status")
        health = self._health.get(key)
        if health is None:
            health = self._health[key] = _Health(now, renew, heartbeat, ready_status)
        elif renew != health.renew or heartbeat != health.heartbeat:
            health.probe, health.renew, health.heartbeat = now, renew, heartbeat
        previous_ready, health.ready = health.ready, ready_status

        silent = now - health.probe
        if silent > self.options.node_monitor_grace_period and ready_status != "Unknown":
            node = await self._mark_unknown(node)
            self.log.info("node %s: no heartbeat for %.1fs (grace %.1fs): conditions set to Unknown", key, silent,
                          self.options.node_monitor_grace_period)
            ready_status = health.ready = "Unknown"
            self.event(node, "NodeNotReady", f"Node {key} status is now: NodeNotReady")
            await self._mark_pods_not_ready(key)
        elif previous_ready == "True" and ready_status not in ("True", None):
            await self._mark_pods_not_ready(key)
        elif ready_status != "Unknown":
            # Look again when the grace period would run out.
            self.queue.add_after(key, self.options.node_monitor_grace_period - silent + 0.01)

        node = await self._reconcile_taints(node, ready_status)
        await self._evict(node)

    @staticmethod
    def _ready(node: JsonObject) -> JsonObject | None:
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                return dict(cond)
        return None

    async def _mark_unknown(self, node: JsonObject) -> JsonObject:
        stamp = rfc3339(self.ctx.now())
        conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
        if not any(c.get("type") == "Ready" for c in conditions):
            conditions.append({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                               "message": "Kubelet never posted node status.",
                               "lastHeartbeatTime": (node.get("metadata") or {}).get("creationTimestamp"),
                               "lastTransitionTime": stamp})
        for cond in conditions:
            if cond.get("type") in KUBELET_CONDITIONS and cond.get("status") != "Unknown":
                cond.update(status="Unknown", reason="NodeStatusUnknown",
                            message="Kubelet stopped posting node status.", lastTransitionTime=stamp)
        node.setdefault("status", {})["conditions"] = conditions
        return await self.client.update_status(NODES, node)

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """nodeutil.MarkPodsNotReady: the kubelet can't, so we say its pods aren't Ready."""
        stamp = rfc3339(self.ctx.now())
        for cached in self.informer(PODS).store.by_index(NODE_INDEX, node_name):
            cond = pod_condition(cached, "Ready")
            if cond is None or cond.get("status") != "True":
                continue
            pod = deepcopy(cached)
            for c in pod["status"]["conditions"]:
                if c.get("type") == "Ready":
                    c.update(status="False", lastTransitionTime=stamp)
            try:
                await self.client.update_status(PODS, pod, namespace=namespace_of(pod))
            except (NotFound, Conflict):
                continue
            self.log.info("node %s: marked pod %s/%s not ready", node_name, namespace_of(pod), name_of(pod))

    async def _reconcile_taints(self, node: JsonObject, ready_status: str | None) -> JsonObject:
        wanted_key = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(str(ready_status))
        taints = [dict(t) for t in (node.get("spec") or {}).get("taints") or []]
        kept = [t for t in taints if t.get("key") not in (UNREACHABLE, NOT_READY) or
                (t.get("key") == wanted_key and t.get("effect") in ("NoSchedule", "NoExecute"))]
        if wanted_key is not None:
            for effect in ("NoSchedule", "NoExecute"):
                if not any(t.get("key") == wanted_key and t.get("effect") == effect for t in kept):
                    taint: JsonObject = {"key": wanted_key, "effect": effect}
                    if effect == "NoExecute":
                        taint["timeAdded"] = rfc3339(self.ctx.now())
                    kept.append(taint)
        if kept == taints:
            return node
        node.setdefault("spec", {})["taints"] = kept
        if not kept:
            node["spec"].pop("taints")
        updated = await self.client.update(NODES, node)
        added = [t["key"] + ":" + t["effect"] for t in kept if t not in taints]
        removed = [t["key"] + ":" + t["effect"] for t in taints if t not in kept]
        self.log.info("node %s: taints%s%s", name_of(node), f" added {', '.join(added)}" if added else "",
                      f" removed {', '.join(removed)}" if removed else "")
        return updated

    async def _evict(self, node: JsonObject) -> None:
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            return
        now = self.ctx.now()
        soonest: float | None = None
        for pod in self.informer(PODS).store.by_index(NODE_INDEX, name_of(node)):
            if is_deleting(pod):
                continue
            deadline: float | None = None
            for taint in taints:
                delay = eviction_delay(pod, taint, self.options.default_eviction_timeout)
                if delay is None:
                    continue
                added = parse_time(taint.get("timeAdded")) or now
                deadline = added + delay if deadline is None else min(deadline, added + delay)
            if deadline is None:
                continue
            if deadline > now:
                soonest = deadline if soonest is None else min(soonest, deadline)
                continue
            try:
                await self.client.delete(PODS, name_of(pod), namespace=namespace_of(pod),
                                         preconditions={"uid": str((pod.get("metadata") or {}).get("uid") or "")})
            except (NotFound, Conflict):
                continue
            self.log.info("node %s: evicted pod %s/%s (NoExecute taint %s)", name_of(node), namespace_of(pod),
                          name_of(pod), ", ".join(str(t.get("key")) for t in taints))
            self.event(pod, "TaintManagerEviction", f"Marking for deletion Pod {namespace_of(pod)}/{name_of(pod)}")
        if soonest is not None:
            self.queue.add_after(name_of(node), max(0.01, soonest - now))
