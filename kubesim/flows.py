"""`kubesim observe`, the pure half: what the kernel says about flows, joined with the cluster's names.

    directory = Directory.from_objects(topology, pods=[...], services=[...])
    joiner = FlowJoiner(node="worker-1")
    flow = joiner.conntrack("[NEW] tcp 6 120 SYN_SENT src=10.244.1.3 dst=10.96.12.3 sport=40000 dport=80 ...")
    flow = joiner.trace("trace id 13c5f2ef ip kubesim-proxy reject-chain rule reject (verdict drop)")
    record = describe(flow, directory)   # a dict: -o json prints it, render() makes the human line
    Filter(pods=("default/web",), verdicts=("REJECTED",)).matches(record)

Two sources, because neither sees everything (see kubesim/observe.py for how they are read):

- conntrack NEW events say a connection was *confirmed*: its first packet passed every netfilter hook
  of the node and left (or was delivered). That is FORWARDED, and the entry's reply tuple names where
  kube-proxy's DNAT sent it (the backend) and whether it was masqueraded.
- a packet that is rejected or dropped never gets a confirmed conntrack entry, so conntrack never
  tells of it. `nft monitor trace`, with `meta nftrace` set on every new connection's packets, names
  the rule that said drop: kube-proxy's `reject` (a Service without endpoints) is REJECTED; any other
  drop (a NetworkPolicy, the service range's catch-all, a base chain's policy) is DROPPED.

Nothing here touches the kernel or the network, so every join is unit-tested on recorded lines.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from netsim.topology import Topology
from netsim.trace_analysis import parse_trace_line

VERDICTS = ("FORWARDED", "DROPPED", "REJECTED")
OBSERVE_TABLE_PREFIX = "kubesim-observe-"
# conntrack's protocol names -> the API's (Service ports say TCP, UDP, SCTP).
_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP", "icmp": "ICMP"}
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# How many traced packets and connections are remembered while their verdict is pending; a packet's
# trace lines arrive within microseconds of each other, so this only bounds memory.
_PENDING = 4096
# `nft -a monitor trace` ends a rule with its handle. A rule added after the monitor started (a table
# that kube-proxy or the policy agent rebuilt) is not in the monitor's cache: it prints
# `unknown rule handle N`, and a rebuilt rule at a known handle with the old rule's text.
_UNKNOWN_RULE = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<table>\S+) (?P<chain>\S+) "
                           r"unknown rule handle (?P<handle>\d+) \(verdict (?P<verdict>[^)]*)\)")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
# (family, table, chain, handle) -> the rule's text as the kernel has it now, or None.
RuleLookup = Callable[[str, str, str, int], "str | None"]


@dataclass(frozen=True)
class Flow:
    """One connection's verdict as one node saw it. DST is where the client sent it (a Service address
    for Service traffic); BACKEND is where it went after DNAT (None when it went nowhere)."""
    time: float
    node: str
    verdict: str
    proto: str
    src: str
    sport: int | None
    dst: str
    dport: int | None
    backend: str | None = None
    backend_port: int | None = None
    snat: str | None = None  # the source the backend sees, when it was masqueraded
    rule: str | None = None  # for DROPPED / REJECTED: the table, chain and rule that decided


# ---------------------------------------------------------------------------------------------------
# conntrack -E


def parse_conntrack(line: str) -> dict[str, Any] | None:
    """`conntrack -E` output, e.g. `[NEW] tcp 6 120 SYN_SENT src=A dst=B sport=1 dport=2 [UNREPLIED]
    src=B dst=A sport=2 dport=1` -> {"event": "NEW", "proto": "tcp", "orig": {...}, "reply": {...}}.
    The first src= starts the original direction, the second the reply."""
    tokens = line.split()
    if len(tokens) < 3 or not tokens[0].startswith("[") or not tokens[0].endswith("]"):
        return None
    event = tokens[0].strip("[]")
    rest = tokens[1:]
    if rest[0] in ("ipv4", "ipv6"):  # `-o extended` puts the layer-3 protocol first
        rest = rest[2:]
    if not rest:
        return None
    proto = rest[0]
    tuples: list[dict[str, str]] = []
    for token in rest[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            continue
        if key == "src":
            tuples.append({})
        if tuples and key in ("src", "dst", "sport", "dport") and key not in tuples[-1]:
            tuples[-1][key] = value
    if len(tuples) < 2 or not all("src" in t and "dst" in t for t in tuples[:2]):
        return None
    return {"event": event, "proto": proto, "orig": tuples[0], "reply": tuples[1]}


def _port(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _loopback(*addresses: str) -> bool:
    try:
        return any(ipaddress.IPv4Address(a) in _LOOPBACK for a in addresses)
    except ValueError:
        return True  # not IPv4: nothing of ours


# ---------------------------------------------------------------------------------------------------
# The join of one node's lines into flows


@dataclass
class _Traced:
    fields: dict[str, str] = field(default_factory=dict)


class FlowJoiner:
    """One node's conntrack events and trace lines -> Flows. OWN_TABLE is observe's own trace table
    (its rules only set nftrace; they decide nothing)."""

    def __init__(self, node: str, *, own_table: str = "", clock: Any = time.time,
                 rule_text: RuleLookup | None = None) -> None:
        self.node = node
        self.own_table = own_table
        self.clock = clock
        self.rule_text = rule_text
        self._packets: OrderedDict[str, dict[str, str]] = OrderedDict()  # trace id -> last packet seen
        # (saddr, sport, proto, ip id) -> the destination first seen: a packet's trace id changes
        # between hooks, and by the forward hook its destination is DNAT's, not the client's.
        self._first_dst: OrderedDict[tuple[str, ...], tuple[str, str]] = OrderedDict()

    def conntrack(self, line: str) -> Flow | None:
        """A FORWARDED flow from a NEW event (other events and loopback say nothing)."""
        entry = parse_conntrack(line)
        if entry is None or entry["event"] != "NEW":
            return None
        orig, reply = entry["orig"], entry["reply"]
        if _loopback(orig["src"], orig["dst"]):
            return None
        proto = _PROTOCOLS.get(entry["proto"], entry["proto"].upper())
        sport, dport = _port(orig.get("sport")), _port(orig.get("dport"))
        # The reply comes from where the connection really went, to the source the backend saw.
        backend, backend_port = reply["src"], _port(reply.get("sport"))
        snat = reply["dst"] if reply["dst"] != orig["src"] else None
        return Flow(self.clock(), self.node, "FORWARDED", proto, orig["src"], sport, orig["dst"], dport,
                    backend=backend, backend_port=backend_port, snat=snat)

    def trace(self, line: str) -> Flow | None:
        """A DROPPED or REJECTED flow from the trace line of the rule (or chain policy) that said drop."""
        unknown = _UNKNOWN_RULE.match(line)
        event = parse_trace_line(line)
        if event is None:
            return None
        if event.kind == "packet":
            self._remember(event.trace_id, dict(event.fields))
            return None
        verdict = unknown["verdict"] if unknown else event.verdict
        if event.table == self.own_table or verdict != "drop":
            return None
        packet = self._packets.pop(event.trace_id, None)
        if packet is None or _loopback(packet.get("saddr", ""), packet.get("daddr", "")):
            return None
        if event.kind == "policy":
            rule = "policy drop"
        else:
            handle = int(unknown["handle"]) if unknown else (event.handle or None)
            shown = f"rule handle {handle}" if unknown else event.rule
            # The kernel's text over the monitor's: its cache may predate the rule (see _UNKNOWN_RULE).
            current = self.rule_text(event.family, event.table, event.chain, handle) if (
                self.rule_text is not None and handle is not None) else None
            rule = " ".join(_COUNTER.sub("", current if current is not None else shown).split())
        rejected = "reject" in rule.lower()
        decided = f"{event.family} {event.table} {event.chain}: {rule}"
        proto_name = packet.get("l4proto", "")
        proto = _PROTOCOLS.get(proto_name, proto_name.upper() or "IP")
        now_dst, now_dport = packet.get("daddr", ""), packet.get("dport")
        first = self._first_dst.get(_packet_key(packet))
        dst, dport = first if first else (now_dst, now_dport or "")
        translated = (now_dst, now_dport or "") != (dst, dport)
        return Flow(self.clock(), self.node, "REJECTED" if rejected else "DROPPED", proto, packet.get("saddr", ""),
                    _port(packet.get("sport")), dst, _port(dport),
                    backend=now_dst if translated else None,
                    backend_port=_port(now_dport) if translated else None, rule=decided)

    def _remember(self, trace_id: str, packet: dict[str, str]) -> None:
        self._packets[trace_id] = packet
        self._packets.move_to_end(trace_id)
        key = _packet_key(packet)
        if key not in self._first_dst:
            self._first_dst[key] = (packet.get("daddr", ""), packet.get("dport", ""))
        for pending in (self._packets, self._first_dst):
            while len(pending) > _PENDING:
                pending.popitem(last=False)


def _packet_key(packet: dict[str, str]) -> tuple[str, ...]:
    return (packet.get("saddr", ""), packet.get("sport", ""), packet.get("l4proto", ""), packet.get("id", ""))


# ---------------------------------------------------------------------------------------------------
# Names: pods, Services, nodes and external hosts


@dataclass(frozen=True)
class Named:
    kind: str  # pod | node | external | host | service
    name: str  # NAMESPACE/NAME for pods and Services, the name for nodes and external hosts
    node: str = ""


class Directory:
    """Who an address is, and which Service a destination is, as the cluster said when last asked."""

    def __init__(self) -> None:
        self.addresses: dict[str, Named] = {}
        # (ip, PROTO, port) -> (Service NAMESPACE/NAME, its port); ip "*" for NodePorts on node addresses.
        self.frontends: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.node_addresses: set[str] = set()

    @classmethod
    def from_objects(cls, topology: Topology | None, *, pods: Iterable[dict[str, Any]] = (),
                     services: Iterable[dict[str, Any]] = (), previous: Directory | None = None) -> Directory:
        """The names in TOPOLOGY and the API's PODS and SERVICES. Pods of PREVIOUS that are gone keep
        their names until their address is taken: a flow to a pod that just ended is still its flow."""
        made = cls()
        if previous is not None:
            made.addresses.update({ip: n for ip, n in previous.addresses.items() if n.kind == "pod"})
        for pod in pods:
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            spec = pod.get("spec") or {}
            if spec.get("hostNetwork"):
                continue  # its address is its node's
            key = f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"
            for ip in {status.get("podIP"), *(p.get("ip") for p in status.get("podIPs") or [])}:
                if ip:
                    made.addresses[ip] = Named("pod", key, spec.get("nodeName", ""))
        if topology is not None:
            for node in topology.nodes:
                made.addresses[node.address] = Named("node", node.name, node.name)
                made.node_addresses.add(node.address)
                if node.pod_cidr:
                    made.addresses[node.pod_gateway] = Named("node", node.name, node.name)
            for host in topology.external_hosts:
                made.addresses[host.address] = Named("external", host.name)
            if topology.network.host_address:
                # The machine's end of the host link (kubectl, curl from the machine's shell).
                made.addresses[topology.network.host_address] = Named("host", "host")
        for svc in services:
            made._add_service(svc)
        return made

    def _add_service(self, svc: dict[str, Any]) -> None:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        key = f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"
        ips = {spec.get("clusterIP"), *(spec.get("clusterIPs") or []), *(spec.get("externalIPs") or []),
               *(i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])}
        ips.discard(None)
        ips.discard("None")  # headless
        for port in spec.get("ports") or []:
            proto = str(port.get("protocol") or "TCP")
            number = int(port.get("port") or 0)
            for ip in ips:
                self.frontends[(str(ip), proto, number)] = (key, number)
            if port.get("nodePort"):
                self.frontends[("*", proto, int(port["nodePort"]))] = (key, number)
        for ip in ips:
            self.addresses.setdefault(str(ip), Named("service", key))

    def name_of(self, ip: str | None) -> Named | None:
        return self.addresses.get(ip) if ip else None

    def service_of(self, ip: str, proto: str, port: int | None) -> tuple[str, int] | None:
        if port is None:
            return None
        found = self.frontends.get((ip, proto, port))
        if found is None and ip in self.node_addresses:
            found = self.frontends.get(("*", proto, port))
        return found

    def knows(self, ip: str) -> bool:
        return ip in self.addresses


# ---------------------------------------------------------------------------------------------------
# Records, filters, the human line


def _endpoint(ip: str | None, port: int | None, directory: Directory) -> dict[str, Any] | None:
    if not ip:
        return None
    named = directory.name_of(ip)
    out: dict[str, Any] = {"ip": ip, "port": port}
    if named is not None and named.kind != "service":
        out["kind"], out["name"] = named.kind, named.name
        if named.kind == "pod":
            out["namespace"], out["pod"] = named.name.split("/", 1)
            out["node"] = named.node
    return out


def describe(flow: Flow, directory: Directory) -> dict[str, Any]:
    """FLOW with names: the record `-o json` prints (one object per line)."""
    service = directory.service_of(flow.dst, flow.proto, flow.dport)
    went_to = (flow.backend, flow.backend_port)
    if flow.verdict == "FORWARDED" and went_to == (flow.dst, flow.dport):
        went_to = (None, None)  # not translated: the destination is the backend
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(flow.time, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "node": flow.node,
        "verdict": flow.verdict,
        "protocol": flow.proto,
        "source": _endpoint(flow.src, flow.sport, directory),
        "destination": _endpoint(flow.dst, flow.dport, directory),
        "service": ({"namespace": service[0].split("/", 1)[0], "name": service[0].split("/", 1)[1],
                     "ip": flow.dst, "port": service[1]} if service else None),
        "backend": _endpoint(went_to[0], went_to[1], directory),
        "snat": flow.snat,
    }
    if flow.rule:
        record["rule"] = flow.rule
    record["summary"] = render(record)
    return record


def _label(endpoint: dict[str, Any]) -> str:
    address = str(endpoint["ip"]) + (f":{endpoint['port']}" if endpoint.get("port") is not None else "")
    kind = endpoint.get("kind")
    if kind == "pod":
        return f"{endpoint['name']} {address}"
    if kind in ("node", "external"):
        return f"{kind}/{endpoint['name']} {address}"
    if kind == "host":
        return f"host {address}"
    return address


def render(record: dict[str, Any]) -> str:
    """`default/client-abc 10.244.1.3:40000 -> default/web (10.96.12.3:80) -> default/web-xyz
    10.244.1.5:8080 FORWARDED`, after the time, the node and the protocol."""
    parts = [_label(record["source"])]
    service = record["service"]
    if service is not None:
        parts.append(f"{service['namespace']}/{service['name']} ({service['ip']}:{service['port']})")
    elif record["backend"] is None or record["destination"]["ip"] != record["backend"]["ip"]:
        parts.append(_label(record["destination"]))
    if record["backend"] is not None:
        parts.append(_label(record["backend"]))
    clock = record["time"][11:23]
    text = f"{clock} {record['node']} {record['protocol']} {' -> '.join(parts)} {record['verdict']}"
    if record.get("snat"):
        text += f" (masqueraded to {record['snat']})"
    if record.get("rule"):
        text += f" by {record['rule']}"
    return text


def _pod_matches(wanted: str, endpoint: dict[str, Any] | None) -> bool:
    if endpoint is None or endpoint.get("kind") != "pod":
        return False
    namespace, _, name = wanted.rpartition("/")
    if endpoint["namespace"] != (namespace or "default"):
        return False
    # A prefix, as hubble's --pod: `default/web` is every pod of Deployment web.
    return str(endpoint["pod"]).startswith(name)


@dataclass(frozen=True)
class Filter:
    """Which records to show. Each option is a set of alternatives (any matches); the options all must
    match. PODS: NAMESPACE/NAME-PREFIX, NAMESPACE/ (every pod in it) or NAME-PREFIX (namespace default),
    on either side of the flow; SERVICES: NAMESPACE/NAME or NAME; NODES: the node that saw it."""
    pods: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()

    def matches(self, record: dict[str, Any]) -> bool:
        if self.verdicts and record["verdict"] not in self.verdicts:
            return False
        if self.nodes and record["node"] not in self.nodes:
            return False
        if self.services:
            service = record["service"]
            if service is None:
                return False
            full = f"{service['namespace']}/{service['name']}"
            if not any(full == (s if "/" in s else f"default/{s}") for s in self.services):
                return False
        if self.pods:
            sides = (record["source"], record["destination"], record["backend"])
            if not any(_pod_matches(p, side) for p in self.pods for side in sides):
                return False
        return True


def check_filter_values(pods: Iterable[str], services: Iterable[str], verdicts: Iterable[str]) -> str | None:
    """What is wrong with the options, or None."""
    for verdict in verdicts:
        if verdict not in VERDICTS:
            return f"--verdict {verdict!r}: use one of {', '.join(VERDICTS)}"
    for pod in pods:
        if pod.count("/") > 1 or pod in ("", "/"):
            return f"--pod {pod!r}: give NAMESPACE/NAME, NAMESPACE/ or NAME"
    for svc in services:
        if svc.count("/") > 1 or not svc.rpartition("/")[2]:
            return f"--service {svc!r}: give NAMESPACE/NAME or NAME"
    return None
