"""`python -m control.kubelet`'s flags: a bad --node-labels pair is a usage error naming the fix."""

from __future__ import annotations

import pytest

from control.kubelet.__main__ import build_parser

REQUIRED = ["--kubeconfig", "k", "--node-name", "worker-1", "--cluster", "c", "--node-ip", "172.18.0.3",
            "--pod-cidr", "10.244.1.0/24", "--root-dir", "r", "--tls-cert-file", "c.pem",
            "--tls-private-key-file", "k.pem", "--client-ca-file", "ca.pem"]


def test_node_labels_are_parsed_into_a_mapping() -> None:
    args = build_parser().parse_args([*REQUIRED, "--node-labels", "tier=edge,example.com/zone=a,empty="])
    assert args.node_labels == {"tier": "edge", "example.com/zone": "a", "empty": ""}
    assert build_parser().parse_args(REQUIRED).node_labels == {}


@pytest.mark.parametrize(("value", "says"), [
    ("tier", "'tier' is not a label: write key=value pairs"),
    ("tier=edge,zone", "'zone' is not a label"),
    ("bad key=x", "key 'bad key'"),
    ("tier=no spaces", "value 'no spaces'"),
])
def test_a_bad_node_label_is_a_usage_error(capsys: pytest.CaptureFixture[str], value: str, says: str) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*REQUIRED, "--node-labels", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --node-labels:" in err and says in err


def test_taints_are_parsed_as_upstream_writes_them() -> None:
    args = build_parser().parse_args([*REQUIRED, "--register-with-taints", "dedicated=edge:NoSchedule,gpu:NoExecute"])
    assert args.register_with_taints == [{"key": "dedicated", "value": "edge", "effect": "NoSchedule"},
                                         {"key": "gpu", "effect": "NoExecute"}]


@pytest.mark.parametrize(("value", "says"), [
    ("dedicated=edge", "needs an effect"),
    ("gpu:Sometimes", "needs an effect, one of NoSchedule, PreferNoSchedule, NoExecute"),
    ("bad key:NoSchedule", "key 'bad key'"),
])
def test_a_bad_taint_is_a_usage_error(capsys: pytest.CaptureFixture[str], value: str, says: str) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*REQUIRED, "--register-with-taints", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --register-with-taints:" in err and says in err


def test_dns_flags_and_hidden_directories_as_upstream_names_them() -> None:
    args = build_parser().parse_args([*REQUIRED, "--cluster-dns", "10.96.0.10", "--cluster-domain", "corp.example",
                                      "--hide-dir", "/a", "--hide-dir", "/b", "--resolv-conf", ""])
    assert (args.cluster_dns, args.cluster_domain, args.hide_dir, args.resolv_conf) == (
        ["10.96.0.10"], "corp.example", ["/a", "/b"], "")
    defaults = build_parser().parse_args(REQUIRED)
    assert (defaults.cluster_dns, defaults.cluster_domain, defaults.resolv_conf) == (
        [], "cluster.local", "/etc/resolv.conf")
    assert build_parser().parse_args([*REQUIRED, "--cluster-dns", ""]).cluster_dns == []  # no cluster DNS


def test_a_bad_cluster_dns_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*REQUIRED, "--cluster-dns", "kube-dns"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --cluster-dns: 'kube-dns' is not an IP address" in err
