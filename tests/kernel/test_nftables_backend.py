"""The nftables backend in the kernel: real packets through real rules in throwaway namespaces.

Topology (all namespaces are ours, named ksim-test-<run>.<n>, removed after the module):

    pod1 10.244.1.11 ─┐                       ┌─ ext 172.18.0.100, .101 (outside the cluster;
    pod2 10.244.1.12 ─┤                       │       also owns 10.96.0.99 and 192.0.2.99)
    client 10.244.1.50┼── node (rules) ───────┘
    remote 10.244.2.21┘   172.18.0.2, pods routed /32, default route via ext

"remote" is on another node as far as the proxy knows (nodeName node-b). ext holds 10.96.0.99 (an
unallocated service address) and listens there: without our DROP a connection would succeed, so the
DROP test can fail. Likewise nothing but our REJECT can answer "refused" for a service IP.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import random
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit

from proxy import NodeContext, plan, services_from, slices_from
from proxy.nftables import NftablesBackend, SubprocessNft, full_transaction, render
from tests.conftest import require_root
from tests.waiting import wait_until

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
NODE_IP = "172.18.0.2"
EXT_IP, EXT_DENIED_IP = "172.18.0.100", "172.18.0.101"
GATEWAY = "10.244.255.1"  # the node's address on every pod link
PODS = {"pod1": "10.244.1.11", "pod2": "10.244.1.12", "client": "10.244.1.50", "remote": "10.244.2.21"}
NODE_OF = {"pod1": "node-a", "pod2": "node-a", "client": "node-a", "remote": "node-b"}


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace `name`; sockets made inside stay there."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        if _libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - would poison every later test
            os.write(2, b"cannot return to the test's own network namespace\n")
            os._exit(70)
        os.close(own)
        os.close(target)


class Servers:
    """TCP and UDP servers inside namespaces that answer "<their ip:port> <peer ip>"."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []

    def tcp(self, ns: str, ip: str, port: int) -> None:
        with netns(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        s.listen(64)
        s.settimeout(0.2)
        self._start(self._serve_tcp, s, f"{ip}:{port}")

    def udp(self, ns: str, ip: str, port: int) -> None:
        with netns(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, port))
        s.settimeout(0.2)
        self._start(self._serve_udp, s, f"{ip}:{port}")

    def _start(self, fn: Any, s: socket.socket, me: str) -> None:
        self.sockets.append(s)
        t = threading.Thread(target=fn, args=(s, me), daemon=True)
        t.start()
        self.threads.append(t)

    def _serve_tcp(self, s: socket.socket, me: str) -> None:
        while not self.stop.is_set():
            try:
                conn, peer = s.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.sendall(f"{me} {peer[0]}".encode())

    def _serve_udp(self, s: socket.socket, me: str) -> None:
        while not self.stop.is_set():
            try:
                _, peer = s.recvfrom(512)
            except (TimeoutError, OSError):
                continue
            s.sendto(f"{me} {peer[0]}".encode(), peer)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=2)
        for s in self.sockets:
            s.close()


