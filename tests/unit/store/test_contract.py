"""The store contract: every test runs against SQLite and against a real etcd."""

from __future__ import annotations

import asyncio
import random

import pytest

from control.store import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Store,
    StoreUnavailable,
    ValueTooLargeError,
    Watch,
)

from .conftest import TEST_TIMEOUT, Backend


async def take(watch: Watch, count: int, timeout: float = 5.0) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            events.append(await anext(watch))
    return events


async def assert_quiet(watch: Watch, store: Store, prefix: str) -> None:
    """Nothing more is in the stream (a duplicate or a stray event would be). Events come in revision
    order, so a write made now under PREFIX must be the very next event: whatever else was owed comes
    before it. No quiet period to wait out."""
    key = f"{prefix}~quiet-sentinel"
    revision = await store.create(key, b"")
    (event,) = await take(watch, 1)
    assert (event.key, event.revision) == (key, revision), f"unexpected event {event}"


async def test_create_then_get(backend: Backend) -> None:
    async with await backend.open() as store:
        before = await store.current_revision()
        rev = await store.create("/a/x", b"one")
        assert rev > before
        assert await store.current_revision() == rev
        kv = await store.get("/a/x")
        assert kv is not None
        assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) == ("/a/x", b"one", rev, rev, 1)
        assert await store.get("/a/y") is None
        assert await store.get("/a/") is None  # a prefix is not a key


async def test_create_of_present_key_fails_and_changes_nothing(backend: Backend) -> None:
    async with await backend.open() as store:
        rev = await store.create("/a/x", b"one")
        with pytest.raises(KeyExistsError) as raised:
            await store.create("/a/x", b"two")
        assert raised.value.current is not None
        assert raised.value.current.value == b"one"
        assert await store.current_revision() == rev  # a failed write makes no revision
        kv = await store.get("/a/x")
        assert kv is not None and kv.value == b"one"


async def test_update_is_compare_and_swap_on_mod_revision(backend: Backend) -> None:
    async with await backend.open() as store:
        created = await store.create("/a/x", b"v1")
        updated = await store.update("/a/x", b"v2", expected_mod_revision=created)
        assert updated > created
        kv = await store.get("/a/x")
        assert kv is not None
        assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"v2", created, updated, 2)

        with pytest.raises(ConflictError) as raised:
            await store.update("/a/x", b"stale", expected_mod_revision=created)
        assert raised.value.current_mod_revision == updated
        assert raised.value.current.value == b"v2"
        assert await store.current_revision() == updated

        with pytest.raises(KeyNotFoundError):
            await store.update("/a/absent", b"v", expected_mod_revision=created)
        with pytest.raises(ValueError, match="expected_mod_revision"):
            # 0 would match an absent key in etcd, creating it: refused outright.
            await store.update("/a/absent", b"v", expected_mod_revision=0)
        assert await store.get("/a/absent") is None


async def test_delete_guarded_and_unguarded(backend: Backend) -> None:
    async with await backend.open() as store:
        with pytest.raises(KeyNotFoundError):
            await store.delete("/a/x")
        first = await store.create("/a/x", b"v1")
        second = await store.update("/a/x", b"v2", expected_mod_revision=first)

        with pytest.raises(ConflictError) as raised:
            await store.delete("/a/x", expected_mod_revision=first)
        assert raised.value.current.mod_revision == second
        assert await store.get("/a/x") is not None

        deleted = await store.delete("/a/x", expected_mod_revision=second)
        assert deleted > second
        assert await store.get("/a/x") is None
        assert await store.current_revision() == deleted
        with pytest.raises(KeyNotFoundError):
            await store.delete("/a/x", expected_mod_revision=second)

        # A re-created key starts a new life: version 1, a new create revision.
        again = await store.create("/a/x", b"v3")
        kv = await store.get("/a/x")
        assert kv is not None
        assert (kv.create_revision, kv.version, kv.value) == (again, 1, b"v3")
        assert await store.delete("/a/x") > again
        assert await store.get("/a/x") is None


