"""kubesim.trace without privileges: how SOURCE is understood (pods through a fake directory), the
destination, the tcpdump command line and the human rendering."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scapy.layers.inet import IP

from kubesim.errors import StateError
from kubesim.trace import (
    PodInfo,
    Source,
    capture_command,
    parse_destination,
    render_lines,
    resolve_source,
    run_trace,
)
from netsim import names
from netsim.topology import Topology, load_topology
from netsim.trace_analysis import Analyzer, Frame, TraceError, craft, make_probes

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


class FakePods:
    def __init__(self, *pods: PodInfo) -> None:
        self.pods = pods
        self.asked = 0

    def by_name(self, namespace: str, name: str) -> PodInfo | None:
        self.asked += 1
        return next((p for p in self.pods if (p.namespace, p.name) == (namespace, name)), None)

    def by_ip(self, ip: str) -> PodInfo | None:
        self.asked += 1
        return next((p for p in self.pods if p.ip == ip), None)


CLIENT = PodInfo("default", "curl", "uid-1", "10.244.1.5", "worker-1")
OTHER = PodInfo("apps", "web", "uid-2", "10.244.2.7", "worker-2")


@pytest.fixture
def topo() -> Topology:
    return load_topology(TOPOLOGIES / "two-node.yaml")


def resolve(topo: Topology, spec: str, node: str | None = None, ingress: str | None = None) -> Source:
    return resolve_source(topo, spec, node=node, ingress=ingress, pods=FakePods(CLIENT, OTHER))


def test_a_pod_by_name_sends_from_its_own_namespace_on_its_node(topo: Topology) -> None:
    for spec in ("curl", "default/curl"):
        source = resolve(topo, spec)
        assert (source.node, source.src, source.origin.kind) == ("worker-1", "10.244.1.5", "namespace")
        assert source.origin.netns == names.pod_ns("kubesim", "uid-1") and source.origin.ingress == "pod"
    assert resolve(topo, "apps/web").node == "worker-2"
    # A node's or external host's name wins over a pod of the same name; NAMESPACE/NAME is always a pod.
    namesake = FakePods(PodInfo("default", "client", "u", "10.244.1.6", "worker-1"))
    assert resolve_source(topo, "default/client", node=None, ingress=None, pods=namesake).src == "10.244.1.6"
    assert resolve(topo, "client").origin.netns == names.external_ns("kubesim", "client")
    with pytest.raises(TraceError, match="runs on worker-2"):
        resolve(topo, "apps/web", node="worker-1")
    with pytest.raises(TraceError, match="not an address, node, external host or pod"):
        resolve(topo, "nobody")


def test_a_pod_by_address(topo: Topology) -> None:
    source = resolve(topo, "10.244.2.7")
    assert source.origin.kind == "namespace" and source.node == "worker-2"


def test_a_free_pod_range_address_gets_a_probe_on_its_nodes_bridge(topo: Topology) -> None:
    source = resolve(topo, "10.244.2.99")
    assert (source.node, source.origin.kind, source.origin.prefixlen, source.origin.gateway) == (
        "worker-2", "bridge-probe", 24, "10.244.2.1")
    with pytest.raises(TraceError, match="not a usable pod address"):
        resolve(topo, "10.244.2.255")


def test_a_pod_address_of_another_node_arrives_over_the_fabric(topo: Topology) -> None:
    source = resolve(topo, "10.244.2.99", node="worker-1")
    assert (source.node, source.origin.kind, source.origin.ingress) == ("worker-1", "fabric-probe", "external")


def test_nodes_send_from_themselves(topo: Topology) -> None:
    for spec in ("worker-2", "172.18.0.4", "10.244.2.1"):
        source = resolve(topo, spec)
        assert (source.node, source.origin.kind) == ("worker-2", "local")
    across = resolve(topo, "worker-2", node="worker-1")
    assert (across.node, across.origin.kind, across.origin.netns, across.origin.via) == (
        "worker-1", "namespace", names.node_ns("kubesim", "worker-2"), "eth0")
    with pytest.raises(TraceError, match="--node"):
        resolve(topo, "127.0.0.1")
    assert resolve(topo, "127.0.0.1", node="worker-1").origin.kind == "local"


def test_outside_addresses(topo: Topology) -> None:
    host = resolve(topo, "client")
    assert (host.node, host.origin.kind, host.origin.netns) == (
        "worker-1", "namespace", names.external_ns("kubesim", "client"))
    assert resolve(topo, "172.18.0.5").origin.netns == host.origin.netns
    far = resolve(topo, "203.0.113.9")
    assert (far.node, far.origin.kind, far.origin.prefixlen, far.origin.gateway) == (
        "worker-1", "fabric-probe", 32, "172.18.0.3")
    near = resolve(topo, "172.18.7.7", node="worker-2")
    assert (near.node, near.origin.prefixlen, near.origin.gateway) == ("worker-2", 16, "172.18.0.4")
    with pytest.raises(TraceError, match="host link"):
        resolve(topo, topo.network.host_address)


def test_ingress_overrides_the_guess(topo: Topology) -> None:
    assert resolve(topo, "10.244.1.77", ingress="external").origin.kind == "fabric-probe"
    assert resolve(topo, "203.0.113.9", ingress="node", node="worker-2").origin.kind == "local"
    assert resolve(topo, "client", ingress="node").origin.kind == "local"
    pod = resolve(topo, "198.51.100.4", ingress="pod", node="worker-2")
    assert (pod.origin.kind, pod.origin.prefixlen, pod.node) == ("bridge-probe", 32, "worker-2")
    with pytest.raises(TraceError, match="--node"):
        resolve(topo, "198.51.100.4", ingress="pod")
    with pytest.raises(TraceError, match="--ingress"):
        resolve(topo, "198.51.100.4", ingress="sideways")
    with pytest.raises(TraceError, match="not a node"):
        resolve(topo, "client", node="worker-9")


def test_no_apiserver_question_for_addresses_outside_the_cluster(topo: Topology) -> None:
    pods = FakePods()
    resolve_source(topo, "203.0.113.9", node=None, ingress=None, pods=pods)
    resolve_source(topo, "worker-1", node=None, ingress=None, pods=pods)
    assert pods.asked == 0


def test_destination() -> None:
    assert parse_destination("10.96.0.10:53") == ("10.96.0.10", 53)
    for bad in ("10.96.0.10", "svc:80", "10.96.0.10:0", "10.96.0.10:http", ":80"):
        with pytest.raises(TraceError):
            parse_destination(bad)


def test_capture_command() -> None:
    assert capture_command("ksim-a.node.n1") == ["nsenter", "--net=/run/netns/ksim-a.node.n1", "--", "tcpdump",
                                                 "-n", "-i", "any", "-l"]
    assert capture_command("ksim-a.node.n1", iface="cbr0", write="x.pcap", bpf=("tcp", "port", "80"))[-7:] == [
        "cbr0", "-U", "-w", "x.pcap", "tcp", "port", "80"]


def test_human_rendering_has_one_line_per_hop() -> None:
    (probe,) = make_probes(1, random.Random(5))
    analyzer = Analyzer(src="10.244.1.5", dst="10.96.0.10", dport=53, proto="udp", probes=[probe])
    packet = IP(bytes(craft(probe, "10.244.1.5", "10.96.0.10", 53, "udp")))
    packet.dst = "10.244.2.7"
    del packet.chksum
    ether = b"\x02" * 12 + b"\x08\x00"
    analyzer.feed_frame(Frame("veth1", 0, ether + bytes(craft(probe, "10.244.1.5", "10.96.0.10", 53, "udp")), 0.0))
    analyzer.feed_frame(Frame("eth0", 4, ether + bytes(packet), 0.0))
    result = analyzer.result(node="worker-1", ingress="pod").to_dict()
    result["source"] = "pod default/curl (10.244.1.5)"
    lines = render_lines(result)
    assert lines[0][0] == "DNAT -> 10.244.2.7:53"
    assert "1 udp probe(s) from pod default/curl" in lines[1][0]
    hop_lines = [text for text, _ in lines if text.startswith("  ")]
    assert len(hop_lines) == len(result["hops"]) == 2
    assert hop_lines[0].split()[0] == "veth1" and hop_lines[1].endswith("-> out")


def test_unknown_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESIM_STATE_DIR", str(tmp_path))
    with pytest.raises(StateError, match="does not exist"):
        run_trace("nope", node=None, src="10.0.0.1", dst="10.96.0.1:443", pods=FakePods())
