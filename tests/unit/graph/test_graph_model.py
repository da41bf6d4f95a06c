"""kubesim.graph.model: cluster facts -> the graph `kubesim graph` draws; kubesim.graph.facts' pure parts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubesim.errors import GraphError, StateError
from kubesim.graph import build
from kubesim.graph.facts import gather, pod_facts, service_facts
from kubesim.graph.model import Graph
from kubesim.state import ClusterState
from netsim import names
from netsim.topology import load_topology
from tests.unit.graph.graph_sample import NODES, PODS, facts

REPO = Path(__file__).resolve().parents[3]


def edges(graph: Graph, kind: str) -> set[tuple[str, str, str]]:
    return {(e.a, e.b, e.label) for e in graph.edges if e.kind == kind}


def test_every_node_pod_and_service_is_a_vertex_in_its_place() -> None:
    graph = build(facts())
    by_kind = {kind: {v.label for v in graph.vertices if v.kind == kind} for kind in ("node", "pod", "service")}
    assert by_kind == {"node": set(NODES), "pod": set(PODS),
                       "service": {"kubernetes", "echo", "kube-dns", "outside", "outside-too"}}
    assert {v.label for v in graph.in_group("group:node/worker-1") if v.kind == "pod"} == {
        "echo-7d9f-abcde", "coredns-5c6b-x1"}
    assert [v.label for v in graph.in_group("group:unscheduled")] == ["pending-one"]
    assert graph.vertex("pod:default/pending-one").details == ("default", "no IP yet", "Pending")
    assert graph.vertex("pod:default/echo-7d9f-abcde").details == ("default", "10.244.1.2")
    assert graph.vertex("service:default/echo").details == ("default", "ClusterIP 10.96.10.20", "80/TCP→8080")
    assert graph.vertex("service:kube-system/kube-dns").details[2] == "53/UDP 53/TCP"
    assert graph.vertex("service:default/outside-too").details[1] == "ClusterIP headless"
    assert [g.label for g in graph.groups] == [
        "node control-plane", "node worker-1", "node worker-2", "not scheduled", "Services"]


def test_links_are_the_ones_netsim_builds() -> None:
    graph = build(facts())
    veths = edges(graph, "veth")
    assert ("host", "fabric", "ksim-abcdef ↔ host0") in veths
    assert ("fabric", "node:worker-1", f"{names.fabric_port('worker-1')} ↔ eth0") in veths
    assert ("fabric", "external:client", "p-client ↔ eth0") in veths
    # A pod's node end is named from its uid, as the kubelet's sandbox names it.
    assert ("bridge:worker-1", "pod:default/echo-7d9f-abcde", f"{names.pod_host_veth('u-1')} ↔ eth0") in veths
    assert ("node:worker-2", "pod:kube-system/node-agent-w2", "hostNetwork") in edges(graph, "host-network")
    assert not [e for e in graph.edges if e.b == "pod:default/pending-one"]  # no sandbox, no link
    # vxlan: a full mesh of tunnels, one per pair of nodes.
    assert {(a, b) for a, b, _ in edges(graph, "vxlan")} == {
        ("vxlan:control-plane", "vxlan:worker-1"), ("vxlan:control-plane", "vxlan:worker-2"),
        ("vxlan:worker-1", "vxlan:worker-2")}


def test_what_the_kernel_lacks_is_drawn_as_missing() -> None:
    sample = facts()
    sample["nodes"][2]["present"] = False
    sample["pods"][0]["sandbox"] = False
    graph = build(sample)
    assert graph.vertex("node:worker-2").details == ("eth0 172.18.0.4", "NAMESPACE MISSING")
    assert graph.vertex("pod:default/echo-7d9f-abcde").details[-1] == "NO SANDBOX"
    assert not [e for e in graph.edges if e.b == "pod:default/echo-7d9f-abcde" and e.kind == "veth"]
    assert graph.vertex("node:worker-1").details == ("eth0 172.18.0.3",)


def test_host_gw_has_no_tunnels_and_says_how_it_routes() -> None:
    graph = build(facts(mode="host-gw"))
    assert not [v for v in graph.vertices if v.kind == "vxlan"] and not edges(graph, "vxlan")
    assert any("host-gw" in note for note in graph.notes)
    assert graph.title == "kubesim cluster demo (host-gw)"


def test_endpoints_point_at_pods_nodes_and_bare_addresses() -> None:
    graph = build(facts())
    assert edges(graph, "endpoint") == {
        ("service:default/kubernetes", "node:control-plane", "172.18.0.2"),  # the apiserver's node
        ("service:default/echo", "pod:default/echo-7d9f-abcde", "10.244.1.2"),
        ("service:default/echo", "pod:default/echo-7d9f-fghij", "10.244.2.2 (not ready)"),
        ("service:kube-system/kube-dns", "pod:kube-system/coredns-5c6b-x1", "10.244.1.3"),  # by address
        ("service:default/outside", "address:192.0.2.7", "192.0.2.7"),
        ("service:default/outside-too", "address:192.0.2.7", "192.0.2.7"),
    }
    assert [v.id for v in graph.vertices if v.kind == "address"] == ["address:192.0.2.7"]  # drawn once


def test_a_cluster_without_api_objects_is_still_its_network() -> None:
    graph = build(facts(pods=[], services=[], notes=["no control plane"]))
    assert {v.kind for v in graph.vertices} == {"host", "fabric", "external", "node", "bridge", "vxlan"}
    assert "no control plane" in graph.notes
    assert graph.to_dict()["vertices"][0] == {"id": "fabric", "kind": "fabric", "label": "fabric br0",
                                              "details": ("nodes 172.18.0.0/16",), "group": None}


@pytest.mark.parametrize(("change", "message"), [
    ({"cluster": None}, r"facts\.cluster is missing"),
    ({"nodes": "worker-1"}, r"facts\.nodes must be a list, not str"),
    ({"nodes": [{"name": "a"}, {"role": "worker"}]}, r"facts\.nodes\[1\]\.name is missing"),
    ({"nodes": [{"name": "a"}, {"name": "a"}]}, r"facts\.nodes\[1\]\.name 'a' names a node twice"),
    ({"pods": [{"name": "p", "node": "nowhere"}]}, r"facts\.pods\[0\]\.node 'nowhere' \(pod default/p\) is not one"),
    ({"pods": [{"name": "p", "hostNetwork": "yes"}]}, r"facts\.pods\[0\]\.hostNetwork must be a bool"),
    ({"pods": [{"name": "p"}, {"name": "p", "namespace": "default"}]}, r"facts\.pods\[1\] is pod default/p again"),
    ({"services": [{"name": "s"}, {"name": "s"}]}, r"facts\.services\[1\] is Service default/s again"),
    ({"services": [{"name": "s", "endpoints": [{"ready": True}]}]}, r"facts\.services\[0\]\.endpoints\[0\]\.ip"),
    ({"services": [{"name": "s", "ports": [{"port": True}]}]}, r"facts\.services\[0\]\.ports\[0\]\.port must be"),
])
def test_malformed_facts_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(GraphError, match=message):
        build(facts(**change))


def test_api_objects_become_facts() -> None:
    pod = {"metadata": {"namespace": "x", "name": "web-1", "uid": "abc"},
           "spec": {"nodeName": "worker-1", "containers": []}, "status": {"podIP": "10.244.1.9", "phase": "Running"}}
    assert pod_facts(pod) == {"namespace": "x", "name": "web-1", "uid": "abc", "node": "worker-1",
                              "ip": "10.244.1.9", "hostNetwork": False, "phase": "Running"}
    service = {"metadata": {"namespace": "x", "name": "web"},
               "spec": {"type": "NodePort", "clusterIP": "10.96.0.50",
                        "ports": [{"port": 80, "protocol": "TCP", "targetPort": "http", "nodePort": 30080}]}}
    slices = [
        {"metadata": {"namespace": "x", "name": "web-a", "labels": {"kubernetes.io/service-name": "web"}},
         "endpoints": [{"addresses": ["10.244.1.9"], "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "namespace": "x", "name": "web-1"}},
                       {"addresses": ["10.244.2.9"], "conditions": {}}]},  # unset ready is ready
        {"metadata": {"namespace": "x", "name": "web-b", "labels": {"kubernetes.io/service-name": "web"}},
         "endpoints": [{"addresses": ["10.244.1.9"], "conditions": {"ready": True}},
                       {"addresses": ["10.244.3.9"], "conditions": {"ready": False}}]},
        {"metadata": {"namespace": "y", "name": "web-c", "labels": {"kubernetes.io/service-name": "web"}},
         "endpoints": [{"addresses": ["10.244.4.4"]}]},  # another namespace's Service of that name
    ]
    assert service_facts([service], slices) == [{
        "namespace": "x", "name": "web", "type": "NodePort", "clusterIP": "10.96.0.50", "externalName": None,
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"}],
        "endpoints": [{"ip": "10.244.1.9", "ready": True, "pod": "x/web-1"},
                      {"ip": "10.244.2.9", "ready": True, "pod": None},
                      {"ip": "10.244.3.9", "ready": False, "pod": None}]}]
    drawn = build({"cluster": "c", "nodes": [{"name": "worker-1"}], "pods": [pod_facts(pod)],
                   "services": service_facts([service], slices)})
    assert drawn.vertex("service:x/web").details == ("x", "NodePort 10.96.0.50", "80/TCP→http")


def test_gather_draws_a_network_only_cluster_from_its_recorded_topology(tmp_path: Path) -> None:
    topology = load_topology(REPO / "topologies" / "two-node.yaml").with_name("drawn")
    state = ClusterState("drawn", tmp_path)
    with state.locked(create=True):
        state.save_topology(topology)
    found = gather("drawn", root=tmp_path)
    assert [n["name"] for n in found["nodes"]] == [n.name for n in topology.nodes]
    assert found["network"]["hostLink"] == names.host_link("drawn")
    assert found["pods"] == [] and "no control plane" in found["notes"][0]
    assert {v.label for v in build(found).vertices if v.kind == "node"} == {n.name for n in topology.nodes}


def test_gather_with_the_apiserver_down_draws_the_network_and_says_why(tmp_path: Path) -> None:
    topology = load_topology(REPO / "topologies" / "two-node.yaml").with_name("quiet")
    state = ClusterState("quiet", tmp_path)
    with state.locked(create=True):
        state.save_topology(topology)
    # Nothing listens on port 1 of loopback: the connection is refused at once.
    (state.dir / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    found = gather("quiet", root=tmp_path)
    assert found["pods"] == [] and len(found["nodes"]) == 3
    assert "the apiserver did not answer (ApiConnectionError" in found["notes"][0]
    with pytest.raises(StateError, match="cluster 'nowhere' does not exist"):
        gather("nowhere", root=tmp_path)
