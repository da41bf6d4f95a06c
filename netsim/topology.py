"""Topology files: YAML in, validated and fully resolved dataclasses out.

``load_topology(path)`` reads a file and returns a ``Topology`` where every default is filled in:
each node has an address and a pod CIDR, each external host an address. Every mistake found is
reported at once as a ``TopologyError`` naming the file, the field path and the fix; nothing is built
from a file that has any. The fields are documented in docs/topology.md.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from netaddr import AddrFormatError, IPAddress, IPNetwork, IPRange, IPSet

from netsim.errors import FaultInputError, Problem, TopologyError
from netsim.faults import Fault, check, fault_from_dict

API_VERSION = "kubesim/v1alpha1"
KIND = "Cluster"
MODES = ("host-gw", "vxlan")
PROXY_MODES = ("nftables", "iptables")
ROLES = ("control-plane", "worker")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
CONTROL_PLANE_TAINT_KEY = "node-role.kubernetes.io/control-plane"
MAX_CLUSTER_NAME = 32  # namespace names stay readable; interface names never carry it
# A node's pod CIDR holds the network address, the bridge's gateway, the broadcast address and pods:
# a /29 leaves five pods, the least that is still a node (docs/topology.md).
MAX_POD_CIDR_PREFIX = 29
MAX_NODE_CIDR_PREFIX = 29  # the host link and at least a few nodes and external hosts

DEFAULT_CAPACITY = {"cpu": "4", "memory": "8Gi", "pods": 110}

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CPU_QUANTITY = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class Capacity:
    cpu: str
    memory: str
    pods: int


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    address: str
    pod_cidr: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    capacity: Capacity = Capacity("4", "8Gi", 110)

    @property
    def pod_gateway(self) -> str:
        """The node's own address on its pod bridge: the first address of its pod CIDR."""
        return str(IPAddress(IPNetwork(self.pod_cidr).first + 1))


@dataclass(frozen=True)
class ExternalHost:
    name: str
    address: str


@dataclass(frozen=True)
class Network:
    node_cidr: str
    cluster_cidr: str
    pod_cidr_size: int
    service_cidr: str
    mode: str
    host_address: str
    node_port_range: tuple[int, int] = (30000, 32767)
    external_cidr: str | None = None


@dataclass(frozen=True)
class ClusterDNS:
    """Cluster DNS (CoreDNS's role): a coredns Deployment and the kube-dns Service, applied at `up`."""

    enabled: bool = True
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class ControllerManager:
    """kube-controller-manager's client rate limit, per controller (upstream's flags and defaults)."""

    kube_api_qps: float = 20.0  # --kube-api-qps; 0: no limit
    kube_api_burst: int = 30  # --kube-api-burst


@dataclass(frozen=True)
class Topology:
    name: str
    network: Network
    nodes: tuple[Node, ...]
    external_hosts: tuple[ExternalHost, ...] = ()
    load_balancer_pool: tuple[str, ...] = ()
    proxy_mode: str = "nftables"
    workloads: tuple[str, ...] = ()
    dns: ClusterDNS = ClusterDNS()
    faults: tuple[Fault, ...] = ()
    controller_manager: ControllerManager = ControllerManager()
    source: str = ""

    @property
    def control_plane(self) -> Node:
        return next(n for n in self.nodes if n.role == "control-plane")

    def member(self, name: str) -> Node | ExternalHost | None:
        members: list[Node | ExternalHost] = [*self.nodes, *self.external_hosts]
        return next((m for m in members if m.name == name), None)

    def with_name(self, name: str) -> Topology:
        problems: list[Problem] = []
        _check_cluster_name(name, "", problems)
        if problems:
            raise TopologyError("--name", problems)
        return _replace(self, name=name)

    def to_dict(self) -> dict[str, Any]:
        """The resolved topology in the file's own shape (round-trips through parse_topology)."""
        net = self.network
        network: dict[str, Any] = {
            "nodeCIDR": net.node_cidr,
            "clusterCIDR": net.cluster_cidr,
            "podCIDRSize": net.pod_cidr_size,
            "serviceCIDR": net.service_cidr,
            "serviceNodePortRange": f"{net.node_port_range[0]}-{net.node_port_range[1]}",
            "mode": net.mode,
            "hostAddress": net.host_address,
        }
        if net.external_cidr:
            network["externalCIDR"] = net.external_cidr
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "network": network,
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "address": n.address,
                    "podCIDR": n.pod_cidr,
                    "labels": dict(n.labels),
                    "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in n.taints],
                    "capacity": {"cpu": n.capacity.cpu, "memory": n.capacity.memory, "pods": n.capacity.pods},
                }
                for n in self.nodes
            ],
            "externalHosts": [{"name": h.name, "address": h.address} for h in self.external_hosts],
            "loadBalancerPool": list(self.load_balancer_pool),
            "proxy": {"mode": self.proxy_mode},
            "dns": {"enabled": self.dns.enabled, "clusterDomain": self.dns.cluster_domain},
            "controllerManager": {"kubeAPIQPS": self.controller_manager.kube_api_qps,
                                  "kubeAPIBurst": self.controller_manager.kube_api_burst},
            "workloads": list(self.workloads),
            "faults": [f.to_dict() for f in self.faults],
        }


