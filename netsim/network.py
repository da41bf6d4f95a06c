"""Build and tear down a cluster's network: the fabric, nodes, external hosts and the host link.

    root namespace ── ksim-<hash> ═══ host0 ─┐
                                            fabric: br0 (the cluster's "physical switch")
    node namespace:  eth0 ═══ p-<node> ─────┤        every node: cbr0 = pod-CIDR gateway
    external host:   eth0 ═══ p-<host> ─────┘

host-gw mode routes each node's pod CIDR via that node's address; vxlan mode builds flannel's
overlay instead: a VXLAN device per node (VNI 1, UDP 4789) with static neighbour and FDB entries for
every other node, so no learning or flooding is needed.

Nothing here routes out of the machine: nodes and external hosts get no default route, and the root
namespace only gets routes for the cluster's ranges, on the host link, which vanish with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from netaddr import IPAddress, IPNetwork, IPRange

from netsim import names
from netsim.kernel import Kernel
from netsim.topology import ExternalHost, Node, Topology

VXLAN_VNI = 1
VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50
FABRIC_MTU = 1500

Recorder = Callable[[str, str], None]
"""Called as record(kind, name) *before* an object is made, so a crash never hides what exists."""


def _no_record(kind: str, name: str) -> None:
    pass


def pod_mtu(topology: Topology) -> int:
    return FABRIC_MTU - VXLAN_OVERHEAD if topology.network.mode == "vxlan" else FABRIC_MTU


def vxlan_mac(cluster: str, node: str) -> str:
    """A stable, locally administered MAC for a node's VXLAN device, so peers can be programmed
    without asking the node."""
    digest = names.short_hash(f"{cluster}/{node}", 10)
    return "02:" + ":".join(digest[i:i + 2] for i in range(0, 10, 2))


def gateway_node(topology: Topology) -> Node:
    """The node that traffic for Services and load-balancer IPs from outside the cluster is sent to:
    the first worker, or the control plane in a single-node cluster."""
    workers = [n for n in topology.nodes if n.role == "worker"]
    return workers[0] if workers else topology.control_plane


def _pool_cidrs(topology: Topology) -> list[str]:
    cidrs: list[str] = []
    for entry in topology.load_balancer_pool:
        if "-" in entry:
            first, last = entry.split("-")
            cidrs += [str(c) for c in IPRange(first, last).cidrs()]
        else:
            cidrs.append(entry)
    return cidrs


def build(topology: Topology, *, kernel: Kernel, record: Recorder = _no_record) -> None:
    """Make the whole network of TOPOLOGY. On failure, what was made stays for the caller's teardown
    (everything was recorded first)."""
    cluster = topology.name
    fabric = names.fabric_ns(cluster)
    record("netns", fabric)
    kernel.ns_create(fabric)
    kernel.set_up(fabric, "lo")
    kernel.add_bridge(fabric, names.FABRIC_BRIDGE, mtu=FABRIC_MTU)
    kernel.set_up(fabric, names.FABRIC_BRIDGE)
    # The fabric is a plain switch: no firewall hooks on what it bridges.
    kernel.set_sysctl(fabric, "net.bridge.bridge-nf-call-iptables", "0")

    for node in topology.nodes:
        _build_node(topology, node, kernel, record)
    for node in topology.nodes:
        _route_pod_cidrs(topology, node, kernel)
    for host in topology.external_hosts:
        _build_external_host(topology, host, kernel, record)
    _build_host_link(topology, kernel, record)


def _attach_to_fabric(topology: Topology, ns: str, member: str, address: str, prefixlen: int,
                      kernel: Kernel) -> None:
    fabric = names.fabric_ns(topology.name)
    kernel.add_veth(fabric, names.fabric_port(member), peer_ns=ns, peer_name=names.NODE_UPLINK,
                    master=names.FABRIC_BRIDGE, mtu=FABRIC_MTU)
    kernel.set_up(ns, names.NODE_UPLINK)
    kernel.add_address(ns, names.NODE_UPLINK, address, prefixlen)


def _build_node(topology: Topology, node: Node, kernel: Kernel, record: Recorder) -> None:
    net = topology.network
    ns = names.node_ns(topology.name, node.name)
    record("netns", ns)
    kernel.ns_create(ns)
    kernel.set_up(ns, "lo")
    kernel.set_sysctl(ns, "net.ipv4.ip_forward", "1")
    # Bridged pod-to-pod traffic must meet the node's netfilter rules, or replies from a DNATed
    # Service connection on the same bridge bypass conntrack's reverse NAT.
    kernel.set_sysctl(ns, "net.bridge.bridge-nf-call-iptables", "1")
    _attach_to_fabric(topology, ns, node.name, node.address, IPNetwork(net.node_cidr).prefixlen, kernel)

    pod_net = IPNetwork(node.pod_cidr)
    kernel.add_bridge(ns, names.NODE_BRIDGE, mtu=pod_mtu(topology))
    kernel.add_address(ns, names.NODE_BRIDGE, node.pod_gateway, pod_net.prefixlen)
    kernel.set_up(ns, names.NODE_BRIDGE)
    # Locally generated Service traffic needs some route to the virtual IP before kube-proxy's DNAT in
    # OUTPUT picks the real destination; a link route keeps it on the fabric and never off the machine.
    kernel.add_route(ns, net.service_cidr, dev=names.NODE_UPLINK)
    # The same for load-balancer IPs (kube-proxy DNATs a node's own traffic to them in OUTPUT too); a
    # pool inside the node subnet is already on-link.
    for cidr in _pool_cidrs(topology):
        if IPNetwork(cidr) not in IPNetwork(net.node_cidr):
            kernel.add_route(ns, cidr, dev=names.NODE_UPLINK)
    if net.external_cidr:
        kernel.add_route(ns, net.external_cidr, dev=names.NODE_UPLINK)
    if net.mode == "vxlan":
        kernel.add_vxlan(ns, names.NODE_VXLAN, vni=VXLAN_VNI, local=node.address, dev=names.NODE_UPLINK,
                         port=VXLAN_PORT, mac=vxlan_mac(topology.name, node.name),
                         mtu=FABRIC_MTU - VXLAN_OVERHEAD)
        kernel.add_address(ns, names.NODE_VXLAN, str(pod_net.network), 32)
        kernel.set_up(ns, names.NODE_VXLAN)


def _route_pod_cidrs(topology: Topology, node: Node, kernel: Kernel) -> None:
    ns = names.node_ns(topology.name, node.name)
    for other in topology.nodes:
        if other.name == node.name:
            continue
        if topology.network.mode == "vxlan":
            # flannel's layout: the peer's VTEP answers to the first address of its pod CIDR.
            vtep = str(IPNetwork(other.pod_cidr).network)
            mac = vxlan_mac(topology.name, other.name)
            kernel.add_neighbour(ns, names.NODE_VXLAN, vtep, mac)
            kernel.add_fdb(ns, names.NODE_VXLAN, mac, other.address)
            kernel.add_route(ns, other.pod_cidr, dev=names.NODE_VXLAN, gateway=vtep, onlink=True)
        else:
            kernel.add_route(ns, other.pod_cidr, dev=names.NODE_UPLINK, gateway=other.address)


def _build_external_host(topology: Topology, host: ExternalHost, kernel: Kernel, record: Recorder) -> None:
    net = topology.network
    ns = names.external_ns(topology.name, host.name)
    record("netns", ns)
    kernel.ns_create(ns)
    kernel.set_up(ns, "lo")
    inside_nodes = IPAddress(host.address) in IPNetwork(net.node_cidr)
    home = net.node_cidr if inside_nodes else net.external_cidr
    assert home is not None
    _attach_to_fabric(topology, ns, host.name, host.address, IPNetwork(home).prefixlen, kernel)
    if not inside_nodes:
        # Another subnet on the same wire: reach the nodes directly, as behind a router's one hop.
        kernel.add_route(ns, net.node_cidr, dev=names.NODE_UPLINK)
    gateway = gateway_node(topology).address
    for cidr in _pool_cidrs(topology):
        kernel.add_route(ns, cidr, dev=names.NODE_UPLINK, gateway=gateway, onlink=not inside_nodes)


def _build_host_link(topology: Topology, kernel: Kernel, record: Recorder) -> None:
    """The only thing made in the root namespace: one veth into the fabric, with routes for the
    cluster's ranges on it (they disappear with the link)."""
    net = topology.network
    link = names.host_link(topology.name)
    record("link", link)
    kernel.add_veth(None, link, peer_ns=names.fabric_ns(topology.name), peer_name=names.FABRIC_HOST_PORT,
                    peer_master=names.FABRIC_BRIDGE, mtu=FABRIC_MTU)
    kernel.set_up(names.fabric_ns(topology.name), names.FABRIC_HOST_PORT)
    kernel.add_address(None, link, net.host_address, IPNetwork(net.node_cidr).prefixlen)
    for node in topology.nodes:
        kernel.add_route(None, node.pod_cidr, dev=link, gateway=node.address)
    gateway = gateway_node(topology).address
    kernel.add_route(None, net.service_cidr, dev=link, gateway=gateway)
    for cidr in _pool_cidrs(topology):
        kernel.add_route(None, cidr, dev=link, gateway=gateway)