async def test_range_by_prefix_with_limit_and_continue(backend: Backend) -> None:
    async with await backend.open() as store:
        keys = [f"/pods/ns1/p{i:02d}" for i in range(25)]
        for key in reversed(keys):  # written out of order: ranges come back in key order
            await store.create(key, key.encode())
        # Neighbours that a sloppy prefix match would catch.
        for other in ("/pods/ns10/x", "/pods/ns1", "/pods/ns0/z", "/podsx"):
            await store.create(other, b"other")

        everything = await store.range("/pods/ns1/")
        assert [kv.key for kv in everything.items] == keys
        assert everything.more is False
        assert everything.revision == await store.current_revision()

        pages: list[list[str]] = []
        result = await store.range("/pods/ns1/", limit=10)
        at = result.revision
        pages.append([kv.key for kv in result.items])
        # Writes between pages: a continued list reads at the first page's revision, so sees none.
        await store.create("/pods/ns1/p99", b"late")
        victim = await store.get("/pods/ns1/p20")
        assert victim is not None
        await store.update(victim.key, b"changed", expected_mod_revision=victim.mod_revision)
        await store.delete("/pods/ns1/p24")
        while result.more:
            result = await store.range("/pods/ns1/", limit=10, start_after=result.items[-1].key, revision=at)
            assert result.revision == at
            pages.append([kv.key for kv in result.items])
        assert [len(page) for page in pages] == [10, 10, 5]
        assert [key for page in pages for key in page] == keys
        old = await store.range("/pods/ns1/p2", revision=at)
        assert {kv.key: kv.value for kv in old.items}["/pods/ns1/p20"] == b"/pods/ns1/p20"

        # A limit that lands exactly on the end says there is no more.
        exact = await store.range("/pods/ns1/p0", limit=10)
        assert len(exact.items) == 10 and exact.more is False
        assert (await store.range("/nothing/")).items == []


async def test_range_at_an_older_revision(backend: Backend) -> None:
    async with await backend.open() as store:
        a = await store.create("/r/a", b"a1")
        await store.create("/r/b", b"b1")
        at = await store.current_revision()
        await store.update("/r/a", b"a2", expected_mod_revision=a)
        await store.delete("/r/b")
        await store.create("/r/c", b"c1")

        then = await store.range("/r/", revision=at)
        assert then.revision == at
        assert [(kv.key, kv.value, kv.mod_revision) for kv in then.items] == [
            ("/r/a", b"a1", a),
            ("/r/b", b"b1", at),
        ]
        now = await store.range("/r/")
        assert [(kv.key, kv.value, kv.version) for kv in now.items] == [("/r/a", b"a2", 2), ("/r/c", b"c1", 1)]

        with pytest.raises(FutureRevisionError):
            await store.range("/r/", revision=now.revision + 1000)


async def test_watch_replays_history_then_continues_live(backend: Backend) -> None:
    async with await backend.open() as store:
        await store.create("/w/early", b"0")
        start = await store.create("/w/a", b"1")
        a2 = await store.update("/w/a", b"2", expected_mod_revision=start)
        await store.create("/elsewhere/x", b"not watched")
        gone = await store.delete("/w/a")

        async with await store.watch("/w/", start_revision=start) as watch:
            history = await take(watch, 3)
            assert [(e.type, e.key, e.revision) for e in history] == [
                (EventType.PUT, "/w/a", start),
                (EventType.PUT, "/w/a", a2),
                (EventType.DELETE, "/w/a", gone),
            ]
            created, updated, deleted = history
            assert created.prev_kv is None
            assert created.kv.value == b"1" and created.kv.version == 1
            assert updated.prev_kv is not None and updated.prev_kv.value == b"1"
            assert updated.kv.create_revision == start and updated.kv.version == 2
            assert deleted.kv.value == b"" and deleted.prev_kv is not None
            assert (deleted.prev_kv.value, deleted.prev_kv.mod_revision) == (b"2", a2)

            live = [await store.create("/w/b", b"3"), await store.create("/elsewhere/y", b"no")]
            live.append(await store.create("/w/c", b"4"))
            events = await take(watch, 2)
            assert [(e.key, e.revision) for e in events] == [("/w/b", live[0]), ("/w/c", live[2])]
            await assert_quiet(watch, store, "/w/")


