"""The kubelet's half of exec, attach and port-forward when the node runtime runs the container: the
kubelet authenticates and authorizes the client (server.py), checks the pod and container, asks the
runtime for the session (CRI's Exec / Attach / PortForward answer a URL on the runtime's socket,
control.runtime.streams), then passes the client's upgrade request there as it came and splices the
two upgraded connections byte for byte, as upstream's kubelet proxies to the runtime's streaming
server. So WebSocket (v4, v5) and SPDY/3.1 are spoken by the runtime end to end, the session's end (its
Status, then the close) reaches the client as the runtime sent it, and a client that goes away closes
the runtime's connection, which kills the command.

The runtime's refusal (404 for a URL that expired, 400 for a request that is no upgrade) is passed on
with its status and text; a runtime that cannot be reached is 500, as upstream's kubelet answers.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from control.api import httpupgrade
from control.runtime import RuntimeClient
from control.runtime.server import socket_address

#: seconds to reach the runtime and have its answer to the upgrade
CONNECT_TIMEOUT = 10.0
#: the client's request headers the runtime's protocol handling needs (the handshake's)
FORWARDED = ("Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
             "Sec-WebSocket-Extensions", "X-Stream-Protocol-Version")
#: the runtime's answer headers that are its connection's own, not the handshake's
_NOT_PASSED = frozenset({"date", "server", "content-length", "content-type", "transfer-encoding"})


async def relay(request: web.Request, runtime: RuntimeClient, url: str) -> web.StreamResponse:
    """REQUEST (a client's session request) sent to the runtime's session URL, with its query (the
    command, port-forward's ports) and handshake headers, and the two connections spliced once the
    runtime has switched protocols."""
    headers = [(name, value) for name in FORWARDED for value in request.headers.getall(name, [])]
    try:
        runtime_side = await httpupgrade.request_upgrade(
            f"http://runtime{url}", list(request.query.items()), headers, context=None, method=request.method,
            timeout=CONNECT_TIMEOUT, unix_socket=socket_address(runtime.socket_path))
    except httpupgrade.UpgradeRefused as exc:
        return web.Response(status=exc.status, body=exc.body, content_type="text/plain")
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return web.Response(status=500, text=f"the node runtime is not reachable for this session: {exc}")
    try:
        answer = {name: value for name, value in runtime_side.headers.items() if name not in _NOT_PASSED}
        response, client_side = await httpupgrade.take_over(request, answer)
    except BaseException:
        runtime_side.close()
        raise
    with contextlib.suppress(ConnectionError, OSError):
        await httpupgrade.splice(client_side, runtime_side)
    return response
