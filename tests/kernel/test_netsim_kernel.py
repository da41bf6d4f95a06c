"""netsim and `kubesim up/down` on the real kernel: real namespaces, real packets, nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kubesim import cluster
from kubesim.errors import PreflightError
from netsim import names, namespaces, network, probe
from netsim.errors import NetlinkError
from netsim.kernel import LinuxKernel
from netsim.sandbox import Sandbox, create_sandbox, delete_sandbox, sandbox_for
from netsim.topology import Topology, load_topology, parse_topology
from tests.waiting import wait_until

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def test_topology(name: str, mode: str = "host-gw", workers: int = 2, subnet: int = 250) -> Topology:
    """A small cluster on ranges no shipped topology uses, so tests never collide with a user's cluster."""
    return parse_topology({
        "name": name,
        "network": {"nodeCIDR": f"172.29.{subnet}.0/24", "clusterCIDR": f"10.{subnet}.0.0/16",
                    "serviceCIDR": f"10.{subnet - 1}.0.0/16", "mode": mode},
        "nodes": [{"name": "control-plane", "role": "control-plane"}]
        + [{"name": f"worker-{i + 1}"} for i in range(workers)],
        "externalHosts": [{"name": "client"}],
        "loadBalancerPool": [f"172.29.{subnet}.200-172.29.{subnet}.210"],
    })


test_topology.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def leftovers(name: str) -> list[str]:
    found = [ns for ns in namespaces.list_names() if ns.startswith(names.cluster_prefix(name))]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    if names.host_link(name) + "@" in links:
        found.append(names.host_link(name))
    return found


def kubesim(*args: str, state: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "kubesim", *args], capture_output=True, text=True, env=env,
                          check=check)


@pytest.fixture
def state(tmp_path: Path):
    root = tmp_path / "state"
    yield root
    # Whatever a failing test left: remove it, then let the test's own assertions speak.
    for name in cluster.known_clusters(root):
        cluster.down(name, root=root)


@pytest.mark.parametrize("mode", ["host-gw", "vxlan"])
def test_up_exec_ping_down(mode: str, state: Path):
    name = unique()
    topo = test_topology(name, mode)
    cluster.up(topo, root=state, control_plane=False)
    worker2 = topo.nodes[2].address
    done = kubesim("exec", "--name", name, "worker-1", "--", "ping", "-c1", "-W2", worker2, state=state)
    assert "1 received" in done.stdout

    info = yaml.safe_load(kubesim("status", "--name", name, "--json", state=state).stdout)
    assert info["phase"] == "ready"
    assert [n["present"] for n in info["nodes"]] == [True, True, True]

    kubesim("down", "--name", name, state=state)
    assert leftovers(name) == []
    assert not (state / name).exists()
    again = kubesim("down", "--name", name, state=state)  # idempotent
    assert "nothing to remove" in again.stdout


@pytest.mark.parametrize("mode", ["host-gw", "vxlan"])
def test_pods_reach_each_other_across_nodes(mode: str, state: Path):
    name = unique()
    topo = test_topology(name, mode)
    cluster.up(topo, root=state, control_plane=False)
    kernel = LinuxKernel()
    w1, w2 = topo.nodes[1], topo.nodes[2]
    mtu = network.pod_mtu(topo)
    a = sandbox_for(name, w1.name, w1.pod_cidr, "pod-a", str(_host(w1.pod_cidr, 10)), mtu=mtu)
    b = sandbox_for(name, w2.name, w2.pod_cidr, "pod-b", str(_host(w2.pod_cidr, 10)), mtu=mtu)
    try:
        create_sandbox(a, kernel=kernel)
        create_sandbox(b, kernel=kernel)
        answered = probe.ping_all(a.netns, [b.ip, w2.address, a.gateway])
        assert answered == {b.ip: True, w2.address: True, a.gateway: True}
        # The root namespace reaches pods over the host link, and only over it.
        route = subprocess.run(["ip", "route", "get", b.ip], capture_output=True, text=True, check=True).stdout
        assert f"dev {names.host_link(name)}" in route
        assert probe.ping_all(None, [a.ip, b.ip]) == {a.ip: True, b.ip: True}
        # Hairpin on the node end of each pod's veth (a pod reaching itself through a Service needs it).
        detail = subprocess.run(["ip", "-n", names.node_ns(name, w1.name), "-d", "link", "show", a.host_veth],
                                capture_output=True, text=True, check=True).stdout
        assert "hairpin on" in detail
        if mode == "vxlan":
            mtu_line = subprocess.run(["ip", "-n", a.netns, "link", "show", "eth0"], capture_output=True,
                                      text=True, check=True).stdout
            assert "mtu 1450" in mtu_line
        assert delete_sandbox(a, kernel=kernel)
        assert not namespaces.exists(a.netns)
    finally:
        kernel.close()
        cluster.down(name, root=state)
    assert leftovers(name) == []


