"""netsim.trace_analysis (the pure half of netsim.trace), without privileges: classifying probes from
synthetic captured frames (built with scapy) and synthetic `nft monitor trace` lines, the JSON shape, and
the pcap it writes."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit
from scapy.utils import rdpcap

from netsim.trace_analysis import (
    GRACE,
    Analyzer,
    Frame,
    Origin,
    Probe,
    TraceError,
    TraceRequest,
    craft,
    iptables_rule_comments,
    make_probes,
    parse_trace_line,
    write_pcap,
)

SRC, VIP, PORT = "10.244.1.7", "10.96.0.10", 80
NODE = "172.18.0.3"
OWN = "kubesim-trace-1-abc"
HOOKS = {
    ("kubesim-proxy", "nat-prerouting"): "prerouting",
    ("kubesim-proxy", "filter-forward"): "forward",
    ("kubesim-proxy", "nat-postrouting"): "postrouting",
    (OWN, "pre"): "prerouting", (OWN, "pre-late"): "prerouting", (OWN, "post"): "postrouting",
    (OWN, "in"): "input", (OWN, "out"): "output", (OWN, "out-late"): "output",
}
IN, OUT = 0, 4  # PACKET_HOST, PACKET_OUTGOING


def probes(count: int = 3, proto: str = "tcp") -> list[Probe]:
    return make_probes(count, random.Random(7))


def analyzer(ps: list[Probe], proto: str = "tcp", local: frozenset[str] = frozenset()) -> Analyzer:
    return Analyzer(src=SRC, dst=VIP, dport=PORT, proto=proto, probes=ps, own_table=OWN, chain_hooks=HOOKS,
                    local_addresses=local)


def frame(ifname: str, pkttype: int, packet: object, t: float = 0.0) -> Frame:
    return Frame(ifname, pkttype, bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / packet), t)


def copy(probe: Probe, *, src: str = SRC, dst: str = VIP, sport: int | None = None, dport: int = PORT,
         proto: str = "tcp") -> Any:
    """The probe as seen somewhere in the node, possibly translated (same IP ID and tag)."""
    packet = craft(probe, src, dst, dport, proto)
    packet[IP].src, packet[IP].dst = src, dst
    layer = {"tcp": TCP, "udp": UDP, "sctp": SCTP}[proto]
    packet[layer].sport = probe.sport if sport is None else sport
    packet[layer].dport = dport
    del packet[IP].chksum
    return IP(bytes(packet))


def packet_line(trace_id: str, table: str, chain: str, probe: Probe, *, src: str = SRC, dst: str = VIP,
                sport: int | None = None, dport: int = PORT, iif: str = "eth0", oif: str = "",
                proto: str = "tcp") -> str:
    ifs = f'iif "{iif}" ' + (f'oif "{oif}" ' if oif else "")
    return (f"trace id {trace_id} ip {table} {chain} packet: {ifs}ether saddr 02:00:00:00:00:01 ether daddr "
            f"02:00:00:00:00:02 ip saddr {src} ip daddr {dst} ip dscp cs0 ip ecn not-ect ip ttl 64 "
            f"ip id {probe.ip_id} ip length 40 {proto} sport {probe.sport if sport is None else sport} "
            f"{proto} dport {dport} tcp flags == syn tcp window 64240 ")


def test_probes_have_consecutive_ports_and_ids() -> None:
    ps = make_probes(40, random.Random(1))
    assert [p.sport - ps[0].sport for p in ps] == list(range(40))
    assert [p.ip_id - ps[0].ip_id for p in ps] == list(range(40))
    assert all(1024 < p.sport < 65536 and 0 < p.ip_id < 65536 for p in ps)


def test_probes_keep_off_the_source_ports_conntrack_already_holds() -> None:
    # the range random.Random(1) picks first, and one port of it taken: the probes move elsewhere
    first = [p.sport for p in make_probes(40, random.Random(1))]
    moved = [p.sport for p in make_probes(40, random.Random(1), busy={first[17]})]
    assert first[17] not in moved and moved == list(range(moved[0], moved[0] + 40))


def test_conntrack_source_ports_are_the_original_directions(monkeypatch: pytest.MonkeyPatch) -> None:
    from netsim import trace

    listing = ("tcp      6 117 SYN_SENT src=10.244.1.7 dst=10.96.0.10 sport=40001 dport=80 [UNREPLIED] "
               "src=10.244.2.3 dst=10.244.1.7 sport=8080 dport=40001 mark=0 use=1\n"
               "udp      17 29 src=10.244.1.7 dst=10.96.0.10 sport=5353 dport=53 src=10.96.0.10 dst=10.244.1.7 "
               "sport=53 dport=5353 mark=0 use=1\n")
    monkeypatch.setattr(trace.subprocess, "run",
                        lambda *a, **k: trace.subprocess.CompletedProcess([], 0, stdout=listing, stderr=""))
    assert trace._conntrack_source_ports("ns", "10.244.1.7") == {40001, 5353}


@pytest.mark.parametrize("proto", ["tcp", "udp", "sctp"])
def test_crafted_probes(proto: str) -> None:
    probe = make_probes(1, random.Random(3))[0]
    packet = IP(bytes(craft(probe, SRC, VIP, 53, proto)))
    assert (packet.src, packet.dst, packet.id) == (SRC, VIP, probe.ip_id)
    if proto == "tcp":
        assert packet[TCP].flags == "S" and packet[TCP].seq == probe.tag and packet[TCP].dport == 53
    elif proto == "udp":
        assert packet[UDP].sport == probe.sport and bytes(packet[UDP].payload).endswith(str(probe.tag).encode())
    else:
        assert packet[SCTP].tag == 0 and packet[SCTPChunkInit].init_tag == probe.tag


def test_dnat_with_masquerade_seen_on_the_wire() -> None:
    ps = probes(3)
    a = analyzer(ps)
    endpoints = ["10.244.2.5", "10.244.1.9", "10.244.2.5"]
    for p, ep in zip(ps, endpoints, strict=True):
        a.feed_frame(frame("eth0", IN, copy(p)))
        a.feed_frame(frame("eth0", OUT, copy(p, src=NODE, dst=ep, sport=40000 + p.index, dport=8080)))
    assert a.all_concluded(tracing=False)
    result = a.result(node="worker-1", ingress="external")
    assert result.result == "DNAT"
    assert result.endpoints == ["10.244.1.9:8080", "10.244.2.5:8080"]
    assert result.masquerade is True and result.source_seen == NODE
    assert result.results == {"DNAT": 3}
    assert [h["verdict"] for h in result.hops] == ["in", "out"]


def test_endpoints_are_sorted_by_address_not_text() -> None:
    ps = probes(3)
    a = analyzer(ps)
    for p, ep in zip(ps, ["10.244.10.2", "10.244.9.2", "10.244.2.2"], strict=True):
        a.feed_frame(frame("eth0", OUT, copy(p, dst=ep, dport=8080)))
    assert a.result().endpoints == ["10.244.2.2:8080", "10.244.9.2:8080", "10.244.10.2:8080"]


def test_reject_seen_as_icmp_unreachable_quoting_the_probe() -> None:
    ps = probes(2)
    a = analyzer(ps)
    for p in ps:
        a.feed_frame(frame("veth1", IN, copy(p)))
        unreachable = IP(src="10.244.1.1", dst=SRC) / ICMP(type=3, code=3) / bytes(copy(p))[:28]
        a.feed_frame(frame("veth1", OUT, unreachable))
    result = a.result()
    assert result.result == "REJECT" and result.endpoints == [] and result.masquerade is False
    assert result.flows[0]["reply"] == "icmp unreachable (port)"
    assert result.hops[-1]["verdict"] == "reply: icmp unreachable (port)"


def test_reject_and_drop_named_by_the_rule_trace() -> None:
    ps = probes(2)
    a = analyzer(ps)
    first, second = ps
    a.feed_trace(packet_line("aa", OWN, "pre", first))
    a.feed_trace(packet_line("aa", "kubesim-proxy", "filter-forward", first, oif="eth0"))
    a.feed_trace("trace id aa ip kubesim-proxy services-endpoints-check rule ip daddr . meta l4proto . th dport "
                 "vmap @no-endpoint-services (verdict goto reject-chain)")
    a.feed_trace("trace id aa ip kubesim-proxy reject-chain rule reject (verdict drop)")
    a.feed_trace(packet_line("bb", OWN, "pre", second))
    a.feed_trace(packet_line("bb", "kubesim-proxy", "filter-forward", second, oif="eth0"))
    a.feed_trace("trace id bb ip kubesim-proxy cluster-ips-check rule ip daddr 10.96.0.0/16 drop (verdict drop)")
    assert a.all_concluded(tracing=True)
    flows = a.result().flows
    assert [f["result"] for f in flows] == ["REJECT", "DROP"]
    hops = a.hops(a.states[0])
    assert hops[-1] == {"interface": "eth0>eth0", "hook": "forward", "table": "ip kubesim-proxy",
                        "chain": "reject-chain", "rule": "reject", "verdict": "drop", "packet": ""}


NFT_FILTER = """table ip filter {
	chain FORWARD { # handle 1
		type filter hook forward priority filter; policy accept;
		counter packets 3 bytes 180 jump KUBE-NWPLCY-FORWARD # handle 9
	}

	chain KUBE-NWPLCY-IG-abc { # handle 5
		counter packets 0 bytes 0 meta mark set mark and 0xfffdffff # handle 6
		counter packets 0 bytes 0 jump KUBE-NWPLCY-I-x.deny # handle 7
		counter packets 0 bytes 0 drop # handle 8
	}
}
"""
SAVED_FILTER = """# Generated by iptables-nft-save
*filter
:FORWARD ACCEPT [0:0]
:KUBE-NWPLCY-IG-abc - [0:0]
-A FORWARD -m comment --comment kubesim-netpol -j KUBE-NWPLCY-FORWARD
-A KUBE-NWPLCY-IG-abc -j MARK --and-mark 0xfffdffff
-A KUBE-NWPLCY-IG-abc -j KUBE-NWPLCY-I-x.deny
-A KUBE-NWPLCY-IG-abc -m comment --comment "drop: ingress isolated by x/deny-all" -j DROP
COMMIT
"""


def test_trace_lines_keep_the_rule_handle_out_of_the_rule() -> None:
    event = parse_trace_line("trace id 1 ip filter KUBE-NWPLCY-IG-abc rule counter packets 0 bytes 0 drop "
                             "# handle 8 (verdict drop)")
    assert event is not None
    assert (event.rule, event.verdict, event.handle) == ("drop", "drop", 8)
    unhandled = parse_trace_line("trace id 1 ip kubesim-proxy services rule ip daddr 1.2.3.4 (verdict continue)")
    assert unhandled is not None and unhandled.handle == 0


def test_iptables_comments_are_joined_to_rules_by_position() -> None:
    comments = iptables_rule_comments(NFT_FILTER, SAVED_FILTER)
    assert comments == {("FORWARD", 9): "kubesim-netpol",
                        ("KUBE-NWPLCY-IG-abc", 8): "drop: ingress isolated by x/deny-all"}


def test_an_iptables_hop_shows_the_comment_nft_cannot() -> None:
    ps = probes(1)
    a = analyzer(ps)
    a.feed_trace(packet_line("aa", OWN, "pre", ps[0]))
    a.feed_trace(packet_line("aa", "filter", "KUBE-NWPLCY-IG-abc", ps[0], oif="eth0"))
    a.feed_trace("trace id aa ip filter KUBE-NWPLCY-IG-abc rule counter packets 0 bytes 0 drop # handle 8 "
                 "(verdict drop)")
    a.rule_comments = {"ip filter": iptables_rule_comments(NFT_FILTER, SAVED_FILTER)}
    hop = a.hops(a.states[0])[-1]
    assert (hop["chain"], hop["rule"], hop["verdict"]) == (
        "KUBE-NWPLCY-IG-abc", 'drop comment "drop: ingress isolated by x/deny-all"', "drop")


def test_silence_is_a_drop() -> None:
    ps = probes(2)
    a = analyzer(ps)
    a.feed_frame(frame("eth0", IN, copy(ps[0])))
    assert not a.all_concluded(tracing=False)
    result = a.result()
    assert result.result == "DROP" and result.results == {"DROP": 2}


def test_dnat_from_the_trace_when_the_wire_shows_nothing() -> None:
    """An endpoint address nobody has on the node's bridge: the packet waits for ARP after postrouting."""
    (p,) = probes(1)
    a = analyzer([p])
    a.feed_trace(packet_line("cc", OWN, "pre", p, iif="cbr0"))
    a.feed_trace("trace id cc ip kubesim-proxy lb-3 rule dnat ip to ip daddr . meta l4proto . th dport . numgen "
                 "random mod 3 map @lb-3-backends (verdict accept)")
    a.feed_trace(packet_line("cc", OWN, "pre-late", p, dst="10.244.1.10", dport=8080, iif="cbr0"))
    a.feed_trace(packet_line("cc", OWN, "post", p, dst="10.244.1.10", dport=8080, iif="cbr0", oif="cbr0"))
    assert a.all_concluded(tracing=True)
    result = a.result()
    assert (result.result, result.endpoints, result.masquerade) == ("DNAT", ["10.244.1.10:8080"], False)
    assert [h["verdict"] for h in result.hops] == ["accept", "translated", "leaves"]


