"""The kubelet's clock seam: every wait that paces a pod (restart back-off, probe periods, sandbox
retries, heartbeats) goes through one, so unit tests drive time with control.kubelet.fake.FakeClock
instead of sleeping on the wall clock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time: time.monotonic and asyncio.sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
