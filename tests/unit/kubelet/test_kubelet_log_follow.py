"""The kubelet API's followed log (HTTPS on loopback, the apiserver's kubelet client certificate): what
is there, then what comes, until the container exits; limitBytes over both; and a follower that goes
away ends the follow even while the log is quiet (no poller left behind)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control.apiserver.certs import make_certificates, make_kubelet_certificate
from control.client import Client
from control.kubelet import streaming
from control.kubelet.agent import Kubelet, NodeConfig, PodWorker
from control.kubelet.server import serve, server_context
from control.kubelet.workloads import ContainerLog, IdleContainer
from control.store import free_port
from netsim.fake import FakeKernel
from tests.waiting import wait_until_async

LOGS = "/containerLogs/default/web/app"


async def _with_kubelet(state: Path, test: Callable[[str, ssl.SSLContext, IdleContainer, Path],
                                                    Awaitable[None]]) -> None:
    make_certificates(state / "pki", addresses=["127.0.0.1"])
    pki = state / "pki"
    serving = make_kubelet_certificate(pki, "node-a", "127.0.0.1")
    config = NodeConfig(name="node-a", cluster="unit", address="127.0.0.1", pod_cidr="10.244.1.0/24",
                        state_dir=state / "kubelet")
    kubelet = Kubelet(Client("https://127.0.0.1:1"), config, kernel=FakeKernel())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
           "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "pause"}]}}
    worker = kubelet.workers["u-1"] = PodWorker(kubelet, pod)
    log = worker.logs_dir() / "app.log"
    container = IdleContainer("app", ContainerLog(log))
    await container.start()
    worker.containers["app"].container = container
    log.write_bytes(b"one\ntwo\n")
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "apiserver-kubelet-client.crt"), str(pki / "apiserver-kubelet-client.key"))
    port = free_port()
    runner = await serve(kubelet, "127.0.0.1", server_context(str(serving.cert), str(serving.key),
                                                              str(pki / "ca.crt")), port=port)
    try:
        await test(f"https://127.0.0.1:{port}", context, container, log)
    finally:
        await runner.cleanup()
        await kubelet.client.close()


def _append(log: Path, data: bytes) -> None:
    with log.open("ab") as handle:
        handle.write(data)


def test_a_followed_log_goes_on_until_the_container_exits(tmp_path: Path) -> None:
    async def test(url: str, context: ssl.SSLContext, container: IdleContainer, log: Path) -> None:
        async with aiohttp.ClientSession() as session, \
                session.get(url + LOGS, params={"follow": "true", "tailLines": "1"}, ssl=context) as response:
            assert response.status == 200
            assert await response.content.readline() == b"two\n"
            _append(log, b"three\n")
            assert await response.content.readline() == b"three\n"
            _append(log, b"last\n")
            await container.stop(0)
            assert await response.read() == b"last\n"  # then the end

    asyncio.run(_with_kubelet(tmp_path, test))


def test_limit_bytes_counts_what_was_there_and_what_came(tmp_path: Path) -> None:
    async def test(url: str, context: ssl.SSLContext, container: IdleContainer, log: Path) -> None:
        async with aiohttp.ClientSession() as session, \
                session.get(url + LOGS, params={"follow": "true", "limitBytes": "10"}, ssl=context) as response:
            assert await response.content.readexactly(8) == b"one\ntwo\n"
            _append(log, b"three\n")
            assert await response.read() == b"th"

    asyncio.run(_with_kubelet(tmp_path, test))


def test_a_follower_that_goes_away_ends_the_follow_of_a_quiet_log(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    finished: list[bool] = []
    follow = streaming.follow_file

    async def recorded(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        try:
            async for chunk in follow(*args, **kwargs):
                yield chunk
        finally:
            finished.append(True)

    monkeypatch.setattr(streaming, "follow_file", recorded)

    async def test(url: str, context: ssl.SSLContext, container: IdleContainer, log: Path) -> None:
        async with aiohttp.ClientSession() as session:
            response = await session.get(url + LOGS, params={"follow": "true"}, ssl=context)
            assert await response.content.readexactly(8) == b"one\ntwo\n"
            response.close()  # goes away; the container runs on and writes nothing
        await wait_until_async(lambda: finished == [True], timeout=10, message="the follow over")
        assert container.running

    asyncio.run(_with_kubelet(tmp_path, test))
