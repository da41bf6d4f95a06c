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

import errno
import select
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from firewall.iptables import SubprocessIptables
from netpol import iptables
from netpol.decide import ClusterView
from netpol.model import parse_namespace, parse_pod, parse_policy
from netpol.nftables import TABLE, cleanup, render
from proxy.iptables import JUMPS, IptablesBackend, full_transaction
from proxy.iptables import render as proxy_render
from proxy.plan import DEFAULT_MASQUERADE_MARK, NodeContext, ProxyPlan
from tests.conftest import require_root, require_tool
from tests.kernel.test_nftables_backend import Servers, netns
from tests.netpol_cases import ALL_PODS, CASES, PORTS, Case, PodRef, Reachability, cluster_objects, compare

NODE = "node-1"
GATEWAY = "10.250.255.1"
# A range of its own, so the test can run beside a cluster on the machine.
IPS = {pod: f"10.250.0.{10 + i}" for i, pod in enumerate(ALL_PODS)}
# Long enough for a SYN and its answer between namespaces on a loaded machine; a dropped SYN is
# retransmitted only after a second, so anything unanswered by then was dropped.
PROBE_WINDOW = 0.8


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
        policies=[parse_policy(p) for p in case.policies(IPS)],
        pods=[p for p in (parse_pod(o) for o in pods) if p is not None],
        namespaces=[parse_namespace(o) for o in namespaces],
    )


def probe_all(node: Node, protocol: str, port: int) -> Reachability:
    """Every ordered pair of distinct pods at once; a pod reaching itself never crosses the node."""
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    pending: dict[socket.socket, tuple[PodRef, PodRef]] = {}
    allowed = {(p, p): True for p in ALL_PODS}
    try:
        for src in ALL_PODS:
            for dst in ALL_PODS:
                if src == dst:
                    continue
                with netns(node.pods[src]):
                    s = socket.socket(socket.AF_INET, kind)
                s.setblocking(False)
                pending[s] = (src, dst)
                if kind == socket.SOCK_STREAM:
                    code = s.connect_ex((IPS[dst], port))
                    assert code in (0, errno.EINPROGRESS), f"{src}->{dst}: connect gave {errno.errorcode[code]}"
                else:
                    s.sendto(b"probe", (IPS[dst], port))
        deadline = time.monotonic() + PROBE_WINDOW
        while pending and (left := deadline - time.monotonic()) > 0:
            waiting = list(pending)
            if kind == socket.SOCK_STREAM:
                _, ready, _ = select.select([], waiting, [], left)
            else:
                ready, _, _ = select.select(waiting, [], [], left)
            for s in ready:
                pair = pending.pop(s)
                error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                assert error == 0, f"{pair[0]}->{pair[1]}: {errno.errorcode.get(error, error)} (a server is missing?)"
                if kind == socket.SOCK_DGRAM:
                    s.recv(256)
                allowed[pair] = True
                s.close()
        for pair in pending.values():
            allowed[pair] = False
    finally:
        for s in pending:
            s.close()
    return Reachability(allowed)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
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
    proxy = full_transaction(proxy_render(ProxyPlan(node=NodeContext(name=NODE), services=())), missing_jumps=JUMPS)
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
