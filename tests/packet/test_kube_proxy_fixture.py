"""Packet flows on topologies/kube-proxy-fixture.yaml: the addresses of kube-proxy's own unit tests
(pkg/proxy/nftables/proxier_test.go and pkg/proxy/iptables/proxier_test.go: node "test-node" at
192.168.0.2, cluster CIDR 10.0.0.0/8, service CIDR 172.30.0.0/16, external client 203.0.113.2,
Service ns1/svc1 at 172.30.0.41:80 with endpoint 10.180.0.1:80), so each row here can be read against
upstream's expected result for the same flow — but these packets are real, through the real kernel.

Endpoints are hand-written EndpointSlices (as upstream's tests write them), on other-node's pod range.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.trace import run_trace

REPO = Path(__file__).resolve().parents[2]
NAME = "fixture"


@dataclass(frozen=True)
class Flow:
    name: str
    src: str
    dst: str
    result: str  # DNAT | REJECT | DROP | NONE
    endpoints: tuple[str, ...] = ()
    masquerade: bool | None = None
    iptables_result: str | None = None  # where Kubernetes' iptables mode differs from nftables mode


# Upstream's flows for this layout (proxier_test.go's packet-flow tables), restated.
FLOWS = [
    Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41:80", "DNAT", ("10.180.0.1:80",), masquerade=False),
    Flow("external to cluster IP", "client", "172.30.0.41:80", "DNAT", ("10.180.0.1:80",), masquerade=True),
    Flow("node to cluster IP", "test-node", "172.30.0.41:80", "DNAT", ("10.180.0.1:80",), masquerade=True),
    Flow("pod to cluster IP with no endpoints", "10.0.0.2", "172.30.0.44:80", "REJECT"),
    # nftables mode only (KEP-3866): unknown ports of a ClusterIP are rejected and unallocated
    # addresses of the service CIDR dropped; iptables mode leaves them to routing.
    Flow("pod to unknown port of cluster IP", "10.0.0.2", "172.30.0.41:81", "REJECT", iptables_result="NONE"),
    Flow("pod to unallocated service IP", "10.0.0.2", "172.30.0.99:80", "DROP", iptables_result="NONE"),
]


def _objects() -> list[dict[str, Any]]:
    def service(name: str, ip: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns1"},
                "spec": {"clusterIP": ip, "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]}}

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}},
        service("svc1", "172.30.0.41"),
        service("svc4", "172.30.0.44"),
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "svc1-abc", "namespace": "ns1", "labels": {"kubernetes.io/service-name": "svc1"}},
         "addressType": "IPv4", "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["10.180.0.1"], "conditions": {"ready": True}, "nodeName": "other-node"}]},
    ]


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def mode(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp(f"fixture-{request.param}")
    env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
    old = os.environ.get("KUBESIM_STATE_DIR")
    os.environ["KUBESIM_STATE_DIR"] = str(state)  # run_trace, in this process, finds the cluster here

    def kubesim(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "kubesim", *args], env=env, cwd=REPO, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, f"kubesim {' '.join(args)}: {done.stderr}"

    kubesim("up", str(REPO / "topologies" / "kube-proxy-fixture.yaml"), "--proxy-mode", request.param)
    try:
        kubesim("apply", "--name", NAME, "-f", _write(state / "objects.yaml", _objects()))
        yield request.param
    finally:
        subprocess.run([sys.executable, "-m", "kubesim", "down", "--name", NAME], env=env, cwd=REPO,
                       capture_output=True, check=False)
        if old is None:
            os.environ.pop("KUBESIM_STATE_DIR", None)
        else:
            os.environ["KUBESIM_STATE_DIR"] = old


def _write(path: Path, objects: list[dict[str, Any]]) -> str:
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


@pytest.mark.parametrize("flow", FLOWS, ids=[f.name for f in FLOWS])
def test_upstream_flow(mode: str, flow: Flow) -> None:
    want = flow.iptables_result if mode == "iptables" and flow.iptables_result else flow.result
    got: dict[str, Any] = {}
    for _ in range(40):  # the proxy programs the Services within its sync period
        got = run_trace(NAME, node="test-node", src=flow.src, dst=flow.dst, count=4, timeout=0.5)
        if got["result"] == want and (want != "DNAT" or set(got["endpoints"]) == set(flow.endpoints)):
            break
    assert got["result"] == want, got
    if want == "DNAT":
        assert set(got["endpoints"]) == set(flow.endpoints)
        if flow.masquerade is not None:
            assert got["masquerade"] is flow.masquerade, got
