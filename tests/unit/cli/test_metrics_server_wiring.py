"""What `kubesim up` starts for metrics.k8s.io: the controller-manager serving metrics-server's role on the
control-plane node's loopback only (no pod can reach it), and the apiserver registered to proxy there."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kubesim import components
from kubesim.state import ClusterState
from netsim.topology import load_topology

REPO = Path(__file__).resolve().parents[3]


def test_the_metrics_server_role_is_on_loopback_and_the_apiserver_proxies_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, list[str]] = {}

    def record(state: ClusterState, namespace: str, role: str, argv: list[str]) -> int:
        started[role] = argv
        return 0

    monkeypatch.setattr(components, "start", record)
    monkeypatch.setattr(components, "wait_http", lambda *args, **kwargs: None)
    topology = load_topology(REPO / "topologies" / "two-node.yaml")
    state = ClusterState("wiring", tmp_path)
    components.start_control_loops(state, topology)
    components.start_apiserver(state, topology, "sqlite:///x")
    manager = dict(itertools.pairwise(started["controller-manager"]))
    apiserver = dict(itertools.pairwise(started["apiserver"]))
    assert manager["--metrics-bind-address"] == "127.0.0.1:4443"
    assert manager["--requestheader-allowed-names"] == "kube-apiserver-kubelet-client"
    assert apiserver["--metrics-server-url"] == "https://127.0.0.1:4443"
    assert apiserver["--proxy-client-cert-file"].endswith("apiserver-kubelet-client.crt")
