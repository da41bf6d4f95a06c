"""Containers without a container runtime.

A container is either a built-in workload, chosen by image, served by the node runtime process (control.runtime) from
sockets opened inside the pod's network namespace (no process per pod, a few KB each):

    registry.k8s.io/e2e-test-images/agnhost netexec --http-port=N --udp-port=M   (alias kubesim/echo)
        HTTP /hostname /clientip /echo?msg= /healthz /, UDP "hostname" "echo X" "clientip";
        --delay-shutdown=S serves S seconds more after it is told to stop
    nginx                     a page naming the pod, on port 80
    pause, busybox `sleep`    idle
    busybox, alpine           with no command: a shell (their CMD), e.g. `kubectl debug -it POD --image=busybox`
    registry.k8s.io/coredns/coredns   cluster DNS (control/dns) as a process in the pod's namespace, with
                              the pod's ServiceAccount credentials; args are control.dns's flags

or a real process (`command`/`args` with the machine's binaries, `$(VAR)` references expanded from
its env as upstream does), run inside all of the pod's namespaces (network, UTS: its hostname, mount:
its /etc/hosts, /etc/hostname, /etc/resolv.conf, the state directory hidden) with its env, workingDir
and securityContext's runAsUser/runAsGroup (run_as), its output captured to the container's log; with
`tty: true` on a pseudo-terminal of its own (control.runtime.terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

from control.runtime.crilog import LOG_MAX_FILES, LOG_MAX_SIZE, LineSplitter, cri_line, rotate
from netsim import namespaces

AGNHOST_DEFAULT_HTTP = 8080
AGNHOST_DEFAULT_UDP = 8081


class ContainerError(Exception):
    """The container cannot start: REASON is the status reason Kubernetes would show."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ContainerLog:
    """A container's log file, written as the container runs (`kubectl logs` reads it back), rotated
    before a write would take it past MAX_SIZE bytes, with MAX_FILES files at most (crilog)."""

    def __init__(self, path: Path, *, max_size: int = LOG_MAX_SIZE, max_files: int = LOG_MAX_FILES):
        if max_size < 1 or max_files < 2:
            raise ValueError(f"container log {path}: the max size must be positive and at least 2 files kept "
                             f"(the one written and one rotated), not {max_size} bytes and {max_files} files")
        self.path = path
        self.max_size, self.max_files = max_size, max_files
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, line: str) -> None:
        """A line of the container's own (a built-in's message), stored as stdout."""
        self.append("stdout", [(line.rstrip("\n").encode(), False)])

    def append(self, stream: str, lines: list[tuple[bytes, bool]]) -> None:
        """LINES (content, partial) the container wrote to STREAM now, in CRI's format (crilog)."""
        if not lines:
            return
        data = b"".join(cri_line(stream, text, partial=partial) for text, partial in lines)
        with contextlib.suppress(FileNotFoundError):
            size = self.path.stat().st_size
            if size and size + len(data) > self.max_size:
                rotate(self.path, self.max_files)
        with open(self.path, "ab") as handle:
            handle.write(data)

    async def pump(self, stream: str, reader: asyncio.StreamReader) -> None:
        """Store what READER (a container's stdout or stderr pipe) carries, line by line, until it ends."""
        splitter = LineSplitter()
        while chunk := await reader.read(65536):
            self.append(stream, splitter.feed(chunk))
        self.append(stream, splitter.close())


def _listen(netns: str, kind: int, port: int) -> socket.socket:
    """A socket bound inside the pod's namespace: created there, used from anywhere."""
    with namespaces.entered(netns):
        sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
        reason = (exc.strerror or str(exc)).lower()
        raise ContainerError("Error", f"listen {proto} :{port}: bind: {reason}") from None
    return sock


class Container:
    """What the kubelet needs of any container."""

    def __init__(self, name: str, log: ContainerLog):
        self.name = name
        self.log = log
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.exit_code: int | None = None
        self.exited = asyncio.Event()

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self, grace: float) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.started_at is not None and not self.exited.is_set()

    def _finished(self, code: int) -> None:
        if not self.exited.is_set():
            self.exit_code = code
            self.finished_at = now_rfc3339()
            self.exited.set()


class IdleContainer(Container):
    """pause, or a sleep: nothing to serve, nothing to run."""

    async def start(self) -> None:
        self.started_at = now_rfc3339()

    async def stop(self, grace: float) -> None:
        self._finished(0)


