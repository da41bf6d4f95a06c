"""AdminNetworkPolicy and BaselineAdminNetworkPolicy in the agent: parsing (fail-closed where the API
asks), the decision's order and its account of which rule decided, and the rulesets' comments naming
the policy (what `kubesim trace` shows). The whole-matrix checks of the same semantics are the
ADMIN_CASES of tests/netpol_cases.py, run by the matrix, fake-kernel and kernel tiers."""

from __future__ import annotations

import ipaddress
from typing import Any

from firewall.iptables import FakeIptables
from firewall.nftables import FakeNft
from firewall.tracing import Packet
from netpol import iptables
from netpol.admin import parse_admin_policy
from netpol.decide import ClusterView, RuleRef, decide
from netpol.model import Namespace, Pod, PortRule, parse_policy
from netpol.nftables import Planner, delta_transaction, full_transaction, render
from tests.netpol_cases import anp, banp, policy

NODE = "node-1"
IPS = {"x/a": "10.244.1.2", "x/b": "10.244.1.3", "y/a": "10.244.1.4", "y/b": "10.244.1.5"}


def pods() -> list[Pod]:
    return [Pod(key.split("/")[0], key.split("/")[1], {"pod": key.split("/")[1]}, (ipaddress.ip_address(ip),), NODE,
                named_ports={("http", "TCP"): 80}) for key, ip in IPS.items()]


NAMESPACES = [Namespace(n, {"ns": n, "kubernetes.io/metadata.name": n}) for n in ("x", "y")]
TO_X = {"namespaces": {"matchLabels": {"ns": "x"}}}
FROM_Y = {"namespaces": {"matchLabels": {"ns": "y"}}}
ALLOW_ALL_INTO_X = parse_policy(policy("x", "allow-all", {"podSelector": {}, "ingress": [{}]}))
DENY_INTO_X = parse_policy(policy("x", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]}))


def view(*objects: dict[str, Any], nps: tuple[Any, ...] = ()) -> ClusterView:
    return ClusterView(policies=nps, pods=pods(), namespaces=NAMESPACES,
                       admin=[parse_admin_policy(o) for o in objects])


def side(v: ClusterView, src: str, dst: str, port: int = 80) -> Any:
    return decide(v, IPS[src], IPS[dst], "TCP", port).ingress


def test_anp_deny_beats_a_networkpolicy_allow_and_says_so() -> None:
    v = view(anp("deny-y", 10, {"subject": TO_X, "ingress": [{"action": "Deny", "from": [FROM_Y]}]}),
             nps=(ALLOW_ALL_INTO_X,))
    verdict = side(v, "y/a", "x/a")
    assert not verdict.allowed
    assert verdict.rule == RuleRef("AdminNetworkPolicy/deny-y", "Ingress", 0, "Deny")
    assert verdict.reason == "denied by AdminNetworkPolicy/deny-y ingress rule 0: Deny"
    assert side(v, "x/b", "x/a").rule == RuleRef("x/allow-all", "Ingress", 0)  # not matched: the NP decides


def test_anp_pass_defers_to_the_networkpolicy_and_skips_later_anps() -> None:
    objects = (anp("pass-y", 1, {"subject": TO_X, "ingress": [{"action": "Pass", "from": [FROM_Y]}]}),
               anp("deny-y", 2, {"subject": TO_X, "ingress": [{"action": "Deny", "from": [FROM_Y]}]}))
    allowed = side(view(*objects, nps=(ALLOW_ALL_INTO_X,)), "y/a", "x/a")
    assert allowed.allowed and allowed.rule == RuleRef("x/allow-all", "Ingress", 0)
    assert "passed by AdminNetworkPolicy/pass-y ingress rule 0: Pass" in allowed.reason
    denied = side(view(*objects, nps=(DENY_INTO_X,)), "y/a", "x/a")
    assert not denied.allowed and denied.rule is None and "isolated for ingress by x/deny-all" in denied.reason
    # Without the Pass, the later ANP denies whatever the NetworkPolicy says.
    assert not side(view(objects[1], nps=(ALLOW_ALL_INTO_X,)), "y/a", "x/a").allowed


def test_banp_deny_applies_only_where_no_networkpolicy_isolates() -> None:
    baseline = banp({"subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": [FROM_Y]}]})
    v = view(baseline, nps=(ALLOW_ALL_INTO_X,))
    assert side(v, "y/a", "x/a").allowed  # x's pods are isolated by a NetworkPolicy: it decides
    into_y = side(v, "y/a", "y/b")
    assert not into_y.allowed and into_y.rule == RuleRef("BaselineAdminNetworkPolicy/default", "Ingress", 0, "Deny")
    assert side(v, "x/a", "y/b").allowed  # no rule of the baseline matches: allowed


def test_anps_are_evaluated_by_priority_lowest_first_then_by_name() -> None:
    deny = {"subject": TO_X, "ingress": [{"action": "Deny", "from": [FROM_Y]}]}
    allow = {"subject": TO_X, "ingress": [{"action": "Allow", "from": [FROM_Y]}]}
    assert side(view(anp("allow", 5, allow), anp("deny", 10, deny)), "y/a", "x/a").allowed
    assert not side(view(anp("allow", 50, allow), anp("deny", 10, deny)), "y/a", "x/a").allowed
    # Equal priorities are undefined upstream; by name here, the same on every node and in both modes.
    assert side(view(anp("a-allow", 10, allow), anp("b-deny", 10, deny)), "y/a", "x/a").allowed


