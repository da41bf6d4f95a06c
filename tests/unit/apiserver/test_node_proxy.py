"""nodes/NAME/proxy/PATH: the apiserver's node proxy carries a request to the node's kubelet API (a
real kubelet server over TLS on loopback, the cluster CA's certificates, the apiserver's kubelet
client certificate) and passes the answer back as it comes: status, content type, body; an upgrade
is refused. And the path is the one upstream routes (the node's name, then PATH)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from control.apiserver.certs import make_certificates, make_kubelet_certificate
from control.apiserver.errors import APIError
from control.apiserver.kubeletproxy import KubeletClientConfig, KubeletProxy
from control.apiserver.registry import Registry
from control.apiserver.resources import BY_KIND
from control.apiserver.server import NODE_PROXY
from control.kubelet.server import PodSource, serve, server_context
from control.store import free_port

PODS = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [{"metadata": {"name": "web"}}]}


class OneNode:
    def __init__(self, port: int) -> None:
        self.node = {"metadata": {"name": "node-a"},
                     "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}

    async def get(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any]:
        assert resource is BY_KIND["Node"] and name == "node-a"
        return self.node


class Pods:
    def pod_list(self) -> dict[str, Any]:
        return PODS


def test_the_node_proxy_carries_requests_to_the_kubelet_api_and_passes_its_answers(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_certificates(pki, addresses=["127.0.0.1"])
    serving = make_kubelet_certificate(pki, "node-a", "127.0.0.1")
    port = free_port()
    proxy = KubeletProxy(cast(Registry, OneNode(port)), KubeletClientConfig(
        str(pki / "apiserver-kubelet-client.crt"), str(pki / "apiserver-kubelet-client.key"), str(pki / "ca.crt")))

    async def handler(request: web.Request) -> web.StreamResponse:
        match = NODE_PROXY.fullmatch(request.path)
        assert match is not None
        try:
            return await proxy.node_proxy(request, match["node"], match["path"] or "/")
        except APIError as exc:  # as the apiserver's error middleware answers it
            return web.json_response(exc.status(), status=exc.code)

    async def main() -> None:
        context = server_context(str(serving.cert), str(serving.key), str(pki / "ca.crt"))
        kubelet = await serve(cast(PodSource, Pods()), "127.0.0.1", context, port=port)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        try:
            async with TestClient(TestServer(app)) as client:
                healthz = await client.get("/api/v1/nodes/node-a/proxy/healthz")
                assert (healthz.status, await healthz.text()) == (200, "ok")
                pods = await client.get("/api/v1/nodes/node-a/proxy/pods")
                assert pods.status == 200 and pods.content_type == "application/json"
                assert await pods.json() == PODS
                missing = await client.get("/api/v1/nodes/node-a/proxy/no-such-path")
                assert missing.status == 404  # the kubelet's answer, passed on
                upgrade = await client.get("/api/v1/nodes/node-a/proxy/exec/default/web/app",
                                           headers={"Upgrade": "websocket", "Connection": "Upgrade"})
                assert upgrade.status == 400 and "carries no protocol upgrade" in await upgrade.text()
        finally:
            await kubelet.cleanup()

    asyncio.run(main())


def test_the_proxy_path_is_the_nodes_name_then_the_kubelet_path() -> None:
    assert NODE_PROXY.fullmatch("/api/v1/nodes/worker-1/proxy/pods")["path"] == "/pods"  # type: ignore[index]
    assert NODE_PROXY.fullmatch("/api/v1/nodes/worker-1/proxy")["path"] is None  # type: ignore[index]
    dotted = NODE_PROXY.fullmatch("/api/v1/nodes/w.example/proxy/stats/summary")
    assert dotted is not None and (dotted["node"], dotted["path"]) == ("w.example", "/stats/summary")
    for other in ("/api/v1/nodes/worker-1", "/api/v1/nodes/worker-1/status", "/api/v1/nodes/Bad_Name/proxy/x",
                  "/api/v1/namespaces/default/pods/web/proxy/x"):
        assert NODE_PROXY.fullmatch(other) is None