def _replace(topology: Topology, **changes: Any) -> Topology:
    from dataclasses import replace

    return replace(topology, **changes)


# ---------------------------------------------------------------------------------------------------
# Loading


# A topology file is a few kilobytes of plain YAML. These bounds keep a hostile or mistaken file (a
# disk image, 5,000 nested brackets, an alias "billion laughs") from costing more than a refusal.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32  # the deepest real field (nodes[].taints[].key) is 4 levels down
MAX_ALIASES = 32
MAX_YAML_NODES = 100_000  # scalars and collections, counting what aliases repeat


class _Refused(yaml.MarkedYAMLError):
    """A bound of the topology loader was exceeded at a place in the file."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem=problem, problem_mark=mark)


class _TopologyLoader(yaml.SafeLoader):
    """SafeLoader with bounds: nesting depth and alias count are checked while composing, before any
    Python object exists."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name); a topology needs few or none, so write the "
                               "values out", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep; a topology's fields are at most a few "
                               "levels deep", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once aliases are expanded; computed once per distinct node."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [root]
    while stack:  # distinct nodes, parents before children (aliases make a DAG, never a cycle)
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = 0
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
    return sizes[id(root)]


def _duplicate_keys(root: yaml.Node) -> list[Problem]:
    """Every key that appears twice in one mapping, named by its field path and line."""
    found: list[tuple[int, Problem]] = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                where = f"{path}.{key.value}" if path else str(key.value)
                line = key.start_mark.line + 1
                if key.value in first_line:
                    found.append((line, Problem(where, f"line {line}: duplicate key {_shown(key.value)} (first at line "
                                                f"{first_line[key.value]}); a key may appear once, remove one")))
                else:
                    first_line[key.value] = line
                stack.append((value, where))
    return [problem for _, problem in sorted(found, key=lambda item: item[0])]


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    reason = getattr(exc, "problem", None) or str(exc)
    return Problem("", f"{where}{reason}" if isinstance(exc, _Refused) else f"{where}not valid YAML: {reason}")


