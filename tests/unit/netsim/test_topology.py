"""Topology files: the shipped ones resolve as documented, and each kind of mistake gives exactly one
clear problem naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubesim.cli import main
from netsim.errors import TopologyError
from netsim.topology import load_topology, parse_topology

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"


def test_default_topology_follows_kind():
    topo = load_topology(TOPOLOGIES / "two-node.yaml")
    assert topo.name == "kubesim"
    assert [(n.name, n.role, n.address, n.pod_cidr) for n in topo.nodes] == [
        ("control-plane", "control-plane", "172.18.0.2", "10.244.0.0/24"),
        ("worker-1", "worker", "172.18.0.3", "10.244.1.0/24"),
        ("worker-2", "worker", "172.18.0.4", "10.244.2.0/24"),
    ]
    assert [(h.name, h.address) for h in topo.external_hosts] == [("client", "172.18.0.5")]
    assert topo.network.service_cidr == "10.96.0.0/16"
    assert topo.network.host_address == "172.18.0.1"
    assert topo.network.node_port_range == (30000, 32767)
    assert topo.proxy_mode == "nftables"
    # kubeadm's taint on the control plane, since there are workers to run pods.
    assert [(t.key, t.effect) for t in topo.control_plane.taints] == [
        ("node-role.kubernetes.io/control-plane", "NoSchedule")
    ]
    assert topo.nodes[1].capacity.pods == 110


def test_single_node_control_plane_is_untainted():
    topo = load_topology(TOPOLOGIES / "single-node.yaml")
    assert topo.control_plane.taints == ()


def test_kube_proxy_fixture_uses_upstream_addresses():
    topo = load_topology(TOPOLOGIES / "kube-proxy-fixture.yaml")
    test_node = topo.member("test-node")
    assert test_node is not None and test_node.address == "192.168.0.2"
    assert topo.network.cluster_cidr == "10.0.0.0/8"
    assert topo.network.service_cidr == "172.30.0.0/16"
    assert {h.address for h in topo.external_hosts} == {"203.0.113.2", "203.0.113.130"}


def test_vxlan_topology():
    topo = load_topology(TOPOLOGIES / "three-node-vxlan.yaml")
    assert topo.network.mode == "vxlan"
    assert len(topo.nodes) == 4
    assert topo.nodes[3].labels == {"topology.kubernetes.io/zone": "zone-b"}


def test_resolved_topology_round_trips():
    for path in TOPOLOGIES.glob("*.yaml"):
        topo = load_topology(path)
        again = parse_topology(topo.to_dict(), source=str(path))
        assert again == topo


def test_the_controller_managers_rate_limit_is_upstreams_unless_the_file_says():
    base = {"nodes": [{"name": "cp", "role": "control-plane"}]}
    limit = parse_topology(base).controller_manager
    assert (limit.kube_api_qps, limit.kube_api_burst) == (20.0, 30)
    limit = parse_topology({**base, "controllerManager": {"kubeAPIQPS": 0, "kubeAPIBurst": 100}}).controller_manager
    assert (limit.kube_api_qps, limit.kube_api_burst) == (0.0, 100)


def test_explicit_addresses_are_skipped_by_allocation():
    topo = parse_topology({
        "nodes": [
            {"name": "cp", "role": "control-plane"},
            {"name": "w1", "address": "172.18.0.2", "podCIDR": "10.244.0.0/24"},
        ],
    })
    assert [(n.name, n.address, n.pod_cidr) for n in topo.nodes] == [
        ("cp", "172.18.0.3", "10.244.1.0/24"), ("w1", "172.18.0.2", "10.244.0.0/24"),
    ]


BASE = {
    "name": "t",
    "nodes": [{"name": "control-plane", "role": "control-plane"}, {"name": "worker-1"}],
    "externalHosts": [{"name": "client"}],
}


def _with(change: dict) -> dict:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in change.items():
        target = data
        *parents, last = dotted.split("/")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return data


BROKEN = [
    # (what is wrong, change to the base, expected field path, words the message must contain)
    ("malformed CIDR", {"network/clusterCIDR": "10.244.0.0/33"}, "network.clusterCIDR", "not a valid IPv4 CIDR"),
    ("CIDR with host bits", {"network/serviceCIDR": "10.96.1.0/16"}, "network.serviceCIDR",
     "did you mean 10.96.0.0/16"),
    ("overlapping CIDRs", {"network/serviceCIDR": "10.244.128.0/20"}, "network.serviceCIDR", "overlaps"),
    ("duplicate node names", {"nodes/1/name": "control-plane"}, "nodes[1].name", "already the name"),
    ("node and host share a name", {"externalHosts/0/name": "worker-1"}, "externalHosts[0].name", "already the name"),
    ("duplicate addresses", {"nodes/0/address": "172.18.0.9", "nodes/1/address": "172.18.0.9"},
     "nodes[1].address", "already the address"),
    ("address outside nodeCIDR", {"nodes/1/address": "10.1.2.3"}, "nodes[1].address", "outside nodeCIDR"),
    ("pod CIDR outside clusterCIDR", {"nodes/1/podCIDR": "10.1.0.0/24"}, "nodes[1].podCIDR", "outside clusterCIDR"),
    ("invalid node name", {"nodes/1/name": "Worker_1"}, "nodes[1].name", "DNS-1123"),
    ("invalid cluster name", {"name": "My.Cluster"}, "name", "DNS-1123"),
    ("unknown field", {"nodes/1/rol": "worker"}, "nodes[1].rol", "did you mean 'role'"),
    ("unknown top-level field", {"workload": []}, "workload", "did you mean 'workloads'"),
    ("bad mode", {"network/mode": "vxlam"}, "network.mode", "did you mean 'vxlan'"),
    ("bad proxy mode", {"proxy": {"mode": "ipvs"}}, "proxy.mode", "nftables, iptables"),
    ("no control plane", {"nodes/0/role": "worker"}, "nodes", "exactly one node must have role: control-plane"),
    ("bad taint effect", {"nodes/1/taints": [{"key": "dedicated", "effect": "NoScheduling"}]},
     "nodes[1].taints[0].effect", "did you mean 'NoSchedule'"),
    ("bad label", {"nodes/1/labels": {"zone": "a b"}}, "nodes[1].labels.zone", "value 'a b'"),
    ("bad capacity", {"nodes/1/capacity": {"cpu": "lots"}}, "nodes[1].capacity.cpu", "CPU quantity"),
    ("wrong type", {"nodes": {"name": "x"}}, "nodes", "must be a list"),
    ("load-balancer pool in the service range", {"loadBalancerPool": ["10.96.0.0/24"]}, "loadBalancerPool[0]",
     "overlaps serviceCIDR"),
    ("negative controller QPS", {"controllerManager": {"kubeAPIQPS": -1}}, "controllerManager.kubeAPIQPS",
     "from 0 (no limit) to 10000"),
    ("fractional controller burst", {"controllerManager": {"kubeAPIBurst": 2.5}}, "controllerManager.kubeAPIBurst",
     "whole number"),
    ("missing workload file", {"workloads": ["nope.yaml"]}, "workloads[0]", "does not exist"),
    ("pod CIDRs exhausted", {"network/clusterCIDR": "10.244.0.0/24", "network/podCIDRSize": 24,
                             "nodes/1/podCIDR": None}, "nodes[1].podCIDR", "no free /24"),
]


@pytest.mark.parametrize(("change", "path", "words"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_each_mistake_gives_one_clear_problem(change, path, words, tmp_path):
    data = _with(change)
    if "nodes/1/podCIDR" in change and change["nodes/1/podCIDR"] is None:
        del data["nodes"][1]["podCIDR"]
    file = tmp_path / "broken.yaml"
    file.write_text(yaml.safe_dump(data))
    with pytest.raises(TopologyError) as caught:
        load_topology(file)
    problems = caught.value.problems
    assert len(problems) == 1, str(caught.value)
    assert problems[0].path == path
    assert words in problems[0].message
    assert str(caught.value).startswith(f"{file}: {path}: ")


def test_invalid_yaml_names_the_line(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("name: x\nnodes: [\n")
    with pytest.raises(TopologyError, match=r"line \d+, column \d+: not valid YAML"):
        load_topology(file)


def test_missing_file():
    with pytest.raises(TopologyError, match="no such file"):
        load_topology("/nonexistent/topology.yaml")


def test_all_problems_are_reported_together():
    with pytest.raises(TopologyError) as caught:
        parse_topology(_with({"network/mode": "x", "proxy": {"mode": "y"}}), source="t.yaml")
    assert {p.path for p in caught.value.problems} == {"network.mode", "proxy.mode"}


@pytest.mark.parametrize(("change", "path", "words"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_cli_rejects_each_broken_topology_with_exit_2_and_makes_nothing(change, path, words, tmp_path,
                                                                         monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("KUBESIM_STATE_DIR", str(state))
    data = _with(change)
    if change.get("nodes/1/podCIDR", "") is None:
        del data["nodes"][1]["podCIDR"]
    file = tmp_path / "broken.yaml"
    file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["up", str(file)])
    assert result.exit_code == 2
    assert f"{file}: {path}: " in result.output and words in result.output
    assert result.output.count("error:") == 1
    assert not state.exists()


def test_cli_rejects_a_bad_name_override(tmp_path):
    result = CliRunner().invoke(main, ["up", str(TOPOLOGIES / "two-node.yaml"), "--name", "Bad_Name"])
    assert result.exit_code == 2
    assert "Invalid value for '--name': 'Bad_Name' is not a valid name" in result.output
