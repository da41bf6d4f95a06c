"""The real prober over loopback: httpGet by status code (200-399 pass, as upstream), tcpSocket by
connect, named ports from the container's ports, a probe with nothing to reach failing with a reason."""

from __future__ import annotations

import asyncio
import socket

from control.kubelet.probes import NetworkProber, ProbeResult


async def _serve(status: int) -> tuple[asyncio.AbstractServer, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a TCP probe: connect, then close
            writer.close()
            return
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _probe(probe: dict[str, object], ports: list[dict[str, object]] | None = None) -> ProbeResult:
    return await NetworkProber().run("readinessProbe", probe, pod="default/p", pod_ip="127.0.0.1", netns="unused",
                                     container={"name": "c", "ports": ports or []})


def test_http_probes_judge_by_status_code() -> None:
    async def main() -> list[ProbeResult]:
        results = []
        for status in (200, 302, 503):
            server, port = await _serve(status)
            async with server:
                results.append(await _probe({"httpGet": {"path": "/healthz", "port": port}}))
        return results

    ok, redirect, unavailable = asyncio.run(main())
    assert ok.ok and redirect.ok
    assert not unavailable.ok and unavailable.message == "HTTP probe failed with statuscode: 503"


def test_tcp_probes_connect_and_named_ports_resolve() -> None:
    async def main() -> tuple[ProbeResult, ProbeResult, ProbeResult]:
        server, port = await _serve(200)
        async with server:
            named = await _probe({"tcpSocket": {"port": "http"}}, [{"name": "http", "containerPort": port}])
            unknown = await _probe({"tcpSocket": {"port": "metrics"}})
        refused = await _probe({"tcpSocket": {"port": _free_port()}})
        return named, unknown, refused

    named, unknown, refused = asyncio.run(main())
    assert named.ok
    assert not unknown.ok and unknown.message == "port 'metrics' is not a port of the container"
    assert not refused.ok and "connect" in refused.message.lower()