def read_topology_text(path: Path) -> str:
    """The file's text, if it is UTF-8 and not larger than MAX_FILE_BYTES; TopologyError otherwise."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise TopologyError(source, [Problem("", "no such file; give the path of a topology YAML file")]) from None
    except OSError as exc:
        raise TopologyError(source, [Problem("", f"cannot be read: {exc.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise TopologyError(source, [Problem("", f"is larger than {MAX_FILE_BYTES // 1024} KiB; a topology file is a "
                                                 "few kilobytes of YAML, check that this is the right file")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise TopologyError(source, [Problem("", f"line {line}, column {column}: byte 0x{raw[exc.start]:02x} is not "
                                                 "UTF-8; save the file as UTF-8 text")]) from None


def load_yaml(text: str) -> tuple[Any, list[Problem]]:
    """Parse one YAML document within the loader's bounds: (data, duplicate-key problems). Raises
    yaml.YAMLError for text that is not YAML or exceeds a bound."""
    loader = _TopologyLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, []
        if _expanded_size(root) > MAX_YAML_NODES:
            raise _Refused(f"aliases expand it to more than {MAX_YAML_NODES} values; write the values out instead of "
                           "repeating anchors", root.start_mark)
        problems = _duplicate_keys(root)
        return loader.construct_document(root), problems
    finally:
        loader.dispose()


def load_topology(path: str | Path) -> Topology:
    path = Path(path)
    source = str(path)
    text = read_topology_text(path)
    try:
        data, problems = load_yaml(text)
    except yaml.YAMLError as exc:
        raise TopologyError(source, [_yaml_problem(exc)]) from None
    return parse_topology(data, source=source, base_dir=path.parent, problems=problems)


def parse_topology(data: Any, *, source: str = "", base_dir: Path | None = None,
                   problems: list[Problem] | None = None) -> Topology:
    """Validate and resolve DATA; PROBLEMS already found in the file (duplicate keys) are reported with
    the rest."""
    parser = _Parser(source, base_dir)
    parser.problems.extend(problems or [])
    topology = parser.parse(data)
    if parser.problems or topology is None:
        raise TopologyError(source, parser.problems)
    return topology


# ---------------------------------------------------------------------------------------------------
# Validation helpers


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlist = _SHORT.maxdict = 4
_SHORT.maxlevel = 2


def _shown(value: Any) -> str:
    """VALUE as a message quotes it: repr, cut short, so a huge value never makes a huge error."""
    return _SHORT.repr(value)


def cluster_name_problem(name: Any) -> str | None:
    """Why NAME cannot name a cluster (it names namespaces and a directory), or None if it can."""
    if not isinstance(name, str) or not _DNS1123_LABEL.fullmatch(name):
        return (f"{_shown(name)} is not a valid name: use lower-case letters, digits and '-', "
                "starting and ending with a letter or digit (a DNS-1123 label), e.g. 'kubesim'")
    if len(name) > MAX_CLUSTER_NAME:
        return f"{_shown(name)} is {len(name)} characters; use at most {MAX_CLUSTER_NAME}"
    return None


def _check_cluster_name(name: Any, path: str, problems: list[Problem]) -> None:
    problem = cluster_name_problem(name)
    if problem:
        problems.append(Problem(path, problem))


def _label_problem(key: str, value: Any) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return f"key {_shown(key)}: prefix must be a DNS subdomain such as 'example.com'"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return (f"key {_shown(key)}: name part must be 1-63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    if not isinstance(value, str):
        return f"value of {_shown(key)} must be a string; quote it, e.g. \"{_shown(value)}\""
    if value and (len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value)):
        return (f"value {_shown(value)} of {_shown(key)}: must be empty or 1-63 characters of letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit")
    return None


def _suggest(word: str, allowed: Iterator[str] | tuple[str, ...] | list[str]) -> str:
    match = difflib.get_close_matches(word, list(allowed), n=1)
    return f"; did you mean '{match[0]}'?" if match else ""


class _Parser:
    """Walks the raw YAML, collecting every problem instead of stopping at the first."""

    def __init__(self, source: str, base_dir: Path | None):
        self.source = source
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # -- generic shape checks ---------------------------------------------------------------------

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path or "(top level)", f"must be a mapping of fields, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.fail(where, f"unknown field{_suggest(str(key), allowed)} (allowed: {', '.join(allowed)})")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"must be a list, got {type(value).__name__}")
            return []
        return value

    def string(self, value: Any, path: str, default: str | None = None) -> str | None:
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {_shown(value)}")
            return None
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if value not in choices:
            self.fail(path, f"{_shown(value)} is not one of {', '.join(choices)}{_suggest(_shown(value), choices)}")
            return default
        return str(value)

    def network(self, value: Any, path: str, default: str | None) -> IPNetwork | None:
        text = self.string(value, path, default)
        if text is None:
            return None
        if "/" not in text:
            self.fail(path, f"{_shown(text)} is not a CIDR; write it as ADDRESS/PREFIX, e.g. 10.244.0.0/16")
            return None
        try:
            net = IPNetwork(text, version=4)
        except (AddrFormatError, ValueError):
            self.fail(path, f"{_shown(text)} is not a valid IPv4 CIDR; write it as ADDRESS/PREFIX, e.g. 10.244.0.0/16")
            return None
        if net.ip != net.network:
            self.fail(path, f"{_shown(text)} has host bits set; did you mean {net.cidr}?")
            return None
        return net

    def address(self, value: Any, path: str) -> IPAddress | None:
        if value is None:
            return None
        text = self.string(value, path)
        if text is None:
            return None
        try:
            return IPAddress(text, version=4)
        except (AddrFormatError, ValueError):
            self.fail(path, f"{_shown(text)} is not a valid IPv4 address, e.g. 172.18.0.10")
            return None

    def name(self, value: Any, path: str, what: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.fail(path, f"every {what} needs a name (a DNS-1123 label such as 'worker-1')")
            return None
        if len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
            self.fail(path, f"{_shown(value)} is not a valid {what} name: use at most 63 lower-case letters, digits "
                      "and '-', starting and ending with a letter or digit (a DNS-1123 label)")
            return None
        return value

    # -- the document -----------------------------------------------------------------------------

    def parse(self, data: Any) -> Topology | None:
        if data is None:
            self.fail("", "the file is empty; see docs/topology.md for the fields a topology has")
            return None
        top = self.mapping(
            data, "",
            ("apiVersion", "kind", "name", "network", "nodes", "externalHosts", "loadBalancerPool",
             "proxy", "dns", "controllerManager", "workloads", "faults"),
        )
        if not top:
            if not self.problems:
                self.fail("", "the file has no fields; see docs/topology.md")
            return None
        if top.get("apiVersion", API_VERSION) != API_VERSION:
            self.fail("apiVersion", f"{_shown(top['apiVersion'])} is not supported; use {API_VERSION}")
        if top.get("kind", KIND) != KIND:
            self.fail("kind", f"{_shown(top['kind'])} is not supported; use {KIND}")
        name = top.get("name", "kubesim")
        _check_cluster_name(name, "name", self.problems)

        net_raw = self.mapping(
            top.get("network"), "network",
            ("nodeCIDR", "clusterCIDR", "podCIDRSize", "serviceCIDR", "externalCIDR", "mode", "hostAddress",
             "serviceNodePortRange"),
        )
        node_cidr = self.network(net_raw.get("nodeCIDR"), "network.nodeCIDR", "172.18.0.0/16")
        cluster_cidr = self.network(net_raw.get("clusterCIDR"), "network.clusterCIDR", "10.244.0.0/16")
        service_cidr = self.network(net_raw.get("serviceCIDR"), "network.serviceCIDR", "10.96.0.0/16")
        external_cidr = self.network(net_raw.get("externalCIDR"), "network.externalCIDR", None)
        mode = self.choice(net_raw.get("mode"), "network.mode", MODES, "host-gw")
        pod_cidr_size = self.pod_cidr_size(net_raw.get("podCIDRSize"), cluster_cidr)
        port_range = self.port_range(net_raw.get("serviceNodePortRange"))
        self.check_overlaps(
            {"network.nodeCIDR": node_cidr, "network.clusterCIDR": cluster_cidr,
             "network.serviceCIDR": service_cidr, "network.externalCIDR": external_cidr}
        )
        if node_cidr is not None and node_cidr.prefixlen > MAX_NODE_CIDR_PREFIX:
            self.fail("network.nodeCIDR", f"{node_cidr} is too small; use a /{MAX_NODE_CIDR_PREFIX} or larger")
        if service_cidr is not None and service_cidr.prefixlen > 28:
            self.fail("network.serviceCIDR", f"{service_cidr} is too small; use a /28 or larger")
        host_address = self.host_address(net_raw.get("hostAddress"), node_cidr)

        proxy_raw = self.mapping(top.get("proxy"), "proxy", ("mode",))
        proxy_mode = self.choice(proxy_raw.get("mode"), "proxy.mode", PROXY_MODES, "nftables")

        pool = self.pool(top.get("loadBalancerPool"), cluster_cidr, service_cidr)
        workloads = self.workloads(top.get("workloads"))
        dns = self.cluster_dns(top.get("dns"))
        controller_manager = self.controller_manager(top.get("controllerManager"))

        raw_nodes = self.sequence(top.get("nodes"), "nodes")
        raw_hosts = self.sequence(top.get("externalHosts"), "externalHosts")
        if not raw_nodes and "nodes" not in [p.path.split("[")[0] for p in self.problems]:
            self.fail("nodes", "a cluster needs at least one node; add one with role: control-plane")
        # Members are checked even when the network has mistakes, so that every mistake is listed at
        # once; the checks that need a range that is wrong are skipped, and nothing is allocated.
        reserved = IPSet(IPRange(*r.split("-")) if "-" in r else IPNetwork(r) for r in pool)
        if node_cidr is not None:
            reserved |= IPSet([node_cidr.network, node_cidr.broadcast])
        if host_address is not None:
            reserved.add(host_address)
        nodes = self.nodes(raw_nodes, node_cidr, cluster_cidr, pod_cidr_size, reserved)
        hosts = self.external_hosts(raw_hosts, node_cidr, external_cidr, reserved, nodes)
        raw_faults = self.sequence(top.get("faults"), "faults")
        if self.problems or nodes is None or hosts is None:
            return None
        faults = self.faults(raw_faults, [n.name for n in nodes] + [h.name for h in hosts])
        if self.problems:
            return None
        assert node_cidr is not None and cluster_cidr is not None and service_cidr is not None
        assert host_address is not None and pod_cidr_size is not None and port_range is not None
        return Topology(
            name=name,
            network=Network(
                node_cidr=str(node_cidr), cluster_cidr=str(cluster_cidr), pod_cidr_size=pod_cidr_size,
                service_cidr=str(service_cidr), mode=mode, host_address=str(host_address),
                node_port_range=port_range, external_cidr=str(external_cidr) if external_cidr else None,
            ),
            nodes=tuple(nodes),
            external_hosts=tuple(hosts),
            load_balancer_pool=tuple(pool),
            proxy_mode=proxy_mode,
            workloads=tuple(workloads),
            dns=dns,
            faults=tuple(faults),
            controller_manager=controller_manager,
            source=self.source,
        )

    def pod_cidr_size(self, value: Any, cluster_cidr: IPNetwork | None) -> int | None:
        if value is None:
            size = 24
        elif isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= MAX_POD_CIDR_PREFIX:
            self.fail("network.podCIDRSize",
                      f"{_shown(value)} must be a prefix length between 8 and {MAX_POD_CIDR_PREFIX}, e.g. 24")
            return None
        else:
            size = value
        if cluster_cidr is not None and size < cluster_cidr.prefixlen:
            self.fail("network.podCIDRSize",
                      f"/{size} per node does not fit in clusterCIDR {cluster_cidr}; use {cluster_cidr.prefixlen} "
                      "or more")
            return None
        return size

    def port_range(self, value: Any) -> tuple[int, int] | None:
        if value is None:
            return (30000, 32767)
        match = re.fullmatch(r"(\d+)-(\d+)", str(value))
        if not match or not 1 <= int(match[1]) <= int(match[2]) <= 65535:
            self.fail("network.serviceNodePortRange",
                      f"{_shown(value)} must be FIRST-LAST with 1 <= FIRST <= LAST <= 65535, e.g. 30000-32767")
            return None
        return (int(match[1]), int(match[2]))

    def check_overlaps(self, nets: dict[str, IPNetwork | None]) -> None:
        items = [(path, net) for path, net in nets.items() if net is not None]
        for i, (path_a, a) in enumerate(items):
            for path_b, b in items[i + 1:]:
                if a.first <= b.last and b.first <= a.last:
                    self.fail(path_b, f"{b} overlaps {path_a} {a}; the ranges must be disjoint")

    def host_address(self, value: Any, node_cidr: IPNetwork | None) -> IPAddress | None:
        if node_cidr is None:
            return None
        if value is None:
            return IPAddress(node_cidr.first + 1)
        address = self.address(value, "network.hostAddress")
        if address is not None and not self.usable(address, node_cidr):
            self.fail("network.hostAddress", f"{address} is not a usable address of nodeCIDR {node_cidr}")
        return address

    @staticmethod
    def usable(address: IPAddress, net: IPNetwork) -> bool:
        return address in net and address not in (net.network, net.broadcast)

    def pool(self, value: Any, cluster_cidr: IPNetwork | None, service_cidr: IPNetwork | None) -> list[str]:
        entries: list[str] = []
        seen = IPSet()
        for i, item in enumerate(self.sequence(value, "loadBalancerPool")):
            path = f"loadBalancerPool[{i}]"
            text = self.string(item, path)
            if text is None:
                continue
            try:
                if "-" in text:
                    first, last = (IPAddress(part.strip(), version=4) for part in text.split("-", 1))
                    if first > last:
                        raise ValueError
                    block = IPSet(IPRange(first, last))
                    entries.append(f"{first}-{last}")
                else:
                    net = IPNetwork(text, version=4)
                    block = IPSet([net])
                    entries.append(str(net.cidr))
            except (AddrFormatError, ValueError):
                self.fail(path, f"{_shown(text)} is neither a CIDR (172.18.255.0/24) nor a range "
                          "(172.18.255.200-172.18.255.250)")
                continue
            for label, net in (("clusterCIDR", cluster_cidr), ("serviceCIDR", service_cidr)):
                if net is not None and block & IPSet([net]):
                    self.fail(path, f"{text} overlaps {label} {net}; load-balancer IPs must lie outside it")
            if block & seen:
                self.fail(path, f"{text} overlaps an earlier entry of loadBalancerPool")
            seen |= block
        return entries

    def cluster_dns(self, value: Any) -> ClusterDNS:
        raw = self.mapping(value, "dns", ("enabled", "clusterDomain"))
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail("dns.enabled", f"{_shown(enabled)} must be true or false")
            enabled = True
        domain = raw.get("clusterDomain", "cluster.local")
        if not isinstance(domain, str) or len(domain) > 253 or not _DNS1123_SUBDOMAIN.match(domain):
            self.fail("dns.clusterDomain", f"{_shown(domain)} must be a lower-case DNS subdomain such as "
                      "'cluster.local'")
            domain = "cluster.local"
        return ClusterDNS(enabled=enabled, cluster_domain=domain)

    def controller_manager(self, value: Any) -> ControllerManager:
        raw = self.mapping(value, "controllerManager", ("kubeAPIQPS", "kubeAPIBurst"))
        default = ControllerManager()
        qps = raw.get("kubeAPIQPS", default.kube_api_qps)
        if isinstance(qps, bool) or not isinstance(qps, (int, float)) or not 0 <= qps <= 10_000:
            self.fail("controllerManager.kubeAPIQPS", f"{_shown(qps)} must be a number of requests a second "
                      "from 0 (no limit) to 10000; upstream's default is 20")
            qps = default.kube_api_qps
        burst = raw.get("kubeAPIBurst", default.kube_api_burst)
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 10_000:
            self.fail("controllerManager.kubeAPIBurst", f"{_shown(burst)} must be a whole number of requests "
                      "from 1 to 10000; upstream's default is 30")
            burst = default.kube_api_burst
        return ControllerManager(kube_api_qps=float(qps), kube_api_burst=burst)

    def workloads(self, value: Any) -> list[str]:
        found: list[str] = []
        for i, item in enumerate(self.sequence(value, "workloads")):
            path = f"workloads[{i}]"
            text = self.string(item, path)
            if text is None:
                continue
            resolved = Path(text) if Path(text).is_absolute() or self.base_dir is None else self.base_dir / text
            if not resolved.is_file():
                self.fail(path, f"manifest {_shown(text)} does not exist (paths are relative to the topology file)")
                continue
            found.append(str(resolved))
        return found

    def faults(self, raw_faults: list[Any], members: list[str]) -> list[Fault]:
        """Faults injected at `up`: each checked on its own (its fields, its members), then all together
        (one qdisc per node), a later fault of the same kind and members replacing an earlier one."""
        found: list[Fault] = []
        for i, raw in enumerate(raw_faults):
            path = f"faults[{i}]"
            try:
                fault = fault_from_dict(raw)
                check([fault], members)
                check([*(f for f in found if f.slot != fault.slot), fault], members)
            except FaultInputError as exc:
                self.fail(f"{path}.{exc.field}" if exc.field else path, str(exc))
                continue
            found = [f for f in found if f.slot != fault.slot] + [fault]
        return found

    # -- members ----------------------------------------------------------------------------------

    def nodes(self, raw_nodes: list[Any], node_cidr: IPNetwork | None, cluster_cidr: IPNetwork | None,
              size: int | None, reserved: IPSet) -> list[Node] | None:
        parsed: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        for i, raw in enumerate(raw_nodes):
            path = f"nodes[{i}]"
            node = self.mapping(raw, path, ("name", "role", "address", "podCIDR", "labels", "taints", "capacity"))
            if not node and not isinstance(raw, dict):
                continue
            name = self.name(node.get("name"), f"{path}.name", "node")
            if name is not None:
                if name in names:
                    self.fail(f"{path}.name",
                              f"{_shown(name)} is already the name of {names[name]}; names must be unique")
                names[name] = path
            address = self.address(node.get("address"), f"{path}.address")
            if address is not None and node_cidr is not None:
                if not self.usable(address, node_cidr):
                    self.fail(f"{path}.address", f"{address} is outside nodeCIDR {node_cidr}; pick an address "
                              "inside it or leave the field out to have one assigned")
                elif address in reserved:
                    self.fail(f"{path}.address", f"{address} is reserved (host link, load-balancer pool, network "
                              "or broadcast address); pick another")
            pod_cidr = self.network(node.get("podCIDR"), f"{path}.podCIDR", None)
            if pod_cidr is not None and pod_cidr.prefixlen > MAX_POD_CIDR_PREFIX:
                self.fail(f"{path}.podCIDR", f"{pod_cidr} is too small for a node's pods; use a "
                          f"/{MAX_POD_CIDR_PREFIX} or larger")
            elif pod_cidr is not None and cluster_cidr is not None and pod_cidr not in cluster_cidr:
                self.fail(f"{path}.podCIDR", f"{pod_cidr} is outside clusterCIDR {cluster_cidr}; pick a range "
                          "inside it or leave the field out to have one assigned")
            parsed.append({
                "name": name, "path": path, "address": address, "pod_cidr": pod_cidr,
                "role": self.choice(node.get("role"), f"{path}.role", ROLES, "worker"),
                "labels": self.labels(node.get("labels"), f"{path}.labels"),
                "taints": self.taints(node.get("taints"), f"{path}.taints"),
                "capacity": self.capacity(node.get("capacity"), f"{path}.capacity"),
            })
        roles = [p["role"] for p in parsed]
        if raw_nodes and roles.count("control-plane") != 1:  # no nodes at all is reported once, by parse()
            self.fail("nodes", f"exactly one node must have role: control-plane (found {roles.count('control-plane')})")
        self.check_unique_addresses([(p["path"], p["address"]) for p in parsed])
        pod_cidrs = [(p["path"], p["pod_cidr"]) for p in parsed if p["pod_cidr"] is not None]
        for i, (path_a, a) in enumerate(pod_cidrs):
            for path_b, b in pod_cidrs[i + 1:]:
                if a.first <= b.last and b.first <= a.last:
                    self.fail(f"{path_b}.podCIDR", f"{b} overlaps {path_a}.podCIDR {a}")
        if self.problems or node_cidr is None or cluster_cidr is None or size is None:
            return None

        taken_addresses = reserved | IPSet(p["address"] for p in parsed if p["address"] is not None)
        free_addresses = self.free_addresses(node_cidr, taken_addresses)
        taken_cidrs = IPSet(p["pod_cidr"] for p in parsed if p["pod_cidr"] is not None)
        free_cidrs = (c for c in cluster_cidr.subnet(size) if not IPSet([c]) & taken_cidrs)
        has_workers = "worker" in roles
        nodes = []
        for p in parsed:
            address = p["address"] or next(free_addresses, None)
            pod_cidr = p["pod_cidr"] or next(free_cidrs, None)
            if address is None:
                self.fail(f"{p['path']}.address", f"nodeCIDR {node_cidr} has no free address left; use a larger one")
                return None
            if pod_cidr is None:
                self.fail(f"{p['path']}.podCIDR", f"clusterCIDR {cluster_cidr} has no free /{size} left; use a larger "
                          "clusterCIDR or a longer network.podCIDRSize")
                return None
            taints = p["taints"]
            if taints is None and p["role"] == "control-plane" and has_workers:
                # kubeadm taints the control plane only when there are workers to run the pods.
                taints = (Taint(CONTROL_PLANE_TAINT_KEY, "NoSchedule"),)
            nodes.append(Node(name=p["name"], role=p["role"], address=str(address), pod_cidr=str(pod_cidr),
                              labels=p["labels"], taints=taints or (), capacity=p["capacity"]))
        return nodes

    def external_hosts(self, raw_hosts: list[Any], node_cidr: IPNetwork | None, external_cidr: IPNetwork | None,
                       reserved: IPSet, nodes: list[Node] | None) -> list[ExternalHost] | None:
        names = {n.name: "a node" for n in nodes or []}
        parsed: list[tuple[str, str | None, IPAddress | None]] = []
        for i, raw in enumerate(raw_hosts):
            path = f"externalHosts[{i}]"
            host = self.mapping(raw, path, ("name", "address"))
            if not host and not isinstance(raw, dict):
                continue
            name = self.name(host.get("name"), f"{path}.name", "external host")
            if name is not None:
                if name in names:
                    self.fail(f"{path}.name",
                              f"{_shown(name)} is already the name of {names[name]}; names must be unique")
                names[name] = path
            address = self.address(host.get("address"), f"{path}.address")
            if address is not None and node_cidr is not None:
                inside = [net for net in (node_cidr, external_cidr) if net is not None and self.usable(address, net)]
                if not inside:
                    hint = f" or externalCIDR {external_cidr}" if external_cidr else " (or set network.externalCIDR)"
                    self.fail(f"{path}.address", f"{address} is outside nodeCIDR {node_cidr}{hint}")
                elif address in reserved:
                    self.fail(f"{path}.address", f"{address} is reserved (host link, load-balancer pool, network "
                              "or broadcast address); pick another")
            parsed.append((path, name, address))
        node_addresses = [(f"node {n.name}", IPAddress(n.address)) for n in nodes or []]
        self.check_unique_addresses(node_addresses + [(p, a) for p, _, a in parsed])
        if self.problems or nodes is None:
            return None
        home = external_cidr or node_cidr
        assert home is not None  # nodes were resolved, so nodeCIDR is valid
        taken = reserved | IPSet(a for _, a in node_addresses) | IPSet(a for _, _, a in parsed if a is not None)
        free = self.free_addresses(home, taken)
        hosts = []
        for path, name, address in parsed:
            address = address or next(free, None)
            if address is None:
                self.fail(f"{path}.address", f"{home} has no free address left")
                return None
            assert name is not None
            hosts.append(ExternalHost(name=name, address=str(address)))
        return hosts

    def check_unique_addresses(self, items: list[tuple[str, IPAddress | None]]) -> None:
        seen: dict[IPAddress, str] = {}
        for path, address in items:
            if address is None:
                continue
            if address in seen:
                self.fail(f"{path}.address" if path.startswith(("nodes", "external")) else path,
                          f"{address} is already the address of {seen[address]}; addresses must be unique")
            seen.setdefault(address, path)

    @staticmethod
    def free_addresses(net: IPNetwork, taken: IPSet) -> Iterator[IPAddress]:
        return (IPAddress(v) for v in range(net.first + 1, net.last) if IPAddress(v) not in taken)

    def labels(self, value: Any, path: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping of label keys to values")
            return {}
        labels: dict[str, str] = {}
        for key, val in value.items():
            problem = _label_problem(str(key), val)
            if problem:
                self.fail(f"{path}.{key}", problem)
            else:
                labels[str(key)] = val
        return labels

    def taints(self, value: Any, path: str) -> tuple[Taint, ...] | None:
        if value is None:
            return None
        taints = []
        for i, raw in enumerate(self.sequence(value, path)):
            item_path = f"{path}[{i}]"
            taint = self.mapping(raw, item_path, ("key", "value", "effect"))
            key = taint.get("key")
            if not isinstance(key, str) or _label_problem(key, "") is not None:
                self.fail(f"{item_path}.key",
                          f"{_shown(key)} is not a valid taint key (a label key such as 'dedicated')")
                continue
            val = taint.get("value", "")
            problem = _label_problem(key, val)
            if problem:
                self.fail(f"{item_path}.value", problem)
                continue
            effect = self.choice(taint.get("effect"), f"{item_path}.effect", TAINT_EFFECTS, "")
            if not effect:
                if taint.get("effect") is None:
                    self.fail(f"{item_path}.effect", f"is required; one of {', '.join(TAINT_EFFECTS)}")
                continue
            taints.append(Taint(key=key, value=val, effect=effect))
        return tuple(taints)

    def capacity(self, value: Any, path: str) -> Capacity:
        raw = self.mapping(value, path, ("cpu", "memory", "pods"))
        cpu = raw.get("cpu", DEFAULT_CAPACITY["cpu"])
        memory = raw.get("memory", DEFAULT_CAPACITY["memory"])
        pods = raw.get("pods", DEFAULT_CAPACITY["pods"])
        checks: list[tuple[str, Any, Callable[[Any], bool], str]] = [
            ("cpu", cpu, lambda v: bool(_CPU_QUANTITY.fullmatch(str(v))) and str(v) not in ("0", "0m"),
             "a positive CPU quantity such as 4 or 1500m"),
            ("memory", memory, lambda v: bool(_MEMORY_QUANTITY.fullmatch(str(v))), "a memory quantity such as 8Gi"),
            ("pods", pods, lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
             "a positive whole number such as 110"),
        ]
        for key, val, ok, hint in checks:
            if not ok(val):
                self.fail(f"{path}.{key}", f"{_shown(val)} is not {hint}")
        return Capacity(cpu=str(cpu), memory=str(memory), pods=pods if isinstance(pods, int) else 0)