class _HTTP(asyncio.Protocol):
    """A minimal HTTP/1.1 server side: one request per connection (Connection: close), as agnhost
    answers curl and probes."""

    def __init__(self, answer: Callable[[str, str, tuple[str, int]], tuple[int, str]], log: ContainerLog):
        self.answer = answer
        self.log = log
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer and b"\n\n" not in self.buffer:
            if len(self.buffer) > 65536 and self.transport:
                self.transport.close()
            return
        assert self.transport is not None
        line = self.buffer.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        peer = self.transport.get_extra_info("peername") or ("", 0)
        if len(parts) < 2:
            status, body = 400, "bad request\n"
        else:
            status, body = self.answer(parts[0], parts[1], peer)
            self.log.write(f"{now_rfc3339()} {parts[0]} {parts[1]} from {peer[0]}:{peer[1]} -> {status}")
        payload = body.encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
        self.transport.write(head.encode() + payload)
        self.transport.close()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, answer: Callable[[str, tuple[str, int]], str | None]):
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass asyncio.DatagramTransport, so an
        # isinstance assert here failed and left the server silent: cast instead.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.answer(data.decode(errors="replace").strip(), addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply.encode(), addr)


class ServingContainer(Container):
    """A built-in server: TCP/UDP sockets in the pod's namespace served by the runtime's event loop."""

    def __init__(self, name: str, log: ContainerLog, netns: str, hostname: str):
        super().__init__(name, log)
        self.netns = netns
        self.hostname = hostname
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []

    def endpoints(self) -> list[tuple[int, int]]:
        """(socket type, port) to listen on."""
        raise NotImplementedError

    def http(self, method: str, target: str, peer: tuple[str, int]) -> tuple[int, str]:
        return 404, "404 page not found\n"

    def udp(self, message: str, peer: tuple[str, int]) -> str | None:
        return None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sockets = []
        try:
            for kind, port in self.endpoints():
                sockets.append((kind, port, _listen(self.netns, kind, port)))
        except ContainerError:
            for _, _, sock in sockets:
                sock.close()
            raise
        for kind, port, sock in sockets:
            if kind == socket.SOCK_STREAM:
                self._servers.append(await loop.create_server(lambda: _HTTP(self.http, self.log), sock=sock))
                self.log.write(f"{now_rfc3339()} Started HTTP server on port {port}")
            else:
                transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self.udp), sock=sock)
                self._transports.append(transport)
                self.log.write(f"{now_rfc3339()} Started UDP server on port {port}")
        self.started_at = now_rfc3339()

    async def stop(self, grace: float) -> None:
        await self._close()
        # A built-in server exits on SIGTERM at once, as agnhost does: 128 + 15.
        self._finished(143 if self.started_at else 0)

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for transport in self._transports:
            transport.close()
        self._servers.clear()
        self._transports.clear()


class NetexecContainer(ServingContainer):
    """agnhost netexec's endpoints (test/images/agnhost/netexec in kubernetes)."""

    def __init__(self, name: str, log: ContainerLog, netns: str, hostname: str, http_port: int, udp_port: int,
                 delay_shutdown: int = 0):
        super().__init__(name, log, netns, hostname)
        self.http_port = http_port
        self.udp_port = udp_port
        self.delay_shutdown = delay_shutdown

    async def stop(self, grace: float) -> None:
        """netexec's --delay-shutdown=N: on SIGTERM it goes on serving for N seconds, then exits 0, so
        that clients still sent here while its endpoint leaves the load balancing are answered (Kubernetes'
        own terminating-endpoint e2e tests rely on it). Past the grace period it is killed: 128 + 9."""
        if self.delay_shutdown <= 0 or not self.running:
            await super().stop(grace)
            return
        self.log.write(f"{now_rfc3339()} Sleeping {self.delay_shutdown} seconds before terminating...")
        await asyncio.sleep(max(0.0, min(float(self.delay_shutdown), grace)))
        await self._close()
        self._finished(0 if self.delay_shutdown <= grace else 137)

    def endpoints(self) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = [(socket.SOCK_STREAM, self.http_port)]
        if self.udp_port > 0:
            found.append((socket.SOCK_DGRAM, self.udp_port))
        return found

    def http(self, method: str, target: str, peer: tuple[str, int]) -> tuple[int, str]:
        url = urlsplit(target)
        if url.path == "/hostname":
            return 200, self.hostname
        if url.path == "/clientip":
            return 200, f"{peer[0]}:{peer[1]}"
        if url.path == "/echo":
            return 200, parse_qs(url.query).get("msg", [""])[0]
        if url.path in ("/healthz", "/healthz/"):
            return 200, "ok"
        if url.path == "/":
            return 200, f"NOW: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}"
        return 404, "404 page not found\n"

    def udp(self, message: str, peer: tuple[str, int]) -> str | None:
        command, _, rest = message.partition(" ")
        if command == "hostname":
            return self.hostname
        if command == "echo":
            return rest
        if command == "clientip":
            return f"{peer[0]}:{peer[1]}"
        return None


