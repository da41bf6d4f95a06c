"""Every truth-table case as a whole matrix through the agent's real nftables ruleset, on the fake.

For each case, `netpol.nftables.render()` writes each node's table, FakeNft loads it (refusing what nft
would refuse) and traces every connection's first packet: from the source's node (where its egress is
judged) to the destination's node (where its ingress is). The 9 x 9 matrix must be the case's truth
table, and on every port and protocol the fake must agree with `netpol.decide`, down to which rule
of which policy let the packet through or which isolation dropped it. No root: nothing touches a kernel.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from test_netpol_matrices import view_for

from firewall.nftables import FakeNft
from firewall.tracing import Packet
from netpol.decide import ClusterView, SideVerdict, Verdict, decide
from netpol.nftables import render
from tests.netpol_cases import (
    ALL_PODS,
    CASES,
    MATRIX_CASES,
    PORTS,
    Case,
    PodRef,
    Reachability,
    compare,
    default_addresses,
)

NODES = ("node-1", "node-2")
PROTOCOLS = ("TCP", "UDP", "SCTP")


class Cluster:
    """The nodes' tables, loaded into one fake per node, and the pods' addresses and nodes."""

    def __init__(self, view: ClusterView, ips: Mapping[PodRef, str], *, rendered: Mapping[str, str] | None = None):
        self.ips = ips
        self.nodes = default_addresses()[1]
        self.fakes: dict[str, FakeNft] = {}
        for node in NODES:
            fake = FakeNft()
            fake.run(rendered[node] if rendered else render(view, node))
            self.fakes[node] = fake

    def connect(self, src: PodRef, dst: PodRef, protocol: str, port: int) -> tuple[bool, tuple[str, ...]]:
        """Whether the first packet gets through both nodes' tables, and the rule comments it met."""
        met: list[str] = []
        for node in dict.fromkeys((self.nodes[src], self.nodes[dst])):
            result = self.fakes[node].trace(Packet(self.ips[src], self.ips[dst], port, protocol))
            assert len(result.paths) == 1  # no random choices in a policy table
            met += result.paths[0].verdict_rules
            if result.verdict != "ACCEPT":
                assert result.verdict == "DROP", result
                return False, tuple(met)
        return True, tuple(met)

    def matrix(self, protocol: str, port: int) -> Reachability:
        return Reachability({(s, d): self.connect(s, d, protocol, port)[0] for s in ALL_PODS for d in ALL_PODS})


def loaded(case: Case) -> tuple[Cluster, ClusterView]:
    view, ips = view_for(case)
    return Cluster(view, ips), view


def expected_comments(verdict: Verdict) -> list[str] | None:
    """The rule comments the packet must meet, in order, by decide's account: per isolated side, the
    accepting rule or the isolation's drop. None for a drop, whose comment is checked by its words."""
    out: list[str] = []
    for side in (verdict.egress, verdict.ingress):
        if not side.isolated:
            continue
        if not side.allowed:
            return None
        if side.rule is None:
            continue  # allowed by an admin tier that matched nothing (Pass, then nothing decided)
        out.append(str(side.rule))
    return out


def drop_explained(side: SideVerdict, comment: str) -> bool:
    """An admin rule's Deny names its policy, rule and action; the isolation's drop names its direction
    and every policy isolating the pod."""
    if side.rule is not None:
        return comment == str(side.rule)
    return comment.startswith(f"{side.direction.lower()} isolated by ") and all(p in comment for p in side.policies)


def test_every_case_is_here() -> None:
    assert len(CASES) >= 25
    assert {c.protocol for c in CASES} >= {"TCP", "UDP"} and {c.port for c in CASES} == set(PORTS)


@pytest.mark.parametrize("case", MATRIX_CASES, ids=[c.name for c in MATRIX_CASES])
def test_matrix_on_the_fake(case: Case) -> None:
    cluster, _ = loaded(case)
    problem = compare(case.matrix(), cluster.matrix(case.protocol, case.port))
    assert not problem, problem


@pytest.mark.parametrize("case", MATRIX_CASES, ids=[c.name for c in MATRIX_CASES])
def test_the_fake_agrees_with_decide_on_every_port_and_protocol(case: Case) -> None:
    cluster, view = loaded(case)
    wrong: list[str] = []
    for protocol in PROTOCOLS:
        for port in PORTS:
            for s in ALL_PODS:
                for d in ALL_PODS:
                    verdict = decide(view, cluster.ips[s], cluster.ips[d], protocol, port)
                    allowed, met = cluster.connect(s, d, protocol, port)
                    want = expected_comments(verdict)
                    if allowed != verdict.allowed:
                        wrong.append(f"{s}->{d} {protocol}/{port}: fake {'allows' if allowed else 'denies'}, {verdict}")
                    elif want is not None and list(met) != want:
                        wrong.append(f"{s}->{d} {protocol}/{port}: fake met rules {met}, decide says {want}")
                    elif want is None and not (met and drop_explained(verdict.deciding, met[-1])):
                        wrong.append(f"{s}->{d} {protocol}/{port}: dropped after {met}, decide: {verdict}")
    assert not wrong, f"{len(wrong)} disagreements:\n" + "\n".join(wrong[:20])


def test_a_broken_ruleset_is_caught() -> None:
    # The tier must be able to fail: the same case with its accepting rules turned into drops.
    case = next(c for c in CASES if c.name.startswith("x/a from x/b only"))
    view, ips = view_for(case)
    rendered = {node: render(view, node).replace(" accept comment ", " drop comment ") for node in NODES}
    broken = Cluster(view, ips, rendered=rendered)
    problem = compare(case.matrix(), broken.matrix(case.protocol, case.port))
    assert problem.startswith("1 pairs differ: x/b->x/a expected allow"), problem


def test_replies_and_a_pods_own_traffic_are_accepted_before_any_policy() -> None:
    # The base chains' first rules, whatever the policies: conntrack replies, then a pod reaching itself
    # (through a Service, after DNAT: the only way its own packet crosses the forward hook).
    cluster, _ = loaded(next(c for c in CASES if c.name == "deny all ingress and egress in x"))
    for fake in cluster.fakes.values():
        for name in ("forward-egress", "forward-ingress"):
            chain = fake.table("ip", "kubesim-netpol").chains[name]
            assert chain.base is not None and chain.base[:2] == ("filter", "forward")
            assert [r.text for r in chain.rules[:2]] == ["ct state established,related accept",
                                                          "ip saddr . ip daddr @local-self accept"]
    xa = PodRef("x", "a")
    assert cluster.connect(xa, xa, "TCP", 80) == (True, ())
