"""The embedded backend: one SQLite file, kine's log-table design.

Every write appends one row to `kv`; its row id is the revision, so revisions are a single
monotonic counter that survives restarts (AUTOINCREMENT: a row id is never reused, not even after
compaction deletes the newest row). The current value of a key is its latest row; a delete appends
a tombstone row that keeps the deleted value, and every row keeps the value it replaced, so a watch
replayed from the table carries the same prev_kv that a live one does. Compaction deletes rows
superseded below a revision, and tombstones below it.

All SQL runs on one worker thread with one connection: the event loop never waits on the disk,
writes are serialised without locks, and a range sees a consistent snapshot. Watch events are
handed from the worker to the loop with call_soon_threadsafe right after each commit, so they
reach watchers in commit order, before the writer's await returns.

One process writes the file (the apiserver). Another store on the same file reads and writes it
correctly (transactions are BEGIN IMMEDIATE), but its watchers see only its own writes.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from control.store._errors import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    StoreUnavailable,
    ValueTooLargeError,
)
from control.store._types import (
    DEFAULT_COMPACT_INTERVAL,
    DEFAULT_COMPACT_KEEP,
    MAX_VALUE_BYTES,
    Event,
    EventType,
    KeyValue,
    RangeResult,
    Store,
    Watch,
    prefix_end,
)

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
#: Revisions compacted per transaction.
COMPACT_STEP: Final = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_ROW = "id, name, created, deleted, create_revision, prev_revision, version, value, old_value"


def _event_from_row(row: tuple[Any, ...]) -> Event:
    rev, name, created, deleted, create_rev, prev_rev, version, value, old_value = row
    if deleted:
        # A tombstone carries the deleted state: its create revision, version and value.
        prev = KeyValue(name, value, create_rev, prev_rev, version)
        return Event(EventType.DELETE, KeyValue(name, b"", 0, rev, 0), prev)
    kv = KeyValue(name, value, create_rev, rev, version)
    if created:
        return Event(EventType.PUT, kv, None)
    return Event(EventType.PUT, kv, KeyValue(name, old_value, create_rev, prev_rev, version - 1))


class _Closed:
    """Put on a watcher's queue when the store closes."""


_CLOSED: Final = _Closed()


