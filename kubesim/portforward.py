"""`kubesim port-forward [-n NS] (POD|svc/NAME|deploy/NAME) [LOCAL:]REMOTE...`: kubectl port-forward's
behaviour, through the apiserver's pods/portforward (control.client.open_port_forward).

Each LOCAL port listens on 127.0.0.1 of this shell's namespace; each connection to it is one stream to
REMOTE of the pod. A Service or Deployment is resolved to one of its Running pods as kubectl does,
and for a Service, REMOTE is the Service's port, carried to the pod's targetPort (a named targetPort
looked up in the pod's container ports). LOCAL omitted is REMOTE; LOCAL 0 (or ":REMOTE") is a free
port. A connection the pod refuses (nothing listens on REMOTE) ends the whole forward with the
kubelet's error, as kubectl's does ("lost connection to pod"); Ctrl-C ends it cleanly.

Errors (kubesim/errors.py): PortForwardInputError, a port or target that can never work (the message
says how to write it); PortForwardTargetError, the target is not there, not running, has no such port,
or refused a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control.api.labels import label_selector_as_selector, selector_from_set
from control.client import (
    DEPLOYMENTS,
    PODS,
    SERVICES,
    Client,
    KubeClientError,
    PortForwardError,
    load_kubeconfig,
    open_port_forward,
)
from kubesim.errors import PortForwardInputError, PortForwardTargetError

READ_CHUNK = 32 * 1024
_KINDS = {"pod": "pod", "pods": "pod", "po": "pod", "svc": "service", "service": "service", "services": "service",
          "deploy": "deployment", "deployment": "deployment", "deployments": "deployment"}


@dataclass(frozen=True)
class PortSpec:
    local: int | None  # None: the same as the remote port; 0: any free port
    remote: str  # a number, or a port's name


def parse_port(text: str) -> PortSpec:
    """[LOCAL:]REMOTE as kubectl takes it: "8080", "8080:80", ":80" / "0:80" (a free local port)."""
    local, colon, remote = text.rpartition(":")
    if not colon:
        local, remote = "", text
    if not remote:
        raise PortForwardInputError(f"port {text!r}: give [LOCAL:]REMOTE, such as 8080:80 or 80")
    local_port: int | None = None
    if colon:
        if local not in ("", "0") and not (local.isdigit() and 0 < int(local) < 65536):
            raise PortForwardInputError(f"local port {local!r} of {text!r}: a number in [1, 65535] (or 0, or "
                                        "nothing, for any free port)")
        local_port = int(local) if local else 0
    if remote.isdigit() and not 0 < int(remote) < 65536:
        raise PortForwardInputError(f"remote port {remote!r} of {text!r}: a number in [1, 65535], or a port's name")
    return PortSpec(local_port, remote)


def parse_target(text: str) -> tuple[str, str]:
    """(kind, name) of POD, pod/NAME, svc/NAME, service/NAME, deploy/NAME, deployment/NAME."""
    kind, slash, name = text.partition("/")
    if not slash:
        return "pod", text
    if kind.lower() not in _KINDS or not name:
        raise PortForwardInputError(f"target {text!r}: give POD, pod/NAME, svc/NAME or deploy/NAME")
    return _KINDS[kind.lower()], name


def _container_port(pod: dict[str, Any], name: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None


def pod_port(pod: dict[str, Any], remote: str) -> int:
    """REMOTE as a number in POD: itself, or the container port of that name."""
    if remote.isdigit():
        return int(remote)
    found = _container_port(pod, remote)
    if found is None:
        raise PortForwardTargetError(f"pod {pod['metadata']['name']} has no container port named {remote!r}: "
                                     "give its number, or a name in its containers' ports")
    return found


def service_port(service: dict[str, Any], pod: dict[str, Any], remote: str) -> int:
    """The pod port a Service port (by number or name) goes to: its targetPort, resolved in POD."""
    name = service["metadata"]["name"]
    for port in (service.get("spec") or {}).get("ports") or []:
        if str(port.get("port")) == remote or (port.get("name") and port.get("name") == remote):
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, int):
                return target
            if str(target).isdigit():
                return int(target)
            resolved = _container_port(pod, str(target))
            if resolved is None:
                raise PortForwardTargetError(f"service {name}'s targetPort {target!r} is no container port of pod "
                                             f"{pod['metadata']['name']}")
            return resolved
    raise PortForwardTargetError(f"Service {name} does not have a service port {remote}: give one of "
                                 f"{[p.get('port') for p in (service.get('spec') or {}).get('ports') or []]}")


def _running(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")


async def _pod_of(client: Client, namespace: str, selector: str, what: str) -> dict[str, Any]:
    pods = (await client.list(PODS, namespace=namespace, label_selector=selector))["items"]
    # kubectl takes an active pod, the longest running first
    running = sorted((p for p in pods if _running(p)),
                     key=lambda p: ((p.get("status") or {}).get("startTime") or "", p["metadata"]["name"]))
    if not running:
        raise PortForwardTargetError(f"{what} has no running pod to forward to"
                                     + (f" ({len(pods)} not running)" if pods else " (no pod matches its selector)"))
    chosen: dict[str, Any] = running[0]
    return chosen


async def resolve(client: Client, namespace: str, target: str, specs: list[PortSpec]
                  ) -> tuple[str, list[tuple[int | None, int]]]:
    """The pod TARGET stands for and each spec's (local, pod port)."""
    kind, name = parse_target(target)
    service = None
    if kind == "pod":
        pod = await client.get(PODS, name, namespace=namespace)
    elif kind == "service":
        service = await client.get(SERVICES, name, namespace=namespace)
        wanted = (service.get("spec") or {}).get("selector") or {}
        if not wanted:
            raise PortForwardTargetError(f"service {name} has no selector, so no pod of its own to forward to")
        pod = await _pod_of(client, namespace, str(selector_from_set(wanted)), f"service {name}")
    else:
        deployment = await client.get(DEPLOYMENTS, name, namespace=namespace)
        selector = label_selector_as_selector((deployment.get("spec") or {}).get("selector"))
        pod = await _pod_of(client, namespace, str(selector), f"deployment {name}")
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        raise PortForwardTargetError(f"unable to forward port because pod is not running. Current status={phase}")
    ports = [(spec.local, service_port(service, pod, spec.remote) if service else pod_port(pod, spec.remote))
             for spec in specs]
    return pod["metadata"]["name"], ports


