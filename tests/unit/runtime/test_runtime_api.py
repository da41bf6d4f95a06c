"""The node runtime's CRI-shaped API over its real Unix socket, on a FakeKernel and fake containers:
sandboxes made once per pod UID, containers through their life, errors that name the object, a
restarted runtime listing the sandboxes that survived it. No privileges needed."""

from __future__ import annotations

import asyncio
import stat
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from control.kubelet.fake import FakeContainers
from control.runtime import Runtime, RuntimeCallError, RuntimeClient
from control.runtime.containers import Container, ContainerLog, now_rfc3339
from control.runtime.server import serving
from netsim import names
from netsim.fake import FakeKernel

CLUSTER, NODE, CIDR = "unit", "worker-1", "10.244.1.0/24"


def node_kernel() -> FakeKernel:
    kernel = FakeKernel()
    kernel.ns_create(names.node_ns(CLUSTER, NODE))
    kernel.add_bridge(names.node_ns(CLUSTER, NODE), names.NODE_BRIDGE)
    return kernel


@asynccontextmanager
async def runtime_at(tmp: Path, kernel: FakeKernel, made: FakeContainers) -> AsyncIterator[RuntimeClient]:
    runtime = Runtime(CLUSTER, NODE, CIDR, tmp / "node", kernel=kernel, containers=made)
    client = RuntimeClient(tmp / "runtime.sock")
    try:
        async with serving(runtime, tmp / "runtime.sock"):
            yield client
    finally:
        await client.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


def sandbox_body(uid: str = "uid-1", ip: str = "10.244.1.2") -> dict[str, Any]:
    return {"uid": uid, "name": "web", "namespace": "default", "ip": ip,
            "place": {"hostname": "web", "files": [], "hidden": [], "exposed": []}}


def test_socket_is_the_owners_alone(tmp_path: Path) -> None:
    async def body() -> None:
        async with runtime_at(tmp_path, node_kernel(), FakeContainers()) as client:
            mode = (tmp_path / "runtime.sock").stat().st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
            assert (await client.call("ListPodSandbox"))["items"] == []
        assert not (tmp_path / "runtime.sock").exists()
    run(body)


def test_a_sandbox_is_made_once_per_pod_uid_and_removed_with_its_namespace(tmp_path: Path) -> None:
    kernel = node_kernel()

    async def body() -> None:
        async with runtime_at(tmp_path, kernel, FakeContainers()) as client:
            first = await client.call("RunPodSandbox", sandbox_body())
            again = await client.call("RunPodSandbox", sandbox_body())
            assert first == again == {"podSandboxId": "uid-1"}
            netns = names.pod_ns(CLUSTER, "uid-1")
            assert kernel.ns_exists(netns)
            [item] = (await client.call("ListPodSandbox"))["items"]
            assert item["state"] == "SANDBOX_READY" and item["ip"] == "10.244.1.2" and item["netns"] == netns
            await client.call("RemovePodSandbox", {"podSandboxId": "uid-1"})
            assert not kernel.ns_exists(netns)
            assert (await client.call("ListPodSandbox"))["items"] == []
            await client.call("RemovePodSandbox", {"podSandboxId": "uid-1"})  # idempotent, as CRI's
    run(body)


def test_a_container_is_created_started_stopped_and_removed(tmp_path: Path) -> None:
    made = FakeContainers()

    async def body() -> None:
        async with runtime_at(tmp_path, node_kernel(), made) as client:
            await client.call("RunPodSandbox", sandbox_body())
            created = await client.call("CreateContainer", {
                "podSandboxId": "uid-1", "spec": {"name": "app", "image": "pause"}, "env": {"A": "1"},
                "hostname": "web", "logPath": str(tmp_path / "app.log"), "attempt": 0})
            cid = created["containerId"]
            assert (await client.call("ContainerStatus", {"containerId": cid}))["status"]["state"] == \
                "CONTAINER_CREATED"
            await client.call("StartContainer", {"containerId": cid})
            status = (await client.call("ContainerStatus", {"containerId": cid}))["status"]
            assert status["state"] == "CONTAINER_RUNNING" and status["startedAt"]
            [fake] = made.of("web", "app")
            assert fake.netns == names.pod_ns(CLUSTER, "uid-1") and fake.env == {"A": "1"}
            waiter = asyncio.ensure_future(client.call("WaitContainer", {"containerId": cid}))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            fake.exit(3)
            waited = (await waiter)["status"]
            assert waited["state"] == "CONTAINER_EXITED" and waited["exitCode"] == 3
            [listed] = (await client.call("ListContainers", {"podSandboxId": "uid-1"}))["items"]
            assert listed["id"] == cid
            await client.call("RemoveContainer", {"containerId": cid})
            assert (await client.call("ListContainers"))["items"] == []
    run(body)


