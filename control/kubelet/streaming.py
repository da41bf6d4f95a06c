"""`exec`, `attach` and `portForward` sessions of the kubelet API: a command run in a pod, a running
container's output, or TCP connections to the pod's ports, carried over one WebSocket in the channel
protocol of control.api.remotecommand, or over SPDY/3.1 streams mapped onto the same channels
(control.kubelet.spdystreams; open_channels picks by the request's Upgrade).

This is the session code upstream shares between the kubelet and container runtimes (its
pkg/kubelet/cri/streaming): the node runtime runs it for its containers (control.runtime.streams;
the kubelet splices the client to it, control.kubelet.streamrelay), and a kubelet without a runtime
runs it itself.

exec runs the command as a real process entered into the pod's namespaces (pod_command is the one
place that knows which: today the network namespace), with the container's env and workingDir; on
pipes, or with `tty` on a pseudo-terminal of its own that resize frames size. attach streams what the
container prints from now on (its log as it grows) and feeds stdin to a process container started
with `stdin: true`. portForward connects to each port on the pod's loopback from inside its network
namespace (pod_connection, its one entry point).

A session ends one of two ways: the command (or container) ends, and its Status goes on the error
channel before the close; or the client goes away, and the command is killed (its whole process
group), so that no session outlives its client.

    SessionError(code, message)   a request the kubelet refuses before the upgrade (400 / 404)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import json
import logging
import os
import signal
import socket
import struct
import termios
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from control.api import remotecommand as rc
from control.kubelet.logs import LineDecoder
from control.runtime.crilog import log_files
from netsim import namespaces

log = logging.getLogger("kubelet.streaming")

#: how long a command's output may keep flowing after the command itself exited (a background child
#: holding the pipe or terminal open): after it, the session ends anyway
DRAIN_AFTER_EXIT = 2.0
FOLLOW_INTERVAL = 0.1
READ_CHUNK = 32 * 1024
#: the answer to a session request that is not a WebSocket upgrade (the apiserver reads it as "would serve")
UPGRADE_REQUIRED = "Upgrade request required"


class SessionError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SessionEnded(Exception):
    """The session ended during its upgrade (a SPDY client that never opened its streams): RESPONSE,
    already sent, is the handler's answer."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("the session ended before it began")
        self.response = response


@dataclass(frozen=True)
class Streams:
    """Which of the standard streams a session carries, and whether on a terminal (the kubelet API's
    input/output/error/tty query flags; upstream's remotecommand.NewOptions)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Streams:
        def flag(*names: str) -> bool:
            return any(query.get(n, "").lower() in ("1", "true") for n in names)

        return cls(flag("input", "stdin"), flag("output", "stdout"), flag("error", "stderr"), flag("tty")).checked()

    def checked(self) -> Streams:
        """These streams as a session carries them; SessionError(400) for none at all."""
        if not (self.stdin or self.stdout or self.stderr):
            raise SessionError(400, "you must specify at least 1 of stdin, stdout, stderr")
        if self.tty and self.stderr:
            # a terminal has one output: upstream drops stderr rather than refuse
            return Streams(self.stdin, self.stdout, False, True)
        return self


@dataclass
class PodProcessTarget:
    """Where a command of a pod runs: the pod's namespaces and its container's environment."""

    netns: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    place: bool = False  # the pod has its UTS and mount namespaces (a sandbox of an older kubelet may not)
    uid: int | None = None  # the container's securityContext identity
    gid: int | None = None

    @property
    def host_cwd(self) -> str | None:
        """The directory to start the entering command in, as this process sees it: none for a pod with a
        mount namespace (the working directory is entered inside it, as the pod sees its files)."""
        return None if self.place else self.workdir


def pod_command(target: PodProcessTarget, argv: list[str]) -> list[str]:
    """ARGV as a command line entered into the pod's namespaces (network, and UTS and mount where the pod
    has them) as the container's user: the single entry point for exec."""
    return namespaces.command_in(target.netns, argv, uts=target.place, mnt=target.place, uid=target.uid,
                                 gid=target.gid, workdir=target.workdir if target.place else None)


