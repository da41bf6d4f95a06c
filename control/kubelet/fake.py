"""Fakes of the kubelet's seams, for unit tests (habit 2: the fake ships with the library).

    FakeContainers   make_container's stand-in: records every container the kubelet makes, starts and
                     stops; a test makes one exit with a code, or the next start of one fail
    FakeProber       answers probes as the test says (success unless told otherwise), records each run
    FakeClock        time that moves only when the test advances it; sleepers wake in deadline order

With netsim.fake.FakeKernel for sandboxes, a Kubelet built on these runs without privileges.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from pathlib import Path
from typing import Any

from control.kubelet.probes import ProbeResult
from control.kubelet.workloads import Container, ContainerError, ContainerLog, RunAs, now_rfc3339

SIGTERM_EXIT = 143  # 128 + SIGTERM: what a container that honours the stop signal exits with


class FakeContainer(Container):
    """A container that runs until the kubelet stops it or the test calls exit()."""

    def __init__(self, spec: dict[str, Any], *, netns: str, hostname: str, log: ContainerLog,
                 env: dict[str, str], failure: ContainerError | None = None):
        super().__init__(spec.get("name", ""), log)
        self.spec = spec
        self.netns = netns
        self.hostname = hostname
        self.env = env
        self.failure = failure
        self.stops: list[float] = []  # the grace period of each stop the kubelet asked for
        self.run_as: RunAs = (None, None)

    async def start(self) -> None:
        if self.failure is not None:
            raise self.failure
        self.started_at = now_rfc3339()

    async def stop(self, grace: float) -> None:
        self.stops.append(grace)
        self._finished(SIGTERM_EXIT)

    def exit(self, code: int) -> None:
        """The container's process ends by itself with CODE."""
        assert self.running, f"container {self.name} of {self.hostname} is not running"
        self._finished(code)


class FakeContainers:
    """A ContainerFactory that makes FakeContainers and keeps them, in the order made."""

    def __init__(self) -> None:
        self.made: list[FakeContainer] = []
        self._failures: dict[str, ContainerError] = {}

    def __call__(self, spec: dict[str, Any], *, netns: str, hostname: str, log: ContainerLog,
                 env: dict[str, str], credentials: Path | None = None,
                 run_as: RunAs = (None, None)) -> FakeContainer:
        failure = self._failures.pop(spec.get("name", ""), None)
        container = FakeContainer(spec, netns=netns, hostname=hostname, log=log, env=env, failure=failure)
        container.run_as = run_as
        self.made.append(container)
        return container

    def fail_next_start(self, container: str, reason: str, message: str) -> None:
        """The next start of a container named CONTAINER fails with ContainerError(REASON, MESSAGE)."""
        self._failures[container] = ContainerError(reason, message)

    def of(self, pod: str, container: str) -> list[FakeContainer]:
        """Every incarnation of container CONTAINER of pod POD (by name), oldest first."""
        return [c for c in self.made if c.hostname == pod and c.name == container]

    def latest(self, pod: str, container: str) -> FakeContainer:
        found = self.of(pod, container)
        assert found, f"no container {container} was made for pod {pod}"
        return found[-1]


class FakeProber:
    """A Prober whose answers the test sets per probe kind, optionally per pod ("ns/name") and container."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str | None, str | None, str], ProbeResult] = {}
        self.runs: list[tuple[str, str, str]] = []  # (pod, container, kind)

    def answer(self, kind: str, ok: bool, message: str = "", *, pod: str | None = None,
               container: str | None = None) -> None:
        self._answers[(pod, container, kind)] = ProbeResult(ok, message or ("" if ok else "fake probe failure"))

    def count(self, kind: str, *, pod: str | None = None) -> int:
        return sum(1 for p, _, k in self.runs if k == kind and pod in (None, p))

    async def run(self, kind: str, probe: dict[str, Any], *, pod: str, pod_ip: str, netns: str,
                  container: dict[str, Any]) -> ProbeResult:
        name = str(container.get("name", ""))
        self.runs.append((pod, name, kind))
        for key in ((pod, name, kind), (None, name, kind), (pod, None, kind), (None, None, kind)):
            if key in self._answers:
                return self._answers[key]
        return ProbeResult(True)


class FakeClock:
    """A Clock whose time moves only in advance(). A sleep of zero or less just yields."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + seconds, next(self._order), future))
        await future  # a cancelled sleeper's future is cancelled with it, and advance() skips it

    def deadlines(self) -> list[float]:
        """When each sleeper wakes, soonest first."""
        return sorted(when for when, _, future in self._timers if not future.done())

    async def advance(self, seconds: float, *, settle: int = 20) -> None:
        """Move time SECONDS on, waking sleepers in deadline order, one deadline at a time, and letting
        the event loop run SETTLE rounds after each so what woke can go to sleep again (a probe every
        second over advance(10) runs ten times, as on the wall clock)."""
        end = self.now + seconds
        while True:
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)
            if not self._timers or self._timers[0][0] > end:
                break
            when, _, _ = self._timers[0]
            self.now = max(self.now, when)
            while self._timers and self._timers[0][0] <= self.now:
                _, _, future = heapq.heappop(self._timers)
                if not future.done():
                    future.set_result(None)
            for _ in range(settle):
                await asyncio.sleep(0)
        self.now = end
        for _ in range(settle):
            await asyncio.sleep(0)
