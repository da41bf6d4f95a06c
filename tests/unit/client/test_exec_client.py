"""control.client.exec_in_pod against a server speaking the channel protocol (the kubelet's own session
code, run where the test runs): output, exit code, stdin with its end, and a refused session's Status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from control.client import BadRequest, Client, ExecIO, exec_in_pod
from control.kubelet import streaming
from control.kubelet.streaming import PodProcessTarget, Streams

PATH = "/api/v1/namespaces/default/pods/web/exec"


async def _exec(request: web.Request) -> web.StreamResponse:
    if not request.query.getall("command", []):
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
                                  "reason": "BadRequest", "message": "you must specify at least 1 command"},
                                 status=400)
    return await streaming.exec_session(request, PodProcessTarget("unused"), request.query.getall("command"),
                                        Streams.from_query(request.query), enter=lambda target, argv: argv)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _run(test):  # type: ignore[no-untyped-def]
    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", PATH, _exec)
        async with TestServer(app) as server, Client(str(server.make_url(""))) as client:
            await test(client)

    asyncio.run(main())


def test_output_and_exit_code() -> None:
    async def test(client: Client) -> None:
        out: list[bytes] = []
        err: list[bytes] = []
        code = await exec_in_pod(client, "default", "web", ["sh", "-c", "echo out; echo err >&2; exit 3"],
                                 io=ExecIO(stdout=out.append, stderr=err.append))
        assert (code, b"".join(out), b"".join(err)) == (3, b"out\n", b"err\n")

    _run(test)


def test_stdin_reaches_the_command_and_its_end_is_eof() -> None:
    async def test(client: Client) -> None:
        out: list[bytes] = []
        code = await exec_in_pod(client, "default", "web", ["wc", "-l"],
                                 io=ExecIO(stdin=_chunks(b"a\n", b"b\n", b"c\n"), stdout=out.append))
        assert (code, b"".join(out).strip()) == (0, b"3")

    _run(test)


def test_a_refused_session_raises_the_status_of_the_answer() -> None:
    async def test(client: Client) -> None:
        with pytest.raises(BadRequest, match="at least 1 command"):
            await exec_in_pod(client, "default", "web", [])

    _run(test)


def test_the_terminal_size_goes_out_before_any_key() -> None:
    async def test(client: Client) -> None:
        out: list[bytes] = []

        async def sizes() -> AsyncIterator[tuple[int, int]]:
            yield 90, 30

        async def keys() -> AsyncIterator[bytes]:
            yield b"go\r"

        code = await exec_in_pod(client, "default", "web", ["sh", "-c", "read k; stty size"], tty=True,
                                 io=ExecIO(stdin=keys(), stdout=out.append, sizes=sizes()))
        assert code == 0 and b"30 90" in b"".join(out)

    _run(test)