async def test_watch_from_now_sees_only_later_writes(backend: Backend) -> None:
    async with await backend.open() as store:
        await store.create("/n/old", b"x")
        async with await store.watch("/n/") as watch:
            rev = await store.create("/n/new", b"y")
            (event,) = await take(watch, 1)
            assert (event.type, event.key, event.revision) == (EventType.PUT, "/n/new", rev)
            await assert_quiet(watch, store, "/n/")


async def test_watch_started_during_writes_has_no_gap_and_no_duplicate(backend: Backend) -> None:
    async with await backend.open() as store:
        start = await store.create("/g/seed", b"")
        written: list[int] = []

        async def writer(name: str) -> None:
            for i in range(60):
                written.append(await store.create(f"/g/{name}{i:03d}", b"v"))

        # Several writers keep writes in flight while the watch reads history and goes live.
        tasks = [asyncio.create_task(writer(name)) for name in "abcd"]
        await asyncio.sleep(0.01)
        async with await store.watch("/g/", start_revision=start) as watch:
            events = await take(watch, 241, timeout=20)
            await asyncio.gather(*tasks)
            assert [e.revision for e in events] == [start, *sorted(written)]
            await assert_quiet(watch, store, "/g/")


async def test_many_watchers_of_one_store(backend: Backend) -> None:
    async with await backend.open() as store:
        watches = [await store.watch("/m/") for _ in range(20)]
        revs = [await store.create(f"/m/{i}", b"v") for i in range(5)]
        for watch in watches:
            assert [e.revision for e in await take(watch, 5)] == revs
        for watch in watches:
            await watch.close()
        # A closed watch ends cleanly.
        with pytest.raises(StopAsyncIteration):
            await anext(watches[0])


async def test_compaction_expires_old_revisions_and_keeps_the_state(backend: Backend) -> None:
    async with await backend.open() as store:
        a = await store.create("/c/a", b"a1")
        old = await store.create("/c/b", b"b1")
        a2 = await store.update("/c/a", b"a2", expected_mod_revision=a)
        await store.delete("/c/b")
        keep = await store.create("/c/c", b"c1")
        await store.update("/c/c", b"c2", expected_mod_revision=keep)
        await store.compact(keep)

        with pytest.raises(CompactedError):
            await store.range("/c/", revision=old)
        with pytest.raises(CompactedError):
            async with await store.watch("/c/", start_revision=old) as watch:
                await take(watch, 1)
        with pytest.raises(CompactedError):
            await store.compact(keep)  # already done
        with pytest.raises(FutureRevisionError):
            await store.compact(await store.current_revision() + 100)

        # State at and after the compacted revision is intact.
        at = await store.range("/c/", revision=keep)
        assert [(kv.key, kv.value, kv.mod_revision) for kv in at.items] == [("/c/a", b"a2", a2), ("/c/c", b"c1", keep)]
        now = await store.range("/c/")
        assert [(kv.key, kv.value, kv.version) for kv in now.items] == [("/c/a", b"a2", 2), ("/c/c", b"c2", 2)]
        async with await store.watch("/c/", start_revision=keep) as watch:
            events = await take(watch, 2)
            assert [(e.key, e.kv.value) for e in events] == [("/c/c", b"c1"), ("/c/c", b"c2")]
            assert events[1].prev_kv is not None and events[1].prev_kv.value == b"c1"


async def test_automatic_compaction_keeps_a_window(backend: Backend) -> None:
    async with await backend.open(compact_interval=0.05, compact_keep=5) as store:
        first = await store.create("/auto/0", b"v")
        for i in range(1, 20):
            await store.create(f"/auto/{i}", b"v")
        current = await store.current_revision()

        async def compacted() -> None:
            while True:
                try:
                    await store.range("/auto/", revision=first)
                except CompactedError:
                    return
                await asyncio.sleep(0.05)

        # The bound only turns a hang into a clear failure (the suite's own per-test limit is TEST_TIMEOUT).
        try:
            await asyncio.wait_for(compacted(), TEST_TIMEOUT / 2)
        except TimeoutError:
            raise AssertionError("automatic compaction never ran") from None
        # The window is kept: the last compact_keep revisions can still be read and watched.
        window = await store.range("/auto/", revision=current - 5)
        assert len(window.items) == 20 - 5
        async with await store.watch("/auto/", start_revision=current - 4) as watch:
            assert [e.revision for e in await take(watch, 5)] == list(range(current - 4, current + 1))


