"""From cluster facts (a plain dict) to a graph model: what `kubesim graph` draws, as data.

Pure: no I/O, no clock, no kernel. The facts are what kubesim.graph.facts gathers from a running
cluster (its recorded topology and the API's pods, Services and EndpointSlices), or a dict a test
writes by hand:

    {"cluster": "kubesim", "mode": "host-gw" | "vxlan",
     "network": {"nodeCIDR": ..., "serviceCIDR": ..., "hostAddress": ..., "hostLink": ...},   # optional
     "nodes": [{"name", "role", "address", "podCIDR", "present"}],     # present: its namespace exists
     "externalHosts": [{"name", "address"}],                                                  # optional
     "pods": [{"namespace", "name", "node", "ip", "uid", "hostNetwork", "phase", "sandbox"}], # optional
     "services": [{"namespace", "name", "type", "clusterIP", "externalName",
                   "ports": [{"port", "protocol", "targetPort"}],
                   "endpoints": [{"ip", "ready", "pod": "NAMESPACE/NAME" | None}]}],          # optional
     "notes": ["..."]}                                                                        # optional

The links are the ones netsim builds (netsim/network.py, netsim/sandbox.py): every node's and external
host's eth0 is a veth into the fabric bridge br0, the root namespace reaches br0 through the host link,
a node's pods hang off its cbr0 through vethXXXXXXXX, and in vxlan mode every pair of nodes is joined
by vxlan0 tunnels. Services point at their endpoints: a pod, a node (the apiserver's `kubernetes`
Service), or a bare address.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kubesim.errors import GraphError
from netsim import names
from netsim.network import VXLAN_PORT, VXLAN_VNI

# Vertex kinds, in the order a legend lists them.
KINDS = ("host", "fabric", "external", "node", "bridge", "vxlan", "pod", "service", "address")
# Edge kinds: a veth pair, a node's own forwarding onto its pod bridge, a VXLAN tunnel, a pod in the
# node's network namespace (hostNetwork), a Service's endpoint.
EDGE_KINDS = ("veth", "forward", "vxlan", "host-network", "endpoint")


@dataclass(frozen=True)
class Vertex:
    id: str
    kind: str
    label: str
    details: tuple[str, ...] = ()
    group: str | None = None  # the id of the Group it is drawn in


@dataclass(frozen=True)
class Edge:
    a: str
    b: str
    kind: str
    label: str = ""


@dataclass(frozen=True)
class Group:
    id: str
    kind: str  # node | services | unscheduled
    label: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Graph:
    title: str
    groups: tuple[Group, ...]
    vertices: tuple[Vertex, ...]
    edges: tuple[Edge, ...]
    notes: tuple[str, ...] = ()

    def vertex(self, vertex_id: str) -> Vertex:
        return next(v for v in self.vertices if v.id == vertex_id)

    def in_group(self, group_id: str | None) -> list[Vertex]:
        return [v for v in self.vertices if v.group == group_id]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------
# Reading the facts: every field checked, so a malformed dict is an error naming the field.


def _get(obj: Any, key: str, where: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    if not isinstance(obj, dict):
        raise GraphError(f"graph facts: {where} must be a mapping, not {type(obj).__name__}")
    value = obj.get(key)
    if value is None:
        if required:
            raise GraphError(f"graph facts: {where}.{key} is missing; give it")
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise GraphError(f"graph facts: {where}.{key} must be a {wanted}, not {type(value).__name__} "
                         f"({value!r})")
    return value


def _items(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    return list(_get(obj, key, where, list, required=False) or [])


def _text(obj: Any, key: str, where: str, *, required: bool = True) -> str:
    value = _get(obj, key, where, (str, int), required=required)
    return "" if value is None else str(value)


# ---------------------------------------------------------------------------------------------------


def build(facts: dict[str, Any]) -> Graph:
    """The graph of the cluster FACTS describe; GraphError names a field that is missing or malformed."""
    cluster = _text(facts, "cluster", "facts")
    mode = _text(facts, "mode", "facts", required=False) or "host-gw"
    network = _get(facts, "network", "facts", dict, required=False) or {}
    vertices: list[Vertex] = []
    edges: list[Edge] = []
    groups: list[Group] = []
    notes = [str(n) for n in _items(facts, "notes", "facts")]

    fabric_details = [f"nodes {network['nodeCIDR']}"] if network.get("nodeCIDR") else []
    vertices.append(Vertex("fabric", "fabric", f"fabric {names.FABRIC_BRIDGE}", tuple(fabric_details)))
    host_link = _text(network, "hostLink", "facts.network", required=False)
    if host_link:
        address = _text(network, "hostAddress", "facts.network", required=False)
        vertices.append(Vertex("host", "host", "root namespace",
                               tuple(d for d in (f"{host_link} {address}".strip(),) if d)))
        edges.append(Edge("host", "fabric", "veth", f"{host_link} ↔ {names.FABRIC_HOST_PORT}"))

    node_ids: dict[str, str] = {}
    address_owner: dict[str, str] = {}  # node and external host addresses -> vertex id
    for i, node in enumerate(_items(facts, "nodes", "facts")):
        where = f"facts.nodes[{i}]"
        name = _text(node, "name", where)
        if name in node_ids:
            raise GraphError(f"graph facts: {where}.name {name!r} names a node twice; node names are unique")
        role = _text(node, "role", where, required=False) or "worker"
        address = _text(node, "address", where, required=False)
        pod_cidr = _text(node, "podCIDR", where, required=False)
        group = f"group:node/{name}"
        groups.append(Group(group, "node", f"node {name}", (role,)))
        node_id = node_ids[name] = f"node:{name}"
        if address:
            address_owner[address] = node_id
        node_details = [f"{names.NODE_UPLINK} {address}"] if address else []
        if _get(node, "present", where, bool, required=False) is False:
            node_details.append("NAMESPACE MISSING")
        vertices.append(Vertex(node_id, "node", name, tuple(node_details), group))
        # Fabric first: renderers that rank by edge direction (Graphviz, Mermaid) then draw the switch
        # above what hangs off it.
        edges.append(Edge("fabric", node_id, "veth", f"{names.fabric_port(name)} ↔ {names.NODE_UPLINK}"))
        bridge_details = [f"pods {pod_cidr}"] if pod_cidr else []
        vertices.append(Vertex(f"bridge:{name}", "bridge", names.NODE_BRIDGE, tuple(bridge_details), group))
        edges.append(Edge(node_id, f"bridge:{name}", "forward", "ip_forward"))
        if mode == "vxlan":
            vertices.append(Vertex(f"vxlan:{name}", "vxlan", names.NODE_VXLAN,
                                   (f"VNI {VXLAN_VNI}, udp/{VXLAN_PORT}",), group))
            edges.append(Edge(node_id, f"vxlan:{name}", "forward", f"over {names.NODE_UPLINK}"))
    if mode == "vxlan":
        ordered = list(node_ids)
        for i, a in enumerate(ordered):
            edges += [Edge(f"vxlan:{a}", f"vxlan:{b}", "vxlan", f"VXLAN VNI {VXLAN_VNI}") for b in ordered[i + 1:]]
    elif len(node_ids) > 1:
        notes.append("host-gw: each node routes the other nodes' pod CIDRs via their addresses on the fabric")

    for i, host in enumerate(_items(facts, "externalHosts", "facts")):
        where = f"facts.externalHosts[{i}]"
        name = _text(host, "name", where)
        address = _text(host, "address", where, required=False)
        if address:
            address_owner[address] = f"external:{name}"
        vertices.append(Vertex(f"external:{name}", "external", name,
                               tuple(d for d in ("external host", f"{names.NODE_UPLINK} {address}".strip()) if d)))
        edges.append(Edge("fabric", f"external:{name}", "veth", f"{names.fabric_port(name)} ↔ {names.NODE_UPLINK}"))

    pod_ids: dict[str, str] = {}
    pod_by_ip: dict[str, str] = {}
    unscheduled = "group:unscheduled"
    for i, pod in enumerate(_items(facts, "pods", "facts")):
        where = f"facts.pods[{i}]"
        namespace = _text(pod, "namespace", where, required=False) or "default"
        name = _text(pod, "name", where)
        key = f"{namespace}/{name}"
        if key in pod_ids:
            raise GraphError(f"graph facts: {where} is pod {key} again; a pod's namespace/name is unique")
        node = _text(pod, "node", where, required=False)
        if node and node not in node_ids:
            raise GraphError(f"graph facts: {where}.node {node!r} (pod {key}) is not one of the nodes "
                             f"({', '.join(node_ids) or 'none'})")
        ip = _text(pod, "ip", where, required=False)
        uid = _text(pod, "uid", where, required=False)
        host_network = bool(_get(pod, "hostNetwork", where, bool, required=False))
        phase = _text(pod, "phase", where, required=False)
        sandbox = _get(pod, "sandbox", where, bool, required=False)
        pod_id = pod_ids[key] = f"pod:{key}"
        if ip and not host_network:
            pod_by_ip[ip] = pod_id
        details = [namespace, ip or "no IP yet"]
        if phase and phase != "Running":
            details.append(phase)
        if sandbox is False:
            details.append("NO SANDBOX")
        if not node and not any(g.id == unscheduled for g in groups):
            groups.append(Group(unscheduled, "unscheduled", "not scheduled"))
        vertices.append(Vertex(pod_id, "pod", name, tuple(details), f"group:node/{node}" if node else unscheduled))
        if node and host_network:
            edges.append(Edge(node_ids[node], pod_id, "host-network", "hostNetwork"))
        elif node and ip and sandbox is not False:
            veth = names.pod_host_veth(uid) if uid else "veth"
            edges.append(Edge(f"bridge:{node}", pod_id, "veth", f"{veth} ↔ {names.POD_IFACE}"))

    services = _items(facts, "services", "facts")
    if services:
        groups.append(Group("group:services", "services", "Services"))
    addresses: set[str] = set()
    service_ids: set[str] = set()
    for i, svc in enumerate(services):
        where = f"facts.services[{i}]"
        namespace = _text(svc, "namespace", where, required=False) or "default"
        name = _text(svc, "name", where)
        svc_id = f"service:{namespace}/{name}"
        if svc_id in service_ids:
            raise GraphError(f"graph facts: {where} is Service {namespace}/{name} again; its namespace/name is unique")
        service_ids.add(svc_id)
        kind = _text(svc, "type", where, required=False) or "ClusterIP"
        cluster_ip = _text(svc, "clusterIP", where, required=False)
        ports = [_port(p, f"{where}.ports[{j}]") for j, p in enumerate(_items(svc, "ports", where))]
        if kind == "ExternalName":
            address = f"→ {_text(svc, 'externalName', where, required=False) or '?'}"
        else:
            address = "headless" if cluster_ip == "None" else cluster_ip or "no ClusterIP"
        details = [namespace, f"{kind} {address}"]
        if ports:
            details.append(" ".join(ports))
        vertices.append(Vertex(svc_id, "service", name, tuple(details), "group:services"))
        for j, endpoint in enumerate(_items(svc, "endpoints", where)):
            e_where = f"{where}.endpoints[{j}]"
            ip = _text(endpoint, "ip", e_where)
            ready = _get(endpoint, "ready", e_where, bool, required=False)
            pod_ref = _text(endpoint, "pod", e_where, required=False)
            target = pod_ids.get(pod_ref) or pod_by_ip.get(ip) or address_owner.get(ip)
            if target is None:
                target = f"address:{ip}"
                if ip not in addresses:
                    addresses.add(ip)
                    vertices.append(Vertex(target, "address", ip, ("endpoint address",), "group:services"))
            edges.append(Edge(svc_id, target, "endpoint", ip if ready is not False else f"{ip} (not ready)"))

    return Graph(f"kubesim cluster {cluster} ({mode})", tuple(groups), tuple(vertices), tuple(edges), tuple(notes))


def _port(port: Any, where: str) -> str:
    number = _text(port, "port", where)
    protocol = _text(port, "protocol", where, required=False) or "TCP"
    target = _text(port, "targetPort", where, required=False)
    return f"{number}/{protocol}" + (f"→{target}" if target and target != number else "")
