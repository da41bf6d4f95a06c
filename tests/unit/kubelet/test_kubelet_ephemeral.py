"""Ephemeral containers on the kubelet's fakes: one added to a running pod through pods/NAME/ephemeralcontainers
starts in the pod's sandbox, shows in ephemeralContainerStatuses (running, then terminated), is never restarted
and leaves the pod's phase and readiness alone; a missing target or an image that cannot run keeps it waiting
with the reason and an event; exec, attach and logs find it by name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from control.client import PODS
from tests.unit.kubelet.kit import Node, running_node

DEBUGGER = {"name": "debugger", "image": "busybox", "command": ["sh"], "stdin": True}


async def add(node: Node, pod: str, *containers: dict[str, Any]) -> None:
    await node.admin.patch(PODS, pod, {"spec": {"ephemeralContainers": list(containers)}}, namespace=node.namespace,
                           patch_type="strategic", subresource="ephemeralcontainers")


async def ephemeral_state(node: Node, pod: str, name: str = "debugger") -> dict[str, Any]:
    for entry in (await node.status(pod)).get("ephemeralContainerStatuses") or []:
        if entry["name"] == name:
            return dict(entry.get("state") or {})
    return {}


async def running_pod(node: Node, name: str = "web", **spec: Any) -> dict[str, Any]:
    pod = await node.create_pod(name, [{"name": "c", "image": "pause"}], **spec)
    await node.eventually(lambda: _phase(node, name, "Running"), f"{name} Running")
    await node.eventually(lambda: _ready(node, name), f"{name} Ready")
    return pod


async def _phase(node: Node, pod: str, phase: str) -> bool:
    return (await node.status(pod)).get("phase") == phase


async def _ready(node: Node, pod: str) -> bool:
    return await node.condition(pod, "Ready") == "True"


def test_an_added_container_runs_in_the_pod_then_stays_terminated(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await running_pod(node, restartPolicy="Always")
            await add(node, "web", DEBUGGER)

            async def running() -> bool:
                return "running" in await ephemeral_state(node, "web")

            await node.eventually(running, "the debugger running")
            debugger = node.containers.latest("web", "debugger")
            assert debugger.netns == node.sandbox_ns("web") and debugger.hostname == "web"
            status = await node.status("web")
            [entry] = status["ephemeralContainerStatuses"]
            assert entry["ready"] is False and entry["restartCount"] == 0 and entry["image"] == "busybox"
            assert [c["name"] for c in status["containerStatuses"]] == ["c"]
            assert await node.condition("web", "Ready") == "True"
            await node.eventually(lambda: node.events("web", "Started"), "Started events")
            assert any("debugger" in e["message"] for e in await node.events("web", "Started"))
            # exec, attach and logs find it by name, as upstream's kubelet does
            _, instance = node.kubelet.running_container("default", "web", "debugger")
            assert instance is debugger
            path, _ = node.kubelet.log_source("default", "web", "debugger")
            assert path.name == "debugger.log"

            debugger.exit(3)  # restartPolicy Always: the pod's own containers would restart, it does not

            async def terminated() -> dict[str, Any]:
                return (await ephemeral_state(node, "web")).get("terminated") or {}

            done = await node.eventually(terminated, "the debugger terminated")
            assert done["exitCode"] == 3 and done["reason"] == "Error"
            await node.clock.advance(600)
            assert len(node.containers.of("web", "debugger")) == 1
            assert (await node.status("web"))["phase"] == "Running"
            assert await node.condition("web", "Ready") == "True"

            # a second one added later starts too; the first is not started again
            await add(node, "web", {**DEBUGGER, "name": "second"})
            await node.eventually(lambda: node.containers.of("web", "second"), "the second one made")
            assert len(node.containers.of("web", "debugger")) == 1

            # deleting the pod stops it with the others
            second = node.containers.latest("web", "second")
            await node.admin.delete(PODS, "web", namespace="default")
            await node.eventually(lambda: not second.running, "the second one stopped")

    asyncio.run(main())


def test_a_target_that_has_not_started_keeps_it_waiting_with_the_reason(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            node.containers.fail_next_start("broken", "ErrImagePull", 'no built-in workload for image "nope"')
            await node.create_pod("web", [{"name": "c", "image": "pause"}, {"name": "broken", "image": "nope"}])
            await node.eventually(lambda: _phase(node, "web", "Pending"), "web Pending")
            await node.eventually(lambda: node.events("web", "Failed"), "broken's Failed event")
            # the pod has a sandbox and c runs: the debugger would start, but its target never started
            await add(node, "web", {**DEBUGGER, "targetContainerName": "broken"})

            async def waiting() -> dict[str, Any]:
                return (await ephemeral_state(node, "web")).get("waiting") or {}

            await node.eventually(lambda: _has_reason(waiting(), "CreateContainerConfigError"), "waiting")
            assert "target container 'broken'" in (await waiting())["message"]
            assert node.containers.of("web", "debugger") == []

            # targeting c, which runs, it starts
            await add(node, "web", {**DEBUGGER, "name": "on-c", "targetContainerName": "c"})
            await node.eventually(lambda: node.containers.of("web", "on-c"), "the debugger on c made")

    asyncio.run(main())


async def _has_reason(entry: Any, reason: str) -> bool:
    return bool((await entry).get("reason") == reason)


def test_an_image_that_cannot_run_is_waiting_with_an_event_and_not_retried_as_a_crash(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await running_pod(node)
            node.containers.fail_next_start("debugger", "ErrImagePull",
                                            'kubesim has no built-in workload for image "example/tools"')
            await add(node, "web", {**DEBUGGER, "image": "example/tools", "command": []})

            async def waiting() -> dict[str, Any]:
                return (await ephemeral_state(node, "web")).get("waiting") or {}

            await node.eventually(lambda: _has_reason(waiting(), "ErrImagePull"), "ErrImagePull")
            assert 'image "example/tools"' in (await waiting())["message"]
            failed = await node.eventually(lambda: node.events("web", "Failed"), "the Failed event")
            assert "example/tools" in failed[0]["message"]
            assert (await node.status("web"))["phase"] == "Running"

    asyncio.run(main())


def test_one_added_before_the_pod_runs_starts_with_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            # the worker sees the pod with its ephemeral container before it made the sandbox
            await node.create_pod("web", [{"name": "c", "image": "pause"}])
            await add(node, "web", DEBUGGER)
            await node.eventually(lambda: _phase(node, "web", "Running"), "web Running")

            async def running() -> bool:
                return "running" in await ephemeral_state(node, "web")

            await node.eventually(running, "the debugger running")
            assert len(node.containers.of("web", "debugger")) == 1

    asyncio.run(main())


def test_a_pod_asking_for_the_nodes_namespaces_is_refused_with_the_reason(tmp_path: Path) -> None:
    # what `kubectl debug node/NAME` creates: kubesim gives every pod namespaces of its own, so it says so
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await node.create_pod("node-debugger", [{"name": "debugger", "image": "busybox", "stdin": True}],
                                  hostNetwork=True, hostPID=True, hostIPC=True)

            async def waiting() -> dict[str, Any]:
                entry = await node.container_status("node-debugger", "debugger")
                return dict((entry.get("state") or {}).get("waiting") or {})

            await node.eventually(lambda: _has_reason(waiting(), "CreateContainerConfigError"), "refused")
            message = (await waiting())["message"]
            assert "hostNetwork=true, hostPID=true, hostIPC=true is not supported" in message
            failed = await node.eventually(lambda: node.events("node-debugger", "Failed"), "the Failed event")
            assert "hostNetwork=true" in failed[0]["message"]
            assert node.containers.of("node-debugger", "debugger") == []
            assert (await node.status("node-debugger"))["phase"] == "Pending"
            assert node.kernel.ns_exists(node.sandbox_ns("node-debugger")) is False

    asyncio.run(main())


def test_a_restarted_kubelet_runs_none_of_them_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await running_pod(node)
            await add(node, "web", DEBUGGER, {**DEBUGGER, "name": "still-running"})
            for name in ("debugger", "still-running"):
                await node.eventually(lambda n=name: _state_is(node, n, "running"), f"{name} running")
            node.containers.latest("web", "debugger").exit(0)
            await node.eventually(lambda: _state_is(node, "debugger", "terminated"), "debugger terminated")
            api, kernel = node.api, node.kernel
            assert node.task is not None
            node.task.cancel()
            await asyncio.gather(node.task, return_exceptions=True)
            node.task = None
            async with running_node(tmp_path, api=api, kernel=kernel) as again:
                again.pods = node.pods
                await again.eventually(lambda: again.containers.of("web", "c"), "web's own container again")
                # the one that finished stays as it was; the one that ran in the old kubelet is gone with it
                await again.eventually(lambda: _state_is(again, "still-running", "terminated"), "reported gone")
                gone = (await ephemeral_state(again, "web", "still-running"))["terminated"]
                assert gone["reason"] == "ContainerStatusUnknown" and gone["exitCode"] == 137
                assert (await ephemeral_state(again, "web", "debugger"))["terminated"]["exitCode"] == 0
                assert again.containers.of("web", "debugger") == again.containers.of("web", "still-running") == []

    asyncio.run(main())


async def _state_is(node: Node, name: str, state: str) -> bool:
    return state in await ephemeral_state(node, "web", name)


def test_it_gets_a_volume_only_where_the_pods_containers_mount_one(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await node.create_pod("vol", [{"name": "c", "image": "pause",
                                           "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                                  volumes=[{"name": "data", "emptyDir": {}}])
            await node.eventually(lambda: _phase(node, "vol", "Running"), "vol Running")
            await add(node, "vol", {**DEBUGGER, "volumeMounts": [{"name": "data", "mountPath": "/data/"}]},
                      {**DEBUGGER, "name": "elsewhere", "volumeMounts": [{"name": "data", "mountPath": "/mnt"}]})
            await node.eventually(lambda: node.containers.of("vol", "debugger"), "the debugger at /data made")

            async def waiting() -> dict[str, Any]:
                return (await ephemeral_state(node, "vol", "elsewhere")).get("waiting") or {}

            await node.eventually(lambda: _has_reason(waiting(), "CreateContainerConfigError"), "elsewhere waiting")
            assert "at /mnt: kubesim mounts a pod's volumes when it makes the pod's sandbox" in (await waiting())[
                "message"]
            assert "mount it where one does (/data)" in (await waiting())["message"]
            assert node.containers.of("vol", "elsewhere") == []

    asyncio.run(main())
