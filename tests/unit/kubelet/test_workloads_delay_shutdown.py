"""agnhost netexec's --delay-shutdown: told to stop, the built-in server goes on answering for the delay,
then exits 0; past the grace period it is killed (137). On a real socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

from control.kubelet.workloads import _HTTP, ContainerLog, NetexecContainer, make_container


async def _serving(container: NetexecContainer) -> int:
    """Serve CONTAINER's HTTP on 127.0.0.1 as start() would inside a pod; the port."""
    server = await asyncio.get_running_loop().create_server(lambda: _HTTP(container.http, container.log),
                                                            "127.0.0.1", 0)
    container._servers.append(server)
    container.started_at = "2026-01-01T00:00:00Z"
    return int(server.sockets[0].getsockname()[1])


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def test_netexec_takes_the_flag(tmp_path: Path) -> None:
    container = make_container({"name": "web", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                                "args": ["netexec", "--http-port=8080", "--delay-shutdown=7"]},
                               netns="unused", hostname="web-1", log=ContainerLog(tmp_path / "log"), env={})
    assert isinstance(container, NetexecContainer) and container.delay_shutdown == 7


def test_it_answers_during_the_delay_then_exits_zero(tmp_path: Path) -> None:
    async def main() -> tuple[bytes, bool, int | None]:
        container = NetexecContainer("web", ContainerLog(tmp_path / "log"), "unused", "web-1", 8080, 0,
                                     delay_shutdown=1)
        port = await _serving(container)
        stopping = asyncio.create_task(container.stop(30))
        await asyncio.sleep(0)
        answer = await _get(port)
        still_running = not stopping.done()
        await stopping
        return answer, still_running, container.exit_code

    answer, still_running, code = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"web-1")
    assert still_running and code == 0
    assert "Sleeping 1 seconds before terminating" in (tmp_path / "log").read_text()


def test_past_the_grace_period_it_is_killed(tmp_path: Path) -> None:
    async def main() -> int | None:
        container = NetexecContainer("web", ContainerLog(tmp_path / "log"), "unused", "web-1", 8080, 0,
                                     delay_shutdown=60)
        await _serving(container)
        await container.stop(0.05)
        return container.exit_code

    assert asyncio.run(main()) == 137


def test_without_the_flag_it_exits_at_once_on_sigterm(tmp_path: Path) -> None:
    async def main() -> int | None:
        container = NetexecContainer("web", ContainerLog(tmp_path / "log"), "unused", "web-1", 8080, 0)
        await _serving(container)
        await container.stop(30)
        return container.exit_code

    assert asyncio.run(main()) == 143
