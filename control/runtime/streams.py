"""The runtime's streaming server: CRI's Exec, Attach and PortForward.

As upstream (a CRI runtime's Exec/Attach/PortForward answers the URL of its streaming server, and the
kubelet proxies the client's request there), a call on the runtime's socket registers the session and
answers {url}: a path on the same socket, good for one request within TOKEN_TTL seconds. The kubelet
sends the client's upgrade request (WebSocket v4/v5, or SPDY/3.1) to that path and splices the two
upgraded connections byte for byte (control.kubelet.streamrelay); this server speaks the protocols with
the session code upstream shares between the kubelet and runtimes (control.kubelet.streaming and
spdystreams, which this module runs, as containerd runs k8s.io/kubelet/pkg/cri/streaming).

So the processes of `kubectl exec` are the runtime's children, and the stdin of a `stdin: true`
container is the runtime's pipe: a kubelet that restarts leaves running containers, their stdin and
their attachability alone (a session open through the killed kubelet ends with its connection, and
its command is killed, as upstream).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

#: where sessions are served on the runtime's socket
STREAM_PREFIX = "/streaming/"
#: how long a session's URL waits for its request (upstream's streaming server cache TTL: one minute)
TOKEN_TTL = 60.0

Session = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Pending:
    session: Session
    expires: float


class StreamServer:
    """Sessions registered by Exec / Attach / PortForward, each served once by its URL."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: dict[str, _Pending] = {}

    def register(self, kind: str, session: Session) -> str:
        """The URL (a path on the runtime's socket) that runs SESSION for the one request sent there."""
        now = self._clock()
        for token in [t for t, p in self._pending.items() if p.expires <= now]:
            del self._pending[token]
        token = secrets.token_urlsafe(24)
        self._pending[token] = _Pending(session, now + TOKEN_TTL)
        return f"{STREAM_PREFIX}{kind}/{token}"

    def __len__(self) -> int:
        return len(self._pending)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        from control.kubelet.streaming import SessionError  # imported here: see service.py

        pending = self._pending.pop(request.match_info["token"], None)
        if pending is None or pending.expires <= self._clock():
            return web.Response(status=404, text="this streaming session is unknown or expired (a URL serves one "
                                                 f"request within {TOKEN_TTL:.0f} s): ask Exec, Attach or "
                                                 "PortForward for a new one")
        try:
            return await pending.session(request)
        except SessionError as exc:
            return web.Response(status=exc.code, text=exc.message)

    def add_routes(self, app: web.Application) -> None:
        for method in ("GET", "POST"):
            app.router.add_route(method, STREAM_PREFIX + "{kind}/{token}", self.serve)
