"""NetworkPolicy enforced on a whole cluster (topologies/two-node.yaml): the default-deny lab.

A server in namespace x behind a ClusterIP Service, and clients in x, y and z, one of them on the
server's own node (bridged traffic) and the others across the fabric. Connections go through the
Service, so policies are judged after kube-proxy's DNAT, on the endpoint pod. A dropped SYN shows as
curl's exit code 28 (the --connect-timeout bound), an answer as exit 0 with the server's hostname.
A second is plenty for the connect of an allowed flow: the kernel answers the SYN, whatever the load on
the server's process; the answer itself may take longer (--max-time).

The whole file runs twice: with kube-proxy (and so the policy agent) in nftables mode, then in
iptables mode, where the agent's KUBE-NWPLCY-* chains live in iptables-nft's `ip filter` table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from netsim import names
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
NAME = "e2e-np"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
CONNECT_TIMEOUT = "1"  # what a dropped SYN costs each probe
CURL_TIMEOUT = "5"
CURL_DROPPED = 28
CLIENTS = {"x": "worker-2", "y": "worker-2", "z": "worker-1"}  # the server is on worker-1


# The table the agent's rules show up in, in `kubesim trace`, per mode.
POLICY_TABLE = {"nftables": "ip kubesim-netpol", "iptables": "ip filter"}


class Cluster:
    def __init__(self, state: Path, mode: str) -> None:
        self.mode = mode
        self.env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
        self.kubeconfig = str(state / NAME / "kubeconfig")

    def kubesim(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "kubesim", *args], capture_output=True, text=True,
                              env=self.env, check=False, cwd=REPO)
        if check and done.returncode != 0:
            raise AssertionError(f"kubesim {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], capture_output=True,
                              text=True, input=stdin, check=False)
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        # JSON, not YAML: to a YAML 1.1 reader the namespace name y is the boolean true.
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", "pod", "-n", namespace, name, "-o", "json"))

    def wait(self, what: Callable[[], bool], message: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            time.sleep(0.2)
        log = self.kubesim("logs", "--name", NAME, "netpol-worker-1", check=False).stdout[-3000:]
        raise AssertionError(f"timed out waiting: {message}\nnetpol-worker-1's log ends with:\n{log}")

    def ready(self, namespace: str, name: str) -> bool:
        status = self.pod(namespace, name).get("status", {})
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_tool("kubectl")
    require_tool("curl")
    c = Cluster(tmp_path_factory.mktemp(f"state-{request.param}"), request.param)
    c.kubesim("up", str(REPO / "topologies" / "two-node.yaml"), "--name", NAME, "--proxy-mode", request.param)
    try:
        c.apply(*world())
        for ns in CLIENTS:
            c.wait(lambda ns=ns: c.ready(ns, "client"), f"{ns}/client Ready")
        c.wait(lambda: c.ready("x", "server"), "x/server Ready")
        yield c
    finally:
        c.kubesim("down", "--name", NAME, check=False)


def world() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": ns}}} for ns in CLIENTS
    ]
    objects.append({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "x", "name": "server", "labels": {"app": "server"}},
        "spec": {"nodeName": "worker-1", "containers": [{
            "name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]},
    })
    objects.append({
        "apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "x", "name": "server"},
        "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": "http"}]},
    })
    for ns, node in CLIENTS.items():
        objects.append({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": "client"},
            "spec": {"nodeName": node, "containers": [{
                "name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}]},
        })
    return objects


def vip(cluster: Cluster) -> str:
    return str(json.loads(cluster.kubectl("get", "svc", "-n", "x", "server", "-o", "json"))["spec"]["clusterIP"])


def curl(cluster: Cluster, namespace: str, address: str) -> int:
    """curl's exit code for client `namespace`/client -> the x/server Service at ADDRESS."""
    client = cluster.pod(namespace, "client")
    ns = names.pod_ns(NAME, client["metadata"]["uid"])
    done = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "--connect-timeout", CONNECT_TIMEOUT,
                           "--max-time", CURL_TIMEOUT, f"{address}/hostname"],
                          capture_output=True, text=True, check=False, timeout=15)
    if done.returncode == 0:
        assert done.stdout == "server", done.stdout
    return done.returncode


def reaches(cluster: Cluster) -> dict[str, bool]:
    """Which clients reach the server, all three asked at once (a dropped one costs curl's timeout)."""
    address = vip(cluster)
    with ThreadPoolExecutor(len(CLIENTS)) as pool:
        codes = dict(zip(CLIENTS, pool.map(lambda ns: curl(cluster, ns, address), CLIENTS), strict=True))
    return {ns: code == 0 for ns, code in codes.items()}


def policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace, "name": name}, "spec": spec}


def settle(cluster: Cluster, want: dict[str, bool], message: str) -> None:
    last: list[dict[str, bool]] = []

    def settled() -> bool:
        last[:] = [reaches(cluster)]
        return last[0] == want

    try:
        cluster.wait(settled, message=f"{message}: want {want}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe clients reached the server last: {last[0] if last else None}") from None


