"""Packet tracing, the pure half: what is asked (TraceRequest, Origin, probes crafted with scapy), what
is seen (frames from the node's interfaces, `nft monitor trace` lines) and what it means (Analyzer ->
TraceResult), plus writing what was seen as pcapng. Nothing here touches the kernel, so every
classification is unit-tested on synthetic frames and trace lines; netsim/trace.py is the kernel
runner that feeds it.

Errors:
    NetsimError
    └── TraceError      the request cannot be traced as asked (names the object and the fix)
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import shlex
import socket
import struct
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from netsim import names
from netsim.errors import NetsimError


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

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4

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


def make_probes(count: int, rng: random.Random | None = None, *, busy: Collection[int] = ()) -> list[Probe]:
    """COUNT probes with consecutive source ports and IP IDs from random bases (unlikely to meet a
    conntrack entry of an earlier trace, which would skip the rules that only see new connections).

    No probe takes a port of BUSY (the source's ports in the node's conntrack table): a probe whose
    reply tuple an earlier connection already holds (say one DNATed from a Service to the same pod) is
    given another source port by the kernel's NAT, which the trace would read as masquerading."""
    rng = rng or random.Random()
    sport = rng.randrange(20000, 60000 - count)
    for _ in range(100):
        if not any(port in busy for port in range(sport, sport + count)):
            break
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
_HANDLE = re.compile(r"\s*# handle (\d+)")  # what `nft -a monitor trace` adds to each rule
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
    handle: int = 0  # the rule's handle in its chain (0: not known)

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
        text = found["rule"] if found else rest
        handle = _HANDLE.search(text)
        # iptables-nft rules carry counters: noise in a trace, and never the same twice.
        rule = " ".join(_COUNTER.sub("", _HANDLE.sub("", text)).split())
        return TraceEvent(*base, rule=rule, verdict=found["verdict"] if found else "",
                          handle=int(handle[1]) if handle else 0)
    # "verdict continue", "policy accept meta mark 0x00004000": the first word is the verdict.
    return TraceEvent(*base, verdict=rest.split(" ")[0] if rest else "")


# iptables-nft's tables: their rules' `-m comment` is kept where `nft list` and the trace do not show it.
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
_CHAIN_HEAD = re.compile(r"^\s*chain (\S+) \{")
_RULE_HANDLE = re.compile(r"# handle (\d+)\s*$")


def iptables_rule_comments(nft_listing: str, saved: str) -> dict[tuple[str, int], str]:
    """(chain, rule handle) -> the rule's `-m comment`, for one iptables-nft table.

    NFT_LISTING is `nft -a list table ip T`, SAVED is `iptables-nft-save -t T`. Both list a chain's
    rules in the same order, so the n-th rule with a handle is the n-th `-A CHAIN` line. nft shows
    neither the comment of an iptables-nft rule nor can the trace, so this is how a hop in iptables
    mode gets the comment (a NetworkPolicy's name, a Service's) that nftables mode shows by itself."""
    handles: dict[str, list[int]] = {}
    chain = ""
    for line in nft_listing.splitlines():
        head = _CHAIN_HEAD.match(line)
        if head:
            chain = head[1]
            handles.setdefault(chain, [])
            continue
        found = _RULE_HANDLE.search(line)
        if chain and found and not line.lstrip().startswith(("type ", "policy ")):
            handles[chain].append(int(found[1]))
    comments: dict[tuple[str, int], str] = {}
    position: dict[str, int] = {}
    for line in saved.splitlines():
        if not line.startswith("-A "):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        chain = words[1]
        index = position.get(chain, 0)
        position[chain] = index + 1
        if "--comment" in words[:-1] and index < len(handles.get(chain, [])):
            comments[(chain, handles[chain][index])] = words[words.index("--comment") + 1]
    return comments


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
        # "family table" -> (chain, handle) -> comment: what iptables-nft keeps out of the trace's rules.
        self.rule_comments: dict[str, dict[tuple[str, int], str]] = {}

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
                rule = event.rule
                comment = self.rule_comments.get(table, {}).get((event.chain, event.handle))
                if comment and "comment " not in rule:
                    rule = f"{rule} comment {json.dumps(comment)}"  # as nft prints a comment
                hops.append(_hop(interface, hook, table, event.chain, rule, event.verdict))
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