@dataclass
class _OneWorker:
    """A network-only cluster, its first worker, and a kernel handle for sandboxes on it."""
    name: str
    topo: Topology
    kernel: LinuxKernel
    node_ns: str

    def sandbox(self, uid: str, host: int) -> Sandbox:
        w1 = self.topo.nodes[1]
        return sandbox_for(self.name, w1.name, w1.pod_cidr, uid, _host(w1.pod_cidr, host),
                           mtu=network.pod_mtu(self.topo))


@contextmanager
def _one_worker(state: Path) -> Iterator[_OneWorker]:
    name = unique()
    topo = test_topology(name, "host-gw")
    cluster.up(topo, root=state, control_plane=False)
    kernel = LinuxKernel()
    try:
        yield _OneWorker(name, topo, kernel, names.node_ns(name, topo.nodes[1].name))
    finally:
        kernel.close()
        cluster.down(name, root=state)
    assert leftovers(name) == []


def test_a_reused_pod_address_is_reached_at_its_new_mac(state: Path):
    # A deleted pod's address given to the next pod on the node (the kubelet hands out the lowest free one):
    # the node's ARP cache must not keep sending it to the deleted pod's MAC.
    with _one_worker(state) as on:
        old, new = on.sandbox("pod-old", 10), on.sandbox("pod-new", 10)
        address = old.ip

        def cached_mac() -> str:
            shown = subprocess.run(["ip", "-n", on.node_ns, "neigh", "show", address, "dev", names.NODE_BRIDGE],
                                   capture_output=True, text=True, check=True).stdout.split()
            return shown[shown.index("lladdr") + 1] if "lladdr" in shown else ""

        def mac_of(sandbox: Sandbox) -> str:
            link = subprocess.run(["ip", "-n", sandbox.netns, "-o", "link", "show", names.POD_IFACE],
                                  capture_output=True, text=True, check=True).stdout.split()
            return link[link.index("link/ether") + 1]

        create_sandbox(old, kernel=on.kernel)
        assert probe.ping_all(on.node_ns, [address]) == {address: True}
        assert cached_mac() == mac_of(old)
        delete_sandbox(old, kernel=on.kernel)
        wait_until(lambda: not namespaces.exists(old.netns), message="the old pod's namespace is gone")
        create_sandbox(new, kernel=on.kernel)
        assert cached_mac() in ("", mac_of(new))  # forgotten (asked afresh) or already the new one
        assert probe.ping_all(on.node_ns, [address]) == {address: True}


def test_deleting_a_sandbox_ends_what_still_runs_in_it(state: Path):
    # A process container left behind by a killed kubelet: unpinning its namespace alone would leave the
    # namespace, its veth and its address alive (answering ARP for an address the node hands out again).
    with _one_worker(state) as on:
        sandbox = on.sandbox("pod-left", 11)
        create_sandbox(sandbox, kernel=on.kernel)
        left = subprocess.Popen(["ip", "netns", "exec", sandbox.netns, "sleep", "600"])
        try:
            wait_until(lambda: left.pid in namespaces.processes_in([sandbox.netns]),
                       message="the process runs inside the sandbox")
            assert delete_sandbox(sandbox, kernel=on.kernel)
            assert left.wait(timeout=10) == -signal.SIGKILL
            wait_until(lambda: sandbox.host_veth not in on.kernel.link_names(on.node_ns),
                       message="the pod's veth is gone with its namespace")
        finally:
            if left.poll() is None:
                left.kill()
                left.wait()


def test_a_sandbox_made_again_under_its_old_name_gets_hairpin(state: Path):
    # A pod whose start failed is set up again with the same veth name: the kernel seam must not use the
    # interface index it remembered for the first veth (gone with its namespace), or setting hairpin on
    # the new one fails with "No such device" and the pod never starts.
    with _one_worker(state) as on:
        sandbox = on.sandbox("pod-again", 12)
        create_sandbox(sandbox, kernel=on.kernel)
        delete_sandbox(sandbox, kernel=on.kernel)
        wait_until(lambda: sandbox.host_veth not in on.kernel.link_names(on.node_ns),
                   message="the first veth is gone with its namespace")
        create_sandbox(sandbox, kernel=on.kernel)
        shown = subprocess.run(["bridge", "-n", on.node_ns, "-d", "link", "show", "dev", sandbox.host_veth],
                               capture_output=True, text=True, check=True).stdout
        assert "hairpin on" in shown, shown
        assert probe.ping_all(on.node_ns, [sandbox.ip]) == {sandbox.ip: True}


def _host(cidr: str, n: int) -> str:
    from netaddr import IPNetwork

    return str(IPNetwork(cidr)[n])


