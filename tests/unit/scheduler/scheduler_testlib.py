"""Builders for Node and Pod objects, and a wait helper, shared by the scheduler's tests."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from control.scheduler import NodeInfo, PodInfo, Scheduler
from tests.harness import LocalAPIServer


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: int | str = 110,
         labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
         unschedulable: bool = False, ephemeral: str | None = None,
         extra: dict[str, str] | None = None) -> dict[str, Any]:
    allocatable: dict[str, Any] = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    if ephemeral is not None:
        allocatable["ephemeral-storage"] = ephemeral
    allocatable.update(extra or {})
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": {"capacity": dict(allocatable), "allocatable": allocatable,
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(name: str, *, namespace: str = "default", cpu: str | None = None, memory: str | None = None,
        requests: dict[str, str] | None = None, scheduler: str | None = None, node_name: str | None = None,
        labels: dict[str, str] | None = None, tolerations: list[dict[str, Any]] | None = None,
        node_selector: dict[str, str] | None = None, affinity: dict[str, Any] | None = None,
        owner: dict[str, Any] | None = None, priority: int | None = None, containers: int = 1,
        init_containers: list[dict[str, Any]] | None = None, spread: list[dict[str, Any]] | None = None,
        host_port: int | None = None, uid: str | None = None) -> dict[str, Any]:
    req: dict[str, str] = dict(requests or {})
    if cpu is not None:
        req["cpu"] = cpu
    if memory is not None:
        req["memory"] = memory
    container: dict[str, Any] = {"name": "c", "image": "pause"}
    if req:
        container["resources"] = {"requests": req}
    if host_port is not None:
        container["ports"] = [{"containerPort": 80, "hostPort": host_port}]
    spec: dict[str, Any] = {"containers": [dict(container, name=f"c{i}") for i in range(containers)]}
    if init_containers is not None:
        spec["initContainers"] = init_containers
    if scheduler is not None:
        spec["schedulerName"] = scheduler
    if node_name is not None:
        spec["nodeName"] = node_name
    if tolerations is not None:
        spec["tolerations"] = tolerations
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    if affinity is not None:
        spec["affinity"] = affinity
    if priority is not None:
        spec["priority"] = priority
    if spread is not None:
        spec["topologySpreadConstraints"] = spread
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {}}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    if uid is not None:
        meta["uid"] = uid
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": "Pending"}}


def node_info(obj: dict[str, Any], *pods: dict[str, Any]) -> NodeInfo:
    info = NodeInfo(obj)
    for p in pods:
        info.add_pod(PodInfo.of(p))
    return info


def pod_info(obj: dict[str, Any]) -> PodInfo:
    return PodInfo.of(obj)


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def scheduler(api: LocalAPIServer, **kwargs: Any) -> Scheduler:
    """A Scheduler on API as the scheduler user, with short backoffs and a seeded tie-break."""
    kwargs.setdefault("initial_backoff", 0.05)
    kwargs.setdefault("max_backoff", 0.2)
    kwargs.setdefault("rng", random.Random(1))
    return Scheduler(api.client("scheduler"), **kwargs)
