"""SPDY/3.1 framing: every frame type through the codec, header compression that carries its context
across frames (as Go's framer does), and two Connections over a socket pair opening streams, moving
data both ways with FIN, answering pings, and keeping flow control windows with a peer that keeps them."""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from control.api import spdy
from control.api.spdy import Codec, Connection, Frame


def test_the_dictionary_is_spdy3s() -> None:
    # size and Adler-32 (the dictionary id a zlib stream names) of the spec's dictionary
    assert (len(spdy.DICTIONARY), zlib.adler32(spdy.DICTIONARY)) == (1423, 0xE3C6A7C2)


def _roundtrip(frames: list[Frame]) -> list[Frame | None]:
    sender, receiver = Codec(), Codec()
    out = []
    for frame in frames:
        wire = sender.encode(frame)
        length = int.from_bytes(wire[5:8], "big")
        assert len(wire) == 8 + length
        out.append(receiver.decode(wire[:8], wire[8:]))
    return out


def test_every_frame_type_survives_the_codec() -> None:
    frames = [
        Frame(spdy.SYN_STREAM, 1, spdy.FLAG_FIN, headers={"streamtype": "error", "port": "8080"}, priority=2),
        Frame(spdy.SYN_REPLY, 1, headers={}),
        Frame(0, 1, spdy.FLAG_FIN, data=b"hello"),
        Frame(spdy.RST_STREAM, 3, status=spdy.CANCEL),
        Frame(spdy.SETTINGS, settings={spdy.SETTINGS_INITIAL_WINDOW_SIZE: 1 << 20}),
        Frame(spdy.PING, value=7),
        Frame(spdy.GOAWAY, value=5, status=spdy.GOAWAY_OK),
        Frame(spdy.HEADERS, 1, headers={"x": "y"}),
        Frame(spdy.WINDOW_UPDATE, 0, value=32768),
    ]
    assert _roundtrip(frames) == frames


def test_header_blocks_share_one_compression_context_per_direction() -> None:
    sender = Codec()
    first = sender.encode(Frame(spdy.SYN_STREAM, 1, headers={"streamtype": "stdout"}))
    second = sender.encode(Frame(spdy.SYN_STREAM, 3, headers={"streamtype": "stdout"}))
    assert len(second) < len(first)  # the second block refers back to the first
    receiver = Codec()
    receiver.decode(first[:8], first[8:])
    frame = receiver.decode(second[:8], second[8:])
    assert frame is not None and frame.headers == {"streamtype": "stdout"}
    with pytest.raises(spdy.SpdyError, match="does not decompress"):
        Codec().decode(second[:8], second[8:])  # a receiver that missed the first block cannot read it


def test_the_wire_format_is_the_specs() -> None:
    wire = Codec().encode(Frame(spdy.RST_STREAM, 5, status=spdy.CANCEL))
    assert wire == struct.pack(">HHIII", 0x8003, 3, 8, 5, 5)
    assert Codec().encode(Frame(0, 3, spdy.FLAG_FIN, data=b"ab")) == struct.pack(">II", 3, 0x01000002) + b"ab"


def test_malformed_input_is_a_spdy_error() -> None:
    with pytest.raises(spdy.SpdyError, match="version 2"):
        Codec().decode(struct.pack(">HHI", 0x8002, 3, 8), b"\0" * 8)
    with pytest.raises(spdy.SpdyError, match="not lower case"):
        spdy.decode_header_block(struct.pack(">II", 1, 1) + b"A" + struct.pack(">I", 0))
    with pytest.raises(spdy.SpdyError, match="runs past"):
        spdy.decode_header_block(struct.pack(">II", 1, 9) + b"abc")
    # a control type SPDY/3 does not define is ignored, not an error
    assert Codec().decode(struct.pack(">HHI", 0x8003, 99, 0), b"") is None


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Connection, Connection]]:
    left, right = socket.socketpair()
    ends = []
    for sock, server in ((left, True), (right, False)):
        reader, writer = await asyncio.open_connection(sock=sock)

        async def write(data: bytes, writer: asyncio.StreamWriter = writer) -> None:
            writer.write(data)
            await writer.drain()

        ends.append((Connection(reader, write, server=server), writer))
    tasks = [asyncio.ensure_future(c.run()) for c, _ in ends]
    try:
        yield ends[0][0], ends[1][0]
    finally:
        for _, writer in ends:
            writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_streams_carry_data_both_ways_until_each_sides_fin() -> None:
    async def main() -> None:
        async with _pair() as (server, client):
            opened = await client.open_stream({"streamtype": "stdin"})
            accepted = await server.accept()
            assert accepted is not None and accepted.headers == {"streamtype": "stdin"} and accepted.id == 1
            await accepted.reply()
            await asyncio.wait_for(opened.replied.wait(), 5)
            await opened.write(b"x" * 100_000, fin=True)  # more than one frame
            got = b""
            while chunk := await accepted.read():
                got += chunk
            assert got == b"x" * 100_000 and accepted.remote_closed
            await accepted.write(b"back")
            await accepted.close()
            assert await opened.read() == b"back" and await opened.read() == b""
            # the server's own streams are even
            assert (await server.open_stream({})).id == 2

    asyncio.run(main())


