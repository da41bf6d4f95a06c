"""The iptables ruleset: every truth-table case through the in-memory iptables, its shape, and its hooks.

A connection crosses FORWARD twice when its pods are on two nodes: on the source's node (its egress is
judged there) and on the destination's (its ingress). Each node's fake holds that node's ruleset, so
a pair is allowed when every node it crosses lets it through, as in the kernel.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from test_netpol_fake_matrices import drop_explained, expected_comments

from firewall.errors import FakeIptablesError
from firewall.tracing import Packet
from netpol.decide import ClusterView, decide
from netpol.iptables import (
    JUMP,
    MARKED_JUMP,
    MAX_CHAIN,
    TOP,
    FakeIptables,
    IptablesCommand,
    cleanup,
    complete,
    group_chain,
    policy_chain,
    render,
)
from netpol.model import Pod, parse_namespace, parse_pod, parse_policy
from proxy.iptables import JUMPS
from proxy.iptables.ruleset import full_transaction
from tests.netpol_cases import (
    ALL_PODS,
    CASES,
    MATRIX_CASES,
    PORTS,
    Case,
    Reachability,
    cluster_objects,
    compare,
    default_addresses,
    policy,
    view_parts,
)

NODES = ("node-1", "node-2")


def view_for(case: Case) -> tuple[ClusterView, dict, dict]:
    ips, nodes = default_addresses()
    namespaces, pods = cluster_objects(ips, nodes)
    view = ClusterView(
        **view_parts(case.policies(ips)),
        pods=[p for p in (parse_pod(o) for o in pods) if p is not None],
        namespaces=[parse_namespace(o) for o in namespaces],
        nodes={node: () for node in NODES},
    )
    return view, ips, nodes


def loaded(view: ClusterView, node: str) -> FakeIptables:
    fake = FakeIptables()
    IptablesCommand(runner=fake).apply(render(view, node))
    return fake


@pytest.mark.parametrize("case", MATRIX_CASES, ids=[c.name for c in MATRIX_CASES])
def test_the_fake_agrees_with_decide_down_to_the_rule(case: Case) -> None:
    """On every port and protocol: the same verdict as decide, and the rule that allowed each side (its
    MARK's comment) or the isolation that dropped it, as the nftables ruleset is checked."""
    view, ips, nodes = view_for(case)
    fakes = {node: loaded(view, node) for node in NODES}
    wrong: list[str] = []
    for protocol in ("TCP", "UDP", "SCTP"):
        for port in PORTS:
            for s in ALL_PODS:
                for d in ALL_PODS:
                    verdict = decide(view, ips[s], ips[d], protocol, port)
                    met: list[str] = []
                    allowed = True
                    for node in dict.fromkeys((nodes[s], nodes[d])):
                        result = fakes[node].trace(Packet(ips[s], ips[d], port, protocol))
                        # Two entries of one rule (a port by number and by name) may both mark: one rule.
                        met += [c for c in dict.fromkeys(result.paths[0].verdict_rules) if c not in met]
                        if result.verdict != "ACCEPT":
                            allowed = False
                            break
                    met = [c for c in met if not c.endswith(" reaching itself")]
                    want = expected_comments(verdict)
                    if allowed != verdict.allowed:
                        wrong.append(f"{s}->{d} {protocol}/{port}: fake {'allows' if allowed else 'denies'}, {verdict}")
                    elif want is not None and met != want:
                        wrong.append(f"{s}->{d} {protocol}/{port}: fake met rules {met}, decide says {want}")
                    elif want is None and not (met and drop_explained(verdict.deciding, met[-1])):
                        wrong.append(f"{s}->{d} {protocol}/{port}: dropped after {met}, decide: {verdict}")
    assert not wrong, f"{len(wrong)} disagreements:\n" + "\n".join(wrong[:20])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matrix_through_the_fake(case: Case) -> None:
    view, ips, nodes = view_for(case)
    fakes = {node: loaded(view, node) for node in NODES}
    allowed = {}
    for s in ALL_PODS:
        for d in ALL_PODS:
            packet = Packet(ips[s], ips[d], case.port, case.protocol)
            # A pod reaching itself never leaves it; the trace would still ask the fake (the hairpin rule).
            crossed = {nodes[s], nodes[d]}
            allowed[(s, d)] = all(fakes[n].trace(packet).verdict == "ACCEPT" for n in crossed)
    problem = compare(case.matrix(), Reachability(allowed))
    assert not problem, problem


def pods(n: int, node: str = "n1") -> list[Pod]:
    return [Pod("x", f"p{i}", {"app": "web"}, (ipaddress.ip_address(f"10.244.{i // 200}.{i % 200 + 2}"),), node)
            for i in range(n)]


def chains_of(text: str) -> list[str]:
    return re.findall(r"^:(\S+) - \[0:0\]$", text, re.MULTILINE)


def test_a_hundred_pods_under_the_same_policies_share_one_group_chain() -> None:
    view = ClusterView(
        policies=[parse_policy(policy("x", f"p{i}", {"podSelector": {}, "ingress": [{"ports": [{"port": 80 + i}]}]}))
                  for i in range(3)],
        pods=pods(100),
    )
    text = render(view, "n1")
    group = group_chain("Ingress", ["x/p0", "x/p1", "x/p2"])
    assert chains_of(text) == [TOP, "KUBE-NWPLCY-I-x.p0", "KUBE-NWPLCY-I-x.p1", "KUBE-NWPLCY-I-x.p2", group]
    assert text.count(f"-j {group}") == 100
    assert '-A KUBE-NWPLCY-I-x.p1 -p tcp -m tcp --dport 81 -m comment --comment "x/p1 ingress rule 0"' in text


def test_chain_names_fit_28_characters_and_long_ones_are_hashed_apart() -> None:
    a = parse_policy(policy("team-with-a-long-name", "allow-" + "a" * 40, {"podSelector": {}}))
    b = parse_policy(policy("team-with-a-long-name", "allow-" + "a" * 39 + "b", {"podSelector": {}}))
    names = {policy_chain(d, p) for d in ("Ingress", "Egress") for p in (a, b)}
    assert len(names) == 4 and all(len(n) <= MAX_CHAIN for n in names)
    assert policy_chain("Ingress", parse_policy(policy("x", "web", {"podSelector": {}}))) == "KUBE-NWPLCY-I-x.web"
    assert len(group_chain("Egress", ["x/a", "x/b"])) == MAX_CHAIN


def test_ports_ranges_sctp_named_ports_and_peers() -> None:
    web = Pod("x", "web", {"app": "web"}, (ipaddress.ip_address("10.244.0.2"),), "n1",
              named_ports={("http", "TCP"): 8080})
    other = Pod("y", "other", {"app": "client"}, (ipaddress.ip_address("10.244.1.2"),), "n2")
    spec = {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{
        "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}},
                 {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
        "ports": [{"port": 9000, "endPort": 9100}, {"protocol": "SCTP", "port": 36412}, {"port": "http"}],
    }]}
    text = render(ClusterView(policies=[parse_policy(policy("x", "web", spec))], pods=[web, other]), "n1")
    chain = policy_chain("Ingress", parse_policy(policy("x", "web", spec)))
    rules = [line for line in text.splitlines() if line.startswith(f"-A {chain} ")]
    assert f"-A {chain} -s 10.244.1.2/32 -p tcp -m tcp --dport 9000:9100" in rules[0]
    assert any("-s 10.244.1.2/32 -p sctp -m sctp --dport 36412" in r for r in rules)
    assert any("-s 10.244.1.2/32 -d 10.244.0.2/32 -p tcp -m tcp --dport 8080" in r for r in rules)
    # The except is a hole: the block is written as the CIDRs around it, one rule each.
    assert not any("192.168.1.0" in r for r in rules)
    assert any("-s 192.168.0.0/24 " in r for r in rules) and any("-s 192.168.128.0/17 " in r for r in rules)
    fake = FakeIptables()
    IptablesCommand(runner=fake).apply(text)
    for src, port, proto, verdict in (("10.244.1.2", 9050, "TCP", "ACCEPT"), ("10.244.1.2", 9101, "TCP", "DROP"),
                                      ("10.244.1.2", 36412, "SCTP", "ACCEPT"), ("10.244.1.2", 8080, "TCP", "ACCEPT"),
                                      ("192.168.1.7", 8080, "TCP", "DROP"), ("192.168.2.7", 8080, "TCP", "ACCEPT")):
        assert fake.trace(Packet(src, "10.244.0.2", port, proto)).verdict == verdict, (src, port, proto)


def test_rules_name_the_policy_and_the_drop_names_the_isolating_policies() -> None:
    view = ClusterView(policies=[parse_policy(policy("x", "web", {"podSelector": {}, "ingress": [{}, {}]}))],
                       pods=pods(1))
    text = render(view, "n1")
    assert '--comment "x/web ingress rule 0" -j MARK --or-mark 0x20000' in text
    assert '--comment "ingress isolated by x/web" -j DROP' in text
    # The first rule that allows decides: the trace meets rule 0 only, though rule 1 would allow too.
    fake = loaded(view, "n1")
    assert fake.trace(Packet("10.244.9.9", "10.244.0.2", 80)).paths[0].verdict_rules == ("x/web ingress rule 0",)
    comments = re.findall(r'--comment "([^"]*)"', render(ClusterView(
        policies=[parse_policy(policy("x", "p" * 250, {"podSelector": {}, "ingress": [{}]}))], pods=pods(1)), "n1"))
    assert comments and all(len(c.encode()) <= 128 for c in comments)


def test_a_rule_that_matches_nothing_is_left_out_and_the_pod_stays_isolated() -> None:
    view = ClusterView(
        policies=[parse_policy(policy("x", "named", {"podSelector": {}, "ingress": [{"ports": [{"port": "nope"}]}]}))],
        pods=pods(1),
    )
    text = render(view, "n1")
    assert "x/named ingress rule 0" not in text
    fake = loaded(view, "n1")
    assert fake.trace(Packet("10.244.9.9", "10.244.0.2", 80)).verdict == "DROP"


def test_the_jump_goes_after_kube_proxys_and_the_marked_jump_before_kube_forward() -> None:
    fake = FakeIptables()
    # kube-proxy's filter chains and jumps first, as on a node whose kube-proxy runs in iptables mode.
    proxy_filter = full_transaction(_empty_proxy_ruleset(), missing_jumps=JUMPS).split("*nat")[0]
    fake.restore(proxy_filter)
    command = IptablesCommand(runner=fake)
    view = ClusterView(policies=[parse_policy(policy("x", "deny", {"podSelector": {}}))], pods=pods(1))
    command.apply(render(view, "n1"))
    targets = [r.target for r in fake.chain("filter", "FORWARD").rules]
    assert targets == ["KUBE-PROXY-FIREWALL", TOP, "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", TOP]
    saved = fake.save("filter")
    assert f"-A FORWARD {JUMP}" in saved and f"-A FORWARD {MARKED_JUMP}" in saved
    # Applying again keeps exactly one of each; kube-proxy hooking in later is followed.
    command.apply(render(view, "n1"))
    assert [r.target for r in fake.chain("filter", "FORWARD").rules] == targets
    # A masqueraded (kube-proxy-marked) packet is judged before KUBE-FORWARD would accept it.
    fake.restore("*filter\n-I FORWARD 1 -j MARK --or-mark 0x4000\nCOMMIT\n")
    assert fake.trace(Packet("172.18.0.9", "10.244.0.2", 80)).verdict == "DROP"


def _empty_proxy_ruleset():  # type: ignore[no-untyped-def]
    from proxy.iptables import render as proxy_render
    from proxy.plan import NodeContext, ProxyPlan

    return proxy_render(ProxyPlan(node=NodeContext(name="n1"), services=()))


def test_stale_chains_go_and_cleanup_removes_only_ours() -> None:
    fake = FakeIptables()
    fake.restore("*filter\n:OTHER - [0:0]\n-A OTHER -j ACCEPT\n-A FORWARD -j OTHER\nCOMMIT\n")
    command = IptablesCommand(runner=fake)
    two = ClusterView(policies=[parse_policy(policy("x", n, {"podSelector": {}})) for n in ("a", "b")], pods=pods(1))
    command.apply(render(two, "n1"))
    assert "KUBE-NWPLCY-I-x.b" in fake.tables["filter"]
    one = ClusterView(policies=[parse_policy(policy("x", "a", {"podSelector": {}}))], pods=pods(1))
    command.apply(render(one, "n1"))
    assert "KUBE-NWPLCY-I-x.b" not in fake.tables["filter"]
    assert group_chain("Ingress", ["x/a", "x/b"]) not in fake.tables["filter"]
    command.cleanup()
    assert sorted(fake.tables["filter"]) == ["FORWARD", "INPUT", "OTHER", "OUTPUT"]
    assert [r.target for r in fake.chain("filter", "FORWARD").rules] == ["OTHER"]
    assert cleanup(fake.save("filter")) == ""  # nothing of ours left: nothing to do


def test_complete_refuses_text_that_is_not_a_rendered_ruleset() -> None:
    with pytest.raises(Exception, match="one \\*filter"):
        complete("*nat\nCOMMIT\n", "")


def test_the_fake_refuses_a_jump_to_a_chain_render_did_not_declare() -> None:
    # The fake is strict enough to catch a rendering bug: a dispatch rule to a group chain never declared.
    view = ClusterView(policies=[parse_policy(policy("x", "deny", {"podSelector": {}}))], pods=pods(1))
    text = render(view, "n1")
    broken = "\n".join(line for line in text.splitlines() if not line.startswith(":KUBE-NWPLCY-IG-"))
    with pytest.raises(FakeIptablesError):
        IptablesCommand(runner=FakeIptables()).runner.restore(complete(broken + "\n", ""))


def test_cleanup_removes_the_rules_of_both_modes() -> None:
    from netpol.nftables import TABLE
    from netpol.server import remove_rules

    class Nft:
        def __init__(self) -> None:
            self.applied: list[str] = []

        def apply(self, transaction: str) -> None:
            self.applied.append(transaction)

    fake = FakeIptables()
    command = IptablesCommand(runner=fake)
    command.apply(render(ClusterView(policies=[parse_policy(policy("x", "deny", {"podSelector": {}}))],
                                     pods=pods(1)), "n1"))
    nft = Nft()
    remove_rules(nft, iptables_backend=command)
    assert nft.applied == [f"add table ip {TABLE}\ndelete table ip {TABLE}\n"]
    assert not [c for c in fake.tables["filter"] if c.startswith("KUBE-NWPLCY-")]
    assert fake.chain("filter", "FORWARD").rules == []


def test_the_command_line_takes_the_mode() -> None:
    import netpol.__main__ as entry

    with pytest.raises(SystemExit):
        entry.main(["--mode", "ipvs", "--cleanup"])