class Topology:
    def __init__(self) -> None:
        run = uuid.uuid4().hex[:8]
        self.names: dict[str, str] = {}
        self.prefix = f"ksim-test-{run}"

    def make(self, role: str) -> str:
        name = f"{self.prefix}.{len(self.names)}"
        sh("ip", "netns", "add", name)
        self.names[role] = name
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def __getitem__(self, role: str) -> str:
        return self.names[role]

    def build(self) -> None:
        node = self.make("node")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i, (role, ip) in enumerate(PODS.items()):
            pod = self.make(role)
            host_if = f"vp{i}"
            sh("ip", "-n", node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod)
            sh("ip", "-n", node, "addr", "add", f"{GATEWAY}/32", "dev", host_if)
            sh("ip", "-n", node, "link", "set", host_if, "up")
            sh("ip", "-n", node, "route", "add", f"{ip}/32", "dev", host_if)
            sh("ip", "-n", pod, "addr", "add", f"{ip}/32", "dev", "eth0")
            sh("ip", "-n", pod, "link", "set", "eth0", "up")
            sh("ip", "-n", pod, "route", "add", GATEWAY, "dev", "eth0")
            sh("ip", "-n", pod, "route", "add", "default", "via", GATEWAY)
        ext = self.make("ext")
        sh("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", ext)
        sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        sh("ip", "-n", node, "link", "set", "eth0", "up")
        sh("ip", "-n", node, "route", "add", "default", "via", EXT_IP)
        for ip in (EXT_IP, EXT_DENIED_IP):
            sh("ip", "-n", ext, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ext, "addr", "add", "10.96.0.99/32", "dev", "lo")
        sh("ip", "-n", ext, "link", "set", "eth0", "up")
        sh("ip", "-n", ext, "route", "add", "default", "via", NODE_IP)

    def teardown(self) -> None:
        for name in reversed(list(self.names.values())):
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def service(name: str, cluster_ip: str, **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    ports = spec.pop("ports", [{"name": "http", "port": 80}])
    return {"metadata": {"namespace": "t", "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}, "status": status}


def slice_(
    svc: str, roles: list[str], *, port: int = 8080, name: str = "http", protocol: str = "TCP"
) -> dict[str, Any]:
    return {"metadata": {"namespace": "t", "name": f"{svc}-{name}", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": name, "port": port, "protocol": protocol}],
            "endpoints": [{"addresses": [PODS[r]], "nodeName": NODE_OF[r]} for r in roles]}


def cluster(endpoints_of_web: list[str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services = [
        service("web", "10.96.0.10"),
        service("empty", "10.96.0.11"),
        service("self", "10.96.0.12"),
        service("np", "10.96.0.13", type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}]),
        service("np-local", "10.96.0.14", type="NodePort", externalTrafficPolicy="Local",
                ports=[{"name": "http", "port": 80, "nodePort": 30081}]),
        service("lb", "10.96.0.15", type="LoadBalancer", loadBalancerSourceRanges=[f"{EXT_IP}/32"],
                ports=[{"name": "http", "port": 80, "nodePort": 30082}],
                status={"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}),
        service("dns", "10.96.0.53", ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]),
        service("itp", "10.96.0.16", internalTrafficPolicy="Local"),
        service("diameter", "10.96.0.20", ports=[{"name": "d", "port": 3868, "protocol": "SCTP"}]),
    ]
    slices = [
        slice_("web", ["pod1", "pod2"] if endpoints_of_web is None else endpoints_of_web),
        slice_("empty", []),
        slice_("self", ["client"]),
        slice_("np", ["remote"]),
        slice_("np-local", ["pod1", "remote"]),
        slice_("lb", ["pod2"]),
        slice_("dns", ["pod1"], port=5353, name="dns", protocol="UDP"),
        slice_("itp", ["remote"]),
        slice_("diameter", ["pod1"], port=9868, name="d", protocol="SCTP"),
    ]
    return services, slices


NODE = NodeContext(name="node-a", node_ips=(NODE_IP,), cluster_cidrs=("10.244.0.0/16",),
                   service_cidrs=("10.96.0.0/16",))


def node_plan(endpoints_of_web: list[str] | None = None) -> Any:
    services, slices = cluster(endpoints_of_web)
    return plan(services_from(services), slices_from(slices), NODE)


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    require_root()
    t = Topology()
    servers = Servers()
    try:
        t.build()
        for role in ("pod1", "pod2", "client", "remote"):
            servers.tcp(t[role], PODS[role], 8080)
        servers.udp(t["pod1"], PODS["pod1"], 5353)
        servers.tcp(t["ext"], "10.96.0.99", 80)
        NftablesBackend(runner=SubprocessNft(netns=t["node"])).sync(node_plan())
        yield t
    finally:
        servers.close()
        t.teardown()


def connect(ns: str, ip: str, port: int, *, source: str | None = None, timeout: float = 1.0) -> str:
    """'<server ip:port> <peer ip as the server saw it>', or REFUSED / TIMEOUT."""
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        try:
            s.connect((ip, port))
            return s.recv(256).decode()
        except ConnectionRefusedError:
            return "REFUSED"
        except TimeoutError:
            return "TIMEOUT"
        except OSError as err:
            if err.errno == errno.EHOSTUNREACH:
                return "UNREACHABLE"
            raise


def endpoints_reached(ns: str, ip: str, port: int, tries: int = 40) -> set[str]:
    return {connect(ns, ip, port).split()[0] for _ in range(tries)}


def kernel_table(ns: str) -> dict[str, Any]:
    """The table as the kernel holds it, without handles or listing order (nft lists in creation order)."""
    done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "ip", "kubesim-proxy"],
                          check=True, capture_output=True, text=True)
    out: dict[str, Any] = {}
    for obj in json.loads(done.stdout)["nftables"]:
        (kind, body), = obj.items()
        if kind == "rule":
            out.setdefault(f"rules {body['chain']}", []).append(json.dumps(body["expr"], sort_keys=True))
        elif kind in ("set", "map", "chain"):
            body = {k: v for k, v in body.items() if k != "handle"}
            if "elem" in body:
                body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
            out[f"{kind} {body['name']}"] = body
    return out


def test_cluster_ip_reaches_every_endpoint(topo: Topology) -> None:
    assert endpoints_reached(topo["client"], "10.96.0.10", 80) == {"10.244.1.11:8080", "10.244.1.12:8080"}


def test_pod_to_cluster_ip_keeps_its_source(topo: Topology) -> None:
    assert connect(topo["client"], "10.96.0.10", 80).split()[1] == PODS["client"]


def test_node_itself_reaches_cluster_ip_masqueraded(topo: Topology) -> None:
    answer = connect(topo["node"], "10.96.0.10", 80)
    assert answer.split()[0] in {"10.244.1.11:8080", "10.244.1.12:8080"}
    assert answer.split()[1] == GATEWAY  # SNAT to the node's address on the pod link


def test_udp_cluster_ip(topo: Topology) -> None:
    with netns(topo["client"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(1.0)
        s.sendto(b"q", ("10.96.0.53", 53))
        data, peer = s.recvfrom(512)
    assert data.decode() == f"10.244.1.11:5353 {PODS['client']}"
    assert peer == ("10.96.0.53", 53)  # the reply is un-DNATed


def test_service_without_endpoints_is_refused_at_once(topo: Topology) -> None:
    # Refused, not dropped: a dropped SYN would be retransmitted until connect's timeout (TIMEOUT), so
    # REFUSED says an answer (the REJECT's) came back, however loaded the machine is.
    assert connect(topo["client"], "10.96.0.11", 80, timeout=3.0) == "REFUSED"


def test_unknown_port_of_a_cluster_ip_is_refused(topo: Topology) -> None:
    assert connect(topo["client"], "10.96.0.10", 81, timeout=3.0) == "REFUSED"


def test_unallocated_service_address_is_dropped(topo: Topology) -> None:
    # ext really listens on 10.96.0.99:80 and the node routes it there: only our DROP stops it.
    assert connect(topo["ext"], "10.96.0.99", 80).startswith("10.96.0.99:80")
    assert connect(topo["client"], "10.96.0.99", 80, timeout=0.5) == "TIMEOUT"


def test_internal_traffic_policy_local_without_local_endpoint_drops(topo: Topology) -> None:
    assert connect(topo["client"], "10.96.0.16", 80, timeout=0.5) == "TIMEOUT"


def test_hairpin_pod_reaches_itself_through_its_service(topo: Topology) -> None:
    answer = connect(topo["client"], "10.96.0.12", 80)
    assert answer.split()[0] == f"{PODS['client']}:8080"
    assert answer.split()[1] == GATEWAY  # masqueraded, or the pod would drop its own source address


def test_nodeport_from_outside_is_masqueraded(topo: Topology) -> None:
    answer = connect(topo["ext"], NODE_IP, 30080)
    assert answer == f"{PODS['remote']}:8080 {GATEWAY}"


def test_nodeport_external_traffic_policy_local_keeps_the_client_address(topo: Topology) -> None:
    answers = {connect(topo["ext"], NODE_IP, 30081) for _ in range(20)}
    assert answers == {f"{PODS['pod1']}:8080 {EXT_IP}"}  # never the remote endpoint, never SNAT


def test_etp_local_pods_short_circuit_to_all_endpoints(topo: Topology) -> None:
    assert endpoints_reached(topo["client"], NODE_IP, 30081) == {"10.244.1.11:8080", "10.244.2.21:8080"}


def test_load_balancer_source_ranges(topo: Topology) -> None:
    assert connect(topo["ext"], "192.0.2.50", 80, source=EXT_IP) == f"{PODS['pod2']}:8080 {GATEWAY}"
    assert connect(topo["ext"], "192.0.2.50", 80, source=EXT_DENIED_IP, timeout=0.5) == "TIMEOUT"
    # NodePorts are not subject to loadBalancerSourceRanges.
    assert connect(topo["ext"], NODE_IP, 30082, source=EXT_DENIED_IP).startswith(f"{PODS['pod2']}:8080")


def test_partial_syncs_move_traffic_and_match_a_full_sync(topo: Topology) -> None:
    runner = SubprocessNft(netns=topo["node"])
    backend = NftablesBackend(runner=runner)
    try:
        backend.sync(node_plan())
        result = backend.sync(node_plan(["pod2"]))
        assert not result.full and result.transaction.startswith(("add element", "delete element", "add chain"))
        assert endpoints_reached(topo["client"], "10.96.0.10", 80, tries=10) == {"10.244.1.12:8080"}
        assert not backend.sync(node_plan([])).full
        # The partial sync took effect when sync() returned: the next connection is refused (REJECT),
        # not sent to the endpoint that went, nor dropped (that would be TIMEOUT).
        assert connect(topo["client"], "10.96.0.10", 80, timeout=3.0) == "REFUSED"
        backend.sync(node_plan(["pod1", "pod2", "remote"]))
        assert endpoints_reached(topo["client"], "10.96.0.10", 80) == {
            "10.244.1.11:8080", "10.244.1.12:8080", "10.244.2.21:8080"}
        after_partial = kernel_table(topo["node"])
        runner.run(full_transaction(render(node_plan(["pod1", "pod2", "remote"]))))
        assert kernel_table(topo["node"]) == after_partial
    finally:
        backend.sync(node_plan(), full=True)


def test_affinity_in_the_kernel(topo: Topology) -> None:
    runner = SubprocessNft(netns=topo["node"])
    backend = NftablesBackend(runner=runner)
    services, slices = cluster()
    services[0]["spec"]["sessionAffinity"] = "ClientIP"
    try:
        backend.sync(plan(services_from(services), slices_from(slices), NODE))
        assert len(endpoints_reached(topo["client"], "10.96.0.10", 80, tries=15)) == 1
        assert len(endpoints_reached(topo["node"], "10.96.0.10", 80, tries=15)) == 1
    finally:
        backend.sync(node_plan(), full=True)


def test_cleanup_removes_the_table(topo: Topology) -> None:
    runner = SubprocessNft(netns=topo["node"])
    backend = NftablesBackend(runner=runner)
    try:
        backend.cleanup()
        assert runner.list_table("ip", "kubesim-proxy") is None
        assert connect(topo["client"], "10.96.0.10", 80, timeout=0.5) == "TIMEOUT"
    finally:
        backend.sync(node_plan(), full=True)


def test_node_to_etp_local_nodeport_short_circuits_masqueraded(topo: Topology) -> None:
    answers = {connect(topo["node"], NODE_IP, 30081) for _ in range(30)}
    assert answers == {f"{PODS['pod1']}:8080 {GATEWAY}", f"{PODS['remote']}:8080 {GATEWAY}"}


def test_sctp_cluster_ip_is_dnated(topo: Topology) -> None:
    # No SCTP sockets on the test machines' kernels (SCTP conntrack and NAT exist): a crafted INIT from
    # the client pod, seen arriving at the endpoint pod with its destination translated to the
    # endpoint's address and target port.
    with netns(topo["pod1"]):
        listen = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    with netns(topo["client"]):
        out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP)
    with listen, out:
        listen.settimeout(0.2)
        init = SCTP(sport=40000, dport=3868, tag=0) / SCTPChunkInit(
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


def test_random_partial_syncs_leave_what_a_full_sync_makes(throwaway_netns: Any) -> None:
    # The diff logic against the real nft: after every partial sync in one namespace, the table equals
    # a from-scratch load of the same plan in another (nft refuses some diffs a fake might accept).
    rng = random.Random(7)
    partial_ns, full_ns = throwaway_netns(), throwaway_netns()
    backend = NftablesBackend(runner=SubprocessNft(netns=partial_ns))
    services, slices = cluster()
    backend.sync(plan(services_from(services), slices_from(slices), NODE))
    for step in range(12):
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
        SubprocessNft(netns=full_ns).run(full_transaction(render(p)))
        assert kernel_table(partial_ns) == kernel_table(full_ns), f"step {step}: {change}"


def test_preloaded_full_syncs_carry_traffic_across_generations(topo: Topology) -> None:
    # Full syncs that fill every plain set over netlink (proxy/nftables/preload.py), over the module's
    # table and then over their own previous generation; a partial sync after them.
    backend = NftablesBackend(runner=SubprocessNft(netns=topo["node"]), preload_threshold=1)
    try:
        for _ in range(2):
            assert backend.sync(node_plan(), full=True).full
            assert backend.last_full == "preloaded"
            assert endpoints_reached(topo["client"], "10.96.0.10", 80) == {"10.244.1.11:8080", "10.244.1.12:8080"}
            assert connect(topo["client"], "10.96.0.11", 80) == "REFUSED"
            assert connect(topo["ext"], NODE_IP, 30082, source=EXT_DENIED_IP).startswith(f"{PODS['pod2']}:8080")
        assert not backend.sync(node_plan(["pod2"])).full
        assert endpoints_reached(topo["client"], "10.96.0.10", 80, tries=10) == {"10.244.1.12:8080"}
    finally:
        NftablesBackend(runner=SubprocessNft(netns=topo["node"]), preload=False).sync(node_plan())


def test_random_syncs_with_preloaded_full_ones_leave_what_a_full_sync_makes(throwaway_netns: Any) -> None:
    # As the random test above, with every third sync a preloaded full one: the kernel then holds the
    # new generation's names, which a classic full sync of the same names must reproduce exactly.
    rng = random.Random(11)
    synced_ns, full_ns = throwaway_netns(), throwaway_netns()
    backend = NftablesBackend(runner=SubprocessNft(netns=synced_ns), preload_threshold=1)
    services, slices = cluster()
    backend.sync(plan(services_from(services), slices_from(slices), NODE))
    assert backend.last_full == "preloaded"
    for step in range(9):
        svc = rng.randrange(len(services))
        roles = rng.sample(["pod1", "pod2", "client", "remote"], rng.randrange(5))
        slices[svc]["endpoints"] = [{"addresses": [PODS[r]], "nodeName": NODE_OF[r]} for r in roles]
        if step % 3 == 2:
            services[svc]["spec"]["sessionAffinity"] = rng.choice(["ClientIP", "None"])
        p = plan(services_from(services), slices_from(slices), NODE)
        full = step % 3 == 0
        assert backend.sync(p, full=full).full == full
        assert not full or backend.last_full == "preloaded"
        SubprocessNft(netns=full_ns).run(full_transaction(backend._generation.ruleset(render(p))))
        got, want = kernel_table(synced_ns), kernel_table(full_ns)
        # Stale chains are flushed by a full sync and deleted by the next one (two-phase deletion).
        got = {k: v for k, v in got.items() if k in want or not k.startswith("chain ")}
        assert got == want, f"step {step}"
