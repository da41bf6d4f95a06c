"""The client's request rate limit: client-go's token bucket, and the per-controller buckets that
kube-controller-manager's client builder gives (one config, one set of connections, a bucket each)."""

from __future__ import annotations

import asyncio

import pytest
from kubefake import FakeApiServer, Sleeps, serving

from control.client import SERVICES
from control.client._ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)


def test_a_full_bucket_lets_a_burst_through_then_each_request_waits_its_turn() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, 3, clock=clock, sleep=clock.sleep)

    async def take(n: int) -> None:
        for _ in range(n):
            await bucket.wait()

    asyncio.run(take(5))
    # three at once, then the fourth and fifth reserve the next tokens: 0.1 s and 0.2 s ahead
    assert clock.slept == pytest.approx([0.1, 0.2])
    clock.now += 10.0  # a long quiet spell refills to the burst, never past it
    clock.slept.clear()
    asyncio.run(take(4))
    assert clock.slept == pytest.approx([0.1])


def test_a_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(4.0, 1, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        await bucket.wait()          # the one token
        clock.now += 0.125           # half a token back
        await bucket.wait()          # waits for the other half
        assert clock.slept == pytest.approx([0.125])

    asyncio.run(scenario())


def test_a_bucket_needs_a_rate_and_a_token() -> None:
    with pytest.raises(ValueError, match="qps 0"):
        TokenBucket(0, 10)
    with pytest.raises(ValueError, match="burst 0"):
        TokenBucket(5, 0)


def test_a_limited_client_waits_between_requests_and_its_views_keep_buckets_and_connections() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        sleeps = Sleeps()
        async with serving(fake, sleep=sleeps) as (_, client):
            assert (await client.list(SERVICES))["items"] == []  # no limit by default: no wait
            assert sleeps.calls == []
            one = client.rate_limited(1.0, 2)
            other = client.rate_limited(1.0, 2)
            for _ in range(4):
                await one.list(SERVICES)
            # two of the burst, then a second's turn each (less what the requests themselves took)
            assert len(sleeps.calls) == 2 and 0.5 < sleeps.calls[0] <= 1.0 and 1.0 < sleeps.calls[1] <= 2.0
            await other.list(SERVICES)
            await other.list(SERVICES)
            assert len(sleeps.calls) == 2  # the other view's bucket was still full
            assert one._get_session() is client._get_session() is other.rate_limited(0, 0)._get_session()
            await one.close()  # closes only the view
            assert (await other.list(SERVICES))["items"] == [] and (await client.list(SERVICES))["items"] == []
            assert client.rate_limited(0, 0)._limiter is None

    asyncio.run(scenario())
