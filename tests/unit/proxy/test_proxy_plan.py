"""plan(): kube-proxy's decisions per service port, without any backend."""

from __future__ import annotations

from typing import Any

from proxy_flows import NODE, cluster_plan, endpoint, endpoint_slice, node_context, service

from proxy import Endpoint, NodeContext, ServicePort, parse_node, parse_service, plan, services_from, slices_from
from proxy.plan import categorize_endpoints


def _port(**spec: Any) -> ServicePort:
    return parse_service(service("ns", "s", "10.96.0.1", **spec))[0]


def ep(ip: str, *, local: bool = True, ready: bool = True, serving: bool | None = None,
       terminating: bool = False) -> Endpoint:
    return Endpoint(ip, 80, ready, ready if serving is None else serving, terminating, NODE if local else "other")


def test_ready_endpoints_only_when_any_is_ready() -> None:
    port = _port()
    cluster, local, has_any = categorize_endpoints(
        [ep("10.0.0.1"), ep("10.0.0.2", ready=False, serving=True, terminating=True)], port, node_context())
    assert [e.ip for e in cluster] == ["10.0.0.1"] and local == () and has_any


def test_serving_terminating_fallback_never_non_serving() -> None:
    port = _port()
    cluster, _, has_any = categorize_endpoints(
        [ep("10.0.0.2", ready=False, serving=True, terminating=True),
         ep("10.0.0.3", ready=False, serving=False, terminating=True)], port, node_context())
    assert [e.ip for e in cluster] == ["10.0.0.2"] and has_any
    _, _, has_any = categorize_endpoints([ep("10.0.0.3", ready=False, terminating=True)], port, node_context())
    assert not has_any


def test_local_endpoints_fall_back_on_their_own() -> None:
    # A remote ready endpoint does not stop the local terminating-but-serving one from being used locally.
    port = _port(internalTrafficPolicy="Local")
    cluster, local, has_any = categorize_endpoints(
        [ep("10.0.0.1", local=False), ep("10.0.0.2", ready=False, serving=True, terminating=True)],
        port, node_context())
    assert cluster == () and [e.ip for e in local] == ["10.0.0.2"] and has_any


def hinted(ip: str, *zones: str, ready: bool = True) -> Endpoint:
    return Endpoint(ip, 80, ready, ready, False, "other", zones[0] if zones else "", zones)


def in_zone(zone: str) -> NodeContext:
    return NodeContext(name=NODE, node_ips=("172.18.0.2",), zone=zone)


