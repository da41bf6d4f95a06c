"""`pods/portforward` from the client's side: one TCP stream to a port of a pod through the apiserver,
over WebSocket with the v4 channel framing (upstream's websocket port-forward protocol): the port's
data on channel 0 and its errors on channel 1, each channel's first two bytes naming the port.

    async with await open_port_forward(client, "default", "web", 8080) as stream:
        await stream.send(b"GET / HTTP/1.0\r\n\r\n")
        async for chunk in stream: ...               # the pod's answer; PortForwardError if it refused

One WebSocket carries one connection (the protocol has no way to open another on it), as kubectl's
WebSocket port-forward does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import TracebackType

import aiohttp
from aiohttp import WSMsgType

from control.api import remotecommand as rc
from control.client._client import Client
from control.client._errors import KubeClientError
from control.client._exec import _open
from control.client._resource import PODS

DATA, ERROR = rc.port_channels(0)


class PortForwardError(KubeClientError):
    """The pod's side refused or broke the connection: the message is the kubelet's."""


class PortForwardStream:
    """One connection to a port of a pod, as bytes each way."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, where: str):
        self.ws = ws
        self.where = where
        self._announced: set[int] = set()

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(rc.encode(DATA, data))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The pod's bytes until it closes; PortForwardError with the error channel's text, if any."""
        error = b""
        async for message in self.ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, data = rc.decode(message.data)
            if channel not in self._announced:
                # each channel's first two bytes are the port's number, not the port's data
                self._announced.add(channel)
                data = data[2:]
            if channel == DATA and data:
                yield data
            elif channel == ERROR:
                error += data
        if error:
            raise PortForwardError(error.decode(errors="replace"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def __aenter__(self) -> PortForwardStream:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def open_port_forward(client: Client, namespace: str, pod: str, port: int) -> PortForwardStream:
    """A connection to PORT of POD; the apiserver's refusal (no such pod, forbidden) as its ApiError."""
    ws = await _open(client, PODS.path(namespace, pod, "portforward"), [("ports", str(port))])
    return PortForwardStream(ws, f"{namespace}/{pod}:{port}")
