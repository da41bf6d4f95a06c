"""Scenarios users write packet-trace tests for, on a whole cluster through kubesim.testing:

1. a rolling update of a Deployment behind a Service, under a steady client, loses no request
   (readiness gates new pods, terminating endpoints leave the load balancing, old pods drain);
2. a kube-proxy killed and started again leaves an established connection through a ClusterIP working;
3. (riding along) a `*/1 * * * *` CronJob on the real clock (tests/cronjob_clock.py): made when the module
   starts, its pods pinned to worker-2 (whose kube-proxy is never killed here), checked by the last test,
   so the minute mostly passes while the rolling update runs instead of costing a module of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubesim import components
from kubesim.testing import Cluster, cluster_for_tests, eventually
from netsim import namespaces
from netsim.probe import http_get
from tests import cronjob_clock
from tests.conftest import require_tool

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
RATE = 20.0  # requests per second
REQUESTS = 500  # issue 16: 0 failed out of at least 500
ROLLOUTS = 2  # at least: the second rolls over pods the first made


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with cluster_for_tests(name="scenarios") as made:
        made.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
                    "spec": {"nodeName": "worker-1",
                             "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}})
        made.wait_ready("app=client", count=1)
        yield made


CRON_NODE = "worker-2"


def kubectl(cluster: Cluster) -> cronjob_clock.Kubectl:
    binary = require_tool("kubectl")

    def run(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([binary, "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True,
                              text=True, input=stdin, check=False)
        assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stderr}"
        return done.stdout
    return run


@pytest.fixture(scope="module")
def minutely(cluster: Cluster) -> float:
    """The every-minute CronJob, made when the module starts (its first test asks for it)."""
    return cronjob_clock.start(kubectl(cluster), CRON_NODE)


def web(generation: str) -> dict[str, Any]:
    """Three agnhost netexec pods, updated one at a time, each ready only once it answers and given time
    to drain after it is told to stop (netexec's --delay-shutdown, as Kubernetes' own e2e tests do)."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"generation": generation}},
                                  "spec": {"terminationGracePeriodSeconds": 10, "containers": [{
                                      "name": "agnhost", "image": AGNHOST,
                                      "args": ["netexec", "--http-port=8080", "--delay-shutdown=3"],
                                      "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                                         "periodSeconds": 1}}]}}}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def get(ns: str, address: str, timeout: float = 2.0) -> str:
    """One HTTP GET /hostname from inside namespace NS; the body, or an exception."""
    status, body = http_get(ns, address, 80, "/hostname", timeout=timeout)
    if status != 200:
        raise AssertionError(f"answer {status}")
    return body


class SteadyClient(threading.Thread):
    """RATE requests a second from a pod's namespace to ADDRESS until stopped; every outcome is kept."""

    def __init__(self, ns: str, address: str) -> None:
        super().__init__(daemon=True)
        self.ns, self.address = ns, address
        self.stopping = threading.Event()
        self.sent = 0
        self.failures: list[tuple[float, str]] = []
        self.answered_by: set[str] = set()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopping.is_set():
            try:
                self.answered_by.add(get(self.ns, self.address))
            except (OSError, AssertionError) as exc:
                self.failures.append((time.monotonic() - start, f"{type(exc).__name__}: {exc}"))
            self.sent += 1
            self.stopping.wait(max(0.0, start + self.sent / RATE - time.monotonic()))


def update(cluster: Cluster, obj: dict[str, Any]) -> None:
    """Replace OBJ, again when the controllers changed it between our read and our write (409)."""
    from control.client import Conflict

    for _ in range(20):
        try:
            cluster.apply(obj)
            return
        except Conflict:
            time.sleep(0.1)
    cluster.apply(obj)


def rolled_out(cluster: Cluster, generation: str) -> bool:
    pods = cluster.objects("pods", "app=web")
    return len(pods) == 3 and all(
        p["metadata"].get("annotations", {}).get("generation") == generation
        and not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
        for p in pods)


def test_a_rolling_update_under_a_steady_client_loses_no_request(cluster: Cluster, minutely: float) -> None:
    cluster.apply(web("1"), SERVICE)
    cluster.wait_ready("app=web", count=3)
    cluster.wait_endpoints("web", 3)
    address = cluster.service_ip("web")
    client_ns = cluster.namespace_of("default/client")
    eventually(lambda: get(client_ns, address))
    client = SteadyClient(client_ns, address)
    client.start()
    generation = 1
    try:
        # Roll the Deployment over and over while the client runs, until it has sent enough.
        while client.sent < REQUESTS or generation <= ROLLOUTS:
            generation += 1
            update(cluster, web(str(generation)))
            wanted = str(generation)
            deadline = time.monotonic() + 60
            while not rolled_out(cluster, wanted):
                assert time.monotonic() < deadline, f"rollout {wanted} did not finish within 60 s"
                time.sleep(0.5)
            client.stopping.wait(3)  # steady traffic between rollouts, too
    finally:
        client.stopping.set()
        client.join(timeout=10)
    print(f"rolling update: {client.sent} requests sent, {len(client.failures)} failed, "
          f"{generation - 1} rollouts, answered by {len(client.answered_by)} pods")
    assert client.sent >= REQUESTS
    assert generation > ROLLOUTS
    assert len(client.answered_by) > 3, client.answered_by  # old and new pods both served
    assert not client.failures, client.failures[:10]


# A real process in the pod: a TCP echo server that keeps every connection open until the client ends it.
ECHO_SERVER = """
import socket, threading
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 9000))
listener.listen(16)
def serve(conn):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""


def echo_objects() -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "echo"}},
                      "template": {"metadata": {"labels": {"app": "echo"}}, "spec": {
                          # On the other worker: the client's node DNATs, the flow crosses the fabric.
                          "nodeSelector": {"kubernetes.io/hostname": "worker-2"},
                          "containers": [{"name": "echo", "image": "python:3.11-slim",
                                          "command": [sys.executable, "-c", ECHO_SERVER],
                                          "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1}}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
             "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 9000}]}}]


def exchange(sock: socket.socket, message: bytes) -> bytes:
    sock.sendall(message)
    got = b""
    while len(got) < len(message):
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"the connection ended after {got!r}")
        got += chunk
    return got


def test_a_kube_proxy_restart_keeps_an_established_connection(cluster: Cluster) -> None:
    cluster.apply(*echo_objects())
    cluster.wait_ready("app=echo", count=1)
    cluster.wait_endpoints("echo", 1)
    address = cluster.service_ip("echo")
    client_ns = cluster.namespace_of("default/client")  # on worker-1

    def connected() -> socket.socket:
        with namespaces.entered(client_ns):
            sock = socket.create_connection((address, 80), timeout=5)
        try:
            assert exchange(sock, b"hello\n") == b"hello\n"
        except BaseException:
            sock.close()
            raise
        return sock

    sock = eventually(connected)

    def conntrack_entry() -> str:
        """The flow's conntrack entry on the client's node (its id tells a kept entry from a new one)."""
        sport = str(sock.getsockname()[1])
        listed = cluster.exec("worker-1", "conntrack", "-L", "-p", "tcp", "--orig-port-src", sport, "-o", "id",
                              check=True).stdout.splitlines()
        # Another flow of the node may share the source port (a health check from the host, say): keep ours.
        listed = [line for line in listed if f"dst={address} " in line]
        assert len(listed) == 1 and "ESTABLISHED" in listed[0], listed
        return listed[0].rsplit("id=", 1)[1]

    try:
        entry = conntrack_entry()
        state = cluster.state
        role = "kube-proxy-worker-1"
        old = next(p for p in state.processes() if p.role == role)
        os.kill(old.pid, signal.SIGKILL)  # a crash: no chance to tidy anything
        deadline = time.monotonic() + 10
        while old.alive():
            assert time.monotonic() < deadline, f"{role} (pid {old.pid}) outlived SIGKILL"
            time.sleep(0.05)
        assert exchange(sock, b"while it is down\n") == b"while it is down\n"
        new_pid = components.restart(state, role, stop_first=False)  # `kubesim start kube-proxy-worker-1`
        assert new_pid != old.pid
        node = next(n for n in cluster.topology.nodes if n.name == "worker-1")
        # Healthy means its first full sync is written: the table it rebuilt is the one in force.
        components.wait_http(state, role, f"http://{node.address}:10256/healthz", ca=None, timeout=30)
        assert exchange(sock, b"after the restart\n") == b"after the restart\n"
        assert conntrack_entry() == entry  # the same entry carried it: nothing was flushed or re-made
        for _ in range(3):
            assert exchange(sock, b"and again\n") == b"and again\n"
    finally:
        sock.close()
    connected().close()  # and new connections go through the new rules


def test_every_minute_cron_job_ran_on_the_real_clock(cluster: Cluster, minutely: float) -> None:
    """Placed last: the CronJob made at the module's start has had the other tests' time to fire."""
    waited = cronjob_clock.check(kubectl(cluster), minutely, CRON_NODE)
    print(f"waited {waited:.1f} s for the minute")  # the wall time the real clock adds to the module
