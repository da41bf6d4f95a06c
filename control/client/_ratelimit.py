"""A client's request rate limit: client-go's token bucket (flowcontrol.NewTokenBucketRateLimiter).

The bucket holds up to BURST tokens and refills at QPS a second; each request takes one and, when none
is left, waits for its turn. kube-controller-manager gives each controller such a bucket (20 qps, burst
30 by default), which is why a default cluster creates a big ReplicaSet's pods at about 20 a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    def __init__(self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if qps <= 0:
            raise ValueError(f"qps {qps}: a token bucket needs a positive rate (no limit: no bucket)")
        if burst < 1:
            raise ValueError(f"burst {burst}: a token bucket holds at least one token")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)  # it starts full, as client-go's
        self._at = clock()

    async def wait(self) -> None:
        """Take a token, waiting until one is due. Each caller reserves its token at once (the count may
        go below zero), so callers are served in the order they came and none waits longer than its turn."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
        self._at = now
        self._tokens -= 1.0
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.qps)
