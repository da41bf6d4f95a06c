"""What only the SQLite backend promises: its file, crash safety, and an event loop left free."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from control.store import Event, SQLiteStore, StoreUnavailable, open_store

# Writes acknowledged keys one per line until killed: whatever it printed must survive SIGKILL.
WRITER = """
import asyncio, sys
from control.store import SQLiteStore

async def main():
    store = await SQLiteStore.open(sys.argv[1], compact_interval=None)
    i = 0
    while True:
        rev = await store.create(f"/crash/{i:06d}", b"v")
        print(i, rev, flush=True)
        i += 1

asyncio.run(main())
"""


async def test_acknowledged_writes_survive_sigkill(scratch: Path) -> None:
    path = scratch / "crash.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    acknowledged: list[tuple[int, int]] = []
    try:
        assert writer.stdout is not None
        while len(acknowledged) < 300:
            line = await asyncio.to_thread(writer.stdout.readline)
            assert line, f"the writer died: {writer.stderr.read() if writer.stderr else ''}"
            number, revision = line.split()
            acknowledged.append((int(number), int(revision)))
    finally:
        # Mid-write, by pid: nothing gets to flush or close.
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        for stream in (writer.stdout, writer.stderr):
            if stream is not None:
                stream.close()
    async with await SQLiteStore.open(path, compact_interval=None) as store:
        items = {kv.key: kv.mod_revision for kv in (await store.range("/crash/")).items}
        for i, rev in acknowledged:
            assert items[f"/crash/{i:06d}"] == rev
        current = await store.current_revision()
        assert current >= acknowledged[-1][1]
        assert await store.create("/crash/after", b"") == current + 1


async def test_a_commit_between_history_and_live_is_delivered_once(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window a watch must close: a write that commits after its history was read but before
    # the watch coroutine resumes on the loop. Forced here, since in a real run it is microseconds.
    async with await SQLiteStore.open(scratch / "s.db", compact_interval=None) as store:
        start = await store.create("/h/a", b"")
        history = store._history_sync
        sneaked: list[int] = []

        def history_then_write(prefix: str, first: int) -> list[Event]:
            events = history(prefix, first)
            sneaked.append(store._create_sync("/h/b", b""))
            return events

        monkeypatch.setattr(store, "_history_sync", history_then_write)
        async with await store.watch("/h/", start_revision=start) as watch:
            later = await store.create("/h/c", b"")
            got = [(await asyncio.wait_for(anext(watch), 5)).revision for _ in range(3)]
            assert got == [start, *sneaked, later]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(watch), 0.2)


async def test_the_file_is_wal_and_revisions_persist_past_compaction(scratch: Path) -> None:
    path = scratch / "s.db"
    async with await SQLiteStore.open(path, compact_interval=None) as store:
        await store.create("/k/a", b"")
        await store.delete("/k/a")
        await store.create("/k/b", b"")
        last = await store.delete("/k/b")
        await store.compact(last)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # Only the newest tombstone is left: the rest was compacted away.
        assert conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0] == 1
    conn.close()
    async with await SQLiteStore.open(path, compact_interval=None) as store:
        assert await store.current_revision() == last
        assert await store.create("/k/a", b"") == last + 1


async def test_disk_work_never_runs_on_the_event_loop(scratch: Path) -> None:
    # Every use of the connection (each read, write and fsync) happens on the store's own worker thread, so
    # the event loop never waits on the disk. (How long it would stall is bench/store.py's business:
    # timings are not asserted in tests on shared machines.)
    async with await SQLiteStore.open(scratch / "s.db", compact_interval=None, synchronous="FULL") as store:
        used_from: set[str] = set()
        real_db = store._db

        def recording_db() -> Any:
            used_from.add(threading.current_thread().name)
            return real_db()

        store._db = recording_db  # type: ignore[method-assign]
        await asyncio.gather(*(store.create(f"/b/{i}", b"x" * 1024) for i in range(300)))
        await store.range("/b/")
        assert used_from and all(name.startswith("kubesim-store-sqlite") for name in used_from), used_from
        assert threading.current_thread().name not in used_from


async def test_a_newer_schema_is_refused(scratch: Path) -> None:
    path = scratch / "s.db"
    async with await SQLiteStore.open(path, compact_interval=None):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StoreUnavailable, match="schema version 99"):
        await SQLiteStore.open(path, compact_interval=None)


async def test_an_unopenable_path_is_unavailable(scratch: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot open"):
        await SQLiteStore.open(scratch / "missing-dir" / "s.db")


@pytest.mark.parametrize("form", ["sqlite://{path}", "sqlite:{path}", "{path}"])
async def test_open_store_by_url(scratch: Path, form: str) -> None:
    path = scratch / "u.db"
    store = await open_store(form.format(path=path), compact_interval=None)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == path
    finally:
        await store.close()
    with pytest.raises(ValueError, match="unknown store scheme"):
        await open_store("redis://localhost")
