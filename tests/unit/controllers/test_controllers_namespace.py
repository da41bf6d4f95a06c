"""Namespace deletion and the default ServiceAccount against the real apiserver."""

from __future__ import annotations

from pathlib import Path

from controllers_kit import cluster, eventually, pod_template, pods_of, run

from control.client import (
    CONFIG_MAPS,
    LEASES,
    NAMESPACES,
    PODS,
    REPLICA_SETS,
    SERVICE_ACCOUNTS,
    SERVICES,
    Client,
    NotFound,
)


def test_namespace_deletion_removes_everything_then_the_namespace(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "namespace", "serviceaccount", "replicaset") as (_, admin):
            await admin.create(NAMESPACES, {"metadata": {"name": "team"}})

            async def default_sa() -> bool:
                try:
                    await admin.get(SERVICE_ACCOUNTS, "default", namespace="team")
                    return True
                except NotFound:
                    return False

            await eventually(default_sa, what="default ServiceAccount")
            # Recreated if deleted.
            await admin.delete(SERVICE_ACCOUNTS, "default", namespace="team")
            await eventually(default_sa, what="default ServiceAccount again")
            # The system namespaces have one too.
            await admin.get(SERVICE_ACCOUNTS, "default", namespace="kube-system")

            await admin.create(REPLICA_SETS, {"metadata": {"name": "web"}, "spec": {
                "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template({"app": "web"})}},
                namespace="team")
            await admin.create(SERVICES, {"metadata": {"name": "web"}, "spec": {
                "selector": {"app": "web"}, "ports": [{"port": 80}]}}, namespace="team")
            await admin.create(CONFIG_MAPS, {"metadata": {"name": "cfg"}, "data": {"a": "b"}}, namespace="team")
            await admin.create(LEASES, {"metadata": {"name": "lock"}, "spec": {}}, namespace="team")
            # A pod on a node: it terminates through its kubelet (here, the test).
            bound = pod_template({"app": "solo"})
            bound["metadata"]["name"] = "bound"
            bound["spec"]["nodeName"] = "worker-1"
            await admin.create(PODS, bound, namespace="team")
            await eventually(lambda: _count(admin, 3), what="3 pods")

            await admin.delete(NAMESPACES, "team")
            ns = await admin.get(NAMESPACES, "team")
            assert ns["status"]["phase"] == "Terminating"

            async def only_bound_pod_left() -> bool:
                left = []
                for res in (REPLICA_SETS, SERVICES, CONFIG_MAPS, LEASES, SERVICE_ACCOUNTS):
                    left += (await admin.list(res, namespace="team"))["items"]
                pods = (await admin.list(PODS, namespace="team"))["items"]
                return not left and [p["metadata"]["name"] for p in pods] == ["bound"]

            await eventually(only_bound_pod_left, what="content deleted except the terminating pod")
            pod = await admin.get(PODS, "bound", namespace="team")
            assert pod["metadata"].get("deletionTimestamp")

            async def reported() -> bool:
                ns = await admin.get(NAMESPACES, "team")
                return any(c["type"] == "NamespaceContentRemaining" and c["message"].endswith(
                    ": pods has 1 resource instances") for c in ns["status"].get("conditions", []))

            await eventually(reported, what="NamespaceContentRemaining names the pod")

            # The kubelet finishes the pod: the namespace goes.
            await admin.delete(PODS, "bound", namespace="team", grace_period_seconds=0)

            async def namespace_gone() -> bool:
                try:
                    await admin.get(NAMESPACES, "team")
                    return False
                except NotFound:
                    return True

            await eventually(namespace_gone, what="namespace removed")

    run(main)


async def _count(admin: Client, n: int) -> bool:
    return len(await pods_of(admin, "team", active=False)) == n