Say = Callable[[str], None]


async def _connection(client: Client, namespace: str, pod: str, local: int, remote: int,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter, say: Say, warn: Say,
                      fail: Say) -> None:
    say(f"Handling connection for {local}")
    try:
        stream = await open_port_forward(client, namespace, pod, remote)
    except KubeClientError as exc:
        warn(f"error: an error occurred forwarding {local} -> {remote}: {exc}")
        writer.close()
        return

    async def to_pod() -> None:
        while chunk := await reader.read(READ_CHUNK):
            await stream.send(chunk)

    sending = asyncio.get_running_loop().create_task(to_pod())
    try:
        async for chunk in stream:
            writer.write(chunk)
            await writer.drain()
    except PortForwardError as exc:
        warn(f"error: an error occurred forwarding {local} -> {remote}: {exc}")
        fail(str(exc))
    except (ConnectionError, KubeClientError):
        pass  # this side's client went away, or the apiserver's connection broke: this connection ends
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sending
        await stream.close()
        writer.close()


async def forward(client: Client, namespace: str, target: str, specs: list[PortSpec], *, stop: asyncio.Event,
                  say: Say = print, warn: Say = print) -> None:
    """Forward until STOP is set; PortForwardTargetError / KubeClientError before anything listens."""
    pod, ports = await resolve(client, namespace, target, specs)
    failures: list[str] = []

    def fail(why: str) -> None:
        failures.append(why)
        stop.set()

    servers: list[asyncio.Server] = []
    connections: set[asyncio.Task[None]] = set()
    try:
        for local, remote in ports:
            def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: int = remote,
                       local: int | None = local) -> None:
                bound = writer.get_extra_info("sockname")[1]
                task = asyncio.get_running_loop().create_task(
                    _connection(client, namespace, pod, bound, remote, reader, writer, say, warn, fail))
                connections.add(task)
                task.add_done_callback(connections.discard)

            try:
                server = await asyncio.start_server(handle, "127.0.0.1", remote if local is None else local)
            except OSError as exc:
                raise PortForwardTargetError(f"unable to listen on port {remote if local is None else local}: "
                                             f"{exc.strerror or exc}") from None
            servers.append(server)
            say(f"Forwarding from 127.0.0.1:{server.sockets[0].getsockname()[1]} -> {remote}")
        await stop.wait()
        if failures:
            raise PortForwardTargetError(f"{failures[0]}; lost connection to pod")
    finally:
        for server in servers:
            server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


def run_port_forward(kubeconfig: Path, namespace: str, target: str, ports: list[str], *, say: Say, warn: Say) -> None:
    """The command: parse, resolve, forward until SIGINT or SIGTERM. Errors as the module docstring says
    (and control.client's ApiError for what the apiserver refused, such as NotFound)."""
    specs = [parse_port(p) for p in ports]
    parse_target(target)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with load_kubeconfig(kubeconfig) as client:
            await forward(client, namespace, target, specs, stop=stop, say=say, warn=warn)

    asyncio.run(main())
