"""metrics.k8s.io through the apiserver's HTTP app: discovery lists it, NodeMetrics and PodMetrics come
from kubelet pages (a fake fetch returning /metrics/resource text whose counters grow as a clock
moves), RBAC decides, and what cannot be measured is left out as metrics-server leaves it out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from control.apiserver.admission import BasicAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator, User
from control.apiserver.bootstrap import bootstrap
from control.apiserver.metricsapi import MetricsAPI, RegistryLister
from control.apiserver.patch import apply_patch
from control.apiserver.rbac_policy import cluster_roles
from control.apiserver.registry import Registry
from control.apiserver.resources import BY_KIND
from control.apiserver.server import APIServer
from control.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin"}
NOBODY = {"Authorization": "Bearer nobody"}
BASE_MS = 1_700_000_000_000


class Kubelets:
    """Pages of two nodes: each fetch is a second later; 'busy' uses half a CPU, 'idle' nothing."""

    def __init__(self) -> None:
        self.fetches: list[str] = []

    async def fetch(self, url: str) -> str:
        self.fetches.append(url)
        seconds = len(self.fetches)
        now = BASE_MS + seconds * 1000
        if "172.18.0.3" in url:
            raise OSError("connection refused")  # worker-2's kubelet is down
        return "\n".join([
            f"node_cpu_usage_seconds_total {2.0 * seconds} {now}",
            f"node_memory_working_set_bytes {1024 * 1024} {now}",
            f'container_cpu_usage_seconds_total{{container="c",namespace="default",pod="busy"}} {0.5 * seconds} {now}',
            f'container_memory_working_set_bytes{{container="c",namespace="default",pod="busy"}} 20480 {now}',
            f'container_start_time_seconds{{container="c",namespace="default",pod="busy"}} {BASE_MS // 1000} {now}',
            f'container_cpu_usage_seconds_total{{container="c",namespace="default",pod="idle"}} 0 {now}',
            f'container_memory_working_set_bytes{{container="c",namespace="default",pod="idle"}} 4096 {now}',
            f'container_start_time_seconds{{container="c",namespace="default",pod="idle"}} {BASE_MS // 1000} {now}',
        ]) + "\n"


def _node(name: str, address: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"role": name}},
            "status": {"addresses": [{"type": "InternalIP", "address": address}]}}


def _pod(name: str, node: str, phase: str = "Running") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}, "status": {"phase": phase}}


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        store = await SQLiteStore.open(str(tmp_path / "store.db"), compact_interval=None)
        registry = Registry(store, admission=BasicAdmission(), patcher=apply_patch,
                            allocator=ServiceAllocator("10.96.0.0/16", (30000, 32767)))
        await registry.start()
        await bootstrap(registry, service_cidr="10.96.0.0/16", advertise_address="172.18.0.2", port=6443)
        for node in (_node("worker-1", "172.18.0.2"), _node("worker-2", "172.18.0.3")):
            await registry.create(BY_KIND["Node"], None, node)
        for pod in (_pod("busy", "worker-1"), _pod("idle", "worker-1"), _pod("away", "worker-2"),
                    _pod("pending", "worker-1", "Pending")):
            created = await registry.create(BY_KIND["Pod"], "default", pod)
            await registry.update(BY_KIND["Pod"], "default", pod["metadata"]["name"],
                                  {**created, "status": pod["status"]}, subresource="status")
        kubelets = Kubelets()
        server = APIServer(registry, TokenAuthenticator({"admin": User("kubernetes-admin", ("system:masters",)),
                                                         "nobody": User("nobody")}))
        server.metrics = MetricsAPI(RegistryLister(registry), None, fetch=kubelets.fetch, min_window_ms=0)
        server.ready = True
        client = TestClient(TestServer(server.app()))
        await client.start_server()
        try:
            await scenario(client, kubelets)
        finally:
            await client.close()
            await registry.stop()
            await store.close()

    asyncio.run(main())


def test_discovery_lists_the_group_and_its_two_resources(tmp_path: Path) -> None:
    async def scenario(client: TestClient, kubelets: Kubelets) -> None:
        groups = await (await client.get("/apis", headers=ADMIN)).json()
        metrics = next(g for g in groups["groups"] if g["name"] == "metrics.k8s.io")
        assert metrics["preferredVersion"] == {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}
        listing = await (await client.get("/apis/metrics.k8s.io/v1beta1", headers=ADMIN)).json()
        assert {(r["name"], r["kind"], r["namespaced"], tuple(r["verbs"])) for r in listing["resources"]} == {
            ("nodes", "NodeMetrics", False, ("get", "list")), ("pods", "PodMetrics", True, ("get", "list"))}

    run(tmp_path, scenario)


def test_node_metrics_are_rates_over_the_window_and_an_unreachable_kubelet_is_left_out(tmp_path: Path) -> None:
    async def scenario(client: TestClient, kubelets: Kubelets) -> None:
        answer = await client.get("/apis/metrics.k8s.io/v1beta1/nodes", headers=ADMIN)
        assert answer.status == 200
        body = await answer.json()
        assert body["kind"] == "NodeMetricsList"
        (node,) = body["items"]
        assert node["metadata"]["name"] == "worker-1" and node["metadata"]["labels"] == {"role": "worker-1"}
        # 2 CPU-seconds per second between two scrapes a second apart
        assert node["usage"] == {"cpu": "2000000000n", "memory": "1024Ki"}
        assert node["window"].endswith("s") and node["timestamp"].endswith("Z")
        one = await client.get("/apis/metrics.k8s.io/v1beta1/nodes/worker-1", headers=ADMIN)
        assert (await one.json())["kind"] == "NodeMetrics"
        missing = await client.get("/apis/metrics.k8s.io/v1beta1/nodes/worker-2", headers=ADMIN)
        assert missing.status == 404
        assert (await missing.json())["message"] == 'nodes.metrics.k8s.io "worker-2" not found'

    run(tmp_path, scenario)


def test_pod_metrics_per_container_running_pods_only_with_selectors(tmp_path: Path) -> None:
    async def scenario(client: TestClient, kubelets: Kubelets) -> None:
        body = await (await client.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", headers=ADMIN)).json()
        by_name = {p["metadata"]["name"]: p for p in body["items"]}
        assert set(by_name) == {"busy", "idle"}  # away's node is unreachable, pending is not running
        assert by_name["busy"]["containers"] == [{"name": "c", "usage": {"cpu": "500000000n", "memory": "20Ki"}}]
        assert by_name["idle"]["containers"] == [{"name": "c", "usage": {"cpu": "0n", "memory": "4Ki"}}]
        selected = await (await client.get("/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dbusy",
                                           headers=ADMIN)).json()
        assert [p["metadata"]["name"] for p in selected["items"]] == ["busy"]
        bad = await client.get("/apis/metrics.k8s.io/v1beta1/pods?labelSelector=%3D%3D", headers=ADMIN)
        assert bad.status == 400

    run(tmp_path, scenario)


def test_rbac_decides_and_writes_are_not_served(tmp_path: Path) -> None:
    async def scenario(client: TestClient, kubelets: Kubelets) -> None:
        refused = await client.get("/apis/metrics.k8s.io/v1beta1/nodes", headers=NOBODY)
        assert refused.status == 403
        assert 'cannot list resource "nodes" in API group "metrics.k8s.io"' in (await refused.json())["message"]
        assert not kubelets.fetches  # nothing scraped for a refused caller
        write = await client.post("/apis/metrics.k8s.io/v1beta1/nodes", headers=ADMIN, json={})
        assert write.status == 405
        unknown = await client.get("/apis/metrics.k8s.io/v1beta1/services", headers=ADMIN)
        assert unknown.status == 404

    run(tmp_path, scenario)


def test_view_edit_and_admin_may_read_metrics_as_metrics_servers_manifest_grants() -> None:
    reader = next(r for r in cluster_roles() if r["metadata"]["name"] == "system:aggregated-metrics-reader")
    labels = reader["metadata"]["labels"]
    assert all(labels[f"rbac.authorization.k8s.io/aggregate-to-{n}"] == "true" for n in ("view", "edit", "admin"))
    assert reader["rules"] == [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"],
                                "verbs": ["get", "list", "watch"]}]


def test_kubectl_get_nodemetrics_asks_for_a_table_with_metrics_servers_columns(tmp_path: Path) -> None:
    async def scenario(client: TestClient, kubelets: Kubelets) -> None:
        table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", **ADMIN}
        body = await (await client.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy",
                                       headers=table)).json()
        assert body["kind"] == "Table"
        assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "CPU", "Memory", "Window"]
        ((name, cpu, memory, window),) = [r["cells"] for r in body["rows"]]
        assert (name, cpu, memory) == ("busy", "500000000n", "20Ki") and window.endswith("s")

    run(tmp_path, scenario)
