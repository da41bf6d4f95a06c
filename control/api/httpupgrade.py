"""HTTP/1.1 connection upgrades other than WebSocket (SPDY/3.1 for kubectl's streams), both ends:

- take_over(request, headers): answer an aiohttp request 101 Switching Protocols and have the
  connection's raw bytes from then on (a reader, and a write function that waits for the socket);
- request_upgrade(...): ask a server for an upgrade over a fresh TLS connection and, when it answers
  101, have that connection's raw bytes (the apiserver's way to a kubelet, as upstream's
  UpgradeAwareHandler dials the backend and splices the two connections).

    UpgradeRefused(status, body)   the server answered something other than 101

A peer's last bytes are never lost to its going away: asyncio's StreamReader raises a connection's
error (a reset, a broken pipe) in place of the bytes it already holds, so the upgraded connections
read here keep those bytes and end after them (an end like a close); and splice, when one way fails
because its receiver went away, still passes on what that receiver sent before it did. (Before, a
relay that wrote to a runtime which had just sent its last frames and closed dropped those frames,
and the session ended with no output and no Status.)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from aiohttp import web

Write = Callable[[bytes], Awaitable[None]]
#: the most of a response head read before the upgrade is given up
MAX_HEAD = 64 * 1024
BUFFER = 256 * 1024


class UpgradeRefused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade refused with {status}: {body[:200]!r}")
        self.status = status
        self.body = body


class _KeepingReader(asyncio.StreamReader):
    """A StreamReader whose connection ending in an error (a reset, a broken pipe: the peer went away)
    ends the stream after what was received, as a close does, instead of dropping those bytes."""

    def set_exception(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.feed_eof()
        else:
            super().set_exception(exc)


class _RawParser:
    """What aiohttp's protocol feeds an upgraded connection's bytes to (its set_parser interface, as its
    WebSocket reader has it)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


@dataclass
class Upgraded:
    """The raw bytes of an upgraded connection."""

    reader: asyncio.StreamReader
    write: Write
    close: Callable[[], None]
    headers: Mapping[str, str]


async def take_over(request: web.Request, headers: Mapping[str, str]) -> tuple[web.StreamResponse, Upgraded]:
    """Answer REQUEST 101 with HEADERS and take its connection's bytes; the response is the handler's to
    return (aiohttp closes the connection after it)."""
    response = web.StreamResponse(status=101, reason="Switching Protocols", headers=dict(headers))
    await response.prepare(request)
    protocol, transport = request.protocol, request.transport
    assert transport is not None  # prepare() succeeded on it
    reader = asyncio.StreamReader(limit=BUFFER)
    reader.set_transport(transport)  # a reader that falls behind pauses the socket
    protocol.set_parser(_RawParser(reader))  # type: ignore[arg-type]  # the duck-typed parser interface
    protocol.keep_alive(False)

    async def write(data: bytes) -> None:
        if transport.is_closing():
            raise ConnectionResetError("the client's connection is closed")
        transport.write(data)
        await protocol._drain_helper()  # the flow control aiohttp's own writers use

    return response, Upgraded(reader, write, transport.close, headers)


def _head(method: str, url: str, params: list[tuple[str, str]], headers: list[tuple[str, str]]) -> bytes:
    parts = urlsplit(url)
    target = parts.path + ("?" + urlencode(params) if params else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: Upgrade", "Content-Length: 0"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def request_upgrade(url: str, params: list[tuple[str, str]], headers: list[tuple[str, str]], *,
                          context: ssl.SSLContext | None, method: str = "POST", timeout: float = 10.0,
                          unix_socket: str | None = None) -> Upgraded:
    """Ask URL for an upgrade (HEADERS name it: Upgrade and the like), over TLS with CONTEXT (plain HTTP
    without one; over the Unix socket UNIX_SOCKET when given, as the kubelet reaches its runtime); the
    upgraded connection on 101, UpgradeRefused with the answer's status and body otherwise."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if context else 80)
    loop = asyncio.get_running_loop()
    reader = _KeepingReader(limit=BUFFER)

    def protocol() -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(reader)

    if unix_socket is not None:
        opening = loop.create_unix_connection(protocol, unix_socket)
    else:
        opening = loop.create_connection(protocol, host, port, ssl=context,
                                         server_hostname=host if context else None)
    transport, made = await asyncio.wait_for(opening, timeout)
    writer = asyncio.StreamWriter(transport, made, reader, loop)
    try:
        writer.write(_head(method, url, params, headers))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if len(head) > MAX_HEAD:
            raise UpgradeRefused(502, b"an oversized response head")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            raise UpgradeRefused(502, f"not an HTTP response: {status_line[:80]!r}".encode()) from None
        answer: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                name = name.strip().lower()
                answer[name] = f"{answer[name]}, {value.strip()}" if name in answer else value.strip()
        if status != 101:
            length = int(answer.get("content-length", "0") or 0)
            body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
            raise UpgradeRefused(status, body)
    except BaseException:
        writer.close()
        raise

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    return Upgraded(reader, write, writer.close, answer)


async def first_to_end(*jobs: Awaitable[None]) -> None:
    """Run JOBS until the first one ends, then cancel the others and wait for them: a two-way copy is over
    when either way is."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: seconds a side that went away has to deliver what it sent before it did
DRAIN_TIMEOUT = 10.0


async def splice(a: Upgraded, b: Upgraded) -> None:
    """Bytes both ways until either side ends; then both are closed. A way that ends because its
    receiver went away (a write to it failed) leaves the other way running until that receiver's own
    bytes, sent before it went, have all been passed on: a server's last frames, written just before it
    closed, reach the client even when the client's bytes to it found the server closed."""

    async def copy(source: Upgraded, sink: Upgraded) -> bool:
        """Until SOURCE ends; True when it was SINK that went away instead."""
        while True:
            try:
                chunk = await source.reader.read(BUFFER)
            except (ConnectionError, OSError):
                return False
            if not chunk:
                return False
            try:
                await sink.write(chunk)
            except (ConnectionError, OSError):
                return True

    ways = [asyncio.ensure_future(copy(a, b)), asyncio.ensure_future(copy(b, a))]
    try:
        done, pending = await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
        if pending and any(way.result() for way in done):
            # that way's receiver went away: the other way reads from it, and ends once its bytes are through
            await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)
    finally:
        for task in ways:
            task.cancel()
        try:
            await asyncio.gather(*ways, return_exceptions=True)
        finally:  # closed even when the relay itself is cancelled meanwhile (its server stopping)
            a.close()
            b.close()