class PageContainer(ServingContainer):
    """nginx's role: a page on port 80 that names the pod it came from."""

    def endpoints(self) -> list[tuple[int, int]]:
        return [(socket.SOCK_STREAM, 80)]

    def http(self, method: str, target: str, peer: tuple[str, int]) -> tuple[int, str]:
        return 200, f"<html><body><h1>Welcome to nginx!</h1><p>Served by pod {self.hostname}.</p></body></html>\n"


RunAs = tuple[int | None, int | None]  # (uid, gid); None: the runtime's default (root)


def run_as(pod_spec: dict[str, Any], container: dict[str, Any]) -> RunAs:
    """The identity a container runs as: runAsUser and runAsGroup of the container's securityContext,
    else the pod's (the container's wins field by field). With a user and no group, the group is that
    user's primary group in /etc/passwd, else 0, as container runtimes look the user up in the image.
    runAsNonRoot with no non-root user is CreateContainerConfigError, as upstream's kubelet refuses it."""
    pod_context = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}

    def field(name: str) -> Any:
        return own[name] if own.get(name) is not None else pod_context.get(name)

    uid, gid = field("runAsUser"), field("runAsGroup")
    for name, value in (("runAsUser", uid), ("runAsGroup", gid)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ContainerError("CreateContainerConfigError",
                                 f"securityContext.{name} {value!r} of container {container.get('name')!r}: "
                                 "give a non-negative integer id")
    if field("runAsNonRoot") and not uid:
        raise ContainerError("CreateContainerConfigError", "container has runAsNonRoot and image will run as root "
                             f"(container: {container.get('name')}): set securityContext.runAsUser to a non-zero id")
    if uid is not None and gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = 0
    return uid, gid


def _home_of(uid: int | None) -> str:
    try:
        return pwd.getpwuid(uid or 0).pw_dir
    except KeyError:
        return "/"


#: seconds an exited process's output is waited for before it is reported gone
PUMP_DRAIN = 2.0


class ProcessContainer(Container):
    """A real process inside all of the pod's namespaces: network, UTS and mount (namespaces.command_in)."""

    def __init__(self, name: str, log: ContainerLog, netns: str, argv: list[str], env: dict[str, str],
                 workdir: str | None = None, *, hostname: str = "", identity: RunAs = (None, None),
                 stdin: bool = False):
        super().__init__(name, log)
        self.keeps_stdin = stdin  # the spec's `stdin: true`: a pipe `kubectl attach -i` writes to
        self.netns = netns
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.hostname = hostname
        self.identity = identity
        self.process: asyncio.subprocess.Process | None = None
        self._waiter: asyncio.Task[None] | None = None
        self._pumps: list[asyncio.Task[None]] = []

    def environment(self) -> dict[str, str]:
        """What the process starts with: PATH, HOSTNAME and HOME as a container runtime sets them, then
        the container's env, which wins."""
        base = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": _home_of(self.identity[0])}
        if self.hostname:
            base["HOSTNAME"] = self.hostname
        return {**base, **self.env}

    def command_line(self) -> list[str]:
        uid, gid = self.identity
        return namespaces.command_in(self.netns, self.argv, uts=True, mnt=True, uid=uid, gid=gid,
                                     workdir=self.workdir or None)

    async def start(self) -> None:
        # stdout and stderr through pipes the runtime reads, so that each line is stored with its time
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command_line(),
                stdin=asyncio.subprocess.PIPE if self.keeps_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self.environment(), start_new_session=True)
        except OSError as exc:
            raise ContainerError("StartError", f"failed to start {self.argv[0]!r}: {exc.strerror}") from None
        loop = asyncio.get_running_loop()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._pumps = [loop.create_task(self.log.pump("stdout", self.process.stdout)),
                       loop.create_task(self.log.pump("stderr", self.process.stderr))]
        self.started_at = now_rfc3339()
        self._waiter = loop.create_task(self._wait())

    async def _wait(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        # what it wrote last is stored before it is seen to end (a follower stops at the end); a child
        # left behind holding the pipes open does not keep it from ending: its pump goes on
        await asyncio.wait(self._pumps, timeout=PUMP_DRAIN)
        self._finished(code if code >= 0 else 128 - code)

    async def stop(self, grace: float) -> None:
        if self.process is None or self.process.returncode is not None:
            self._finished(self.exit_code or 0)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.exited.wait(), max(grace, 0))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.exited.wait()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def stdin(self) -> asyncio.StreamWriter | None:
        return self.process.stdin if self.process else None


# The import root of this package, so that a built-in that runs as a process runs this same code.
_IMPORT_ROOT = str(Path(__file__).resolve().parents[2])


