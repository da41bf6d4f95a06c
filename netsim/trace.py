"""Packet tracing: what one node does with real packets.

    result = trace(TraceRequest(cluster="kubesim", node="worker-1", src="10.244.1.77", dst="10.96.0.10",
                                dport=53, proto="udp", count=40, origin=Origin.bridge_probe(24, "10.244.1.1")))
    result.to_dict()   # {"result": "DNAT", "endpoints": [...], "masquerade": false, ...}

N probes (a TCP SYN, a UDP datagram or an SCTP INIT, crafted with scapy) leave the origin with N different
source ports and are followed through the node in two ways at once:

- on the wire: one AF_PACKET socket opened inside the node's namespace sees every interface of it
  (eth0, cbr0, the veths, lo), both directions, so a probe's copy leaving the node shows its translated
  destination and (after masquerade) its rewritten source; replies (SYN-ACK, RST, ICMP unreachable)
  are seen on their way back;
- in netfilter: a temporary table of our own in the node's namespace sets `meta nftrace` for exactly the
  probes' flows, and `nft monitor trace`, run inside the node, names every chain and rule they meet.
  Empty base chains of that table at the end of postrouting and input show the packet as it leaves
  (after SNAT) or is delivered locally, even when it then waits for ARP and never reaches a wire.

Probes are recognised after NAT by their IP ID (NAT never changes it, fully-random masquerade changes
the source port): the IDs are consecutive from a random base, as are the source ports.

Where the probes come from (`Origin`): the node itself (a raw socket inside it: the OUTPUT path), an
existing namespace (a pod, an external host, another node) sending link-layer frames straight to the
node's interface, or a temporary probe namespace attached to the node's pod bridge or to the fabric
bridge. Probe namespaces and the trace table are always removed, also on Ctrl-C; a crashed run's
leftovers are swept by the next trace (their pid is in their name) and by `kubesim down`.

Errors:
    NetsimError
    └── TraceError      the request cannot be traced as asked (names the object and the fix)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from netsim import names, namespaces
from netsim.errors import NetsimError
from netsim.kernel import Kernel, LinuxKernel


class TraceError(NetsimError):
    pass


PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
RESULTS = ("DNAT", "LOCAL", "REJECT", "NONE", "DROP")
TABLE_PREFIX = "kubesim-trace-"
PROBE_IFACE = "eth0"
DEFAULT_TIMEOUT = 1.0
# After every probe is accounted for: time for replies and the last trace lines to arrive.
GRACE = 0.05

# The trace table's chains and their hooks.
OWN_CHAINS = {"pre": "prerouting", "out": "output", "pre-late": "prerouting", "out-late": "output",
              "post": "postrouting", "in": "input"}

_ETH_P_ALL = 0x0003
_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4
_SIOCGIFHWADDR = 0x8927
_SO_RCVBUFFORCE = 33

OriginKind = Literal["local", "namespace", "bridge-probe", "fabric-probe"]


# ---------------------------------------------------------------------------------------------------
# What is asked


@dataclass(frozen=True)
class Origin:
    """Where the probes start.

    kind local: from the node itself (locally generated: nat/filter output, then postrouting).
    kind namespace: from existing namespace NETNS, link-layer frames out of its IFACE to the node's VIA.
    kind bridge-probe: a temporary namespace on the node's pod bridge (a pod that is not there).
    kind fabric-probe: a temporary namespace on the fabric bridge (a host outside the cluster).
    A probe namespace gets the source address with PREFIXLEN (so that it answers ARP for it) and, if
    GATEWAY is set, a default route through it (so that its kernel's RSTs to replies go somewhere).
    """

    kind: OriginKind
    netns: str | None = None
    iface: str = PROBE_IFACE
    via: str = names.NODE_UPLINK
    prefixlen: int = 32
    gateway: str | None = None

    @classmethod
    def local(cls) -> Origin:
        return cls("local")

    @classmethod
    def namespace(cls, netns: str, *, via: str, iface: str = PROBE_IFACE) -> Origin:
        return cls("namespace", netns=netns, iface=iface, via=via)

    @classmethod
    def bridge_probe(cls, prefixlen: int, gateway: str | None = None) -> Origin:
        return cls("bridge-probe", via=names.NODE_BRIDGE, prefixlen=prefixlen, gateway=gateway)

    @classmethod
    def fabric_probe(cls, prefixlen: int, gateway: str | None = None) -> Origin:
        return cls("fabric-probe", via=names.NODE_UPLINK, prefixlen=prefixlen, gateway=gateway)

    @property
    def ingress(self) -> str:
        """The issue's words: pod (from the node's bridge), node (itself) or external (over the fabric)."""
        if self.kind == "local":
            return "node"
        return "pod" if self.via == names.NODE_BRIDGE else "external"


@dataclass(frozen=True)
class TraceRequest:
    cluster: str
    node: str
    src: str
    dst: str
    dport: int
    origin: Origin
    proto: str = "tcp"
    count: int = 1
    timeout: float = DEFAULT_TIMEOUT
    nft_trace: bool = True

    def check(self) -> None:
        if self.proto not in PROTOCOLS:
            raise TraceError(f"protocol {self.proto!r}: use one of {', '.join(PROTOCOLS)}")
        if not 1 <= self.count <= 1000:
            raise TraceError(f"--count {self.count}: send between 1 and 1000 probes")
        if not 1 <= self.dport <= 65535:
            raise TraceError(f"destination port {self.dport}: use 1-65535")
        for what, address in (("source", self.src), ("destination", self.dst)):
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise TraceError(f"{what} {address!r} is not an IPv4 address") from None
        if self.origin.kind == "namespace" and not self.origin.netns:
            raise TraceError("an origin of kind namespace needs the namespace's name")


@dataclass(frozen=True)
class Probe:
    index: int
    sport: int
    ip_id: int
    tag: int  # TCP sequence number / SCTP initiate tag / UDP payload tag


def make_probes(count: int, rng: random.Random | None = None) -> list[Probe]:
    """COUNT probes with consecutive source ports and IP IDs from random bases (unlikely to meet a
    conntrack entry of an earlier trace, which would skip the rules that only see new connections)."""
    rng = rng or random.Random()
    sport = rng.randrange(20000, 60000 - count)
    ip_id = rng.randrange(1, 0xFFFF - count)
    tag = rng.randrange(1, 0xFFFFFFFF - count)
    return [Probe(i, sport + i, ip_id + i, tag + i) for i in range(count)]


def craft(probe: Probe, src: str, dst: str, dport: int, proto: str) -> Any:
    """The probe as a scapy IP packet."""
    from scapy.layers.inet import IP, TCP, UDP

    ip = IP(src=src, dst=dst, id=probe.ip_id, ttl=64)
    if proto == "tcp":
        return ip / TCP(sport=probe.sport, dport=dport, flags="S", seq=probe.tag, window=64240)
    if proto == "udp":
        return ip / UDP(sport=probe.sport, dport=dport) / f"kubesim-trace {probe.tag}".encode()
    from scapy.layers.sctp import SCTP, SCTPChunkInit

    # The INIT of an association: the verification tag of the packet is 0, the initiate tag not.
    return ip / SCTP(sport=probe.sport, dport=dport, tag=0) / SCTPChunkInit(
        init_tag=probe.tag, a_rwnd=65535, n_out_streams=1, n_in_streams=1, init_tsn=probe.tag)


# ---------------------------------------------------------------------------------------------------
# What is seen: frames on the node's interfaces


@dataclass(frozen=True)
class Frame:
    """One frame seen by the capture socket inside the node: interface, direction, bytes (Ethernet)."""

    ifname: str
    pkttype: int
    data: bytes
    time: float

    @property
    def outgoing(self) -> bool:
        return self.pkttype == _PACKET_OUTGOING


@dataclass(frozen=True)
class Headers:
    """The addresses of an IPv4 packet and its transport ports (0 when it has none)."""

    proto: int
    src: str
    dst: str
    ip_id: int
    sport: int = 0
    dport: int = 0

    def summary(self) -> str:
        name = {1: "icmp", **{v: k for k, v in PROTOCOLS.items()}}.get(self.proto, str(self.proto))
        if self.sport or self.dport:
            return f"{name} {self.src}:{self.sport} > {self.dst}:{self.dport}"
        return f"{name} {self.src} > {self.dst}"


def parse_ipv4(data: bytes) -> tuple[Headers, bytes] | None:
    """Headers of the IPv4 packet at DATA's start, and what follows its IP header."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    proto = data[9]
    ip_id = struct.unpack("!H", data[4:6])[0]
    src = socket.inet_ntoa(data[12:16])
    dst = socket.inet_ntoa(data[16:20])
    rest = data[ihl:]
    sport = dport = 0
    if proto in (6, 17, 132) and len(rest) >= 4:
        sport, dport = struct.unpack("!HH", rest[:4])
    return Headers(proto, src, dst, ip_id, sport, dport), rest


