"""The apiserver's way to a pod's kubelet, for the pod subresources the kubelet serves: `log` (with
follow), and `exec` / `attach` / `portforward` over WebSocket or SPDY/3.1; and to a node's kubelet API
for `nodes/NAME/proxy/PATH` (node_proxy).

As upstream's apiserver does (pkg/registry/core/pod/strategy.go LogLocation, ExecLocation,
AttachLocation), the pod and its container are checked here, the kubelet found from the pod's node
(its InternalIP and the port it reports), and the request carried to the kubelet API over HTTPS with
the apiserver's kubelet client certificate. exec and attach are relayed frame by frame between the
client's WebSocket and one opened to the kubelet with the subprotocol the kubelet chose, so that the
session's end (the error channel's Status, then the close) reaches the client as the kubelet sent it.
A SPDY/3.1 upgrade (kubectl before 1.30, and port-forward) is passed to the kubelet as it came, and on
its 101 the two upgraded connections are spliced byte for byte (upstream's UpgradeAwareHandler);
port-forward's SPDY tunnelled in a WebSocket (kubectl 1.31 on) is unwrapped here into plain SPDY.

Errors are Status objects with upstream's wording: 400 for a container that is not the pod's, or a pod
without a node; the kubelet's own refusal (`container not found ("c")`, 404) passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from control.api import httpupgrade
from control.api import remotecommand as rc
from control.apiserver import errors
from control.apiserver.errors import APIError
from control.apiserver.registry import Registry
from control.apiserver.resources import BY_KIND
from control.runtime.crilog import parse_rfc3339

KUBELET_PORT = 10250
#: seconds to reach a kubelet; a followed log or a session then lasts as long as it lasts
CONNECT_TIMEOUT = 10.0
#: the log options carried to the kubelet (PodLogOptions' query form)
LOG_OPTIONS = ("sinceSeconds", "sinceTime", "timestamps", "tailLines", "limitBytes", "previous", "follow")
#: kubectl 1.31 on: port-forward's SPDY tunnelled through a WebSocket (client-go's portforward tunneling)
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
PORT_FORWARD_SPDY = "portforward.k8s.io"
#: what of a nodes/proxy request and of the kubelet's answer is passed on (not the caller's credentials,
#: not hop-by-hop headers)
PROXIED_REQUEST_HEADERS = frozenset({"accept", "accept-encoding", "content-type", "user-agent"})
PROXIED_RESPONSE_HEADERS = frozenset({"content-type", "content-encoding", "cache-control", "x-content-type-options"})
#: the kubelet's answer to a session request without an upgrade (upstream's wording)
UPGRADE_REQUIRED = "Upgrade request required"


@dataclass(frozen=True)
class KubeletClientConfig:
    """How the apiserver reaches kubelet APIs: upstream's --kubelet-client-certificate / -key and
    --kubelet-certificate-authority. Kubelets are reached over HTTPS only, their serving certificate
    verified against the CA (it names the node's IP), the apiserver authenticated by its client cert."""

    certificate: str
    key: str
    certificate_authority: str

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.certificate_authority)
        context.load_cert_chain(self.certificate, self.key)
        return context


def container_of(pod: dict[str, Any], requested: str) -> str:
    """The container a request is for: the one named, which must be in the pod's spec (any of its
    containers, init and ephemeral ones too), or the pod's only one (upstream's validateContainer in
    pkg/registry/core/pod/strategy.go)."""
    name = pod["metadata"]["name"]
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if not requested:
        if len(containers) != 1:
            raise APIError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                                              f"[{' '.join(str(c) for c in containers)}]")
        return str(containers[0])
    spec = pod.get("spec") or {}
    # any container of the pod may be named: init and ephemeral ones too (upstream's AllContainers)
    every = {c.get("name") for group in ("containers", "initContainers", "ephemeralContainers")
             for c in spec.get(group) or [] if isinstance(c, dict)}
    if requested not in every:
        raise APIError(400, "BadRequest", f"container {requested} is not valid for pod {name}")
    return requested


