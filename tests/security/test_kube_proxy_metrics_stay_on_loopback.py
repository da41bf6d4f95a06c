"""Defect 12 (part): kube-proxy served its metrics on the node's address, readable by every pod and
node. Upstream's defaults (pkg/proxy/apis/config/v1alpha1/defaults.go) are metrics on 127.0.0.1:10249
and healthz on 0.0.0.0:10256; the proxy's config, its process entry (`python -m proxy`) and `kubesim up` all use
them. (tests/security/test_cluster_is_sealed_from_pods.py shows it from a pod on a real cluster.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import kubesim.components as components
from kubesim.state import ClusterState
from netsim.topology import load_topology
from proxy.__main__ import build_parser
from proxy.server import ProxyConfig

REPO = Path(__file__).resolve().parents[2]


def test_the_proxy_config_defaults_are_upstreams() -> None:
    config = ProxyConfig(node_name="worker-1")
    assert (config.metrics_address, config.healthz_address) == ("127.0.0.1:10249", "0.0.0.0:10256")


def test_the_proxy_command_defaults_are_upstreams() -> None:
    defaults = build_parser().parse_args([])
    assert defaults.metrics_bind_address == "127.0.0.1:10249"
    assert defaults.healthz_bind_address == "0.0.0.0:10256"


def test_up_starts_every_kube_proxy_with_metrics_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, list[str]] = {}

    def record(state: ClusterState, namespace: str, role: str, argv: list[str]) -> int:
        started[role] = argv
        return 0

    monkeypatch.setattr(components, "start", record)
    topology = load_topology(REPO / "topologies" / "two-node.yaml")
    components.start_proxies(ClusterState("sec", tmp_path), topology, "nftables")
    assert sorted(started) == [f"kube-proxy-{node.name}" for node in topology.nodes]
    for argv in started.values():
        flags = dict(itertools.pairwise(argv))
        assert flags["--metrics-bind-address"] == "127.0.0.1:10249"
        assert flags["--healthz-bind-address"] == "0.0.0.0:10256"
        assert not any(node.address in arg for node in topology.nodes for arg in argv)
