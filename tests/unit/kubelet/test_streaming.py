"""The kubelet's exec and attach sessions over a real WebSocket (aiohttp on loopback), with real
processes: output on its channels, the exit code in the error channel's Status, stdin and its v5
close, a terminal and its resize, a client that goes away (its command is killed), many sessions at
once, and attach following a container's log. The command runs where the test runs (the `enter`
seam), so no namespace and no privilege is needed."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from control.api import remotecommand as rc
from control.kubelet import streaming
from control.kubelet.streaming import PodProcessTarget, SessionError, Streams
from tests.waiting import wait_until_async

TARGET = PodProcessTarget("unused", {"GREETING": "hello"})


def _here(target: PodProcessTarget, argv: list[str]) -> list[str]:
    return argv


@asynccontextmanager
async def kubelet(log: Path | None = None, ended: list[bool] | None = None) -> AsyncIterator[TestClient]:
    async def exec_(request: web.Request) -> web.StreamResponse:
        try:
            return await streaming.exec_session(request, TARGET, request.query.getall("command", []),
                                                Streams.from_query(request.query), enter=_here)
        except SessionError as exc:
            return web.Response(status=exc.code, text=exc.message)

    async def attach(request: web.Request) -> web.StreamResponse:
        assert log is not None and ended is not None
        return await streaming.attach_session(request, log, lambda: ended[0], None, Streams.from_query(request.query))

    app = web.Application()
    app.router.add_get("/exec", exec_)
    app.router.add_get("/attach", attach)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def _query(*command: str, **flags: bool) -> list[tuple[str, str]]:
    return [("command", c) for c in command] + [(k, "1") for k, v in flags.items() if v]


async def _collect(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict[int, bytes], dict[str, Any] | None]:
    """Every channel's data until the server closes, and the error channel's Status."""
    out: dict[int, bytes] = {}
    status = None
    async for message in ws:
        assert message.type == WSMsgType.BINARY
        channel, data = rc.decode(message.data)
        if channel == rc.ERROR:
            status = json.loads(data)
        else:
            out[channel] = out.get(channel, b"") + data
    return out, status


def test_output_goes_on_its_channels_and_the_exit_code_in_the_status() -> None:
    async def main() -> None:
        async with kubelet() as client:
            ws = await client.ws_connect("/exec", params=_query(
                "sh", "-c", 'echo "$GREETING out"; echo err >&2; exit 3', stdout=True, stderr=True),
                protocols=(rc.V4,))
            assert ws.protocol == rc.V4
            out, status = await _collect(ws)
            assert out == {rc.STDOUT: b"hello out\n", rc.STDERR: b"err\n"}
            assert status is not None and rc.exit_code_of(status) == 3
            assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]

    asyncio.run(main())


def test_piped_stdin_ends_with_the_v5_close_and_the_command_sees_eof() -> None:
    async def main() -> None:
        async with kubelet() as client:
            ws = await client.ws_connect("/exec", params=_query("cat", stdin=True, stdout=True, stderr=True),
                                         protocols=(rc.V5, rc.V4))
            assert ws.protocol == rc.V5
            await ws.send_bytes(rc.encode(rc.STDIN, b"one\n"))
            await ws.send_bytes(rc.encode(rc.STDIN, b"two\n"))
            await ws.send_bytes(rc.encode(rc.CLOSE, bytes((rc.STDIN,))))
            out, status = await _collect(ws)
            assert out == {rc.STDOUT: b"one\ntwo\n"}
            assert status == {"metadata": {}, "status": "Success"}

    asyncio.run(main())


def test_a_terminal_is_sized_by_resize_frames_and_carries_one_output() -> None:
    async def main() -> None:
        async with kubelet() as client:
            # stderr asked for with a tty is dropped, as upstream does: a terminal has one output
            ws = await client.ws_connect("/exec", params=_query(
                "sh", "-c", "read line; stty size; test -t 0 && echo tty; echo to-err >&2",
                stdin=True, stdout=True, stderr=True, tty=True), protocols=(rc.V5,))
            await ws.send_bytes(rc.encode(rc.RESIZE, b'{"Width": 123, "Height": 45}'))
            await ws.send_bytes(rc.encode(rc.STDIN, b"go\r"))
            out, status = await _collect(ws)
            assert set(out) == {rc.STDOUT}
            lines = out[rc.STDOUT].replace(b"\r", b"").split(b"\n")
            assert b"45 123" in lines and b"tty" in lines and b"to-err" in lines
            assert status is not None and rc.exit_code_of(status) == 0

    asyncio.run(main())


def test_a_client_that_goes_away_takes_its_command_with_it() -> None:
    async def main() -> None:
        async with kubelet() as client:
            ws = await client.ws_connect("/exec", params=_query("sh", "-c", "echo $$; exec sleep 600", stdout=True),
                                         protocols=(rc.V4,))
            message = await ws.receive()
            pid = int(rc.decode(message.data)[1])
            await ws.close()

            def gone() -> bool:  # killed and reaped by the session
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                return False

            await wait_until_async(gone, timeout=10, message=f"the command (pid {pid}) killed")

    asyncio.run(main())


def test_many_sessions_at_once_each_get_their_own_output() -> None:
    async def main() -> None:
        async with kubelet() as client:
            async def one(i: int) -> tuple[bytes, int | None]:
                ws = await client.ws_connect("/exec", params=_query("sh", "-c", f"echo {i}; exit {i % 4}",
                                                                    stdout=True), protocols=(rc.V4,))
                out, status = await _collect(ws)
                return out.get(rc.STDOUT, b""), rc.exit_code_of(status or {})

            results = await asyncio.gather(*(one(i) for i in range(24)))
            assert results == [(f"{i}\n".encode(), i % 4) for i in range(24)]

    asyncio.run(main())


def test_a_command_that_cannot_start_fails_in_the_status() -> None:
    async def main() -> None:
        target = PodProcessTarget("unused", workdir="/nonexistent-directory-for-the-test")

        async def exec_(request: web.Request) -> web.StreamResponse:
            return await streaming.exec_session(request, target, ["true"], Streams(False, True, False, False),
                                                enter=_here)

        app = web.Application()
        app.router.add_get("/exec", exec_)
        async with TestClient(TestServer(app)) as client:
            ws = await client.ws_connect("/exec", protocols=(rc.V4,))
            out, status = await _collect(ws)
            assert out == {} and status is not None and status["status"] == "Failure"
            assert "No such file or directory" in status["message"] and rc.exit_code_of(status) is None

    asyncio.run(main())


def test_requests_that_are_not_sessions_are_refused_before_anything_runs() -> None:
    async def main() -> None:
        async with kubelet() as client:
            plain = await client.get("/exec", params=_query("true", stdout=True))
            assert plain.status == 400 and await plain.text() == streaming.UPGRADE_REQUIRED
            no_streams = await client.get("/exec", params=_query("true"))
            assert no_streams.status == 400 and "at least 1 of stdin, stdout, stderr" in await no_streams.text()
            no_command = await client.get("/exec", params=_query(stdout=True))
            assert no_command.status == 400 and "at least 1 command" in await no_command.text()
            try:
                await client.ws_connect("/exec", params=_query("true", stdout=True), protocols=("channel.k8s.io",))
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 400
            else:
                raise AssertionError("a subprotocol that is not served was accepted")

    asyncio.run(main())


def test_attach_streams_what_the_container_writes_from_now_on(tmp_path: Path) -> None:
    async def main() -> None:
        log = tmp_path / "c.log"
        log.write_bytes(b"before the attach\n")
        ended = [False]
        async with kubelet(log, ended) as client:
            ws = await client.ws_connect("/attach", params=_query(stdout=True), protocols=(rc.V5,))
            with log.open("ab") as handle:
                handle.write(b"after the attach\n")
            message = await ws.receive()
            assert rc.decode(message.data) == (rc.STDOUT, b"after the attach\n")
            with log.open("ab") as handle:
                handle.write(b"last words\n")
            ended[0] = True  # the container exits: what it wrote last still arrives, then Success
            out, status = await _collect(ws)
            assert out == {rc.STDOUT: b"last words\n"}
            assert status == {"metadata": {}, "status": "Success"}

    asyncio.run(main())


def test_port_forward_carries_each_port_on_its_channels_and_reports_a_refused_one() -> None:
    async def main() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1024):
                writer.write(data.upper())
                await writer.drain()
                if b"bye" in data:
                    break
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        open_port = server.sockets[0].getsockname()[1]
        with socket.socket() as spare:  # a port nothing listens on
            spare.bind(("127.0.0.1", 0))
            closed_port = spare.getsockname()[1]

        async def connect(target: PodProcessTarget, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", port)

        async def forward(request: web.Request) -> web.StreamResponse:
            ports = streaming.parse_ports(request.query.getall("ports", []))
            return await streaming.portforward_session(request, TARGET, "default/web", ports, connect=connect)

        app = web.Application()
        app.router.add_get("/portForward", forward)
        async with server, TestClient(TestServer(app)) as client:
            ws = await client.ws_connect("/portForward", params={"ports": f"{open_port},{closed_port}"},
                                         protocols=(rc.V5, rc.V4))
            assert ws.protocol == rc.V4  # port-forward has no v5
            announced = [rc.decode((await ws.receive()).data) for _ in range(4)]
            assert announced == [(0, open_port.to_bytes(2, "little")), (1, open_port.to_bytes(2, "little")),
                                 (2, closed_port.to_bytes(2, "little")), (3, closed_port.to_bytes(2, "little"))]
            await ws.send_bytes(rc.encode(0, b"hello bye"))
            out: dict[int, bytes] = {}
            async for message in ws:  # until the session ends, once both ports are done
                channel, data = rc.decode(message.data)
                out[channel] = out.get(channel, b"") + data
            assert out[0] == b"HELLO BYE"
            assert b"connection refused" in out[3] and f"port {closed_port}".encode() in out[3]

    asyncio.run(main())


def test_port_lists_are_numbers_in_range_given_once() -> None:
    assert streaming.parse_ports(["80,8080", "9000"]) == [80, 8080, 9000]
    for bad, message in ((["0"], "invalid port"), (["http"], "invalid port"), (["80,80"], "twice"), ([], "at least")):
        try:
            streaming.parse_ports(bad)
        except SessionError as exc:
            assert exc.code == 400 and message in exc.message
        else:
            raise AssertionError(f"{bad} was accepted")


def test_keys_for_a_terminal_nobody_reads_do_not_stall_other_sessions() -> None:
    async def main() -> None:
        async with kubelet() as client:
            busy = await client.ws_connect("/exec", params=_query(
                "sh", "-c", "sleep 1; echo bye", stdin=True, stdout=True, tty=True), protocols=(rc.V5,))
            for _ in range(64):  # far more than a terminal's input buffer holds
                await busy.send_bytes(rc.encode(rc.STDIN, b"x" * 4096 + b"\r"))
            other = await client.ws_connect("/exec", params=_query("echo", "other", stdout=True), protocols=(rc.V4,))
            out, status = await asyncio.wait_for(_collect(other), 30)
            assert out == {rc.STDOUT: b"other\n"} and rc.exit_code_of(status or {}) == 0
            out, status = await asyncio.wait_for(_collect(busy), 30)
            assert b"bye" in out[rc.STDOUT] and rc.exit_code_of(status or {}) == 0

    asyncio.run(main())
