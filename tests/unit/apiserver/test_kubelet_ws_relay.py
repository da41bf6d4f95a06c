"""The apiserver's WebSocket relay between a client and a kubelet (kubeletproxy's exec / attach path),
between real aiohttp servers on loopback: the kubelet's frames and then its close (code and reason)
reach the client as the kubelet sent them; a kubelet connection that ends without a close reaches the
client as an error close, never a normal one (client-go reads a normal close with no Status before it
as success: such a session was an empty exit 0); and the kubelet's first frames, though sent at once,
reach the client only after it has answered the relay's ping (kubectl 1.30 discards frames that come
before it has made its streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from control.apiserver import kubeletproxy


async def kubelet_session(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io",))
    await ws.prepare(request)
    await ws.send_bytes(b"\x01output\n")
    if request.match_info["end"] == "closes":
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutting down")
    else:  # the connection just ends: no close frame (a kubelet or runtime that failed mid-session)
        assert request.transport is not None
        request.transport.close()
    return ws


@asynccontextmanager
async def apiserver() -> AsyncIterator[TestClient]:
    kubelet_app = web.Application()
    kubelet_app.router.add_get("/{end}", kubelet_session)
    async with TestServer(kubelet_app) as kubelet:

        async def relay(request: web.Request) -> web.WebSocketResponse:
            async with aiohttp.ClientSession() as session, \
                    session.ws_connect(kubelet.make_url("/" + request.match_info["end"]),
                                       protocols=("v5.channel.k8s.io",)) as to_kubelet:
                client = web.WebSocketResponse(protocols=("v5.channel.k8s.io",), autoping=False)  # as stream()
                await client.prepare(request)
                await kubeletproxy._relay(client, to_kubelet)
                return client

        app = web.Application()
        app.router.add_get("/{end}", relay)
        async with TestClient(TestServer(app)) as client:
            yield client


async def _session(client: TestClient, end: str) -> list[tuple[WSMsgType, object, object]]:
    ws = await client.ws_connect(f"/{end}", protocols=("v5.channel.k8s.io",), autoclose=False)
    seen = []
    while True:
        message = await ws.receive()
        seen.append((message.type, message.data, message.extra))
        if message.type != WSMsgType.BINARY:
            await ws.close()
            return seen


def test_the_kubelets_close_reaches_the_client_after_its_frames() -> None:
    async def main() -> None:
        async with apiserver() as client:
            assert await _session(client, "closes") == [
                (WSMsgType.BINARY, b"\x01output\n", ""),
                (WSMsgType.CLOSE, WSCloseCode.GOING_AWAY, "node shutting down")]

    asyncio.run(main())


def test_a_kubelet_connection_that_just_ends_is_no_normal_close_for_the_client() -> None:
    async def main() -> None:
        async with apiserver() as client:
            seen = await _session(client, "drops")
            assert seen[0] == (WSMsgType.BINARY, b"\x01output\n", "")
            assert seen[1][:2] == (WSMsgType.CLOSE, WSCloseCode.INTERNAL_ERROR)
            assert "without closing the session" in str(seen[1][2])

    asyncio.run(main())


def test_the_kubelets_first_frames_wait_for_the_clients_answer_to_a_ping() -> None:
    async def main() -> None:
        async with apiserver() as client:
            ws = await client.ws_connect("/closes", protocols=("v5.channel.k8s.io",), autoping=False)
            first = await ws.receive()
            assert first.type == WSMsgType.PING  # not the output the kubelet sent right away
            await ws.pong(first.data)
            assert (await ws.receive()).data == b"\x01output\n"
            await ws.close()

    asyncio.run(main())
