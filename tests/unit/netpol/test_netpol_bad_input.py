"""The issue's bad input, from the apiserver to the agent's table: a policy with 5,000 peers,
overlapping ipBlocks and except ranges, selectors with unknown operators, a named port no pod has.

Each is either refused at the API with a 422 naming the field, or accepted and enforced exactly as
decide() says (the reference), with "matches nothing" where nothing can match; never a crash.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from netaddr import IPNetwork, IPSet

from netpol.decide import ClusterView, decide
from netpol.model import Pod, parse_policy
from netpol.nftables import INLINE_CIDRS, Planner, full_transaction, render
from tests.netpol_cases import policy
from tests.unit.apiserver.test_validation_networking import COLLECTION, _with_server

NODE = "n1"


def pod(name: str, ip: str, labels: dict[str, str] | None = None, ns: str = "x", **named: int) -> Pod:
    return Pod(ns, name, labels or {"pod": name}, (ipaddress.ip_address(ip),), NODE,
               named_ports={(port, "TCP"): number for port, number in named.items()})


def peers_set(text: str, chain: str) -> IPSet:
    """The addresses a rendered table lets in through CHAIN's rule 0: its sets and inline prefixes."""
    allowed = IPSet()
    for match in re.finditer(rf"set {re.escape(chain)}-0-\w+ {{ type ipv4_addr;[^}}]*elements = {{ ([^}}]*) }}", text):
        allowed.update(IPNetwork(e.strip()) for e in match.group(1).split(","))
    for match in re.finditer(r"ip saddr (\d+\.\d+\.\d+\.\d+/\d+)", text):
        allowed.add(IPNetwork(match.group(1)))
    return allowed


def test_five_thousand_peers_render_one_set_and_agree_with_the_decision() -> None:
    far = [{"ipBlock": {"cidr": f"10.251.{i // 128}.{2 * (i % 128)}/32"}} for i in range(4000)]
    by_label = [{"podSelector": {"matchLabels": {"pod": f"p{i}"}}} for i in range(1000)]
    spec = {"podSelector": {"matchLabels": {"pod": "target"}}, "ingress": [{"from": far + by_label}]}
    pods = [pod("target", "10.244.0.2"),
            *(pod(f"p{i}", f"10.244.{1 + i // 250}.{i % 250 + 2}") for i in range(0, 1000, 7))]
    view = ClusterView(policies=[parse_policy(policy("x", "wide", spec))], pods=pods)
    text = render(view, NODE)
    sets = re.findall(r"^  set (\S+) ", text, re.MULTILINE)
    assert sets == ["local-self", "ingress-x/wide-0-peers", "ingress-x/wide-0-blocks"]
    allowed = peers_set(text, "ingress-x/wide")
    assert allowed.size == 4000 + len(pods) - 1
    for source in ("10.251.0.0", "10.251.31.62", "10.244.1.9", "10.251.0.1", "10.244.1.3", "10.9.9.9"):
        want = decide(view, source, "10.244.0.2", "TCP", 80).allowed
        assert (source in allowed) == want, source


def test_overlapping_ip_blocks_and_excepts_become_the_union_the_api_means() -> None:
    # Two blocks overlap, each with an except; the union lets in what either block allows, so one
    # block's except does not punch a hole in the other block.
    spec = {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24", "10.0.2.0/24"]}},
        {"ipBlock": {"cidr": "10.0.2.0/23", "except": ["10.0.3.128/25"]}},
        {"ipBlock": {"cidr": "10.0.0.0/24"}},  # wholly inside the first
    ]}]}
    view = ClusterView(policies=[parse_policy(policy("x", "overlap", spec))], pods=[pod("a", "10.244.0.2")])
    text = render(view, NODE)
    allowed = peers_set(text, "ingress-x/overlap")
    want = (IPSet(["10.0.0.0/16"]) - IPSet(["10.0.1.0/24", "10.0.2.0/24"])) | \
        (IPSet(["10.0.2.0/23"]) - IPSet(["10.0.3.128/25"]))
    assert allowed == want
    cidrs = list(allowed.iter_cidrs())
    assert len(cidrs) <= INLINE_CIDRS  # inline prefixes, no interval set to overlap in
    for source in ("10.0.1.5", "10.0.2.5", "10.0.3.5", "10.0.3.200", "10.0.200.1", "10.1.0.1"):
        assert (source in allowed) == decide(view, source, "10.244.0.2", "TCP", 80).allowed, source


