"""What `kubesim up` applies for cluster DNS, the topology field that turns it off, and the kubelet's
built-in coredns image."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from control.dns import COREDNS_IMAGE, ZoneConfig, cluster_dns_objects, dns_service_ip
from control.kubelet.workloads import ContainerError, ContainerLog, ProcessContainer, make_container
from netsim.errors import TopologyError
from netsim.topology import Topology, parse_topology


def test_kube_dns_is_the_tenth_address_of_the_service_cidr() -> None:
    assert dns_service_ip("10.96.0.0/16") == "10.96.0.10"
    assert dns_service_ip("172.30.0.0/16") == "172.30.0.10"
    with pytest.raises(ValueError, match="too small"):
        dns_service_ip("10.96.0.0/29")


def test_the_objects_are_corednss_deployment_and_kube_dns() -> None:
    account, deployment, svc = cluster_dns_objects("10.96.0.0/16", ZoneConfig(domain="corp.example"))
    assert (account["kind"], account["metadata"]["name"]) == ("ServiceAccount", "coredns")
    assert deployment["metadata"] == {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "coredns"
    assert pod["containers"][0]["image"] == COREDNS_IMAGE == "registry.k8s.io/coredns/coredns:v1.11.1"
    assert "--cluster-domain=corp.example" in pod["containers"][0]["args"]
    assert pod["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8181}
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]


TOPOLOGY = "nodes:\n  - name: cp\n    role: control-plane\n"


def parse(text: str) -> Topology:
    return parse_topology(yaml.safe_load(text))


def test_the_topology_turns_dns_on_by_default_and_off_on_request() -> None:
    default = parse(TOPOLOGY)
    assert default.dns.enabled and default.dns.cluster_domain == "cluster.local"
    off = parse(TOPOLOGY + "dns:\n  enabled: false\n  clusterDomain: corp.example\n")
    assert not off.dns.enabled and off.dns.cluster_domain == "corp.example"
    assert parse(TOPOLOGY + "dns: {enabled: false}\n").to_dict()["dns"] == {
        "enabled": False, "clusterDomain": "cluster.local"}


def test_bad_dns_fields_are_listed_with_their_paths() -> None:
    with pytest.raises(TopologyError) as refused:
        parse(TOPOLOGY + "dns:\n  enabled: perhaps\n  clusterDomain: Not_A_Domain\n  ttl: 3\n")
    paths = {problem.path for problem in refused.value.problems}
    assert {"dns.enabled", "dns.clusterDomain"} <= paths
    assert any("ttl" in problem.path or "ttl" in problem.message for problem in refused.value.problems)


def test_coredns_image_runs_this_dns_server_with_the_service_account_credentials(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path / "c.log")
    spec = {"name": "coredns", "image": COREDNS_IMAGE, "args": ["-conf", "/etc/coredns/Corefile", "--ttl=7"]}
    with pytest.raises(ContainerError) as refused:
        make_container(spec, netns="ns", hostname="h", log=log, env={})
    assert refused.value.reason == "CreateContainerConfigError" and "ServiceAccount" in refused.value.message
    credentials = tmp_path / "coredns.kubeconfig"
    credentials.write_text("{}")
    container = make_container(spec, netns="ns", hostname="h", log=log, env={}, credentials=credentials)
    assert isinstance(container, ProcessContainer)
    assert container.argv[1:] == ["-m", "control.dns", "--kubeconfig", str(credentials), "--ttl=7"]
    assert "PYTHONPATH" in container.env
