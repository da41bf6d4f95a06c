"""Issue 5 end to end, in both proxy modes, on topologies/two-node.yaml: agnhost replicas behind a
Service reached from a client pod, scale to zero refusing at once, NodePort and LoadBalancer from the
external host, externalTrafficPolicy Local keeping the client's address, a pod reaching itself."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from netsim import names
from tests.e2e.test_cluster import REPO, Cluster, in_netns
from tests.e2e.test_workloads import deployment, wait_replicas

NAME = "e2e"


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp(f"state-{request.param}"))
    c.kubesim("up", str(REPO / "topologies" / "two-node.yaml"), "--name", NAME, "--proxy-mode", request.param)
    c.mode = request.param  # type: ignore[attr-defined]
    try:
        c.apply(deployment("echo", 4), {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
            "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "registry.k8s.io/pause"}]}})
        wait_replicas(c, "echo", 4)
        c.wait_running("client")
        yield c
    finally:
        c.kubesim("down", check=False)


def service(name: str, svc_type: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": svc_type, "selector": {"app": "echo"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec}}


def curl(ns: str, url: str, timeout: float = 2) -> tuple[int, str]:
    done = in_netns(ns, "curl", "-s", "--max-time", str(timeout), url)
    return done.returncode, done.stdout


def answers(c: Cluster, ns: str, url: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        seen[curl(ns, url)[1]] += 1
    return seen


def echo_pods(c: Cluster) -> set[str]:
    return {p["metadata"]["name"] for p in wait_replicas(c, "echo", 4)}


def test_cluster_ip_reaches_every_replica_and_refuses_when_scaled_to_zero(cluster: Cluster) -> None:
    cluster.apply(service("echo"))
    vip = cluster.get("svc", "echo")["spec"]["clusterIP"]
    client = cluster.pod_ns("client")
    cluster.wait(lambda: curl(client, f"{vip}/hostname")[0] == 0, message="service programmed")
    seen = answers(cluster, client, f"{vip}/hostname", 60)
    assert set(seen) == echo_pods(cluster), seen

    cluster.kubectl("scale", "deployment", "echo", "--replicas=0")

    def refused() -> bool:
        # curl 7: the connection was refused (kube-proxy's REJECT answered); a dropped SYN would be
        # curl 28, the --max-time bound: so this tells REJECT from DROP without timing anything.
        code, _ = curl(client, f"{vip}/hostname", timeout=5)
        return code == 7
    cluster.wait(refused, timeout=20, message="the connection is refused (REJECT), not dropped")
    cluster.kubectl("scale", "deployment", "echo", "--replicas=4")
    # The next tests start from a converged cluster: every kube-proxy has the four new endpoints (each
    # syncs on its own schedule, so a Ready pod is not yet a programmed one everywhere).
    cluster.wait(lambda: set(answers(cluster, client, f"{vip}/hostname", 12)) == echo_pods(cluster),
                 message="the Service answers from the four new replicas")


def test_node_port_and_load_balancer_answer_the_external_host(cluster: Cluster) -> None:
    cluster.apply(service("echo-np", "NodePort"), service("echo-lb", "LoadBalancer"))
    node_port = cluster.get("svc", "echo-np")["spec"]["ports"][0]["nodePort"]
    external = names.external_ns(NAME, "client")

    def answered_by(node_ip: str) -> bool:
        return curl(external, f"{node_ip}:{node_port}/hostname")[0] == 0
    for node_ip in ("172.18.0.3", "172.18.0.4"):  # each node's kube-proxy programs the NodePort itself
        cluster.wait(lambda: answered_by(node_ip), message=f"nodeport on {node_ip}")  # noqa: B023 (called at once)
    assert set(answers(cluster, external, f"172.18.0.4:{node_port}/hostname", 40)) == echo_pods(cluster)

    def lb_ip() -> str:
        ingress = cluster.get("svc", "echo-lb").get("status", {}).get("loadBalancer", {}).get("ingress") or []
        return str(ingress[0]["ip"]) if ingress else ""
    cluster.wait(lambda: bool(lb_ip()), message="a load-balancer IP from the pool")
    assert lb_ip().startswith("172.18.255.")
    cluster.wait(lambda: curl(external, f"{lb_ip()}/hostname")[0] == 0, message="LB answers")
    assert set(answers(cluster, external, f"{lb_ip()}/hostname", 40)) == echo_pods(cluster)


def test_external_traffic_policy_local_keeps_the_client_address(cluster: Cluster) -> None:
    cluster.apply(service("echo-local", "NodePort", externalTrafficPolicy="Local"))
    node_port = cluster.get("svc", "echo-local")["spec"]["ports"][0]["nodePort"]
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=echo", "-o", "json").stdout)["items"]
    node_with_pods = {"worker-1": "172.18.0.3", "worker-2": "172.18.0.4"}[pods[0]["spec"]["nodeName"]]
    external = names.external_ns(NAME, "client")
    cluster.wait(lambda: curl(external, f"{node_with_pods}:{node_port}/clientip")[0] == 0, message="local nodeport")
    code, seen = curl(external, f"{node_with_pods}:{node_port}/clientip")
    assert code == 0 and seen.split(":")[0] == "172.18.0.5"  # the external host itself, not a node


def test_a_pod_reaches_itself_through_its_service(cluster: Cluster) -> None:
    cluster.apply(service("echo-hairpin"))
    vip = cluster.get("svc", "echo-hairpin")["spec"]["clusterIP"]
    pod = sorted(echo_pods(cluster))[0]
    ns = cluster.pod_ns(pod)
    cluster.wait(lambda: curl(ns, f"{vip}/hostname")[0] == 0, message="hairpin service programmed")
    seen = answers(cluster, ns, f"{vip}/hostname", 40)
    assert pod in seen and "" not in seen, seen  # it reached itself among the others, and nothing failed


def test_proxy_cleanup_removes_every_rule(cluster: Cluster) -> None:
    mode = cluster.mode  # type: ignore[attr-defined]
    cluster.kubesim("stop", "kube-proxy-worker-2")
    cluster.kubesim("proxy", "--cleanup", "--node", "worker-2", "--mode", mode, "--name", NAME)
    node = names.node_ns(NAME, "worker-2")
    if mode == "nftables":
        assert "kubesim-proxy" not in in_netns(node, "nft", "list", "tables").stdout
    else:
        # What is left is the network-policy agent's (KUBE-NWPLCY-*, its own chains and jumps).
        saved = in_netns(node, "iptables-save").stdout.splitlines()
        assert not [line for line in saved if "KUBE-" in line and "KUBE-NWPLCY-" not in line], saved
    cluster.kubesim("start", "kube-proxy-worker-2")

