"""Readiness, liveness and startup probes: httpGet and tcpSocket from the node to the pod's address
(as the kubelet probes from the host), exec inside the pod's namespace."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

from netsim import namespaces


@dataclass
class ProbeResult:
    ok: bool
    message: str = ""


def _port(value: Any, container: dict[str, Any]) -> int | None:
    if isinstance(value, int):
        return value
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    with contextlib.suppress(TypeError, ValueError):
        return int(value)
    return None


async def run_probe(probe: dict[str, Any], *, pod_ip: str, netns: str, container: dict[str, Any]) -> ProbeResult:
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            return await asyncio.wait_for(_http(probe["httpGet"], pod_ip, container), timeout)
        if "tcpSocket" in probe:
            return await asyncio.wait_for(_tcp(probe["tcpSocket"], pod_ip, container), timeout)
        if "exec" in probe:
            return await _exec(probe["exec"].get("command") or [], netns, timeout)
    except TimeoutError:
        return ProbeResult(False, f"timeout after {timeout:g}s")
    except OSError as exc:
        return ProbeResult(False, str(exc.strerror or exc))
    return ProbeResult(False, "probe has no handler")


async def _http(action: dict[str, Any], pod_ip: str, container: dict[str, Any]) -> ProbeResult:
    port = _port(action.get("port"), container)
    if port is None:
        return ProbeResult(False, f"port {action.get('port')!r} is not a port of the container")
    host = action.get("host") or pod_ip
    path = action.get("path") or "/"
    reader, writer = await asyncio.open_connection(host, port)
    try:
        headers = "".join(f"{h['name']}: {h['value']}\r\n" for h in action.get("httpHeaders") or [])
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.30\r\n{headers}"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = (await reader.readline()).decode(errors="replace").split()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    code = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    # Upstream: 200 <= code < 400 is success.
    if 200 <= code < 400:
        return ProbeResult(True)
    return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")


async def _tcp(action: dict[str, Any], pod_ip: str, container: dict[str, Any]) -> ProbeResult:
    port = _port(action.get("port"), container)
    if port is None:
        return ProbeResult(False, f"port {action.get('port')!r} is not a port of the container")
    _, writer = await asyncio.open_connection(action.get("host") or pod_ip, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True)


async def _exec(command: list[str], netns: str, timeout: float) -> ProbeResult:
    if not command:
        return ProbeResult(False, "exec probe has no command")
    process = await asyncio.create_subprocess_exec(
        # in the container's place, as upstream runs it: the pod's hostname, /etc files and mounts
        *namespaces.command_in(netns, command, uts=True, mnt=True),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return ProbeResult(False, f"command timed out after {timeout:g}s")
    if process.returncode == 0:
        return ProbeResult(True)
    return ProbeResult(False, f"command exited {process.returncode}: {output.decode(errors='replace')[:200]}")


class Prober(Protocol):
    """The probe seam: runs one probe of KIND (readinessProbe, livenessProbe, startupProbe) of a container
    of POD ("namespace/name") and says how it went."""

    async def run(self, kind: str, probe: dict[str, Any], *, pod: str, pod_ip: str, netns: str,
                  container: dict[str, Any]) -> ProbeResult: ...


class NetworkProber:
    """The real prober: HTTP and TCP to the pod's address, exec in its namespace (run_probe)."""

    async def run(self, kind: str, probe: dict[str, Any], *, pod: str, pod_ip: str, netns: str,
                  container: dict[str, Any]) -> ProbeResult:
        return await run_probe(probe, pod_ip=pod_ip, netns=netns, container=container)


def probe_errors(container: dict[str, Any]) -> list[str]:
    """What is wrong with a container's probes, as the kubelet would refuse them."""
    problems = []
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if h in probe]
        if len(handlers) != 1:
            problems.append(f"{kind}: must specify exactly one handler (httpGet, tcpSocket or exec)")
        for field in ("periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold"):
            value = probe.get(field, 1)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{kind}.{field}: must be a positive integer, got {value!r}")
    return problems
