"""Kubernetes API objects (plain JSON dicts) -> the agent's immutable view of them.

The apiserver validates NetworkPolicies, so what reaches the agent is normally well formed. When it is
not (another apiserver, an older object, a selector this parser refuses), the broken part matches
nothing and says why in `problems`: a peer or port the agent cannot understand never opens anything,
and the trace shows the reason instead of a silent drop. This is the "matches nothing" upstream's
controllers give a selector that does not parse.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from control.api import NOTHING, Selector, SelectorError, label_selector_as_selector
from control.client import ParseCache as SharedParseCache
from netpol.errors import ObjectError

Protocol = Literal["TCP", "UDP", "SCTP"]
PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")
Direction = Literal["Ingress", "Egress"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Set on every Namespace by the apiserver since Kubernetes 1.22, so policies can select by name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

JSON = Mapping[str, Any]


@dataclass(frozen=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def contains(self, ip: IPAddress) -> bool:
        if ip.version != self.cidr.version or ip not in self.cidr:
            return False
        return not any(ip in hole for hole in self.excepts)

    def __str__(self) -> str:
        if not self.excepts:
            return str(self.cidr)
        return f"{self.cidr} except {', '.join(str(e) for e in self.excepts)}"


@dataclass(frozen=True)
class Peer:
    """One entry of `from` / `to`. podSelector and namespaceSelector together are an AND.

    A peer with no selector and no ipBlock (only possible from a broken object) matches nothing.
    """

    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IPBlock | None = None
    broken: str = ""  # why this peer matches nothing, when it could not be understood

    def __str__(self) -> str:
        if self.broken:
            return f"<matches nothing: {self.broken}>"
        if self.ip_block is not None:
            return f"ipBlock {self.ip_block}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaceSelector {{{self.namespace_selector}}}")
        if self.pod_selector is not None:
            parts.append(f"podSelector {{{self.pod_selector}}}")
        return " and ".join(parts)


@dataclass(frozen=True)
class PortRule:
    """One entry of `ports`. `port` None means every port of the protocol; a str is a named port."""

    protocol: Protocol = "TCP"
    port: int | str | None = None
    end_port: int | None = None
    broken: str = ""

    def matches(self, protocol: str, port: int, named_ports: Mapping[tuple[str, str], int]) -> bool:
        if self.broken or protocol != self.protocol:
            return False
        if self.port is None:
            return True
        if isinstance(self.port, str):
            # A named port is resolved against the destination pod's own container ports.
            return named_ports.get((self.port, protocol)) == port
        if self.end_port is not None:
            return self.port <= port <= self.end_port
        return port == self.port

    def __str__(self) -> str:
        if self.broken:
            return f"<matches nothing: {self.broken}>"
        if self.port is None:
            return f"{self.protocol}/*"
        if self.end_port is not None:
            return f"{self.protocol}/{self.port}-{self.end_port}"
        return f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class Rule:
    """One ingress or egress rule. `peers` None: from/to absent or empty, so every peer."""

    peers: tuple[Peer, ...] | None
    ports: tuple[PortRule, ...]  # empty: every port and protocol


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    # None when the policy does not isolate that direction (policyTypes lacks it).
    ingress: tuple[Rule, ...] | None
    egress: tuple[Rule, ...] | None
    problems: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: Direction) -> tuple[Rule, ...] | None:
        return self.ingress if direction == "Ingress" else self.egress


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    ips: tuple[IPAddress, ...]
    node: str = ""
    host_network: bool = False
    # (port name, protocol) -> containerPort, from every container's ports.
    named_ports: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _name_of(obj: JSON, kind: str) -> tuple[str, str]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ObjectError(f"{kind} without metadata.name cannot be used")
    namespace = meta.get("namespace", "")
    return (namespace if isinstance(namespace, str) else ""), meta["name"]


def _labels(obj: JSON) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if not isinstance(labels, Mapping):
        return {}
    return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}


def _selector(raw: Any, where: str, problems: list[str]) -> Selector:
    try:
        return label_selector_as_selector(raw if raw is not None else {})
    except (SelectorError, TypeError, AttributeError) as err:
        problems.append(f"{where}: {err}; matches nothing")
        return NOTHING


def _network(raw: Any, where: str) -> IPNetwork:
    if not isinstance(raw, str):
        raise ObjectError(f"{where}: must be a CIDR string")
    try:
        return ipaddress.ip_network(raw, strict=False)
    except ValueError as err:
        raise ObjectError(f"{where}: {raw!r} is not a CIDR ({err})") from None


def _ip_block(raw: Any, where: str) -> IPBlock:
    if not isinstance(raw, Mapping):
        raise ObjectError(f"{where}: must be an object with a cidr")
    cidr = _network(raw.get("cidr"), f"{where}.cidr")
    excepts = []
    for i, hole in enumerate(raw.get("except") or ()):
        net = _network(hole, f"{where}.except[{i}]")
        if net.version != cidr.version or not net.subnet_of(cidr):  # type: ignore[arg-type]
            raise ObjectError(f"{where}.except[{i}]: {net} is not inside {cidr}")
        excepts.append(net)
    return IPBlock(cidr, tuple(excepts))


def _peer(raw: Any, where: str, problems: list[str]) -> Peer:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: not an object; matches nothing")
        return Peer(broken="not an object")
    if raw.get("ipBlock") is not None:
        if raw.get("podSelector") is not None or raw.get("namespaceSelector") is not None:
            problems.append(f"{where}: ipBlock together with a selector; matches nothing")
            return Peer(broken="ipBlock together with a selector")
        try:
            return Peer(ip_block=_ip_block(raw["ipBlock"], f"{where}.ipBlock"))
        except ObjectError as err:
            problems.append(f"{err}; matches nothing")
            return Peer(broken=str(err))
    if raw.get("podSelector") is None and raw.get("namespaceSelector") is None:
        problems.append(f"{where}: names no podSelector, namespaceSelector or ipBlock; matches nothing")
        return Peer(broken="no podSelector, namespaceSelector or ipBlock")
    pods = namespaces = None
    if raw.get("podSelector") is not None:
        pods = _selector(raw["podSelector"], f"{where}.podSelector", problems)
    if raw.get("namespaceSelector") is not None:
        namespaces = _selector(raw["namespaceSelector"], f"{where}.namespaceSelector", problems)
    return Peer(pod_selector=pods, namespace_selector=namespaces)


def _port(raw: Any, where: str, problems: list[str]) -> PortRule:
    def broken(why: str) -> PortRule:
        problems.append(f"{where}: {why}; matches nothing")
        return PortRule(broken=why)

    if not isinstance(raw, Mapping):
        return broken("not an object")
    protocol = raw.get("protocol") or "TCP"
    if protocol not in PROTOCOLS:
        return broken(f"protocol {protocol!r} is not one of TCP, UDP, SCTP")
    port = raw.get("port")
    end_port = raw.get("endPort")
    if port is None:
        if end_port is not None:
            return broken("endPort without port")
        return PortRule(protocol)
    if isinstance(port, bool) or not isinstance(port, int | str):
        return broken(f"port {port!r} is neither a number nor a name")
    if isinstance(port, int) and not 1 <= port <= 65535:
        return broken(f"port {port} is outside 1-65535")
    if isinstance(port, str) and port.isdigit():
        port = int(port)  # an IntOrString given as a string of digits is the number
    if end_port is not None:
        if isinstance(port, str):
            return broken("endPort with a named port")
        if isinstance(end_port, bool) or not isinstance(end_port, int) or not port <= end_port <= 65535:
            return broken(f"endPort {end_port!r} must be a number from port ({port}) to 65535")
    return PortRule(protocol, port, end_port)


def _rules(raw: Any, direction: Direction, problems: list[str]) -> tuple[Rule, ...]:
    field_name, peers_name = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    rules = []
    for i, rule in enumerate(raw or ()):
        where = f"spec.{field_name}[{i}]"
        if not isinstance(rule, Mapping):
            problems.append(f"{where}: not an object; matches nothing")
            rules.append(Rule(peers=(), ports=()))
            continue
        raw_peers = rule.get(peers_name) or ()
        peers = tuple(_peer(p, f"{where}.{peers_name}[{j}]", problems) for j, p in enumerate(raw_peers))
        ports = tuple(_port(p, f"{where}.ports[{j}]", problems) for j, p in enumerate(rule.get("ports") or ()))
        rules.append(Rule(peers=peers or None, ports=ports))
    return tuple(rules)


def parse_policy(obj: JSON) -> Policy:
    """A NetworkPolicy object -> Policy. Raises ObjectError only when it has no name or spec at all."""
    namespace, name = _name_of(obj, "NetworkPolicy")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ObjectError(f"NetworkPolicy {namespace}/{name}: spec must be an object")
    problems: list[str] = []
    pod_selector = _selector(spec.get("podSelector"), "spec.podSelector", problems)
    types = spec.get("policyTypes") or []
    if not types:
        # pkg/apis/networking/v1 defaults: Ingress always, Egress when egress rules are given.
        types = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    ingress = _rules(spec.get("ingress"), "Ingress", problems) if "Ingress" in types else None
    egress = _rules(spec.get("egress"), "Egress", problems) if "Egress" in types else None
    return Policy(namespace, name, pod_selector, ingress, egress, tuple(problems))


def parse_namespace(obj: JSON) -> Namespace:
    _, name = _name_of(obj, "Namespace")
    labels = _labels(obj)
    labels.setdefault(NAMESPACE_NAME_LABEL, name)
    return Namespace(name, labels)


def _pod_ips(obj: JSON) -> tuple[IPAddress, ...]:
    status = obj.get("status") or {}
    raw: list[Any] = [entry.get("ip") for entry in status.get("podIPs") or () if isinstance(entry, Mapping)]
    if not raw and status.get("podIP"):
        raw = [status["podIP"]]
    ips = []
    for ip in raw:
        try:
            ips.append(ipaddress.ip_address(ip))
        except (ValueError, TypeError):
            continue
    return tuple(ips)


def _named_ports(spec: JSON) -> dict[tuple[str, str], int]:
    named: dict[tuple[str, str], int] = {}
    for container in list(spec.get("initContainers") or ()) + list(spec.get("containers") or ()):
        for port in (container or {}).get("ports") or ():
            name, number = port.get("name"), port.get("containerPort")
            if isinstance(name, str) and name and isinstance(number, int):
                named.setdefault((name, port.get("protocol") or "TCP"), number)
    return named


def parse_pod(obj: JSON) -> Pod | None:
    """A Pod -> Pod, or None when it holds no address a policy could judge (not running, no IP yet)."""
    namespace, name = _name_of(obj, "Pod")
    status = obj.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return None
    ips = _pod_ips(obj)
    if not ips:
        return None
    spec = obj.get("spec") or {}
    return Pod(
        namespace=namespace,
        name=name,
        labels=_labels(obj),
        ips=ips,
        node=spec.get("nodeName") or "",
        host_network=bool(spec.get("hostNetwork")),
        named_ports=_named_ports(spec),
    )


def node_addresses(obj: JSON) -> tuple[str, tuple[IPAddress, ...]]:
    """A Node -> (name, its InternalIP/ExternalIP addresses): traffic from there is the node's own."""
    _, name = _name_of(obj, "Node")
    ips = []
    for address in (obj.get("status") or {}).get("addresses") or ():
        if address.get("type") in ("InternalIP", "ExternalIP"):
            try:
                ips.append(ipaddress.ip_address(address["address"]))
            except (KeyError, ValueError, TypeError):
                continue
    return name, tuple(ips)


def parse_all(objs: Iterable[JSON], parse: Any) -> list[Any]:
    """Parse each object, skipping the ones without a name (they cannot be referred to)."""
    out = []
    for obj in objs:
        try:
            value = parse(obj)
        except ObjectError:
            continue
        if value is not None:
            out.append(value)
    return out


class ParseCache(SharedParseCache[Any]):
    """The shared cache (control.client.ParseCache), leaving out objects the agent cannot use: their
    policies are refused at the API, and what slips through is skipped as the decision would skip it."""

    def __init__(self, parse: Any) -> None:
        super().__init__(parse, errors=(ObjectError,))


