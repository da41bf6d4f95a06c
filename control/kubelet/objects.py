"""The kubelet's reads of the ConfigMaps and Secrets its pods' volumes use, shared by the node's pods.

Upstream's kubelet does not read such an object once per pod: its ConfigMap and Secret managers keep one
copy per node (pkg/kubelet/util/manager). This is their Cache strategy's contract:

- a pod's first mount sees the object as of the pod's registration or later: its read is answered by a
  fetch that started after the pod registered (upstream's AddReference invalidates the cached copy), and
  pods that registered together (a burst bound to the node) share that one fetch;
- a refresh of mounted volumes is answered by a fetch not older than the TTL, so 50 pods mounting
  kube-root-ca.crt cost one GET a period on their node instead of 50.

Fetches of one object in flight at once are shared; a failed fetch fails every read sharing it (each
caller retries as before) and is never reused. One copy is kept per object ever read (a node's pods name
a handful).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

Fetch = Callable[[], Coroutine[Any, Any, dict[str, Any] | None]]


@dataclass
class _Fetch:
    number: int  # fetches are numbered in the order they start
    started: float  # monotonic time
    task: asyncio.Task[dict[str, Any] | None]


class SharedReads:
    def __init__(self, clock: Callable[[], float], ttl: float):
        self.clock = clock
        self.ttl = ttl
        self._started = 0
        self._latest: dict[tuple[str, str, str], _Fetch] = {}

    def registration(self) -> int:
        """A mark for a pod registering now: a read with after=this waits for a fetch started later."""
        return self._started

    async def read(self, key: tuple[str, str, str], fetch: Fetch, *, after: int | None = None) -> dict[str, Any] | None:
        """The object under KEY (plural, namespace, name) from FETCH, or one already under way or done that
        started after the registration mark AFTER; without AFTER (a refresh), one started within the TTL."""
        latest = self._latest.get(key)
        if latest is not None and latest.task.done() and (latest.task.cancelled() or latest.task.exception()):
            latest = None  # a failure is never an answer for a later read
        usable = latest is not None and (latest.number > after if after is not None
                                         else self.clock() - latest.started <= self.ttl)
        if latest is None or not usable:
            self._started += 1
            latest = _Fetch(self._started, self.clock(), asyncio.get_running_loop().create_task(fetch()))
            self._latest[key] = latest
            # Retrieved here so that a failure nobody else reads is not reported as never retrieved.
            latest.task.add_done_callback(_retrieve)
        # Shielded: a reader cancelled (its pod stopping) does not cancel the fetch the others wait for.
        return await asyncio.shield(latest.task)


def _retrieve(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()


__all__ = ["SharedReads"]
