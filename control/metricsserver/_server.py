"""The metrics-server component's HTTPS API, which the apiserver proxies metrics.k8s.io to (the part
of upstream's APIService v1beta1.metrics.k8s.io and its aggregation layer).

Authentication is upstream's request-header scheme for aggregated servers: the caller must present
a client certificate of the cluster CA whose common name is one of ALLOWED_NAMES (the apiserver's
proxy client certificate), and the user it acts for comes in X-Remote-User and X-Remote-Group. The
apiserver has authorized the request with RBAC before it proxies (upstream's metrics-server asks the
apiserver again, with a SubjectAccessReview; kubesim's decides once, in the apiserver).
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from control.api.labels import SelectorError, parse_selector
from control.client import NODES, PODS, Client
from control.metricsserver._core import (
    GROUP,
    VERSION,
    MetricsAPI,
    MetricsNotFound,
    api_group,
    as_table,
    parse_path,
    resource_list,
)

log = logging.getLogger("metrics-server")


class ClientLister:
    """Nodes and pods read from the API with the component's own credentials."""

    def __init__(self, client: Client):
        self.client = client

    async def nodes(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.client.list(NODES, label_selector=label_selector or None))["items"]
        return items

    async def pods(self, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.client.list(
            PODS, namespace=namespace, label_selector=label_selector or None))["items"]
        return items


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return web.Response(status=code, body=json.dumps(body).encode(), content_type="application/json")


def _json(body: Any) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json")


def _caller(request: web.Request) -> str | None:
    """The common name of the verified client certificate, or None without one."""
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (peer or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def make_app(api: MetricsAPI, allowed_names: frozenset[str]) -> web.Application:
    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

    @web.middleware
    async def front_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _caller(request) not in allowed_names or not request.headers.get("X-Remote-User"):
            return _status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    async def handle(request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p][2:]  # after /apis/metrics.k8s.io
        if not parts:
            return _json({"kind": "APIGroup", "apiVersion": "v1", **api_group()})
        if parts == [VERSION]:
            return _json(resource_list())
        found = parse_path(parts[1:]) if parts[0] == VERSION else None
        if found is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if request.method != "GET" or request.query.get("watch", "").lower() in ("1", "true"):
            return _status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        selector = request.query.get("labelSelector")
        try:
            parse_selector(selector or "")
        except SelectorError as exc:
            return _status(400, "BadRequest", str(exc))
        try:
            body = await api.serve(*found, selector)
        except MetricsNotFound as exc:
            return _status(404, "NotFound", str(exc))
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept and "g=meta.k8s.io" in accept:
            return _json(as_table(body, request.query.get("includeObject", "Metadata")))
        return _json(body)

    app = web.Application(middlewares=[front_proxy])
    app.router.add_route("*", f"/apis/{GROUP}", handle)
    app.router.add_route("*", f"/apis/{GROUP}/{{tail:.*}}", handle)
    return app


def server_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Its serving certificate; client certificates required, verified against the cluster CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve(api: MetricsAPI, host: str, port: int, context: ssl.SSLContext,
                allowed_names: frozenset[str]) -> web.AppRunner:
    runner = web.AppRunner(make_app(api, allowed_names), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    log.info("metrics-server serving %s on https://%s:%d", GROUP, host, port)
    return runner