def cluster_namespaces(cluster: str, kernel: Kernel) -> list[str]:
    """Every namespace that belongs to CLUSTER, found by its prefix."""
    prefix = names.cluster_prefix(cluster)
    return [ns for ns in kernel.ns_list() if ns.startswith(prefix)]


def destroy(cluster: str, *, kernel: Kernel, recorded: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Remove everything of CLUSTER: what RECORDED lists and whatever carries its prefix. Idempotent.
    Pods go first, then nodes and external hosts, the host link, and the fabric last. Returns what was
    removed."""
    recorded = list(recorded)
    prefix = names.cluster_prefix(cluster)
    wanted = set(cluster_namespaces(cluster, kernel))
    wanted |= {name for kind, name in recorded if kind == "netns" and kernel.ns_exists(name)}
    links = {names.host_link(cluster)} | {name for kind, name in recorded if kind == "link"}
    fabric = [ns for ns in wanted if ns == names.fabric_ns(cluster)]
    members = sorted(wanted - set(fabric), key=lambda ns: (ns[len(prefix):].split(".")[0] not in ("pod", "probe"), ns))

    removed: list[str] = []
    for ns in members:
        if kernel.ns_delete(ns):
            removed.append(f"netns {ns}")
    # Before the fabric: a namespace dies asynchronously, and its veth peers with it, so deleting the
    # root end ourselves is what makes `ip link` clean the moment we return.
    for link in sorted(links):
        if kernel.delete_link(None, link):
            removed.append(f"link {link}")
    for ns in fabric:
        if kernel.ns_delete(ns):
            removed.append(f"netns {ns}")
    return removed
