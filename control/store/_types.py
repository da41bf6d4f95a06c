"""Value types and the abstract Store every backend implements."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Self

from control.store._errors import CompactedError, StoreError

log = logging.getLogger(__name__)

#: Automatic compaction defaults, after kine (every 5 minutes) with a longer window, so that a watcher
#: that fell a little behind resumes instead of relisting.
DEFAULT_COMPACT_INTERVAL = 300.0
DEFAULT_COMPACT_KEEP = 10_000
#: etcd's default --max-request-bytes; SQLite enforces it too, so that both backends take the same
#: objects (Kubernetes' own limit on an object in etcd).
MAX_VALUE_BYTES = 1_572_864


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key at one revision, shaped like etcd's mvccpb.KeyValue."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    #: 1 on create, +1 on every update; a delete ends the key's life (a re-create starts at 1 again).
    version: int


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """A change, as etcd reports it.

    PUT: `kv` is the new state; `prev_kv` the state before, None on a create.
    DELETE: `kv` has the key, an empty value and mod_revision = the revision of the delete
    (create_revision and version 0); `prev_kv` is the deleted state.
    """

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None

    @property
    def key(self) -> str:
        return self.kv.key

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class RangeResult(NamedTuple):
    items: list[KeyValue]
    #: True when limit cut the result: ask again with start_after=items[-1].key at the same revision.
    more: bool
    #: The revision the range was read at (the current one when none was asked for).
    revision: int


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with prefix; None for no bound.

    Ordering is by code point, which is also the order of the UTF-8 bytes, so it matches both
    SQLite's BINARY collation and etcd's byte order.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            # Surrogates cannot be encoded in UTF-8: step over them.
            chars[-1] = chr(last + 1 if last + 1 != 0xD800 else 0xE000)
            return "".join(chars)
        chars.pop()
    return None


class Watch(abc.ABC, AsyncIterator[Event]):
    """An ordered stream of events for a prefix; use as an async context manager.

    Events come in revision order, each revision at most once. Iteration raises CompactedError
    when the start revision has been compacted (the backend may also raise it from watch()), and
    StoreUnavailable when the backend goes away.
    """

    def __aiter__(self) -> Self:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Event: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop the watch; pending iteration ends with StopAsyncIteration. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Store(abc.ABC):
    """etcd v3 semantics over a backend. Keys are str, values bytes, revisions int >= 1.

    Every write makes one new revision, global to the store. A revision, once returned, is never
    returned again, not even after a restart.
    """

    def __init__(self, *, compact_interval: float | None, compact_keep: int) -> None:
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self._compactor: asyncio.Task[None] | None = None

    # -- reads --
    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None: ...

    @abc.abstractmethod
    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None, revision: int = 0
    ) -> RangeResult:
        """Keys starting with prefix, in key order, as of revision (0: the current one).

        limit 0 means all. To continue, pass the last key as start_after and the returned revision.
        Raises CompactedError below the compacted revision, FutureRevisionError above the current.
        """

    @abc.abstractmethod
    async def current_revision(self) -> int: ...

    # -- writes --
    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> int:
        """Create key; returns its revision. Raises KeyExistsError if it is present."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> int:
        """Compare-and-swap on the mod revision; returns the new revision.

        Raises KeyNotFoundError if the key is absent, ConflictError if it moved on.
        """

    @abc.abstractmethod
    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int:
        """Delete key (guarded by its mod revision if given); returns the revision of the delete."""

    # -- history --
    @abc.abstractmethod
    async def watch(self, prefix: str, *, start_revision: int = 0) -> Watch:
        """Events for keys starting with prefix with revision >= start_revision (0: from now on).

        When this returns, the watch is established: a write that completes afterwards is delivered.
        A watch from an old revision replays the history, then continues live, with no gap and no
        duplicate. (Kubernetes' "watch from resourceVersion RV" is start_revision=RV + 1.)
        """

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history below revision: reads and watches from revision onwards still work.

        Raises CompactedError if revision is already compacted, FutureRevisionError beyond current.
        """

    @abc.abstractmethod
    async def _close_backend(self) -> None: ...

    # -- lifecycle --
    def _start_compactor(self) -> None:
        if self._compact_interval is not None and self._compact_interval > 0:
            self._compactor = asyncio.get_running_loop().create_task(
                self._compact_loop(self._compact_interval), name="store-compactor"
            )

    async def _compact_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.compact_history()
            except StoreError as err:
                # The next round retries; a store that is gone will say so to its real callers.
                log.warning("automatic compaction failed: %s", err)

    async def compact_history(self) -> int | None:
        """One round of the automatic compaction: keep the last compact_keep revisions.

        Returns the revision compacted to, or None when there was nothing to do.
        """
        target = await self.current_revision() - self._compact_keep
        if target <= 1:
            return None
        try:
            await self.compact(target)
        except CompactedError:
            return None
        return target

    async def close(self) -> None:
        """Stop the compactor, end every watch, release the backend. Idempotent."""
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
            self._compactor = None
        await self._close_backend()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