def _ip_payload(frame: Frame) -> bytes | None:
    data = frame.data
    if len(data) < 34 or struct.unpack("!H", data[12:14])[0] != _ETH_P_IP:
        return None
    return data[14:]


# ---------------------------------------------------------------------------------------------------
# What is seen: nft monitor trace

_TRACE_LINE = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<table>\S+) (?P<chain>\S+) "
                         r"(?P<kind>packet:|rule|verdict|policy|unknown)\s?(?P<rest>.*)$")
_RULE_VERDICT = re.compile(r"^(?P<rule>.*) \(verdict (?P<verdict>[^)]*)\)(?P<extra>.*)$")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
_QUOTED = re.compile(r'\b(iif|oif) "([^"]*)"')
_FIELD = re.compile(r"\b(?:ip (saddr|daddr|id)|(?:tcp|udp|sctp|th) (sport|dport)|meta l4proto) (\S+)")


@dataclass(frozen=True)
class TraceEvent:
    """One line of `nft monitor trace`."""

    trace_id: str
    family: str
    table: str
    chain: str
    kind: str  # packet | rule | verdict | policy | unknown
    rule: str = ""
    verdict: str = ""
    fields: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)

    def headers(self) -> Headers | None:
        try:
            proto = self.get("l4proto") or "0"
            return Headers(PROTOCOLS.get(proto, int(proto) if proto.isdigit() else 0), self.get("saddr") or "",
                           self.get("daddr") or "", int(self.get("id") or -1), int(self.get("sport") or 0),
                           int(self.get("dport") or 0))
        except ValueError:
            return None


