"""The node's shared reads of volume objects (control.kubelet.objects): upstream's Cache strategy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from control.kubelet.objects import SharedReads

KEY = ("configmaps", "default", "kube-root-ca.crt")


class Apiserver:
    """Counts the GETs; each answers the object's current version once released."""

    def __init__(self) -> None:
        self.version = 1
        self.gets = 0
        self.fail_next = False
        self.release = asyncio.Event()
        self.release.set()

    async def get(self) -> dict[str, Any] | None:
        self.gets += 1
        seen = self.version
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("apiserver away")
        return {"metadata": {"name": "kube-root-ca.crt"}, "data": {"version": str(seen)}}


def version(obj: dict[str, Any] | None) -> str:
    assert obj is not None
    return str(obj["data"]["version"])


def test_pods_registered_before_a_fetch_share_it_and_a_later_pod_reads_again() -> None:
    async def main() -> None:
        api = Apiserver()
        reads = SharedReads(lambda: 0.0, ttl=5.0)
        burst = [reads.registration() for _ in range(50)]  # 50 pods bound to the node at once
        api.release.clear()
        pending = [asyncio.ensure_future(reads.read(KEY, api.get, after=mark)) for mark in burst]
        await asyncio.sleep(0)
        api.release.set()
        assert {version(o) for o in await asyncio.gather(*pending)} == {"1"} and api.gets == 1
        # A pod registering after that fetch started sees the object as of its registration or later.
        api.version = 2
        late = reads.registration()
        assert version(await reads.read(KEY, api.get, after=late)) == "2" and api.gets == 2

    asyncio.run(main())


def test_a_refresh_uses_a_copy_within_the_ttl_and_fetches_after_it() -> None:
    async def main() -> None:
        api = Apiserver()
        now = [100.0]
        reads = SharedReads(lambda: now[0], ttl=5.0)
        await reads.read(KEY, api.get, after=reads.registration())
        api.version = 2
        now[0] += 5.0
        for _ in range(50):  # every pod's refresh of the period
            assert version(await reads.read(KEY, api.get)) == "1"
        assert api.gets == 1
        now[0] += 0.1
        assert version(await reads.read(KEY, api.get)) == "2" and api.gets == 2

    asyncio.run(main())


def test_a_failed_fetch_fails_its_readers_and_is_never_reused() -> None:
    async def main() -> None:
        api = Apiserver()
        reads = SharedReads(lambda: 0.0, ttl=5.0)
        mark = reads.registration()
        api.fail_next = True
        api.release.clear()
        pending = [asyncio.ensure_future(reads.read(KEY, api.get, after=mark)) for _ in range(3)]
        await asyncio.sleep(0)
        api.release.set()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results) and api.gets == 1
        # Neither a retry with the same mark nor a refresh gets the failure again.
        assert version(await reads.read(KEY, api.get, after=mark)) == "1" and api.gets == 2
        api.fail_next = True
        now_failing = reads.read(KEY, api.get, after=reads.registration())
        with pytest.raises(ConnectionError):
            await now_failing
        assert version(await reads.read(KEY, api.get)) == "1" and api.gets == 4

    asyncio.run(main())


def test_a_reader_cancelled_leaves_the_shared_fetch_to_the_others() -> None:
    async def main() -> None:
        api = Apiserver()
        reads = SharedReads(lambda: 0.0, ttl=5.0)
        mark = reads.registration()
        api.release.clear()
        stopping = asyncio.ensure_future(reads.read(KEY, api.get, after=mark))
        staying = asyncio.ensure_future(reads.read(KEY, api.get, after=mark))
        await asyncio.sleep(0)
        stopping.cancel()
        api.release.set()
        assert version(await staying) == "1" and api.gets == 1 and stopping.cancelled()

    asyncio.run(main())
