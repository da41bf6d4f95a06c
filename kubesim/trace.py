"""`kubesim trace` and `kubesim capture`: the cluster's side of netsim.trace.

    run_trace("kubesim", node=None, src="default/client", dst="10.96.0.10:53", proto="udp", count=40,
              ingress=None, pcap=None)                  -> the result as a dict (netsim.trace's JSON)
    run_capture("kubesim", "worker-1", iface=None, write=None, bpf=("port", "53"))   -> tcpdump's exit code

Where a trace's probes start (SOURCE), as the issue puts it: from the named pod; from the node itself
when it is one of the node's addresses or loopback; from a temporary probe namespace on the node's pod
bridge when the address is in the node's pod range; from a temporary probe namespace on the fabric
otherwise (an address outside the cluster). A node or external host named by its name sends from its
own namespace. `--ingress pod|node|external` overrides the guess. Without --node, the node is the
source's own (the pod's, the pod range's owner) or, for traffic from outside, the gateway node
(the one the machine's and external hosts' routes send Service traffic to).
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubesim import cluster, components
from kubesim.errors import StateError
from kubesim.state import ClusterState, state_root
from netsim import names, namespaces, network
from netsim.topology import ExternalHost, Node, Topology
from netsim.trace import DEFAULT_TIMEOUT, PROTOCOLS, Origin, TraceError, TraceRequest, trace

INGRESSES = ("pod", "node", "external")


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    ip: str
    node: str


class PodDirectory(Protocol):
    def by_name(self, namespace: str, name: str) -> PodInfo | None: ...
    def by_ip(self, ip: str) -> PodInfo | None: ...


def _pod_info(obj: dict[str, Any]) -> PodInfo:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
    return PodInfo(meta.get("namespace", "default"), meta.get("name", ""), meta.get("uid", ""),
                   status.get("podIP", ""), spec.get("nodeName", ""))


class ApiPods:
    """Pods as the apiserver knows them, through the cluster's admin kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        from control.client import KubeClientError, NotFound, load_kubeconfig

        async def run() -> Any:
            client = load_kubeconfig(self.kubeconfig, timeout=5)
            try:
                return await fn(client)
            except NotFound:
                return None
            finally:
                await client.close()

        if not self.kubeconfig.exists():
            raise TraceError(f"no kubeconfig at {self.kubeconfig}: this cluster runs no control plane, so pods "
                             "cannot be looked up; name an address instead")
        try:
            return asyncio.run(run())
        except KubeClientError as exc:
            raise TraceError(f"looking up pods: {exc}") from None

    def by_name(self, namespace: str, name: str) -> PodInfo | None:
        from control.client import PODS

        found = self._call(lambda c: c.get(PODS, name, namespace=namespace))
        return _pod_info(found) if found else None

    def by_ip(self, ip: str) -> PodInfo | None:
        from control.client import PODS

        listed = self._call(lambda c: c.list(PODS, field_selector=f"status.podIP={ip}"))
        items = [i for i in (listed or {}).get("items", []) if i.get("status", {}).get("podIP") == ip]
        return _pod_info(items[0]) if items else None


@dataclass(frozen=True)
class Source:
    node: str
    src: str
    origin: Origin
    description: str


