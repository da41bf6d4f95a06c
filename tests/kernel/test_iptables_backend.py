"""The iptables backend in the kernel: real packets through real rules in throwaway namespaces, with the
nft-based iptables (iptables-nft, the default) and the legacy one (iptables-legacy), in upstream's layout,
and with iptables-nft also in the layout with KUBE-SEP chains for local endpoints only.

The topology and the little servers are test_nftables_backend.py's (see its docstring): pods routed /32
behind one node namespace, an external host `ext` that also owns 10.96.0.99 and listens there.
"""

from __future__ import annotations

import random
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit
from test_nftables_backend import (
    EXT_DENIED_IP,
    EXT_IP,
    GATEWAY,
    NODE,
    NODE_IP,
    NODE_OF,
    PODS,
    Servers,
    Topology,
    cluster,
    connect,
    endpoints_reached,
    netns,
    node_plan,
)

from proxy import plan, services_from, slices_from
from proxy.iptables import IptablesBackend, SubprocessIptables
from tests.waiting import wait_until


class Setup:
    def __init__(self, topo: Topology, flavour: Any, endpoint_chains: Any) -> None:
        self.topo = topo
        self.flavour = flavour
        self.endpoint_chains = endpoint_chains

    def __getitem__(self, role: str) -> str:
        return self.topo[role]

    def runner(self, ns: str | None = None) -> SubprocessIptables:
        return SubprocessIptables(netns=ns or self.topo["node"], flavour=self.flavour)

    def backend(self, ns: str | None = None) -> IptablesBackend:
        return IptablesBackend(runner=self.runner(ns), endpoint_chains=self.endpoint_chains)


@pytest.fixture(scope="module", params=[("nft", "all"), ("legacy", "all"), ("nft", "local")],
                ids=["nft", "legacy", "nft-local-seps"])
def topo(request: pytest.FixtureRequest) -> Iterator[Setup]:
    t = Topology()
    servers = Servers()
    setup = Setup(t, *request.param)
    try:
        t.build()
        # ext also owns the ClusterIP 10.96.0.10, and answers on a port the Service does not have.
        subprocess.run(["ip", "-n", t["ext"], "addr", "add", "10.96.0.10/32", "dev", "lo"], check=True)
        for role in ("pod1", "pod2", "client", "remote"):
            servers.tcp(t[role], PODS[role], 8080)
        servers.udp(t["pod1"], PODS["pod1"], 5353)
        servers.tcp(t["ext"], "10.96.0.99", 80)
        servers.tcp(t["ext"], "10.96.0.10", 81)  # the unknown port of a ClusterIP, routed on to ext
        setup.backend().sync(node_plan())
        yield setup
    finally:
        servers.close()
        t.teardown()


def saved(setup: Setup, ns: str) -> str:
    """Our chains as the kernel holds them (nat and filter), without comments and counters."""
    runner = setup.runner(ns)
    text = runner.save("filter") + runner.save("nat")
    # Chain headers carry packet counters ("[40:2400]") in legacy iptables.
    return "\n".join(line.split(" [")[0] for line in text.splitlines() if not line.startswith("#"))


def test_cluster_ip_reaches_every_endpoint(topo: Setup) -> None:
    assert endpoints_reached(topo["client"], "10.96.0.10", 80) == {"10.244.1.11:8080", "10.244.1.12:8080"}


def test_pod_to_cluster_ip_keeps_its_source(topo: Setup) -> None:
    assert connect(topo["client"], "10.96.0.10", 80).split()[1] == PODS["client"]


def test_node_itself_reaches_cluster_ip_masqueraded(topo: Setup) -> None:
    answer = connect(topo["node"], "10.96.0.10", 80)
    assert answer.split()[0] in {"10.244.1.11:8080", "10.244.1.12:8080"}
    assert answer.split()[1] == GATEWAY