def parse_trace_line(line: str) -> TraceEvent | None:
    match = _TRACE_LINE.match(line.rstrip("\n"))
    if not match:
        return None
    kind = match["kind"].rstrip(":")
    rest = match["rest"].strip()
    base = (match["id"], match["family"], match["table"], match["chain"], kind)
    if kind == "packet":
        fields: list[tuple[str, str]] = [(m[1], m[2]) for m in _QUOTED.finditer(rest)]
        for m in _FIELD.finditer(rest):
            fields.append((m[1] or m[2] or "l4proto", m[3]))
        for proto in PROTOCOLS:
            if f" {proto} sport " in f" {rest}" and not any(k == "l4proto" for k, _ in fields):
                fields.append(("l4proto", proto))
        return TraceEvent(*base, fields=tuple(fields))
    if kind == "rule":
        found = _RULE_VERDICT.match(rest)
        if found:
            # iptables-nft rules carry counters: noise in a trace, and never the same twice.
            rule = " ".join(_COUNTER.sub("", found["rule"]).split())
            return TraceEvent(*base, rule=rule, verdict=found["verdict"])
        return TraceEvent(*base, rule=rest)
    # "verdict continue", "policy accept meta mark 0x00004000": the first word is the verdict.
    return TraceEvent(*base, verdict=rest.split(" ")[0] if rest else "")


# ---------------------------------------------------------------------------------------------------
# Putting it together: per probe, then the whole result


@dataclass
class _ProbeState:
    probe: Probe
    copies: list[tuple[Frame, Headers]] = field(default_factory=list)
    replies: list[tuple[Frame, Headers, str]] = field(default_factory=list)
    events: list[TraceEvent] = field(default_factory=list)
    hooks: list[tuple[str, str]] = field(default_factory=list)  # (hook, interface) per event
    final: tuple[str, Headers] | None = None  # (oif, headers) from our postrouting chain
    # From our chains at the end of prerouting / output: after DNAT, before routing. A packet that then
    # waits for ARP (an endpoint address nobody has on the node's bridge) gets no further.
    translated: Headers | None = None
    translated_at: float = 0.0
    local: tuple[str, Headers] | None = None  # (iif, headers) from our input chain
    dropped_by: TraceEvent | None = None
    send_error: str = ""
    refused: bool = False  # the node's own output path dropped it (EPERM from sendto)


@dataclass
class TraceResult:
    result: str
    endpoints: list[str]
    masquerade: bool
    source_seen: str
    probes: int
    hops: list[dict[str, str]]
    node: str = ""
    src: str = ""
    dst: str = ""
    proto: str = "tcp"
    ingress: str = ""
    results: dict[str, int] = field(default_factory=dict)
    flows: list[dict[str, Any]] = field(default_factory=list)
    nftrace: str = "unavailable"
    elapsed: float = 0.0
    pcap: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result, "endpoints": self.endpoints, "masquerade": self.masquerade,
            "source_seen": self.source_seen, "probes": self.probes, "hops": self.hops,
            "node": self.node, "src": self.src, "dst": self.dst, "proto": self.proto, "ingress": self.ingress,
            "results": self.results, "flows": self.flows, "nftrace": self.nftrace,
            "elapsed": round(self.elapsed, 4), "pcap": self.pcap,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _hop(interface: str, hook: str, table: str = "", chain: str = "", rule: str = "", verdict: str = "",
         packet: str = "") -> dict[str, str]:
    return {"interface": interface, "hook": hook, "table": table, "chain": chain, "rule": rule, "verdict": verdict,
            "packet": packet}


def _icmp_summary(icmp_type: int, code: int) -> str:
    if icmp_type == 3:
        what = {0: "net", 1: "host", 2: "protocol", 3: "port", 9: "net-prohibited", 10: "host-prohibited",
                13: "admin-prohibited"}.get(code, str(code))
        return f"icmp unreachable ({what})"
    return f"icmp type {icmp_type} code {code}"


