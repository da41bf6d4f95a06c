"""Issue 4 on a whole cluster: Deployments over two workers as real namespaces, scaling, rolling
updates, scheduling constraints and a second scheduler, bad input, a node's kubelet killed and
brought back, and namespace deletion."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from netsim import namespaces
from tests.e2e.test_cluster import AGNHOST, REPO, Cluster, in_netns
from tests.e2e.test_kubectl_apply import VERSIONS, require_kubectl

NAME = "e2e"  # test_cluster's Cluster helper targets this name


def deployment(name: str, replicas: int, args: list[str] | None = None, **pod_spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "containers": [{"name": "agnhost", "image": AGNHOST,
                                         "args": args or ["netexec", "--http-port=8080"],
                                         "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                                            "periodSeconds": 1}}], **pod_spec}}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for version in (*VERSIONS, "1.30"):
        require_kubectl(version)  # Cluster.kubectl(version=...) runs it; without it CI fails here, not later
    c = Cluster(tmp_path_factory.mktemp("state"))
    c.kubesim("up", str(REPO / "topologies" / "two-node.yaml"), "--name", NAME, "--node-grace-period", "6s",
              "--eviction-timeout", "5s")
    try:
        yield c
    finally:
        c.kubesim("down", check=False)


def pods_of(cluster: Cluster, app: str) -> list[dict[str, Any]]:
    listed = json.loads(cluster.kubectl("get", "pods", "-l", f"app={app}", "-o", "json").stdout)["items"]
    return [p for p in listed if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def wait_replicas(cluster: Cluster, app: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal found
        found = pods_of(cluster, app)
        return len(found) == count and all(ready(p) for p in found)

    cluster.wait(done, timeout, f"{count} ready pods of {app}")
    return found


def test_deployment_pods_are_namespaces_and_scale(cluster: Cluster) -> None:
    cluster.apply(deployment("web", 6))
    pods = wait_replicas(cluster, "web", 6)
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert nodes == {"worker-1", "worker-2"}  # the tainted control plane takes none
    for pod in pods:
        prefix = {"worker-1": "10.244.1.", "worker-2": "10.244.2."}[pod["spec"]["nodeName"]]
        ip = pod["status"]["podIP"]
        assert ip.startswith(prefix)
        ns = f"ksim-{NAME}.pod.{pod['metadata']['uid']}"
        assert f"inet {ip}/24" in in_netns(ns, "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert "GET /healthz" in cluster.kubectl("logs", pods[0]["metadata"]["name"]).stdout
    for count, version in ((2, "1.27"), (8, "1.33")):  # the oldest and newest kubectl we support
        cluster.kubectl("scale", "deployment", "web", f"--replicas={count}", version=version)
        wait_replicas(cluster, "web", count)
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s", version="1.27")


def test_rolling_update_replaces_every_pod(cluster: Cluster) -> None:
    cluster.apply(deployment("roll", 4))
    old = {p["metadata"]["uid"] for p in wait_replicas(cluster, "roll", 4)}
    cluster.apply(deployment("roll", 4, ["netexec", "--http-port=8080", "--udp-port=9999"]))
    cluster.kubectl("rollout", "status", "deployment/roll", "--timeout=90s", version="1.27")
    new = wait_replicas(cluster, "roll", 4)
    assert not old & {p["metadata"]["uid"] for p in new}
    assert all("--udp-port=9999" in p["spec"]["containers"][0]["args"] for p in new)
    replicasets = json.loads(cluster.kubectl("get", "rs", "-l", "app=roll", "-o", "json").stdout)["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replicasets) == [0, 4]
    for version in VERSIONS:
        history = cluster.kubectl("rollout", "history", "deployment/roll", version=version).stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"], version


def test_scheduling_constraints_and_a_second_scheduler(cluster: Cluster) -> None:
    huge = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "huge"}, "spec": {"containers": [{
        "name": "c", "image": "registry.k8s.io/pause", "resources": {"requests": {"cpu": "64"}}}]}}
    picky = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky"}, "spec": {
        "nodeSelector": {"kubernetes.io/hostname": "worker-2"},
        "containers": [{"name": "c", "image": "registry.k8s.io/pause"}]}}
    cluster.apply(huge, picky)

    def pending_with_message() -> bool:
        pod = cluster.get("pod", "huge")
        scheduled = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] == "PodScheduled"]
        return bool(scheduled) and scheduled[0]["status"] == "False" and scheduled[0].get("reason") == "Unschedulable"

    cluster.wait(pending_with_message, message="huge pod Unschedulable")
    message = next(c["message"] for c in cluster.get("pod", "huge")["status"]["conditions"]
                   if c["type"] == "PodScheduled")
    assert message.startswith("0/3 nodes are available:") and "Insufficient cpu" in message
    assert "untolerated taint {node-role.kubernetes.io/control-plane: }" in message
    assert "FailedScheduling" in cluster.kubectl("get", "events", "--field-selector",
                                                 "involvedObject.name=huge").stdout
    cluster.wait(lambda: cluster.get("pod", "picky")["spec"].get("nodeName") == "worker-2", message="picky placed")

    cluster.kubesim("add-scheduler", "bin-packer", "--name", NAME)
    other = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other-scheduler"}, "spec": {
        "schedulerName": "bin-packer", "containers": [{"name": "c", "image": "registry.k8s.io/pause"}]}}
    cluster.apply(other)
    cluster.wait(lambda: bool(cluster.get("pod", "other-scheduler")["spec"].get("nodeName")),
                 message="the second scheduler binds its pod")
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=other-scheduler",
                             "-o", "json").stdout
    assert any(e.get("source", {}).get("component") == "bin-packer" or e.get("reportingComponent") == "bin-packer"
               for e in json.loads(events)["items"] if e["reason"] == "Scheduled")


def test_bad_input_gives_status_and_events_never_a_crash(cluster: Cluster) -> None:
    unknown = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-such-image"}, "spec": {
        "nodeName": "worker-1", "containers": [{"name": "c", "image": "example.com/nope:1"}]}}
    clash = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "clash"}, "spec": {"nodeName": "worker-1",
             "containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx"}]}}
    cluster.apply(unknown, clash)

    def waiting(pod: str, container: str) -> dict[str, Any]:
        statuses = cluster.get("pod", pod).get("status", {}).get("containerStatuses", [])
        entry = next((s for s in statuses if s["name"] == container), {})
        return entry.get("state", {}).get("waiting", {})

    cluster.wait(lambda: waiting("no-such-image", "c").get("reason") == "ErrImagePull", message="ErrImagePull")
    assert "no built-in workload for image" in waiting("no-such-image", "c")["message"]
    cluster.wait(lambda: waiting("clash", "b").get("reason") in ("CrashLoopBackOff", "Error"), message="port clash")
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=clash").stdout
    assert "address already in use" in events
    status = json.loads(cluster.kubesim("status", "--json").stdout)
    assert all(p["alive"] for p in status["processes"])  # nothing crashed


def test_killed_kubelet_node_goes_unknown_pods_move_and_it_comes_back(cluster: Cluster) -> None:
    cluster.apply(deployment("moving", 4))
    pods = wait_replicas(cluster, "moving", 4)
    on_w1 = [p for p in pods if p["spec"]["nodeName"] == "worker-1"]
    assert on_w1, "the test needs a pod on worker-1"
    status = json.loads(cluster.kubesim("status", "--json").stdout)
    kubelet = next(p for p in status["processes"] if p["role"] == "kubelet-worker-1")
    os.kill(kubelet["pid"], signal.SIGKILL)

    def node_unknown() -> bool:
        node = cluster.get("node", "worker-1")
        ready_condition = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        return ready_condition["status"] == "Unknown"

    cluster.wait(node_unknown, timeout=30, message="worker-1 Ready=Unknown")

    def tainted_unreachable() -> bool:  # the node lifecycle controller taints right after the condition
        taints = cluster.get("node", "worker-1")["spec"].get("taints", [])
        return "node.kubernetes.io/unreachable" in {t["key"] for t in taints}

    cluster.wait(tainted_unreachable, timeout=10, message="worker-1 tainted unreachable")

    def replaced() -> bool:
        current = pods_of(cluster, "moving")
        return len(current) == 4 and all(ready(p) and p["spec"]["nodeName"] != "worker-1" for p in current)

    cluster.wait(replaced, timeout=60, message="pods recreated on other nodes")
    cluster.kubesim("start", "kubelet-worker-1")
    cluster.wait(lambda: not node_unknown(), timeout=30, message="worker-1 back")
    cluster.apply(deployment("after", 2, nodeSelector={"kubernetes.io/hostname": "worker-1"}))
    fresh = wait_replicas(cluster, "after", 2)
    ips = [p["status"]["podIP"] for p in json.loads(cluster.kubectl("get", "pods", "-o", "json").stdout)["items"]
           if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp")]
    assert len(ips) == len(set(ips)), f"duplicate pod addresses: {sorted(ips)}"
    assert all(p["spec"]["nodeName"] == "worker-1" for p in fresh)
    # Nothing of the pods that left lingers on worker-1: a process container the killed kubelet left
    # running (CoreDNS is one) would keep its namespace, its veth on cbr0 and its address alive.
    node_ns = f"ksim-{NAME}.node.worker-1"

    def one_bridge_port_per_pod() -> bool:
        ports = in_netns(node_ns, "ip", "-o", "link", "show", "master", "cbr0").stdout.splitlines()
        here = [p for p in json.loads(cluster.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
                if p["spec"].get("nodeName") == "worker-1" and not p["spec"].get("hostNetwork")]
        return len(ports) == len(here)

    cluster.wait(one_bridge_port_per_pod, timeout=15, message="one cbr0 port per pod on worker-1")


def test_deleting_a_namespace_removes_everything_in_it(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "doomed", version="1.30")
    manifest = deployment("inside", 2)
    manifest["metadata"]["namespace"] = "doomed"
    cluster.apply(manifest)
    cluster.wait(lambda: len([p for p in json.loads(cluster.kubectl(
        "get", "pods", "-n", "doomed", "-o", "json").stdout)["items"] if ready(p)]) == 2, message="pods in doomed")
    uids = [p["metadata"]["uid"] for p in json.loads(cluster.kubectl("get", "pods", "-n", "doomed", "-o",
                                                                     "json").stdout)["items"]]
    cluster.kubectl("delete", "namespace", "doomed", "--timeout=60s")
    assert cluster.kubectl("get", "namespace", "doomed", check=False).returncode != 0
    leftover = [ns for ns in namespaces.list_names() if any(uid in ns for uid in uids)]
    assert leftover == []
