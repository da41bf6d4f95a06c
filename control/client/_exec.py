"""`pods/exec` from the client's side: a command run in a pod's container through the apiserver over
WebSocket (v5.channel.k8s.io, v4 when that is all the server offers), as kubectl exec runs it.

    code = await exec_in_pod(client, "default", "web", ["sh", "-c", "exit 3"], io=ExecIO(stdout=out.write))

The exit code comes back from the error channel's Status (control.api.remotecommand); a session that
failed for any other reason raises ExecError with the Status' message, and a refused one the
ApiError of the apiserver's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType

from control.api import remotecommand as rc
from control.client._client import Client
from control.client._errors import ApiConnectionError, KubeClientError, error_from_response
from control.client._resource import PODS


class ExecError(KubeClientError):
    """The session ended without an exit code (the command could not start, the connection broke)."""


def _discard(data: bytes) -> None:
    pass


@dataclass
class ExecIO:
    """The session's ends on this side. STDIN yields chunks until its end (then, on v5, the command sees
    EOF); SIZES yields (width, height) of a terminal as it changes; STDOUT and STDERR take output."""

    stdin: AsyncIterator[bytes] | None = None
    stdout: Callable[[bytes], None] = _discard
    stderr: Callable[[bytes], None] = _discard
    sizes: AsyncIterator[tuple[int, int]] | None = None


async def _open(client: Client, path: str, params: list[tuple[str, str]]) -> aiohttp.ClientWebSocketResponse:
    session = client._get_session()
    url = client._url(path)
    try:
        ws: aiohttp.ClientWebSocketResponse = await session.ws_connect(
            url, params=params, protocols=rc.PROTOCOLS, headers=client._headers(), heartbeat=None, max_msg_size=0,
            **client._request_kwargs())
        return ws
    except aiohttp.WSServerHandshakeError as exc:
        # the handshake error carries no body: the same request without the upgrade answers the reason
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with session.get(url, params=params, headers=client._headers(),
                                   **client._request_kwargs()) as answer:
                raise error_from_response(answer.status, await answer.read()) from None
        raise error_from_response(exc.status, b"") from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ApiConnectionError(f"exec {url.path}: {exc or type(exc).__name__}") from exc


async def exec_in_pod(client: Client, namespace: str, pod: str, command: list[str], *, container: str | None = None,
                      io: ExecIO | None = None, tty: bool = False) -> int:
    """Run COMMAND in POD (its only container, or CONTAINER) and return its exit code."""
    io = io or ExecIO()
    params = [("command", c) for c in command] + [("stdout", "true")]
    if container:
        params.append(("container", container))
    if io.stdin is not None:
        params.append(("stdin", "true"))
    if tty:
        params.append(("tty", "true"))
    else:
        params.append(("stderr", "true"))
    ws = await _open(client, PODS.path(namespace, pod, "exec"), params)
    loop = asyncio.get_running_loop()

    async def send_stdin() -> None:
        assert io.stdin is not None
        async for chunk in io.stdin:
            await ws.send_bytes(rc.encode(rc.STDIN, chunk))
        if ws.protocol == rc.V5:
            await ws.send_bytes(rc.encode(rc.CLOSE, bytes((rc.STDIN,))))

    async def send_size(width: int, height: int) -> None:
        await ws.send_bytes(rc.encode(rc.RESIZE, json.dumps({"Width": width, "Height": height}).encode()))

    async def send_sizes() -> None:
        assert io.sizes is not None
        async for size in io.sizes:
            await send_size(*size)

    if io.sizes is not None:
        # the terminal's size first, before any key: the command starts out knowing it
        with contextlib.suppress(StopAsyncIteration):
            await send_size(*await anext(io.sizes))
    senders = [loop.create_task(send()) for send, given in ((send_stdin, io.stdin), (send_sizes, io.sizes))
               if given is not None]
    status = None
    try:
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                continue
            channel, data = rc.decode(message.data)
            if channel == rc.STDOUT:
                io.stdout(data)
            elif channel == rc.STDERR:
                io.stderr(data)
            elif channel == rc.ERROR:
                status = json.loads(data)
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        await ws.close()
    if status is None:
        raise ExecError(f"the exec session in pod {namespace}/{pod} ended without a status: the connection broke")
    code = rc.exit_code_of(status)
    if code is None:
        raise ExecError(status.get("message") or f"exec in pod {namespace}/{pod} failed")
    return code
