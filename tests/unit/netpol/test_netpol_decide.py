"""The decision's explanations and its special cases: self, own node, hostNetwork, non-pods."""

from __future__ import annotations

import ipaddress

from netpol.decide import ClusterView, RuleRef, decide
from netpol.model import Namespace, Pod, parse_policy
from tests.netpol_cases import policy


def pod(ns: str, name: str, ip: str, node: str = "n1", host_network: bool = False, **labels: str) -> Pod:
    return Pod(ns, name, {"pod": name, **labels}, (ipaddress.ip_address(ip),), node, host_network)


A = pod("x", "a", "10.244.1.2")
B = pod("x", "b", "10.244.2.2", node="n2")
NODE1 = "172.18.0.2"
DENY = parse_policy(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
ALLOW_B_TO_A = parse_policy(policy("x", "b-to-a", {
    "podSelector": {"matchLabels": {"pod": "a"}},
    "ingress": [{"ports": [{"port": 81}]}, {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
}))


def view(*policies, pods=(A, B)) -> ClusterView:
    return ClusterView(
        policies=policies, pods=pods, namespaces=[Namespace("x", {"ns": "x"})],
        nodes={"n1": [ipaddress.ip_address(NODE1)], "n2": [ipaddress.ip_address("172.18.0.3")]},
    )


def test_denied_names_the_isolating_policy_and_the_side() -> None:
    verdict = decide(view(DENY), str(B.ips[0]), str(A.ips[0]), "TCP", 80)
    assert not verdict.allowed
    assert verdict.deciding.direction == "Egress"  # the packet meets b's egress first
    assert "x/b is isolated for egress by x/deny" in verdict.deciding.reason
    assert verdict.ingress.policies == ("x/deny",)


def test_allowed_names_the_first_rule_that_matches() -> None:
    verdict = decide(view(DENY, ALLOW_B_TO_A), str(B.ips[0]), str(A.ips[0]), "TCP", 80)
    assert not verdict.allowed  # b's own egress is still denied by x/deny
    verdict = decide(view(ALLOW_B_TO_A), str(B.ips[0]), str(A.ips[0]), "TCP", 80)
    assert verdict.allowed
    assert verdict.ingress.rule == RuleRef("x/b-to-a", "Ingress", 1)
    assert str(verdict.ingress.rule) == "x/b-to-a ingress rule 1"
    # Policies are additive: on port 81 rule 0 already allows it.
    assert decide(view(ALLOW_B_TO_A), str(B.ips[0]), str(A.ips[0]), "TCP", 81).ingress.rule.index == 0


def test_a_pod_cannot_block_access_to_itself() -> None:
    verdict = decide(view(DENY), str(A.ips[0]), str(A.ips[0]), "TCP", 80)
    assert verdict.allowed
    assert "itself" in verdict.ingress.reason


def test_the_pods_own_node_is_always_allowed_both_ways() -> None:
    into = decide(view(DENY), NODE1, str(A.ips[0]), "TCP", 80)
    out = decide(view(DENY), str(A.ips[0]), NODE1, "TCP", 10250)
    assert into.allowed and out.allowed
    assert "own node" in into.ingress.reason
    # Another node is not the pod's own: denied.
    assert not decide(view(DENY), "172.18.0.3", str(A.ips[0]), "TCP", 80).allowed


def test_host_network_pods_are_not_selectable() -> None:
    host = pod("x", "h", "172.18.0.3", node="n2", host_network=True, pod="b")
    verdict = decide(view(ALLOW_B_TO_A, pods=(A, B, host)), "172.18.0.3", str(A.ips[0]), "TCP", 80)
    assert not verdict.allowed  # labelled pod=b, but it is the node n2 to a policy
    assert decide(view(DENY, pods=(A, B, host)), str(A.ips[0]), str(A.ips[0]), "TCP", 80).allowed


def test_addresses_that_are_not_pods_are_judged_only_on_the_pod_side() -> None:
    verdict = decide(view(), "203.0.113.9", str(A.ips[0]), "TCP", 80)
    assert verdict.allowed
    assert "not a pod" in verdict.egress.reason
    assert not decide(view(DENY), "203.0.113.9", str(A.ips[0]), "TCP", 80).allowed


def test_verdict_reads_as_a_sentence() -> None:
    text = str(decide(view(ALLOW_B_TO_A), str(B.ips[0]), str(A.ips[0]), "TCP", 80))
    assert text == "10.244.2.2 -> 10.244.1.2 TCP/80: allowed (ingress: allowed by x/b-to-a ingress rule 1)"
