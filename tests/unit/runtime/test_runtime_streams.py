"""Exec, attach and port-forward served by the node runtime and relayed by the kubelet's streamrelay:
the runtime on its real Unix socket (FakeKernel sandboxes), a kubelet-side aiohttp app on loopback
that asks the runtime for the session and splices the client's WebSocket to it, and real processes
(exec's command and the `stdin: true` container run where the test runs, the `enter` seam). A relay
that goes away (the kubelet restarting) leaves the container, its stdin and its attachability in the
runtime. No privileges needed."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from control.api import remotecommand as rc
from control.kubelet import streamrelay
from control.kubelet.streaming import PodProcessTarget
from control.runtime import Runtime, RuntimeCallError, RuntimeClient
from control.runtime.containers import ContainerLog, ProcessContainer, RunAs, make_container
from control.runtime.server import serving
from control.runtime.terminal import TerminalContainer
from tests.unit.kubelet.test_streaming import _collect
from tests.unit.runtime.test_runtime_api import CIDR, CLUSTER, NODE, node_kernel, sandbox_body
from tests.waiting import wait_until_async


def _here(target: PodProcessTarget, argv: list[str]) -> list[str]:
    return argv


class _LocalProcess(ProcessContainer):
    """A process container run where the test runs (no namespaces to enter)."""

    def command_line(self) -> list[str]:
        return self.argv


class _LocalTerminal(TerminalContainer):
    """A `tty: true` container run where the test runs, on its pseudo-terminal."""

    def command_line(self) -> list[str]:
        return self.argv


def _local_containers(spec: dict[str, Any], *, netns: str, hostname: str, log: ContainerLog, env: dict[str, str],
                      credentials: Path | None = None, run_as: RunAs = (None, None)) -> Any:
    made = make_container(spec, netns=netns, hostname=hostname, log=log, env=env, run_as=run_as)
    if isinstance(made, TerminalContainer):
        return _LocalTerminal(made.name, log, netns, made.argv, made.env, hostname=hostname, stdin=made.keeps_stdin)
    if isinstance(made, ProcessContainer):
        return _LocalProcess(made.name, log, netns, made.argv, made.env, hostname=hostname,
                             stdin=made.keeps_stdin)
    return made


@asynccontextmanager
async def runtime_at(tmp: Path) -> AsyncIterator[tuple[Runtime, RuntimeClient]]:
    runtime = Runtime(CLUSTER, NODE, CIDR, tmp / "node", kernel=node_kernel(), containers=_local_containers,
                      enter=_here, connect=lambda target, port: asyncio.open_connection("127.0.0.1", port))
    client = RuntimeClient(tmp / "runtime.sock")
    try:
        async with serving(runtime, tmp / "runtime.sock"):
            yield runtime, client
    finally:
        await client.close()
        for record in runtime.containers.values():
            await record.container.stop(0)


@asynccontextmanager
async def kubelet_relay(runtime: RuntimeClient) -> AsyncIterator[TestClient]:
    """The kubelet's part: ask the runtime for the session named by the path, relay the client there."""

    async def session(request: web.Request) -> web.StreamResponse:
        verb, body = request.match_info["verb"], json.loads(request.query.get("body", "{}"))
        answer = await runtime.call(verb, body)
        return await streamrelay.relay(request, runtime, answer["url"])

    app = web.Application()
    app.router.add_get("/{verb}", session)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _container(client: RuntimeClient, tmp: Path, spec: dict[str, Any], env: dict[str, str] | None = None) -> str:
    await client.call("RunPodSandbox", sandbox_body())
    made = await client.call("CreateContainer", {"podSandboxId": "uid-1", "spec": spec, "env": env or {},
                                                 "hostname": "web", "logPath": str(tmp / "app.log")})
    return str(made["containerId"])




def _body(**fields: Any) -> dict[str, str]:
    return {"body": json.dumps(fields)}