async def pod_connection(target: PodProcessTarget, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to PORT on the pod's loopback, from inside its network namespace: port-forward's
    entry point into the pod, as pod_command is exec's."""
    with namespaces.entered(target.netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def accept(request: web.Request, served: tuple[str, ...] = rc.PROTOCOLS) -> web.WebSocketResponse:
    """The WebSocket upgrade, with the channel subprotocol the client offered (400 if none of SERVED)."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise SessionError(400, UPGRADE_REQUIRED)
    offered = [p for value in request.headers.getall("Sec-WebSocket-Protocol", []) for p in value.split(",")]
    protocol = rc.negotiate(offered, served)
    if protocol is None:
        raise SessionError(400, f"none of the offered subprotocols {offered or '(none)'} is served; "
                                f"use one of {', '.join(served)}")
    ws = web.WebSocketResponse(protocols=(protocol,), heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    return ws


class Channels:
    """A session's transport, in the channel terms of control.api.remotecommand: a WebSocket's frames
    (_WebSocketChannels) or SPDY's named streams (spdystreams.SpdyChannels)."""

    response: web.StreamResponse

    async def send(self, channel: int, data: bytes) -> None:
        raise NotImplementedError

    def incoming(self) -> AsyncIterator[tuple[int, bytes]]:
        """(channel, data) from the client until it goes away: STDIN data, RESIZE JSON, and
        (CLOSE, STDIN) once the client's input ended."""
        raise NotImplementedError

    async def finish(self, status: dict[str, Any]) -> None:
        """The session's Status on the error channel, then the end."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _WebSocketChannels(Channels):
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = self.response = ws

    async def send(self, channel: int, data: bytes) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_bytes(rc.encode(channel, data))

    async def incoming(self) -> AsyncIterator[tuple[int, bytes]]:
        async for message in self.ws:
            if message.type != WSMsgType.BINARY:
                continue  # text frames belong to the base64 protocols, which are not served
            try:
                channel, data = rc.decode(message.data)
            except rc.FrameError as exc:
                log.info("ignoring a bad frame from the client: %s", exc)
                continue
            if channel == rc.CLOSE and self.ws.ws_protocol != rc.V5:
                continue  # the close signal is v5's
            yield channel, data

    async def finish(self, status: dict[str, Any]) -> None:
        await self.send(rc.ERROR, json.dumps(status, separators=(",", ":")).encode())
        await self.close()

    async def close(self) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.close()


async def open_channels(request: web.Request, streams: Streams) -> Channels:
    """The session's transport: SPDY/3.1 when the client asks to upgrade to it (kubectl before 1.30),
    else a WebSocket."""
    if request.headers.get("Upgrade", "").lower().startswith("spdy/"):
        from control.kubelet import spdystreams  # it builds on this module's channels

        return await spdystreams.accept(request, streams)
    return _WebSocketChannels(await accept(request))


async def _pump(read: Callable[[], Awaitable[bytes]], channels: Channels, channel: int) -> None:
    """Copy a stream to CHANNEL until it ends (a terminal's EIO, once every writer is gone, is its end)."""
    while True:
        try:
            data = await read()
        except OSError:
            return
        if not data:
            return
        await channels.send(channel, data)


class _Input:
    """Where stdin frames go, and what resize / close frames do."""

    def write(self, data: bytes) -> Awaitable[None] | None:
        return None

    def close(self) -> None:
        pass

    def resize(self, width: int, height: int) -> None:
        pass


async def _read_client(channels: Channels, sink: _Input, *, end_input: bool = True) -> None:
    """Frames from the client until it goes away. END_INPUT: the client's end of input closes the sink."""
    async for channel, data in channels.incoming():
        try:
            if channel == rc.STDIN:
                pending = sink.write(data)
                if pending is not None:
                    await pending
            elif channel == rc.RESIZE:
                sink.resize(*rc.decode_resize(data))
            elif channel == rc.CLOSE and end_input and data[:1] == bytes((rc.STDIN,)):
                sink.close()
        except rc.FrameError as exc:
            log.info("ignoring a bad frame from the client: %s", exc)
        except (BrokenPipeError, ConnectionResetError):
            sink.close()  # the command closed its stdin: what is left of the client's is dropped


class _PipeInput(_Input):
    def __init__(self, stream: asyncio.StreamWriter | None):
        self.stream = stream

    async def _write(self, data: bytes) -> None:
        if self.stream is not None and not self.stream.is_closing():
            self.stream.write(data)
            await self.stream.drain()

    def write(self, data: bytes) -> Awaitable[None]:
        return self._write(data)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


class _TerminalInput(_Input):
    def __init__(self, master: int, stdin: bool):
        self.master = master
        self.stdin = stdin

    def write(self, data: bytes) -> None:
        # never blocks: the read transport made the terminal's (shared) file description non-blocking, so
        # keys a command leaves unread past the terminal's buffer are dropped (BlockingIOError), as a full
        # terminal drops them, and the kubelet's loop goes on
        if self.stdin:
            with contextlib.suppress(OSError):
                os.write(self.master, data)

    def resize(self, width: int, height: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _controlling_terminal() -> None:
    # in the child, after setsid (start_new_session): its terminal (fd 0) becomes the session's
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


async def exec_session(request: web.Request, target: PodProcessTarget, command: list[str], streams: Streams, *,
                       enter: Callable[[PodProcessTarget, list[str]], list[str]] = pod_command
                       ) -> web.StreamResponse:
    """Run COMMAND in the pod for the client of REQUEST; returns the ended session's response. ENTER makes the
    command line that enters the pod (pod_command; tests without privileges run it where they are)."""
    if not command:
        raise SessionError(400, "you must specify at least 1 command")
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **target.env}
    if streams.tty:
        env.setdefault("TERM", "xterm")
    argv = enter(target, command)
    loop = asyncio.get_running_loop()
    try:  # before the process starts: a refused upgrade leaves nothing behind
        channels = await open_channels(request, streams)
    except SessionEnded as ended:
        return ended.response
    ws = channels.response
    master = slave = -1
    try:
        if streams.tty:
            master, slave = os.openpty()
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=target.host_cwd,
                start_new_session=True, preexec_fn=_controlling_terminal)
            os.close(slave)
            slave = -1
        else:
            pipe, none = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=pipe if streams.stdin else none, stdout=pipe if streams.stdout else none,
                stderr=pipe if streams.stderr else none, env=env, cwd=target.host_cwd, start_new_session=True)
    except OSError as exc:
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
        await channels.finish(rc.failure_status(f"failed to start {command[0]!r}: {exc.strerror}"))
        return ws

    pumps: list[asyncio.Task[None]] = []
    sink: _Input
    if streams.tty:
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(os.dup(master), "rb", buffering=0))
        pumps.append(loop.create_task(_pump(lambda: reader.read(READ_CHUNK), channels, rc.STDOUT)))
        sink = _TerminalInput(master, streams.stdin)
    else:
        transport = None
        for stream, channel in ((process.stdout, rc.STDOUT), (process.stderr, rc.STDERR)):
            if stream is not None:
                pumps.append(loop.create_task(_pump(functools.partial(stream.read, READ_CHUNK), channels, channel)))
        sink = _PipeInput(process.stdin)

    client = loop.create_task(_read_client(channels, sink))
    exited = loop.create_task(process.wait())
    try:
        await asyncio.wait({client, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():  # the client went away first
            _kill(process)
            await asyncio.shield(exited)
            return ws
        if pumps:
            await asyncio.wait(pumps, timeout=DRAIN_AFTER_EXIT)
        code = exited.result()
        await channels.finish(rc.status_for_exit(code if code >= 0 else 128 - code, command))
        return ws
    finally:
        _kill(process)
        for task in (*pumps, client):
            task.cancel()
        await asyncio.gather(*pumps, client, return_exceptions=True)
        # reaped even when the session itself is cancelled (its server stopping): killed, it ends at once
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(exited)
        sink.close()
        if transport is not None:
            transport.close()
        if master >= 0:
            os.close(master)
        await channels.close()


async def follow_file(path: Path, start: int, ended: Callable[[], bool],
                      *, interval: float = FOLLOW_INTERVAL) -> AsyncIterator[bytes]:
    """Chunks written to PATH after offset START, as they come, until ENDED() (then what is left). The
    file is kept open, so that when the runtime rotates it (crilog: renamed, a new one started at PATH)
    the old one is read to its end, then each newer one from its start (a follower more than MAX FILES
    rotations behind has lost what was deleted, as upstream's)."""
    handle = None
    try:
        while True:
            finished = ended()  # asked before the read, so the last chunk written before the end is not lost
            if handle is None:
                with contextlib.suppress(FileNotFoundError):
                    handle = open(path, "rb")  # noqa: SIM115 - kept open across the loop, closed below
                    handle.seek(start)
            if handle is not None:
                while chunk := handle.read(READ_CHUNK):
                    yield chunk
                if _replaced(path, handle):
                    while chunk := handle.read(READ_CHUNK):  # what came before the rotation
                        yield chunk
                    newer = _open_newer(path, handle)
                    handle.close()
                    handle = newer
                    if handle is None:
                        return  # not rotated but retired: a new instance's log began, this one's is over
                    continue
            if finished:
                return
            await asyncio.sleep(interval)
    finally:
        if handle is not None:
            handle.close()


def _same_file(path: str | Path, handle: Any) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(handle.fileno()))
    except FileNotFoundError:
        return False


def _newer_file(path: Path, handle: Any) -> str | None:
    """The file of PATH's log rotated just after HANDLE's (PATH itself after its first rotated one), or
    None when HANDLE's file is none of the log's any more."""
    files = log_files(path)  # oldest first
    for older, newer in itertools.pairwise(files):
        if _same_file(older, handle):
            return newer
    return None


#: how many times the rotated files are looked at before a follower's file counts as retired
ROTATION_LOOKS = 5


def _open_newer(path: Path, handle: Any) -> Any:
    """The file rotated just after HANDLE's, opened; None when HANDLE's file is none of the log's any more.
    The runtime may rotate again while the files are looked at (every name shifts by one), so an answer
    counts only when a second look, after the open, names the same file."""
    for _ in range(ROTATION_LOOKS):
        newer = _newer_file(path, handle)
        if newer is None:
            continue
        try:
            opened = open(newer, "rb")  # noqa: SIM115 - the caller keeps it open, and closes it
        except FileNotFoundError:
            continue
        again = _newer_file(path, handle)
        if again is not None and _same_file(again, opened):
            return opened
        opened.close()
    return None


def _replaced(path: Path, handle: Any) -> bool:
    """Whether another file than the open HANDLE's is at PATH now (the log was rotated, or retired as a
    previous instance's); False while nothing is there yet."""
    return os.path.exists(path) and not _same_file(path, handle)


#: sizes a container's terminal: (width, height)
Resize = Callable[[int, int], None]


class _ContainerInput(_Input):
    def __init__(self, stream: asyncio.StreamWriter | None, resize: Resize | None):
        self.pipe = _PipeInput(stream)
        self.sized = resize

    def write(self, data: bytes) -> Awaitable[None]:
        return self.pipe.write(data)

    def resize(self, width: int, height: int) -> None:
        if self.sized is not None:
            self.sized(width, height)


async def attach_session(request: web.Request, log_path: Path, ended: Callable[[], bool],
                         stdin: asyncio.StreamWriter | None, streams: Streams, *,
                         resize: Resize | None = None) -> web.StreamResponse:
    """Stream what the container writes from now on, until it exits or the client goes away. RESIZE
    sizes the container's terminal (a `tty: true` container's): a client attached with a terminal
    (streams.tty) sends its size as it starts and at each change."""
    start = log_path.stat().st_size if log_path.exists() else 0
    try:
        channels = await open_channels(request, streams)
    except SessionEnded as done:
        return done.response
    loop = asyncio.get_running_loop()

    async def output() -> None:
        decoder = LineDecoder()
        async for chunk in follow_file(log_path, start, ended):
            for line in decoder.feed(chunk):
                if line.stream == "stderr" and streams.stderr:
                    await channels.send(rc.STDERR, line.content)
                elif line.stream != "stderr" and streams.stdout:
                    await channels.send(rc.STDOUT, line.content)

    pump = loop.create_task(output())
    # Closing the attached stdin would close the container's own: a client's end of input is dropped.
    sink = _ContainerInput(stdin if streams.stdin else None, resize if streams.tty else None)
    client = loop.create_task(_read_client(channels, sink, end_input=False))
    try:
        await asyncio.wait({client, pump}, return_when=asyncio.FIRST_COMPLETED)
        if pump.done():
            await channels.finish(dict(rc.SUCCESS))
        return channels.response
    finally:
        for task in (pump, client):
            task.cancel()
        await asyncio.gather(pump, client, return_exceptions=True)
        await channels.close()


def parse_ports(values: list[str]) -> list[int]:
    """The ports of a port-forward request: `ports` values, each one or more comma-separated numbers."""
    ports: list[int] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not (item.isascii() and item.isdigit()) or not 0 < int(item) < 65536:
                raise SessionError(400, f"invalid port {item!r}: a port is a number in [1, 65535]")
            if int(item) in ports:
                raise SessionError(400, f"port {item} is asked for twice")
            ports.append(int(item))
    if not ports:
        raise SessionError(400, "a port-forward names at least one port: ?ports=8080")
    if len(ports) > 128:
        raise SessionError(400, f"a port-forward carries at most 128 ports, not {len(ports)}")
    return ports


Connect = Callable[[PodProcessTarget, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def portforward_session(request: web.Request, target: PodProcessTarget, pod: str, ports: list[int], *,
                              connect: Connect = pod_connection) -> web.WebSocketResponse:
    """One TCP connection per port into the pod, carried on the port's data channel; a port that cannot
    be reached says why on its error channel. The session ends when every connection has, or when the
    client goes away."""
    ws = await accept(request, rc.PORT_FORWARD_PROTOCOLS)
    channels = _WebSocketChannels(ws)
    _send = channels.send
    loop = asyncio.get_running_loop()
    writers: dict[int, asyncio.StreamWriter] = {}
    pumps: list[asyncio.Task[None]] = []

    async def open_port(index: int, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await connect(target, port)
        except OSError as exc:
            await _send(rc.port_channels(index)[1],
                        f"error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside "
                        f"the pod: {os.strerror(exc.errno).lower() if exc.errno else exc}".encode())
            return None

    async def forward(channel: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _pump(functools.partial(reader.read, READ_CHUNK), channels, channel)
        finally:
            writers.pop(channel, None)
            writer.close()

    async def from_client() -> None:
        async for message in ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, payload = rc.decode(message.data)
            writer = writers.get(channel)
            if writer is not None and payload:
                with contextlib.suppress(ConnectionError):
                    writer.write(payload)
                    await writer.drain()

    try:
        for index, port in enumerate(ports):
            for channel in rc.port_channels(index):
                await _send(channel, rc.port_announcement(port))
        # every connection made (or refused) before the client's data is read: none of it finds no port
        opened = await asyncio.gather(*(open_port(i, port) for i, port in enumerate(ports)))
        for index, connection in enumerate(opened):
            if connection is not None:
                channel = rc.port_channels(index)[0]
                writers[channel] = connection[1]
                pumps.append(loop.create_task(forward(channel, *connection)))
        if not pumps:
            return ws
        client = loop.create_task(from_client())
        done = loop.create_task(asyncio.wait(pumps))
        await asyncio.wait({client, done}, return_when=asyncio.FIRST_COMPLETED)
        for task in (client, done):
            task.cancel()
        return ws
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        if not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
