"""The kubelet's side of the node runtime (control.runtime): containers and sandboxes that live in
the runtime's process, so that they outlive the kubelet.

A RemoteContainer is a Container whose start, stop and exit go over the runtime's socket; the pod
worker drives it as it drives one served in this process. A kubelet that starts again adopts the
containers the runtime still runs (adopt()), keyed by pod UID, container name and attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp

from control.runtime import RuntimeCallError, RuntimeClient
from control.runtime.containers import Container, ContainerError, ContainerLog

log = logging.getLogger("kubelet")
# 128 + SIGKILL: what a container the kubelet lost with its runtime shows, as a containerd crash does
LOST_EXIT = 137


class RemoteContainer(Container):
    """A container of the runtime. SANDBOX is RunPodSandbox's body (sent again before each create: a
    runtime that crashed and came back has the sandbox NotReady, and running it again is idempotent);
    CREATE is CreateContainer's body without podSandboxId."""

    def __init__(self, runtime: RuntimeClient, sandbox: dict[str, Any], create: dict[str, Any], log: ContainerLog):
        super().__init__(str(create["spec"].get("name", "")), log)
        self.runtime = runtime
        self.sandbox = sandbox
        self.create = create
        self.id: str | None = None
        self.pid: int | None = None
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    def adopt(cls, runtime: RuntimeClient, status: dict[str, Any], log: ContainerLog) -> RemoteContainer:
        """The running container STATUS (ListContainers' item) that an earlier kubelet started."""
        container = cls(runtime, {}, {"spec": {"name": status["metadata"]["name"]}}, log)
        container.id = status["id"]
        container.started_at = status.get("startedAt")
        container.pid = status.get("pid")
        container._watch = asyncio.get_running_loop().create_task(container._wait())
        return container

    async def start(self) -> None:
        try:
            sandbox_id = (await self.runtime.call("RunPodSandbox", self.sandbox))["podSandboxId"]
            self.id = (await self.runtime.call("CreateContainer", {**self.create, "podSandboxId": sandbox_id}))[
                "containerId"]
            await self.runtime.call("StartContainer", {"containerId": self.id})
            status = (await self.runtime.call("ContainerStatus", {"containerId": self.id}))["status"]
        except RuntimeCallError as exc:
            raise ContainerError(exc.reason if exc.code == 409 else "CreateContainerError", exc.message) from None
        except (aiohttp.ClientError, OSError) as exc:
            # "Error": the pod worker tries again with back-off, as for a container that failed at once
            raise ContainerError("Error", f"the node runtime is not reachable: {exc}") from None
        self.started_at = status.get("startedAt")
        self.pid = status.get("pid")
        self._watch = asyncio.get_running_loop().create_task(self._wait())

    async def _wait(self) -> None:
        try:
            status = (await self.runtime.call("WaitContainer", {"containerId": self.id}, timeout=None))["status"]
            self.finished_at = status.get("finishedAt")
            self._finished(int(status.get("exitCode") or 0))
        except asyncio.CancelledError:
            raise
        except (RuntimeCallError, aiohttp.ClientError, OSError) as exc:
            # The runtime went away (or forgot the container): what it ran went with it.
            log.warning("container %s: lost with the node runtime (%s)", self.id, exc)
            self._finished(LOST_EXIT)

    async def stop(self, grace: float) -> None:
        if self.id is None or self.exited.is_set():
            self._finished(self.exit_code or 0)
            return
        try:
            await self.runtime.call("StopContainer", {"containerId": self.id, "timeout": grace},
                                    timeout=grace + 30)
        except (RuntimeCallError, aiohttp.ClientError, OSError):
            self._finished(LOST_EXIT)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.exited.wait(), 10)
        self._finished(self.exit_code if self.exit_code is not None else 0)