def test_stopping_a_sandbox_stops_its_running_containers_with_the_grace_given(tmp_path: Path) -> None:
    made = FakeContainers()

    async def body() -> None:
        async with runtime_at(tmp_path, node_kernel(), made) as client:
            await client.call("RunPodSandbox", sandbox_body())
            cid = (await client.call("CreateContainer", {"podSandboxId": "uid-1", "spec": {"name": "app"},
                                                          "logPath": str(tmp_path / "a.log")}))["containerId"]
            await client.call("StartContainer", {"containerId": cid})
            await client.call("StopPodSandbox", {"podSandboxId": "uid-1", "grace": 7})
            assert made.latest("web", "app").stops == [7.0]
            [item] = (await client.call("ListPodSandbox"))["items"]
            assert item["state"] == "SANDBOX_NOTREADY"
            with pytest.raises(RuntimeCallError) as caught:
                await client.call("CreateContainer", {"podSandboxId": "uid-1", "spec": {"name": "b"},
                                                      "logPath": str(tmp_path / "b.log")})
            assert caught.value.code == 400 and "RunPodSandbox" in caught.value.message
    run(body)


def test_errors_name_the_object_and_the_fix(tmp_path: Path) -> None:
    made = FakeContainers()
    made.fail_next_start("app", "Error", "listen tcp :80: bind: address already in use")

    async def body() -> None:
        async with runtime_at(tmp_path, node_kernel(), made) as client:
            with pytest.raises(RuntimeCallError) as missing:
                await client.call("ContainerStatus", {"containerId": "nope/app/0"})
            assert missing.value.code == 404 and "nope/app/0" in missing.value.message
            with pytest.raises(RuntimeCallError) as bad:
                await client.call("RunPodSandbox", {"uid": "u", "ip": "10.9.9.9"})
            assert bad.value.code == 400 and "10.9.9.9" in bad.value.message
            with pytest.raises(RuntimeCallError) as no_field:
                await client.call("StopPodSandbox", {})
            assert no_field.value.code == 400 and "podSandboxId" in no_field.value.message
            with pytest.raises(RuntimeCallError) as unknown:
                await client.call("CheckpointContainer", {})  # a CRI verb not served
            assert unknown.value.code == 404 and "RunPodSandbox" in unknown.value.message
            await client.call("RunPodSandbox", sandbox_body())
            cid = (await client.call("CreateContainer", {"podSandboxId": "uid-1", "spec": {"name": "app"},
                                                          "logPath": str(tmp_path / "a.log")}))["containerId"]
            with pytest.raises(RuntimeCallError) as failed:
                await client.call("StartContainer", {"containerId": cid})
            assert failed.value.code == 409 and failed.value.reason == "Error"
    run(body)


def test_an_image_without_a_built_in_workload_is_err_image_pull(tmp_path: Path) -> None:
    async def body() -> None:
        kernel = node_kernel()
        runtime = Runtime(CLUSTER, NODE, CIDR, tmp_path / "node", kernel=kernel)  # the real make_container
        async with serving(runtime, tmp_path / "r.sock"):
            client = RuntimeClient(tmp_path / "r.sock")
            try:
                await client.call("RunPodSandbox", sandbox_body())
                with pytest.raises(RuntimeCallError) as caught:
                    await client.call("CreateContainer", {"podSandboxId": "uid-1",
                                                          "spec": {"name": "x", "image": "example/unknown"},
                                                          "logPath": str(tmp_path / "x.log")})
                assert caught.value.reason == "ErrImagePull" and "example/unknown" in caught.value.message
            finally:
                await client.close()
    run(body)


class KillRecordingKernel(FakeKernel):
    def __init__(self) -> None:
        super().__init__()
        self.killed_in: list[str] = []

    def ns_kill_processes(self, ns: str) -> list[int]:
        self.killed_in.append(ns)
        return super().ns_kill_processes(ns)


