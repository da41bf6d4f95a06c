"""The upgraded connections the kubelet and the apiserver splice (control.api.httpupgrade), against a
real server on a Unix socket playing the node runtime: a server that sends its last frames and closes
while the relay is still writing to it (the write fails: a broken pipe) has those frames delivered all
the same, both when the relay reads them only after the failure and when the way to the client is
still busy with earlier bytes when the failure comes. Before, asyncio's StreamReader raised the broken
pipe in place of the bytes it held, and the splice cut both ways at the first one's end: the session
ended with no output and no Status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from control.api import httpupgrade

HEAD = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n"


@asynccontextmanager
async def runtime(path: Path, *parts: bytes) -> AsyncIterator[tuple[asyncio.Event, asyncio.Event]]:
    """A server on PATH that answers an upgrade 101, sends PARTS (the second on once GO is set) and
    closes; yields (GO, CLOSED), CLOSED set once its end of the connection is closed."""
    go, closed = asyncio.Event(), asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD + parts[0])
        await writer.drain()
        for part in parts[1:]:
            await go.wait()
            writer.write(part)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await asyncio.start_unix_server(serve, str(path))
    try:
        yield go, closed
    finally:
        server.close()
        await server.wait_closed()


class Client:
    """The other side of the splice: bytes to send (fed by the test), and what it receives. A receiver
    that is SLOW holds each write until `drained` is set, as a full socket does."""

    def __init__(self, *, slow: bool = False) -> None:
        self.reader = asyncio.StreamReader()
        self.received = b""
        self.got_some = asyncio.Event()
        self.drained = asyncio.Event()
        if not slow:
            self.drained.set()

    async def write(self, data: bytes) -> None:
        self.received += data
        self.got_some.set()
        await self.drained.wait()

    def upgraded(self) -> httpupgrade.Upgraded:
        return httpupgrade.Upgraded(self.reader, self.write, lambda: None, {})


async def upgrade(path: Path) -> httpupgrade.Upgraded:
    return await httpupgrade.request_upgrade("http://runtime/streaming/x", [], [("Upgrade", "test")], context=None,
                                             timeout=10, unix_socket=str(path))


def test_a_servers_last_bytes_survive_a_write_that_found_it_gone(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime(tmp_path / "rt.sock", b"stdout and status frames") as (_, closed):
            side = await upgrade(tmp_path / "rt.sock")
            await closed.wait()
            # the relay writes what the client sent to a server that has just closed: a broken pipe
            with pytest.raises(ConnectionError):
                for _ in range(100):  # the first writes may land in the socket's buffer before the error shows
                    await side.write(b"the client's bytes")
            client = Client()
            await httpupgrade.splice(client.upgraded(), side)
            assert client.received == b"stdout and status frames"

    asyncio.run(main())


def test_a_server_gone_while_the_client_is_slow_still_has_all_it_sent_delivered(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime(tmp_path / "rt.sock", b"stdout frame ", b"status frame") as (go, closed):
            side = await upgrade(tmp_path / "rt.sock")
            client = Client(slow=True)
            splicing = asyncio.ensure_future(httpupgrade.splice(client.upgraded(), side))
            await client.got_some.wait()  # the first frame is on its way to the client, which is slow
            go.set()  # the server sends the rest and closes
            await closed.wait()
            client.reader.feed_data(b"the client's bytes")  # now find the server gone
            # long enough for a splice that ends both ways at the first one's end to have done so
            await asyncio.sleep(0.2)
            client.drained.set()
            await asyncio.wait_for(splicing, 20)
            assert client.received == b"stdout frame status frame"

    asyncio.run(main())
