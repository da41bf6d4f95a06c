"""A kubelet on fakes against a real apiserver, for the kubelet's unit tier.

    async with running_node(tmp_path) as node:
        pod = await node.create_pod("web", [{"name": "c", "image": "pause"}])
        await node.eventually(lambda: node.phase("web") == "Running", "web Running")

The apiserver is tests.harness' real one in this event loop, the kubelet speaks to it as
system:node:worker-1; the node's kernel is a FakeKernel holding the node namespace and its cbr0
bridge, containers, probes and time are control.kubelet.fake's. Nothing needs privileges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control.client import EVENTS, PODS, Client, NotFound
from control.kubelet.agent import Kubelet, NodeConfig
from control.kubelet.fake import FakeClock, FakeContainers, FakeProber
from netsim import names
from netsim.fake import FakeKernel
from tests.harness import LocalAPIServer, local_apiserver

CLUSTER = "unit"
NODE = "worker-1"
POD_CIDR = "10.244.1.0/24"
WAIT = 15.0  # real seconds a condition may take to come true (generous: the machine is shared)


class RecordingKernel(FakeKernel):
    """A FakeKernel that remembers which namespaces had their processes killed, and what was killed."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: dict[str, list[int]] = {}

    def ns_kill_processes(self, ns: str) -> list[int]:
        killed = super().ns_kill_processes(ns)
        if killed:
            self.killed.setdefault(ns, []).extend(killed)
        return killed


def node_kernel() -> RecordingKernel:
    """What netsim's topology leaves for a kubelet: the node namespace with its pod bridge."""
    kernel = RecordingKernel()
    node_ns = names.node_ns(CLUSTER, NODE)
    kernel.ns_create(node_ns)
    kernel.add_bridge(node_ns, names.NODE_BRIDGE)
    return kernel


class DeleteRecorder:
    """Wraps a Client's delete to record the options of each call, then makes it for real."""

    def __init__(self, client: Client) -> None:
        self.calls: list[dict[str, Any]] = []
        self._delete = client.delete
        client.delete = self  # type: ignore[method-assign]

    async def __call__(self, resource: Any, name: str, **options: Any) -> Any:
        self.calls.append({"resource": resource, "name": name, **options})
        return await self._delete(resource, name, **options)


@dataclass
class Node:
    api: LocalAPIServer
    admin: Client
    kubelet: Kubelet
    kernel: RecordingKernel
    containers: FakeContainers
    prober: FakeProber
    clock: FakeClock
    deletes: DeleteRecorder
    task: asyncio.Task[None] | None = None
    namespace: str = "default"
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def create_pod(self, name: str, containers: list[dict[str, Any]] | None = None,
                         **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": NODE, "containers": containers or [{"name": "c", "image": "pause"}], **spec}}
        pod = await self.admin.create(PODS, body, namespace=self.namespace)
        self.pods[name] = pod
        return pod

    async def pod(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.admin.get(PODS, name, namespace=self.namespace)
        except NotFound:
            return None

    async def status(self, name: str) -> dict[str, Any]:
        pod = await self.pod(name)
        return (pod or {}).get("status") or {}

    async def container_status(self, pod: str, container: str = "c") -> dict[str, Any]:
        for entry in (await self.status(pod)).get("containerStatuses") or []:
            if entry["name"] == container:
                return dict(entry)
        return {}

    async def condition(self, pod: str, kind: str) -> str | None:
        for entry in (await self.status(pod)).get("conditions") or []:
            if entry["type"] == kind:
                return str(entry["status"])
        return None

    async def events(self, pod: str, reason: str | None = None) -> list[dict[str, Any]]:
        listed = await self.admin.list(EVENTS, namespace=self.namespace)
        return [e for e in listed["items"] if e["involvedObject"]["name"] == pod
                and (reason is None or e["reason"] == reason)]

    def sandbox_ns(self, pod: str) -> str:
        return names.pod_ns(CLUSTER, self.pods[pod]["metadata"]["uid"])

    def ipam(self) -> dict[str, str]:
        return dict(self.kubelet.ipam.assigned)

    async def eventually(self, check: Callable[[], Any], message: str, timeout: float = WAIT) -> Any:
        """Poll CHECK (sync or async) until it returns something true; fail naming MESSAGE. Only real
        progress (API round trips) waits here: kubelet time moves only through self.clock."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Any = None
        while True:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {message} (last: {last!r})")
            await asyncio.sleep(0.02)


def write_ipam(state_dir: Path, assigned: dict[str, str]) -> None:
    """IPAM records as an earlier run of the kubelet left them."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "ipam.json").write_text(json.dumps(assigned))


@asynccontextmanager
async def running_node(tmp_path: Path, *, pod_cidr: str = POD_CIDR, kernel: RecordingKernel | None = None,
                       api: LocalAPIServer | None = None, start: bool = True,
                       **config: Any) -> AsyncIterator[Node]:
    """A kubelet for worker-1 on fakes, running (unless START is false) until the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        if api is None:
            api = await stack.enter_async_context(local_apiserver(tmp_path))
        client = api.client(f"kubelet-{NODE}")
        cfg = NodeConfig(name=NODE, cluster=CLUSTER, address="172.18.0.3", pod_cidr=pod_cidr,
                         state_dir=tmp_path / "kubelet", **config)
        kernel = kernel if kernel is not None else node_kernel()
        containers, prober, clock = FakeContainers(), FakeProber(), FakeClock()
        kubelet = Kubelet(client, cfg, kernel=kernel, containers=containers, prober=prober, clock=clock)
        node = Node(api, api.client("admin"), kubelet, kernel, containers, prober, clock, DeleteRecorder(client))
        if start:
            node.task = asyncio.get_running_loop().create_task(kubelet.run())
            await node.eventually(lambda: kubelet.informer.has_synced, "the kubelet's pod informer synced")
        try:
            yield node
        finally:
            if node.task is not None:
                node.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await node.task