def test_nothing_routes_out_of_the_cluster(state: Path):
    name = unique()
    topo = test_topology(name)
    cluster.up(topo, root=state, control_plane=False)
    for ns in network.cluster_namespaces(name, LinuxKernel()):
        routes = subprocess.run(["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True,
                                check=True).stdout
        assert routes == "", f"{ns} has a default route: {routes}"
    cluster.down(name, root=state)


def test_twenty_up_down_cycles_leave_nothing(state: Path):
    name = unique()
    topo = test_topology(name)
    for _ in range(20):
        cluster.up(topo, root=state, control_plane=False)
        cluster.down(name, root=state)
    assert leftovers(name) == []
    assert cluster.known_clusters(state) == []


class _FailOnWorker2(LinuxKernel):
    def add_route(self, ns, dst, **kwargs):  # type: ignore[no-untyped-def]
        if ns and ns.endswith(".node.worker-2"):
            raise NetlinkError("injected failure")
        super().add_route(ns, dst, **kwargs)


def test_failed_up_rolls_back_everything(state: Path):
    name = unique()
    with pytest.raises(NetlinkError, match="injected"):
        cluster.up(test_topology(name), root=state, kernel=_FailOnWorker2(), control_plane=False)
    assert leftovers(name) == []
    assert not (state / name).exists()


def test_sigkilled_up_is_cleaned_by_down(state: Path, tmp_path: Path):
    name = unique()
    file = tmp_path / "big.yaml"
    file.write_text(yaml.safe_dump(test_topology(name, workers=12).to_dict()))
    env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
    proc = subprocess.Popen([sys.executable, "-m", "kubesim", "up", "--network-only", str(file)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = state / name / "journal.jsonl"
    # Until up has recorded a few steps (so it is half way), or has ended by itself; the timeout only
    # guards against a hang, so a slow start on a loaded machine only waits longer.
    wait_until(lambda: proc.poll() is not None or (journal.exists() and journal.read_text().count("\n") >= 4),
               timeout=120, interval=0.002, message="up records a few steps")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert leftovers(name), "up finished before it could be killed half way"
    kubesim("down", "--name", name, state=state)
    assert leftovers(name) == []
    assert not (state / name).exists()


def test_two_clusters_coexist_and_prefixes_never_collide(state: Path):
    base = unique()
    first, second = base, f"{base}-b"  # "x" and "x-b": one name is a prefix of the other
    cluster.up(test_topology(first, subnet=250), root=state, control_plane=False)
    cluster.up(test_topology(second, subnet=240), root=state, control_plane=False)
    cluster.down(first, root=state)
    assert leftovers(first) == []
    assert len(leftovers(second)) == 6  # fabric, 3 nodes, client, host link
    topo = test_topology(second, subnet=240)
    answered = probe.ping_all(names.node_ns(second, "worker-1"), [topo.nodes[2].address])
    assert answered == {topo.nodes[2].address: True}
    cluster.down(second, root=state)
    assert leftovers(second) == []


def test_overlapping_ranges_are_refused_before_anything_is_made(state: Path):
    first, second = unique(), unique()
    cluster.up(test_topology(first, subnet=250), root=state, control_plane=False)
    with pytest.raises(PreflightError, match=rf"overlaps the root namespace's route .*cluster '{first}'"):
        cluster.up(test_topology(second, subnet=250), root=state, control_plane=False)
    assert leftovers(second) == []
    with pytest.raises(PreflightError, match="already exists"):
        cluster.up(test_topology(first, subnet=250), root=state, control_plane=False)
    cluster.down(first, root=state)


@pytest.mark.parametrize("file", sorted(p.name for p in TOPOLOGIES.glob("*.yaml")))
def test_shipped_topologies_come_up(file: str, state: Path):
    topo = load_topology(TOPOLOGIES / file)
    cluster.up(topo, root=state, control_plane=False)
    try:
        for host in topo.external_hosts:
            ns = names.external_ns(topo.name, host.name)
            targets = [n.address for n in topo.nodes]
            assert all(probe.ping_all(ns, targets).values()), f"{host.name} cannot reach every node"
    finally:
        cluster.down(topo.name, root=state)
    assert leftovers(topo.name) == []


def test_exec_names_unknown_targets(state: Path):
    name = unique()
    cluster.up(test_topology(name), root=state, control_plane=False)
    done = kubesim("exec", "--name", name, "worker-9", "--", "true", state=state, check=False)
    assert done.returncode == 1
    assert "'worker-9' is neither a node nor an external host" in done.stderr
    assert "control-plane, worker-1, worker-2, client" in done.stderr
    cluster.down(name, root=state)


class _InterruptedAfterMount:
    """libc, except that Ctrl-C arrives right after the new namespace is pinned."""

    def __init__(self, libc: object) -> None:
        self._libc = libc

    def __getattr__(self, name: str) -> object:
        return getattr(self._libc, name)

    def mount(self, *args: object) -> int:
        result = int(self._libc.mount(*args))  # type: ignore[attr-defined]
        signal.raise_signal(signal.SIGINT)
        return result


def test_namespace_creation_cut_by_ctrl_c_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ksim-test-{uuid.uuid4().hex[:8]}.cut"
    home = os.stat("/proc/thread-self/ns/net").st_ino
    monkeypatch.setattr(namespaces, "_libc", _InterruptedAfterMount(namespaces._libc))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            namespaces.create(name)
        assert not namespaces.exists(name), "a half-made namespace was left behind"
        assert os.stat("/proc/thread-self/ns/net").st_ino == home, "the thread was left in the new namespace"
    finally:
        signal.signal(signal.SIGINT, previous)
        monkeypatch.undo()
        namespaces.delete(name)
