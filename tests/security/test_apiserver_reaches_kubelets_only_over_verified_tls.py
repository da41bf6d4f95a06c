"""Defect 4, the apiserver's side (`kubectl logs`): it reaches a kubelet only over HTTPS, verifying the
kubelet's serving certificate against the cluster CA and presenting its kubelet client certificate; a
kubelet whose certificate the CA did not sign gets no request. Defect 3 there: the container comes from
the caller's query, so one that is not in the pod's spec is refused before any kubelet is asked."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from control.apiserver.__main__ import KubeletClientConfig, kubelet_logs
from control.apiserver.certs import Issued, issue, make_ca, make_certificates, make_kubelet_certificate
from control.apiserver.errors import APIError
from control.apiserver.registry import Registry
from control.apiserver.resources import BY_KIND
from control.kubelet.server import serve, server_context
from control.store import free_port
from tests.security.kubelet_testlib import POD_LOG, SECRET, kubelet_with_pod

Fetch = Callable[[str, str, dict[str, str]], Awaitable[bytes]]


class OnePodRegistry:
    """The two reads kubelet_logs makes: pod default/web on node-a, and node-a serving its kubelet API
    on 127.0.0.1:PORT (status.daemonEndpoints, as the kubelet reports it)."""

    def __init__(self, port: int) -> None:
        self.pod = {"metadata": {"name": "web", "namespace": "default"},
                    "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "pause"}]}}
        self.node = {"metadata": {"name": "node-a"},
                     "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}

    async def get(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any]:
        if resource is BY_KIND["Pod"] and (namespace, name) == ("default", "web"):
            return self.pod
        if resource is BY_KIND["Node"] and name == "node-a":
            return self.node
        raise APIError(404, "NotFound", f"{name} not found")


def apiserver_client(pki: Path) -> KubeletClientConfig:
    return KubeletClientConfig(str(pki / "apiserver-kubelet-client.crt"), str(pki / "apiserver-kubelet-client.key"),
                               str(pki / "ca.crt"))


def logs_through_a_kubelet(state: Path, serving: Issued, client: KubeletClientConfig | None,
                           query: dict[str, str]) -> bytes:
    """Serve a kubelet with pod default/web over TLS with SERVING, and ask the apiserver's log fetcher
    (with CLIENT's credentials) for that pod's log with QUERY."""
    setup = kubelet_with_pod(state)
    port = free_port()
    fetch = cast(Fetch, kubelet_logs(cast(Registry, OnePodRegistry(port)), client))

    async def run() -> bytes:
        context = server_context(str(serving.cert), str(serving.key), str(state / "pki" / "ca.crt"))
        runner = await serve(setup.kubelet, "127.0.0.1", context, port=port)
        try:
            return await fetch("default", "web", query)
        finally:
            await runner.cleanup()
            await setup.kubelet.client.close()

    return asyncio.run(run())


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_certificates(tmp_path / "pki", addresses=["127.0.0.1"])
    return tmp_path / "pki"


def test_the_apiserver_reads_a_pods_log_from_its_kubelet(pki: Path) -> None:
    serving = make_kubelet_certificate(pki, "node-a", "127.0.0.1")
    assert logs_through_a_kubelet(pki.parent, serving, apiserver_client(pki), {}) == POD_LOG
    assert logs_through_a_kubelet(pki.parent, serving, apiserver_client(pki), {"container": "app"}) == POD_LOG


def test_a_kubelet_certificate_the_cluster_ca_did_not_sign_is_not_trusted(pki: Path, tmp_path: Path) -> None:
    impostor_ca = make_ca(tmp_path / "other.crt", tmp_path / "other.key", "impostor")
    impostor = issue(impostor_ca, tmp_path / "kubelet.crt", tmp_path / "kubelet.key", common_name="system:node:node-a",
                     ip_addresses=("127.0.0.1",), server=True)
    with pytest.raises(APIError) as refused:
        logs_through_a_kubelet(pki.parent, impostor, apiserver_client(pki), {})
    assert refused.value.code == 503
    assert "cannot reach the kubelet of node-a" in refused.value.message
    assert "certificate verify failed: unable to get local issuer certificate" in refused.value.message


def test_a_kubelet_certificate_for_another_address_is_not_trusted(pki: Path) -> None:
    elsewhere = make_kubelet_certificate(pki, "node-a", "172.18.0.9")
    with pytest.raises(APIError) as refused:
        logs_through_a_kubelet(pki.parent, elsewhere, apiserver_client(pki), {})
    assert refused.value.code == 503
    assert "certificate is not valid for '127.0.0.1'" in refused.value.message


@pytest.mark.parametrize("container", ["../../logs/apiserver", "..%2F..%2Flogs%2Fapiserver", "other"])
def test_a_container_not_in_the_pods_spec_is_refused_with_400(pki: Path, container: str) -> None:
    serving = make_kubelet_certificate(pki, "node-a", "127.0.0.1")
    with pytest.raises(APIError) as refused:
        logs_through_a_kubelet(pki.parent, serving, apiserver_client(pki), {"container": container})
    assert (refused.value.code, refused.value.reason) == (400, "BadRequest")
    assert refused.value.message == f"container {container} is not valid for pod web"
    assert SECRET.decode() not in refused.value.message


def test_without_kubelet_client_credentials_no_kubelet_is_asked(pki: Path) -> None:
    serving = make_kubelet_certificate(pki, "node-a", "127.0.0.1")
    with pytest.raises(APIError) as refused:
        logs_through_a_kubelet(pki.parent, serving, None, {})
    assert refused.value.code == 503
    assert "--kubelet-client-certificate" in refused.value.message