class SQLiteWatch(Watch):
    def __init__(self, store: SQLiteStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix
        self._queue: asyncio.Queue[Event | _Closed] = asyncio.Queue()
        self._replay: collections.deque[Event] = collections.deque()
        # Live events can overlap the replayed history: skip what was already delivered.
        self._last = 0
        self._closed = False

    def _matches(self, key: str) -> bool:
        return key.startswith(self._prefix)

    def _offer(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def _end(self) -> None:
        self._closed = True
        self._queue.put_nowait(_CLOSED)

    async def __anext__(self) -> Event:
        while True:
            if self._replay:
                event = self._replay.popleft()
            elif self._closed and self._queue.empty():
                raise StopAsyncIteration
            else:
                item = await self._queue.get()
                if isinstance(item, _Closed):
                    raise StopAsyncIteration
                event = item
            if event.revision > self._last:
                self._last = event.revision
                return event

    async def close(self) -> None:
        if not self._closed:
            self._store._watchers.discard(self)
            self._replay.clear()
            self._end()


class SQLiteStore(Store):
    """The store in one SQLite file (created if missing). Open with `await SQLiteStore.open(path)`."""

    def __init__(
        self,
        path: str | Path,
        *,
        compact_interval: float | None = DEFAULT_COMPACT_INTERVAL,
        compact_keep: int = DEFAULT_COMPACT_KEEP,
        synchronous: str = "NORMAL",
    ) -> None:
        super().__init__(compact_interval=compact_interval, compact_keep=compact_keep)
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kubesim-store-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: set[SQLiteWatch] = set()
        self._revision = 0
        self._compacted = 0
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        compact_interval: float | None = DEFAULT_COMPACT_INTERVAL,
        compact_keep: int = DEFAULT_COMPACT_KEEP,
        synchronous: str = "NORMAL",
    ) -> SQLiteStore:
        """Open (or create) the store at path.

        synchronous NORMAL, with WAL, survives a crash of the process (every committed write is in
        the WAL file) but may lose the last writes on a power cut; FULL fsyncs every commit.
        """
        store = cls(path, compact_interval=compact_interval, compact_keep=compact_keep, synchronous=synchronous)
        store._loop = asyncio.get_running_loop()
        try:
            await store._call(store._open_sync)
        except BaseException:
            store._executor.shutdown(wait=True)
            raise
        store._start_compactor()
        return store

    # -- plumbing --
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailable(f"the store at {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"the store at {self.path} is closed")
        return self._conn

    def _restrict_permissions(self) -> None:
        """Make the database owner-only (0600), as etcd keeps its data: it holds every object, tokens and
        all. The file is created 0600 before SQLite opens it, since SQLite gives its WAL and shared-memory
        files the database's mode; files left by an older store are narrowed too."""
        if str(self.path) == ":memory:":
            return
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for suffix in ("", "-wal", "-shm", "-journal"):
            companion = Path(f"{self.path}{suffix}")
            if companion.exists():
                companion.chmod(0o600)

    def _open_sync(self) -> None:
        try:
            self._restrict_permissions()
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as err:
            raise StoreUnavailable(f"cannot open the store at {self.path}: {err}") from err
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            (found,) = conn.execute("PRAGMA user_version").fetchone()
            if found == 0:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif found != SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"the store at {self.path} has schema version {found}, this code knows {SCHEMA_VERSION}"
                )
            self._revision = self._read_revision(conn)
            row = conn.execute("SELECT value FROM meta WHERE key = 'compacted'").fetchone()
            self._compacted = row[0] if row else 0
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @staticmethod
    def _read_revision(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kv'").fetchone()
        return int(row[0]) if row else 0

    def _latest(self, conn: sqlite3.Connection, key: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = conn.execute(
            f"SELECT {_ROW} FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1", (key,)
        ).fetchone()
        return row

    @staticmethod
    def _live(row: tuple[Any, ...] | None) -> KeyValue | None:
        if row is None or row[3]:
            return None
        rev, name, _created, _deleted, create_rev, _prev, version, value, _old = row
        return KeyValue(name, value, create_rev, rev, version)

    def _write(self, op: Callable[[sqlite3.Connection, int], tuple[Any, ...]]) -> int:
        """Runs op in a write transaction with the next revision; publishes the row it returns."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the transaction rather than trusting the cache: the file is the truth.
            rev = self._read_revision(conn) + 1
            row = op(conn, rev)
            conn.execute(
                "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, version,"
                " value, old_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._revision = rev
        event = _event_from_row(row)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._publish, event)
        return rev

    def _publish(self, event: Event) -> None:
        for watcher in self._watchers:
            if watcher._matches(event.key):
                watcher._offer(event)

    # -- reads --
    async def get(self, key: str) -> KeyValue | None:
        return self._live(await self._call(lambda: self._latest(self._db(), key)))

    async def current_revision(self) -> int:
        if self._closed:
            raise StoreUnavailable(f"the store at {self.path} is closed")
        return self._revision

    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None, revision: int = 0
    ) -> RangeResult:
        if limit < 0 or revision < 0:
            raise ValueError(f"limit and revision must be >= 0, not {limit} and {revision}")
        return await self._call(self._range_sync, prefix, limit, start_after, revision)

    def _range_sync(self, prefix: str, limit: int, start_after: str | None, revision: int) -> RangeResult:
        conn = self._db()
        at = revision or self._revision
        if at < self._compacted:
            raise CompactedError(at, self._compacted)
        if at > self._revision:
            raise FutureRevisionError(at, self._revision)
        where = ["name >= ?", "id <= ?"]
        args: list[Any] = [prefix, at]
        end = prefix_end(prefix)
        if end is not None:
            where.append("name < ?")
            args.append(end)
        if start_after is not None:
            where.append("name > ?")
            args.append(start_after)
        sql = (
            "SELECT kv.name, kv.value, kv.create_revision, kv.id, kv.version FROM kv"
            f" JOIN (SELECT MAX(id) AS id FROM kv WHERE {' AND '.join(where)} GROUP BY name) AS latest"
            " USING (id) WHERE kv.deleted = 0 ORDER BY kv.name"
        )
        if limit:
            sql += " LIMIT ?"
            args.append(limit + 1)
        rows = conn.execute(sql, args).fetchall()
        more = bool(limit) and len(rows) > limit
        items = [KeyValue(*row) for row in (rows[:limit] if more else rows)]
        return RangeResult(items, more, at)

    # -- writes --
    @staticmethod
    def _check_size(key: str, value: bytes) -> None:
        size = len(key.encode()) + len(value)
        if size > MAX_VALUE_BYTES:
            raise ValueTooLargeError(key, size, MAX_VALUE_BYTES)

    async def create(self, key: str, value: bytes) -> int:
        self._check_size(key, value)
        return await self._call(self._create_sync, key, value)

    def _create_sync(self, key: str, value: bytes) -> int:
        def op(conn: sqlite3.Connection, rev: int) -> tuple[Any, ...]:
            current = self._live(self._latest(conn, key))
            if current is not None:
                raise KeyExistsError(key, current)
            return (rev, key, 1, 0, rev, 0, 1, bytes(value), None)

        return self._write(op)

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> int:
        if expected_mod_revision <= 0:
            raise ValueError(f"expected_mod_revision must be >= 1, not {expected_mod_revision}")
        self._check_size(key, value)

        def op(conn: sqlite3.Connection, rev: int) -> tuple[Any, ...]:
            current = self._live(self._latest(conn, key))
            if current is None:
                raise KeyNotFoundError(key)
            if current.mod_revision != expected_mod_revision:
                raise ConflictError(key, expected_mod_revision, current)
            return (rev, key, 0, 0, current.create_revision, current.mod_revision, current.version + 1,
                    bytes(value), current.value)

        return await self._call(self._write, op)

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int:
        def op(conn: sqlite3.Connection, rev: int) -> tuple[Any, ...]:
            current = self._live(self._latest(conn, key))
            if current is None:
                raise KeyNotFoundError(key)
            if expected_mod_revision is not None and current.mod_revision != expected_mod_revision:
                raise ConflictError(key, expected_mod_revision, current)
            return (rev, key, 0, 1, current.create_revision, current.mod_revision, current.version,
                    current.value, current.value)

        return await self._call(self._write, op)

    # -- history --
    async def watch(self, prefix: str, *, start_revision: int = 0) -> SQLiteWatch:
        if start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, not {start_revision}")
        watcher = SQLiteWatch(self, prefix)
        # Registered before the history is read: whatever commits after the read reaches the queue.
        self._watchers.add(watcher)
        try:
            if start_revision == 0:
                watcher._last = await self._call(lambda: self._revision)
            else:
                history = await self._call(self._history_sync, prefix, start_revision)
                watcher._last = start_revision - 1
                watcher._replay.extend(history)
        except BaseException:
            self._watchers.discard(watcher)
            raise
        return watcher

    def _history_sync(self, prefix: str, start: int) -> list[Event]:
        if start < self._compacted:
            raise CompactedError(start, self._compacted)
        where, args = "id >= ? AND name >= ?", [start, prefix]
        end = prefix_end(prefix)
        if end is not None:
            where += " AND name < ?"
            args.append(end)
        # One statement, so one snapshot: a compaction cannot cut a hole in what is replayed.
        rows = self._db().execute(f"SELECT {_ROW} FROM kv WHERE {where} ORDER BY id", args).fetchall()
        return [_event_from_row(row) for row in rows]

    async def compact(self, revision: int) -> None:
        if self._closed:
            raise StoreUnavailable(f"the store at {self.path} is closed")
        if revision <= self._compacted:
            raise CompactedError(revision, self._compacted)
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        # In steps, each its own transaction, so that reads and writes interleave with a long
        # compaction instead of waiting for all of it.
        while self._compacted < revision:
            await self._call(self._compact_sync, min(revision, self._compacted + COMPACT_STEP))

    def _compact_sync(self, revision: int) -> None:
        low = self._compacted
        if revision <= low:
            return  # a concurrent compact() got there first
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Every row points at the row it superseded (prev_revision): a row written in
            # (low, revision] makes its predecessor history. Rows at or below `low` were handled by
            # the previous compaction, so the work is proportional to the new history only.
            conn.execute(
                "DELETE FROM kv WHERE id IN (SELECT prev_revision FROM kv WHERE id > ? AND id <= ?"
                " AND prev_revision > 0)",
                (low, revision),
            )
            # Tombstones below the revision: the key is gone as of it (a tombstone at the revision
            # itself stays, for reads and watches there).
            conn.execute("DELETE FROM kv WHERE id >= ? AND id < ? AND deleted = 1", (low, revision))
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('compacted', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (revision,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._compacted = revision

    async def _close_backend(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watcher in list(self._watchers):
            watcher._end()
        self._watchers.clear()

        def close_sync() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close_sync)
        # The worker is idle now (its last job was awaited above), so this join is immediate.
        self._executor.shutdown(wait=True)