def named_drop(cluster: Cluster, hops: list[dict[str, str]], policy_key: str) -> bool:
    """Whether the trace's last hop in the agent's rules is a drop whose rule names POLICY_KEY.

    In nftables mode the trace shows the rule's comment itself; iptables-nft keeps `-m comment` where
    nft cannot print it, and `kubesim trace` reads it back from iptables-save: the hop says the same."""
    ours = [h for h in hops if h["table"] == POLICY_TABLE[cluster.mode]
            and (cluster.mode == "nftables" or h["chain"].startswith("KUBE-NWPLCY-"))]
    return bool(ours) and ours[-1]["verdict"] == "drop" and policy_key in ours[-1]["rule"]


def test_default_deny_then_allow_from_a_namespace_label(cluster: Cluster) -> None:
    settle(cluster, {"x": True, "y": True, "z": True}, "no policy: every client reaches the server")

    cluster.apply(policy("x", "default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    settle(cluster, {"x": False, "y": False, "z": False}, "default deny: nobody gets in")
    assert curl(cluster, "y", vip(cluster)) == CURL_DROPPED  # dropped, not refused
    trace = json.loads(cluster.kubesim("trace", "--name", NAME, "--src", "z/client", "--dst", f"{vip(cluster)}:80",
                                       "--json").stdout)
    assert trace["result"] == "DROP", trace
    assert named_drop(cluster, trace["hops"], "x/default-deny-ingress"), json.dumps(trace["hops"], indent=1)
    # The kubelet's readiness probes come from the server's own node: always allowed, so after
    # several probe periods of denied clients the server is still Ready and still an endpoint.
    assert cluster.ready("x", "server")

    cluster.apply(policy("x", "allow-from-team-y", {
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}], "ports": [{"port": "http"}]}],
    }))
    settle(cluster, {"x": False, "y": True, "z": False}, "policies add up: team y (and only it) is let in")

    cluster.kubectl("delete", "networkpolicy", "-n", "x", "default-deny-ingress", "allow-from-team-y")
    settle(cluster, {"x": True, "y": True, "z": True}, "policies deleted: everyone again")


def test_egress_deny_stops_the_client_side(cluster: Cluster) -> None:
    cluster.apply(policy("y", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]}))
    settle(cluster, {"x": True, "y": False, "z": True}, "y may send nothing")
    cluster.kubectl("delete", "networkpolicy", "-n", "y", "deny-egress")
    settle(cluster, {"x": True, "y": True, "z": True}, "egress policy deleted")


def test_the_agent_reports_its_syncs(cluster: Cluster) -> None:
    log = cluster.kubesim("logs", "--name", NAME, "netpol-worker-1").stdout
    assert "synced:" in log and "policies" in log


ADMIN_POLICIES = """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata:
  name: guard-x
spec:
  priority: 10
  subject:
    namespaces:
      matchLabels: {team: x}
  ingress:
  - name: no-team-z
    action: Deny
    from:
    - namespaces:
        matchLabels: {team: z}
  - name: team-y-is-up-to-x
    action: Pass
    from:
    - namespaces:
        matchLabels: {team: "y"}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata:
  name: default
spec:
  subject:
    namespaces:
      matchLabels: {team: x}
  ingress:
  - action: Deny
    from:
    - namespaces:
        matchLabels: {team: "y"}
"""


def test_admin_network_policies_from_yaml_and_a_trace_naming_the_anp(cluster: Cluster) -> None:
    settle(cluster, {"x": True, "y": True, "z": True}, "no policy: every client reaches the server")
    cluster.kubectl("apply", "-f", "-", stdin=ADMIN_POLICIES)
    # z: the ANP denies. y: the ANP passes, no NetworkPolicy isolates the server, so the baseline denies.
    settle(cluster, {"x": True, "y": False, "z": False}, "ANP denies z, passes y on to the BANP's deny")
    trace = json.loads(cluster.kubesim("trace", "--name", NAME, "--src", "z/client", "--dst", f"{vip(cluster)}:80",
                                       "--json").stdout)
    assert trace["result"] == "DROP", trace
    assert named_drop(cluster, trace["hops"], "AdminNetworkPolicy/guard-x ingress rule 0: Deny"), \
        json.dumps(trace["hops"], indent=1)
    assert cluster.kubectl("get", "anp", "guard-x", "--no-headers").split()[:2] == ["guard-x", "10"]
    # `kubesim policy` judges the same from the objects, without a packet.
    verdicts = json.loads(cluster.kubesim("policy", "--name", NAME, "--json", "y/client", f"{vip(cluster)}:80").stdout)
    assert [v["ingress"]["rule"] for v in verdicts] == [{"policy": "BaselineAdminNetworkPolicy/default",
                                                         "direction": "Ingress", "index": 0, "action": "Deny"}]

    # A NetworkPolicy now isolates the server and lets team y in: the Pass reaches it, the baseline no more.
    cluster.apply(policy("x", "allow-from-team-y", {
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}]}],
    }))
    settle(cluster, {"x": False, "y": True, "z": False}, "the Pass defers team y to the NetworkPolicy")

    cluster.kubectl("delete", "networkpolicy", "-n", "x", "allow-from-team-y")
    cluster.kubectl("delete", "anp", "guard-x")
    cluster.kubectl("delete", "banp", "default")
    settle(cluster, {"x": True, "y": True, "z": True}, "admin policies deleted: everyone again")
