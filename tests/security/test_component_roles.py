"""Defect 12 (part): the controller-manager's token could do everything. Each component's credential now
holds upstream's default ClusterRoles (bootstrappolicy): the controller-manager the union of the roles
of the controllers kubesim runs, the scheduler system:kube-scheduler + system:volume-scheduler, the
kube-proxy system:node-proxier. One table per identity, through real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.harness import local_apiserver
from tests.security.authz_kit import CM, MERGE_PATCH, NODES, PODS, Row, check_table, configmap, node, pod, seed

CTRL = "controller-manager"
KUBE_SYSTEM_LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
REPLICASETS = "/apis/apps/v1/namespaces/default/replicasets"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
ENDPOINTS = "/api/v1/namespaces/default/endpoints"
SERVICES = "/api/v1/namespaces/default/services"


def run_seeded(tmp_path: Path, rows: list[Row]) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            await seed(api)
            await check_table(api, rows)

    asyncio.run(main())


def lease(name: str) -> dict[str, object]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": {}}


def replicaset(name: str) -> dict[str, object]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def deployment(name: str) -> dict[str, object]:
    return {**replicaset(name), "kind": "Deployment"}


def test_controller_manager_holds_its_controllers_powers_and_no_more(tmp_path: Path) -> None:
    run_seeded(tmp_path, [
        # what its controllers do: informers everywhere, pods and replica sets, endpoints, slices, statuses
        Row(CTRL, "GET", "/api/v1/pods", 200),
        Row(CTRL, "GET", "/api/v1/configmaps?watch=1&timeoutSeconds=1", 200),
        Row(CTRL, "POST", "/api/v1/namespaces/default/pods", 201, pod("made-by-rs", None)),
        Row(CTRL, "PATCH", "/api/v1/namespaces/default/pods/made-by-rs", 200,
            {"metadata": {"labels": {"adopted": "yes"}}}, MERGE_PATCH),
        Row(CTRL, "POST", REPLICASETS, 201, replicaset("rs")),
        Row(CTRL, "PUT", f"{REPLICASETS}/rs/status", 200, {**replicaset("rs"), "status": {"replicas": 1}}),
        Row(CTRL, "POST", ENDPOINTS, 201, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}}),
        Row(CTRL, "POST", SLICES, 201, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                        "metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": []}),
        Row(CTRL, "PATCH", f"{NODES}/worker-2", 200, {"spec": {"podCIDR": "10.244.2.0/24"}}, MERGE_PATCH),
        Row(CTRL, "PATCH", f"{NODES}/worker-2/status", 200, {"status": {"phase": "Running"}}, MERGE_PATCH),
        Row(CTRL, "PATCH", f"{PODS}/on-2/status", 200, {"status": {"phase": "Running"}}, MERGE_PATCH),
        Row(CTRL, "POST", "/api/v1/namespaces/default/serviceaccounts", 201,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}),
        Row(CTRL, "GET", f"{CM}/cm-volume", 200),
        Row(CTRL, "POST", "/api/v1/namespaces/default/events", 201,
            {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"},
             "involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"}, "reason": "R", "message": "m"}),
        # its leader-election lease (upstream names it; the garbage collector's get/update/patch of every
        # resource makes any other lease readable too, as upstream's union of roles does)
        Row(CTRL, "POST", KUBE_SYSTEM_LEASES, 201, lease("kube-controller-manager")),
        Row(CTRL, "GET", f"{KUBE_SYSTEM_LEASES}/kube-controller-manager", 200),
        # the root CA publisher writes every namespace's kube-root-ca.crt (upstream's role: any configmap)
        Row(CTRL, "POST", CM, 201, configmap("kube-root-ca.crt")),
        # what none of its controllers does
        Row(CTRL, "POST", "/api/v1/namespaces", 403, {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": "x"}}),
        Row(CTRL, "POST", NODES, 403, node("worker-9")),
        Row(CTRL, "POST", SERVICES, 403, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                                          "spec": {"ports": [{"port": 80}]}}),
        Row(CTRL, "POST", DEPLOYMENTS, 403, deployment("d")),
        Row(CTRL, "POST", f"{PODS}/unbound/binding", 403, {"target": {"name": "worker-1"}}),
        # deletions its namespace and garbage collectors make
        Row(CTRL, "DELETE", f"{CM}/cm-unreferenced", 200),
        Row(CTRL, "DELETE", f"{NODES}/worker-2", 200),
    ])


def test_scheduler_holds_system_kube_scheduler(tmp_path: Path) -> None:
    run_seeded(tmp_path, [
        Row("scheduler", "GET", "/api/v1/pods", 200),
        Row("scheduler", "GET", NODES, 200),
        Row("scheduler", "GET", "/api/v1/services", 200),
        Row("scheduler", "GET", "/api/v1/replicationcontrollers", 200),
        Row("scheduler", "GET", "/apis/apps/v1/replicasets", 200),
        Row("scheduler", "GET", "/api/v1/namespaces", 200),
        Row("scheduler", "PATCH", f"{PODS}/unbound/status", 200, {"status": {"conditions": []}}, MERGE_PATCH),
        Row("scheduler", "POST", f"{PODS}/unbound/binding", 201, {"target": {"kind": "Node", "name": "worker-1"}}),
        Row("scheduler", "POST", KUBE_SYSTEM_LEASES, 201, lease("kube-scheduler")),
        Row("scheduler", "PUT", f"{KUBE_SYSTEM_LEASES}/kube-scheduler", 200, lease("kube-scheduler")),
        Row("admin", "POST", KUBE_SYSTEM_LEASES, 201, lease("kube-controller-manager")),
        Row("scheduler", "GET", f"{KUBE_SYSTEM_LEASES}/kube-controller-manager", 403),
        Row("scheduler", "GET", "/api/v1/configmaps", 403),
        Row("scheduler", "GET", f"{CM}/cm-volume", 403),
        Row("scheduler", "POST", "/api/v1/namespaces/default/pods", 403, pod("p", None)),
        Row("scheduler", "PATCH", f"{PODS}/on-1", 403, {"metadata": {"labels": {"a": "b"}}}, MERGE_PATCH),
        Row("scheduler", "PATCH", f"{NODES}/worker-1", 403, {"metadata": {"labels": {"a": "b"}}}, MERGE_PATCH),
        Row("scheduler", "GET", "/apis/discovery.k8s.io/v1/endpointslices", 403),
        Row("scheduler", "DELETE", f"{PODS}/on-2", 200),  # preemption
    ])


def test_kube_proxy_holds_system_node_proxier(tmp_path: Path) -> None:
    run_seeded(tmp_path, [
        Row("kube-proxy", "GET", "/api/v1/services", 200),
        Row("kube-proxy", "GET", "/api/v1/endpoints?watch=1&timeoutSeconds=1", 200),
        Row("kube-proxy", "GET", "/apis/discovery.k8s.io/v1/endpointslices", 200),
        Row("kube-proxy", "GET", f"{NODES}?fieldSelector=metadata.name%3Dworker-1", 200),
        Row("kube-proxy", "GET", f"{NODES}/worker-1", 200),
        Row("kube-proxy", "POST", "/api/v1/namespaces/default/events", 201,
            {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"},
             "involvedObject": {"kind": "Node", "name": "worker-1"}, "reason": "R", "message": "m"}),
        # upstream's role lists and watches services and endpoints, it does not get them one by one
        Row("kube-proxy", "GET", f"{SERVICES}/kubernetes", 403),
        Row("kube-proxy", "GET", "/api/v1/pods", 403),
        Row("kube-proxy", "GET", CM, 403),
        Row("kube-proxy", "POST", SERVICES, 403, {"metadata": {"name": "s"}}),
        Row("kube-proxy", "PATCH", f"{NODES}/worker-1", 403, {"metadata": {"labels": {"a": "b"}}}, MERGE_PATCH),
    ])
