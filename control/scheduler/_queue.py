"""The scheduling queue: an active heap, a backoff heap and an unschedulable set (upstream's
internal/queue/scheduling_queue.go, PriorityQueue).

- activeQ: pods to try now, highest spec.priority first, then the longest waiting (PrioritySort).
- backoffQ: pods that failed and wait out their backoff: 1 s after the first attempt, doubling up to
  10 s (podInitialBackoffDuration / podMaxBackoffDuration).
- unschedulable: pods that fit nowhere. They stay until the cluster changes in a way that may help
  (a node added or changed, a bound pod deleted: moveAllToActiveOrBackoffQueue), and at most 5 minutes
  (podMaxInUnschedulablePodsDuration), then go back through backoff.

If such a change happens while a pod is being tried (its scheduling cycle is older than the move
request), a failure sends it to backoffQ rather than the unschedulable set, so the change is not missed.
Everything runs on one event loop, so there are no locks; `pop` waits on an asyncio.Event.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from control.scheduler._types import PodInfo

log = logging.getLogger("control.scheduler.queue")

POD_INITIAL_BACKOFF = 1.0
POD_MAX_BACKOFF = 10.0
POD_MAX_IN_UNSCHEDULABLE = 300.0
# How often pop() wakes up to look for unschedulable pods past POD_MAX_IN_UNSCHEDULABLE (upstream
# flushes every 30 s).
UNSCHEDULABLE_FLUSH_PERIOD = 30.0


@dataclass(eq=False)
class QueuedPodInfo:
    pod: PodInfo
    #: When the pod was first added (PrioritySort's tie-breaker: who waited longest).
    timestamp: float
    attempts: int = 0
    #: When it last failed; backoff counts from here.
    last_failure: float = 0.0
    #: The scheduling cycle in which it was last popped.
    cycle: int = 0
    seq: int = field(default=0)


def _spec_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """isPodUpdated: anything but status, resourceVersion, generation and managedFields changed."""
    def strip(obj: Mapping[str, Any]) -> tuple[Any, Any]:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items()
                if k not in ("resourceVersion", "generation", "managedFields")}
        return meta, obj.get("spec")
    return strip(old) != strip(new)


class SchedulingQueue:
    def __init__(
        self,
        *,
        initial_backoff: float = POD_INITIAL_BACKOFF,
        max_backoff: float = POD_MAX_BACKOFF,
        max_in_unschedulable: float = POD_MAX_IN_UNSCHEDULABLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_in_unschedulable = max_in_unschedulable
        self._clock = clock
        self._seq = itertools.count()
        self._active: list[tuple[int, float, int, str]] = []  # (-priority, timestamp, seq, key)
        self._backoff: list[tuple[float, int, str]] = []  # (expiry, seq, key)
        self._in_active: dict[str, QueuedPodInfo] = {}
        self._in_backoff: dict[str, QueuedPodInfo] = {}
        self._unschedulable: dict[str, tuple[QueuedPodInfo, float]] = {}
        self._in_flight: dict[str, QueuedPodInfo] = {}
        self.scheduling_cycle = 0
        self._move_request_cycle = -1
        self._wakeup = asyncio.Event()
        self._closed = False
        self._last_flush = clock()

    # --- introspection (tests, metrics) ------------------------------------------------------------

    def pending(self) -> dict[str, list[str]]:
        return {"active": sorted(self._in_active), "backoff": sorted(self._in_backoff),
                "unschedulable": sorted(self._unschedulable)}

    def __contains__(self, key: object) -> bool:
        return key in self._in_active or key in self._in_backoff or key in self._unschedulable

    def __len__(self) -> int:
        return len(self._in_active) + len(self._in_backoff) + len(self._unschedulable)

    # --- the three queues --------------------------------------------------------------------------

    def _push_active(self, qpi: QueuedPodInfo) -> None:
        qpi.seq = next(self._seq)
        self._in_active[qpi.pod.key] = qpi
        heapq.heappush(self._active, (-qpi.pod.priority, qpi.timestamp, qpi.seq, qpi.pod.key))
        self._wakeup.set()

    def _push_backoff(self, qpi: QueuedPodInfo) -> None:
        qpi.seq = next(self._seq)
        self._in_backoff[qpi.pod.key] = qpi
        heapq.heappush(self._backoff, (self.backoff_expiry(qpi), qpi.seq, qpi.pod.key))
        self._wakeup.set()

    def _remove(self, key: str) -> QueuedPodInfo | None:
        # Heap entries are dropped lazily: an entry whose seq is no longer current is skipped on pop.
        qpi = self._in_active.pop(key, None) or self._in_backoff.pop(key, None)
        if qpi is None:
            entry = self._unschedulable.pop(key, None)
            qpi = entry[0] if entry else None
        return qpi

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        """calculateBackoffDuration: initial * 2^(attempts-1), capped."""
        duration = self.initial_backoff
        for _ in range(1, qpi.attempts):
            duration *= 2
            if duration >= self.max_backoff:
                return self.max_backoff
        return min(duration, self.max_backoff)

    def backoff_expiry(self, qpi: QueuedPodInfo) -> float:
        return qpi.last_failure + self.backoff_duration(qpi)

    def _backing_off(self, qpi: QueuedPodInfo) -> bool:
        return qpi.attempts > 0 and self.backoff_expiry(qpi) > self._clock()

    # --- informer events ---------------------------------------------------------------------------

    def add(self, pod: PodInfo) -> None:
        """A new pending pod (or one we learnt of again): straight to activeQ."""
        old = self._remove(pod.key)
        if old is not None:
            old.pod = pod
            self._push_active(old)
            return
        if pod.key in self._in_flight:
            self._in_flight[pod.key].pod = pod
            return
        self._push_active(QueuedPodInfo(pod, self._clock()))

    def update(self, old_obj: Mapping[str, Any], pod: PodInfo) -> None:
        key = pod.key
        if key in self._in_active:
            qpi = self._in_active[key]
            reprioritized = qpi.pod.priority != pod.priority
            qpi.pod = pod
            if reprioritized:
                self._push_active(qpi)
            return
        if key in self._in_backoff:
            self._in_backoff[key].pod = pod
            return
        if key in self._unschedulable:
            qpi = self._unschedulable[key][0]
            qpi.pod = pod
            if _spec_changed(old_obj, pod.obj):
                # The pod itself changed (say, a toleration added): it may fit now.
                del self._unschedulable[key]
                (self._push_backoff if self._backing_off(qpi) else self._push_active)(qpi)
            return
        if key in self._in_flight:
            self._in_flight[key].pod = pod
            return
        self._push_active(QueuedPodInfo(pod, self._clock()))

    def delete(self, key: str) -> None:
        self._remove(key)
        self._in_flight.pop(key, None)

    def move_all_to_active_or_backoff(self, event: str) -> None:
        """The cluster changed (EVENT names how): every unschedulable pod gets another try, after its
        backoff if that has not run out."""
        self._move_request_cycle = self.scheduling_cycle
        if not self._unschedulable:
            return
        moved = list(self._unschedulable.values())
        self._unschedulable.clear()
        for qpi, _ in moved:
            (self._push_backoff if self._backing_off(qpi) else self._push_active)(qpi)
        log.debug("%s: moved %d unschedulable pod(s) to the active or backoff queue", event, len(moved))

    # --- the scheduler's side ----------------------------------------------------------------------

    def _flush(self) -> float | None:
        """Moves due pods from backoffQ (and old ones from unschedulable) to activeQ; returns the delay
        until the next backoff expiry, if any."""
        now = self._clock()
        while self._backoff:
            expiry, seq, key = self._backoff[0]
            qpi = self._in_backoff.get(key)
            if qpi is None or qpi.seq != seq:
                heapq.heappop(self._backoff)
                continue
            if expiry > now:
                break
            heapq.heappop(self._backoff)
            del self._in_backoff[key]
            self._push_active(qpi)
        if now - self._last_flush >= UNSCHEDULABLE_FLUSH_PERIOD:
            self._last_flush = now
            for key, (qpi, since) in list(self._unschedulable.items()):
                if now - since >= self.max_in_unschedulable:
                    del self._unschedulable[key]
                    (self._push_backoff if self._backing_off(qpi) else self._push_active)(qpi)
        return self._backoff[0][0] - now if self._backoff else None

    def _pop_active(self) -> QueuedPodInfo | None:
        while self._active:
            _, _, seq, key = heapq.heappop(self._active)
            qpi = self._in_active.get(key)
            if qpi is not None and qpi.seq == seq:
                del self._in_active[key]
                return qpi
        return None

    async def pop(self) -> QueuedPodInfo:
        """The next pod to schedule; waits for one. Raises asyncio.CancelledError when closed."""
        while True:
            if self._closed:
                raise asyncio.CancelledError("the scheduling queue is closed")
            next_due = self._flush()
            qpi = self._pop_active()
            if qpi is not None:
                self.scheduling_cycle += 1
                qpi.cycle = self.scheduling_cycle
                qpi.attempts += 1
                self._in_flight[qpi.pod.key] = qpi
                return qpi
            self._wakeup.clear()
            timeout = UNSCHEDULABLE_FLUSH_PERIOD if next_due is None else min(next_due, UNSCHEDULABLE_FLUSH_PERIOD)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(timeout, 0.001))

    def done(self, key: str) -> None:
        """The pod left the scheduler's hands (bound, or deleted)."""
        self._in_flight.pop(key, None)

    def add_unschedulable(self, qpi: QueuedPodInfo) -> None:
        """AddUnschedulableIfNotPresent after a FitError."""
        key = qpi.pod.key
        if self._in_flight.pop(key, None) is None or key in self:
            return  # deleted meanwhile, or already re-added by an update
        qpi.last_failure = self._clock()
        if self._move_request_cycle >= qpi.cycle:
            # The cluster changed while this pod was being tried: retry after backoff.
            self._push_backoff(qpi)
        else:
            self._unschedulable[key] = (qpi, self._clock())

    def add_backoff(self, qpi: QueuedPodInfo) -> None:
        """After an error (a failed bind, an API error): retry once the backoff has run out."""
        key = qpi.pod.key
        if self._in_flight.pop(key, None) is None or key in self:
            return
        qpi.last_failure = self._clock()
        self._push_backoff(qpi)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