def test_an_anp_allow_decides_its_direction_only() -> None:
    # x/a may send to y by ANP, past a NetworkPolicy isolating its egress; y/b's ingress still judges.
    v = view(anp("xa-to-y", 1, {"subject": {"pods": {"namespaceSelector": {"matchLabels": {"ns": "x"}},
                                                     "podSelector": {"matchLabels": {"pod": "a"}}}},
                                "egress": [{"action": "Allow", "to": [FROM_Y]}]}),
             nps=(parse_policy(policy("x", "no-egress", {"podSelector": {}, "policyTypes": ["Egress"]})),
                  parse_policy(policy("y", "no-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}))))
    verdict = decide(v, IPS["x/a"], IPS["y/b"], "TCP", 80)
    assert verdict.egress.allowed and verdict.egress.rule == RuleRef("AdminNetworkPolicy/xa-to-y", "Egress", 0,
                                                                     "Allow")
    assert not verdict.ingress.allowed


def test_parsing_named_ports_networks_and_fail_closed_rules() -> None:
    parsed = parse_admin_policy(anp("p", 3, {"subject": TO_X, "egress": [
        {"action": "Allow", "to": [{"networks": ["10.0.0.0/8", "192.168.1.0/24"]}], "ports": [{"namedPort": "http"}]},
        {"action": "Allow", "to": [{"nodes": {}}]},
        {"action": "Pass", "to": [{"nodes": {}}]},
        {"action": "Drop", "to": [FROM_Y]},
    ]}))
    first, unknown_allow, unknown_pass, bad_action = parsed.egress
    assert [str(p.ip_block) for p in first.rule.peers or ()] == ["10.0.0.0/8", "192.168.1.0/24"]
    assert first.rule.ports == tuple(PortRule(proto, "http") for proto in ("TCP", "UDP", "SCTP"))  # type: ignore
    # An unknown peer: an Allow matches nothing; a Pass (or Deny) denies everything.
    assert unknown_allow.action == "Allow" and all(p.broken for p in unknown_allow.rule.peers or ())
    assert unknown_pass.action == "Deny" and unknown_pass.rule.peers is None and unknown_pass.rule.ports == ()
    assert bad_action.action == "Deny" and bad_action.rule.peers is None
    assert any("spec.egress[1].to[0]" in p for p in parsed.problems)


def test_a_misnamed_baseline_or_a_priority_out_of_range_selects_nothing() -> None:
    rules = {"subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}
    other = banp(rules)
    other["metadata"]["name"] = "other"
    assert side(view(other), "y/a", "x/a").allowed
    assert parse_admin_policy(other).problems[0].startswith("metadata.name: only the BaselineAdminNetworkPolicy")
    assert side(view(anp("too-low", 1001, rules)), "y/a", "x/a").allowed
    assert not side(view(anp("fine", 1000, rules)), "y/a", "x/a").allowed


def test_both_rulesets_name_the_deciding_anp_rule_in_their_comments() -> None:
    v = view(anp("deny-y", 10, {"subject": TO_X, "ingress": [{"action": "Deny", "from": [FROM_Y],
                                                              "ports": [{"portNumber": {"port": 80}}]}]}))
    want = "AdminNetworkPolicy/deny-y ingress rule 0: Deny"
    nft = FakeNft()
    nft.run(render(v, NODE))
    result = nft.trace(Packet(IPS["y/a"], IPS["x/a"], 80, "TCP"))
    assert result.verdict == "DROP" and result.paths[0].verdict_rules[-1] == want
    assert nft.trace(Packet(IPS["y/a"], IPS["x/a"], 81, "TCP")).verdict == "ACCEPT"
    ipt = FakeIptables()
    iptables.IptablesCommand(runner=ipt).apply(iptables.render(v, NODE))
    result = ipt.trace(Packet(IPS["y/a"], IPS["x/a"], 80, "TCP"))
    assert result.verdict == "DROP" and result.paths[0].verdict_rules[-1] == want


def test_an_admin_change_is_a_small_delta_and_leaves_what_a_full_load_makes() -> None:
    planner = Planner(NODE)
    deny = anp("deny-y", 10, {"subject": TO_X, "ingress": [{"action": "Deny", "from": [FROM_Y]}]})
    before = planner.update([], pods(), NAMESPACES, [parse_admin_policy(deny)])
    deny["spec"]["ingress"][0]["action"] = "Allow"
    after = planner.update([], pods(), NAMESPACES, [parse_admin_policy(deny)])
    delta = delta_transaction(before, after)
    assert [line.split(" ", 3)[:3] for line in delta.splitlines()] == [["flush", "chain", "ip"],
                                                                       ["add", "rule", "ip"]]
    assert "accept comment" in delta
    fake, fresh = FakeNft(), FakeNft()
    fake.run(full_transaction(before))
    fake.run(delta)
    fresh.run(full_transaction(after))
    assert fake.trace(Packet(IPS["y/a"], IPS["x/a"], 80, "TCP")).verdict == "ACCEPT"
    gone = planner.update([], pods(), NAMESPACES, [])
    fake.run(delta_transaction(after, gone))
    assert not any(name.startswith("ingress-admin") for name in fake.table("ip", "kubesim-netpol").chains)
