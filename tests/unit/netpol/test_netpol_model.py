"""API objects -> the agent's values: defaults and the parts that fail closed."""

from __future__ import annotations

import ipaddress

import pytest

from netpol.errors import ObjectError
from netpol.model import PortRule, parse_namespace, parse_pod, parse_policy
from tests.netpol_cases import policy


def test_policy_types_are_inferred_as_the_api_defaults_them() -> None:
    only_ingress = parse_policy(policy("x", "p", {"podSelector": {}}))
    assert only_ingress.ingress == () and only_ingress.egress is None
    both = parse_policy(policy("x", "p", {"podSelector": {}, "egress": [{}]}))
    assert both.ingress == () and both.egress is not None and len(both.egress) == 1
    egress_only = parse_policy(policy("x", "p", {"podSelector": {}, "policyTypes": ["Egress"]}))
    assert egress_only.ingress is None and egress_only.egress == ()


def test_empty_from_means_every_peer_and_empty_ports_every_port() -> None:
    p = parse_policy(policy("x", "p", {"podSelector": {}, "ingress": [{"from": []}, {}]}))
    assert p.ingress is not None
    assert all(rule.peers is None and rule.ports == () for rule in p.ingress)


@pytest.mark.parametrize(
    ("peer", "why"),
    [
        ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, "ipBlock together with a selector"),
        ({"ipBlock": {"cidr": "10.0.0.0/33"}}, "is not a CIDR"),
        ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}, "is not inside 10.0.0.0/8"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}}, "matches nothing"),
        ({}, "names no podSelector"),
    ],
)
def test_a_peer_that_cannot_be_understood_matches_nothing_and_says_why(peer: dict, why: str) -> None:
    p = parse_policy(policy("x", "p", {"podSelector": {}, "ingress": [{"from": [peer]}]}))
    assert p.problems and why in p.problems[0]
    assert p.problems[0].startswith("spec.ingress[0].from[0]")


@pytest.mark.parametrize(
    ("port", "why"),
    [
        ({"protocol": "ICMP", "port": 80}, "protocol 'ICMP'"),
        ({"port": 80, "endPort": 79}, "endPort 79"),
        ({"port": "http", "endPort": 90}, "endPort with a named port"),
        ({"endPort": 90}, "endPort without port"),
        ({"port": 0}, "outside 1-65535"),
    ],
)
def test_a_port_that_cannot_be_understood_matches_nothing(port: dict, why: str) -> None:
    p = parse_policy(policy("x", "p", {"podSelector": {}, "ingress": [{"ports": [port]}]}))
    assert p.ingress is not None
    rule = p.ingress[0].ports[0]
    assert why in rule.broken
    assert not rule.matches("TCP", 80, {})


def test_port_rules_match_numbers_ranges_and_names() -> None:
    assert PortRule("TCP", 80).matches("TCP", 80, {})
    assert not PortRule("TCP", 80).matches("UDP", 80, {})
    assert PortRule("TCP", 80, 90).matches("TCP", 90, {})
    assert not PortRule("TCP", 80, 90).matches("TCP", 91, {})
    assert PortRule("UDP", "dns").matches("UDP", 53, {("dns", "UDP"): 53})
    assert not PortRule("TCP", "dns").matches("TCP", 53, {("dns", "UDP"): 53})
    assert PortRule("TCP", None).matches("TCP", 1, {})


def test_a_policy_without_name_or_spec_is_refused() -> None:
    with pytest.raises(ObjectError, match=r"metadata\.name"):
        parse_policy({"metadata": {"namespace": "x"}, "spec": {}})
    with pytest.raises(ObjectError, match="spec must be an object"):
        parse_policy({"metadata": {"namespace": "x", "name": "p"}})


def test_namespaces_always_carry_their_name_label() -> None:
    assert parse_namespace({"metadata": {"name": "x"}}).labels == {"kubernetes.io/metadata.name": "x"}


def test_pods_without_an_address_or_finished_are_not_judged() -> None:
    base = {"metadata": {"namespace": "x", "name": "a"}, "spec": {}}
    assert parse_pod({**base, "status": {"phase": "Pending"}}) is None
    assert parse_pod({**base, "status": {"phase": "Succeeded", "podIP": "10.0.0.1"}}) is None
    running = parse_pod({
        **base,
        "spec": {"nodeName": "n1", "containers": [{"ports": [{"name": "web", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]},
    })
    assert running is not None
    assert running.ips == (ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("fd00::1"))
    assert running.named_ports == {("web", "TCP"): 8080}