def test_a_restarted_runtime_lists_the_sandboxes_that_survived_it_as_not_ready(tmp_path: Path) -> None:
    kernel = KillRecordingKernel()
    kernel.ns_create(names.node_ns(CLUSTER, NODE))
    kernel.add_bridge(names.node_ns(CLUSTER, NODE), names.NODE_BRIDGE)

    async def body() -> None:
        async with runtime_at(tmp_path, kernel, FakeContainers()) as client:
            await client.call("RunPodSandbox", sandbox_body("uid-1", "10.244.1.2"))
            await client.call("RunPodSandbox", sandbox_body("uid-2", "10.244.1.3"))
        kernel.ns_delete(names.pod_ns(CLUSTER, "uid-2"))  # gone while no runtime ran: not listed again
        async with runtime_at(tmp_path, kernel, FakeContainers()) as client:
            items = (await client.call("ListPodSandbox"))["items"]
            assert [(i["id"], i["state"], i["ip"]) for i in items] == [("uid-1", "SANDBOX_NOTREADY", "10.244.1.2")]
            assert (await client.call("ListContainers"))["items"] == []  # containers died with the process
            # Running it again reuses the surviving namespace: same address, nothing made twice, and what
            # the crashed runtime's processes left running in it killed first.
            kernel.killed_in.clear()
            await client.call("RunPodSandbox", sandbox_body("uid-1", "10.244.1.2"))
            assert kernel.killed_in == [names.pod_ns(CLUSTER, "uid-1")]
            [item] = (await client.call("ListPodSandbox"))["items"]
            assert item["state"] == "SANDBOX_READY"
    run(body)


def test_a_socket_deeper_than_sockaddr_un_holds_is_served(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)

    async def body() -> None:
        runtime = Runtime(CLUSTER, NODE, CIDR, tmp_path / "node", kernel=node_kernel())
        async with serving(runtime, deep / "runtime.sock"):
            client = RuntimeClient(deep / "runtime.sock")
            try:
                assert (await client.call("ListPodSandbox"))["items"] == []
            finally:
                await client.close()
            assert stat.S_IMODE((deep / "runtime.sock").stat().st_mode) == 0o600
    run(body)


class _Spinner(Container):
    """A real busy process in a session of its own (as a process container is), without namespaces."""

    def __init__(self, name: str, log: ContainerLog):
        super().__init__(name, log)
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
        self.started_at = now_rfc3339()

    async def stop(self, grace: float) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self._finished(137)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


def test_container_stats_measure_running_containers_and_mark_builtins(tmp_path: Path) -> None:
    made = FakeContainers()

    def containers(spec: dict[str, Any], **kwargs: Any) -> Container:
        return _Spinner(spec["name"], kwargs["log"]) if spec["name"] == "spin" else made(spec, **kwargs)

    async def body() -> None:
        async with runtime_at(tmp_path, node_kernel(), containers) as client:  # type: ignore[arg-type]
            await client.call("RunPodSandbox", sandbox_body())
            ids = {}
            for name in ("spin", "web", "stopped"):
                ids[name] = (await client.call("CreateContainer", {
                    "podSandboxId": "uid-1", "spec": {"name": name, "image": "pause"}, "logPath":
                    str(tmp_path / f"{name}.log")}))["containerId"]
                await client.call("StartContainer", {"containerId": ids[name]})
            await client.call("StopContainer", {"containerId": ids["stopped"]})
            try:
                async def measured() -> dict[str, Any]:
                    return {s["metadata"]["name"]: s for s in (await client.call("ListContainerStats"))["stats"]}

                stats = await measured()
                for _ in range(600):  # until the loop has had a tick of CPU (30 s at most)
                    if stats["spin"]["cpu"]["usageCoreNanoSeconds"] > 0:
                        break
                    await asyncio.sleep(0.05)
                    stats = await measured()
                assert set(stats) == {"spin", "web"}  # running ones only, as CRI lists them
                assert stats["spin"]["source"] == "proc" and stats["spin"]["memory"]["workingSetBytes"] > 0
                assert stats["web"]["source"] == "builtin" and stats["web"]["cpu"]["usageCoreNanoSeconds"] == 0
                assert stats["spin"]["podSandboxId"] == "uid-1" and stats["spin"]["timestamp"] > 0
                only = (await client.call("ListContainerStats", {"podSandboxId": "other"}))["stats"]
                assert only == []
            finally:
                await client.call("RemovePodSandbox", {"podSandboxId": "uid-1"})
    run(body)
