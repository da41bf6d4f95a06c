"""kube-proxy's BoundedFrequencyRunner (pkg/util/async/bounded_frequency_runner.go), for asyncio:
`run()` asks for a sync; syncs happen at most `burst` at once and then one per `min_interval`, and at
least once per `max_interval` even if nobody asks. A failed sync is retried after `retry_interval`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class BoundedFrequencyRunner:
    def __init__(self, fn: Callable[[], Awaitable[None]], *, min_interval: float, max_interval: float,
                 burst: int = 2, retry_interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.burst = burst
        self.retry_interval = retry_interval if retry_interval is not None else max(min_interval, 1.0)
        self.clock = clock
        self._tokens = float(burst)
        self._last_refill = clock()
        self._requested = asyncio.Event()
        self.runs = 0

    def run(self) -> None:
        """Ask for a sync soon (coalesced with any other request made meanwhile)."""
        self._requested.set()

    def _refill(self) -> None:
        now = self.clock()
        if self.min_interval > 0:
            self._tokens = min(self.burst, self._tokens + (now - self._last_refill) / self.min_interval)
        else:
            self._tokens = self.burst
        self._last_refill = now

    async def loop(self) -> None:
        while True:
            # Woken by a request, or by max_interval passing: the periodic sync.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requested.wait(), self.max_interval)
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) * self.min_interval)
                self._refill()
            self._tokens -= 1
            self._requested.clear()
            self.runs += 1
            try:
                await self.fn()
            except Exception:
                log.exception("sync failed; retrying in %.1fs", self.retry_interval)
                asyncio.get_running_loop().call_later(self.retry_interval, self._requested.set)
