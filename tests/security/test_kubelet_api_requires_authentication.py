"""Defects 3 and 4 at the kubelet API itself (HTTPS on loopback, a real kubelet's log reading): without
a client certificate it answers 401, with one the cluster CA signed for an identity upstream's RBAC does
not let use the kubelet API 403, with the apiserver's kubelet client certificate the pod's log; and a
path that climbs out of the pod (`..%2F`) reads nothing but gets 400."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from control.apiserver.certs import cluster_ca, issue, make_ca, make_certificates, make_kubelet_certificate
from control.kubelet.server import serve, server_context, subresource_for, verb_for
from control.store import free_port
from tests.security.kubelet_testlib import POD_LOG, SECRET, kubelet_with_pod

LOGS = "/containerLogs/default/web/app"


def client_context(pki: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


def get_all(state: Path, requests: list[tuple[str, ssl.SSLContext]]) -> list[tuple[int, bytes]]:
    """Serve a kubelet with one pod on 127.0.0.1 and GET each (path, client TLS context) from it."""
    setup = kubelet_with_pod(state)
    pki = state / "pki"
    serving = make_kubelet_certificate(pki, "node-a", "127.0.0.1")
    port = free_port()

    async def run() -> list[tuple[int, bytes]]:
        runner = await serve(setup.kubelet, "127.0.0.1", server_context(str(serving.cert), str(serving.key),
                                                                        str(pki / "ca.crt")), port=port)
        answers = []
        try:
            async with aiohttp.ClientSession() as session:
                for path, context in requests:
                    async with session.get(f"https://127.0.0.1:{port}{path}", ssl=context) as response:
                        answers.append((response.status, await response.read()))
        finally:
            await runner.cleanup()
            await setup.kubelet.client.close()
        return answers

    return asyncio.run(run())


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_certificates(tmp_path / "pki", addresses=["127.0.0.1"])
    return tmp_path / "pki"


def apiserver_client(pki: Path) -> ssl.SSLContext:
    return client_context(pki, pki / "apiserver-kubelet-client.crt", pki / "apiserver-kubelet-client.key")


def test_anonymous_requests_get_401(pki: Path) -> None:
    [(status, body)] = get_all(pki.parent, [(LOGS, client_context(pki))])
    assert (status, body) == (401, b"Unauthorized")


def test_a_node_identity_is_authenticated_but_forbidden(pki: Path) -> None:
    node = issue(cluster_ca(pki), pki / "n.crt", pki / "n.key", common_name="system:node:worker-1",
                 organizations=("system:nodes",), client=True)
    [(status, body)] = get_all(pki.parent, [(LOGS, client_context(pki, node.cert, node.key))])
    assert status == 403
    assert body == b"Forbidden (user=system:node:worker-1, verb=get, resource=nodes, subresource=proxy)"


def test_a_certificate_of_another_ca_does_not_get_in(pki: Path, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "o.crt", tmp_path / "o.key", "other")
    stranger = issue(other, tmp_path / "s.crt", tmp_path / "s.key", common_name="kube-apiserver-kubelet-client",
                     organizations=("system:masters",), client=True)
    with pytest.raises(aiohttp.ClientError):
        get_all(pki.parent, [(LOGS, client_context(pki, stranger.cert, stranger.key))])


def test_the_apiserver_reads_the_pods_log_and_nothing_outside_it(pki: Path) -> None:
    client = apiserver_client(pki)
    answers = get_all(pki.parent, [
        (LOGS, client),
        ("/containerLogs/default/web/..%2F..%2F..%2F..%2Flogs%2Fapiserver", client),
        ("/containerLogs/default/web/..%2F..%2Flogs%2Fapiserver", client),
        ("/containerLogs/..%2F..%2F..%2F..%2Flogs/web/apiserver", client),
        ("/containerLogs/default/web/app?tailLines=0", client),
    ])
    assert answers[0] == (200, POD_LOG)
    for status, body in answers[1:4]:
        assert status == 400
        assert SECRET not in body
    assert answers[4] == (200, b"")


@pytest.mark.parametrize(("path", "subresource"), [
    ("/containerLogs/default/web/app", "proxy"), ("/exec/default/web/app", "proxy"), ("/run/x", "proxy"),
    ("/logs", "log"), ("/logs/messages", "log"), ("/logsx", "proxy"), ("/stats/summary", "stats"),
    ("/metrics", "metrics"), ("/metrics/cadvisor", "metrics"), ("/spec", "spec"), ("/checkpoint/a/b/c", "checkpoint"),
    ("/pods", "proxy"), ("/healthz", "proxy"),
])
def test_paths_map_to_upstreams_node_subresources(path: str, subresource: str) -> None:
    assert subresource_for(path) == subresource


def test_methods_map_to_verbs() -> None:
    assert [verb_for(m) for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")] == [
        "get", "get", "create", "update", "patch", "delete"]
