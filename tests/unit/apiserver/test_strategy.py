"""What the REST strategies do around defaulting: a new pod is Pending with its QoS class, a new Service
has an empty status, and an update of a Service that leaves its allocated IPs and ports unset keeps
them (pkg/registry/core/pod and core/service). Pure functions first, then through the registry."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control.api.qos import pod_qos_class
from control.apiserver.admission import KubernetesAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.bootstrap import bootstrap
from control.apiserver.errors import APIError
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.resources import BY_KIND
from control.apiserver.strategy import patch_allocated_values, prepare_for_create
from control.store import SQLiteStore


def _pod(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}}


@pytest.mark.parametrize(("resources", "qos"), [
    ([{}], "BestEffort"),
    ([{"requests": {"cpu": "0"}}], "BestEffort"),  # a zero amount is no request
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}], "Burstable"),
    ([{"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}], "Burstable"),  # memory not limited
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ([{"requests": {"ephemeral-storage": "1Gi"}}], "BestEffort"),  # only cpu and memory count
])
def test_qos_class(resources: list[dict[str, Any]], qos: str) -> None:
    assert pod_qos_class(_pod(*resources)) == qos


def test_create_resets_status_the_caller_sent() -> None:
    pod = {"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running", "podIP": "10.0.0.1"}}
    prepare_for_create("Pod", pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    svc: dict[str, Any] = {"spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}
    prepare_for_create("Service", svc)
    assert svc["status"] == {"loadBalancer": {}}
    config_map = {"data": {"a": "b"}}
    prepare_for_create("ConfigMap", config_map)
    assert config_map == {"data": {"a": "b"}}


@pytest.mark.parametrize(("kind", "status"), [
    ("DaemonSet", {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                   "numberReady": 0}),
    ("StatefulSet", {"replicas": 0, "availableReplicas": 0}),
    ("ReplicaSet", {"replicas": 0}),
    ("ReplicationController", {"replicas": 0}),
    ("Deployment", {}),
    ("CronJob", {}),
])
def test_a_controllers_status_starts_as_gos_zero_value(kind: str, status: dict[str, int]) -> None:
    # Fields without omitempty are serialized even when zero; the Python client's typed models require
    # them (reading a DaemonSet with status {} raised a validation error for its four counts).
    obj: dict[str, Any] = {"spec": {}, "status": {"replicas": 3, "numberReady": 2, "conditions": []}}
    prepare_for_create(kind, obj)
    assert obj["status"] == status


def _svc(svc_type: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": svc_type, "ports": ports, **spec}}


def test_patch_keeps_cluster_ip_node_ports_and_health_check_port() -> None:
    old = _svc("LoadBalancer", [{"name": "http", "port": 80, "nodePort": 30080},
                                {"name": "https", "port": 443, "nodePort": 30443}],
               clusterIP="10.96.5.5", clusterIPs=["10.96.5.5"], externalTrafficPolicy="Local",
               healthCheckNodePort=31000)
    new = _svc("LoadBalancer", [{"name": "https", "port": 443}, {"name": "http", "port": 80}],
               externalTrafficPolicy="Local")
    patch_allocated_values(new, old)
    assert new["spec"]["clusterIP"] == "10.96.5.5" and new["spec"]["clusterIPs"] == ["10.96.5.5"]
    assert [p["nodePort"] for p in new["spec"]["ports"]] == [30443, 30080]  # matched by name, not position
    assert new["spec"]["healthCheckNodePort"] == 31000


def test_patch_never_reuses_a_node_port_the_update_names_itself() -> None:
    old = _svc("NodePort", [{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81,
                                                                           "nodePort": 30002}])
    new = _svc("NodePort", [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30001}])
    patch_allocated_values(new, old)
    assert "nodePort" not in new["spec"]["ports"][0]  # 30001 is b's now: a gets a fresh one
    assert new["spec"]["ports"][1]["nodePort"] == 30001


def test_patch_leaves_what_the_new_type_does_not_need() -> None:
    old = _svc("NodePort", [{"name": "a", "port": 80, "nodePort": 30001}], clusterIP="10.96.0.9")
    to_cluster_ip = _svc("ClusterIP", [{"name": "a", "port": 80}])
    patch_allocated_values(to_cluster_ip, old)
    assert "nodePort" not in to_cluster_ip["spec"]["ports"][0]
    assert to_cluster_ip["spec"]["clusterIP"] == "10.96.0.9"
    to_external = _svc("ExternalName", [], externalName="example.com")
    patch_allocated_values(to_external, old)
    assert "clusterIP" not in to_external["spec"]
    no_lb_ports = _svc("LoadBalancer", [{"name": "a", "port": 80}], allocateLoadBalancerNodePorts=False)
    patch_allocated_values(no_lb_ports, old)
    assert "nodePort" not in no_lb_ports["spec"]["ports"][0]


def _with_registry(tmp_path: Path, scenario: Callable[[Registry], Awaitable[None]]) -> None:
    async def main() -> None:
        store = await SQLiteStore.open(str(tmp_path / "store.db"), compact_interval=None)
        registry = Registry(store, admission=KubernetesAdmission(), patcher=apply_patch,
                            allocator=ServiceAllocator("10.96.0.0/16", (30000, 32767)))
        await registry.start()
        await bootstrap(registry, service_cidr="10.96.0.0/16", advertise_address="172.18.0.2", port=6443)
        try:
            await scenario(registry)
        finally:
            await registry.stop()
            await store.close()

    asyncio.run(main())


def test_registry_create_and_replace(tmp_path: Path) -> None:
    pods, services = BY_KIND["Pod"], BY_KIND["Service"]
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}

    async def scenario(registry: Registry) -> None:
        pod = await registry.create(pods, "default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}, "status": {"phase": "Running"}})
        assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
        created = await registry.create(services, "default", copy.deepcopy(manifest))
        assert created["status"] == {"loadBalancer": {}}
        ip, node_port = created["spec"]["clusterIP"], created["spec"]["ports"][0]["nodePort"]
        # The same YAML again (kubectl replace): the allocations stay, nothing is refused.
        replaced = await registry.update(services, "default", "web", copy.deepcopy(manifest))
        assert replaced["spec"]["clusterIP"] == ip and replaced["spec"]["clusterIPs"] == [ip]
        assert replaced["spec"]["ports"][0]["nodePort"] == node_port
        assert replaced["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # a no-op
        # Naming another address is still refused, as upstream.
        other = copy.deepcopy(manifest)
        other["spec"]["clusterIP"] = "10.96.200.200"
        with pytest.raises(APIError) as refused:
            await registry.update(services, "default", "web", other)
        assert refused.value.code == 422 and "may not change once set" in str(refused.value.details)

    _with_registry(tmp_path, scenario)