def kubelet_port(node: dict[str, Any]) -> int:
    """The port the node's kubelet reports serving its API on, or the default (upstream's
    NodeConnectionInfoGetter in pkg/kubelet/client/kubelet_client.go)."""
    endpoint = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    port = endpoint.get("Port")
    return port if isinstance(port, int) and 0 < port < 65536 else KUBELET_PORT


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def exec_params(query: Mapping[str, str], *, attach: bool) -> list[tuple[str, str]]:
    """PodExecOptions / PodAttachOptions as the kubelet API's query (upstream's streamParams)."""
    params: list[tuple[str, str]] = []
    if not attach:
        getall = getattr(query, "getall", None)
        commands = getall("command", []) if getall else ([query["command"]] if "command" in query else [])
        if not commands:
            raise APIError(400, "BadRequest", "you must specify at least 1 command")
        params += [("command", c) for c in commands]
    flags = {name: _true(query.get(name)) for name in ("stdin", "stdout", "stderr", "tty")}
    if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
        raise APIError(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
    for name, kubelet_name in (("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty")):
        if flags[name]:
            params.append((kubelet_name, "1"))
    return params


def portforward_params(query: Mapping[str, str], *, required: bool = True) -> list[tuple[str, str]]:
    """PodPortForwardOptions' ports (repeated, or comma-separated) as the kubelet API's query. REQUIRED:
    over WebSocket's channels they are the session's ports; over SPDY each stream names its own."""
    getall = getattr(query, "getall", None)
    values = getall("ports", []) if getall else ([query["ports"]] if "ports" in query else [])
    ports = [item.strip() for value in values for item in value.split(",") if item.strip()]
    if not ports:
        if not required:
            return []
        raise APIError(400, "BadRequest", "a port-forward names at least one port: ?ports=8080")
    for port in ports:
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise APIError(400, "BadRequest", f"invalid port {port!r}: a port is a number in [1, 65535]")
    return [("ports", ",".join(ports))]


def check_log_options(name: str, query: Mapping[str, str]) -> None:
    """PodLogOptions as upstream's ValidatePodLogOptions checks them (422 naming the field), and a
    sinceTime that is not an RFC3339 time (400, as upstream's query decoding)."""
    causes = []
    for option, least in (("tailLines", 0), ("limitBytes", 1), ("sinceSeconds", 1)):
        value = query.get(option)
        if value is None:
            continue
        try:
            number = int(value)
        except ValueError:
            causes.append({"reason": "FieldValueInvalid", "field": option,
                           "message": f"Invalid value: {value!r}: must be an integer"})
            continue
        if number < least:
            bound = "greater than or equal to 0" if least == 0 else "greater than 0"
            causes.append({"reason": "FieldValueInvalid", "field": option,
                           "message": f"Invalid value: {number}: must be {bound}"})
    if "sinceSeconds" in query and "sinceTime" in query:
        causes.append({"reason": "FieldValueForbidden", "field": "",
                       "message": "at most one of `sinceTime` or `sinceSeconds` may be specified"})
    if causes:
        raise errors.invalid("", "PodLogOptions", name, causes)
    since_time = query.get("sinceTime")
    if since_time:
        try:
            parse_rfc3339(since_time)
        except ValueError:
            raise APIError(400, "BadRequest", f"sinceTime: Invalid value: {since_time!r}: must be an RFC3339 "
                                              "time, such as 2024-01-02T15:04:05Z") from None


class KubeletProxy:
    def __init__(self, registry: Registry, kubelets: KubeletClientConfig | None):
        self.registry = registry
        self.context = kubelets.ssl_context() if kubelets else None

    @property
    def _ssl(self) -> ssl.SSLContext:
        assert self.context is not None  # _location refused the request without one
        return self.context

    async def _location(self, namespace: str, name: str, kind: str, container: str) -> tuple[str, str]:
        """The kubelet API URL of KIND (containerLogs, exec, attach: for a container of a pod; portForward:
        for the pod), and the pod's node."""
        pod = await self.registry.get(BY_KIND["Pod"], namespace, name)
        chosen = container_of(pod, container) if kind != "portForward" else None
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise APIError(400, "BadRequest", f"pod {name} does not have a host assigned")
        # every part was checked above (stored names, a container of the pod): no path of the caller's
        path = f"/{kind}/{namespace}/{name}" + (f"/{chosen}" if chosen else "")
        return await self._kubelet_url(node_name, path), node_name

    async def _kubelet_url(self, node_name: str, path: str) -> str:
        """The URL of PATH on the kubelet API of NODE_NAME (its InternalIP and the port it reports)."""
        if self.context is None:
            raise APIError(503, "ServiceUnavailable", "the apiserver has no kubelet client credentials: start it "
                                                      "with --kubelet-client-certificate, --kubelet-client-key and "
                                                      "--kubelet-certificate-authority")
        node = await self.registry.get(BY_KIND["Node"], None, node_name)
        address = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"), None)
        if address is None:
            raise APIError(503, "ServiceUnavailable", f"node {node_name} has no InternalIP")
        return f"https://{address}:{kubelet_port(node)}{path}"

    # -- nodes/NAME/proxy/PATH --------------------------------------------------------------------------

    async def node_proxy(self, request: web.Request, node_name: str, path: str) -> web.StreamResponse:
        """REQUEST carried to PATH (with its query and body) on the kubelet API of NODE_NAME as the
        apiserver's kubelet client, and the kubelet's answer passed back as it comes (a followed log
        streams), as upstream's node proxy REST does. Upgrades are not carried (exec and port-forward go
        through pods/exec and pods/portforward)."""
        if request.headers.get("Upgrade"):
            raise APIError(400, "BadRequest", f"nodes/{node_name}/proxy carries no protocol upgrade here: use the "
                                              "pod's exec, attach or portforward subresource")
        url = await self._kubelet_url(node_name, path)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in PROXIED_REQUEST_HEADERS}
        async with self._session(total=None) as session:
            try:
                kubelet = await session.request(request.method, url, params=list(request.query.items()),
                                                data=body or None, headers=headers, ssl=self._ssl,
                                                allow_redirects=False)
            except aiohttp.ClientError as exc:
                raise self._unreachable(node_name, exc) from None
            async with kubelet:
                return await _stream_through(request, kubelet, web.StreamResponse(
                    status=kubelet.status, reason=kubelet.reason, headers={
                        k: v for k, v in kubelet.headers.items() if k.lower() in PROXIED_RESPONSE_HEADERS}))

    @staticmethod
    def _session(*, total: float | None) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total, sock_connect=CONNECT_TIMEOUT))

    @staticmethod
    def _refusal(status: int, body: bytes) -> APIError:
        text = body.decode(errors="replace").strip() or f"the kubelet answered {status}"
        reason = {400: "BadRequest", 404: "NotFound", 403: "Forbidden"}.get(status, "InternalError")
        return APIError(status if status in (400, 403, 404) else 500, reason, text)

    # -- log ------------------------------------------------------------------------------------------

    @staticmethod
    def _unreachable(node: str, exc: Exception) -> APIError:
        return APIError(503, "ServiceUnavailable", f"cannot reach the kubelet of {node}: {exc}")

    async def read_log(self, namespace: str, name: str, query: Mapping[str, str]) -> bytes:
        """A container's log as it is now (PodLogOptions in QUERY, follow aside)."""
        url, node = await self._location(namespace, name, "containerLogs", query.get("container") or "")
        params = {k: v for k, v in query.items() if k in LOG_OPTIONS and k != "follow"}
        try:
            async with self._session(total=CONNECT_TIMEOUT) as session, \
                    session.get(url, params=params, ssl=self._ssl) as kubelet:
                body = await kubelet.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._unreachable(node, exc) from None
        if kubelet.status != 200:
            raise self._refusal(kubelet.status, body)
        return body

    async def logs(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        query = request.query
        check_log_options(name, query)
        if not _true(query.get("follow")):
            return web.Response(body=await self.read_log(namespace, name, query), content_type="text/plain")
        url, node = await self._location(namespace, name, "containerLogs", query.get("container") or "")
        params = {k: v for k, v in query.items() if k in LOG_OPTIONS}
        async with self._session(total=None) as session:
            try:
                kubelet = await session.get(url, params=params, ssl=self._ssl)
            except aiohttp.ClientError as exc:
                raise self._unreachable(node, exc) from None
            async with kubelet:
                if kubelet.status != 200:
                    raise self._refusal(kubelet.status, await kubelet.read())
                # what the kubelet sends as it comes, until it ends the log (the container is gone) or the
                # client goes away
                return await _stream_through(request, kubelet, web.StreamResponse(
                    headers={"Content-Type": "text/plain", "Cache-Control": "no-cache"}))

    # -- exec, attach ---------------------------------------------------------------------------------

    async def stream(self, request: web.Request, namespace: str, name: str, subresource: str) -> web.StreamResponse:
        query = request.query
        served: tuple[str, ...]
        upgrade = request.headers.get("Upgrade", "")
        offered = [p.strip() for value in request.headers.getall("Sec-WebSocket-Protocol", [])
                   for p in value.split(",") if p.strip()]
        spdy = upgrade.lower().startswith("spdy/") or SPDY_TUNNEL in offered
        if subresource == "portforward":
            params, served = portforward_params(query, required=not spdy), rc.PORT_FORWARD_PROTOCOLS
            url, node = await self._location(namespace, name, "portForward", "")
        else:
            params, served = exec_params(query, attach=subresource == "attach"), rc.PROTOCOLS
            url, node = await self._location(namespace, name, subresource, query.get("container") or "")
        if upgrade.lower().startswith("spdy/"):
            protocols = [p.strip() for value in request.headers.getall("X-Stream-Protocol-Version", [])
                         for p in value.split(",") if p.strip()]
            backend = await self._upgrade_kubelet(request, url, node, params, protocols)
            answer = {"Connection": "Upgrade", "Upgrade": backend.headers.get("upgrade", "SPDY/3.1")}
            if "x-stream-protocol-version" in backend.headers:
                answer["X-Stream-Protocol-Version"] = backend.headers["x-stream-protocol-version"]
            try:
                response, upgraded = await httpupgrade.take_over(request, answer)
            except BaseException:
                backend.close()
                raise
            await httpupgrade.splice(upgraded, backend)
            return response
        if upgrade.lower() == "websocket" and subresource == "portforward" and SPDY_TUNNEL in offered:
            return await self._tunnel(request, url, node, params)
        if upgrade.lower() != "websocket":
            refused = await self._refusal_of(url, node, params)
            if refused is not None:
                raise refused
            if not upgrade:
                raise APIError(400, "BadRequest", UPGRADE_REQUIRED)
            raise APIError(400, "BadRequest", f"{subresource} is served over WebSocket and SPDY/3.1: upgrading to "
                                              f"{upgrade} is not supported")
        if rc.negotiate(offered, served) is None:
            raise APIError(400, "BadRequest", f"none of the offered subprotocols {offered or '(none)'} is served; "
                                              f"use one of {', '.join(served)}")
        session = self._session(total=None)
        try:
            try:
                kubelet = await session.ws_connect(url, params=params, protocols=offered, ssl=self._ssl,
                                                   heartbeat=None, max_msg_size=0, method=request.method)
            except aiohttp.WSServerHandshakeError as exc:
                raise (await self._refusal_of(url, node, params)) or self._refusal(exc.status, b"") from None
            except aiohttp.ClientError as exc:
                raise self._unreachable(node, exc) from None
            async with kubelet:
                client = web.WebSocketResponse(protocols=(kubelet.protocol,) if kubelet.protocol else (),
                                               heartbeat=None, max_msg_size=0, autoping=False)
                await client.prepare(request)
                await _relay(client, kubelet)
                return client
        finally:
            await session.close()

    async def _upgrade_kubelet(self, request: web.Request, url: str, node: str, params: list[tuple[str, str]],
                               protocols: list[str]) -> httpupgrade.Upgraded:
        """The kubelet's connection upgraded to SPDY/3.1 with one of PROTOCOLS (X-Stream-Protocol-Version),
        or the kubelet's refusal as a Status."""
        headers = [("Upgrade", "SPDY/3.1"), *(("X-Stream-Protocol-Version", p) for p in protocols)]
        try:
            return await httpupgrade.request_upgrade(url, params, headers, context=self._ssl, method=request.method,
                                                     timeout=CONNECT_TIMEOUT)
        except httpupgrade.UpgradeRefused as exc:
            raise self._refusal(exc.status, exc.body) from None
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise self._unreachable(node, exc) from None

    async def _tunnel(self, request: web.Request, url: str, node: str, params: list[tuple[str, str]]
                      ) -> web.StreamResponse:
        """kubectl 1.31 on: port-forward's SPDY carried in a WebSocket's binary messages. As upstream's
        apiserver does, the WebSocket is unwrapped here and the kubelet spoken to in plain SPDY."""
        kubelet = await self._upgrade_kubelet(request, url, node, params, [PORT_FORWARD_SPDY])
        try:
            client = web.WebSocketResponse(protocols=(SPDY_TUNNEL,), heartbeat=None, max_msg_size=0)
            await client.prepare(request)
        except BaseException:
            kubelet.close()
            raise

        drained = asyncio.Event()

        async def upstream() -> None:
            async for message in client:
                if message.type == WSMsgType.BINARY:
                    try:
                        await kubelet.write(message.data)
                    except (ConnectionError, OSError):
                        # the kubelet went away: what it sent before it did still goes to the client
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(drained.wait(), httpupgrade.DRAIN_TIMEOUT)
                        return

        async def downstream() -> None:
            try:
                while chunk := await kubelet.reader.read(httpupgrade.BUFFER):
                    await client.send_bytes(chunk)
            finally:
                drained.set()

        try:
            await httpupgrade.first_to_end(upstream(), downstream())
        finally:
            kubelet.close()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await client.close()
        return client

    async def _refusal_of(self, url: str, node: str, params: list[tuple[str, str]]) -> APIError | None:
        """The kubelet's reason to refuse a session, asked with a plain request (its checks answer one as
        they answer the upgrade, with the reason in the body, which aiohttp's handshake error does not
        carry); None when it would serve it (it answers the plain request UPGRADE_REQUIRED)."""
        try:
            async with self._session(total=CONNECT_TIMEOUT) as session, \
                    session.get(url, params=params, ssl=self._ssl) as answer:
                body = await answer.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return self._unreachable(node, exc)
        if answer.status == 400 and body.strip() == UPGRADE_REQUIRED.encode():
            return None
        return self._refusal(answer.status, body)


#: the close of a session whose kubelet connection ended without a WebSocket close: not a clean end
ABRUPT_END: tuple[int, str] = (WSCloseCode.INTERNAL_ERROR, "the kubelet's connection ended without closing the session")
#: the most seconds a session's first frames wait for the client to answer the relay's ping
CLIENT_READY_TIMEOUT = 2.0


async def _relay(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse) -> None:
    """Frames both ways until either side ends; then the other side is closed too. The kubelet's close
    (its code and reason) is the client's; a kubelet connection that ends without one closes the client's
    as an error (ABRUPT_END), never as a normal end: client-go reads a normal close (1000) with no Status
    before it as success, so an abrupt end would be an empty exit 0.

    The kubelet's frames wait (CLIENT_READY_TIMEOUT at most) until the client has answered a ping:
    kubectl 1.30's client-go reads the connection before it has made its streams, and discards the
    frames that come in between ("Unknown stream id 1, discarding message"), so a session whose output
    and Status came in the same burst as the 101 ended empty with exit 0. (Upstream's apiserver answers
    the client's upgrade before it dials the kubelet, so there its first frames come a round trip
    later; here the kubelet is asked first, so that its refusal can still be an HTTP status.) CLIENT
    has autoping off: the relay answers the client's pings itself and sees its pong."""
    ending = ABRUPT_END
    answered = asyncio.Event()

    async def upstream() -> None:
        async for message in client:
            if message.type == WSMsgType.BINARY:
                await kubelet.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await kubelet.send_str(message.data)
            elif message.type == WSMsgType.PING:
                await client.pong(message.data)
            elif message.type == WSMsgType.PONG:
                answered.set()

    async def downstream() -> None:
        nonlocal ending
        await client.ping(b"kubesim")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), CLIENT_READY_TIMEOUT)
        while True:
            message = await kubelet.receive()
            if message.type == WSMsgType.BINARY:
                await client.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await client.send_str(message.data)
            elif message.type == WSMsgType.CLOSE:
                ending = (int(message.data or WSCloseCode.OK), str(message.extra or ""))
                return
            elif message.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                return

    try:
        await httpupgrade.first_to_end(upstream(), downstream())
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await kubelet.close()
        code, reason = ending
        with contextlib.suppress(ConnectionError, RuntimeError):
            await client.close(code=code, message=reason.encode())


async def _stream_through(request: web.Request, kubelet: aiohttp.ClientResponse, response: web.StreamResponse
                          ) -> web.StreamResponse:
    """Send RESPONSE with what the kubelet sends as it comes, until the kubelet ends it or the client goes."""
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError, aiohttp.ClientError):
        async for chunk in kubelet.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    return response
