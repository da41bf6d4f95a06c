"""`kubesim port-forward`'s arguments: [LOCAL:]REMOTE ports, POD / svc/NAME / deploy/NAME targets, and a
Service port carried to its pod's port (a named targetPort looked up in the pod's container ports)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubesim.errors import PortForwardInputError, PortForwardTargetError
from kubesim.portforward import (
    PortSpec,
    parse_port,
    parse_target,
    pod_port,
    resolve,
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


class _Cluster:
    """What resolve() reads of the API: objects by (plural, name), pods by label selector."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]], pods: list[dict[str, Any]]):
        self.objects, self.pods = objects, pods
        self.selectors: list[str] = []

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        return self.objects[(resource.plural, name)]

    async def list(self, resource: Any, *, namespace: str | None = None, label_selector: str = "") -> dict[str, Any]:
        self.selectors.append(label_selector)
        return {"items": self.pods}


def _pod(name: str, phase: str, start: str) -> dict[str, Any]:
    return {**POD, "metadata": {"name": name}, "status": {"phase": phase, "startTime": start}}


def test_a_deployment_or_service_stands_for_its_longest_running_pod() -> None:
    deployment = {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}
    service = {**SERVICE, "spec": {**SERVICE["spec"], "selector": {"app": "web"}}}
    pods = [_pod("web-new", "Running", "2026-01-02T00:00:00Z"), _pod("web-old", "Running", "2026-01-01T00:00:00Z"),
            _pod("web-pending", "Pending", "")]
    cluster = _Cluster({("deployments", "web"): deployment, ("services", "web"): service}, pods)
    specs = [parse_port("9000:80"), parse_port("8080")]
    assert asyncio.run(resolve(cluster, "default", "deploy/web", specs)) == (  # type: ignore[arg-type]
        "web-old", [(9000, 80), (None, 8080)])
    assert asyncio.run(resolve(cluster, "default", "svc/web", [parse_port(":80")])) == (  # type: ignore[arg-type]
        "web-old", [(0, 8080)])
    assert cluster.selectors == ["app=web", "app=web"]


def test_a_pod_that_is_not_running_or_a_selector_without_pods_is_refused() -> None:
    cluster = _Cluster({("pods", "p"): _pod("p", "Pending", ""),
                        ("deployments", "d"): {"metadata": {"name": "d"},
                                               "spec": {"selector": {"matchLabels": {"app": "d"}}}}}, [])
    with pytest.raises(PortForwardTargetError, match=r"pod is not running\. Current status=Pending"):
        asyncio.run(resolve(cluster, "default", "p", [parse_port("80")]))  # type: ignore[arg-type]
    with pytest.raises(PortForwardTargetError, match="deployment d has no running pod"):
        asyncio.run(resolve(cluster, "default", "deploy/d", [parse_port("80")]))  # type: ignore[arg-type]