@pytest.mark.parametrize("crash", [False, True], ids=["restart", "crash"])
async def test_everything_survives_a_restart(backend: Backend, crash: bool) -> None:
    store = await backend.open()
    a = await store.create("/d/a", b"a1")
    await store.update("/d/a", b"a2", expected_mod_revision=a)
    await store.create("/d/b", b"b1")
    gone = await store.delete("/d/b")
    await store.create("/d/c", b"c1")
    before_items = (await store.range("/d/")).items
    before = await store.current_revision()
    watch = await store.watch("/d/")
    backend.restart(crash=crash)
    if backend.name == "etcd":
        # The server went away under an open watch: the watch says so instead of hanging.
        with pytest.raises(StoreUnavailable):
            await take(watch, 1)
    await store.close()

    async with await backend.open() as reopened:
        assert await reopened.current_revision() == before
        assert (await reopened.range("/d/")).items == before_items
        assert [kv.key for kv in (await reopened.range("/d/", revision=gone - 1)).items] == ["/d/a", "/d/b"]
        # A watch resumed from before the restart gets what happened since, in order.
        async with await reopened.watch("/d/", start_revision=gone) as resumed:
            assert [e.key for e in await take(resumed, 2)] == ["/d/b", "/d/c"]
        after = await reopened.create("/d/e", b"new")
        assert after == before + 1  # revisions continue, never go back


async def test_concurrent_creates_of_one_key_exactly_one_wins(backend: Backend) -> None:
    async with await backend.open() as store, await backend.open() as other:
        attempts = [(store if i % 2 else other).create("/race/k", f"{i}".encode()) for i in range(20)]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        winners = [r for r in results if isinstance(r, int)]
        assert len(winners) == 1, results
        assert all(isinstance(r, KeyExistsError) for r in results if not isinstance(r, int))
        kv = await store.get("/race/k")
        assert kv is not None and kv.mod_revision == winners[0]

        # And a compare-and-swap race from one read: one update wins, the rest conflict.
        updates = [store.update("/race/k", b"u", expected_mod_revision=kv.mod_revision) for _ in range(10)]
        results = await asyncio.gather(*updates, return_exceptions=True)
        assert sum(isinstance(r, int) for r in results) == 1
        assert sum(isinstance(r, ConflictError) for r in results) == 9


async def test_revisions_only_grow(backend: Backend) -> None:
    async with await backend.open() as store:
        seen = [await store.current_revision()]
        key = "/mono/k"
        rev = await store.create(key, b"0")
        seen.append(rev)
        for i in range(20):
            rev = await store.update(key, str(i).encode(), expected_mod_revision=rev)
            seen.append(rev)
        seen.append(await store.delete(key))
        seen.append(await store.create(key, b"again"))
        assert seen == sorted(set(seen)), seen
        assert await store.current_revision() == seen[-1]


async def test_keys_are_unicode_and_ordered_by_code_point(backend: Backend) -> None:
    async with await backend.open() as store:
        keys = ["/u/a", "/u/z", "/u/é", "/u/日本", "/u/\U0001f600"]
        for key in keys:
            await store.create(key, key.encode())
        assert [kv.key for kv in (await store.range("/u/")).items] == sorted(keys)
        assert [kv.key for kv in (await store.range("/u/日")).items] == ["/u/日本"]
        got = await store.get("/u/é")
        assert got is not None and got.value == "/u/é".encode()


async def test_closing_a_watch_ends_a_consumer_blocked_on_it(backend: Backend) -> None:
    async with await backend.open() as store:
        watch = await store.watch("/blocked/")
        consumer = asyncio.create_task(anext(watch))
        await asyncio.sleep(0.05)  # the consumer is now waiting inside the watch
        await watch.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(consumer, 5)


