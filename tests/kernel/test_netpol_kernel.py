"""The NetworkPolicy ruleset in the real kernel: every truth-table case, as a whole matrix of real
connections between nine pods of one node.

The node is a namespace with IP forwarding and one routed veth per pod (as in the proxy's kernel
tests); each pod serves TCP and UDP on 80 and 81. For each case and each mode the agent's ruleset (the
nftables table, or the iptables chains through iptables-nft as the agent writes them) is rendered from
the case's policies and loaded into the node, then all 72 pod pairs connect at once (non-blocking
sockets): a connection that completes (TCP) or is answered (UDP) within the probe window is allowed,
one that is dropped is not. The expected matrix is the case's own, the one the pure decision passes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from control.client import Client
from firewall.iptables import SubprocessIptables
from netpol import iptables
from netpol.decide import ClusterView, decide
from netpol.errors import NetpolError
from netpol.model import parse_namespace, parse_pod
from netpol.nftables import TABLE, Planner, cleanup, delta_transaction, full_transaction, render
from netpol.server import AgentConfig, NetpolAgent
from proxy.iptables import JUMPS, IptablesBackend
from proxy.iptables import full_transaction as proxy_full_transaction
from proxy.iptables import render as proxy_render
from proxy.plan import DEFAULT_MASQUERADE_MARK, NodeContext, ProxyPlan
from tests.conftest import require_root, require_tool
from tests.kernel.test_nftables_backend import Servers
from tests.netpol_cases import (
    ALL_PODS,
    CASES,
    MATRIX_CASES,
    PORTS,
    Case,
    PodRef,
    Reachability,
    cluster_objects,
    compare,
    policy,
    view_parts,
)
from tests.netpol_probe import probe_matrix

NODE = "node-1"
GATEWAY = "10.250.255.1"
# A range of its own, so the test can run beside a cluster on the machine.
IPS = {pod: f"10.250.0.{10 + i}" for i, pod in enumerate(ALL_PODS)}


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def nft(node: str, script: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", node, "nft", "-f", "-"], input=script,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"nft refused the ruleset: {done.stderr}\n{script}"


MODES = ("nftables", "iptables")


def agent_iptables(node: str) -> iptables.IptablesCommand:
    """The agent's own iptables runner, in the node (iptables-nft, as the agent uses by default)."""
    return iptables.IptablesCommand(runner=SubprocessIptables(netns=node, flavour="nft"))


def load(node: str, mode: str, view: ClusterView) -> None:
    if mode == "nftables":
        nft(node, render(view, NODE))
    else:
        agent_iptables(node).apply(iptables.render(view, NODE))


def unload(node: str, mode: str) -> None:
    if mode == "nftables":
        nft(node, cleanup())
    else:
        agent_iptables(node).cleanup()


