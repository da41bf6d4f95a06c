"""`kubectl port-forward` on one single-node cluster, with kubectl 1.27 (SPDY/3.1 to the apiserver), 1.30
(SPDY still: its port-forward tunnel is off by default until 1.31) and 1.33 (SPDY tunnelled in a
WebSocket, which the apiserver unwraps): curl from the machine's shell to kubectl's loopback port
reaches a pod, or a Service's pod, through the apiserver and the kubelet; a port nobody listens on gets
upstream's error and ends the forward; a kubectl killed mid-connection leaves no connection into the
pod and an apiserver that goes on serving. `kubesim port-forward` does the same over the WebSocket
protocol. On the same cluster, `kubectl top` (1.27 and 1.33) reads metrics.k8s.io: every node and
running pod, and a busy process container above an idle one."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netsim import names
from tests.e2e.test_cluster import AGNHOST, REPO
from tests.e2e.test_exec import Exec, pod
from tests.waiting import eventually, wait_until

NAME = "portfwd"
VERSIONS = ("1.27", "1.33")
#: and the version between, for what every user runs
ALL_VERSIONS = ("1.27", "1.30", "1.33")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exec]:
    c = Exec(tmp_path_factory.mktemp("state"), NAME)
    c.kubesim("up", str(REPO / "topologies" / "single-node.yaml"), "--name", NAME)
    try:
        web = pod("web", {"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]})
        web["metadata"]["labels"] = {"app": "web"}
        c.apply(web, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "websvc"},
                      "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        c.wait_ready("web")
        yield c
    finally:
        c.kubesim("down", "--name", NAME, check=False)


class Forward:
    """A running port-forward whose output goes to files, and the local port it listens on."""

    def __init__(self, argv: list[str], directory: Path, env: dict[str, str] | None = None) -> None:
        self.out, self.err = directory / "out", directory / "err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        found = eventually(lambda: re.search(r"Forwarding from 127\.0\.0\.1:(\d+) ->", self.out.read_text()),
                           timeout=30, message="kubectl listening", describe=self.output)
        self.port = int(found.group(1))

    def output(self) -> str:
        return f"stdout:\n{self.out.read_text()}\nstderr:\n{self.err.read_text()}"

    def curl(self, path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["curl", "-sS", "-m", "10", f"http://127.0.0.1:{self.port}{path}"],
                              capture_output=True, text=True, timeout=20, check=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def forward(tmp_path: Path) -> Iterator[list[Forward]]:
    started: list[Forward] = []
    yield started
    for f in started:
        f.stop()


def _start(cluster: Exec, forward: list[Forward], tmp_path: Path, version: str, *args: str) -> Forward:
    directory = tmp_path / f"forward{len(forward)}"
    directory.mkdir()
    f = Forward(cluster.argv(version, "port-forward", *args, "-v=4"), directory)
    forward.append(f)
    return f


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_port_forward_to_a_pod_and_a_service(cluster: Exec, forward: list[Forward], tmp_path: Path,
                                             version: str) -> None:
    to_pod = _start(cluster, forward, tmp_path, version, "pod/web", ":8080")
    for _ in range(2):  # a connection each
        answer = to_pod.curl("/hostname")
        assert (answer.returncode, answer.stdout) == (0, "web"), answer.stderr + to_pod.output()
    assert to_pod.curl("/echo?msg=" + "x" * 3000).stdout == "x" * 3000
    to_service = _start(cluster, forward, tmp_path, version, "svc/websvc", ":80")
    assert to_service.curl("/hostname").stdout == "web", to_service.output()
    if version == "1.33":
        # the WebSocket tunnel carried it, not kubectl's fallback to plain SPDY
        assert "fallback to secondary dialer" not in to_pod.output()
        assert "Before WebSocket Upgrade" in to_pod.output()


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_port_nobody_listens_on_gets_upstreams_error(cluster: Exec, forward: list[Forward], tmp_path: Path,
                                                       version: str) -> None:
    refused = _start(cluster, forward, tmp_path, version, "pod/web", ":9999")
    assert refused.curl("/").returncode != 0
    # upstream's client ends the whole forward when a port's error stream reports one
    assert refused.process.wait(timeout=30) == 1
    err = refused.err.read_text()
    assert "error forwarding port 9999 to pod default/web" in err and "connection refused" in err
    assert "lost connection to pod" in err


def test_a_client_killed_mid_connection_leaves_nothing_behind(cluster: Exec, forward: list[Forward],
                                                              tmp_path: Path) -> None:
    netns = names.pod_ns(NAME, cluster.pod("web")["metadata"]["uid"])

    def into_the_pod() -> int:
        """Established connections to the pod's 8080, inside its network namespace."""
        done = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Htn", "state", "established",
                               "(", "dport", "=", ":8080", ")"], capture_output=True, text=True, check=True)
        return len(done.stdout.splitlines())

    assert into_the_pod() == 0
    for version in VERSIONS:
        f = _start(cluster, forward, tmp_path, version, "pod/web", ":8080")
        # a client that connects and says nothing: its connection into the pod stays open
        with subprocess.Popen(["curl", "-sS", "-m", "60", "telnet://127.0.0.1:" + str(f.port)],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as idle:
            wait_until(lambda: into_the_pod() == 1, timeout=30, message="the forwarded connection into the pod")
            f.process.send_signal(signal.SIGKILL)
            f.process.wait(timeout=10)
            wait_until(lambda: into_the_pod() == 0, timeout=30, message="the pod's end closed with kubectl gone")
            idle.kill()
    # and the apiserver and kubelet go on serving
    again = _start(cluster, forward, tmp_path, "1.33", "pod/web", ":8080")
    assert again.curl("/hostname").stdout == "web"
    assert cluster.kubectl("exec", "web", "--", "echo", "still", version="1.27").stdout == "still\n"


def _kubesim_forward(cluster: Exec, forward: list[Forward], tmp_path: Path, *args: str) -> Forward:
    directory = tmp_path / f"forward{len(forward)}"
    directory.mkdir()
    f = Forward([sys.executable, "-m", "kubesim", "port-forward", "--name", NAME, *args], directory, env=cluster.env)
    forward.append(f)
    return f


def test_kubesim_port_forward_to_a_pod_and_a_service_and_its_errors(cluster: Exec, forward: list[Forward],
                                                                    tmp_path: Path) -> None:
    to_pod = _kubesim_forward(cluster, forward, tmp_path, "web", ":8080")
    for _ in range(2):  # a stream each
        answer = to_pod.curl("/hostname")
        assert (answer.returncode, answer.stdout) == (0, "web"), answer.stderr + to_pod.output()
    assert to_pod.curl("/echo?msg=" + "y" * 3000).stdout == "y" * 3000
    to_service = _kubesim_forward(cluster, forward, tmp_path, "svc/websvc", "0:80")
    assert to_service.curl("/hostname").stdout == "web", to_service.output()
    # Ctrl-C: a clean end, and the port is free again
    to_service.process.send_signal(signal.SIGINT)
    assert to_service.process.wait(timeout=30) == 0, to_service.output()
    assert to_service.curl("/hostname").returncode != 0
    # a port nobody listens on: the kubelet's error, and the forward ends as kubectl's does
    refused = _kubesim_forward(cluster, forward, tmp_path, "pod/web", ":9999")
    assert refused.curl("/").returncode != 0
    assert refused.process.wait(timeout=30) == 1
    assert "connection refused" in refused.err.read_text() and "lost connection to pod" in refused.err.read_text()
    missing = cluster.kubesim("port-forward", "--name", NAME, "nosuch", "8080", check=False)
    assert missing.returncode == 1 and 'pods "nosuch" not found' in missing.stderr
    bad = cluster.kubesim("port-forward", "--name", NAME, "web", "8080:x:y", check=False)
    assert bad.returncode == 2 and "local port" in bad.stderr


def _top(cluster: Exec, version: str, *args: str, has: Callable[[list[list[str]]], bool] = bool) -> list[list[str]]:
    """kubectl top's rows (the header dropped), asked again (as a user would) until HAS holds of them:
    a pod that has just started has no metrics until its containers have been scraped."""
    def rows() -> list[list[str]] | None:
        done = cluster.kubectl("top", *args, version=version, check=False)
        found = [line.split() for line in done.stdout.splitlines()[1:]] if done.returncode == 0 else None
        return found if found is not None and has(found) else None

    found: list[list[str]] = eventually(rows, timeout=30, message=f"kubectl {version} top {' '.join(args)}")
    return found


def _get_json(cluster: Exec, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return found


def _millicores(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def test_kubectl_top_shows_every_node_and_pod_and_a_busy_container_above_an_idle_one(cluster: Exec) -> None:
    busy = pod("busy", {"name": "spin", "image": "busybox", "command": ["sh", "-c", "while :; do :; done"]},
               {"name": "rest", "image": "busybox", "command": ["sh", "-c", "sleep 3600"]})
    cluster.apply(busy)
    try:
        cluster.wait_ready("busy")
        nodes = [n["metadata"]["name"] for n in _get_json(cluster, "nodes")["items"]]
        pods = _get_json(cluster, "pods", "-A")["items"]
        running = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods
                   if p["status"].get("phase") == "Running"}
        for version in VERSIONS:
            top_nodes = _top(cluster, version, "nodes")
            assert sorted(r[0] for r in top_nodes) == sorted(nodes)
            for _, cpu, cpu_percent, memory, memory_percent in top_nodes:
                assert cpu.endswith("m") and memory.endswith("Mi") and cpu_percent.endswith("%"), top_nodes
                assert int(memory[:-2]) > 0 and 0 <= int(memory_percent[:-1]) <= 100, top_nodes
            top_pods = _top(cluster, version, "pods", "-A", "--containers",
                            has=lambda rows: {(r[0], r[1]) for r in rows} >= running)
            usage = {(r[1], r[2]): (_millicores(r[3]), r[4]) for r in top_pods}
            assert usage[("busy", "spin")][0] > usage[("busy", "rest")][0], top_pods
            assert all(memory.endswith("Mi") for _, memory in usage.values()), top_pods
        described = cluster.kubectl("describe", "node", nodes[0]).stdout
        assert "kubesim.io/resource-metrics-source" in described
        # the numbers came through the aggregation path: the apiserver proxies to the controller-manager's
        # metrics-server role
        log = cluster.kubesim("logs", "--name", NAME, "-n", "100000", "controller-manager").stdout
        assert "metrics-server serving metrics.k8s.io on https://127.0.0.1:4443" in log
    finally:
        cluster.kubectl("delete", "pod", "busy", "--wait=false", check=False)