def test_zone_hints_keep_a_zones_traffic_in_the_zone_when_every_ready_endpoint_has_hints() -> None:
    # The cases of upstream's topology_test.go, in its words.
    port = _port()

    def cluster_ips(endpoints: list[Endpoint], node: NodeContext) -> list[str]:
        return [e.ip for e in categorize_endpoints(endpoints, port, node)[0]]

    both = [hinted("10.0.0.1", "zone-a"), hinted("10.0.0.2", "zone-b"), hinted("10.0.0.3", "zone-a")]
    assert cluster_ips(both, in_zone("zone-a")) == ["10.0.0.1", "10.0.0.3"]
    assert cluster_ips(both, in_zone("zone-b")) == ["10.0.0.2"]
    # The node has no zone label, or no endpoint is hinted for its zone: every endpoint.
    assert cluster_ips(both, in_zone("")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert cluster_ips(both, in_zone("zone-c")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    # One ready endpoint without hints: hints are not used at all (it would get no traffic anywhere).
    assert cluster_ips([*both, hinted("10.0.0.4")], in_zone("zone-a")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3",
                                                                          "10.0.0.4"]
    # A not-ready endpoint without hints does not count.
    assert cluster_ips([*both, hinted("10.0.0.4", ready=False)], in_zone("zone-b")) == ["10.0.0.2"]
    # An endpoint may be hinted for several zones.
    assert cluster_ips([hinted("10.0.0.1", "zone-a", "zone-b"), hinted("10.0.0.2", "zone-b")],
                       in_zone("zone-a")) == ["10.0.0.1"]


def test_zone_hints_are_read_from_the_slice_and_the_zone_from_the_node() -> None:
    slice_obj = endpoint_slice("ns", "s", [endpoint("10.244.1.5")])
    slice_obj["endpoints"][0]["hints"] = {"forZones": [{"name": "zone-a"}, {"name": "zone-b"}]}
    [parsed] = slices_from([slice_obj])
    [endpoint_] = next(iter(parsed.ports.values()))
    assert endpoint_.zone_hints == ("zone-a", "zone-b")
    node = NodeContext.from_node(parse_node({"metadata": {"name": "n1", "labels": {
        "topology.kubernetes.io/zone": "zone-a"}}}))
    assert node.zone == "zone-a"


def test_verdicts() -> None:
    p = cluster_plan()
    assert p.service("ns6/svc6:p80").internal_verdict == "reject"
    assert p.service("ns6/svc6:p80").external_verdict == "reject"
    assert p.service("ns7/svc7:p80").internal_verdict == "drop"
    svc10 = p.service("ns10/svc10:p80")
    assert (svc10.internal_verdict, svc10.external_verdict, svc10.captures_external) == ("dnat", "drop", True)
    svc2 = p.service("ns2/svc2:p80")
    assert [e.ip for e in svc2.external_endpoints] == ["10.244.1.2"]
    assert len(svc2.cluster_endpoints) == 2 and svc2.short_circuits
    assert p.no_local_endpoints_internal == 1 and p.no_local_endpoints_external == 1


def test_headless_and_external_name_are_not_planned() -> None:
    names = {s.name for s in cluster_plan().services}
    assert not any("headless" in n or "external-name" in n for n in names)
    assert "ns14/multi:a" in names and "ns14/multi:b" in names


def test_port_names_and_protocols_select_slice_ports() -> None:
    p = cluster_plan()
    assert [e.address for e in p.service("ns9/dns:dns").cluster_endpoints] == ["10.244.2.9:5353"]
    assert p.service("ns14/multi:b").internal_verdict == "reject"


def test_firewall_allows_the_vips_when_a_range_covers_the_node() -> None:
    svc = service("ns", "lb", "10.96.0.9", type="LoadBalancer", loadBalancerSourceRanges=["172.18.0.0/16"],
                  ports=[{"port": 80, "nodePort": 30000}],
                  status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
    p = plan(services_from([svc]), slices_from([]), node_context())
    assert p.services[0].firewall_sources == ("172.18.0.0/16", "1.2.3.4/32")


def test_nodeport_addresses() -> None:
    node = node_context(node_ips=("172.18.0.2", "192.168.1.2", "127.0.0.1"))
    assert node.nodeport_ips == ("172.18.0.2", "192.168.1.2")
    assert node_context(node_ips=node.node_ips, nodeport_addresses=("192.168.0.0/16", "127.0.0.0/8")
                        ).nodeport_ips == ("192.168.1.2",)


def test_plan_is_deterministic_and_sorted() -> None:
    a, b = cluster_plan(), cluster_plan()
    assert a == b
    assert [s.name for s in a.services] == sorted(s.name for s in a.services)


def test_duplicate_endpoints_across_slices_merge() -> None:
    svc = service("ns", "s", "10.96.0.9")
    slices = [endpoint_slice("ns", "s", [endpoint("10.0.0.1", ready=False)], suffix="a"),
              endpoint_slice("ns", "s", [endpoint("10.0.0.1"), endpoint("10.0.0.2")], suffix="b")]
    p = plan(services_from([svc]), slices_from(slices), node_context())
    assert [e.address for e in p.services[0].cluster_endpoints] == ["10.0.0.1:80", "10.0.0.2:80"]


def test_node_context_from_a_node_object() -> None:
    node = parse_node({"metadata": {"name": "n1"},
                       "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.5"}]}})
    ctx = NodeContext.from_node(node, cluster_cidrs=("10.244.0.0/16",), masquerade_all=True)
    assert (ctx.name, ctx.node_ips, ctx.nodeport_ips) == ("n1", ("172.18.0.5",), ("172.18.0.5",))
    assert ctx.masquerade_all