async def test_a_closed_store_is_unavailable(backend: Backend) -> None:
    store: Store = await backend.open()
    watch = await store.watch("/closed/")
    blocked = await store.watch("/closed/")
    consumer = asyncio.create_task(anext(blocked))
    await asyncio.sleep(0.05)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(consumer, 5)
    await store.close()  # idempotent
    with pytest.raises(StopAsyncIteration):
        await anext(watch)
    with pytest.raises(StoreUnavailable):
        await store.create("/closed/x", b"")
    with pytest.raises(StoreUnavailable):
        await store.range("/closed/")


async def test_random_history_matches_a_model(backend: Backend) -> None:
    """Random writes and compactions; every readable revision must equal the model's state then."""
    rng = random.Random(20261125)
    keys = [f"/model/k{i}" for i in range(12)]
    async with await backend.open() as store:
        model: dict[str, tuple[bytes, int]] = {}  # key -> (value, mod revision)
        states: dict[int, dict[str, bytes]] = {await store.current_revision(): {}}
        compacted = 0
        for step in range(300):
            key = rng.choice(keys)
            present = key in model
            stale = present and rng.random() < 0.15
            try:
                if not present:
                    rev = await store.create(key, f"{step}".encode())
                elif rng.random() < 0.3:
                    rev = await store.delete(key, expected_mod_revision=model[key][1] - stale)
                else:
                    rev = await store.update(key, f"{step}".encode(), expected_mod_revision=model[key][1] - stale)
            except ConflictError:
                assert stale
                continue
            assert not stale, "a stale compare-and-swap succeeded"
            value = await store.get(key)
            if value is None:
                del model[key]
            else:
                assert value.mod_revision == rev
                model[key] = (value.value, rev)
            states[rev] = {k: v for k, (v, _) in model.items()}
            if step % 97 == 96:
                compacted = rev - rng.randrange(1, 20)
                await store.compact(compacted)

        for rev, state in states.items():
            if rev == 0:
                continue  # revision 0 asks for the current state: not a point in the past
            if rev < compacted:
                with pytest.raises(CompactedError):
                    await store.range("/model/", revision=rev)
            else:
                got = await store.range("/model/", revision=rev)
                assert {kv.key: kv.value for kv in got.items} == state, f"at revision {rev}"

        # Replaying the kept history over the state at the compacted revision gives today's state.
        replayed = dict(states[max(r for r in states if r <= compacted)])
        async with await store.watch("/model/", start_revision=compacted + 1) as watch:
            for event in await take(watch, len([r for r in states if r > compacted])):
                if event.type is EventType.PUT:
                    replayed[event.key] = event.kv.value
                else:
                    replayed.pop(event.key)
        assert replayed == {k: v for k, (v, _) in model.items()}


async def test_the_empty_prefix_is_every_key(backend: Backend) -> None:
    async with await backend.open() as store:
        async with await store.watch("") as watch:
            revs = [await store.create(key, b"") for key in ("/b", "/a", "\U0010ffff")]
            assert [e.revision for e in await take(watch, 3)] == revs
        assert [kv.key for kv in (await store.range("")).items] == ["/a", "/b", "\U0010ffff"]


async def test_a_range_larger_than_a_default_grpc_message(backend: Backend) -> None:
    # gRPC refuses messages over 4 MiB unless told otherwise; an unpaginated list can be bigger.
    async with await backend.open() as store:
        big = b"x" * 100_000
        for i in range(60):
            await store.create(f"/big/{i:02d}", big)
        result = await store.range("/big/")
        assert len(result.items) == 60 and all(kv.value == big for kv in result.items)


async def test_values_are_limited_like_etcd_limits_them(backend: Backend) -> None:
    async with await backend.open() as store:
        rev = await store.create("/size/ok", b"x" * 1_000_000)
        with pytest.raises(ValueTooLargeError):
            await store.create("/size/big", b"x" * 2_000_000)
        with pytest.raises(ValueTooLargeError):
            await store.update("/size/ok", b"x" * 2_000_000, expected_mod_revision=rev)
        assert await store.get("/size/big") is None
        kv = await store.get("/size/ok")
        assert kv is not None and kv.mod_revision == rev
