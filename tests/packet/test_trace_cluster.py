"""`kubesim trace` on a whole cluster, with real packets through the real kube-proxy rules.

The cluster is topologies/two-node.yaml's shape on ranges of its own (so that it can run beside a
default cluster), brought up with `python -m kubesim up` in a temporary state directory. Pods are pinned
with spec.nodeName and Services get hand-written EndpointSlices (a Service without a selector is legal
Kubernetes), so nothing here depends on the scheduler or the endpoint controllers.

Flows are a table, like kube-proxy's packet-flow tests: source, destination, protocol -> result,
endpoints, masquerade. Everything runs in both proxy modes (a cluster each).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from kubesim.trace import run_trace
from netsim import names
from tests import cluster_report
from tests.conftest import require_tool
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
NAMES = {"nftables": "ptrace-nft", "iptables": "ptrace-ipt"}
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
# two-node.yaml on ranges of its own.
RANGES = {"nodeCIDR": "172.29.0.0/16", "clusterCIDR": "10.249.0.0/16", "serviceCIDR": "10.97.0.0/16"}
POOL = "172.29.255.200-172.29.255.250"
NODE_PORT = 30080
ZONES = {"worker-1": "zone-a", "worker-2": "zone-b"}


@dataclass
class Cluster:
    name: str
    mode: str
    state: Path
    env: dict[str, str]
    ips: dict[str, str]
    vips: dict[str, str]

    @property
    def kubeconfig(self) -> str:
        return str(self.state / self.name / "kubeconfig")

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], input=stdin, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def trace(self, src: str, dst: str, **options: Any) -> dict[str, Any]:
        return run_trace(self.name, node=options.pop("node", None), src=src, dst=dst, **options)

    def report(self, pods: tuple[str, ...] = ()) -> str:
        """For a wait that timed out: the pods (all, if none named) with their kubelets' logs, and the
        kube-proxies' logs."""
        kubectl = cluster_report.kubectl_for(self.kubeconfig)
        named = pods or tuple(kubectl(["get", "pods", "-o", "name"]).stdout.replace("pod/", "").split())
        return cluster_report.describe_pods(kubectl, named, logs=self.state / self.name / "logs",
                                            also=("kube-proxy-*.log",))

    def probe_namespaces(self) -> list[str]:
        return [ns for ns in os.listdir("/run/netns") if ns.startswith(names.probe_ns(self.name, ""))]

    def trace_tables(self) -> dict[str, str]:
        found = {}
        for node in ("control-plane", "worker-1", "worker-2"):
            listed = subprocess.run(["ip", "netns", "exec", names.node_ns(self.name, node), "nft", "list", "tables"],
                                    capture_output=True, text=True, check=False).stdout
            if "kubesim-trace-" in listed:
                found[node] = listed
        return found




def pod(name: str, node: str, image: str = AGNHOST) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": image}
    if image == AGNHOST:
        container["args"] = ["netexec", "--http-port=8080", "--udp-port=8081"]
    labels = {"app": name, **({"tier": "web"} if image == AGNHOST else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [container]}}


