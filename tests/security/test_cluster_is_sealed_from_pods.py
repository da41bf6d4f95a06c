"""Defects 4, 5 and 12 on a real cluster (topologies/two-node.yaml with `--store etcd`), seen from
inside a pod's network namespace: the apiserver wants a token (401), every kubelet API wants a client
certificate (401), etcd cannot even be connected to, nor can any node's kube-proxy metrics; kube-proxy's
healthz still answers everywhere, and `kubectl logs` still works (the apiserver reaches the kubelet
over verified TLS with its client certificate), but not for a container that is not the pod's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netsim import names
from tests import cluster_report
from tests.waiting import wait_until

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
NAME = "sec"
KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
CONTROL_PLANE, WORKERS = "172.18.0.2", ("172.18.0.3", "172.18.0.4")
CURL_COULD_NOT_CONNECT = 7


class Cluster:
    def __init__(self, state: Path) -> None:
        self.env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
        self.kubeconfig = str(state / NAME / "kubeconfig")
        self.logs = state / NAME / "logs"

    def kubesim(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "kubesim", *args], capture_output=True, text=True,
                              env=self.env, check=False, cwd=REPO)
        if check and done.returncode != 0:
            raise AssertionError(f"kubesim {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                              input=stdin, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def pod(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "pod", name, "-o", "json").stdout))

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        def ready() -> bool:
            conditions = self.pod(name).get("status", {}).get("conditions", [])
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        wait_until(ready, timeout=timeout, message=f"pod {name} Ready",
                   describe=lambda: cluster_report.describe_pods(cluster_report.kubectl_for(self.kubeconfig, KUBECTL),
                                                                 [name], logs=self.logs))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("state"))
    c.kubesim("up", str(REPO / "topologies" / "two-node.yaml"), "--name", NAME, "--store", "etcd")
    try:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
               "spec": {"nodeName": "worker-1", "containers": [{
                   "name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                   "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}}
        c.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(pod))
        c.wait_ready("probe")
        yield c
    finally:
        c.kubesim("down", "--name", NAME, check=False)


@pytest.fixture(scope="module")
def pod_ns(cluster: Cluster) -> str:
    return names.pod_ns(NAME, cluster.pod(name="probe")["metadata"]["uid"])


def curl(ns: str, *args: str) -> tuple[int, str]:
    """(curl's exit code, the HTTP status it printed) for a request made inside namespace NS."""
    done = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-k", "-o", "/dev/null", "-w", "%{http_code}",
                           "--connect-timeout", "3", "--max-time", "5", *args],
                          capture_output=True, text=True, timeout=15, check=False)
    return done.returncode, done.stdout


def test_the_apiserver_wants_a_token(pod_ns: str) -> None:
    assert curl(pod_ns, f"https://{CONTROL_PLANE}:6443/api/v1/namespaces/kube-system/secrets") == (0, "401")


@pytest.mark.parametrize("node_ip", [CONTROL_PLANE, *WORKERS])
def test_no_kubelet_api_answers_a_pod(pod_ns: str, node_ip: str) -> None:
    base = f"https://{node_ip}:10250/containerLogs/default/probe"
    assert curl(pod_ns, f"{base}/agnhost") == (0, "401")
    assert curl(pod_ns, f"{base}/..%2F..%2F..%2F..%2Flogs%2Fapiserver") == (0, "401")
    _, status = curl(pod_ns, f"http://{node_ip}:10250/containerLogs/default/probe/agnhost")
    assert status != "200", "the kubelet API answered in plain text"


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_etcd_cannot_be_connected_to(pod_ns: str, scheme: str) -> None:
    for port in (2379, 2380):
        assert curl(pod_ns, f"{scheme}://{CONTROL_PLANE}:{port}/health")[0] == CURL_COULD_NOT_CONNECT


@pytest.mark.parametrize("node_ip", [CONTROL_PLANE, *WORKERS])
def test_kube_proxy_metrics_cannot_be_connected_to_but_healthz_answers(pod_ns: str, node_ip: str) -> None:
    assert curl(pod_ns, f"http://{node_ip}:10249/metrics")[0] == CURL_COULD_NOT_CONNECT
    assert curl(pod_ns, f"http://{node_ip}:10256/healthz") == (0, "200")


def test_kubectl_logs_still_works(cluster: Cluster) -> None:
    assert "Started HTTP server on port 8080" in cluster.kubectl("logs", "probe").stdout
    assert "Started HTTP server on port 8080" in cluster.kubectl("logs", "probe", "-c", "agnhost").stdout


def test_kubectl_logs_of_a_container_not_in_the_pod_is_refused(cluster: Cluster) -> None:
    refused = cluster.kubectl("logs", "probe", "-c", "../../../../logs/apiserver", check=False)
    assert refused.returncode != 0
    assert "is not valid for pod probe" in refused.stderr
