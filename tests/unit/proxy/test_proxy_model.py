"""API JSON -> ServicePort / Endpoint: the fields kube-proxy reads, and bad objects skipped, not fatal."""

from __future__ import annotations

import logging

import pytest
from proxy_flows import endpoint, endpoint_slice, service

from proxy import ObjectError, parse_endpoint_slice, parse_node, parse_service, services_from, slices_from
from proxy.model import DEFAULT_AFFINITY_SECONDS


def test_load_balancer_service_fields() -> None:
    (port,) = parse_service(service(
        "ns", "lb", "10.96.0.9", type="LoadBalancer", externalTrafficPolicy="Local", internalTrafficPolicy="Local",
        externalIPs=["192.0.2.1", "2001:db8::1"], loadBalancerSourceRanges=["203.0.113.0/24 "],
        sessionAffinity="ClientIP", healthCheckNodePort=31000,
        ports=[{"name": "web", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
        status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"ip": "1.2.3.5", "ipMode": "Proxy"},
                                             {"hostname": "lb.example"}]}},
    ))
    assert str(port.name) == "ns/lb:web"
    assert (port.cluster_ip, port.port, port.node_port, port.protocol) == ("10.96.0.9", 80, 30080, "TCP")
    assert port.external_ips == ("192.0.2.1",)
    assert port.load_balancer_ips == ("1.2.3.4",)  # ipMode Proxy and hostnames are not captured
    assert port.load_balancer_source_ranges == ("203.0.113.0/24",)
    assert port.affinity_timeout == DEFAULT_AFFINITY_SECONDS
    assert port.external_policy_local and port.internal_policy_local
    assert port.health_check_node_port == 31000


def test_cluster_ip_service_ignores_node_ports_and_etp() -> None:
    (port,) = parse_service(service("ns", "c", "10.96.0.9", externalTrafficPolicy="Local",
                                    ports=[{"port": 53, "protocol": "UDP", "nodePort": 30053}]))
    assert port.node_port == 0 and not port.external_policy_local and port.protocol == "UDP"
    assert str(port.name) == "ns/c:"


def test_headless_and_external_name_are_ignored() -> None:
    assert parse_service(service("ns", "h", "None")) == ()
    assert parse_service(service("ns", "e", "", type="ExternalName", externalName="example.com")) == ()


@pytest.mark.parametrize("bad", [
    service("ns", "x", "not-an-ip"),
    service("ns", "x", "10.96.0.1", ports=[{"port": 0}]),
    service("ns", "x", "10.96.0.1", ports=[{"port": 80, "protocol": "ICMP"}]),
    service("ns", "x", "10.96.0.1", ports=[]),
    service("ns", "x", "10.96.0.1", type="LoadBalancer", loadBalancerSourceRanges=["nonsense"]),
    {"spec": {}},
])
def test_bad_services_raise_with_the_name(bad: dict[str, object]) -> None:
    with pytest.raises(ObjectError):
        parse_service(bad)


def test_bad_objects_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    good = service("ns", "good", "10.96.0.1")
    with caplog.at_level(logging.WARNING, logger="proxy.model"):
        ports = services_from([service("ns", "bad", "10.96.0.2", ports=[{"port": 70000}]), good])
        slices = slices_from([{"metadata": {"name": "orphan", "namespace": "ns"}, "endpoints": []}])
    assert [str(p.name) for p in ports] == ["ns/good:p80"]
    assert slices == ()
    assert "ns/bad" in caplog.text and "70000" in caplog.text
    assert "orphan" in caplog.text and "kubernetes.io/service-name" in caplog.text


def test_endpoint_conditions_default_like_kube_proxy() -> None:
    parsed = parse_endpoint_slice(endpoint_slice("ns", "s", [
        {"addresses": ["10.0.0.1"]},  # no conditions: ready and serving
        endpoint("10.0.0.2", "n2", ready=False),  # serving defaults to ready
        endpoint("10.0.0.3", "n3", ready=False, serving=True, terminating=True),
    ]))
    assert parsed is not None
    eps = parsed.ports[("p80", "TCP")]
    assert [(e.ready, e.serving, e.terminating) for e in eps] == [
        (True, True, False), (False, False, False), (False, True, True)]
    assert eps[1].node_name == "n2" and eps[0].address == "10.0.0.1:80"


def test_ipv6_slices_are_not_ours() -> None:
    obj = endpoint_slice("ns", "s", [])
    obj["addressType"] = "IPv6"
    assert parse_endpoint_slice(obj) is None


def test_node() -> None:
    node = parse_node({"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}},
                       "spec": {"podCIDR": "10.244.1.0/24"},
                       "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                                                {"type": "Hostname", "address": "n1"}]}})
    assert (node.name, node.addresses, node.pod_cidrs, node.zone) == ("n1", ("172.18.0.2",), ("10.244.1.0/24",), "z1")
