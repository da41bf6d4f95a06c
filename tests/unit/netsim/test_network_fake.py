"""The network builder and the sandbox API against the in-memory kernel."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from netsim import names, network
from netsim.errors import NetlinkError, NetsimError
from netsim.fake import FakeKernel, FakeRoute
from netsim.sandbox import create_sandbox, delete_sandbox, sandbox_for
from netsim.topology import load_topology

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"


@pytest.fixture
def two_node():
    return load_topology(TOPOLOGIES / "two-node.yaml")


def test_host_gw_build(two_node):
    kernel = FakeKernel()
    recorded: list[tuple[str, str]] = []
    network.build(two_node, kernel=kernel, record=lambda kind, name: recorded.append((kind, name)))

    assert kernel.ns_list() == sorted([
        "ksim-kubesim.fabric", "ksim-kubesim.node.control-plane", "ksim-kubesim.node.worker-1",
        "ksim-kubesim.node.worker-2", "ksim-kubesim.ext.client",
    ])
    # Everything made was recorded first, the host link included.
    assert set(recorded) == {("netns", ns) for ns in kernel.ns_list()} | {("link", "ksim-5dc1b8")}

    worker1 = kernel.namespaces["ksim-kubesim.node.worker-1"]
    assert worker1.links["eth0"].addresses == ["172.18.0.3/16"]
    assert worker1.links["eth0"].peer == ("ksim-kubesim.fabric", "p-worker-1")
    assert worker1.links["cbr0"].addresses == ["10.244.1.1/24"]
    assert worker1.sysctls == {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
    assert kernel.route_to("ksim-kubesim.node.worker-1", "10.244.2.7") == FakeRoute(
        "10.244.2.0/24", "eth0", "172.18.0.4")
    assert kernel.route_to("ksim-kubesim.node.worker-1", "10.96.0.10") == FakeRoute("10.96.0.0/16", "eth0")
    # Sealed: nothing in the cluster has a default route.
    for ns in kernel.ns_list():
        assert kernel.route_to(ns, "8.8.8.8") is None, ns

    fabric = kernel.namespaces["ksim-kubesim.fabric"]
    ports = {name for name, link in fabric.links.items() if link.master == "br0"}
    assert ports == {"p-control-plane", "p-worker-1", "p-worker-2", "p-client", "host0"}

    root = kernel.namespaces[None]
    assert root.links["ksim-5dc1b8"].addresses == ["172.18.0.1/16"]
    assert kernel.route_to(None, "10.244.0.5") == FakeRoute("10.244.0.0/24", "ksim-5dc1b8", "172.18.0.2")
    assert kernel.route_to(None, "10.96.0.1") == FakeRoute("10.96.0.0/16", "ksim-5dc1b8", "172.18.0.3")
    assert kernel.route_to(None, "172.18.255.210").gateway == "172.18.0.3"  # load-balancer pool
    assert kernel.route_to(None, "8.8.8.8") is None  # the fake root has no default route of its own
    client = kernel.namespaces["ksim-kubesim.ext.client"]
    assert client.links["eth0"].addresses == ["172.18.0.5/16"]
    assert kernel.route_to("ksim-kubesim.ext.client", "172.18.255.200").gateway == "172.18.0.3"


def test_vxlan_build_programs_flannel_style_peers():
    topo = load_topology(TOPOLOGIES / "three-node-vxlan.yaml")
    kernel = FakeKernel()
    network.build(topo, kernel=kernel)
    ns = "ksim-vxlan.node.worker-1"
    space = kernel.namespaces[ns]
    vxlan = space.links["vxlan0"]
    assert vxlan.vxlan == {"vni": 1, "local": "172.20.0.3", "dev": "eth0", "port": 4789,
                           "mac": network.vxlan_mac("vxlan", "worker-1")}
    assert vxlan.mtu == 1450 and vxlan.addresses == ["10.246.1.0/32"]
    assert space.links["cbr0"].mtu == 1450
    worker3_mac = network.vxlan_mac("vxlan", "worker-3")
    assert space.neighbours["10.246.3.0"] == ("vxlan0", worker3_mac)
    assert ("vxlan0", worker3_mac, "172.20.0.5") in space.fdb
    assert kernel.route_to(ns, "10.246.3.9") == FakeRoute("10.246.3.0/24", "vxlan0", "10.246.3.0", onlink=True)
    assert len(space.fdb) == 3  # one per other node, no flooding entry
    assert network.pod_mtu(topo) == 1450


def test_external_host_on_its_own_subnet_reaches_nodes_on_link():
    topo = load_topology(TOPOLOGIES / "kube-proxy-fixture.yaml")
    kernel = FakeKernel()
    network.build(topo, kernel=kernel)
    client = "ksim-fixture.ext.client"
    assert kernel.namespaces[client].links["eth0"].addresses == ["203.0.113.2/24"]
    assert kernel.route_to(client, "192.168.0.2") == FakeRoute("192.168.0.0/16", "eth0")
    assert kernel.route_to("ksim-fixture.node.test-node", "203.0.113.2") == FakeRoute("203.0.113.0/24", "eth0")
    lb = kernel.route_to(client, "192.168.99.11")
    assert lb is not None and lb.gateway == "192.168.0.2" and lb.onlink



def test_every_node_reaches_a_load_balancer_pool_outside_its_subnet_on_its_uplink(two_node):
    # A node's own traffic to an LB IP needs a route before kube-proxy's OUTPUT DNAT picks an endpoint.
    topo = dataclasses.replace(two_node, load_balancer_pool=("198.51.100.0/28", "172.18.255.200-172.18.255.201"))
    kernel = FakeKernel()
    network.build(topo, kernel=kernel)
    for node in topo.nodes:
        ns = names.node_ns(topo.name, node.name)
        assert kernel.route_to(ns, "198.51.100.7") == FakeRoute("198.51.100.0/28", "eth0")
        # inside the node subnet the connected route serves: no extra route is made
        assert all(not r.dst.startswith("172.18.255.") for r in kernel.namespaces[ns].routes)

def test_destroy_removes_everything_and_is_idempotent(two_node):
    kernel = FakeKernel()
    network.build(two_node, kernel=kernel)
    sandbox = sandbox_for("kubesim", "worker-1", "10.244.1.0/24", "pod-a", "10.244.1.5")
    create_sandbox(sandbox, kernel=kernel)
    removed = network.destroy("kubesim", kernel=kernel)
    assert removed[0] == "netns ksim-kubesim.pod.pod-a"  # pods first
    assert removed[-1] == "netns ksim-kubesim.fabric"  # the fabric last
    assert kernel.ns_list() == []
    assert set(kernel.namespaces[None].links) == {"lo", "eth0"}
    assert kernel.namespaces[None].routes == []
    assert network.destroy("kubesim", kernel=kernel) == []


def test_destroy_never_touches_another_cluster_with_a_longer_name(two_node):
    kernel = FakeKernel()
    network.build(two_node.with_name("a"), kernel=kernel)
    kernel.ns_create("ksim-a-b.node.x")  # cluster "a-b": shares the text "ksim-a" but not the prefix
    network.destroy("a", kernel=kernel)
    assert kernel.ns_list() == ["ksim-a-b.node.x"]


def test_sandbox_is_wired_like_the_bridge_cni(two_node):
    kernel = FakeKernel()
    network.build(two_node, kernel=kernel)
    sandbox = sandbox_for("kubesim", "worker-2", "10.244.2.0/24", "uid-1234", "10.244.2.10")
    create_sandbox(sandbox, kernel=kernel)
    node = kernel.namespaces["ksim-kubesim.node.worker-2"]
    host_end = node.links[sandbox.host_veth]
    assert host_end.master == "cbr0" and host_end.hairpin and host_end.up
    assert len(sandbox.host_veth) <= 15
    pod = kernel.namespaces["ksim-kubesim.pod.uid-1234"]
    assert pod.links["eth0"].addresses == ["10.244.2.10/24"]
    assert kernel.route_to("ksim-kubesim.pod.uid-1234", "8.8.8.8") == FakeRoute("0.0.0.0/0", "eth0", "10.244.2.1")
    assert delete_sandbox(sandbox, kernel=kernel)
    assert sandbox.host_veth not in node.links
    assert not delete_sandbox(sandbox, kernel=kernel)



def test_deleting_a_sandbox_ends_the_processes_inside_first(two_node):
    kernel = FakeKernel()
    network.build(two_node, kernel=kernel)
    sandbox = sandbox_for("kubesim", "worker-1", "10.244.1.0/24", "uid-left", "10.244.1.7")
    create_sandbox(sandbox, kernel=kernel)
    kernel.namespaces[sandbox.netns].processes = [4242]
    calls: list[str] = []
    kill, delete = kernel.ns_kill_processes, kernel.ns_delete
    kernel.ns_kill_processes = lambda ns: calls.append("kill") or kill(ns)  # type: ignore[method-assign]
    kernel.ns_delete = lambda ns: calls.append("delete") or delete(ns)  # type: ignore[method-assign]
    assert delete_sandbox(sandbox, kernel=kernel)
    assert calls == ["kill", "delete"]
    assert kernel.ns_kill_processes(sandbox.netns) == []

def test_sandbox_rejects_addresses_outside_the_pod_cidr():
    with pytest.raises(NetsimError, match="not a usable pod address"):
        sandbox_for("kubesim", "worker-1", "10.244.1.0/24", "p", "10.244.2.5")
    with pytest.raises(NetsimError, match="not a usable pod address"):
        sandbox_for("kubesim", "worker-1", "10.244.1.0/24", "p", "10.244.1.1")  # the gateway


class _FailingRoutes(FakeKernel):
    def add_route(self, ns, dst, **kwargs):
        if ns and ".pod." in ns:
            raise NetlinkError("injected failure")
        super().add_route(ns, dst, **kwargs)


def test_failed_sandbox_leaves_nothing(two_node):
    kernel = _FailingRoutes()
    network.build(two_node, kernel=kernel)
    before = sorted(kernel.namespaces["ksim-kubesim.node.worker-1"].links)
    with pytest.raises(NetlinkError, match="injected"):
        create_sandbox(sandbox_for("kubesim", "worker-1", "10.244.1.0/24", "a", "10.244.1.5"), kernel=kernel)
    assert "ksim-kubesim.pod.a" not in kernel.ns_list()
    assert sorted(kernel.namespaces["ksim-kubesim.node.worker-1"].links) == before


def test_second_sandbox_with_the_same_id_leaves_the_first_alone(two_node):
    kernel = FakeKernel()
    network.build(two_node, kernel=kernel)
    create_sandbox(sandbox_for("kubesim", "worker-1", "10.244.1.0/24", "a", "10.244.1.5"), kernel=kernel)
    with pytest.raises(NetsimError, match="already exists"):
        create_sandbox(sandbox_for("kubesim", "worker-1", "10.244.1.0/24", "a", "10.244.1.6"), kernel=kernel)
    assert kernel.namespaces["ksim-kubesim.pod.a"].links["eth0"].addresses == ["10.244.1.5/24"]


def test_sandbox_on_a_missing_node():
    kernel = FakeKernel()
    with pytest.raises(NetsimError, match="does not exist"):
        create_sandbox(sandbox_for("kubesim", "nope", "10.244.9.0/24", "p", "10.244.9.9"), kernel=kernel)


def test_fake_checks_like_the_kernel():
    kernel = FakeKernel()
    kernel.ns_create("n")
    with pytest.raises(NetlinkError, match="longer than 15"):
        kernel.add_bridge("n", "a-very-long-bridge-name")
    kernel.add_bridge("n", "br0")
    with pytest.raises(NetlinkError, match="already exists"):
        kernel.add_bridge("n", "br0")
    with pytest.raises(NetlinkError, match="is down"):
        kernel.add_route("n", "10.0.0.0/8", dev="br0")


def test_interface_names_fit():
    assert names.fit_ifname("short") == "short"
    long = names.fit_ifname("p-a-very-long-node-name")
    assert len(long) == 15 and long != names.fit_ifname("p-a-very-long-node-namf")