def test_udp_cluster_ip(topo: Setup) -> None:
    with netns(topo["client"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(1.0)
        s.sendto(b"q", ("10.96.0.53", 53))
        data, peer = s.recvfrom(512)
    assert data.decode() == f"10.244.1.11:5353 {PODS['client']}"
    assert peer == ("10.96.0.53", 53)


def test_service_without_endpoints_is_refused_at_once(topo: Setup) -> None:
    # Refused, not dropped: a dropped SYN would be retransmitted until connect's timeout (TIMEOUT), so
    # REFUSED says an answer (the REJECT's) came back, however loaded the machine is.
    assert connect(topo["client"], "10.96.0.11", 80, timeout=3.0) == "REFUSED"
    assert connect(topo["node"], "10.96.0.11", 80, timeout=3.0) == "REFUSED"


def test_iptables_mode_leaves_other_service_addresses_alone(topo: Setup) -> None:
    # Kubernetes' iptables mode (unlike nftables mode) neither rejects unknown ports of a ClusterIP nor
    # drops unallocated service addresses: both are routed on, here to ext, which answers.
    assert connect(topo["client"], "10.96.0.10", 81).startswith("10.96.0.10:81")
    assert connect(topo["client"], "10.96.0.99", 80).startswith("10.96.0.99:80")


def test_internal_traffic_policy_local_without_local_endpoint_drops(topo: Setup) -> None:
    assert connect(topo["client"], "10.96.0.16", 80, timeout=0.5) == "TIMEOUT"


def test_hairpin_pod_reaches_itself_through_its_service(topo: Setup) -> None:
    answer = connect(topo["client"], "10.96.0.12", 80)
    assert answer == f"{PODS['client']}:8080 {GATEWAY}"


def test_nodeport_from_outside_is_masqueraded(topo: Setup) -> None:
    assert connect(topo["ext"], NODE_IP, 30080) == f"{PODS['remote']}:8080 {GATEWAY}"


def test_nodeport_external_traffic_policy_local_keeps_the_client_address(topo: Setup) -> None:
    answers = {connect(topo["ext"], NODE_IP, 30081) for _ in range(20)}
    assert answers == {f"{PODS['pod1']}:8080 {EXT_IP}"}


def test_etp_local_pods_short_circuit_to_all_endpoints(topo: Setup) -> None:
    assert endpoints_reached(topo["client"], NODE_IP, 30081) == {"10.244.1.11:8080", "10.244.2.21:8080"}


def test_node_to_etp_local_nodeport_short_circuits_masqueraded(topo: Setup) -> None:
    answers = {connect(topo["node"], NODE_IP, 30081) for _ in range(30)}
    assert answers == {f"{PODS['pod1']}:8080 {GATEWAY}", f"{PODS['remote']}:8080 {GATEWAY}"}


def test_load_balancer_source_ranges(topo: Setup) -> None:
    assert connect(topo["ext"], "192.0.2.50", 80, source=EXT_IP) == f"{PODS['pod2']}:8080 {GATEWAY}"
    assert connect(topo["ext"], "192.0.2.50", 80, source=EXT_DENIED_IP, timeout=0.5) == "TIMEOUT"
    assert connect(topo["ext"], NODE_IP, 30082, source=EXT_DENIED_IP).startswith(f"{PODS['pod2']}:8080")


def test_sctp_cluster_ip_is_dnated(topo: Setup) -> None:
    with netns(topo["pod1"]):
        listen = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    with netns(topo["client"]):
        out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP)
    with listen, out:
        listen.settimeout(0.2)
        init = SCTP(sport=40001, dport=3868, tag=0) / SCTPChunkInit(
            init_tag=1, a_rwnd=1500, n_out_streams=1, n_in_streams=1, init_tsn=1)
        out.sendto(bytes(init), ("10.96.0.20", 0))
        seen = set()

        def dnated_init_seen() -> bool:
            try:
                frame = Ether(listen.recv(4096))
            except TimeoutError:
                return False
            if SCTP in frame:
                seen.add((frame[IP].src, frame[IP].dst, frame[SCTP].dport))
            return (PODS["client"], PODS["pod1"], 9868) in seen

        # Until the INIT arrives rewritten to the endpoint; the timeout only guards against a hang.
        wait_until(dnated_init_seen, timeout=10, interval=0, message="the SCTP INIT, DNATed to pod1:9868",
                   describe=lambda: f"SCTP frames seen: {sorted(seen)}")


def test_affinity_in_the_kernel(topo: Setup) -> None:
    backend = topo.backend()
    services, slices = cluster()
    services[0]["spec"]["sessionAffinity"] = "ClientIP"
    try:
        backend.sync(plan(services_from(services), slices_from(slices), NODE))
        assert len(endpoints_reached(topo["client"], "10.96.0.10", 80, tries=15)) == 1
        assert len(endpoints_reached(topo["node"], "10.96.0.10", 80, tries=15)) == 1
    finally:
        backend.sync(node_plan(), full=True)


def test_partial_syncs_move_traffic_and_match_a_full_sync(
        topo: Setup, throwaway_netns: Callable[[], str]) -> None:
    backend = topo.backend()
    try:
        assert backend.sync(node_plan()).full
        result = backend.sync(node_plan(["pod2"]))
        assert not result.full
        assert endpoints_reached(topo["client"], "10.96.0.10", 80, tries=10) == {"10.244.1.12:8080"}
        assert not backend.sync(node_plan([])).full
        # The partial sync took effect when sync() returned: the next connection is refused (REJECT),
        # not sent to the endpoint that went, nor dropped (that would be TIMEOUT).
        assert connect(topo["client"], "10.96.0.10", 80, timeout=3.0) == "REFUSED"
        assert not backend.sync(node_plan(["pod1", "pod2", "remote"])).full
        assert endpoints_reached(topo["client"], "10.96.0.10", 80) == {
            "10.244.1.11:8080", "10.244.1.12:8080", "10.244.2.21:8080"}
        fresh = throwaway_netns()
        topo.backend(fresh).sync(node_plan(["pod1", "pod2", "remote"]))
        assert saved(topo, topo["node"]) == saved(topo, fresh)
    finally:
        backend.sync(node_plan(), full=True)


def test_random_partial_syncs_leave_what_a_full_sync_makes(
        topo: Setup, throwaway_netns: Callable[[], str]) -> None:
    # The partial-sync logic against the real iptables-restore (which refuses what a fake might accept).
    rng = random.Random(11)
    partial_ns, full_ns = throwaway_netns(), throwaway_netns()
    backend = topo.backend(partial_ns)
    services, slices = cluster()
    backend.sync(plan(services_from(services), slices_from(slices), NODE))
    for step in range(10):
        svc = rng.randrange(len(services))
        change = rng.choice(["endpoints", "affinity", "etp", "remove"])
        if change == "endpoints":
            roles = rng.sample(["pod1", "pod2", "client", "remote"], rng.randrange(5))
            slices[svc]["endpoints"] = [{"addresses": [PODS[r]], "nodeName": NODE_OF[r]} for r in roles]
        elif change == "affinity":
            services[svc]["spec"]["sessionAffinity"] = rng.choice(["ClientIP", "None"])
            services[svc]["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rng.choice([30, 60])}}
        elif change == "etp":
            services[svc]["spec"]["externalTrafficPolicy"] = rng.choice(["Local", "Cluster"])
        elif len(services) > 2:
            del services[svc]
            del slices[svc]
        p = plan(services_from(services), slices_from(slices), NODE)
        assert not backend.sync(p).full
        topo.backend(full_ns).sync(p, full=True)
        assert saved(topo, partial_ns) == saved(topo, full_ns), f"step {step}: {change}"


def test_cleanup_removes_every_chain_and_jump(topo: Setup) -> None:
    backend = topo.backend()
    try:
        backend.cleanup()
        text = saved(topo, topo["node"])
        assert "KUBE" not in text, text
        # Untouched now: routed on to ext, which owns 10.96.0.10 but has nothing on port 80.
        assert connect(topo["client"], "10.96.0.10", 80, timeout=0.5) == "REFUSED"
        backend.cleanup()  # nothing left to remove: still fine
    finally:
        backend.sync(node_plan(), full=True)


def test_restore_failure_changes_nothing(topo: Setup) -> None:
    before = saved(topo, topo["node"])
    with pytest.raises(Exception, match="iptables"):
        topo.runner().restore("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j KUBE-NOWHERE\nCOMMIT\n")
    assert saved(topo, topo["node"]) == before



def test_tampering_is_detected_and_repaired(topo: Setup) -> None:
    backend = topo.backend()
    backend.sync(node_plan(), full=True)
    assert backend.intact()
    subprocess.run(["ip", "netns", "exec", topo["node"], f"iptables-{topo.flavour}", "-t", "nat", "-D", "PREROUTING",
                    "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"], check=True)
    assert not backend.intact()
    # Pods' traffic is no longer DNATed: it goes on to ext (which owns 10.96.0.10, nothing on port 80).
    assert connect(topo["client"], "10.96.0.10", 80) == "REFUSED"
    backend.sync(node_plan(), full=True)
    assert backend.intact()
    assert endpoints_reached(topo["client"], "10.96.0.10", 80, tries=20) == {"10.244.1.11:8080", "10.244.1.12:8080"}