def test_a_selector_with_an_unknown_operator_matches_nothing_in_the_agent() -> None:
    # The apiserver refuses these (below); an object that got past another apiserver isolates the pods
    # it selects and lets nothing in through the broken peer: fail closed, with the reason kept.
    spec = {"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Like", "values": ["a"]}]}}]}]}
    parsed = parse_policy(policy("x", "odd", spec))
    assert parsed.problems and "matches nothing" in parsed.problems[0]
    pods = [pod("a", "10.244.0.2"), pod("b", "10.244.0.3")]
    view = ClusterView(policies=[parsed], pods=pods)
    assert not decide(view, "10.244.0.3", "10.244.0.2", "TCP", 80).allowed
    plan = Planner(NODE).update([parsed], pods, [])
    assert plan.chains["ingress-x/odd"].rules == ()  # no rule: nothing is let in
    assert "10.244.0.2" in plan.verdicts["Ingress"]  # but the pod is isolated


def test_a_policy_selector_with_an_unknown_operator_selects_nobody() -> None:
    spec = {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Equals", "values": ["a"]}]}}
    parsed = parse_policy(policy("x", "odd", spec))
    assert "spec.podSelector" in parsed.problems[0]
    plan = Planner(NODE).update([parsed], [pod("a", "10.244.0.2")], [])
    assert plan.verdicts["Ingress"] == {}
    full_transaction(plan)  # renders


def test_a_named_port_no_pod_has_matches_nothing_without_a_crash() -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [{"port": "nobody-has-it"}]}, {"ports": [{"port": "web"}]}]}
    pods = [pod("a", "10.244.0.2", web=8080), pod("b", "10.244.0.3")]
    parsed = parse_policy(policy("x", "named", spec))
    plan = Planner(NODE).update([parsed], pods, [])
    rules = plan.chains["ingress-x/named"].rules
    assert [r for r in rules if "rule 0" in r] == []  # nothing to match: left out
    assert any("rule 1" in r for r in rules)
    assert plan.sets["ingress-x/named-1-ports"].elements == ("10.244.0.2 . tcp . 8080",)
    view = ClusterView(policies=[parsed], pods=pods)
    verdict = decide(view, "10.244.0.3", "10.244.0.2", "TCP", 8080)
    assert verdict.allowed and "rule 1" in verdict.ingress.reason
    assert not decide(view, "10.244.0.2", "10.244.0.3", "TCP", 8080).allowed  # b has no port "web"


def test_the_apiserver_refuses_unknown_operators_in_every_selector_and_accepts_5000_overlapping_peers(
    tmp_path: Path,
) -> None:
    async def scenario(http: TestClient) -> None:
        def named(name: str, spec: dict[str, Any]) -> dict[str, Any]:
            return {**policy("default", name, spec), "metadata": {"name": name, "namespace": "default"}}

        odd = {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["a"]}]}
        for field, spec in (
            ("spec.podSelector", {"podSelector": odd}),
            ("spec.ingress[0].from[0].podSelector", {"podSelector": {}, "ingress": [{"from": [{"podSelector": odd}]}]}),
            ("spec.egress[0].to[0].namespaceSelector",
             {"podSelector": {}, "egress": [{"to": [{"namespaceSelector": odd}]}]}),
        ):
            response = await http.post(COLLECTION, json=named("odd", spec))
            assert response.status == 422, field
            causes = (await response.json())["details"]["causes"]
            assert causes == [{"reason": "FieldValueInvalid", "field": f"{field}.matchExpressions[0].operator",
                               "message": 'Invalid value: "Like": not a valid selector operator'}]
        # Upstream sets no limit on peers, and overlapping blocks are legal: both are the agent's to handle.
        many = [{"ipBlock": {"cidr": f"10.{i // 256}.{i % 256}.0/24"}} for i in range(4998)]
        many += [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/16"]}},
                 {"ipBlock": {"cidr": "10.0.0.0/12", "except": ["10.0.1.0/24"]}}]
        created = await http.post(COLLECTION, json=named("many", {"podSelector": {}, "ingress": [{"from": many}]}))
        assert created.status == 201, await created.text()

    _with_server(tmp_path, scenario)
