"""nodes/NAME/proxy/PATH: the apiserver's node proxy carries a request to the node's kubelet API (a
real kubelet server over TLS on loopback, the cluster CA's certificates, the apiserver's kubelet
client certificate) and passes the answer back as it comes: status, content type, body, a followed
log line by line; an upgrade is refused. And the path is the one upstream routes (the node's name, then PATH)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
from control.runtime.crilog import cri_line
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
    """The kubelet's pods: one, default/web, whose container app logs to LOG until ENDED."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.ended = False

    def pod_list(self) -> dict[str, Any]:
        return PODS

    def log_source(self, namespace: str, name: str, container: str | None, *,
                   previous: bool = False) -> tuple[Path, Callable[[], bool]]:
        assert (namespace, name, container) == ("default", "web", "app")
        return self.log, lambda: self.ended


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
        pods = Pods(tmp_path / "app.log")
        pods.log.write_bytes(cri_line("stdout", b"first"))
        kubelet = await serve(cast(PodSource, pods), "127.0.0.1", context, port=port)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        try:
            async with TestClient(TestServer(app)) as client:
                healthz = await client.get("/api/v1/nodes/node-a/proxy/healthz")
                assert (healthz.status, await healthz.text()) == (200, "ok")
                listed = await client.get("/api/v1/nodes/node-a/proxy/pods")
                assert listed.status == 200 and listed.content_type == "application/json"
                assert await listed.json() == PODS
                missing = await client.get("/api/v1/nodes/node-a/proxy/no-such-path")
                assert missing.status == 404  # the kubelet's answer, passed on
                upgrade = await client.get("/api/v1/nodes/node-a/proxy/exec/default/web/app",
                                           headers={"Upgrade": "websocket", "Connection": "Upgrade"})
                assert upgrade.status == 400 and "carries no protocol upgrade" in await upgrade.text()
                # a followed log streams through: each line as it comes, the end when the kubelet ends it
                follow = await client.get("/api/v1/nodes/node-a/proxy/containerLogs/default/web/app",
                                          params={"follow": "true"})
                assert follow.status == 200
                assert await follow.content.readline() == b"first\n"
                with open(pods.log, "ab") as handle:
                    handle.write(cri_line("stdout", b"second"))
                assert await follow.content.readline() == b"second\n"
                pods.ended = True
                assert await follow.read() == b""
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
