"""`kubesim observe` on a whole cluster: flows as they happen, read from a running `kubesim observe`
process the way a user's script would read it (-o json, one object per line), and what it leaves
behind when stopped (nothing)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubesim.flows import OBSERVE_TABLE_PREFIX
from kubesim.testing import Cluster, cluster_for_tests, eventually
from netsim import namespaces
from tests.conftest import REPO

NAME = "observe"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with cluster_for_tests(name=NAME) as made:
        netexec = {"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                   "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}
        made.apply(
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [netexec]}}}},
            *(({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}})
              for name, app in (("web", "web"), ("lonely", "nobody-has-this-label"))),
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
             "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}})
        made.wait_ready("app=web", count=2)
        made.wait_ready("app=client", count=1)
        made.wait_endpoints("web", 2)
        yield made


class Observer:
    """A `kubesim observe` process; ready once it says it is observing."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "kubesim", "observe", "--name", NAME, *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stderr = b""
        deadline = time.monotonic() + 20
        while b"observing" not in self.stderr:
            assert time.monotonic() < deadline, f"observe did not start: {self.stderr.decode()}"
            assert self.process.poll() is None, f"observe ended: {self.stderr.decode()}"
            ready, _, _ = select.select([self.process.stderr], [], [], 0.5)
            if ready:
                self.stderr += os.read(self.process.stderr.fileno(), 4096)
        self.pending = b""

    def records(self, timeout: float) -> Iterator[dict[str, Any]]:
        """The JSON records it prints, as they come, for up to TIMEOUT seconds."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            *lines, self.pending = (self.pending + chunk).split(b"\n")
            for line in lines:
                yield json.loads(line)

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=15)
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()


def request(ns: str, address: str) -> str:
    with namespaces.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(3)
        sock.connect((address, 80))
        sock.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data.decode().partition("\r\n\r\n")[2]
    finally:
        sock.close()


def observe_tables(cluster: Cluster) -> list[str]:
    found = []
    for node in cluster.topology.nodes:
        listed = cluster.exec(node.name, "nft", "list", "tables", check=True).stdout
        found += [line for line in listed.splitlines() if OBSERVE_TABLE_PREFIX in line]
    return found


def test_a_request_to_a_service_without_endpoints_shows_as_rejected_as_it_happens(cluster: Cluster) -> None:
    lonely = cluster.service_ip("lonely")
    client_ns = cluster.namespace_of("default/client")
    observer = Observer("--verdict", "REJECTED", "-o", "json")
    try:
        assert observe_tables(cluster), "observe installs its trace table in every node while it runs"
        with pytest.raises(ConnectionRefusedError):
            request(client_ns, lonely)
        record = next(observer.records(timeout=10), None)
    finally:
        code = observer.stop(signal.SIGINT)  # Ctrl-C
    assert record is not None, f"no REJECTED flow shown; stderr: {observer.stderr.decode()}"
    assert record["verdict"] == "REJECTED" and record["node"] == "worker-1" and record["protocol"] == "TCP"
    assert record["service"] == {"namespace": "default", "name": "lonely", "ip": lonely, "port": 80}
    assert (record["source"]["namespace"], record["source"]["pod"]) == ("default", "client")
    assert record["backend"] is None
    assert "reject" in record["rule"]
    assert code == 0
    assert observe_tables(cluster) == []


def test_a_forwarded_flow_names_the_service_and_the_backend_pod(cluster: Cluster) -> None:
    web = cluster.service_ip("web")
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in cluster.objects("pods", "app=web")}
    client_ns = cluster.namespace_of("default/client")
    observer = Observer("--service", "web", "--pod", "default/client", "--verdict", "FORWARDED", "-o", "json")
    try:
        answered_by = eventually(lambda: request(client_ns, web))
        record = next(observer.records(timeout=10), None)
    finally:
        code = observer.stop(signal.SIGTERM)
    assert record is not None, f"no FORWARDED flow shown; stderr: {observer.stderr.decode()}"
    assert record["verdict"] == "FORWARDED" and record["node"] == "worker-1"
    assert record["service"] == {"namespace": "default", "name": "web", "ip": web, "port": 80}
    assert record["source"]["pod"] == "client"
    backend = record["backend"]
    assert backend["pod"] == answered_by, (record, answered_by)  # the pod that answered is the one shown
    assert backend["ip"] == pods[backend["pod"]] and backend["port"] == 8080
    assert "default/web (10.96." in record["summary"] and f"default/{answered_by} " in record["summary"]
    assert code == 0
    assert observe_tables(cluster) == []


def test_without_follow_it_ends_by_itself_and_the_text_names_pods(cluster: Cluster) -> None:
    web = cluster.service_ip("web")
    client_ns = cluster.namespace_of("default/client")
    observer = Observer("--no-follow", "--window", "5s", "--pod", "client")
    try:
        for _ in range(3):
            eventually(lambda: request(client_ns, web))
        out, err = observer.process.communicate(timeout=30)  # no signal: it ends when the window does
    finally:
        if observer.process.poll() is None:
            observer.stop(signal.SIGKILL)
    assert observer.process.returncode == 0, err
    text = out.decode()
    assert "default/client " in text and "-> default/web (" in text and "FORWARDED" in text, text
    assert observe_tables(cluster) == []


def test_a_networkpolicy_drop_shows_as_dropped_with_the_policys_rule(cluster: Cluster) -> None:
    pod = cluster.objects("pods", "app=web")[0]
    name, address, node = pod["metadata"]["name"], pod["status"]["podIP"], pod["spec"]["nodeName"]
    client_ns = cluster.namespace_of("default/client")
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-deny"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}
    observer = Observer("--verdict", "DROPPED", "--pod", name, "-o", "json")
    try:
        cluster.apply(deny)

        def refused_by_policy() -> None:
            with namespaces.entered(client_ns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(0.5)
            try:
                sock.connect((address, 8080))
            except TimeoutError:
                return  # dropped: the agent has the policy in its rules
            finally:
                sock.close()
            raise AssertionError("still allowed")

        eventually(refused_by_policy)
        record = next(observer.records(timeout=10), None)
    finally:
        cluster.delete("networkpolicy", "web-deny")
        code = observer.stop()
    assert record is not None, f"no DROPPED flow shown; stderr: {observer.stderr.decode()}"
    assert record["verdict"] == "DROPPED" and record["node"] == node
    assert record["source"]["pod"] == "client"
    assert record["destination"]["pod"] == name and record["destination"]["port"] == 8080
    # The agent rebuilt its table after observe's monitor started: the rule's text is the kernel's.
    assert "kubesim-netpol" in record["rule"] and "isolated by default/web-deny" in record["rule"], record
    assert code == 0
    assert observe_tables(cluster) == []
