"""Pod sandboxes: kubesim's CNI.

A sandbox is a network namespace wired to its node's pod bridge, as the bridge CNI plugin does it:
a veth pair made with its pod end already inside the pod's namespace (eth0) and its node end
(vethXXXXXXXX) on cbr0 with hairpin on; the pod gets its address and a default route via the node's
gateway address on cbr0. Addresses are the caller's to choose (the kubelet's IPAM records them).

A pod's UTS and mount namespaces (its place: kernel.ns_create_place, netsim.place) are made after this,
by the caller, off the netlink thread: making them runs a process, and many may run at once. They are
removed with the network namespace (ns_delete), so delete_sandbox removes them too.
"""

from __future__ import annotations

from dataclasses import dataclass

from netaddr import IPAddress, IPNetwork

from netsim import names
from netsim.errors import NetsimError
from netsim.kernel import Kernel


@dataclass(frozen=True)
class Sandbox:
    cluster: str
    node: str
    pod_id: str
    ip: str
    prefixlen: int
    gateway: str
    mtu: int = 1500

    @property
    def netns(self) -> str:
        return names.pod_ns(self.cluster, self.pod_id)

    @property
    def host_veth(self) -> str:
        return names.pod_host_veth(self.pod_id)


def sandbox_for(cluster: str, node: str, pod_cidr: str, pod_id: str, ip: str, *, mtu: int = 1500) -> Sandbox:
    """Describe the sandbox of POD_ID on NODE with address IP out of the node's POD_CIDR."""
    net = IPNetwork(pod_cidr)
    gateway = IPAddress(net.first + 1)
    address = IPAddress(ip)
    if address not in net or address in (net.network, net.broadcast, gateway):
        raise NetsimError(f"pod {pod_id}: {ip} is not a usable pod address of {node}'s podCIDR {pod_cidr}")
    return Sandbox(cluster, node, pod_id, str(address), net.prefixlen, str(gateway), mtu)


def create_sandbox(sandbox: Sandbox, *, kernel: Kernel) -> None:
    """Make SANDBOX. On failure nothing of it is left behind."""
    node_ns = names.node_ns(sandbox.cluster, sandbox.node)
    if not kernel.ns_exists(node_ns):
        raise NetsimError(f"pod {sandbox.pod_id}: node namespace {node_ns} does not exist")
    # The address may be a deleted pod's, and the node's ARP cache still map it to that pod's MAC: traffic
    # from the node (probes, Services) would go to a MAC no port has, until the entry ages out. Forget it,
    # so the first packet asks who has the address now.
    kernel.forget_neighbour(node_ns, names.NODE_BRIDGE, sandbox.ip)
    kernel.ns_create(sandbox.netns)
    try:
        # A fresh namespace holds only lo (index 1): asking for index 2 lets the calls that follow
        # address eth0 without looking it up first.
        kernel.add_veth(node_ns, sandbox.host_veth, peer_ns=sandbox.netns, peer_name=names.POD_IFACE,
                        master=names.NODE_BRIDGE, mtu=sandbox.mtu, hairpin=True, peer_index=2)
        kernel.set_up(sandbox.netns, "lo")
        kernel.set_up(sandbox.netns, names.POD_IFACE)
        kernel.add_address(sandbox.netns, names.POD_IFACE, sandbox.ip, sandbox.prefixlen)
        kernel.add_route(sandbox.netns, "0.0.0.0/0", dev=names.POD_IFACE, gateway=sandbox.gateway)
    except BaseException:
        delete_sandbox(sandbox, kernel=kernel)
        raise
    finally:
        # Sandboxes are made once and left alone: don't keep a socket open per pod.
        kernel.release(sandbox.netns)


def delete_sandbox(sandbox: Sandbox, *, kernel: Kernel) -> bool:
    """Remove SANDBOX (idempotent), its UTS and mount namespaces with it. Unpinning the namespace is
    enough: the kernel then destroys it and the veth pair with it, in the background and in batches.
    Deleting the veth first would cost ~30 ms of RCU grace period per pod, and the node end's name is
    unique to this pod anyway.

    Whatever still runs in the sandbox goes first, as a runtime stops a pod's containers with its
    sandbox: a process container left by a kubelet that was killed would otherwise keep the unpinned
    namespace, and the pod's address, alive."""
    kernel.ns_kill_processes(sandbox.netns)
    return kernel.ns_delete(sandbox.netns)