def test_translated_but_never_routed_is_concluded_after_a_grace() -> None:
    (p,) = probes(1)
    a = analyzer([p])
    a.feed_trace(packet_line("dd", OWN, "pre-late", p, dst="10.244.1.10", dport=8080), now=100.0)
    assert not a.all_concluded(tracing=True, now=100.0)
    assert a.all_concluded(tracing=True, now=100.0 + 2 * GRACE)
    flow = a.result().flows[0]
    assert flow["result"] == "DNAT" and flow["endpoint"] == "10.244.1.10:8080" and "ARP" in flow["note"]


def test_local_delivery() -> None:
    (p,) = probes(1)
    a = Analyzer(src=SRC, dst=NODE, dport=10256, proto="tcp", probes=[p], own_table=OWN, chain_hooks=HOOKS,
                 local_addresses=frozenset({NODE}))
    a.feed_trace(packet_line("ee", OWN, "in", p, dst=NODE, dport=10256))
    a.feed_frame(frame("eth0", OUT, IP(src=NODE, dst=SRC) / TCP(sport=10256, dport=p.sport, flags="SA")))
    result = a.result()
    assert result.result == "LOCAL" and result.flows[0]["reply"] == "syn-ack"
    assert result.endpoints == [] and result.masquerade is False


def test_local_delivery_of_the_nodes_own_packet_on_lo() -> None:
    (p,) = probes(1)
    a = Analyzer(src=NODE, dst=NODE, dport=22, proto="tcp", probes=[p], local_addresses=frozenset({NODE}))
    packet = craft(p, NODE, NODE, 22, "tcp")
    a.feed_frame(Frame("lo", OUT, bytes(Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") / packet), 0.0))
    assert a.result().result == "LOCAL"


def test_untouched_when_forwarded_unchanged() -> None:
    (p,) = probes(1)
    a = analyzer([p])
    a.feed_frame(frame("veth1", IN, copy(p)))
    a.feed_frame(frame("eth0", OUT, copy(p)))
    result = a.result()
    assert (result.result, result.masquerade, result.source_seen) == ("NONE", False, SRC)


def test_an_endpoints_rst_does_not_hide_the_dnat() -> None:
    (p,) = probes(1)
    a = analyzer([p])
    a.feed_frame(frame("eth0", OUT, copy(p, dst="10.244.2.5", dport=8080)))
    a.feed_frame(frame("eth0", IN, IP(src="10.244.2.5", dst=SRC) / TCP(sport=8080, dport=p.sport, flags="RA")))
    flow = a.result().flows[0]
    assert (flow["result"], flow["reply"]) == ("DNAT", "rst")


@pytest.mark.parametrize("proto", ["udp", "sctp"])
def test_udp_and_sctp_copies_are_recognised(proto: str) -> None:
    ps = probes(2)
    a = analyzer(ps, proto)
    for p in ps:
        a.feed_frame(frame("eth0", OUT, copy(p, dst="10.244.2.5", dport=5353, proto=proto)))
    assert a.result().endpoints == ["10.244.2.5:5353"]


def test_unrelated_traffic_is_ignored() -> None:
    (p,) = probes(1)
    a = analyzer([p])
    assert not a.feed_frame(frame("eth0", IN, IP(src=NODE, dst="172.18.0.2", id=p.ip_id) / TCP(sport=1, dport=6443)))
    assert not a.feed_frame(Frame("eth0", IN, b"\x00" * 10, 0.0))
    a.feed_trace(f"trace id ff ip {OWN} out packet: oif \"lo\" ip saddr 127.0.0.1 ip daddr 127.0.0.1 ip id "
                 f"{p.ip_id} ip length 50 udp sport 4444 udp dport 9 ")
    assert a.states[0].events == []
    assert a.result().result == "DROP"


def test_trace_line_parsing() -> None:
    event = parse_trace_line('trace id 5854afd5 ip kubesim-proxy filter-forward packet: iif "eth0" oif "cbr0" '
                             "ip saddr 172.18.9.9 ip daddr 10.244.1.10 ip id 4242 ip length 40 tcp sport 40001 "
                             "tcp dport 8080 tcp flags == syn")
    assert event is not None and event.kind == "packet" and event.get("oif") == "cbr0"
    headers = event.headers()
    assert headers is not None
    assert (headers.proto, headers.src, headers.dst, headers.ip_id, headers.sport, headers.dport) == (
        6, "172.18.9.9", "10.244.1.10", 4242, 40001, 8080)
    rule = parse_trace_line("trace id 5854afd5 ip kubesim-proxy services rule ip daddr . meta l4proto . th dport "
                            "vmap @service-ips (verdict goto cluster-ip)")
    assert rule is not None and (rule.rule, rule.verdict) == (
        "ip daddr . meta l4proto . th dport vmap @service-ips", "goto cluster-ip")
    policy = parse_trace_line("trace id 5854afd5 ip kubesim-proxy filter-forward policy accept meta mark 0x00004000 ")
    assert policy is not None and (policy.kind, policy.verdict) == ("policy", "accept")
    assert parse_trace_line("not a trace line") is None
    iptables = parse_trace_line("trace id 1 ip nat KUBE-SERVICES rule meta l4proto tcp ip daddr 10.96.0.10  tcp dport "
                                "80 counter packets 12 bytes 720 jump KUBE-SVC-X (verdict jump KUBE-SVC-X)")
    assert iptables is not None
    assert iptables.rule == "meta l4proto tcp ip daddr 10.96.0.10 tcp dport 80 jump KUBE-SVC-X"


def test_json_shape_is_stable() -> None:
    ps = probes(2)
    a = analyzer(ps)
    a.feed_frame(frame("eth0", OUT, copy(ps[0], dst="10.244.2.5", dport=8080)))
    data = json.loads(a.result(node="worker-1", ingress="pod").to_json())
    assert list(data)[:6] == ["result", "endpoints", "masquerade", "source_seen", "probes", "hops"]
    assert isinstance(data["result"], str) and data["result"] in ("DNAT", "LOCAL", "DROP", "REJECT", "NONE")
    assert isinstance(data["endpoints"], list) and isinstance(data["masquerade"], bool)
    assert isinstance(data["source_seen"], str) and data["probes"] == 2
    for hop in data["hops"]:
        assert set(hop) == {"interface", "hook", "table", "chain", "rule", "verdict", "packet"}
    assert {"node", "src", "dst", "proto", "ingress", "results", "flows", "nftrace", "elapsed", "pcap"} <= set(data)
    assert data["results"] == {"DNAT": 1, "DROP": 1} and data["result"] == "DNAT"


def test_pcap_is_readable(tmp_path: Path) -> None:
    ps = probes(2)
    a = analyzer(ps)
    a.feed_frame(frame("veth1", IN, copy(ps[0]), 1.0))
    a.feed_frame(frame("eth0", OUT, copy(ps[0], dst="10.244.2.5", dport=8080), 2.0))
    a.feed_frame(frame("eth0", OUT, ARP(psrc=NODE, pdst="10.244.2.5"), 3.0))
    a.feed_frame(frame("eth0", OUT, ARP(psrc=NODE, pdst="192.0.2.99"), 4.0))
    path = tmp_path / "trace.pcap"
    write_pcap(str(path), a.relevant_frames())
    packets = rdpcap(str(path))
    assert len(packets) == 3
    assert [p.sniffed_on for p in packets] == ["veth1", "eth0", "eth0"]
    assert packets[1][IP].dst == "10.244.2.5" and packets[2][ARP].pdst == "10.244.2.5"
    empty = tmp_path / "empty.pcap"
    write_pcap(str(empty), [])
    assert len(rdpcap(str(empty))) == 0


def test_request_checks() -> None:
    good = TraceRequest("c", "n", SRC, VIP, 80, Origin.local())
    good.check()
    for bad in (dict(proto="icmp"), dict(count=0), dict(dport=0), dict(src="nope")):
        with pytest.raises(TraceError):
            dataclasses.replace(good, **bad).check()
    assert Origin.bridge_probe(24).ingress == "pod" and Origin.fabric_probe(32).ingress == "external"
    assert Origin.local().ingress == "node"