class Analyzer:
    """Turns what was seen (frames, trace lines) into per-probe outcomes and a result. Pure: no I/O, so
    it is tested with synthetic packets."""

    def __init__(self, *, src: str, dst: str, dport: int, proto: str, probes: list[Probe],
                 own_table: str = "", chain_hooks: dict[tuple[str, str], str] | None = None,
                 local_addresses: frozenset[str] = frozenset()) -> None:
        self.src, self.dst, self.dport, self.proto = src, dst, dport, proto
        self.proto_num = PROTOCOLS[proto]
        self.probes = probes
        self.own_table = own_table
        self.chain_hooks = chain_hooks or {}
        self.local_addresses = local_addresses
        self.states = [_ProbeState(p) for p in probes]
        self._by_id = {p.ip_id: s for p, s in zip(probes, self.states, strict=True)}
        self._by_sport = {p.sport: s for p, s in zip(probes, self.states, strict=True)}
        self._trace_owner: dict[str, _ProbeState] = {}
        self._trace_ctx: dict[str, tuple[str, str]] = {}
        self.frames: list[Frame] = []  # copies of the probes and their replies
        self._arp: list[tuple[Frame, str, str]] = []
        self.trace_lines = 0

    # -- feeding ------------------------------------------------------------------------------------

    def feed_frame(self, frame: Frame) -> bool:
        """Take one captured frame; returns whether it concerns the probes (and was kept)."""
        payload = _ip_payload(frame)
        if payload is None:
            return self._arp_concerns(frame)
        parsed = parse_ipv4(payload)
        if parsed is None:
            return False
        headers, rest = parsed
        state = self._by_id.get(headers.ip_id) if headers.proto == self.proto_num else None
        if state is not None and self._is_probe_copy(state, headers, rest):
            state.copies.append((frame, headers))
            self.frames.append(frame)
            return True
        reply = self._reply_of(headers, rest)
        if reply is not None:
            state, kind = reply
            state.replies.append((frame, headers, kind))
            self.frames.append(frame)
            return True
        return False

    def _is_probe_copy(self, state: _ProbeState, headers: Headers, rest: bytes) -> bool:
        probe = state.probe
        if self.proto == "tcp":
            return len(rest) >= 8 and struct.unpack("!I", rest[4:8])[0] == probe.tag
        if self.proto == "udp":
            return rest[8:].startswith(f"kubesim-trace {probe.tag}".encode())
        return len(rest) >= 20 and struct.unpack("!I", rest[16:20])[0] == probe.tag

    def _reply_of(self, headers: Headers, rest: bytes) -> tuple[_ProbeState, str] | None:
        if headers.proto == 1 and len(rest) >= 8 + 20:
            quoted = parse_ipv4(rest[8:])
            if quoted is None:
                return None
            inner, _ = quoted
            state = self._by_id.get(inner.ip_id)
            if state is None or inner.proto != self.proto_num:
                return None
            return state, _icmp_summary(rest[0], rest[1])
        if headers.proto != self.proto_num:
            return None
        # A reply travels from the (translated) destination back to the (translated) source.
        state = self._by_sport.get(headers.dport)
        if state is not None and headers.dst == self.src and headers.src == self.dst and \
                headers.sport == self.dport:
            return state, self._reply_kind(rest, state)
        for candidate in self.states:
            for _, out in candidate.copies:
                if (headers.src, headers.sport, headers.dst, headers.dport) == (out.dst, out.dport, out.src,
                                                                                 out.sport):
                    return candidate, self._reply_kind(rest, candidate)
        return None

    def _reply_kind(self, rest: bytes, state: _ProbeState) -> str:
        if self.proto == "tcp" and len(rest) >= 14:
            flags = rest[13]
            if flags & 0x04:
                return "rst"
            if flags & 0x12 == 0x12:
                return "syn-ack"
            return "tcp"
        if self.proto == "sctp" and len(rest) >= 13:
            return {2: "init-ack", 6: "abort"}.get(rest[12], f"sctp chunk {rest[12]}")
        return "udp"

    def _arp_concerns(self, frame: Frame) -> bool:
        data = frame.data
        if len(data) < 42 or struct.unpack("!H", data[12:14])[0] != 0x0806:
            return False
        # Which addresses matter is known only at the end (a translated destination may come from the
        # trace after the ARP request was seen): keep them all for now, choose in relevant_frames().
        self._arp.append((frame, socket.inet_ntoa(data[28:32]), socket.inet_ntoa(data[38:42])))
        return True

    def relevant_frames(self) -> list[Frame]:
        """Everything captured that concerns the probes, in the order seen: their copies, the replies, and
        ARP for the addresses involved (an endpoint nobody answers for shows up as unanswered ARP)."""
        wanted = {self.src, self.dst}
        for state in self.states:
            wanted |= {h.dst for _, h in state.copies} | {h.src for _, h in state.copies}
            for seen in (state.translated, state.final[1] if state.final else None):
                if seen is not None:
                    wanted |= {seen.src, seen.dst}
        arp = [f for f, sender, target in self._arp if sender in wanted or target in wanted]
        return sorted(self.frames + arp, key=lambda f: f.time)

    def feed_trace(self, line: str, now: float = 0.0) -> None:
        event = parse_trace_line(line)
        if event is None:
            return
        self.trace_lines += 1
        if event.kind == "packet":
            headers = event.headers()
            state = self._by_id.get(headers.ip_id) if headers is not None else None
            if state is not None and headers is not None and headers.proto and headers.proto != self.proto_num:
                state = None  # the sentinel, or another packet that happens to have a probe's IP ID
            if state is None:
                self._trace_owner.pop(event.trace_id, None)
                return
            self._trace_owner[event.trace_id] = state
            hook = self.chain_hooks.get((event.table, event.chain), "")
            iif, oif = event.get("iif") or "", event.get("oif") or ""
            interface = f"{iif}>{oif}" if iif and oif and hook == "forward" else (oif if hook in (
                "output", "postrouting") else iif) or oif
            self._trace_ctx[event.trace_id] = (hook, interface)
            if event.table == self.own_table and headers is not None:
                if event.chain == "post":
                    state.final = (oif, headers)
                elif event.chain == "in":
                    state.local = (iif, headers)
                elif event.chain in ("pre-late", "out-late"):
                    state.translated, state.translated_at = headers, now
        state = self._trace_owner.get(event.trace_id)
        if state is None:
            return
        state.events.append(event)
        state.hooks.append(self._trace_ctx.get(event.trace_id, ("", "")))
        if event.verdict in ("drop", "reject") or event.verdict.startswith("reject"):
            state.dropped_by = event

    # -- conclusions ------------------------------------------------------------------------------

    def concluded(self, state: _ProbeState, *, tracing: bool, now: float = 0.0) -> bool:
        if state.send_error:
            return True
        if tracing:
            if state.final is not None or state.local is not None or state.dropped_by is not None or state.replies:
                return True
            # Routed or stuck: a forwarded packet's postrouting comes microseconds after prerouting.
            return state.translated is not None and now - state.translated_at >= GRACE
        return any(f.outgoing for f, _ in state.copies) or bool(state.replies) or state.refused

    def all_concluded(self, *, tracing: bool, now: float = 0.0) -> bool:
        return all(self.concluded(s, tracing=tracing, now=now) for s in self.states)

    def outcome(self, state: _ProbeState) -> dict[str, Any]:
        """One probe: result, endpoint, source seen, reply."""
        translated: Headers | None = None
        delivered_local = False
        if state.local is not None:
            translated, delivered_local = state.local[1], True
        elif state.final is not None:
            translated = state.final[1]
        out = [h for f, h in state.copies if f.outgoing and f.ifname != "lo"]
        lo_out = [h for f, h in state.copies if f.outgoing and f.ifname == "lo"]
        pending = unrouted = False
        if translated is None and out:
            translated = out[-1]
        elif translated is None and state.translated is not None and state.dropped_by is None:
            if (state.translated.dst, state.translated.dport) != (self.dst, self.dport):
                translated, pending = state.translated, True
            else:
                unrouted = True
        elif translated is None and lo_out:
            translated, delivered_local = lo_out[-1], True
        if translated is not None and out:
            # The wire has the last word on what left (the trace's postrouting is before SNAT of
            # chains after ours, if any).
            translated = out[-1]
        reply = state.replies[0][2] if state.replies else ""
        result = "DROP"
        endpoint = ""
        source_seen = self.src
        masquerade = False
        if translated is not None:
            source_seen = translated.src
            # Masquerading to the address the packet already had (the node's own traffic leaving by
            # the interface of its source address) shows only in the port (fully-random).
            masquerade = translated.src != self.src or translated.sport != state.probe.sport
            if (translated.dst, translated.dport) != (self.dst, self.dport):
                result, endpoint = "DNAT", f"{translated.dst}:{translated.dport}"
            elif delivered_local or (translated.dst in self.local_addresses and not out):
                result = "LOCAL"
            else:
                result = "NONE"
        elif state.dropped_by is not None:
            rule = state.dropped_by.rule
            result = "REJECT" if rule.startswith("reject") or " reject" in f" {rule}" else "DROP"
        elif reply.startswith("icmp unreachable") or reply == "rst":
            result = "REJECT"
        elif self.dst in self.local_addresses and any(not f.outgoing for f, _ in state.copies):
            result = "LOCAL"
        flow: dict[str, Any] = {"sport": state.probe.sport, "result": result, "endpoint": endpoint,
                                "masquerade": masquerade, "source_seen": source_seen, "reply": reply}
        if state.send_error:
            flow["error"] = state.send_error
        if pending:
            flow["note"] = "translated, then not seen leaving (waiting for ARP, or no route)"
        elif unrouted and result == "DROP":
            flow["note"] = f"not routed after prerouting: has the node a route to {self.dst}?"
        elif result == "DROP" and not (state.copies or state.events or state.replies or state.send_error):
            flow["note"] = "never seen by the node (did the source resolve its next hop?)"
        return flow

    def hops(self, state: _ProbeState) -> list[dict[str, str]]:
        """The probe's way through the node: where it came in, every chain and rule of the trace, where
        it left, and the reply."""
        hops: list[dict[str, str]] = []
        incoming = [(f, h) for f, h in state.copies if not f.outgoing]
        if incoming:
            frame, headers = incoming[0]
            hops.append(_hop(frame.ifname, "wire", verdict="in", packet=headers.summary()))
        for event, (hook, interface) in zip(state.events, state.hooks, strict=True):
            if event.table == self.own_table:
                seen = event.headers() if event.kind == "packet" else None
                summary = seen.summary() if seen else ""
                if event.kind == "packet" and hook == "postrouting":
                    hops.append(_hop(interface, hook, verdict="leaves", packet=summary))
                elif event.kind == "packet" and hook == "input":
                    hops.append(_hop(interface, hook, verdict="delivered locally", packet=summary))
                elif event.kind == "packet" and seen and (seen.dst, seen.dport) != (self.dst, self.dport):
                    hops.append(_hop(interface, hook, verdict="translated", packet=summary))
                continue
            table = f"{event.family} {event.table}"
            if event.kind == "rule":
                hops.append(_hop(interface, hook, table, event.chain, event.rule, event.verdict))
            elif event.kind == "policy":
                hops.append(_hop(interface, hook, table, event.chain, "(policy)", event.verdict))
            elif event.kind == "verdict" and event.verdict not in ("continue", "return"):
                hops.append(_hop(interface, hook, table, event.chain, "", event.verdict))
        seen_out: set[str] = set()
        for frame, headers in state.copies:
            if frame.outgoing and frame.ifname not in seen_out:
                seen_out.add(frame.ifname)
                hops.append(_hop(frame.ifname, "wire", verdict="out", packet=headers.summary()))
        for frame, headers, kind in state.replies:
            if frame.outgoing:
                hops.append(_hop(frame.ifname, "wire", verdict=f"reply: {kind}", packet=headers.summary()))
                break
        return hops

    def result(self, *, node: str = "", ingress: str = "", nftrace: str = "unavailable",
               elapsed: float = 0.0, pcap: str | None = None) -> TraceResult:
        flows = [self.outcome(s) for s in self.states]
        counts = Counter(f["result"] for f in flows)
        # The most common outcome; ties go to the more telling one (a DNAT seen beats a lost probe).
        overall = max(RESULTS, key=lambda r: (counts[r], -RESULTS.index(r))) if flows else "DROP"
        endpoints = sorted({f["endpoint"] for f in flows if f["endpoint"]}, key=_endpoint_key)
        passed = [f for f in flows if f["result"] in ("DNAT", "NONE", "LOCAL")]
        masquerade = any(f["masquerade"] for f in passed)
        source_seen = next((f["source_seen"] for f in passed if f["masquerade"]), self.src)
        first = next((s for s, f in zip(self.states, flows, strict=True) if f["result"] == overall),
                     self.states[0] if self.states else None)
        return TraceResult(
            result=overall, endpoints=endpoints, masquerade=masquerade, source_seen=source_seen,
            probes=len(self.probes), hops=self.hops(first) if first else [], node=node, src=self.src,
            dst=f"{self.dst}:{self.dport}", proto=self.proto, ingress=ingress,
            results={r: counts[r] for r in RESULTS if counts[r]}, flows=flows, nftrace=nftrace, elapsed=elapsed,
            pcap=pcap)