def _address(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def parse_destination(dst: str) -> tuple[str, int]:
    host, sep, port = dst.rpartition(":")
    if not sep or _address(host) is None or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TraceError(f"destination {dst!r}: give IP:PORT, e.g. 10.96.0.10:53")
    return host, int(port)


def _node_named(topology: Topology, name: str | None) -> Node | None:
    if name is None:
        return None
    node = next((n for n in topology.nodes if n.name == name), None)
    if node is None:
        raise TraceError(f"{name!r} is not a node of cluster {topology.name!r} (nodes: "
                         f"{', '.join(n.name for n in topology.nodes)})")
    return node


def _in(address: ipaddress.IPv4Address, cidr: str | None) -> bool:
    return cidr is not None and address in ipaddress.IPv4Network(cidr)


def _pod_origin(pod: PodInfo, node: Node | None, cluster_name: str) -> Source:
    if node is not None and node.name != pod.node:
        raise TraceError(f"pod {pod.namespace}/{pod.name} runs on {pod.node}: its packets meet that node first; "
                         f"trace with --node {pod.node} (or leave --node out)")
    if not pod.ip or not pod.node:
        raise TraceError(f"pod {pod.namespace}/{pod.name} has no address or node yet; wait until it runs")
    ns = names.pod_ns(cluster_name, pod.uid)
    return Source(pod.node, pod.ip, Origin.namespace(ns, via=names.NODE_BRIDGE),
                  f"pod {pod.namespace}/{pod.name} ({pod.ip})")


def _fabric_probe(topology: Topology, node: Node, address: ipaddress.IPv4Address, what: str) -> Source:
    net = topology.network
    if str(address) == net.host_address:
        raise TraceError(f"{address} is the host link's address (the machine's own way into the cluster); "
                         "pick another source address")
    if _in(address, net.node_cidr):
        prefixlen = ipaddress.IPv4Network(net.node_cidr).prefixlen
    elif _in(address, net.external_cidr):
        prefixlen = ipaddress.IPv4Network(net.external_cidr or "").prefixlen
    else:
        prefixlen = 32
    return Source(node.name, str(address), Origin.fabric_probe(prefixlen, gateway=node.address),
                  f"{what} {address} (probe namespace on the fabric)")


def resolve_source(topology: Topology, spec: str, *, node: str | None, ingress: str | None,
                   pods: PodDirectory) -> Source:
    """Where the probes for SOURCE start and which node they meet (see the module's docstring)."""
    if ingress is not None and ingress not in INGRESSES:
        raise TraceError(f"--ingress {ingress!r}: use one of {', '.join(INGRESSES)}")
    chosen = _node_named(topology, node)
    gateway = network.gateway_node(topology)
    cluster_name = topology.name
    member = topology.member(spec)
    address = _address(spec)

    if isinstance(member, Node):
        if chosen is None or chosen.name == member.name:
            return Source(member.name, member.address, Origin.local(), f"node {member.name} ({member.address})")
        return Source(chosen.name, member.address,
                      Origin.namespace(names.node_ns(cluster_name, member.name), via=names.NODE_UPLINK),
                      f"node {member.name} ({member.address}) over the fabric")
    if isinstance(member, ExternalHost):
        target = chosen or gateway
        if ingress == "node":
            return Source(target.name, member.address, Origin.local(),
                          f"{member.address} from {target.name} itself (--ingress node)")
        return Source(target.name, member.address,
                      Origin.namespace(names.external_ns(cluster_name, member.name), via=names.NODE_UPLINK),
                      f"external host {member.name} ({member.address})")
    if address is None:
        namespace, _, name = spec.rpartition("/")
        pod = pods.by_name(namespace or "default", name)
        if pod is None:
            raise TraceError(f"{spec!r} is not an address, node, external host or pod of cluster {cluster_name!r} "
                             "(pods are NAMESPACE/NAME, or NAME in namespace default)")
        return _pod_origin(pod, chosen, cluster_name)

    owner_of_range = next((n for n in topology.nodes if _in(address, n.pod_cidr)), None)
    owner_of_address = next((n for n in topology.nodes if str(address) in (n.address, n.pod_gateway)), None)
    host = next((h for h in topology.external_hosts if h.address == str(address)), None)

    if ingress == "node" or (ingress is None and address.is_loopback):
        sender = chosen or owner_of_address or owner_of_range
        if sender is None:
            raise TraceError(f"which node should send from {address}? say so with --node")
        return Source(sender.name, str(address), Origin.local(), f"{address} from node {sender.name} itself")
    if ingress is None and owner_of_address is not None:
        # One of a node's own addresses (eth0, or its gateway address on the pod bridge).
        if chosen is None or chosen.name == owner_of_address.name:
            return Source(owner_of_address.name, str(address), Origin.local(),
                          f"node {owner_of_address.name} itself ({address})")
        return Source(chosen.name, str(address),
                      Origin.namespace(names.node_ns(cluster_name, owner_of_address.name), via=names.NODE_UPLINK),
                      f"node {owner_of_address.name} ({address}) over the fabric")
    if host is not None and ingress in (None, "external"):
        return resolve_source(topology, host.name, node=node, ingress=None, pods=pods)

    if ingress == "pod" or (ingress is None and owner_of_range is not None):
        bridge_node = chosen or owner_of_range
        if bridge_node is None:
            raise TraceError(f"{address} is in no node's pod range: say which node's bridge to send from with --node")
        pod = pods.by_ip(str(address)) if _in(address, topology.network.cluster_cidr) else None
        if pod is not None and pod.node == bridge_node.name:
            return _pod_origin(pod, bridge_node, cluster_name)
        if ingress is None and bridge_node is not owner_of_range:
            # From a pod of another node: the packet reaches this node over the fabric.
            owner = owner_of_range.name if owner_of_range else "another node"
            return _fabric_probe(topology, bridge_node, address, f"a pod address of {owner}")
        if _in(address, bridge_node.pod_cidr):
            net = ipaddress.IPv4Network(bridge_node.pod_cidr)
            if address in (net.network_address, net.broadcast_address):
                raise TraceError(f"{address} is not a usable pod address of {bridge_node.name} "
                                 f"({bridge_node.pod_cidr})")
            return Source(bridge_node.name, str(address),
                          Origin.bridge_probe(net.prefixlen, gateway=bridge_node.pod_gateway),
                          f"{address} (probe namespace on {bridge_node.name}'s pod bridge)")
        return Source(bridge_node.name, str(address), Origin.bridge_probe(32, gateway=bridge_node.pod_gateway),
                      f"{address} (probe namespace on {bridge_node.name}'s pod bridge, --ingress pod)")

    return _fabric_probe(topology, chosen or gateway, address, "external address")


def _topology(cluster_name: str, root: Path | None = None) -> tuple[ClusterState, Topology]:
    state = ClusterState(cluster_name, root or state_root())
    topology = state.topology() if state.exists else None
    if topology is None:
        raise StateError(f"cluster {cluster_name!r} does not exist; bring it up with `kubesim up`")
    return state, topology


def run_trace(cluster_name: str, *, node: str | None, src: str, dst: str, proto: str = "tcp", count: int = 1,
              ingress: str | None = None, pcap: str | None = None, timeout: float = DEFAULT_TIMEOUT,
              pods: PodDirectory | None = None, root: Path | None = None) -> dict[str, Any]:
    """Trace COUNT probes from SRC to DST (IP:PORT) through a node of cluster CLUSTER_NAME; the result as
    netsim.trace's JSON plus "source" (how SRC was understood). Raises TraceError / StateError."""
    if proto not in PROTOCOLS:
        raise TraceError(f"--proto {proto!r}: use one of {', '.join(PROTOCOLS)}")
    state, topology = _topology(cluster_name, root)
    address, port = parse_destination(dst)
    directory = pods or ApiPods(components.kubeconfig_path(state))
    source = resolve_source(topology, src, node=node, ingress=ingress, pods=directory)
    request = TraceRequest(cluster=cluster_name, node=source.node, src=source.src, dst=address, dport=port,
                           origin=source.origin, proto=proto, count=count, timeout=timeout)
    result = trace(request, pcap=pcap).to_dict()
    result["source"] = source.description
    return result


# ---------------------------------------------------------------------------------------------------
# capture


def target_namespace(cluster_name: str, target: str, *, pods: PodDirectory | None = None,
                     root: Path | None = None) -> str:
    """The namespace of a node, an external host or a pod (NAMESPACE/NAME, or NAME in default)."""
    state, topology = _topology(cluster_name, root)
    if topology.member(target) is not None:
        return cluster.target_namespace(cluster_name, target, root=root)
    namespace, _, name = target.rpartition("/")
    pod = (pods or ApiPods(components.kubeconfig_path(state))).by_name(namespace or "default", name)
    if pod is None:
        known = ", ".join([n.name for n in topology.nodes] + [h.name for h in topology.external_hosts])
        raise TraceError(f"{target!r} is neither a node or external host ({known}) nor a pod of cluster "
                         f"{cluster_name!r}")
    ns = names.pod_ns(cluster_name, pod.uid)
    if not namespaces.exists(ns):
        raise TraceError(f"pod {pod.namespace}/{pod.name} has no sandbox (yet): is it running?")
    return ns


def capture_command(ns: str, *, iface: str = "any", write: str | None = None,
                    bpf: tuple[str, ...] = ()) -> list[str]:
    """tcpdump inside namespace NS: to a pcap file with WRITE, else decoded lines as they come."""
    argv = namespaces.command_in(ns, ["tcpdump", "-n", "-i", iface])
    argv += ["-U", "-w", write] if write else ["-l"]
    return argv + list(bpf)


def run_capture(cluster_name: str, target: str, *, iface: str | None = None, write: str | None = None,
                bpf: tuple[str, ...] = (), pods: PodDirectory | None = None) -> int:
    """Run tcpdump inside TARGET's namespace until it ends or Ctrl-C; returns its exit code. IFACE defaults
    to every interface of a node and to eth0 of a pod or external host."""
    ns = target_namespace(cluster_name, target, pods=pods)
    if iface is None:
        iface = "any" if ns.startswith(names.node_ns(cluster_name, "")) else names.POD_IFACE
    process = subprocess.Popen(capture_command(ns, iface=iface, write=write, bpf=bpf))
    try:
        return process.wait()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches tcpdump too; a signal sent to us alone is passed on. Either way it
        # prints its counts and finishes the file.
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


# ---------------------------------------------------------------------------------------------------
# Human output

_VERDICT_STYLES = {"accept": "green", "drop": "bold red", "reject": "bold red", "out": "green", "in": "cyan",
                   "leaves": "green", "translated": "yellow", "delivered locally": "green"}
_RESULT_STYLES = {"DNAT": "bold yellow", "LOCAL": "bold green", "NONE": "bold", "REJECT": "bold red",
                  "DROP": "bold red"}


def _verdict_style(verdict: str) -> str:
    head = verdict.split(" ")[0].rstrip(":")
    if head in ("jump", "goto"):
        return "cyan"
    if head == "reply":
        return "magenta"
    return _VERDICT_STYLES.get(verdict, _VERDICT_STYLES.get(head, ""))


def render_lines(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The human rendering as (text, rich style) lines: a summary, then one line per hop."""
    summary = f"{result['result']}"
    if result["endpoints"]:
        summary += " -> " + ", ".join(result["endpoints"])
    masq = f"masquerade: yes (source seen {result['source_seen']})" if result["masquerade"] else "masquerade: no"
    counts = ", ".join(f"{k} {v}" for k, v in result.get("results", {}).items())
    lines = [(summary, _RESULT_STYLES.get(result["result"], "")),
             (f"{result['probes']} {result.get('proto', '')} probe(s) from {result.get('source', result.get('src'))} "
              f"to {result.get('dst')} through {result.get('node')} ({result.get('ingress')} ingress): {counts}; "
              f"{masq}; {result.get('elapsed', 0):.2f} s", "dim")]
    if not str(result.get("nftrace", "")).startswith("nftables"):
        lines.append((f"rule trace: {result.get('nftrace')}", "yellow"))
    hops = result.get("hops", [])
    if hops:
        width_if = max(len(h["interface"]) for h in hops)
        width_hook = max(len(h["hook"]) for h in hops)
        width_chain = max(len(h["chain"]) for h in hops)
        lines.append(("first probe, hop by hop:", "dim"))
        for h in hops:
            what = h["rule"] if h["rule"] else h["packet"]
            if h["rule"] and h["packet"]:
                what += f"  [{h['packet']}]"
            text = (f"  {h['interface']:<{width_if}}  {h['hook']:<{width_hook}}  {h['chain']:<{width_chain}}  "
                    f"{what}  -> {h['verdict']}")
            lines.append((text.rstrip(), _verdict_style(h["verdict"])))
    pcap = result.get("pcap")
    if pcap:
        lines.append((f"capture written to {pcap}", "dim"))
    return lines


def render_human(result: dict[str, Any], console: Any) -> None:
    """Print RESULT on a rich Console (colours on a terminal, plain text otherwise)."""
    for text, style in render_lines(result):
        console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)
