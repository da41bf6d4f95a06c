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

Besides the pod endpoints, /healthz and /pods (the pods this kubelet runs, a PodList), which the
apiserver's nodes/NAME/proxy/PATH reaches (`kubectl get --raw /api/v1/nodes/NODE/proxy/pods`).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from control.kubelet import spdystreams, streaming, streamrelay
from control.kubelet.logs import Limiter, LineDecoder, LogRequestError, log_options, read_log
from control.kubelet.streaming import PodProcessTarget, SessionError, Streams
from control.kubelet.workloads import Container
from control.runtime import RuntimeClient

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


class PodSource(Protocol):
    """What the API serves from: the kubelet's pods (control.kubelet.agent.Kubelet)."""

    def log_source(self, namespace: str, name: str, container: str | None, *,
                   previous: bool = False) -> tuple[Path, Callable[[], bool]]: ...

    def exec_target(self, namespace: str, name: str, container: str | None) -> PodProcessTarget: ...

    def pod_target(self, namespace: str, name: str) -> PodProcessTarget: ...

    def running_container(self, namespace: str, name: str, container: str | None) -> tuple[Any, Container]: ...

    async def runtime_session(self, verb: str, namespace: str, name: str, container: str | None,
                              body: dict[str, Any]) -> tuple[RuntimeClient, str] | None: ...

    def pod_list(self) -> dict[str, Any]: ...

    async def resource_metrics(self) -> str: ...


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


def make_app(source: PodSource) -> web.Application:
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
        try:
            return await handler(request)
        except (LogRequestError, SessionError) as exc:
            return web.Response(status=exc.code, text=exc.message)

    def names(request: web.Request) -> tuple[str, str, str | None]:
        info = request.match_info
        return info["namespace"], info["pod"], info.get("container") or None

    async def container_logs(request: web.Request) -> web.StreamResponse:
        options = log_options(request.query)
        path, ended = source.log_source(*names(request), previous=options.previous)
        data, offset = read_log(path, options)
        limiter = Limiter(options.limit_bytes)
        data = limiter.take(data)
        if not options.follow or limiter.spent:
            return web.Response(body=data, content_type="text/plain")
        # follow: what is there, then what comes, until the container instance is gone or LIMIT is spent
        response = web.StreamResponse(headers={"Content-Type": "text/plain", "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        def done() -> bool:
            # a follower that went away ends the follow too, even while the log is quiet
            transport = request.transport
            return ended() or transport is None or transport.is_closing()

        decoder = LineDecoder()
        try:
            await response.write(data)
            async for chunk in streaming.follow_file(path, offset, done):
                lines = [options.render(line) for line in decoder.feed(chunk) if options.keeps(line)]
                if lines:
                    await response.write(limiter.take(b"".join(lines)))
                if limiter.spent:
                    break
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the follower went away
        return response

    def stream_flags(streams: Streams) -> dict[str, bool]:
        return {"stdin": streams.stdin, "stdout": streams.stdout, "stderr": streams.stderr, "tty": streams.tty}

    async def exec_(request: web.Request) -> web.StreamResponse:
        target = source.exec_target(*names(request))
        streams = Streams.from_query(request.query)
        command = request.query.getall("command", [])
        if not command:
            raise SessionError(400, "you must specify at least 1 command")
        # a container of the runtime: the runtime runs the command (streamrelay), else this process does
        found = await source.runtime_session("Exec", *names(request), {"cmd": command, **stream_flags(streams)})
        if found is not None:
            return await streamrelay.relay(request, *found)
        return await streaming.exec_session(request, target, command, streams)

    async def attach(request: web.Request) -> web.StreamResponse:
        namespace, pod, container = names(request)
        streams = Streams.from_query(request.query)
        _, instance = source.running_container(namespace, pod, container)
        found = await source.runtime_session("Attach", namespace, pod, instance.name, stream_flags(streams))
        if found is not None:
            return await streamrelay.relay(request, *found)
        path, ended = source.log_source(namespace, pod, instance.name)
        stdin = getattr(instance, "stdin", None)
        return await streaming.attach_session(request, path, ended, stdin, streams)

    async def port_forward(request: web.Request) -> web.StreamResponse:
        namespace, pod, _ = names(request)
        target = source.pod_target(namespace, pod)
        found = await source.runtime_session("PortForward", namespace, pod, None, {})
        if found is not None:
            return await streamrelay.relay(request, *found)
        if request.headers.get("Upgrade", "").lower().startswith("spdy/"):
            # the ports come in each stream's headers, not the query
            return await spdystreams.portforward_session(request, target, f"{namespace}/{pod}")
        ports = streaming.parse_ports(request.query.getall("ports", []) + request.query.getall("port", []))
        return await streaming.portforward_session(request, target, f"{namespace}/{pod}", ports)

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def pods(request: web.Request) -> web.StreamResponse:
        # upstream's /pods: the pods this kubelet runs, with the status it makes for them
        return web.json_response(source.pod_list())

    async def metrics_resource(request: web.Request) -> web.StreamResponse:
        # the Prometheus text format's content type, as upstream's endpoint answers
        return web.Response(text=await source.resource_metrics(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    app = web.Application(middlewares=[authn_authz])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/pods", pods)
    app.router.add_get("/metrics/resource", metrics_resource)
    app.router.add_get("/portForward/{namespace}/{pod}", port_forward)
    app.router.add_post("/portForward/{namespace}/{pod}", port_forward)
    for prefix, handler in (("/containerLogs", container_logs), ("/exec", exec_), ("/attach", attach)):
        for path in (f"{prefix}/{{namespace}}/{{pod}}/{{container}}", f"{prefix}/{{namespace}}/{{pod}}"):
            app.router.add_get(path, handler)
            if prefix != "/containerLogs":
                app.router.add_post(path, handler)
    return app


#: seconds the requests in flight get to finish when the kubelet stops
SHUTDOWN_TIMEOUT = 0.5


async def serve(source: PodSource, address: str, context: ssl.SSLContext, port: int = KUBELET_PORT) -> web.AppRunner:
    # A kubelet that stops ends the streams it serves (logs -f, exec, port-forward) instead of waiting
    # aiohttp's default minute for them: the runtime keeps the containers, the clients see the stream end.
    runner = web.AppRunner(make_app(source), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    await web.TCPSite(runner, address, port, ssl_context=context).start()
    return runner
