"""The node runtime's state and verbs: pod sandboxes and their containers, named as CRI names them.

    RuntimeServiceError
     +-- SandboxNotFound      no sandbox of that id (404)
     +-- ContainerNotFound    no container of that id (404)
     +-- InvalidRequest       a request missing or mistyping a field (400)
     +-- StartFailed          the container could not start: carries its Kubernetes reason (409)

A sandbox is the pod's network namespace on the node's bridge (netsim.sandbox) with its UTS and mount
namespaces (its place); its id is the pod's UID, so a kubelet that restarts finds the sandboxes of its
pods by UID and adopts them. Sandboxes are recorded in a file of the state directory: a runtime that
restarts lists the ones whose namespaces are still there as NotReady (their containers died with the
old runtime process) until the kubelet removes them or runs them again.

Exec, Attach and PortForward answer the URL of a session on the runtime's own socket (streams.py): the
commands of `kubectl exec` and the stdin of `stdin: true` containers belong to this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from control.runtime.containers import Container, ContainerError, ContainerFactory, ContainerLog, make_container
from control.runtime.containers import now_rfc3339 as _now
from control.runtime.stats import container_stats
from control.runtime.streams import StreamServer
from netsim import namespaces
from netsim.errors import NetsimError
from netsim.kernel import Kernel
from netsim.place import PodPlace
from netsim.sandbox import Sandbox, create_sandbox, delete_sandbox, sandbox_for

if TYPE_CHECKING:
    from control.kubelet.streaming import Connect, PodProcessTarget, Streams

# The session code (control.kubelet.streaming, which reads logs with crilog of this package) is imported
# where it is used: imported here at the top, either package would find the other half made.

T = TypeVar("T")
SANDBOX_READY = "SANDBOX_READY"
SANDBOX_NOTREADY = "SANDBOX_NOTREADY"
CONTAINER_CREATED = "CONTAINER_CREATED"
CONTAINER_RUNNING = "CONTAINER_RUNNING"
CONTAINER_EXITED = "CONTAINER_EXITED"


class RuntimeServiceError(Exception):
    status = 500

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__


class SandboxNotFound(RuntimeServiceError):
    status = 404


class ContainerNotFound(RuntimeServiceError):
    status = 404


class InvalidRequest(RuntimeServiceError):
    status = 400


class StartFailed(RuntimeServiceError):
    status = 409


@dataclass
class SandboxRecord:
    id: str
    name: str
    namespace: str
    ip: str
    netns: str
    created_at: str
    state: str = SANDBOX_READY


@dataclass
class ContainerRecord:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    log_path: str
    container: Container
    created_at: str = field(default_factory=_now)
    started: bool = False
    # what an exec in this container runs with: the container's env (HOSTNAME first), workingDir, user
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    run_as: tuple[int | None, int | None] = (None, None)


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidRequest(f"field {name!r} must be a {kind.__name__}, got {value!r}: give it in the request")
    return value


class Runtime:
    """One node's runtime. KERNEL makes sandboxes (netsim's LinuxKernel; FakeKernel in tests), CONTAINERS
    makes containers (make_container; control.kubelet.fake.FakeContainers in tests)."""

    def __init__(self, cluster: str, node: str, pod_cidr: str, state_dir: Path, *, kernel: Kernel,
                 containers: ContainerFactory | None = None, mtu: int = 1500,
                 enter: Callable[[PodProcessTarget, list[str]], list[str]] | None = None,
                 connect: Connect | None = None, log_max_size: int | None = None,
                 log_max_files: int | None = None):
        """ENTER and CONNECT are exec's and port-forward's ways into a pod (streaming's; tests without
        privileges run where they are); LOG_MAX_SIZE / LOG_MAX_FILES cap each container's log."""
        from control.kubelet.streaming import pod_command, pod_connection

        self.cluster, self.node, self.pod_cidr, self.mtu = cluster, node, pod_cidr, mtu
        self.enter = enter if enter is not None else pod_command
        self.connect = connect if connect is not None else pod_connection
        self.streams = StreamServer()
        self.log_limits = {k: v for k, v in (("max_size", log_max_size), ("max_files", log_max_files))
                           if v is not None}
        self.kernel = kernel
        self.make: ContainerFactory = containers if containers is not None else make_container
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._record_path = state_dir / "runtime-sandboxes.json"
        self.sandboxes: dict[str, SandboxRecord] = {}
        self.containers: dict[str, ContainerRecord] = {}
        # pyroute2 is neither thread-safe nor nestable in our loop: netlink work on one thread of its own.
        self._netlink = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime-netlink")
        self._places = ThreadPoolExecutor(max_workers=4, thread_name_prefix="runtime-place")
        self._recover()

    def _recover(self) -> None:
        """Sandboxes an earlier runtime process made whose namespaces survived it: NotReady, since their
        built-in servers and processes went with that process."""
        if not self._record_path.exists():
            return
        for item in json.loads(self._record_path.read_text()):
            record = SandboxRecord(**item)
            if self.kernel.ns_exists(record.netns):
                record.state = SANDBOX_NOTREADY
                self.sandboxes[record.id] = record
        self._save()

    def _save(self) -> None:
        tmp = self._record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(r) for r in self.sandboxes.values()], indent=1))
        tmp.replace(self._record_path)

    async def _in(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args, **kwargs))

    def _sandbox(self, sandbox_id: str) -> SandboxRecord:
        record = self.sandboxes.get(sandbox_id)
        if record is None:
            raise SandboxNotFound(f"pod sandbox {sandbox_id!r} does not exist on node {self.node}: list them with "
                                  "ListPodSandbox")
        return record

    def _container(self, container_id: str) -> ContainerRecord:
        record = self.containers.get(container_id)
        if record is None:
            raise ContainerNotFound(f"container {container_id!r} does not exist on node {self.node}: list them with "
                                    "ListContainers")
        return record

    def _describe(self, record: SandboxRecord) -> Sandbox:
        return sandbox_for(self.cluster, self.node, self.pod_cidr, record.id, record.ip, mtu=self.mtu)

    # -- sandboxes ------------------------------------------------------------------------------------

    async def run_pod_sandbox(self, body: dict[str, Any]) -> dict[str, Any]:
        """{uid, name, namespace, ip, place: {hostname, files: [[target, source]], hidden, exposed, volumes:
        [[target, source, read-only]], memory: [[dir, size]], scratch}} ->
        {podSandboxId}. Idempotent on the pod's UID: a sandbox already there is returned, not remade."""
        uid = _field(body, "uid", str)
        existing = self.sandboxes.get(uid)
        if existing is not None and existing.state == SANDBOX_READY:
            return {"podSandboxId": uid}
        ip = _field(body, "ip", str)
        place_body = body.get("place") or {}
        try:
            sandbox = sandbox_for(self.cluster, self.node, self.pod_cidr, uid, ip, mtu=self.mtu)
            place = PodPlace(str(place_body.get("hostname") or body.get("name") or uid),
                             files=tuple((str(t), str(s)) for t, s in place_body.get("files") or []),
                             hidden=tuple(str(d) for d in place_body.get("hidden") or []),
                             exposed=tuple(str(d) for d in place_body.get("exposed") or []),
                             # the pod's volumes, as the kubelet prepared them: [target, source, read-only]
                             volumes=tuple((str(t), str(s), bool(ro)) for t, s, ro in place_body.get("volumes") or []),
                             memory=tuple((str(d), str(size)) for d, size in place_body.get("memory") or []),
                             scratch=str(place_body.get("scratch") or ""))
        except (NetsimError, ValueError, TypeError) as exc:
            raise InvalidRequest(f"pod sandbox {uid}: {exc}") from None
        if existing is not None:
            # NotReady: its containers were stopped, or went with a runtime that crashed. A process
            # container outlives that crash (its own session) but no runtime knows it any more: it goes
            # before the kubelet starts the container again, as a sandbox comes back empty.
            await self._in(self._netlink, self.kernel.ns_kill_processes, sandbox.netns)
        if not self.kernel.ns_exists(sandbox.netns):
            try:
                await self._in(self._netlink, create_sandbox, sandbox, kernel=self.kernel)
                try:
                    await self._in(self._places, self.kernel.ns_create_place, sandbox.netns, place)
                except Exception:
                    await self._in(self._netlink, delete_sandbox, sandbox, kernel=self.kernel)
                    raise
            except NetsimError as exc:
                raise StartFailed(f"pod sandbox {uid}: {exc}", "FailedCreatePodSandBox") from None
        self.sandboxes[uid] = SandboxRecord(uid, str(body.get("name") or ""), str(body.get("namespace") or ""), ip,
                                            sandbox.netns, _now())
        self._save()
        return {"podSandboxId": uid}

    async def stop_pod_sandbox(self, body: dict[str, Any]) -> dict[str, Any]:
        """Stop every container of the sandbox (grace seconds each, default 0); the namespaces stay."""
        record = self._sandbox(_field(body, "podSandboxId", str))
        grace = float(body.get("grace") or 0)
        await asyncio.gather(*(c.container.stop(grace) for c in self.containers.values()
                               if c.sandbox_id == record.id and c.container.running), return_exceptions=True)
        record.state = SANDBOX_NOTREADY
        self._save()
        return {}

    async def remove_pod_sandbox(self, body: dict[str, Any]) -> dict[str, Any]:
        """Stop and forget the sandbox's containers and delete its namespaces. Idempotent, as CRI's is."""
        sandbox_id = _field(body, "podSandboxId", str)
        record = self.sandboxes.get(sandbox_id)
        if record is None:
            return {}
        await self.stop_pod_sandbox({"podSandboxId": sandbox_id})
        for cid in [c.id for c in self.containers.values() if c.sandbox_id == sandbox_id]:
            del self.containers[cid]
        await self._in(self._netlink, delete_sandbox, self._describe(record), kernel=self.kernel)
        del self.sandboxes[sandbox_id]
        self._save()
        return {}

    async def list_pod_sandbox(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"items": [{"id": r.id, "metadata": {"uid": r.id, "name": r.name, "namespace": r.namespace},
                           "state": r.state, "createdAt": r.created_at, "ip": r.ip, "netns": r.netns}
                          for r in self.sandboxes.values()]}

    # -- containers -----------------------------------------------------------------------------------

    async def create_container(self, body: dict[str, Any]) -> dict[str, Any]:
        """{podSandboxId, spec (the pod's container, command expanded), env, hostname, logPath, attempt,
        credentials, runAs: [uid, gid]} -> {containerId}. ContainerError from the factory (an image with
        no built-in workload, bad arguments) is StartFailed with its Kubernetes reason."""
        record = self._sandbox(_field(body, "podSandboxId", str))
        if record.state != SANDBOX_READY:
            raise InvalidRequest(f"pod sandbox {record.id} is not ready: run it again with RunPodSandbox first")
        spec = _field(body, "spec", dict)
        name = _field(spec, "name", str)
        attempt = int(body.get("attempt") or 0)
        log_path = _field(body, "logPath", str)
        run_as = body.get("runAs") or [None, None]
        credentials = body.get("credentials")
        try:
            container = self.make(spec, netns=record.netns, hostname=str(body.get("hostname") or record.name),
                                  log=ContainerLog(Path(log_path), **self.log_limits),
                                  env=dict(body.get("env") or {}),
                                  credentials=Path(credentials) if credentials else None,
                                  run_as=(run_as[0], run_as[1]))
        except ContainerError as exc:
            raise StartFailed(exc.message, exc.reason) from None
        container_id = f"{record.id}/{name}/{attempt}"
        old = self.containers.get(container_id)
        if old is not None and old.container.running:
            raise InvalidRequest(f"container {container_id} already runs: stop and remove it first")
        hostname = str(body.get("hostname") or record.name)
        self.containers[container_id] = ContainerRecord(
            container_id, record.id, name, attempt, log_path, container,
            env={"HOSTNAME": hostname, **{str(k): str(v) for k, v in (body.get("env") or {}).items()}},
            workdir=spec.get("workingDir") or None, run_as=(run_as[0], run_as[1]))
        return {"containerId": container_id}

    async def start_container(self, body: dict[str, Any]) -> dict[str, Any]:
        record = self._container(_field(body, "containerId", str))
        if record.started:
            raise InvalidRequest(f"container {record.id} was started before: create a new one to run it again")
        record.started = True
        try:
            await record.container.start()
        except ContainerError as exc:
            raise StartFailed(exc.message, exc.reason) from None
        return {}

    async def stop_container(self, body: dict[str, Any]) -> dict[str, Any]:
        record = self._container(_field(body, "containerId", str))
        await record.container.stop(float(body.get("timeout") or 0))
        return {}

    async def remove_container(self, body: dict[str, Any]) -> dict[str, Any]:
        container_id = _field(body, "containerId", str)
        record = self.containers.get(container_id)
        if record is None:
            return {}
        if record.container.running:
            await record.container.stop(0)
        del self.containers[container_id]
        return {}

    def _status(self, record: ContainerRecord) -> dict[str, Any]:
        c = record.container
        state = (CONTAINER_RUNNING if c.running else CONTAINER_EXITED if c.exited.is_set() or record.started
                 else CONTAINER_CREATED)
        return {"id": record.id, "podSandboxId": record.sandbox_id, "metadata": {"name": record.name,
                "attempt": record.attempt}, "state": state, "createdAt": record.created_at,
                "startedAt": c.started_at, "finishedAt": c.finished_at, "exitCode": c.exit_code,
                "logPath": record.log_path, "pid": getattr(c, "pid", None)}

    async def list_containers(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("podSandboxId")
        return {"items": [self._status(r) for r in self.containers.values()
                          if wanted is None or r.sandbox_id == wanted]}

    async def container_status(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"status": self._status(self._container(_field(body, "containerId", str)))}

    async def wait_container(self, body: dict[str, Any]) -> dict[str, Any]:
        """Until the container exits (containerd's Wait): how the kubelet learns of an exit without polling."""
        record = self._container(_field(body, "containerId", str))
        await record.container.exited.wait()
        return {"status": self._status(record)}

    # -- streaming (CRI's Exec, Attach, PortForward: the URL of a session on this socket) ---------------

    def _running(self, body: dict[str, Any]) -> ContainerRecord:
        record = self._container(_field(body, "containerId", str))
        if not record.container.running:
            raise InvalidRequest(f"container {record.id} is not running: exec and attach need a running container")
        return record

    @staticmethod
    def _streams(body: dict[str, Any]) -> Streams:
        from control.kubelet.streaming import SessionError, Streams

        try:
            return Streams(bool(body.get("stdin")), bool(body.get("stdout")), bool(body.get("stderr")),
                           bool(body.get("tty"))).checked()
        except SessionError as exc:
            raise InvalidRequest(exc.message) from None

    async def exec(self, body: dict[str, Any]) -> dict[str, Any]:
        """{containerId, cmd, tty, stdin, stdout, stderr} -> {url}: the command runs in the container's
        namespaces, with its env, workingDir and user, as a child of this process."""
        from control.kubelet import streaming

        record = self._running(body)
        cmd = body.get("cmd")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
            raise InvalidRequest(f"exec in container {record.id}: field 'cmd' must be a non-empty list of strings")
        streams = self._streams(body)
        netns = self._sandbox(record.sandbox_id).netns
        target = streaming.PodProcessTarget(netns, dict(record.env), record.workdir,
                                            place=namespaces.pod_place_exists(netns),
                                            uid=record.run_as[0], gid=record.run_as[1])

        async def session(request: web.Request) -> web.StreamResponse:
            return await streaming.exec_session(request, target, list(cmd), streams, enter=self.enter)

        return {"url": self.streams.register("exec", session)}

    async def attach(self, body: dict[str, Any]) -> dict[str, Any]:
        """{containerId, stdin, stdout, stderr, tty} -> {url}: what the container writes from then on, and
        its stdin when it was created with `stdin: true` (the pipe is this process's)."""
        from control.kubelet import streaming

        record = self._running(body)
        streams = self._streams(body)
        container = record.container

        def ended() -> bool:
            return not container.running or self.containers.get(record.id) is not record

        async def session(request: web.Request) -> web.StreamResponse:
            stdin = getattr(container, "stdin", None)
            return await streaming.attach_session(request, Path(record.log_path), ended, stdin, streams,
                                                  resize=getattr(container, "resize", None))

        return {"url": self.streams.register("attach", session)}

    async def port_forward(self, body: dict[str, Any]) -> dict[str, Any]:
        """{podSandboxId} -> {url}: TCP connections to the pod's loopback, the ports in the session's
        request (its query for WebSocket, each stream's headers for SPDY), as upstream's."""
        from control.kubelet import spdystreams, streaming

        record = self._sandbox(_field(body, "podSandboxId", str))
        if record.state != SANDBOX_READY:
            raise InvalidRequest(f"pod sandbox {record.id} is not ready: port-forward needs a running pod")
        target, pod = streaming.PodProcessTarget(record.netns), f"{record.namespace}/{record.name}"

        async def session(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Upgrade", "").lower().startswith("spdy/"):
                return await spdystreams.portforward_session(request, target, pod, connect=self.connect)
            ports = streaming.parse_ports(request.query.getall("ports", []) + request.query.getall("port", []))
            return await streaming.portforward_session(request, target, pod, ports, connect=self.connect)

        return {"url": self.streams.register("portforward", session)}

    async def list_container_stats(self, body: dict[str, Any]) -> dict[str, Any]:
        """CRI's ListContainerStats for the running containers (of podSandboxId, if given): see stats.py."""
        wanted = body.get("podSandboxId")
        running = [r for r in self.containers.values()
                   if r.container.running and (wanted is None or r.sandbox_id == wanted)]
        measured = await self._in(self._places, container_stats,
                                  [(r.id, getattr(r.container, "pid", None)) for r in running])
        return {"stats": [{"id": r.id, "podSandboxId": r.sandbox_id,
                           "metadata": {"name": r.name, "attempt": r.attempt},
                           "startedAt": r.container.started_at, **measured[r.id]} for r in running]}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kernel.close()
        self._netlink.shutdown()
        self._places.shutdown()


# CRI method name -> the Runtime method serving it
METHODS: dict[str, str] = {
    "RunPodSandbox": "run_pod_sandbox", "StopPodSandbox": "stop_pod_sandbox",
    "RemovePodSandbox": "remove_pod_sandbox", "ListPodSandbox": "list_pod_sandbox",
    "CreateContainer": "create_container", "StartContainer": "start_container",
    "StopContainer": "stop_container", "RemoveContainer": "remove_container",
    "ListContainers": "list_containers", "ContainerStatus": "container_status", "WaitContainer": "wait_container",
    "Exec": "exec", "Attach": "attach", "PortForward": "port_forward",
    "ListContainerStats": "list_container_stats",
}
