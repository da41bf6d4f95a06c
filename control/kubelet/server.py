"""The kubelet API on :10250, over HTTPS only, as upstream's kubelet server with anonymous auth off.

Authentication: a client certificate signed by the cluster CA (the x509 authenticator: CN is the
user, O the groups). A request without one gets 401 Unauthorized.

Authorization mirrors pkg/kubelet/server/auth.go: a request is the verb of its HTTP method on the
`nodes` resource named after this node, with a subresource chosen by path (/stats -> stats,
/metrics -> metrics, /logs -> log, /spec -> spec, /checkpoint -> checkpoint, anything else, such as
/containerLogs, /exec or /portForward, -> proxy). Upstream asks the apiserver (SubjectAccessReview);
kubesim's kubelet decides locally with the rules of upstream's default RBAC for these identities:
system:masters may do anything, and the ClusterRole system:kubelet-api-admin (bound by kubeadm to
kube-apiserver-kubelet-client) allows every verb on nodes/proxy, log, stats, metrics and spec.
Authenticated but not allowed: 403 Forbidden with upstream's wording.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from control.kubelet.logs import LogRequestError

KUBELET_PORT = 10250

#: upstream's path -> subresource table (pkg/kubelet/server/auth.go GetRequestAttributes)
_SUBRESOURCES = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"), ("/spec", "spec"),
                 ("/checkpoint", "checkpoint"))
#: apiserver/pkg/endpoints/request: the verb of a non-resource-style request by its method
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
#: plugin/pkg/auth/authorizer/rbac/bootstrappolicy: system:kubelet-api-admin's node subresources
_KUBELET_API_ADMIN = frozenset({"proxy", "log", "stats", "metrics", "spec"})
#: the users kubeadm binds to system:kubelet-api-admin
KUBELET_API_ADMIN_USERS = frozenset({"kube-apiserver-kubelet-client"})


class LogSource(Protocol):
    async def container_log(self, namespace: str, name: str, container: str | None,
                            tail: int | None) -> bytes: ...


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...]


def _is_subpath(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def subresource_for(path: str) -> str:
    """The `nodes` subresource a kubelet API path is authorized as."""
    return next((sub for prefix, sub in _SUBRESOURCES if _is_subpath(path, prefix)), "proxy")


def verb_for(method: str) -> str:
    return _VERBS.get(method.upper(), method.lower())


def allowed(caller: Caller, verb: str, subresource: str) -> bool:
    if "system:masters" in caller.groups:
        return True
    return caller.name in KUBELET_API_ADMIN_USERS and subresource in _KUBELET_API_ADMIN


def caller_of(peercert: dict[str, Any] | None) -> Caller | None:
    """The user a verified client certificate names (ssl's decoded form), or None without one."""
    if not peercert:
        return None
    attributes = [pair for rdn in peercert.get("subject", ()) for pair in rdn]
    names = [value for key, value in attributes if key == "commonName"]
    if not names:
        return None
    return Caller(names[0], tuple(value for key, value in attributes if key == "organizationName"))


def server_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """TLS for the kubelet API: its serving certificate, and client certificates verified against the
    cluster CA when presented (one not presented leaves the request anonymous, answered 401)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(source: LogSource) -> web.Application:
    """The kubelet API's routes behind its authentication and authorization."""

    @web.middleware
    async def authn_authz(request: web.Request, handler: Handler) -> web.StreamResponse:
        caller = caller_of(request.transport.get_extra_info("peercert") if request.transport else None)
        if caller is None:
            return web.Response(status=401, text="Unauthorized")
        verb, subresource = verb_for(request.method), subresource_for(request.path)
        if not allowed(caller, verb, subresource):
            return web.Response(status=403, text=f"Forbidden (user={caller.name}, verb={verb}, resource=nodes, "
                                                 f"subresource={subresource})")
        return await handler(request)

    async def container_logs(request: web.Request) -> web.Response:
        tail = request.query.get("tailLines")
        try:
            data = await source.container_log(request.match_info["namespace"], request.match_info["pod"],
                                              request.match_info.get("container") or None,
                                              int(tail) if tail and tail.isdigit() else None)
        except LogRequestError as exc:
            return web.Response(status=exc.code, text=exc.message)
        return web.Response(body=data, content_type="text/plain")

    app = web.Application(middlewares=[authn_authz])
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    app.router.add_get("/containerLogs/{namespace}/{pod}", container_logs)
    return app


async def serve(source: LogSource, address: str, context: ssl.SSLContext, port: int = KUBELET_PORT) -> web.AppRunner:
    runner = web.AppRunner(make_app(source), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port, ssl_context=context).start()
    return runner
