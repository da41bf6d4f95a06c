"""Condition-based waiting for tests: poll until what the test checks is true.

The timeout is a hang guard, never a measurement: a test passes as soon as its condition holds, and a
timeout says the condition did not hold, with MESSAGE and (if given) DESCRIBE's account of the state.
How fast something happens is a benchmark's question (bench/), not a test's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold within the hang guard."""


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.2, message: str = "",
               describe: Callable[[], str] | None = None) -> None:
    """Poll PREDICATE every INTERVAL seconds until it returns something true; raise WaitTimeout after TIMEOUT.

    DESCRIBE, called only on a timeout, explains the state the test was waiting on (pods, logs...)."""
    eventually(predicate, timeout=timeout, interval=interval, message=message, describe=describe)


def eventually(produce: Callable[[], T], timeout: float = 30, interval: float = 0.2, message: str = "",
               describe: Callable[[], str] | None = None) -> T:
    """Poll PRODUCE until it returns something true and return that value; raise WaitTimeout after TIMEOUT.

    The last value seen is in the timeout's message, so a wait on "the output contains X" shows the
    output it had instead."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = produce()
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    report = f"timed out after {timeout:g}s waiting: {message or 'condition'} (last value: {last!r:.500})"
    if describe is not None:
        try:
            report += "\n" + describe()
        except Exception as error:  # a broken report must not hide the timeout it explains
            report += f"\n(describing the state failed: {error!r})"
    raise WaitTimeout(report)


async def wait_until_async(predicate: Callable[[], object], message: str, timeout: float = 30,
                           interval: float = 0.01) -> None:
    """wait_until for a test running on an event loop: polls without blocking the loop, so the code under
    test (a runner, a server) keeps running between polls."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting: {message}")
        await asyncio.sleep(interval)
