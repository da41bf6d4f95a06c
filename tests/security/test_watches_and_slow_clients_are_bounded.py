"""Defect 10: watches with timeoutSeconds=nan|inf|1e308 never ended, and a client sending its headers byte by byte
was kept forever. timeoutSeconds is a finite number clamped to 2 * minRequestTimeout, the default is random in
[minRequestTimeout, 2 * minRequestTimeout] (upstream's ListResource), and a connection that has not sent a whole
request within the header-read timeout is closed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from control.apiserver.server import MAX_WATCH_TIMEOUT, MIN_REQUEST_TIMEOUT, _watch_timeout
from tests.security.apiserver_process import RunningAPIServer, apiserver_in_process

PODS = "/api/v1/namespaces/default/pods"


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "x"])
def test_timeouts_that_never_end_are_refused(apiserver: RunningAPIServer, value: str) -> None:
    status, _, body = asyncio.run(apiserver.call("GET", PODS, params={"watch": "1", "timeoutSeconds": value}))
    assert status == 400 and body["reason"] == "BadRequest" and "timeoutSeconds" in body["message"], body


def test_huge_timeouts_are_clamped_and_the_default_is_randomized() -> None:
    assert MIN_REQUEST_TIMEOUT == 1800 and MAX_WATCH_TIMEOUT == 3600
    assert _watch_timeout("1e308") == MAX_WATCH_TIMEOUT
    assert _watch_timeout("99999999999999999999") == MAX_WATCH_TIMEOUT
    assert _watch_timeout("5") == 5
    random.seed(7)
    defaults = [_watch_timeout(value) for value in (None, "", "0") * 30]
    assert all(MIN_REQUEST_TIMEOUT <= t <= 2 * MIN_REQUEST_TIMEOUT for t in defaults)
    assert len(set(defaults)) == len(defaults)  # spread out, not one fixed value


def test_a_watch_with_a_timeout_ends_by_itself(apiserver: RunningAPIServer) -> None:
    async def scenario() -> None:
        async with apiserver.session() as session, session.get(
                PODS, params={"watch": "1", "timeoutSeconds": "1"}) as resp:
            assert resp.status == 200
            await resp.read()  # returns only once the server ends the stream (the client timeout would fail it)

    asyncio.run(scenario())


def test_a_client_sending_headers_byte_by_byte_is_cut_off(tmp_path: Path) -> None:
    """The server closes the connection while the slow client is still sending its (endless) headers; an honest
    client on a kept-alive connection is served twice. The 0.5 s timeout only makes the test quick: the wait is for
    the connection to close, and the client would need ~10 minutes to finish its headers."""
    async def slowloris(port: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 6000 + b"\r\n\r\n"
        sent = 0
        try:
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.1)
                if reader.at_eof() or writer.is_closing():  # the server closed the connection
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()
        return sent

    async def honest(port: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = []
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            lines.append(await reader.readline())
            while (await reader.readline()) != b"\r\n":
                pass
            await reader.readexactly(2)  # "ok"
        writer.close()
        return lines

    async def scenario() -> None:
        async with apiserver_in_process(tmp_path, header_read_timeout=0.5) as port:
            sent = await asyncio.wait_for(slowloris(port), timeout=120)
            assert sent < 6000, "the slow client was never cut off"
            assert await honest(port) == [b"HTTP/1.1 200 OK\r\n"] * 2

    asyncio.run(scenario())

