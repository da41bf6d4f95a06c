"""exec, attach and portForward sessions over SPDY/3.1 (control.api.spdy), as kubectl before 1.30
speaks them for exec and attach, and every kubectl for port-forward (1.31 on tunnels the same SPDY
through a WebSocket, which the apiserver unwraps: the kubelet sees SPDY either way).

The client opens the streams, each named by its `streamType` header, and this side accepts each with
a SYN_REPLY (upstream's pkg/kubelet/cri/streaming/remotecommand/httpstream.go, portforward/httpstream.go):

- exec / attach: `error`, and `stdin`, `stdout`, `stderr`, `resize` as the session asked for them
  (resize from v3 on, with a terminal). They map one to one onto the WebSocket protocol's channels,
  so the session code of control.kubelet.streaming runs on either transport. The stdin stream's FIN
  is the end of input; resize carries a JSON TerminalSize per change. How the session ended goes on
  the error stream: v4 a metav1.Status (NonZeroExitCode with the exit code), v2/v3 only a failure's
  message. Then every stream is finished and the connection ends.
- portForward: a pair of streams per forwarded connection, `error` and `data`, with the same `port`
  and `requestID` headers; the data stream carries the TCP bytes, the error stream what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from control.api import httpupgrade, spdy
from control.api import remotecommand as rc
from control.kubelet.streaming import (
    READ_CHUNK,
    Channels,
    Connect,
    PodProcessTarget,
    SessionEnded,
    SessionError,
    Streams,
    pod_connection,
)

log = logging.getLogger("kubelet.spdy")

V3, V2 = "v3.channel.k8s.io", "v2.channel.k8s.io"
#: exec / attach's stream protocols over SPDY, in the server's order of preference (upstream's
#: SupportedStreamingProtocols; channel.k8s.io, v1, is not served)
PROTOCOLS = (rc.V4, V3, V2)
PORT_FORWARD = "portforward.k8s.io"
STREAM_TYPES = {"stdin": rc.STDIN, "stdout": rc.STDOUT, "stderr": rc.STDERR, "error": rc.ERROR,
                "resize": rc.RESIZE}
#: upstream's default streamCreationTimeout: how long the client has to open the streams it asked for
STREAM_CREATION_TIMEOUT = 30.0


def offered_protocols(request: web.Request) -> list[str]:
    return [p.strip() for value in request.headers.getall("X-Stream-Protocol-Version", [])
            for p in value.split(",") if p.strip()]


async def _upgrade(request: web.Request, served: tuple[str, ...]
                   ) -> tuple[web.StreamResponse, spdy.Connection, str, httpupgrade.Upgraded]:
    """The handshake (httpstream.Handshake and the SPDY upgrader): the protocol both sides speak, 101,
    and a running SPDY connection. The client's protocol order decides, as upstream's negotiation."""
    offered = offered_protocols(request)
    protocol = next((p for p in offered if p in served), None)
    if protocol is None:
        raise SessionError(403, f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                f"server supports {list(served)}")
    response, raw = await httpupgrade.take_over(request, {
        "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": protocol})
    return response, spdy.Connection(raw.reader, raw.write, server=True), protocol, raw


class SpdyChannels(Channels):
    """exec / attach's channels on SPDY streams."""

    def __init__(self, response: web.StreamResponse, connection: spdy.Connection, protocol: str,
                 streams: dict[int, spdy.Stream], reader: asyncio.Task[None], raw: httpupgrade.Upgraded) -> None:
        self.response = response
        self.connection = connection
        self.protocol = protocol
        self.streams = streams
        self.reader = reader
        self.raw = raw

    async def send(self, channel: int, data: bytes) -> None:
        stream = self.streams.get(channel)
        if stream is not None and not stream.local_closed:
            with contextlib.suppress(ConnectionError):
                await stream.write(data)

    async def incoming(self) -> AsyncIterator[tuple[int, bytes]]:
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()

        async def stdin(stream: spdy.Stream) -> None:
            while chunk := await stream.read():
                await queue.put((rc.STDIN, chunk))
            if not self.connection.closed:
                await queue.put((rc.CLOSE, bytes((rc.STDIN,))))  # its FIN, not the connection's end

        async def resize(stream: spdy.Stream) -> None:
            # a stream of JSON objects, one per size change (client-go writes them with json.Encoder)
            decoder, buffer = json.JSONDecoder(), ""
            while chunk := await stream.read():
                buffer += chunk.decode(errors="replace")
                while buffer.strip():
                    try:
                        size, end = decoder.raw_decode(buffer.lstrip())
                    except ValueError:
                        break  # the rest of the object is still on its way
                    buffer = buffer.lstrip()[end:]
                    await queue.put((rc.RESIZE, json.dumps(size).encode()))

        async def ended() -> None:
            await asyncio.shield(self.reader)
            await queue.put(None)

        tasks = [asyncio.ensure_future(ended())]
        if rc.STDIN in self.streams:
            tasks.append(asyncio.ensure_future(stdin(self.streams[rc.STDIN])))
        if rc.RESIZE in self.streams:
            tasks.append(asyncio.ensure_future(resize(self.streams[rc.RESIZE])))
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def finish(self, status: dict[str, Any]) -> None:
        error = self.streams.get(rc.ERROR)
        if error is not None:
            if self.protocol == rc.V4:
                await self.send(rc.ERROR, json.dumps(status, separators=(",", ":")).encode())
            elif status.get("status") != "Success":
                await self.send(rc.ERROR, str(status.get("message", "")).encode())
        await self.close()

    async def close(self) -> None:
        if not self.connection.closed:
            for stream in self.streams.values():
                await stream.close()
            await self.connection.goaway()
        self.connection.close()
        self.raw.close()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