def _endpoint_key(endpoint: str) -> tuple[int, int]:
    address, _, port = endpoint.rpartition(":")
    return int(ipaddress.IPv4Address(address)), int(port)


# ---------------------------------------------------------------------------------------------------
# The kernel side: namespaces, sockets, the trace table, the monitor


def _nft(ns: str, *args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(namespaces.command_in(ns, ["nft", *args]), input=stdin, capture_output=True, text=True,
                          check=False)
    if check and done.returncode != 0:
        raise TraceError(f"nft {' '.join(args)} in {ns}: {done.stderr.strip()}")
    return done.stdout


def _mac_of(ns: str | None, ifname: str) -> bytes:
    with namespaces.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        info = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    except OSError as exc:
        raise TraceError(f"interface {ifname} in {ns}: {exc.strerror}") from None
    finally:
        sock.close()
    return info[18:24]


def _local_addresses(ns: str) -> frozenset[str]:
    from pyroute2 import IPRoute

    with namespaces.entered(ns):
        ipr = IPRoute()
    try:
        return frozenset(str(a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"))
                         for a in ipr.get_addr(family=socket.AF_INET))
    finally:
        ipr.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    head = name.split("-")[0]
    return int(head) if head.isdigit() else None


def sweep_probes(cluster: str, *, kernel: Kernel | None = None) -> list[str]:
    """Remove probe namespaces of CLUSTER whose tracing process is gone (a SIGKILLed trace)."""
    kernel = kernel or LinuxKernel()
    prefix = names.probe_ns(cluster, "")
    removed = []
    try:
        for ns in kernel.ns_list():
            pid = _owner_pid(ns[len(prefix):]) if ns.startswith(prefix) else None
            if pid is not None and not _pid_alive(pid) and kernel.ns_delete(ns):
                removed.append(ns)
    finally:
        kernel.close()
    return removed


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Cleanup must finish: Ctrl-C or SIGTERM during it is delivered after it."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    except (ValueError, OSError):
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Making something and recording it (so that close() undoes it) must not be cut in two: Ctrl-C or
    SIGTERM arriving in between is held and re-delivered right after. Python-level handlers rather than
    a blocked mask, because a child started inside (the monitor) would inherit the mask and could not
    be terminated. Outside the main thread no Python handler runs, so there is nothing to hold."""
    held: list[int] = []
    try:
        previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if held:
            signal.raise_signal(held[0])


class _Run:
    """Everything one trace makes, undone in reverse order by close()."""

    def __init__(self, request: TraceRequest, kernel: Kernel) -> None:
        self.request = request
        self.kernel = kernel
        self.node_ns = names.node_ns(request.cluster, request.node)
        self.run_id = f"{os.getpid()}-{random.getrandbits(24):06x}"
        self.table = f"{TABLE_PREFIX}{self.run_id}"
        self.probe_ns: str | None = None
        self.table_made = False
        self.monitor: subprocess.Popen[bytes] | None = None
        self.sockets: list[socket.socket] = []
        self.sentinel: socket.socket | None = None
        self.leftover = b""  # monitor output after the sentinel's trace, not yet a whole line

    def close(self) -> None:
        """Undo everything, each step whatever the others did; the first failure is raised at the end."""
        failures: list[BaseException] = []

        def step(fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as exc:
                failures.append(exc)

        with _deferred_signals():
            for sock in self.sockets:
                step(sock.close)
            if self.monitor is not None:
                step(self._stop_monitor)
            if self.table_made:
                step(self._delete_table)
            if self.probe_ns is not None:
                probe_ns = self.probe_ns
                step(lambda: self.kernel.ns_delete(probe_ns))
            step(self.kernel.close)
        if failures:
            raise TraceError(f"cleaning up after the trace: {failures[0]}") from failures[0]

    def _stop_monitor(self) -> None:
        assert self.monitor is not None
        self.monitor.terminate()
        try:
            self.monitor.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.monitor.kill()
            self.monitor.wait()
        if self.monitor.stdout is not None:
            self.monitor.stdout.close()

    def _delete_table(self) -> None:
        # Gone with its namespace if the node went away meanwhile.
        if namespaces.exists(self.node_ns):
            _nft(self.node_ns, "delete", "table", "ip", self.table, check=False)

    # -- origin ------------------------------------------------------------------------------------

    def make_probe_namespace(self) -> str:
        origin, request = self.request.origin, self.request
        bridge_ns = self.node_ns if origin.kind == "bridge-probe" else names.fabric_ns(request.cluster)
        bridge = names.NODE_BRIDGE if origin.kind == "bridge-probe" else names.FABRIC_BRIDGE
        if not namespaces.exists(bridge_ns):
            raise TraceError(f"namespace {bridge_ns} does not exist: is cluster {request.cluster!r} up?")
        ns = names.probe_ns(request.cluster, self.run_id)
        with _signals_held():
            self.kernel.ns_create(ns)
            self.probe_ns = ns
        host_end = names.fit_ifname(f"prb{names.short_hash(self.run_id, 8)}")
        # Hairpin like a pod's port (the kubelet's sandboxes have it): a probe reaching its own address
        # through a Service must get its packet back on the port it came from.
        self.kernel.add_veth(bridge_ns, host_end, peer_ns=ns, peer_name=origin.iface, master=bridge, peer_index=2,
                             hairpin=origin.kind == "bridge-probe")
        self.kernel.set_up(ns, "lo")
        self.kernel.set_up(ns, origin.iface)
        self.kernel.add_address(ns, origin.iface, request.src, origin.prefixlen)
        if origin.gateway:
            self.kernel.add_route(ns, "0.0.0.0/0", dev=origin.iface, gateway=origin.gateway, onlink=True)
        self.kernel.release(ns)
        self.kernel.release(bridge_ns)
        return ns

    def sender(self) -> Callable[[bytes], None]:
        """A function sending one IP packet (bytes) the way the origin would.

        The node itself and anything on its pod bridge (a pod, a bridge probe) send through their own
        kernel's routing, as a real pod does: on-link destinations are ARPed for and bridged, the rest goes
        to the gateway. What comes over the fabric is handed to the node's eth0 as link-layer frames, as a
        router would: external hosts have no routes to Service addresses, and need none."""
        origin, request = self.request.origin, self.request
        ns = {"local": self.node_ns, "namespace": origin.netns}.get(origin.kind, self.probe_ns)
        assert ns is not None
        if not namespaces.exists(ns):
            raise TraceError(f"namespace {ns} does not exist")
        if origin.kind == "local" or origin.via == names.NODE_BRIDGE:
            with namespaces.entered(ns):
                raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.sockets.append(raw)

            def send_routed(packet: bytes) -> None:
                raw.sendto(packet, (request.dst, 0))

            return send_routed
        dst_mac = _mac_of(self.node_ns, origin.via)
        src_mac = _mac_of(ns, origin.iface)
        with namespaces.entered(ns):
            link = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP))
        self.sockets.append(link)
        link.bind((origin.iface, 0))
        header = dst_mac + src_mac + struct.pack("!H", _ETH_P_IP)

        def send_frame(packet: bytes) -> None:
            link.send(header + packet)

        return send_frame

    # -- observation -------------------------------------------------------------------------------

    def capture_socket(self) -> socket.socket:
        with namespaces.entered(self.node_ns):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        self.sockets.append(cap)
        with contextlib.suppress(OSError):
            cap.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 8 << 20)
        cap.setblocking(False)
        return cap

    def chain_hooks(self) -> tuple[dict[tuple[str, str], str], list[str]]:
        """(table, chain) -> hook of every base chain in the node, and stale trace tables to remove."""
        listed = json.loads(_nft(self.node_ns, "-j", "list", "chains") or '{"nftables": []}')
        hooks: dict[tuple[str, str], str] = {}
        stale: set[str] = set()
        for item in listed.get("nftables", []):
            chain = item.get("chain")
            if not chain:
                continue
            if chain.get("hook"):
                hooks[(chain["table"], chain["name"])] = chain["hook"]
            table = str(chain["table"])
            if table.startswith(TABLE_PREFIX) and chain.get("family") == "ip":
                pid = _owner_pid(table[len(TABLE_PREFIX):])
                if pid is not None and not _pid_alive(pid):
                    stale.add(table)
        return hooks, sorted(stale)

    def start_tracing(self, probes: list[Probe], stale: list[str]) -> None:
        """The monitor first, then the table; then wait for a sentinel packet's trace to come through,
        so that no probe is sent before the monitor listens."""
        request = self.request
        with _signals_held():
            self.monitor = subprocess.Popen(namespaces.command_in(self.node_ns, ["nft", "monitor", "trace"]),
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        with namespaces.entered(self.node_ns):
            sentinel = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sockets.append(sentinel)
        sentinel.bind(("127.0.0.1", 0))
        self.sentinel = sentinel
        first, last = probes[0].sport, probes[-1].sport
        ports = str(first) if first == last else f"{first}-{last}"
        match = (f"ip saddr {request.src} ip daddr {request.dst} meta l4proto {request.proto} "
                 f"th sport {ports} th dport {request.dport}")
        sentinel_port = sentinel.getsockname()[1]
        script = "".join(f"delete table ip {t}\n" for t in stale) + f"""
table ip {self.table} {{
    chain pre {{ type filter hook prerouting priority -400; policy accept; {match} meta nftrace set 1; }}
    chain pre-late {{ type filter hook prerouting priority 500; policy accept; }}
    chain out-late {{ type filter hook output priority 500; policy accept; }}
    chain out {{
        type filter hook output priority -400; policy accept;
        {match} meta nftrace set 1
        ip daddr 127.0.0.1 udp sport {sentinel_port} meta nftrace set 1
    }}
    chain post {{ type filter hook postrouting priority 1000; policy accept; }}
    chain in {{ type filter hook input priority 1000; policy accept; }}
}}
"""
        self.table_made = True
        _nft(self.node_ns, "-f", "-", stdin=script)

    def wait_monitor_ready(self, lines: list[str], timeout: float = 2.0) -> bool:
        """Send the sentinel until its trace comes through; LINES gets what followed it."""
        assert self.monitor is not None and self.monitor.stdout is not None and self.sentinel is not None
        fd = self.monitor.stdout.fileno()
        os.set_blocking(fd, False)
        needle = f"udp sport {self.sentinel.getsockname()[1]} "
        deadline = time.monotonic() + timeout
        pending = b""
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                self.sentinel.sendto(b"kubesim-trace sentinel", ("127.0.0.1", 9))
            ready, _, _ = select.select([fd], [], [], 0.02)
            if not ready:
                continue
            chunk = _read(fd)
            if chunk is None:
                return False
            pending += chunk
            *complete, pending = pending.split(b"\n")
            text = [raw.decode(errors="replace") for raw in complete]
            marks = [i for i, line in enumerate(text) if needle in line]
            if marks:
                lines[:] = text[marks[-1] + 1:]
                self.leftover = pending
                return True
        return False


def _read(fd: int) -> bytes | None:
    """What is there to read on FD; None at its end."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            return b""
        raise
    return chunk or None


def trace(request: TraceRequest, *, pcap: str | None = None, kernel: Kernel | None = None,
          rng: random.Random | None = None) -> TraceResult:
    """Send REQUEST's probes and report what the node did with them. Everything made for the trace
    (probe namespace, trace table, monitor process, sockets) is removed before returning or raising."""
    request.check()
    node_ns = names.node_ns(request.cluster, request.node)
    if not namespaces.exists(node_ns):
        raise TraceError(f"node {request.node!r} of cluster {request.cluster!r} has no namespace ({node_ns}): "
                         "is the cluster up (`kubesim status`)?")
    started = time.monotonic()
    probes = make_probes(request.count, rng)
    run = _Run(request, kernel or LinuxKernel())
    try:
        sweep_probes(request.cluster)
        cap = run.capture_socket()
        if request.origin.kind in ("bridge-probe", "fabric-probe"):
            run.make_probe_namespace()
        send = run.sender()
        hooks: dict[tuple[str, str], str] = {}
        lines: list[str] = []
        tracing = False
        nftrace = "off"
        if request.nft_trace:
            try:
                hooks, stale = run.chain_hooks()
                run.start_tracing(probes, stale)
                tracing = run.wait_monitor_ready(lines)
                nftrace = "nftables" if tracing else "unavailable: nft monitor trace did not start"
            except (TraceError, OSError, ValueError) as exc:
                nftrace = f"unavailable: {exc}"
        hooks.update({(run.table, chain): hook for chain, hook in OWN_CHAINS.items()})
        analyzer = Analyzer(src=request.src, dst=request.dst, dport=request.dport, proto=request.proto,
                            probes=probes, own_table=run.table, chain_hooks=hooks,
                            local_addresses=_local_addresses(node_ns))
        for line in lines:
            analyzer.feed_trace(line)
        # Frames from before the probes were sent are not theirs.
        _drain(cap, None)
        for probe in probes:
            try:
                send(bytes(craft(probe, request.src, request.dst, request.dport, request.proto)))
            except OSError as exc:
                if exc.errno == errno.EPERM:
                    # A local packet dropped or rejected by netfilter on output: sendto says EPERM.
                    analyzer.states[probe.index].refused = True
                else:
                    analyzer.states[probe.index].send_error = f"sending failed: {exc.strerror}"
        monitor_fd = run.monitor.stdout.fileno() if tracing and run.monitor and run.monitor.stdout else None
        _collect(analyzer, cap, monitor_fd, run.leftover, tracing=tracing, timeout=request.timeout)
        elapsed = time.monotonic() - started
        if pcap:
            write_pcap(pcap, analyzer.relevant_frames())
        return analyzer.result(node=request.node, ingress=request.origin.ingress, nftrace=nftrace,
                               elapsed=elapsed, pcap=pcap)
    finally:
        run.close()


def _drain(cap: socket.socket, analyzer: Analyzer | None) -> None:
    while True:
        try:
            data, address = cap.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        if analyzer is not None:
            # (ifname, protocol, pkttype, hatype, address); the name is resolved in the socket's namespace.
            analyzer.feed_frame(Frame(address[0], address[2], data, time.time()))


def _collect(analyzer: Analyzer, cap: socket.socket, monitor_fd: int | None, pending: bytes, *, tracing: bool,
             timeout: float) -> None:
    """Read frames and trace lines until every probe is accounted for (then a short grace for replies
    and the last trace lines) or until TIMEOUT: a dropped probe is only known by its silence."""
    deadline = time.monotonic() + timeout
    settle: float | None = None
    watched: list[Any] = [cap] + ([monitor_fd] if monitor_fd is not None else [])
    while True:
        now = time.monotonic()
        if settle is None and analyzer.all_concluded(tracing=tracing, now=now):
            settle = now + GRACE
        end = min(deadline, settle) if settle is not None else deadline
        if now >= end:
            break
        # Poll now and then: a probe's conclusion may be that nothing more came for a while.
        ready, _, _ = select.select(watched, [], [], min(end - now, GRACE / 2))
        if cap in ready:
            _drain(cap, analyzer)
        if monitor_fd is not None and monitor_fd in ready:
            chunk = _read(monitor_fd)
            if chunk is None:
                watched.remove(monitor_fd)
                monitor_fd = None
                continue
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                analyzer.feed_trace(raw.decode(errors="replace"), time.monotonic())


def to_pcap_packets(frames: list[Frame]) -> list[Any]:
    """Frames as scapy Ethernet packets carrying the interface they were seen on and their direction,
    which pcapng keeps (an interface block per name): Wireshark and tshark show which interface each
    copy of a probe was seen on, like `tcpdump -i any` does."""
    from scapy.layers.l2 import Ether

    packets = []
    for frame in frames:
        packet = Ether(frame.data)
        packet.time = frame.time
        packet.sniffed_on = frame.ifname
        packet.direction = 2 if frame.outgoing else 1  # pcapng epb_flags: 1 inbound, 2 outbound
        packets.append(packet)
    return packets


def write_pcap(path: str, frames: list[Frame]) -> None:
    """Write FRAMES to PATH as pcapng (readable by tshark, Wireshark, tcpdump and scapy's rdpcap)."""
    from scapy.utils import PcapNgWriter

    with PcapNgWriter(path) as writer:
        if not frames:
            # A file with its section header and one interface block, so that readers see an empty capture.
            writer.linktype = 1
        for packet in to_pcap_packets(frames):
            writer.write(packet)
