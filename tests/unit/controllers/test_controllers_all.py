"""Every controller at once: a Deployment behind a Service, end to end, then deleted through the
garbage collector."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from controllers_kit import cluster, eventually, pod_template, pods_of, run, set_pod_status

from control.client import (
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    ENDPOINTS,
    LEASES,
    NODES,
    PODS,
    REPLICA_SETS,
    SERVICES,
    Client,
    Conflict,
    NotFound,
)


async def play_kubelet(client: Client) -> None:
    n = 10
    while True:
        for pod in await pods_of(client):
            if not pod.get("status", {}).get("podIP"):
                n += 1
                with contextlib.suppress(Conflict, NotFound):
                    await set_pod_status(client, pod, ip=f"10.244.3.{n}")
        await asyncio.sleep(0.05)


def test_deployment_behind_a_service_with_every_controller(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "*", cluster_cidr="10.244.0.0/16", lb_pool="172.18.255.200/29") as (_, admin):
            kubelet = asyncio.get_running_loop().create_task(play_kubelet(admin))
            try:
                await admin.create(DEPLOYMENTS, {"metadata": {"name": "web"}, "spec": {
                    "replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": pod_template({"app": "web"})}}, namespace="default")
                await admin.create(SERVICES, {"metadata": {"name": "web"}, "spec": {
                    "type": "LoadBalancer", "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}, namespace="default")

                async def serving() -> bool:
                    slices = (await admin.list(ENDPOINT_SLICES, namespace="default",
                                               label_selector="kubernetes.io/service-name=web"))["items"]
                    ready = [e for s in slices for e in s.get("endpoints") or [] if e["conditions"]["ready"]]
                    svc = await admin.get(SERVICES, "web", namespace="default")
                    lb: list[Any] = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
                    # The Endpoints object has a controller of its own: it may follow the slices a moment later.
                    try:
                        ep = await admin.get(ENDPOINTS, "web", namespace="default")
                    except NotFound:
                        return False
                    addresses = [a for subset in ep.get("subsets") or [] for a in subset.get("addresses") or []]
                    return len(ready) == 3 and all(p["port"] == 8080 for s in slices for p in s["ports"]) \
                        and lb == [{"ip": "172.18.255.201", "ipMode": "VIP"}] and len(addresses) == 3

                await eventually(serving, what="3 ready endpoints (slices and Endpoints) and an LB IP")

                # Deleting the Deployment takes its ReplicaSet and pods with it (garbage collector).
                await admin.delete(DEPLOYMENTS, "web", namespace="default")

                async def all_gone() -> bool:
                    rss = (await admin.list(REPLICA_SETS, namespace="default"))["items"]
                    return not rss and not await pods_of(admin, active=False)

                await eventually(all_gone, what="ReplicaSet and pods collected")

                async def no_endpoints() -> bool:
                    slices = (await admin.list(ENDPOINT_SLICES, namespace="default",
                                               label_selector="kubernetes.io/service-name=web"))["items"]
                    return len(slices) == 1 and not slices[0].get("endpoints")

                await eventually(no_endpoints, what="placeholder slice only")
            finally:
                kubelet.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await kubelet

    run(main)


def test_dead_node_pods_become_unready_then_are_replaced(tmp_path: Path) -> None:
    """The issue's kubelet-kill scenario at unit level: endpoints turn not ready, the pods are evicted
    after the default toleration and the ReplicaSet replaces them."""
    async def main() -> None:
        async with cluster(tmp_path, "*", node_monitor_grace_period=0.6, default_eviction_timeout=1.0) as (_, admin):
            stamp = "2026-01-01T00:00:00Z"
            await admin.create(NODES, {"metadata": {"name": "worker-1"}})
            node = await admin.get(NODES, "worker-1")
            node["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                              "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]}
            await admin.update_status(NODES, node)
            await admin.create(LEASES, {"metadata": {"name": "worker-1"}, "spec": {"renewTime": stamp}},
                               namespace="kube-node-lease")
            await admin.create(SERVICES, {"metadata": {"name": "web"}, "spec": {
                "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}, namespace="default")
            await admin.create(REPLICA_SETS, {"metadata": {"name": "web"}, "spec": {
                "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template({"app": "web"})}},
                namespace="default")

            async def two() -> list[dict[str, Any]] | None:
                pods = await pods_of(admin, selector="app=web")
                return pods if len(pods) == 2 else None

            first = await eventually(two, what="two pods")
            for i, pod in enumerate(first):
                await admin.bind(pod["metadata"]["name"], "worker-1", namespace="default")
                await set_pod_status(admin, pod, ip=f"10.244.1.{i + 2}")

            async def ready_endpoints() -> int:
                slices = (await admin.list(ENDPOINT_SLICES, namespace="default",
                                           label_selector="kubernetes.io/service-name=web"))["items"]
                return sum(1 for s in slices for e in s.get("endpoints") or [] if e["conditions"]["ready"])

            await eventually(lambda: _equals(ready_endpoints, 2), what="2 ready endpoints")
            # No lease renewals: the node goes Unknown, the endpoints not ready...
            await eventually(lambda: _equals(ready_endpoints, 0), timeout=5, what="endpoints not ready")

            # ... and after the eviction timeout the pods are replaced.
            async def replaced() -> bool:
                pods = await pods_of(admin, selector="app=web")
                old = {p["metadata"]["name"] for p in first}
                return len(pods) == 2 and not old & {p["metadata"]["name"] for p in pods}

            await eventually(replaced, timeout=8, what="pods replaced")
            for pod in first:
                evicted = await admin.get(PODS, pod["metadata"]["name"], namespace="default")
                assert evicted["metadata"].get("deletionTimestamp")

    run(main)


async def _equals(check: Any, value: int) -> bool:
    return bool(await check() == value)
