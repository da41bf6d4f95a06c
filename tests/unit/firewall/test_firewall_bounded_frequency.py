"""kube-proxy's BoundedFrequencyRunner: coalesced requests, a bounded rate, retries and periodic syncs."""

from __future__ import annotations

import asyncio
import contextlib

from firewall.bounded_frequency import BoundedFrequencyRunner
from tests.waiting import wait_until_async


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_runner_coalesces_requests_and_bounds_frequency() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        calls: list[float] = []
        pending_during: list[bool] = []
        release = asyncio.Event()

        async def sync() -> None:
            calls.append(loop.time())
            # Whether another sync is already owed while this one runs (what a queue of requests would do).
            pending_during.append(runner._requested.is_set())
            await release.wait()

        # The runner's clock is the loop's, so the min_interval it keeps is measured on the clock it uses.
        runner = BoundedFrequencyRunner(sync, min_interval=0.2, max_interval=3600, burst=1, clock=loop.time)
        task = loop.create_task(runner.loop())
        runner.run()
        await wait_until_async(lambda: len(calls) == 1, "the first sync")
        for _ in range(20):
            runner.run()  # a storm of changes while a sync runs...
        release.set()
        await wait_until_async(lambda: len(calls) == 2, "the sync the storm asked for")
        assert runner.runs == 2 and pending_during == [False, False]  # ...is one more sync, nothing queued
        # The token bucket's guarantee (burst 1): a sync starts no sooner than min_interval after the
        # last, whatever the load; asyncio may wake a timer up to its clock resolution early.
        assert calls[1] - calls[0] >= 0.2 - loop._clock_resolution  # type: ignore[attr-defined]
        await _stopped(task)

    asyncio.run(main())


def test_runner_retries_a_failed_sync_by_itself() -> None:
    async def main() -> None:
        attempts = 0

        async def flaky() -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise RuntimeError("nft said no")

        # No periodic sync for an hour, and nobody asks again: only the retry can bring attempt 2.
        runner = BoundedFrequencyRunner(flaky, min_interval=0.01, max_interval=3600, retry_interval=0.05)
        task = asyncio.get_running_loop().create_task(runner.loop())
        runner.run()
        await wait_until_async(lambda: attempts == 2, "the failed sync retried")
        await _stopped(task)

    asyncio.run(main())


def test_runner_syncs_periodically_without_being_asked() -> None:
    async def main() -> None:
        attempts = 0

        async def sync() -> None:
            nonlocal attempts
            attempts += 1

        runner = BoundedFrequencyRunner(sync, min_interval=0.01, max_interval=0.05)
        task = asyncio.get_running_loop().create_task(runner.loop())
        await wait_until_async(lambda: attempts >= 2, "two periodic syncs nobody asked for")
        await _stopped(task)

    asyncio.run(main())