def test_a_reset_ends_the_stream_for_its_reader_and_a_ping_is_echoed() -> None:
    async def main() -> None:
        async with _pair() as (server, client):
            opened = await client.open_stream({"streamtype": "data"})
            accepted = await server.accept()
            assert accepted is not None
            await opened.reset()
            assert await asyncio.wait_for(accepted.read(), 5) == b""
            assert accepted.reset_status == spdy.CANCEL
            with pytest.raises(spdy.StreamReset):
                await accepted.write(b"too late")
            # a ping of the client's (odd id) comes back; the server sends none of its own here
            echoed = asyncio.get_running_loop().create_future()
            original = client._dispatch

            async def spy(frame: Frame) -> None:
                if frame.type == spdy.PING and not echoed.done():
                    echoed.set_result(frame.value)
                await original(frame)

            client._dispatch = spy  # type: ignore[method-assign]
            await client.send(Frame(spdy.PING, value=1))
            assert await asyncio.wait_for(echoed, 5) == 1

    asyncio.run(main())


def test_the_connection_ending_ends_every_stream_and_accept() -> None:
    async def main() -> None:
        left, right = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=left)

        async def write(data: bytes) -> None:
            writer.write(data)

        server = Connection(reader, write, server=True)
        run = asyncio.ensure_future(server.run())
        peer = Codec()
        right.sendall(peer.encode(Frame(spdy.SYN_STREAM, 1, headers={"streamtype": "error"})))
        stream = await asyncio.wait_for(server.accept(), 5)
        assert stream is not None
        right.close()  # the client goes away
        await asyncio.wait_for(run, 5)
        assert await stream.read() == b"" and await server.accept() is None and server.closed
        writer.close()

    asyncio.run(main())


def test_flow_control_windows_are_kept_once_the_peer_shows_it_keeps_them() -> None:
    async def main() -> None:
        async with _pair() as (server, client):
            opened = await client.open_stream({"streamtype": "data"})
            accepted = await server.accept()
            assert accepted is not None
            # a peer that never spoke of windows (spdystream) is not held to 64 KiB
            await asyncio.wait_for(accepted.write(b"a" * (spdy.DEFAULT_WINDOW + 1)), 5)
            assert server.peer_flow_control is False
            # the client consumes it and credits it back: from then on the server keeps the windows
            got = 0
            while got < spdy.DEFAULT_WINDOW + 1:
                got += len(await opened.read())
            await asyncio.sleep(0.05)
            assert server.peer_flow_control is True
            # a window the peer shrinks to nothing holds the writer until it is opened again
            await client.send(Frame(spdy.SETTINGS, settings={spdy.SETTINGS_INITIAL_WINDOW_SIZE: 0}))
            second = await client.open_stream({"streamtype": "data"})
            other = await server.accept()
            assert other is not None
            await asyncio.sleep(0.05)
            writing = asyncio.ensure_future(other.write(b"held"))
            await asyncio.sleep(0.1)
            assert not writing.done()
            await client.send(Frame(spdy.WINDOW_UPDATE, second.id, value=4))
            await asyncio.wait_for(writing, 5)
            assert await second.read() == b"held"

    asyncio.run(main())
