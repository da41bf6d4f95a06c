"""kubesim.flows without privileges: conntrack events and nftables trace lines (recorded from a real
node of a kubesim cluster) joined with pods, Services and nodes into `kubesim observe`'s records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubesim.flows import Directory, Filter, FlowJoiner, check_filter_values, describe, parse_conntrack, render
from kubesim.observe import rule_of_handle, stale_tables
from netsim.topology import load_topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
OWN = "kubesim-observe-4242"

# From worker-1 (172.18.0.3, pod range 10.244.1.0/24) while pods called the web Service.
CT_VIA_SERVICE = ("    [NEW] tcp      6 120 SYN_SENT src=10.244.1.7 dst=10.96.12.3 sport=40000 dport=80 [UNREPLIED] "
                  "src=10.244.2.5 dst=10.244.1.7 sport=8080 dport=40000")
CT_HAIRPIN = ("[NEW] tcp      6 120 SYN_SENT src=10.244.1.3 dst=10.96.12.3 sport=33960 dport=80 [UNREPLIED] "
              "src=10.244.1.3 dst=10.244.1.1 sport=8080 dport=27578")
CT_PROBE = ("[NEW] tcp      6 120 SYN_SENT src=10.244.1.1 dst=10.244.1.3 sport=57692 dport=8080 [UNREPLIED] "
            "src=10.244.1.3 dst=10.244.1.1 sport=8080 dport=57692")
CT_LOOPBACK = ("[NEW] udp      17 30 src=127.0.0.1 dst=127.0.0.1 sport=5000 dport=9 [UNREPLIED] src=127.0.0.1 "
               "dst=127.0.0.1 sport=9 dport=5000")
REJECT_TRACE = [
    f'trace id 33c6c491 ip {OWN} pre packet: iif "cbr0" ether saddr c2:95:30:80:3e:b0 ether daddr 62:e0:fc:2d:15:c8 '
    "ip saddr 10.244.1.7 ip daddr 10.96.40.4 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 3322 ip length 60 "
    "tcp sport 46684 tcp dport 80 tcp flags == syn tcp window 64240 ",
    f"trace id 33c6c491 ip {OWN} pre rule ct state new meta nftrace set 1 (verdict continue)",
    'trace id 13c5f2ef ip kubesim-proxy filter-forward packet: iif "cbr0" oif "eth0" ip saddr 10.244.1.7 '
    "ip daddr 10.96.40.4 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 3322 ip length 60 tcp sport 46684 "
    "tcp dport 80 tcp flags == syn tcp window 64240 ",
    "trace id 13c5f2ef ip kubesim-proxy filter-forward rule ct state new jump services-endpoints-check "
    "(verdict jump services-endpoints-check)",
    "trace id 13c5f2ef ip kubesim-proxy services-endpoints-check rule ip daddr . meta l4proto . th dport "
    "vmap @no-endpoint-services (verdict goto reject-chain)",
    "trace id 13c5f2ef ip kubesim-proxy reject-chain rule reject (verdict drop)",
]
# A NetworkPolicy drop after DNAT: the forward hook sees the backend, the first line the Service.
POLICY_DROP_TRACE = [
    f'trace id 0000aaaa ip {OWN} pre packet: iif "cbr0" ip saddr 10.244.1.7 ip daddr 10.96.12.3 ip id 77 '
    "tcp sport 41000 tcp dport 80 tcp flags == syn",
    'trace id 0000bbbb ip kubesim-netpol forward packet: iif "cbr0" oif "eth0" ip saddr 10.244.1.7 '
    "ip daddr 10.244.2.5 ip id 77 tcp sport 41000 tcp dport 8080 tcp flags == syn",
    "trace id 0000bbbb ip kubesim-netpol ingress rule drop (verdict drop)",
]


def pod(namespace: str, name: str, ip: str, node: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {"nodeName": node},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}


def svc(namespace: str, name: str, ip: str, *, node_port: int | None = None) -> dict[str, Any]:
    port: dict[str, Any] = {"port": 80, "targetPort": 8080, "protocol": "TCP"}
    if node_port:
        port["nodePort"] = node_port
    return {"metadata": {"namespace": namespace, "name": name},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [port]}}


@pytest.fixture
def directory() -> Directory:
    return Directory.from_objects(
        load_topology(TOPOLOGIES / "two-node.yaml"),
        pods=[pod("default", "client-abc", "10.244.1.7", "worker-1"),
              pod("default", "web-xyz", "10.244.2.5", "worker-2"),
              pod("default", "web-def", "10.244.1.3", "worker-1")],
        services=[svc("default", "web", "10.96.12.3", node_port=30080), svc("default", "lonely", "10.96.40.4")])


def joiner() -> FlowJoiner:
    return FlowJoiner("worker-1", own_table=OWN, clock=lambda: 1765000000.25)


def test_conntrack_lines_parse_into_both_directions() -> None:
    entry = parse_conntrack(CT_VIA_SERVICE)
    assert entry == {"event": "NEW", "proto": "tcp",
                     "orig": {"src": "10.244.1.7", "dst": "10.96.12.3", "sport": "40000", "dport": "80"},
                     "reply": {"src": "10.244.2.5", "dst": "10.244.1.7", "sport": "8080", "dport": "40000"}}
    extended = parse_conntrack("[NEW] ipv4     2 udp      17 30 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
                               "[UNREPLIED] src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1")
    assert extended is not None and extended["proto"] == "udp"
    assert parse_conntrack("conntrack v1.4.7 (conntrack-tools): 9 flow events have been shown.") is None


def test_a_forwarded_flow_to_a_service_names_the_service_and_the_backend(directory: Directory) -> None:
    flow = joiner().conntrack(CT_VIA_SERVICE)
    assert flow is not None
    record = describe(flow, directory)
    assert record["verdict"] == "FORWARDED" and record["node"] == "worker-1" and record["protocol"] == "TCP"
    assert record["source"] == {"ip": "10.244.1.7", "port": 40000, "kind": "pod", "name": "default/client-abc",
                                "namespace": "default", "pod": "client-abc", "node": "worker-1"}
    assert record["service"] == {"namespace": "default", "name": "web", "ip": "10.96.12.3", "port": 80}
    assert record["backend"]["name"] == "default/web-xyz" and record["backend"]["port"] == 8080
    assert record["snat"] is None
    assert record["time"] == "2025-12-06T05:46:40.250000Z"
    assert record["summary"] == ("05:46:40.250 worker-1 TCP default/client-abc 10.244.1.7:40000 -> default/web "
                                 "(10.96.12.3:80) -> default/web-xyz 10.244.2.5:8080 FORWARDED")
    json.dumps(record)  # -o json prints exactly this


def test_a_hairpin_flow_says_it_was_masqueraded(directory: Directory) -> None:
    flow = joiner().conntrack(CT_HAIRPIN)
    assert flow is not None
    record = describe(flow, directory)
    assert record["snat"] == "10.244.1.1"
    assert record["summary"].endswith("-> default/web-def 10.244.1.3:8080 FORWARDED (masqueraded to 10.244.1.1)")


def test_a_flow_without_dnat_has_no_service_and_no_separate_backend(directory: Directory) -> None:
    flow = joiner().conntrack(CT_PROBE)
    assert flow is not None
    record = describe(flow, directory)
    assert record["service"] is None and record["backend"] is None
    assert record["source"]["kind"] == "node" and record["source"]["name"] == "worker-1"
    assert "node/worker-1 10.244.1.1:57692 -> default/web-def 10.244.1.3:8080 FORWARDED" in record["summary"]


def test_loopback_and_other_events_are_not_flows() -> None:
    assert joiner().conntrack(CT_LOOPBACK) is None
    assert joiner().conntrack(CT_VIA_SERVICE.replace("[NEW]", "[DESTROY]")) is None


def test_kube_proxys_reject_is_rejected_with_the_service(directory: Directory) -> None:
    j = joiner()
    flows = [f for f in (j.trace(line) for line in REJECT_TRACE) if f is not None]
    assert len(flows) == 1
    record = describe(flows[0], directory)
    assert record["verdict"] == "REJECTED"
    assert record["service"] == {"namespace": "default", "name": "lonely", "ip": "10.96.40.4", "port": 80}
    assert record["source"]["name"] == "default/client-abc" and record["backend"] is None
    assert record["rule"] == "ip kubesim-proxy reject-chain: reject"
    assert record["summary"].endswith("default/client-abc 10.244.1.7:46684 -> default/lonely (10.96.40.4:80) "
                                      "REJECTED by ip kubesim-proxy reject-chain: reject")


def test_a_drop_after_dnat_names_the_service_the_client_asked_for_and_the_backend(directory: Directory) -> None:
    j = joiner()
    flows = [f for f in (j.trace(line) for line in POLICY_DROP_TRACE) if f is not None]
    assert len(flows) == 1
    record = describe(flows[0], directory)
    assert record["verdict"] == "DROPPED"
    assert record["service"]["name"] == "web"
    assert record["backend"]["name"] == "default/web-xyz" and record["backend"]["port"] == 8080


def test_a_chain_policy_drop_is_dropped_and_accepts_say_nothing() -> None:
    j = joiner()
    j.trace('trace id 1 ip filter input packet: iif "eth0" ip saddr 172.18.0.9 ip daddr 172.18.0.3 ip id 5 '
            "udp sport 9 udp dport 53")
    assert j.trace("trace id 1 ip filter input rule accept (verdict accept)") is None
    j.trace('trace id 2 ip filter input packet: iif "eth0" ip saddr 172.18.0.9 ip daddr 172.18.0.3 ip id 6 '
            "udp sport 9 udp dport 54")
    flow = j.trace("trace id 2 ip filter input policy drop")
    assert flow is not None and flow.verdict == "DROPPED" and flow.proto == "UDP" and flow.dport == 54
    assert flow.rule == "ip filter input: policy drop"


def test_our_own_tables_rules_decide_nothing() -> None:
    j = joiner()
    j.trace(REJECT_TRACE[0])
    assert j.trace(f"trace id 33c6c491 ip {OWN} pre rule meta nftrace set 1 (verdict drop)") is None


def test_a_nodeport_on_a_node_address_is_its_service(directory: Directory) -> None:
    line = ("[NEW] tcp 6 120 SYN_SENT src=172.18.0.100 dst=172.18.0.3 sport=5555 dport=30080 [UNREPLIED] "
            "src=10.244.2.5 dst=172.18.0.3 sport=8080 dport=61000")
    flow = joiner().conntrack(line)
    assert flow is not None
    record = describe(flow, directory)
    assert record["service"] == {"namespace": "default", "name": "web", "ip": "172.18.0.3", "port": 80}
    assert record["snat"] == "172.18.0.3"


def test_a_gone_pod_keeps_its_name_until_its_address_is_taken(directory: Directory) -> None:
    topology = load_topology(TOPOLOGIES / "two-node.yaml")
    later = Directory.from_objects(topology, pods=[pod("default", "new", "10.244.1.3", "worker-1")],
                                   previous=directory)
    assert later.name_of("10.244.2.5") is not None and later.name_of("10.244.2.5").name == "default/web-xyz"
    assert later.name_of("10.244.1.3").name == "default/new"


@pytest.mark.parametrize(("flt", "shown"), [
    (Filter(), True),
    (Filter(verdicts=("FORWARDED",)), True),
    (Filter(verdicts=("REJECTED", "DROPPED")), False),
    (Filter(services=("web",)), True),
    (Filter(services=("default/web",)), True),
    (Filter(services=("kube-system/web",)), False),
    (Filter(pods=("default/web",)), True),  # a prefix: the backend web-xyz
    (Filter(pods=("client-abc",)), True),
    (Filter(pods=("default/",)), True),
    (Filter(pods=("kube-system/",)), False),
    (Filter(nodes=("worker-2",)), False),
    (Filter(pods=("client",), verdicts=("FORWARDED",), nodes=("worker-1",)), True),
])
def test_filters(directory: Directory, flt: Filter, shown: bool) -> None:
    flow = joiner().conntrack(CT_VIA_SERVICE)
    assert flow is not None
    assert flt.matches(describe(flow, directory)) is shown


def test_bad_filter_values_say_what_to_give() -> None:
    assert check_filter_values(["a/b/c"], [], []) == "--pod 'a/b/c': give NAMESPACE/NAME, NAMESPACE/ or NAME"
    assert check_filter_values([], ["ns/"], []) == "--service 'ns/': give NAMESPACE/NAME or NAME"
    assert "--verdict 'LOST'" in str(check_filter_values([], [], ["LOST"]))
    assert check_filter_values(["default/web"], ["web"], ["DROPPED"]) is None


def test_render_of_an_address_nobody_is() -> None:
    record = {"time": "2026-01-01T00:00:00.000000Z", "node": "n", "protocol": "UDP", "verdict": "DROPPED",
              "source": {"ip": "192.0.2.1", "port": 1}, "destination": {"ip": "192.0.2.2", "port": 2},
              "service": None, "backend": None, "snat": None}
    assert render(record) == "00:00:00.000 n UDP 192.0.2.1:1 -> 192.0.2.2:2 DROPPED"


def test_stale_observe_tables_are_those_of_dead_processes() -> None:
    listing = "table ip kubesim-proxy\ntable ip kubesim-observe-1\ntable ip kubesim-observe-999999999\n"
    # pid 1 lives; no pid is that large.
    assert stale_tables(listing) == ["kubesim-observe-999999999"]


# `nft -a monitor trace` after the policy agent rebuilt its table: its cache knows neither the new
# chain's rule nor that handle 3's text changed.
STALE_TRACE = [
    'trace id 19d1eb28 ip kubesim-netpol forward-ingress packet: iif "eth0" oif "cbr0" ip saddr 10.244.1.7 '
    "ip daddr 10.244.2.5 ip id 9 tcp sport 42000 tcp dport 8080 tcp flags == syn",
    "trace id 19d1eb28 ip kubesim-netpol forward-ingress rule ip daddr vmap @ingress-pods # handle 3 "
    "(verdict goto ingress-isolated-07f18795f9f3)",
    "trace id 19d1eb28 ip kubesim-netpol ingress-isolated-07f18795f9f3 unknown rule handle 4 (verdict drop)",
]


def test_a_rule_the_monitor_does_not_know_is_looked_up_in_the_kernel(directory: Directory) -> None:
    asked = []

    def lookup(family: str, table: str, chain: str, handle: int) -> str | None:
        asked.append((family, table, chain, handle))
        return 'counter packets 3 bytes 180 drop comment "ingress isolated by default/web-deny"'

    j = FlowJoiner("worker-2", own_table=OWN, rule_text=lookup)
    flows = [f for f in (j.trace(line) for line in STALE_TRACE) if f is not None]
    assert asked == [("ip", "kubesim-netpol", "ingress-isolated-07f18795f9f3", 4)]
    assert len(flows) == 1 and flows[0].verdict == "DROPPED"
    assert flows[0].rule == ('ip kubesim-netpol ingress-isolated-07f18795f9f3: drop comment '
                             '"ingress isolated by default/web-deny"')
    assert describe(flows[0], directory)["destination"]["pod"] == "web-xyz"


def test_without_a_lookup_an_unknown_rule_is_still_a_drop() -> None:
    j = FlowJoiner("worker-2", own_table=OWN)
    flows = [f for f in (j.trace(line) for line in STALE_TRACE) if f is not None]
    assert len(flows) == 1 and flows[0].verdict == "DROPPED"
    assert flows[0].rule == "ip kubesim-netpol ingress-isolated-07f18795f9f3: rule handle 4"


def test_the_kernels_text_wins_over_the_monitors_stale_one() -> None:
    j = FlowJoiner("worker-1", own_table=OWN, rule_text=lambda *_: "reject")
    j.trace(REJECT_TRACE[2])
    flow = j.trace("trace id 13c5f2ef ip kubesim-proxy reject-chain rule drop # handle 9 (verdict drop)")
    assert flow is not None and flow.verdict == "REJECTED" and flow.rule == "ip kubesim-proxy reject-chain: reject"


def test_rule_of_handle_reads_nft_list_chain() -> None:
    listing = ("table ip kubesim-netpol {\n\tchain ingress-isolated-07 { # handle 4\n"
               "\t\tjump ingress-default/web-deny # handle 5\n"
               '\t\tcounter packets 1 bytes 60 drop comment "ingress isolated by default/web-deny" # handle 6\n'
               "\t}\n}\n")
    expected = 'counter packets 1 bytes 60 drop comment "ingress isolated by default/web-deny"'
    assert rule_of_handle(listing, 6) == expected
    assert rule_of_handle(listing, 5) == "jump ingress-default/web-deny"
    assert rule_of_handle(listing, 4) is None  # the chain's own handle
    assert rule_of_handle(listing, 60) is None


def test_the_cli_refuses_a_bad_filter_before_anything_else() -> None:
    from click.testing import CliRunner

    from kubesim import cli

    done = CliRunner().invoke(cli.main, ["observe", "--pod", "a/b/c"], prog_name="kubesim")
    assert done.exit_code == 2
    assert "--pod 'a/b/c': give NAMESPACE/NAME, NAMESPACE/ or NAME" in done.output
    done = CliRunner().invoke(cli.main, ["observe", "--verdict", "LOST"], prog_name="kubesim")
    assert done.exit_code == 2 and "LOST" in done.output