def service(name: str, **spec: Any) -> dict[str, Any]:
    ports = spec.pop("ports", [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": ports, **spec}}


def endpoint_slice(svc: str, endpoints: list[tuple[str, str]], ports: list[dict[str, Any]] | None = None,
                   ) -> dict[str, Any]:
    """A hand-written EndpointSlice for SVC: (address, nodeName) pairs."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-manual", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": ports or [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": node}
                          for ip, node in endpoints]}


@pytest.fixture(scope="module", params=sorted(NAMES))
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_tool("kubectl", install="scripts/setup.sh installs it")
    mode = request.param
    name = NAMES[mode]
    state = tmp_path_factory.mktemp("state")
    topology = yaml.safe_load((REPO / "topologies" / "two-node.yaml").read_text())
    topology["network"].update(RANGES)
    topology["loadBalancerPool"] = [POOL]
    for node in topology["nodes"]:  # a zone per worker, for topology-aware routing
        if node["name"] in ZONES:
            node["labels"] = {"topology.kubernetes.io/zone": ZONES[node["name"]]}
    topology_file = state / "topology.yaml"
    topology_file.write_text(yaml.safe_dump(topology))
    env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
    patch = pytest.MonkeyPatch()
    patch.setenv("KUBESIM_STATE_DIR", str(state))  # run_trace, in this process, finds the cluster here
    up = subprocess.run([sys.executable, "-m", "kubesim", "up", str(topology_file), "--name", name,
                         "--proxy-mode", mode], env=env, capture_output=True, text=True, check=False, cwd=REPO)
    c = Cluster(name, mode, state, env, {}, {})
    try:
        assert up.returncode == 0, up.stderr
        c.apply(pod("web-a", "worker-1"), pod("web-b", "worker-2"), pod("web-c", "worker-2"),
                pod("curl", "worker-1", "registry.k8s.io/pause"))

        def running() -> bool:
            listed = json.loads(c.kubectl("get", "pods", "-o", "json"))["items"]
            c.ips.update({p["metadata"]["name"]: p.get("status", {}).get("podIP", "") for p in listed})
            return len(c.ips) == 4 and all(c.ips.values())

        wait_until(running, message="pods running with addresses", describe=c.report)
        three = [(c.ips["web-a"], "worker-1"), (c.ips["web-b"], "worker-2"), (c.ips["web-c"], "worker-2")]
        sctp_port = [{"name": "sctp", "port": 7777, "targetPort": 7777, "protocol": "SCTP"}]
        c.apply(service("three"), endpoint_slice("three", three),
                service("empty"),
                service("sticky", sessionAffinity="ClientIP"), endpoint_slice("sticky", three),
                service("local", type="NodePort", externalTrafficPolicy="Local",
                        ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": NODE_PORT,
                                "protocol": "TCP"}]),
                endpoint_slice("local", three),
                service("close", selector={"tier": "web"}, trafficDistribution="PreferClose"),
                service("stream", ports=sctp_port),
                endpoint_slice("stream", three[:1], [{"name": "sctp", "port": 7777, "protocol": "SCTP"}]))
        for svc in ("three", "empty", "sticky", "local", "close", "stream"):
            c.vips[svc] = c.kubectl("get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}")
        wait_until(lambda: c.trace("curl", f"{c.vips['stream']}:7777", proto="sctp")["result"] == "DNAT"
                   and c.trace("client", f"172.29.0.4:{NODE_PORT}", node="worker-2")["result"] == "DNAT",
                   message="kube-proxy programs the services", describe=c.report)
        yield c
    finally:
        subprocess.run([sys.executable, "-m", "kubesim", "down", "--name", name], env=env, capture_output=True,
                       check=False, cwd=REPO)
        patch.undo()


def test_clusterip_with_three_endpoints_lists_all_three(cluster: Cluster) -> None:
    started = time.monotonic()
    result = cluster.trace("curl", f"{cluster.vips['three']}:80", count=40)
    wall = time.monotonic() - started
    print(f"\n{cluster.mode}: 40 probes: {result['elapsed']:.3f} s in the trace, {wall:.3f} s with the pod lookup")
    assert result["result"] == "DNAT" and result["probes"] == 40
    assert sorted(result["endpoints"]) == sorted(f"{cluster.ips[p]}:8080" for p in ("web-a", "web-b", "web-c"))
    assert result["masquerade"] is False and result["source_seen"] == cluster.ips["curl"]
    assert result["results"] == {"DNAT": 40}
    chains = [hop["chain"] for hop in result["hops"]]
    if cluster.mode == "nftables":
        assert "services" in chains and any(c.startswith("lb-") for c in chains), result["hops"]
    else:
        assert "KUBE-SERVICES" in chains and any(c.startswith("KUBE-SEP-") for c in chains), result["hops"]


def test_prefer_close_keeps_each_zones_traffic_in_its_zone(cluster: Cluster) -> None:
    """trafficDistribution: PreferClose -> the EndpointSlice controller hints every endpoint for its
    node's zone (from the topology's node labels) -> each node's kube-proxy picks its zone's endpoints."""
    zone_a = [f"{cluster.ips['web-a']}:8080"]
    zone_b = sorted(f"{cluster.ips[p]}:8080" for p in ("web-b", "web-c"))
    vip = f"{cluster.vips['close']}:80"
    wait_until(lambda: cluster.trace("curl", vip, count=12)["endpoints"] == zone_a,
               message="traffic from zone-a (curl on worker-1) stays in zone-a", describe=cluster.report)
    from_b = cluster.trace("web-b", vip, count=16)
    assert from_b["result"] == "DNAT" and sorted(from_b["endpoints"]) == zone_b, from_b["endpoints"]
    hints = json.loads(cluster.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=close",
                                       "-o", "json"))["items"][0]["endpoints"]
    assert {e["targetRef"]["name"]: e["hints"]["forZones"] for e in hints} == {
        "web-a": [{"name": "zone-a"}], "web-b": [{"name": "zone-b"}], "web-c": [{"name": "zone-b"}]}


def test_service_without_endpoints_says_reject(cluster: Cluster) -> None:
    result = cluster.trace("curl", f"{cluster.vips['empty']}:80", count=5)
    assert result["result"] == "REJECT" and result["endpoints"] == []
    # The rule itself ends in reject; in iptables mode its comment (read back from iptables-save) follows.
    assert any(hop["rule"].split(" comment ")[0].endswith("reject") for hop in result["hops"]), result["hops"]
    assert result["flows"][0]["reply"] == "icmp unreachable (port)"


def test_session_affinity_lists_one_endpoint(cluster: Cluster) -> None:
    result = cluster.trace("curl", f"{cluster.vips['sticky']}:80", count=20)
    assert result["result"] == "DNAT" and len(result["endpoints"]) == 1, result["endpoints"]


def test_external_traffic_policy_local_from_the_external_host(cluster: Cluster) -> None:
    result = cluster.trace("client", f"172.29.0.4:{NODE_PORT}", node="worker-2", count=30)
    assert result["result"] == "DNAT"
    assert sorted(result["endpoints"]) == sorted(f"{cluster.ips[p]}:8080" for p in ("web-b", "web-c"))
    assert result["masquerade"] is False and result["source_seen"] == "172.29.0.5"


@dataclass(frozen=True)
class Flow:
    name: str
    src: str
    dst: str
    proto: str = "tcp"
    node: str | None = None
    result: str = "DNAT"
    endpoints: tuple[str, ...] = ()
    masquerade: bool = False
    # Where Kubernetes' iptables mode differs (no REJECT for unknown ports of a ClusterIP, no DROP for
    # unallocated service addresses: such packets pass untouched): its result there.
    iptables: str | None = None

    def want(self, mode: str) -> tuple[str, tuple[str, ...], bool]:
        if mode == "iptables" and self.iptables is not None:
            return self.iptables, (), False
        return self.result, tuple(sorted(self.endpoints)), self.masquerade


def flows(c: Cluster) -> list[Flow]:
    three, empty, stream = c.vips["three"], c.vips["empty"], c.vips["stream"]
    every = tuple(f"{c.ips[p]}:8080" for p in ("web-a", "web-b", "web-c"))
    return [
        Flow("pod to ClusterIP", "curl", f"{three}:80", endpoints=every),
        Flow("pod to ClusterIP, unknown port", "curl", f"{three}:81", result="REJECT", iptables="NONE"),
        Flow("pod to ClusterIP, UDP on a TCP port", "curl", f"{three}:80", proto="udp", result="REJECT",
             iptables="NONE"),
        Flow("pod to SCTP ClusterIP", "curl", f"{stream}:7777", proto="sctp", endpoints=(f"{c.ips['web-a']}:7777",)),
        Flow("pod to ClusterIP without endpoints", "curl", f"{empty}:80", result="REJECT"),
        Flow("pod to an unallocated service address", "curl", "10.97.254.254:80", result="DROP", iptables="NONE"),
        Flow("pod to pod", "curl", f"{c.ips['web-b']}:8080", result="NONE"),
        Flow("free pod-range address to ClusterIP", "10.249.1.200", f"{three}:80", endpoints=every),
        Flow("external host to ClusterIP", "client", f"{three}:80", endpoints=every, masquerade=True),
        Flow("outside address to ClusterIP", "203.0.113.9", f"{three}:80", endpoints=every, masquerade=True),
        Flow("node to ClusterIP", "worker-1", f"{three}:80", endpoints=every, masquerade=True),
        Flow("external host to a node's closed port", "client", "172.29.0.3:9", node="worker-1", result="LOCAL"),
        Flow("external host to NodePort, ETP Local, no local endpoint", "client", f"172.29.0.2:{NODE_PORT}",
             node="control-plane", result="DROP"),
        Flow("outside address to an address the node has no route to", "203.0.113.9", "198.51.100.7:80",
             result="DROP"),
    ]


def test_flow_table(cluster: Cluster) -> None:
    failures = []
    for flow in flows(cluster):
        result = cluster.trace(flow.src, flow.dst, proto=flow.proto, node=flow.node, count=30)
        got = (result["result"], tuple(sorted(result["endpoints"])), result["masquerade"])
        want = flow.want(cluster.mode)
        if got != want:
            failures.append(f"{flow.name}: got {got}, want {want}")
    assert not failures, "\n".join(failures)


def test_pcap_is_readable(cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "trace.pcap"
    result = cluster.trace("client", f"{cluster.vips['three']}:80", count=5, pcap=str(path))
    assert result["pcap"] == str(path)
    packets = rdpcap(str(path))
    syns = [p for p in packets if IP in p and TCP in p and p[TCP].flags == "S"]
    assert {p[IP].dst for p in syns} >= {cluster.vips["three"]}
    assert {p.sniffed_on for p in packets} >= {"eth0"}
    assert shutil.which("tshark"), "tshark is missing: scripts/setup.sh installs it"
    read = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True, check=False)
    assert read.returncode == 0 and cluster.vips["three"] in read.stdout, read.stderr


def test_nothing_is_left_behind(cluster: Cluster) -> None:
    for src in ("10.249.1.201", "203.0.113.10"):
        cluster.trace(src, f"{cluster.vips['three']}:80", count=3)
    assert cluster.probe_namespaces() == []
    assert cluster.trace_tables() == {}


def _endless_trace(cluster: Cluster) -> subprocess.Popen[str]:
    """A trace in another process that ends only at its timeout, or when interrupted: its probes are
    addressed to the probe namespace's own address, so its kernel keeps them and the node never sees
    one (every probe stays unaccounted for). It starts with a probe namespace on a node's pod bridge.

    Ctrl-C is made to mean KeyboardInterrupt in it, as in a terminal: a suite started in the background
    (`cmd &` in a script, nohup) hands its children SIGINT ignored, and Python then never handles it."""
    code = ("import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"from kubesim.trace import run_trace\n"
            f"run_trace({cluster.name!r}, node=None, src='10.249.1.210', dst='10.249.1.210:80', count=1000, "
            "timeout=300)\n")
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", code], env=cluster.env, cwd=REPO,
                            stderr=subprocess.PIPE, text=True)


def _interrupt(process: subprocess.Popen[str]) -> str:
    """Ctrl-C for PROCESS; its stderr once it has cleaned up and ended."""
    try:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # faulthandler prints where it is stuck
            _, stderr = process.communicate(timeout=30)
            raise AssertionError(f"the trace did not end after Ctrl-C:\n{stderr}") from None
        return stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _assert_nothing_left(cluster: Cluster, stderr: str) -> None:
    assert "KeyboardInterrupt" in stderr, stderr
    assert cluster.probe_namespaces() == []
    assert cluster.trace_tables() == {}


def test_interrupted_trace_cleans_up(cluster: Cluster) -> None:
    """Ctrl-C in the middle of a trace, once it traces (its table is in the node): the probe namespace
    and the trace table go."""
    process = _endless_trace(cluster)
    try:
        wait_until(lambda: bool(cluster.trace_tables()) or process.poll() is not None, timeout=120,
                   message="the trace makes its trace table in the node")
        assert process.poll() is None, f"the trace ended by itself: {process.stderr.read() if process.stderr else ''}"
    finally:
        stderr = _interrupt(process)
    _assert_nothing_left(cluster, stderr)


def test_trace_interrupted_as_it_makes_its_probe_namespace_cleans_up(cluster: Cluster) -> None:
    """Ctrl-C the moment the probe namespace's name appears, while it is still being made (the race a
    loaded CI machine found): it must still go, and so must anything else the trace had made."""
    process = _endless_trace(cluster)
    try:
        while not cluster.probe_namespaces():
            assert process.poll() is None, f"the trace ended before making its probe namespace: " \
                                           f"{process.stderr.read() if process.stderr else ''}"
    finally:
        stderr = _interrupt(process)
    _assert_nothing_left(cluster, stderr)
