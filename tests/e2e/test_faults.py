"""Fault injection on one live cluster (two workers, a client outside): a topology's faults applied at
`up`, a node partitioned from the control plane turning NotReady with its Service traffic moving to the
other node and healing on `fault clear`, packet loss measured on a ping series, a rate limit shaping a
real TCP transfer, a cut cable mended, netem refused where the kernel lacks it, bad input refused with
nothing changed, and `down` leaving nothing of any fault behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.testing import Cluster
from netsim import faults as netfaults
from netsim import names, namespaces
from netsim.errors import FaultInputError
from tests.conftest import REPO, root_snapshot
from tests.waiting import eventually, wait_until

NAME = "faults"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
CLIENT_RATE = "8mbit"  # the topology's fault: what the client sends is shaped to 1 MB/s


class Faulty:
    """The cluster (kubesim.testing's API) and its CLI, with the state root of the module."""

    def __init__(self, cluster: Cluster, root: Path, before_up: dict[str, str]):
        self.cluster = cluster
        self.env = {**os.environ, "KUBESIM_STATE_DIR": str(root)}
        self.before_up = before_up  # the root namespace before the cluster was made

    def kubesim(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "kubesim", *args, "--name", NAME], capture_output=True,
                              text=True, env=self.env, check=False, cwd=REPO, timeout=120)
        assert done.returncode == code, f"kubesim {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        return done

    def listed(self) -> list[dict[str, Any]]:
        return json.loads(self.kubesim("fault", "list", "--json").stdout)

    def in_node(self, node: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(namespaces.command_in(self.cluster.namespace_of(node), list(argv)), capture_output=True,
                              text=True, timeout=timeout, check=False)

    def address(self, member: str) -> str:
        found = self.cluster.topology.member(member)
        assert found is not None
        return found.address

    def loss(self, src: str, dst: str, count: int = 200) -> float:
        done = self.in_node(src, "ping", "-n", "-q", "-c", str(count), "-i", "0.01", "-W", "2", self.address(dst))
        match = re.search(r"(\d+) packets transmitted, (\d+) received", done.stdout)
        assert match, done.stdout + done.stderr
        return 100.0 * (int(match[1]) - int(match[2])) / int(match[1])

    def ready(self, node: str) -> str:
        conditions = self.cluster.get("node", node)["status"].get("conditions") or []
        return next((c["status"] for c in conditions if c["type"] == "Ready"), "none")


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    root = tmp_path_factory.mktemp("state")
    topology = yaml.safe_load((REPO / "topologies" / "two-node.yaml").read_text())
    topology["faults"] = [{"type": "rate", "node": "client", "rate": CLIENT_RATE}]
    path = tmp_path_factory.mktemp("topology") / "faulty.yaml"
    path.write_text(yaml.safe_dump(topology))
    before_up = root_snapshot()
    made = Cluster.up(path, name=NAME, root=root, timings={"node_grace_period": "6s"})
    try:
        yield Faulty(made, root, before_up)
    finally:
        made.down()


def web(node: str) -> dict[str, Any]:
    """Two agnhost netexec pods on NODE, labelled tier=web for the Service."""
    labels = {"app": f"web-{node}", "tier": "web"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"web-{node}"},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "containers": [{
                    "name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}}}}


def test_the_topologys_faults_are_applied_at_up_and_the_rate_shapes_tcp(faulty: Faulty) -> None:
    assert faulty.listed() == [{"type": "rate", "node": "client", "rate": CLIENT_RATE}]
    shown = faulty.in_node("client", "tc", "qdisc", "show", "dev", "eth0").stdout
    assert "qdisc tbf 1f4a: root" in shown and "rate 8Mbit" in shown, shown

    # A real transfer from the client to a sink on worker-1: all of it passes through the tbf (its
    # counters say so), and it cannot go faster than twice the rate however fast the machine is.
    size = 1_500_000
    sink = subprocess.Popen(namespaces.command_in(faulty.cluster.namespace_of("worker-1"), [
        sys.executable, "-c", SINK]), stdout=subprocess.PIPE, text=True)
    try:
        sent = eventually(lambda: _send(faulty, size), timeout=10, message="the sink on worker-1 accepts")
        received = int(sink.communicate(timeout=30)[0])
    finally:
        sink.kill()
        sink.wait()
    assert received == size
    seconds = float(sent)
    assert seconds >= size * 8 / (2 * 8_000_000), f"{size} bytes in {seconds:.2f}s: faster than twice {CLIENT_RATE}"
    stats = faulty.in_node("client", "tc", "-s", "qdisc", "show", "dev", "eth0").stdout
    sent_bytes = int(re.search(r"Sent (\d+) bytes", stats)[1])  # type: ignore[index]
    assert sent_bytes >= size, stats


SINK = """
import socket
server = socket.create_server(("0.0.0.0", 5001))
server.settimeout(30)
conn, _ = server.accept()
total = 0
while chunk := conn.recv(65536):
    total += len(chunk)
print(total)
"""

SEND = """
import socket, sys, time
sock = socket.create_connection((sys.argv[1], 5001), timeout=1)
sock.settimeout(60)
start = time.monotonic()
sock.sendall(b"x" * int(sys.argv[2]))
sock.shutdown(socket.SHUT_WR)
sock.recv(1)
print(time.monotonic() - start)
"""


def _send(faulty: Faulty, size: int) -> str | None:
    done = faulty.in_node("client", sys.executable, "-c", SEND, faulty.address("worker-1"), str(size))
    return done.stdout.strip() if done.returncode == 0 else None


def test_a_node_partitioned_from_the_control_plane_turns_not_ready_and_its_traffic_moves(faulty: Faulty) -> None:
    cluster = faulty.cluster
    cluster.apply(web("worker-1"), web("worker-2"), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"tier": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    pods = cluster.wait_ready("tier=web", count=4)
    on_worker_2 = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == "worker-2"}
    on_worker_1 = {p["metadata"]["name"] for p in pods} - on_worker_2
    cluster.wait_endpoints("web", 4)
    url = f"http://{cluster.service_ip('web')}/hostname"

    faulty.kubesim("fault", "partition", "worker-1", "control-plane")
    assert "partition" in faulty.kubesim("fault", "list").stdout
    apiserver = f"https://{faulty.address('control-plane')}:6443/healthz"
    curl = ("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", apiserver)
    assert faulty.in_node("worker-1", *curl).returncode == 28  # timed out: the packets are dropped
    assert faulty.in_node("worker-2", *curl).stdout != "000"  # an HTTP answer, whatever its code
    # The node grace period is 6 s: the node lifecycle controller marks worker-1 Unknown, then its pods
    # not Ready, and the Service's endpoints shrink to worker-2's pods.
    wait_until(lambda: faulty.ready("worker-1") != "True", timeout=40, message="worker-1 NotReady")
    cluster.wait_endpoints("web", 2, timeout=30)
    # kube-proxy follows the API a sync behind: wait until its rules do, then every answer comes from a
    # worker-2 pod (worker-2 still reaches worker-1; only the endpoints say where traffic goes).
    wait_until(lambda: _answered_by(cluster, url) <= on_worker_2, timeout=30, message="only worker-2's pods answer")
    assert _answers(cluster, url) <= on_worker_2
    assert faulty.ready("worker-2") == "True"

    faulty.kubesim("fault", "clear")
    assert faulty.listed() == []
    wait_until(lambda: faulty.ready("worker-1") == "True", timeout=60, message="worker-1 Ready again")
    cluster.wait_endpoints("web", 4, timeout=30)
    wait_until(lambda: _answered_by(cluster, url) & on_worker_1, timeout=30,
               message="worker-1's pods answer again")
    # Rate at up was cleared by `fault clear` too; the table in the fabric is gone.
    assert "kubesim-fault" not in faulty.in_node("worker-1", "nft", "list", "tables").stdout
    assert "1f4a:" not in faulty.in_node("client", "tc", "qdisc", "show", "dev", "eth0").stdout
    fabric = subprocess.run(namespaces.command_in(names.fabric_ns(NAME), ["nft", "list", "tables"]),
                            capture_output=True, text=True, check=True).stdout
    assert "kubesim-fault" not in fabric


def _answers(cluster: Cluster, url: str, count: int = 20) -> set[str]:
    """The pods that answered COUNT requests to URL from worker-2."""
    return {cluster.http("worker-2", url).body for _ in range(count)}


def _answered_by(cluster: Cluster, url: str) -> set[str]:
    """_answers for a wait: a request that failed on the way (rules mid-sync) answers {"(failed)"}."""
    try:
        return _answers(cluster, url)
    except OSError:
        return {"(failed)"}


def test_loss_drops_about_that_share_of_a_ping_series(faulty: Faulty) -> None:
    faulty.cluster.fault_loss(30, "worker-2")
    assert faulty.cluster.fault_list() == [{"type": "loss", "node": "worker-2", "percent": 30}]
    lost = faulty.loss("worker-1", "worker-2")
    # 200 pings at 30%: the standard deviation is 3.2 points; 15-45 is more than four of them either way.
    assert 15 <= lost <= 45, f"{lost}% lost"
    assert faulty.cluster.fault_clear("worker-2") == [{"type": "loss", "node": "worker-2", "percent": 30}]
    assert faulty.loss("worker-1", "worker-2", count=50) <= 4


def test_a_cut_cable_is_mended_with_its_routes(faulty: Faulty) -> None:
    routes = faulty.in_node("worker-2", "ip", "route").stdout
    faulty.kubesim("fault", "link-down", "worker-2")
    assert "NO-CARRIER" in faulty.in_node("worker-2", "ip", "link", "show", "eth0").stdout
    assert faulty.loss("worker-1", "worker-2", count=5) == 100
    faulty.kubesim("fault", "link-up", "worker-2")
    assert faulty.listed() == []
    wait_until(lambda: faulty.loss("worker-1", "worker-2", count=3) == 0, timeout=15, message="worker-2 answers")
    assert faulty.in_node("worker-2", "ip", "route").stdout == routes


def test_delay_needs_netem(faulty: Faulty) -> None:
    available, _ = netfaults.netem_available()
    if available:
        faulty.kubesim("fault", "delay", "100ms", "worker-1")
        assert "netem" in faulty.in_node("worker-1", "tc", "qdisc", "show", "dev", "eth0").stdout
        faulty.kubesim("fault", "clear", "worker-1")
        return
    done = faulty.kubesim("fault", "delay", "100ms", "worker-1", code=1)
    assert "lacks netem (sch_netem)" in done.stderr and "nothing was changed" in done.stderr
    assert faulty.listed() == []
    assert "1f4a:" not in faulty.in_node("worker-1", "tc", "qdisc", "show", "dev", "eth0").stdout


@pytest.mark.parametrize(("argv", "words"), [
    (("loss", "30", "worker-9"), "'worker-9' is not a node or external host"),
    (("loss", "101", "worker-2"), "whole percentage from 0 to 100"),
    (("rate", "10 megs", "worker-2"), "malformed"),
    (("partition", "worker-1", "worker-1"), "cannot be partitioned from itself"),
    (("partition", "worker-1", "nowhere"), "'nowhere' is not a node or external host"),
])
def test_bad_input_is_refused_with_nothing_applied(faulty: Faulty, argv: tuple[str, ...], words: str) -> None:
    faulty.cluster.fault_loss(10, "worker-1")
    try:
        tables = {m: faulty.in_node(m, "nft", "list", "tables").stdout for m in ("worker-1", "worker-2")}
        done = faulty.kubesim("fault", *argv, code=2)
        assert words in done.stderr
        assert faulty.listed() == [{"type": "loss", "node": "worker-1", "percent": 10}]
        assert {m: faulty.in_node(m, "nft", "list", "tables").stdout for m in tables} == tables
    finally:
        faulty.cluster.fault_clear()
    with pytest.raises(FaultInputError, match="whole percentage"):
        faulty.cluster.fault_loss(-1, "worker-2")


def test_down_leaves_nothing_of_any_fault(faulty: Faulty) -> None:
    cluster = faulty.cluster
    cluster.fault_partition("worker-1", "worker-2")
    cluster.fault_loss(20, "worker-1")
    cluster.fault_rate("1mbit", "worker-2")
    cluster.fault_link_down("client")
    assert len(cluster.fault_list()) == 4
    state = cluster.state.dir
    done = subprocess.run([sys.executable, "-m", "kubesim", "down", "--name", NAME], capture_output=True, text=True,
                          env=faulty.env, check=False, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [ns for ns in namespaces.list_names() if ns.startswith(names.cluster_prefix(NAME))] == []
    assert not state.exists()
    # The root namespace is as it was before `up`: its namespaces, links and firewall.
    assert root_snapshot() == faulty.before_up