def _coredns(name: str, log: ContainerLog, netns: str, args: list[str], env: dict[str, str],
             credentials: Path | None, *, hostname: str, identity: RunAs) -> ProcessContainer:
    """CoreDNS's image: this project's DNS server (python -m control.dns) in the pod's namespace, reading
    the API with the pod's ServiceAccount credentials as CoreDNS reads it with its projected token."""
    if credentials is None or not credentials.is_file():
        raise ContainerError("CreateContainerConfigError",
                             "coredns needs its ServiceAccount's credentials, and none were issued to this node "
                             "for the pod's serviceAccountName; run it as kube-system's coredns ServiceAccount")
    # CoreDNS's own `-conf FILE`: kubesim has no Corefile; the zone's options come as control.dns flags.
    kept = [a for i, a in enumerate(args) if a != "-conf" and (i == 0 or args[i - 1] != "-conf")]
    argv = [sys.executable, "-m", "control.dns", "--kubeconfig", str(credentials), *kept]
    return ProcessContainer(name, log, netns, argv, {"PYTHONPATH": _IMPORT_ROOT, **env}, hostname=hostname,
                            identity=identity)


def _flag(args: list[str], name: str, default: int) -> int:
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return int(arg.split("=", 1)[1])
        if arg == f"--{name}" and i + 1 < len(args):
            return int(args[i + 1])
    return default


#: images whose default command (their CMD) is a shell: run with the machine's `sh`
SHELL_IMAGES = ("busybox", "alpine")


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


class ContainerFactory(Protocol):
    """The container seam: makes (not yet starts) the container SPEC describes, in the pod namespace
    NETNS. make_container is the real one; control.kubelet.fake.FakeContainers records instead."""

    def __call__(self, spec: dict[str, Any], *, netns: str, hostname: str, log: ContainerLog,
                 env: dict[str, str], credentials: Path | None = None,
                 run_as: RunAs = (None, None)) -> Container: ...


def make_container(spec: dict[str, Any], *, netns: str, hostname: str, log: ContainerLog,
                   env: dict[str, str], credentials: Path | None = None,
                   run_as: RunAs = (None, None)) -> Container:
    """The container SPEC describes: a built-in workload for the images kubesim knows, else a real
    process when a command is given, else ContainerError (the image cannot be "pulled"). CREDENTIALS is
    the kubeconfig of the pod's ServiceAccount, when one was issued (built-ins that read the API);
    RUN_AS the (uid, gid) a process runs as (run_as()). Built-ins are served by the runtime process and
    answer with HOSTNAME, the pod's."""
    name = spec.get("name", "")
    image = spec.get("image", "")
    repo = _repository(image)
    # $(VAR) in command and args is expanded by the kubelet before (envvars.expand_command), once.
    command = [str(a) for a in spec.get("command") or []]
    args = [str(a) for a in spec.get("args") or []]
    workdir = spec.get("workingDir") or None

    def process(argv: list[str]) -> ProcessContainer:
        kind = ProcessContainer
        if spec.get("tty"):
            from control.runtime.terminal import TerminalContainer  # it builds on this module
            kind = TerminalContainer
        return kind(name, log, netns, argv, env, workdir, hostname=hostname, identity=run_as,
                    stdin=bool(spec.get("stdin")))

    if repo.endswith("agnhost") or repo == "kubesim/echo":
        if command:
            return process(command + args)
        mode = args[0] if args else ("netexec" if repo == "kubesim/echo" else "")
        if mode == "pause":
            return IdleContainer(name, log)
        if mode != "netexec":
            raise ContainerError("CreateContainerError", f"agnhost {mode or '(no subcommand)'!r} is not built in; "
                                 "kubesim runs agnhost's netexec and pause, or give the container a command")
        try:
            http_port = _flag(args, "http-port", AGNHOST_DEFAULT_HTTP)
            udp_port = _flag(args, "udp-port", AGNHOST_DEFAULT_UDP)
            delay_shutdown = _flag(args, "delay-shutdown", 0)
        except ValueError:
            raise ContainerError("CreateContainerError", f"bad netexec arguments {args}") from None
        return NetexecContainer(name, log, netns, hostname, http_port, udp_port, delay_shutdown)
    if repo.endswith("coredns/coredns") and not command:
        return _coredns(name, log, netns, args, env, credentials, hostname=hostname, identity=run_as)
    if repo.endswith("nginx") and not command:
        return PageContainer(name, log, netns, hostname)
    if repo.endswith("pause") and not command:
        return IdleContainer(name, log)
    full = command + args
    if repo.rsplit("/", 1)[-1] in ("busybox", "alpine") and full[:1] == ["sleep"]:
        return IdleContainer(name, log)
    if not full and repo.rsplit("/", 1)[-1] in SHELL_IMAGES:
        full = ["sh"]  # the image's own CMD: `kubectl debug -it POD --image=busybox` gets a shell
    if full:
        return process(full)
    raise ContainerError("ErrImagePull", f'kubesim has no built-in workload for image "{image}": give the container '
                         "a command to run a real process, or use agnhost netexec, nginx, pause or busybox sleep")