def test_exec_runs_in_the_runtime_with_the_containers_env_and_its_exit_code_comes_back(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime_at(tmp_path) as (_, client), kubelet_relay(client) as kubelet:
            cid = await _container(client, tmp_path, {"name": "app", "image": "busybox", "command": ["sleep", "3600"]},
                                   {"GREETING": "hello"})
            await client.call("StartContainer", {"containerId": cid})
            params = _body(containerId=cid, cmd=["sh", "-c", 'echo "$GREETING $HOSTNAME $PPID"; echo err >&2; exit 3'],
                           stdout=True, stderr=True)
            ws = await kubelet.ws_connect("/Exec", params=params, protocols=(rc.V5, rc.V4))
            assert ws.protocol == rc.V5  # chosen by the runtime, passed through the relay
            out, status = await _collect(ws)
            greeting, hostname, parent = out[rc.STDOUT].decode().split()
            assert (greeting, hostname, out[rc.STDERR]) == ("hello", "web", b"err\n")
            assert int(parent) == os.getpid()  # the runtime's child (here the test runs the runtime)
            assert status is not None and rc.exit_code_of(status) == 3

    asyncio.run(main())


def test_a_terminal_sized_by_resize_and_stdin_closed_by_v5_reach_the_runtimes_command(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime_at(tmp_path) as (_, client), kubelet_relay(client) as kubelet:
            cid = await _container(client, tmp_path, {"name": "app", "image": "busybox", "command": ["sleep", "3600"]})
            await client.call("StartContainer", {"containerId": cid})
            ws = await kubelet.ws_connect("/Exec", params=_body(
                containerId=cid, cmd=["sh", "-c", "read line; stty size; test -t 0 && echo tty"], stdin=True,
                stdout=True, tty=True), protocols=(rc.V5,))
            await ws.send_bytes(rc.encode(rc.RESIZE, b'{"Width": 123, "Height": 45}'))
            await ws.send_bytes(rc.encode(rc.STDIN, b"go\r"))
            out, status = await _collect(ws)
            lines = out[rc.STDOUT].replace(b"\r", b"").split(b"\n")
            assert b"45 123" in lines and b"tty" in lines
            assert status is not None and rc.exit_code_of(status) == 0
            # on pipes, the v5 close of stdin is the command's end of input
            ws = await kubelet.ws_connect("/Exec", params=_body(containerId=cid, cmd=["wc", "-l"], stdin=True,
                                                                 stdout=True), protocols=(rc.V5,))
            await ws.send_bytes(rc.encode(rc.STDIN, b"one\ntwo\n"))
            await ws.send_bytes(rc.encode(rc.CLOSE, bytes((rc.STDIN,))))
            out, status = await _collect(ws)
            assert out[rc.STDOUT].strip() == b"2" and status == {"metadata": {}, "status": "Success"}

    asyncio.run(main())


def test_fifty_sessions_at_once_each_get_their_own_output_and_exit_code(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime_at(tmp_path) as (runtime, client), kubelet_relay(client) as kubelet:
            cid = await _container(client, tmp_path, {"name": "app", "image": "busybox", "command": ["sleep", "3600"]})
            await client.call("StartContainer", {"containerId": cid})

            async def one(i: int) -> tuple[bytes, int | None]:
                ws = await kubelet.ws_connect("/Exec", params=_body(
                    containerId=cid, cmd=["sh", "-c", f"echo {i}; exit {i % 4}"], stdout=True), protocols=(rc.V4,))
                out, status = await _collect(ws)
                return out.get(rc.STDOUT, b""), rc.exit_code_of(status) if status else None

            results = await asyncio.gather(*(one(i) for i in range(50)))
            assert results == [(f"{i}\n".encode(), i % 4) for i in range(50)]
            assert len(runtime.streams) == 0  # every URL used once

    asyncio.run(main())


def test_a_client_that_goes_away_mid_stream_takes_its_command_with_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime_at(tmp_path) as (_, client), kubelet_relay(client) as kubelet:
            cid = await _container(client, tmp_path, {"name": "app", "image": "busybox", "command": ["sleep", "3600"]})
            await client.call("StartContainer", {"containerId": cid})
            command = ["sh", "-c", "echo $$; exec sleep 600"]
            ws = await kubelet.ws_connect("/Exec", params=_body(containerId=cid, cmd=command, stdout=True),
                                          protocols=(rc.V4,))
            pid = int(rc.decode((await ws.receive()).data)[1])
            await ws.close()

            def gone() -> bool:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                return False

            await wait_until_async(gone, timeout=20, message=f"the command (pid {pid}) killed")

    asyncio.run(main())


def test_a_session_url_serves_once_and_refusals_name_the_object(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime_at(tmp_path) as (runtime, client):
            cid = await _container(client, tmp_path, {"name": "app", "image": "busybox", "command": ["sleep", "3600"]})
            try:
                await client.call("Exec", {"containerId": cid, "cmd": ["true"], "stdout": True})
                raise AssertionError("exec in a container not started was served")
            except RuntimeCallError as exc:
                assert exc.code == 400 and cid in exc.message and "not running" in exc.message
            await client.call("StartContainer", {"containerId": cid})
            for bad, words in (({"containerId": cid, "cmd": [], "stdout": True}, "'cmd'"),
                               ({"containerId": cid, "cmd": ["true"]}, "at least 1 of stdin, stdout, stderr"),
                               ({"containerId": "nope", "cmd": ["true"], "stdout": True}, "'nope' does not exist")):
                try:
                    await client.call("Exec", bad)
                    raise AssertionError(f"Exec {bad} was served")
                except RuntimeCallError as exc:
                    assert words in exc.message
            url = (await client.call("Exec", {"containerId": cid, "cmd": ["true"], "stdout": True}))["url"]
            assert len(runtime.streams) == 1
            connector = aiohttp.UnixConnector(path=str(tmp_path / "runtime.sock"))
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"http://runtime{url}") as first:  # no upgrade: refused, URL spent
                    assert first.status == 400 and await first.text() == "Upgrade request required"
                async with session.get(f"http://runtime{url}") as again:
                    assert again.status == 404 and "unknown or expired" in await again.text()

    asyncio.run(main())


def test_the_runtime_owns_a_stdin_container_so_attach_survives_the_relay_going_away(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime_at(tmp_path) as (runtime, client):
            spec = {"name": "talk", "image": "busybox", "command": ["cat"], "stdin": True}
            await client.call("RunPodSandbox", sandbox_body())
            log = tmp_path / "talk.log"
            cid = (await client.call("CreateContainer", {"podSandboxId": "uid-1", "spec": spec, "env": {},
                                                         "logPath": str(log)}))["containerId"]
            await client.call("StartContainer", {"containerId": cid})
            attach = _body(containerId=cid, stdin=True, stdout=True, stderr=True)
            for word in (b"before", b"after"):  # a kubelet before its restart, then the one after it
                async with kubelet_relay(client) as kubelet:
                    ws = await kubelet.ws_connect("/Attach", params=attach, protocols=(rc.V5,))
                    await ws.send_bytes(rc.encode(rc.STDIN, word + b"\n"))
                    channel, data = rc.decode((await ws.receive()).data)
                    assert (channel, data) == (rc.STDOUT, word + b"\n")
                    # the client's end of input is not the container's: cat goes on
                    await ws.send_bytes(rc.encode(rc.CLOSE, bytes((rc.STDIN,))))
                    await ws.close()
                assert runtime.containers[cid].container.running
            assert log.read_bytes().count(b" stdout F ") == 2

    asyncio.run(main())


def test_attach_with_a_terminal_sizes_the_containers_terminal_as_the_client_resizes(tmp_path: Path) -> None:
    async def main() -> None:
        async with runtime_at(tmp_path) as (runtime, client), kubelet_relay(client) as kubelet:
            spec = {"name": "shell", "image": "busybox", "stdin": True, "tty": True,
                    "command": ["sh", "-c", "stty size; while read line; do echo size $(stty size); done"]}
            cid = await _container(client, tmp_path, spec)
            await client.call("StartContainer", {"containerId": cid})
            log = tmp_path / "app.log"
            await wait_until_async(lambda: b"24 80" in log.read_bytes() if log.exists() else False, timeout=20,
                                   message="the terminal's first size (80x24) in the container's log")
            for protocol, (width, height) in ((rc.V5, (123, 45)), (rc.V4, (90, 30))):
                ws = await kubelet.ws_connect("/Attach", params=_body(containerId=cid, stdin=True, stdout=True,
                                                                      tty=True), protocols=(protocol,))
                # kubectl's first resize goes out as the session starts, before any key typed
                await ws.send_bytes(rc.encode(rc.RESIZE, json.dumps({"Width": width, "Height": height}).encode()))
                await ws.send_bytes(rc.encode(rc.STDIN, b"now\r"))
                seen = b""
                while f"size {height} {width}".encode() not in seen:
                    message = await asyncio.wait_for(ws.receive(), 20)
                    assert message.type == aiohttp.WSMsgType.BINARY, (message, seen)
                    channel, data = rc.decode(message.data)
                    seen += data if channel == rc.STDOUT else b""
                await ws.close()
            await wait_until_async(lambda: len(runtime.streams) == 0, timeout=20, message="every session URL used")

    asyncio.run(main())


def test_port_forward_is_relayed_to_the_pods_port(tmp_path: Path) -> None:
    async def main() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.read(100)).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, runtime_at(tmp_path) as (_, client), kubelet_relay(client) as kubelet:
            await client.call("RunPodSandbox", sandbox_body())
            ws = await kubelet.ws_connect("/PortForward", params={**_body(podSandboxId="uid-1"), "ports": str(port)},
                                          protocols=(rc.V4,))
            announced = [rc.decode((await ws.receive()).data) for _ in range(2)]
            assert announced == [(0, port.to_bytes(2, "little")), (1, port.to_bytes(2, "little"))]
            await ws.send_bytes(rc.encode(0, b"through the runtime"))
            out = b""
            async for message in ws:
                channel, data = rc.decode(message.data)
                if channel == 0:
                    out += data
            assert out == b"THROUGH THE RUNTIME"

    asyncio.run(main())
