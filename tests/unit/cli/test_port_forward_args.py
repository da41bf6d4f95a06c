"""`kubesim port-forward`'s arguments: [LOCAL:]REMOTE ports, POD / svc/NAME / deploy/NAME targets, and a
Service port carried to its pod's port (a named targetPort looked up in the pod's container ports)."""

from __future__ import annotations

from typing import Any

import pytest

from kubesim.portforward import (
    PortForwardInputError,
    PortForwardTargetError,
    PortSpec,
    parse_port,
    parse_target,
    pod_port,
    service_port,
)

POD: dict[str, Any] = {"metadata": {"name": "web-1"}, "spec": {"containers": [
    {"name": "a", "ports": [{"name": "http", "containerPort": 8080}]},
    {"name": "b", "ports": [{"name": "metrics", "containerPort": 9090}]}]}}
SERVICE: dict[str, Any] = {"metadata": {"name": "web"}, "spec": {"ports": [
    {"name": "web", "port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 9000}, {"port": 82}]}}


def test_ports_are_read_as_kubectl_reads_them() -> None:
    assert parse_port("8080") == PortSpec(None, "8080")
    assert parse_port("9000:80") == PortSpec(9000, "80")
    assert parse_port(":80") == PortSpec(0, "80") == parse_port("0:80")
    assert parse_port("8080:http") == PortSpec(8080, "http")


@pytest.mark.parametrize("bad", ["", "8080:", "x:80", "70000:80", "8080:0", "8080:99999"])
def test_bad_ports_say_how_to_write_one(bad: str) -> None:
    with pytest.raises(PortForwardInputError, match="port"):
        parse_port(bad)


def test_targets_name_their_kind() -> None:
    assert parse_target("web-1") == ("pod", "web-1")
    assert parse_target("pod/web-1") == ("pod", "web-1")
    assert parse_target("svc/web") == parse_target("service/web") == ("service", "web")
    assert parse_target("deploy/web") == parse_target("deployments/web") == ("deployment", "web")
    with pytest.raises(PortForwardInputError, match="svc/NAME"):
        parse_target("job/x")


def test_a_service_port_goes_to_its_target_port_in_the_pod() -> None:
    assert service_port(SERVICE, POD, "80") == 8080  # named targetPort, found in container a
    assert service_port(SERVICE, POD, "web") == 8080  # the Service port by its name
    assert service_port(SERVICE, POD, "81") == 9000
    assert service_port(SERVICE, POD, "82") == 82  # no targetPort: the port itself
    with pytest.raises(PortForwardTargetError, match="does not have a service port 8080"):
        service_port(SERVICE, POD, "8080")


def test_a_pod_port_is_a_number_or_a_container_ports_name() -> None:
    assert pod_port(POD, "8080") == 8080 and pod_port(POD, "metrics") == 9090
    with pytest.raises(PortForwardTargetError, match="no container port named 'grpc'"):
        pod_port(POD, "grpc")
