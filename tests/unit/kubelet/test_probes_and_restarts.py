"""Probes, restarts and exits on the kubelet's fakes: what the prober answers moves Ready and restarts
containers; back-off doubles on the fake clock; restartPolicy decides what an exit means."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.unit.kubelet.kit import Node, running_node

READINESS = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 3}
LIVENESS = {"tcpSocket": {"port": 8080}, "periodSeconds": 10, "failureThreshold": 1}


def probed(**probes: Any) -> list[dict[str, Any]]:
    return [{"name": "c", "image": "kubesim/echo", **probes}]


async def waiting_reason(node: Node, pod: str) -> str | None:
    return (await node.container_status(pod)).get("state", {}).get("waiting", {}).get("reason")


def test_readiness_failing_makes_the_pod_unready_with_an_event_and_passing_makes_it_ready(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            node.prober.answer("readinessProbe", False, "HTTP probe failed with statuscode: 503")
            pod = await node.create_pod("web", probed(readinessProbe=READINESS))
            await node.eventually(lambda: node.status("web"), "a status for web")
            await node.eventually(lambda: node.events("web", "Unhealthy"), "the Unhealthy event")
            (event,) = await node.events("web", "Unhealthy")
            assert event["type"] == "Warning"
            assert event["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 503"
            status = await node.status("web")
            assert status["phase"] == "Running"
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"

            node.prober.answer("readinessProbe", True)
            await node.clock.advance(1)
            await node.eventually(lambda: _is(node.condition("web", "Ready"), "True"), "web Ready")

            # Failing again: Ready holds until failureThreshold (3) failures in a row, one per period.
            node.prober.answer("readinessProbe", False, "connection refused")
            state = node.kubelet.workers[pod["metadata"]["uid"]].containers["c"]
            runs = node.prober.count("readinessProbe")
            await node.clock.advance(2)
            assert node.prober.count("readinessProbe") == runs + 2
            assert state.ready, "two failures are below the threshold of three"
            await node.clock.advance(1)
            assert not state.ready
            await node.eventually(lambda: _is(node.condition("web", "Ready"), "False"), "web not Ready again")
            assert (await node.container_status("web"))["restartCount"] == 0  # readiness never restarts

    asyncio.run(main())


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


def test_liveness_failing_restarts_the_container_with_doubling_back_off(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path, restart_backoff=5.0) as node:
            node.prober.answer("livenessProbe", False, "dial tcp 10.244.1.2:8080: connect: connection refused")
            await node.create_pod("web", probed(livenessProbe=LIVENESS), terminationGracePeriodSeconds=3)
            await node.eventually(lambda: _is(waiting_reason(node, "web"), "CrashLoopBackOff"), "CrashLoopBackOff")
            first = node.containers.latest("web", "c")
            assert first.stops == [3.0] and not first.running
            entry = await node.container_status("web")
            assert entry["restartCount"] == 0
            assert "back-off 5s restarting failed container=c pod=web" in entry["state"]["waiting"]["message"]
            assert entry["lastState"]["terminated"]["exitCode"] == 143
            await node.eventually(lambda: node.events("web", "Killing"), "the Killing event")
            killing = await node.events("web", "Killing")
            assert "failed liveness probe, will be restarted" in killing[0]["message"]
            await node.eventually(lambda: node.events("web", "BackOff"), "the BackOff event")

            # The back-off runs on the kubelet's clock: nothing restarts until it has passed.
            node.prober.answer("livenessProbe", True)
            await node.clock.advance(4.9)
            assert len(node.containers.of("web", "c")) == 1
            await node.clock.advance(0.1)
            await node.eventually(lambda: _restarted(node, 1), "the first restart")
            second = node.containers.latest("web", "c")
            assert second is not first and second.running

            # It fails again: the next back-off is twice as long.
            node.prober.answer("livenessProbe", False, "connection refused")
            await node.clock.advance(10)
            assert not second.running
            await node.eventually(lambda: _message_has(node, "back-off 10s"), "a 10s back-off")
            assert (await node.container_status("web"))["restartCount"] == 1

    asyncio.run(main())


async def _restarted(node: Node, count: int) -> bool:
    entry = await node.container_status("web")
    return entry.get("restartCount") == count and "running" in entry.get("state", {})


async def _message_has(node: Node, text: str) -> bool:
    return text in (await node.container_status("web")).get("state", {}).get("waiting", {}).get("message", "")


@pytest.mark.parametrize(("policy", "code", "phase"), [
    ("Never", 0, "Succeeded"),
    ("Never", 3, "Failed"),
    ("OnFailure", 0, "Succeeded"),
])
def test_an_exit_that_is_not_restarted_ends_the_pod(tmp_path: Path, policy: str, code: int, phase: str) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await node.create_pod("job", restartPolicy=policy)
            await node.eventually(lambda: _is(node.condition("job", "Ready"), "True"), "job Ready")
            node.containers.latest("job", "c").exit(code)
            await node.eventually(lambda: _phase(node, "job", phase), f"job {phase}")
            entry = await node.container_status("job")
            terminated = entry["state"]["terminated"]
            assert terminated["exitCode"] == code
            assert terminated["reason"] == ("Completed" if code == 0 else "Error")
            assert "lastState" not in entry and entry["restartCount"] == 0 and entry["ready"] is False
            assert await node.condition("job", "Ready") == "False"

    asyncio.run(main())


@pytest.mark.parametrize(("policy", "code"), [("OnFailure", 3), ("Always", 0), ("Always", 1)])
def test_an_exit_that_is_restarted_keeps_the_pod_running(tmp_path: Path, policy: str, code: int) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await node.create_pod("svc", restartPolicy=policy)
            await node.eventually(lambda: _is(node.condition("svc", "Ready"), "True"), "svc Ready")
            node.containers.latest("svc", "c").exit(code)
            await node.eventually(lambda: _is(waiting_reason(node, "svc"), "CrashLoopBackOff"), "CrashLoopBackOff")
            entry = await node.container_status("svc")
            assert entry["lastState"]["terminated"]["exitCode"] == code
            assert entry["lastState"]["terminated"]["reason"] == ("Completed" if code == 0 else "Error")
            assert (await node.status("svc"))["phase"] == "Running"
            await node.clock.advance(node.kubelet.config.restart_backoff)
            await node.eventually(lambda: _ready_again(node), "svc restarted and Ready")
            assert len(node.containers.of("svc", "c")) == 2

    asyncio.run(main())


async def _phase(node: Node, pod: str, phase: str) -> bool:
    return (await node.status(pod)).get("phase") == phase


async def _ready_again(node: Node) -> bool:
    entry = await node.container_status("svc")
    return entry.get("restartCount") == 1 and entry.get("ready") is True


def test_a_container_that_cannot_start_says_why(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            node.containers.fail_next_start("c", "ErrImagePull", 'no built-in workload for image "nope"')
            await node.create_pod("bad")
            await node.eventually(lambda: _is(waiting_reason(node, "bad"), "ErrImagePull"), "ErrImagePull")
            entry = await node.container_status("bad")
            assert entry["state"]["waiting"]["message"] == 'no built-in workload for image "nope"'
            await node.eventually(lambda: node.events("bad", "Failed"), "the Failed event")

    asyncio.run(main())


def test_readiness_waits_for_the_startup_probe_and_a_failing_startup_restarts(tmp_path: Path) -> None:
    startup = {"exec": {"command": ["cat", "/app/started"]}, "periodSeconds": 1, "failureThreshold": 2}

    async def main() -> None:
        async with running_node(tmp_path) as node:
            node.prober.answer("startupProbe", False, "command exited 1: no such file")
            await node.create_pod("slow", probed(startupProbe=startup, readinessProbe=READINESS))
            await node.eventually(lambda: node.events("slow", "Unhealthy"), "the first startup failure")
            assert node.prober.count("readinessProbe") == 0, "readiness waits until the container has started"
            entry = await node.container_status("slow")
            assert entry["ready"] is False
            await node.clock.advance(1)  # the second failure reaches failureThreshold: killed, restarted
            await node.eventually(lambda: _is(waiting_reason(node, "slow"), "CrashLoopBackOff"), "CrashLoopBackOff")
            assert node.prober.count("readinessProbe") == 0
            killing = await node.eventually(lambda: node.events("slow", "Killing"), "the Killing event")
            assert "failed startup probe, will be restarted" in killing[0]["message"]

            node.prober.answer("startupProbe", True)
            await node.clock.advance(node.kubelet.config.restart_backoff)
            await node.eventually(lambda: _is(node.condition("slow", "Ready"), "True"), "slow Ready")
            assert node.prober.count("readinessProbe") >= 1
            assert (await node.container_status("slow"))["restartCount"] == 1

    asyncio.run(main())
