"""Node lifecycle: a silent node turns Unknown and tainted, its pods not ready and then evicted;
it recovers when its kubelet (the test) reports again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from controllers_kit import cluster, eventually, pod_template, run, set_pod_status

from control.client import LEASES, NODES, PODS, Client
from control.controllers import eviction_delay, tolerates


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def micro_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 1000000:06d}Z"


async def post_ready(client: Client, name: str, status: str = "True") -> None:
    node = await client.get(NODES, name)
    stamp = now()
    node["status"] = {"conditions": [
        {"type": "Ready", "status": status, "reason": "KubeletReady" if status == "True" else "KubeletNotReady",
         "message": "", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp},
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "",
         "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]}
    await client.update_status(NODES, node)


async def renew(client: Client, name: str) -> None:
    lease = await client.get(LEASES, name, namespace="kube-node-lease")
    lease["spec"]["renewTime"] = micro_now()
    await client.update(LEASES, lease)


def taints(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node.get("spec", {}).get("taints") or []}


def test_stale_lease_marks_node_unknown_taints_and_evicts_then_recovers(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "nodelifecycle", node_monitor_grace_period=0.8,
                           default_eviction_timeout=1.0) as (_, admin):
            await admin.create(NODES, {"metadata": {"name": "worker-1"}})
            await post_ready(admin, "worker-1")
            await admin.create(LEASES, {"metadata": {"name": "worker-1"}, "spec": {
                "holderIdentity": "worker-1", "leaseDurationSeconds": 40, "renewTime": micro_now()}},
                namespace="kube-node-lease")
            pods: dict[str, dict[str, Any]] = {}
            for name, tolerations in (("plain", None), ("patient", [
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 3600}])):
                body = pod_template({"app": name})
                body["metadata"]["name"] = name
                body["spec"]["nodeName"] = "worker-1"
                if tolerations:
                    body["spec"]["tolerations"] = tolerations
                pods[name] = await set_pod_status(admin, await admin.create(PODS, body, namespace="default"),
                                                  ip=f"10.244.1.{len(pods) + 2}")

            async def heartbeat() -> None:
                while True:
                    await renew(admin, "worker-1")
                    await asyncio.sleep(0.1)

            beating = asyncio.get_running_loop().create_task(heartbeat())
            await asyncio.sleep(1.2)  # longer than the grace period: the heartbeat keeps it Ready
            node = await admin.get(NODES, "worker-1")
            assert node["status"]["conditions"][0]["status"] == "True"
            assert not taints(node)

            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

            async def unknown() -> dict[str, Any] | None:
                node = await admin.get(NODES, "worker-1")
                conds = {c["type"]: c for c in node["status"]["conditions"]}
                ok = (conds["Ready"]["status"] == "Unknown" and conds["MemoryPressure"]["status"] == "Unknown"
                      and taints(node) == {("node.kubernetes.io/unreachable", "NoExecute"),
                                           ("node.kubernetes.io/unreachable", "NoSchedule")})
                return node if ok else None

            node = await eventually(unknown, timeout=5, what="node Unknown and tainted")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            assert ready["reason"] == "NodeStatusUnknown"
            assert ready["message"] == "Kubelet stopped posting node status."

            async def pods_not_ready() -> bool:
                for name in pods:
                    p = await admin.get(PODS, name, namespace="default")
                    if next(c for c in p["status"]["conditions"] if c["type"] == "Ready")["status"] != "False":
                        return False
                return True

            await eventually(pods_not_ready, what="pods marked not ready")

            async def plain_evicted() -> bool:
                p = await admin.get(PODS, "plain", namespace="default")
                return bool(p["metadata"].get("deletionTimestamp"))

            await eventually(plain_evicted, timeout=5, what="untolerating pod evicted after the default timeout")
            patient = await admin.get(PODS, "patient", namespace="default")
            assert not patient["metadata"].get("deletionTimestamp")

            # The kubelet comes back.
            await renew(admin, "worker-1")
            await post_ready(admin, "worker-1")

            async def recovered() -> bool:
                node = await admin.get(NODES, "worker-1")
                return not taints(node)

            await eventually(recovered, what="taints removed")

            # A kubelet reporting NotReady: not-ready taints.
            await post_ready(admin, "worker-1", "False")

            async def not_ready_tainted() -> bool:
                node = await admin.get(NODES, "worker-1")
                return taints(node) == {("node.kubernetes.io/not-ready", "NoExecute"),
                                        ("node.kubernetes.io/not-ready", "NoSchedule")}

            await eventually(not_ready_tainted, what="not-ready taints")

    run(main)


def test_toleration_matching_and_eviction_delay() -> None:
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    assert tolerates({"operator": "Exists"}, taint)
    assert tolerates({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}, taint)
    assert not tolerates({"key": "other", "operator": "Exists"}, taint)
    assert not tolerates({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}, taint)
    pod = {"spec": {"tolerations": [{"operator": "Exists", "tolerationSeconds": 30},
                                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                     "tolerationSeconds": 10}]}}
    assert eviction_delay(pod, taint, 300) == 10
    assert eviction_delay({"spec": {}}, taint, 300) == 300
    assert eviction_delay({"spec": {}}, {"key": "custom", "effect": "NoExecute"}, 300) == 0
    assert eviction_delay({"spec": {"tolerations": [{"operator": "Exists"}]}}, taint, 300) is None
