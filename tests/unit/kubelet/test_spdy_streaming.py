"""The kubelet's exec, attach and portForward sessions over SPDY/3.1 (aiohttp on loopback, this
project's own SPDY connection as the client, as kubectl opens its streams): the upgrade's protocol
negotiation, output on the stdout/stderr streams, stdin's FIN as the command's EOF, the exit code in
the error stream's Status (v4) or message (v3), a terminal sized by the resize stream, a client that
goes away (its command is killed), and port-forward's data/error stream pairs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from control.api import httpupgrade, spdy
from control.api import remotecommand as rc
from control.kubelet import spdystreams, streaming
from control.kubelet.streaming import PodProcessTarget, SessionError, Streams
from tests.waiting import wait_until_async

TARGET = PodProcessTarget("unused", {"GREETING": "hello"})


def _here(target: PodProcessTarget, argv: list[str]) -> list[str]:
    return argv


async def _connect(target: PodProcessTarget, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


@asynccontextmanager
async def kubelet() -> AsyncIterator[str]:
    async def exec_(request: web.Request) -> web.StreamResponse:
        try:
            return await streaming.exec_session(request, TARGET, request.query.getall("command", []),
                                                Streams.from_query(request.query), enter=_here)
        except SessionError as exc:
            return web.Response(status=exc.code, text=exc.message)

    async def forward(request: web.Request) -> web.StreamResponse:
        return await spdystreams.portforward_session(request, TARGET, "default/web", connect=_connect)

    app = web.Application()
    app.router.add_post("/exec", exec_)
    app.router.add_post("/portForward", forward)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url(""))
    finally:
        await server.close()


@asynccontextmanager
async def session(base: str, path: str, params: list[tuple[str, str]], *protocols: str
                  ) -> AsyncIterator[tuple[spdy.Connection, str]]:
    """A SPDY client connection to BASE + PATH offering PROTOCOLS, and the protocol the server chose."""
    raw = await httpupgrade.request_upgrade(base + path, params, [
        ("Upgrade", "SPDY/3.1"), *(("X-Stream-Protocol-Version", p) for p in protocols)], context=None)
    connection = spdy.Connection(raw.reader, raw.write, server=False)
    run = asyncio.ensure_future(connection.run())
    try:
        yield connection, raw.headers["x-stream-protocol-version"]
    finally:
        raw.close()
        await asyncio.gather(run, return_exceptions=True)


async def _open(connection: spdy.Connection, *kinds: str) -> dict[str, spdy.Stream]:
    streams = {kind: await connection.open_stream({"streamtype": kind}) for kind in kinds}
    for stream in streams.values():
        await asyncio.wait_for(stream.replied.wait(), 5)
    return streams


async def _drain(stream: spdy.Stream) -> bytes:
    out = b""
    while chunk := await asyncio.wait_for(stream.read(), 10):
        out += chunk
    return out


def _query(*command: str, **flags: bool) -> list[tuple[str, str]]:
    return [("command", c) for c in command] + [(k, "1") for k, v in flags.items() if v]


def test_exec_over_v4_carries_output_and_the_exit_code_status() -> None:
    async def main() -> None:
        async with kubelet() as base, session(base, "/exec", _query(
                "sh", "-c", 'echo "$GREETING out"; echo err >&2; exit 3', output=True, error=True),
                rc.V4, spdystreams.V3) as (connection, protocol):
            assert protocol == rc.V4  # the client's first choice the server serves
            streams = await _open(connection, "error", "stdout", "stderr")
            assert await _drain(streams["stdout"]) == b"hello out\n"
            assert await _drain(streams["stderr"]) == b"err\n"
            status = json.loads(await _drain(streams["error"]))
            assert rc.exit_code_of(status) == 3 and status["reason"] == "NonZeroExitCode"

    asyncio.run(main())


def test_exec_over_v3_says_only_a_failures_message() -> None:
    async def main() -> None:
        async with kubelet() as base, session(base, "/exec", _query("sh", "-c", "exit 2", output=True),
                                              spdystreams.V3, spdystreams.V2) as (connection, protocol):
            assert protocol == spdystreams.V3
            streams = await _open(connection, "error", "stdout")
            assert await _drain(streams["stdout"]) == b""
            assert (await _drain(streams["error"])).decode().endswith("exit code 2")

    asyncio.run(main())


def test_stdins_fin_is_the_commands_eof() -> None:
    async def main() -> None:
        async with kubelet() as base, session(base, "/exec", _query("wc", "-c", input=True, output=True),
                                              rc.V4) as (connection, _):
            streams = await _open(connection, "error", "stdin", "stdout")
            await streams["stdin"].write(b"x" * 200_000, fin=True)
            assert (await _drain(streams["stdout"])).strip() == b"200000"
            assert json.loads(await _drain(streams["error"])) == rc.SUCCESS

    asyncio.run(main())


def test_a_terminal_is_sized_by_the_resize_stream() -> None:
    async def main() -> None:
        async with kubelet() as base, session(base, "/exec", _query(
                "sh", "-c", "read line; stty size", input=True, output=True, tty=True), rc.V4) as (connection, _):
            streams = await _open(connection, "error", "stdin", "stdout", "resize")
            # two sizes in one write, as a JSON stream: the last one counts
            await streams["resize"].write(b'{"Width":80,"Height":24}\n{"Width":101,')
            await streams["resize"].write(b'"Height":33}\n')
            await asyncio.sleep(0.2)
            await streams["stdin"].write(b"go\r")
            assert b"33 101" in await _drain(streams["stdout"])

    asyncio.run(main())


def test_streams_the_client_does_not_open_in_time_end_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spdystreams, "STREAM_CREATION_TIMEOUT", 0.2)

    async def main() -> None:
        async with kubelet() as base, session(base, "/exec", _query("true", output=True), rc.V4) as (connection, _):
            await _open(connection, "error")  # no stdout stream
            assert await asyncio.wait_for(connection.accept(), 5) is None  # the server ends the connection
            assert connection.closed

    asyncio.run(main())


def test_a_protocol_the_server_does_not_speak_is_refused_403() -> None:
    async def main() -> None:
        async with kubelet() as base:
            with pytest.raises(httpupgrade.UpgradeRefused) as refused:
                async with session(base, "/exec", _query("true", output=True), "channel.k8s.io"):
                    pass
            assert refused.value.status == 403 and b"unable to negotiate protocol" in refused.value.body

    asyncio.run(main())


def test_a_client_that_goes_away_takes_its_command_with_it(tmp_path: object) -> None:
    async def main() -> None:
        async with kubelet() as base:
            async with session(base, "/exec", _query("sh", "-c", "echo $$; exec sleep 600", output=True),
                               rc.V4) as (connection, _):
                streams = await _open(connection, "error", "stdout")
                pid = int((await asyncio.wait_for(streams["stdout"].read(), 10)).strip())
            # the connection is gone (closed by the context): the sleep is killed

            def gone() -> bool:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                return False

            await wait_until_async(gone, timeout=10, message="the sleep killed with its client")

    asyncio.run(main())


def test_port_forward_pairs_streams_by_request_id_and_reports_a_refused_port() -> None:
    async def main() -> None:
        async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1024):
                writer.write(data.upper())
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(upper, "127.0.0.1", 0)
        open_port = str(server.sockets[0].getsockname()[1])
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            closed_port = str(spare.getsockname()[1])
        async with server, kubelet() as base, session(base, "/portForward", [], spdystreams.PORT_FORWARD) as (
                connection, protocol):
            assert protocol == spdystreams.PORT_FORWARD
            pairs = []
            for request_id, port in (("0", open_port), ("1", closed_port)):
                error = await connection.open_stream({"streamtype": "error", "port": port, "requestid": request_id})
                data = await connection.open_stream({"streamtype": "data", "port": port, "requestid": request_id})
                pairs.append((error, data))
            (error, data), (refused_error, refused_data) = pairs
            await data.write(b"hello", fin=True)  # the half-close reaches the pod's end as EOF
            assert await _drain(data) == b"HELLO"
            assert await _drain(error) == b""
            message = (await _drain(refused_error)).decode()
            assert f"error forwarding port {closed_port} to pod default/web" in message
            assert "connection refused" in message
            assert await _drain(refused_data) == b""

    asyncio.run(main())
