"""metrics.k8s.io in the apiserver, the narrow part of upstream's aggregation layer that `kubectl top` needs.

Upstream registers metrics-server as the APIService v1beta1.metrics.k8s.io, and the apiserver's
aggregator lists the group in discovery and proxies its requests to the service, as the
authenticated user (X-Remote-User / X-Remote-Group, with the apiserver's proxy client certificate).
Here the registration is the apiserver's configuration (MetricsServerConfig: the service's URL, the
CA that signed its serving certificate, and the proxy client certificate), not an APIService object;
requests are authorized with RBAC here and then proxied (MetricsProxy). A metrics-server that does
not answer is upstream's 503.

Without a metrics-server configured, the same core (control.metricsserver.MetricsAPI) serves the
group in this process from the registry (RegistryLister): what unit tests and an apiserver run
alone use.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from control.apiserver.auth import User
from control.apiserver.registry import ListOptions, Registry
from control.apiserver.resources import BY_KIND
from control.metricsserver import (
    GROUP,
    VERSION,
    MetricsAPI,
    MetricsNotFound,
    api_group,
    as_table,
    parse_path,
    resource_list,
)

__all__ = ["GROUP", "VERSION", "MetricsAPI", "MetricsNotFound", "MetricsProxy", "MetricsServerConfig",
           "RegistryLister", "api_group", "as_table", "parse_path", "resource_list"]

#: the proxied request's timeout: a first request waits a second for its second scrape
PROXY_TIMEOUT = 30.0


class RegistryLister:
    """Nodes and pods from the apiserver's own registry."""

    def __init__(self, registry: Registry):
        self.registry = registry

    async def nodes(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.registry.list_objects(
            BY_KIND["Node"], None, ListOptions(label_selector=label_selector)))["items"]
        return items

    async def pods(self, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.registry.list_objects(
            BY_KIND["Pod"], namespace, ListOptions(label_selector=label_selector)))["items"]
        return items


@dataclass(frozen=True)
class MetricsServerConfig:
    """The registration: where v1beta1.metrics.k8s.io is served (URL, its serving certificate's CA), and the
    proxy client certificate the apiserver presents (upstream's --proxy-client-cert-file / -key-file)."""

    url: str
    certificate_authority: str
    proxy_certificate: str
    proxy_key: str

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.certificate_authority)
        context.load_cert_chain(self.proxy_certificate, self.proxy_key)
        return context


def _unavailable() -> web.Response:
    # kube-aggregator's words for an APIService whose service does not answer
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 503,
            "reason": "ServiceUnavailable", "message": "the server is currently unable to handle the request"}
    return web.json_response(body, status=503)


class MetricsProxy:
    def __init__(self, config: MetricsServerConfig):
        self.config = config
        self.context = config.ssl_context()

    async def forward(self, user: User, path: str, query: Mapping[str, str], headers: Mapping[str, str]
                      ) -> web.Response:
        """PATH (an /apis/metrics.k8s.io path, already authorized for USER) asked of the metrics-server."""
        sent = [("X-Remote-User", user.name), *(("X-Remote-Group", g) for g in user.groups)]
        if "Accept" in headers:
            sent.append(("Accept", headers["Accept"]))
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT)) as session, \
                    session.get(self.config.url.rstrip("/") + path, params=dict(query), headers=sent,
                                ssl=self.context) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body,
                                    content_type=answer.content_type or "application/json")
        except (aiohttp.ClientError, TimeoutError, OSError):
            return _unavailable()