class Node:
    def __init__(self) -> None:
        self.prefix = f"ksim-test-{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []
        self.pods: dict[PodRef, str] = {}

    def make(self, suffix: str) -> str:
        name = f"{self.prefix}.{suffix}"
        sh("ip", "netns", "add", name)
        self.made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def build(self) -> None:
        self.node = self.make("node")
        sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i, pod in enumerate(ALL_PODS):
            ns = self.make(f"{pod.namespace}-{pod.name}")
            self.pods[pod] = ns
            host_if, ip = f"vp{i}", IPS[pod]
            sh("ip", "-n", self.node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", self.node, "addr", "add", f"{GATEWAY}/32", "dev", host_if)
            sh("ip", "-n", self.node, "link", "set", host_if, "up")
            sh("ip", "-n", self.node, "route", "add", f"{ip}/32", "dev", host_if)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", GATEWAY, "dev", "eth0")
            sh("ip", "-n", ns, "route", "add", "default", "via", GATEWAY)

    def teardown(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    require_root()
    require_tool("nft")
    require_tool("iptables-nft-restore")
    n = Node()
    servers = Servers()
    try:
        n.build()
        for pod, ns in n.pods.items():
            for port in PORTS:
                servers.tcp(ns, IPS[pod], port)
                servers.udp(ns, IPS[pod], port)
        yield n
    finally:
        servers.close()
        n.teardown()


def view_of(case: Case) -> ClusterView:
    namespaces, pods = cluster_objects(IPS, dict.fromkeys(ALL_PODS, NODE))
    return ClusterView(
        **view_parts(case.policies(IPS)),
        pods=[p for p in (parse_pod(o) for o in pods) if p is not None],
        namespaces=[parse_namespace(o) for o in namespaces],
    )


def probe_all(node: Node, protocol: str, port: int) -> Reachability:
    """Every ordered pair of distinct pods at once; a pod reaching itself never crosses the node."""
    return probe_matrix(node.pods, IPS, protocol, port)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", MATRIX_CASES, ids=[c.name for c in MATRIX_CASES])
def test_matrix_with_real_connections(node: Node, case: Case, mode: str) -> None:
    load(node.node, mode, view_of(case))
    try:
        problem = compare(case.matrix(), probe_all(node, case.protocol, case.port))
    finally:
        unload(node.node, mode)
    assert not problem, f"{mode}: {problem}"


def test_the_table_is_removed_by_cleanup(node: Node) -> None:
    nft(node.node, render(view_of(CASES[1]), NODE))
    assert TABLE in sh("ip", "netns", "exec", node.node, "nft", "list", "tables")
    nft(node.node, cleanup())
    assert TABLE not in sh("ip", "netns", "exec", node.node, "nft", "list", "tables")


# --- the incremental sync in the kernel -------------------------------------------------------------------

def parsed(policies: list[dict]) -> tuple[list, list, list, list]:
    """Planner.update's arguments: NetworkPolicies, pods, namespaces, admin policies."""
    namespaces, pods = cluster_objects(IPS, dict.fromkeys(ALL_PODS, NODE))
    parts = view_parts(policies)
    return (parts["policies"], [p for p in (parse_pod(o) for o in pods) if p is not None],
            [parse_namespace(o) for o in namespaces], parts["admin"])


def table_state(node: str) -> dict[str, object]:
    """The agent's table as the kernel holds it, without what depends on the order things were made in
    (handles, element order): what a full load and a sequence of deltas must agree on."""
    listing = json.loads(sh("ip", "netns", "exec", node, "nft", "-j", "list", "table", "ip", TABLE))["nftables"]
    state: dict[str, object] = {}
    for item in listing:
        for kind, body in item.items():
            if kind == "set" or kind == "map":
                state[f"{kind} {body['name']}"] = sorted(json.dumps(e, sort_keys=True) for e in body.get("elem", ()))
            elif kind == "chain":
                state.setdefault(f"chain {body['name']}", [])
            elif kind == "rule":
                rules = state.setdefault(f"chain {body['chain']}", [])
                assert isinstance(rules, list)
                rules.append(json.dumps(body["expr"], sort_keys=True))
    return state


def test_deltas_between_every_case_leave_the_table_a_full_load_makes(node: Node) -> None:
    planner = Planner(NODE)
    before = planner.update(*parsed([]))
    nft(node.node, full_transaction(before))
    try:
        for i, case in enumerate(MATRIX_CASES):
            after = planner.update(*parsed(list(case.policies(IPS))))
            delta = delta_transaction(before, after)
            nft(node.node, delta)
            got = table_state(node.node)
            nft(node.node, full_transaction(after))
            assert got == table_state(node.node), f"after the delta to {case.name!r}:\n{delta}"
            if i % 5 == 0:  # real packets on a sample: the whole walk would hold the lock too long
                nft(node.node, delta_transaction(after, before))
                nft(node.node, delta)
                problem = compare(case.matrix(), probe_all(node, case.protocol, case.port))
                assert not problem, f"after the delta to {case.name!r}: {problem}"
            before = after
    finally:
        nft(node.node, cleanup())


def test_a_refused_delta_leaves_the_previous_rules(node: Node) -> None:
    planner = Planner(NODE)
    deny = next(c for c in CASES if c.name == "deny all ingress in x")
    before = planner.update(*parsed(list(deny.policies(IPS))))
    nft(node.node, full_transaction(before))
    try:
        held = table_state(node.node)
        after = planner.update(*parsed([]))
        broken = delta_transaction(before, after) + f"add rule ip {TABLE} forward-ingress jump no-such-chain\n"
        done = subprocess.run(["ip", "netns", "exec", node.node, "nft", "-f", "-"], input=broken,
                              capture_output=True, text=True)
        assert done.returncode != 0
        assert table_state(node.node) == held
        problem = compare(deny.matrix(), probe_all(node, "TCP", 80))
        assert not problem, problem
    finally:
        nft(node.node, cleanup())


def test_five_thousand_peers_and_overlapping_ip_blocks_load_and_are_enforced(node: Node) -> None:
    xa, xb = PodRef("x", "a"), PodRef("x", "b")
    # Every other address of a range, so that no two merge into one prefix: 4,990 /32 elements.
    far = [{"ipBlock": {"cidr": f"10.251.{i // 128}.{2 * (i % 128)}/32"}} for i in range(4990)]
    overlapping = [
        {"ipBlock": {"cidr": "10.250.0.0/24", "except": ["10.250.0.8/29"]}},  # all pods but .8-.15
        {"ipBlock": {"cidr": "10.250.0.14/31"}},  # two of them back, inside the other block's except
        {"ipBlock": {"cidr": f"{IPS[xb]}/32"}},  # and x/b, by its own address
    ]
    selectors = [{"podSelector": {"matchLabels": {"pod": f"nobody-{i}"}}} for i in range(7)]
    peers = far + overlapping + selectors
    assert len(peers) == 5000
    spec = {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": peers, "ports": [{"port": 80}]}]}
    wide = policy("x", "wide", spec)
    plan = Planner(NODE).update(*parsed([wide]))
    assert any(s.interval and len(s.elements) >= 4990 for s in plan.sets.values())
    nft(node.node, full_transaction(plan))
    try:
        policies, pods, namespaces, _ = parsed([wide])
        view = ClusterView(policies=policies, pods=pods, namespaces=namespaces)
        expected = Reachability({(s, d): s == d or decide(view, IPS[s], IPS[d], "TCP", 80).allowed
                                 for s in ALL_PODS for d in ALL_PODS})
        # The reference itself: x/b by address, y/b and y/c through the overlap, z by the /24; not x/c, y/a.
        assert [s.name + s.namespace for s in ALL_PODS if s != xa and expected.allowed[(s, xa)]] == \
            ["bx", "by", "cy", "az", "bz", "cz"]
        problem = compare(expected, probe_all(node, "TCP", 80))
        assert not problem, problem
    finally:
        nft(node.node, cleanup())


class NodeNft:
    """The agent's backend (netpol.server.NftCommand) as run inside the test's node namespace."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.sent: list[str] = []

    def apply(self, transaction: str) -> None:
        self.sent.append(transaction)
        done = subprocess.run(["ip", "netns", "exec", self.node, "nft", "-f", "-"], input=transaction,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NetpolError(f"nft refused the ruleset: {done.stderr.strip()}")


def expected(policies: list[dict]) -> Reachability:
    found, pods, namespaces, admin = parsed(policies)
    view = ClusterView(policies=found, pods=pods, namespaces=namespaces, admin=admin)
    return Reachability({(s, d): s == d or decide(view, IPS[s], IPS[d], "TCP", 80).allowed
                         for s in ALL_PODS for d in ALL_PODS})


def test_the_agent_keeps_its_rules_when_nft_refuses_a_sync_and_repairs_the_table_with_a_full_one(
    node: Node,
) -> None:
    backend = NodeNft(node.node)
    agent = NetpolAgent(Client("https://127.0.0.1:1"), AgentConfig(NODE), backend)
    namespaces, pods = cluster_objects(IPS, dict.fromkeys(ALL_PODS, NODE))
    for i, obj in enumerate([*namespaces, *pods]):
        obj["metadata"].update(uid=f"uid-{i}", resourceVersion="1")
        (agent.namespaces if "namespace" not in obj["metadata"] else agent.pods).store.put(obj)
    deny = policy("x", "deny", {"podSelector": {}})
    allow = policy("x", "allow-b", {"podSelector": {"matchLabels": {"pod": "a"}},
                                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    deny["metadata"].update(uid="uid-deny", resourceVersion="1")
    allow["metadata"].update(uid="uid-allow", resourceVersion="1")
    agent.policies.store.put(deny)
    for informer in agent.informers:
        informer._synced = True  # as after the informers' first list
    try:
        asyncio.run(agent.sync())
        assert not compare(expected([deny]), probe_all(node, "TCP", 80))

        # Something else in the node takes the name of a set the next sync adds, with another type:
        # nft refuses that whole transaction, so the deny stays exactly as it was.
        nft(node.node, f"add set ip {TABLE} ingress-x/allow-b-0-peers {{ type inet_service; }}\n")
        agent.policies.store.put(allow)
        with pytest.raises(NetpolError):
            asyncio.run(agent.sync())
        assert not backend.sent[-1].startswith("add table")  # that was a delta
        assert agent.applied is None
        problem = compare(expected([deny]), probe_all(node, "TCP", 80))
        assert not problem, f"after the refused sync: {problem}"

        # The next sync replaces the whole table, the stranger's set with it, and the allow lands.
        asyncio.run(agent.sync())
        assert backend.sent[-1].startswith(f"add table ip {TABLE}\ndelete table ip {TABLE}\n")
        problem = compare(expected([deny, allow]), probe_all(node, "TCP", 80))
        assert not problem, f"after the full sync: {problem}"
        assert expected([deny, allow]) != expected([deny])  # the test can tell the two apart
    finally:
        nft(node.node, cleanup())


def test_the_iptables_chains_and_jump_are_removed_by_cleanup(node: Node) -> None:
    runner = SubprocessIptables(netns=node.node, flavour="nft")
    before = runner.save("filter")
    agent_iptables(node.node).apply(iptables.render(view_of(CASES[1]), NODE))
    saved = runner.save("filter")
    assert f"-A FORWARD {iptables.JUMP}" in saved and ":KUBE-NWPLCY-FORWARD" in saved
    agent_iptables(node.node).cleanup()
    after = runner.save("filter")
    assert "KUBE-NWPLCY" not in after
    assert [line for line in after.splitlines() if line.startswith("-A")] == \
        [line for line in before.splitlines() if line.startswith("-A")]


def test_beside_kube_proxys_chains_even_masqueraded_traffic_is_judged(node: Node) -> None:
    """kube-proxy's KUBE-FORWARD accepts every packet with its masquerade mark (NodePort, external and
    off-cluster ClusterIP clients): the agent's marked jump must judge those before it does. Here
    kube-proxy's filter chains are hooked first, and every forwarded packet carries the mark."""
    runner = SubprocessIptables(netns=node.node, flavour="nft")
    proxy = proxy_full_transaction(proxy_render(ProxyPlan(node=NodeContext(name=NODE), services=())),
                                   missing_jumps=JUMPS)
    mark = f"-j MARK --or-mark {DEFAULT_MASQUERADE_MARK:#x}"
    case = next(c for c in CASES if c.name == "deny all ingress and egress in x")
    try:
        runner.restore(proxy)
        runner.restore(f"*mangle\n-A PREROUTING {mark}\nCOMMIT\n")
        agent_iptables(node.node).apply(iptables.render(view_of(case), NODE))
        forward = [line.rsplit("-j ", 1)[-1] for line in runner.save("filter").splitlines()
                   if line.startswith("-A FORWARD ")]
        assert forward == ["KUBE-PROXY-FIREWALL", iptables.TOP, "KUBE-FORWARD", "KUBE-SERVICES",
                           "KUBE-EXTERNAL-SERVICES", iptables.TOP]
        problem = compare(case.matrix(), probe_all(node, case.protocol, case.port))
    finally:
        agent_iptables(node.node).cleanup()
        runner.restore(f"*mangle\n-D PREROUTING {mark}\nCOMMIT\n")
        IptablesBackend(runner=runner).cleanup()
    assert not problem, problem
    assert "KUBE-" not in runner.save("filter") and "MARK" not in runner.save("mangle")


def test_a_matrix_through_iptables_legacy(node: Node) -> None:
    """`--iptables-legacy` (x_tables, as kube-proxy's flag): the same chains, one case, real packets."""
    require_tool("iptables-legacy-restore")
    legacy = iptables.IptablesCommand(runner=SubprocessIptables(netns=node.node, flavour="legacy"))
    case = next(c for c in CASES if c.name == "deny all ingress and egress in x")
    legacy.apply(iptables.render(view_of(case), NODE))
    try:
        problem = compare(case.matrix(), probe_all(node, case.protocol, case.port))
    finally:
        legacy.cleanup()
    assert not problem, problem
    assert "KUBE-NWPLCY" not in SubprocessIptables(netns=node.node, flavour="legacy").save("filter")


def test_iptables_deltas_between_every_case_leave_the_table_a_full_load_makes(node: Node) -> None:
    """iptables mode's incremental sync in the kernel: after each delta, iptables-save shows what a full
    sync of the same chains shows; on a sample, real packets give the case's matrix."""
    runner = SubprocessIptables(netns=node.node, flavour="nft")
    command = agent_iptables(node.node)
    planner = iptables.Planner(NODE)
    before = planner.update(*parsed([]))
    command.apply(iptables.restore_text(before))

    def ours() -> list[str]:
        return sorted(line for line in runner.save("filter").splitlines() if "KUBE-NWPLCY" in line)

    try:
        for i, case in enumerate(CASES):
            after = planner.update(*parsed(list(case.policies(IPS))))
            delta = iptables.delta(before, after)
            command.apply_changes(delta)
            got = ours()
            command.apply(iptables.restore_text(after))
            assert got == ours(), f"after the delta to {case.name!r}:\n{delta}"
            if i % 5 == 0:  # real packets on a sample: the whole walk would hold the lock too long
                command.apply_changes(iptables.delta(after, before))
                command.apply_changes(delta)
                problem = compare(case.matrix(), probe_all(node, case.protocol, case.port))
                assert not problem, f"after the iptables delta to {case.name!r}: {problem}"
            before = after
    finally:
        command.cleanup()