def _expected(streams: Streams, protocol: str) -> set[int]:
    wanted = {rc.ERROR}
    wanted |= {c for c, on in ((rc.STDIN, streams.stdin), (rc.STDOUT, streams.stdout),
                               (rc.STDERR, streams.stderr)) if on}
    if streams.tty and protocol != V2:
        wanted.add(rc.RESIZE)
    return wanted


async def accept(request: web.Request, streams: Streams) -> SpdyChannels:
    """Upgrade, then wait for the client's streams (a stream of an unknown type is reset, as upstream's)."""
    response, connection, protocol, raw = await _upgrade(request, PROTOCOLS)
    reader = asyncio.ensure_future(connection.run())
    by_channel: dict[int, spdy.Stream] = {}
    wanted = _expected(streams, protocol)

    async def collect() -> None:
        while not wanted <= by_channel.keys():
            stream = await connection.accept()
            if stream is None:
                raise ConnectionError("the client went away before it opened its streams")
            channel = STREAM_TYPES.get(stream.headers.get("streamtype", ""))
            if channel is None or channel in by_channel:
                await stream.reset(spdy.PROTOCOL_ERROR)
                continue
            await stream.reply()
            by_channel[channel] = stream

    channels = SpdyChannels(response, connection, protocol, by_channel, reader, raw)
    try:
        await asyncio.wait_for(collect(), STREAM_CREATION_TIMEOUT)
    except (TimeoutError, ConnectionError) as exc:
        log.info("a SPDY session without its streams: %s", exc or "timed out waiting for client to create streams")
        await channels.close()
        raise SessionEnded(response) from None
    return channels


def port_error(port: int, pod: str, exc: OSError) -> str:
    """What the error stream says of a port the pod does not answer on (upstream's wording, and the
    WebSocket path's)."""
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    return f"error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside the pod: {reason}"


async def portforward_session(request: web.Request, target: PodProcessTarget, pod: str, *,
                              connect: Connect = pod_connection) -> web.StreamResponse:
    """Each pair of streams the client opens (one per connection it accepted locally) is a TCP connection
    into the pod; the session lasts until the client goes away."""
    response, connection, _, raw = await _upgrade(request, (PORT_FORWARD,))
    reader = asyncio.ensure_future(connection.run())
    pending: dict[str, dict[str, spdy.Stream]] = {}
    forwards: set[asyncio.Task[None]] = set()

    async def forward(data: spdy.Stream, error: spdy.Stream) -> None:
        port = int(data.headers.get("port", "0"))
        try:
            try:
                pod_reader, pod_writer = await connect(target, port)
            except OSError as exc:
                await error.write(port_error(port, pod, exc).encode())
                return

            async def to_pod() -> None:
                with contextlib.suppress(ConnectionError):
                    while chunk := await data.read():
                        pod_writer.write(chunk)
                        await pod_writer.drain()
                    if pod_writer.can_write_eof():
                        pod_writer.write_eof()  # the client's half-close, passed on

            upstream = asyncio.ensure_future(to_pod())
            try:
                with contextlib.suppress(ConnectionError, OSError):
                    while chunk := await pod_reader.read(READ_CHUNK):
                        await data.write(chunk)
            finally:
                upstream.cancel()
                await asyncio.gather(upstream, return_exceptions=True)
                pod_writer.close()
        except ConnectionError:
            pass
        finally:
            await data.close()
            await error.close()  # the client reads the error stream to its end before it closes the pair

    def request_id(stream: spdy.Stream) -> str:
        # clients before requestID paired by creation order: the data stream follows its error stream
        if "requestid" in stream.headers:
            return stream.headers["requestid"]
        kind = stream.headers.get("streamtype")
        return str(stream.id - 2 if kind == "data" else stream.id)

    try:
        while (stream := await connection.accept()) is not None:
            kind, port = stream.headers.get("streamtype", ""), stream.headers.get("port", "")
            if kind not in ("data", "error") or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
                log.info("resetting a port-forward stream with streamType %r and port %r", kind, port)
                await stream.reset(spdy.PROTOCOL_ERROR)
                continue
            await stream.reply()
            pair = pending.setdefault(request_id(stream), {})
            pair[kind] = stream
            if len(pair) == 2:
                pending.pop(request_id(stream))
                task = asyncio.ensure_future(forward(pair["data"], pair["error"]))
                forwards.add(task)
                task.add_done_callback(forwards.discard)
        return response
    finally:
        for task in list(forwards):
            task.cancel()
        await asyncio.gather(*forwards, return_exceptions=True)
        connection.close()
        raw.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
