"""The nftables ruleset's shape: bounded chains, names, and the words the trace will show."""

from __future__ import annotations

import ipaddress
import re

from netpol.decide import ClusterView
from netpol.model import Pod, parse_policy
from netpol.nftables import MAX_NAME, group_key_chain, object_name, plan, render
from tests.netpol_cases import policy


def pods(n: int, node: str = "n1") -> list[Pod]:
    return [
        Pod("x", f"p{i}", {"app": "web"}, (ipaddress.ip_address(f"10.244.{i // 200}.{i % 200 + 2}"),), node)
        for i in range(n)
    ]


def test_a_thousand_pods_under_the_same_policies_share_one_chain() -> None:
    view = ClusterView(
        policies=[parse_policy(policy("x", f"p{i}", {"podSelector": {}, "ingress": [{"ports": [{"port": 80 + i}]}]}))
                  for i in range(3)],
        pods=pods(1000),
    )
    text = render(view, "n1")
    chains = re.findall(r"^  chain (\S+)", text, re.MULTILINE)
    group = group_key_chain("Ingress", ("x/p0", "x/p1", "x/p2"))
    assert chains == ["ingress-x/p0", "ingress-x/p1", "ingress-x/p2", group, "forward-egress", "forward-ingress"]
    assert text.count(f": goto {group}") == 1000


def test_a_group_chain_is_named_by_its_policies_not_its_position() -> None:
    # Another group appearing must not rename this one: that would rewrite every pod's map entry.
    assert group_key_chain("Ingress", ("x/a",)) == group_key_chain("Ingress", ("x/a",))
    assert group_key_chain("Ingress", ("x/a",)) != group_key_chain("Ingress", ("x/a", "x/b"))
    assert group_key_chain("Ingress", ("x/a",)) != group_key_chain("Egress", ("x/a",))


def test_only_the_nodes_own_pods_are_keys_of_the_maps() -> None:
    view = ClusterView(policies=[parse_policy(policy("x", "deny", {"podSelector": {}}))],
                       pods=[*pods(2, "n1"), Pod("x", "far", {}, (ipaddress.ip_address("10.244.9.9"),), "n2")])
    text = render(view, "n1")
    assert "10.244.9.9" not in text
    assert f"10.244.0.2 : goto {group_key_chain('Ingress', ('x/deny',))}" in text


def test_rules_carry_the_rule_reference_as_comment() -> None:
    view = ClusterView(
        policies=[parse_policy(policy("x", "web", {"podSelector": {}, "ingress": [{}, {"ports": [{"port": 8080}]}]}))],
        pods=pods(1),
    )
    text = render(view, "n1")
    assert '    accept comment "x/web ingress rule 0"' in text
    assert 'meta l4proto tcp th dport 8080 accept comment "x/web ingress rule 1"' in text


def test_a_rule_that_matches_nothing_is_left_out() -> None:
    view = ClusterView(
        policies=[parse_policy(policy("x", "named", {"podSelector": {}, "ingress": [{"ports": [{"port": "nope"}]}]}))],
        pods=pods(1),
    )
    text = render(view, "n1")
    assert "x/named ingress rule 0" not in text
    assert "counter drop" in text  # the pod is still isolated


def test_long_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert len(object_name(a)) == MAX_NAME
    assert object_name(a) != object_name(b)
    assert object_name("short") == "short"


def test_comments_fit_the_kernels_128_bytes() -> None:
    # Many policies isolating one pod, and a policy with a long name: both used to exceed the limit.
    long_name = "p" * 250
    view = ClusterView(
        policies=[parse_policy(policy("x", f"policy-number-{i}", {"podSelector": {}, "ingress": [{}]}))
                  for i in range(30)] + [parse_policy(policy("x", long_name, {"podSelector": {}, "ingress": [{}]}))],
        pods=pods(1),
    )
    comments = re.findall(r'comment "([^"]*)"', render(view, "n1"))
    assert comments and all(len(c.encode()) <= 128 for c in comments)
    assert len(set(comments)) == len(comments)


def test_the_rules_metric_counts_every_accepting_rule() -> None:
    view = ClusterView(
        policies=[parse_policy(policy("x", "web", {"podSelector": {}, "ingress": [{}, {"ports": [{"port": 8080}]}]}))],
        pods=pods(1),
    )
    assert plan(view, "n1").rules == 2
