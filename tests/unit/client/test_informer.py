"""Informer: list, watch from the list's resourceVersion, resume after drops, relist after 410, backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from kubefake import FakeApiServer, Sleeps, eventually, serving

from control.client import (
    ENDPOINT_SLICES,
    NODES,
    PODS,
    SERVICE_NAME_LABEL,
    SERVICES,
    Backoff,
    Client,
    Indexer,
    Informer,
    index_by_field,
    index_by_label,
    index_by_namespace,
    strip_managed_fields,
    wait_for_cache_sync,
)

Event = tuple[str, ...]


class Recorder:
    """Handlers that only record, as informer handlers must."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @staticmethod
    def _key(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]

    def on_add(self, obj: dict[str, Any]) -> None:
        self.events.append(("add", self._key(obj)))

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.events.append(("update", self._key(new), old["metadata"]["resourceVersion"],
                            new["metadata"]["resourceVersion"]))

    def on_delete(self, obj: dict[str, Any]) -> None:
        self.events.append(("delete", self._key(obj)))

    def attach(self, informer: Informer) -> Recorder:
        informer.add_handler(on_add=self.on_add, on_update=self.on_update, on_delete=self.on_delete)
        return self


def svc(name: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def informer_for(client: Client, resource: Any = SERVICES, **options: Any) -> tuple[Informer, Sleeps]:
    sleeps = Sleeps()
    options.setdefault("backoff", Backoff(jitter=0.0))
    options.setdefault("watch_timeout_seconds", 30)
    return Informer(client, resource, sleep=sleeps, **options), sleeps


async def synced_and_watching(informer: Informer, fake: FakeApiServer) -> None:
    """The first list is delivered and the watch is open on the server (so a drop has something to drop)."""
    assert await informer.wait_synced(timeout=5)
    await eventually(lambda: len(fake.watchers) == 1)


def assert_only_this_task_left() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == [], others


def rv_of(fake: FakeApiServer, plural: str, key: str) -> str:
    return str(fake.state[f"/v1/{plural}"][key]["metadata"]["resourceVersion"])


# --- the happy path ----------------------------------------------------------------------------------------


def test_list_then_watch_delivers_every_change_in_order() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        fake.put("services", svc("b"))
        fake.put("services", svc("c", "kube-system"))
        async with serving(fake) as (_, client):
            informer, sleeps = informer_for(client, indexers={"namespace": index_by_namespace})
            rec = Recorder().attach(informer)
            assert not informer.has_synced
            informer.start()
            assert await informer.wait_synced(timeout=5)
            assert rec.events == [("add", "default/a"), ("add", "default/b"), ("add", "kube-system/c")]
            list_rv = str(fake.revision)
            assert informer.resource_version == list_rv
            # List items carry no kind; the informer makes them look like watched objects.
            assert informer.store.get("a", "default")["kind"] == "Service"  # type: ignore[index]

            rv_a = rv_of(fake, "services", "default/a")
            fake.put("services", svc("a", type="NodePort"))
            fake.remove("services", "default/b")
            fake.put("services", svc("d"))
            await eventually(lambda: len(rec.events) == 6)
            assert rec.events[3:] == [("update", "default/a", rv_a, rv_of(fake, "services", "default/a")),
                                      ("delete", "default/b"), ("add", "default/d")]
            assert informer.resource_version == str(fake.revision)
            assert sorted(informer.store.keys()) == ["default/a", "default/d", "kube-system/c"]
            assert [o["metadata"]["name"] for o in informer.store.by_index("namespace", "default")] == ["a", "d"]
            assert fake.watch_requests()[0]["resourceVersion"] == list_rv
            assert fake.watch_requests()[0]["allowWatchBookmarks"] == "true"
            assert informer.lists == 1 and sleeps.calls == []

            # A handler added late is told of what is already there, then of what comes.
            late = Recorder().attach(informer)
            assert sorted(late.events) == [("add", "default/a"), ("add", "default/d"), ("add", "kube-system/c")]
            fake.remove("services", "kube-system/c")
            await eventually(lambda: len(late.events) == 4)
            assert late.events[-1] == rec.events[-1] == ("delete", "kube-system/c")

            await informer.stop()
            assert informer.store.get("a", "default") is not None  # the store keeps its contents
        assert_only_this_task_left()

    asyncio.run(scenario())


def test_selectors_reach_list_and_watch() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("nodes", {"metadata": {"name": "node-1"}})
        fake.put("nodes", {"metadata": {"name": "node-2"}})
        async with serving(fake) as (_, client):
            informer, _ = informer_for(client, NODES, field_selector="metadata.name=node-1")
            rec = Recorder().attach(informer)
            async with informer:
                assert await informer.wait_synced(timeout=5)
                fake.put("nodes", {"metadata": {"name": "node-2", "labels": {"x": "y"}}})
                fake.put("nodes", {"metadata": {"name": "node-1", "labels": {"x": "y"}}})
                await eventually(lambda: len(rec.events) == 2)
                assert [e[:2] for e in rec.events] == [("add", "node-1"), ("update", "node-1")]
                assert informer.store.keys() == ["node-1"]
            list_query = next(q for (m, p, q, _b, _h) in fake.requests if m == "GET" and "watch" not in q)
            assert list_query["fieldSelector"] == "metadata.name=node-1"
            assert fake.watch_requests()[0]["fieldSelector"] == "metadata.name=node-1"
        assert_only_this_task_left()

    asyncio.run(scenario())


# --- resuming ----------------------------------------------------------------------------------------------


def test_watch_resumes_after_a_drop_with_nothing_missed_or_repeated() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        fake.put("services", svc("b"))
        async with serving(fake) as (_, client):
            informer, sleeps = informer_for(client)
            rec = Recorder().attach(informer)
            async with informer:
                await synced_and_watching(informer, fake)
                fake.put("services", svc("c"))
                await eventually(lambda: len(rec.events) == 3)
                last_seen = informer.resource_version
                assert last_seen == str(fake.revision)

                # The connection breaks; while the informer is away, three changes happen.
                fake.drop_watches()
                fake.put("services", svc("d"))
                fake.put("services", svc("a", type="NodePort"))
                fake.remove("services", "default/b")
                await eventually(lambda: len(rec.events) == 6)
                assert rec.events == [("add", "default/a"), ("add", "default/b"), ("add", "default/c"),
                                      ("add", "default/d"),
                                      ("update", "default/a", "101", rv_of(fake, "services", "default/a")),
                                      ("delete", "default/b")]
                assert [q["resourceVersion"] for q in fake.watch_requests()] == ["102", last_seen]
                assert informer.lists == 1
                assert sleeps.calls == [0.8]
                fake.put("services", svc("e"))
                await eventually(lambda: len(rec.events) == 7)
                assert rec.events[-1] == ("add", "default/e")
        assert_only_this_task_left()

    asyncio.run(scenario())


def test_bookmarks_advance_the_resource_version() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        async with serving(fake) as (_, client):
            informer, _ = informer_for(client)
            rec = Recorder().attach(informer)
            async with informer:
                await synced_and_watching(informer, fake)
                # Other resources move the revision on; our watch sees none of it but a bookmark.
                fake.put("nodes", {"metadata": {"name": "n1"}})
                fake.put("nodes", {"metadata": {"name": "n2"}})
                assert informer.resource_version == "101"
                fake.bookmark()
                await eventually(lambda: informer.resource_version == str(fake.revision))
                fake.drop_watches()
                await eventually(lambda: len(fake.watch_requests()) == 2)
                assert fake.watch_requests()[1]["resourceVersion"] == "103"
                assert rec.events == [("add", "default/a")]
        assert_only_this_task_left()

    asyncio.run(scenario())


# --- 410: relist and the difference ------------------------------------------------------------------------


def _gap(fake: FakeApiServer) -> None:
    """Changes a disconnected or too-slow informer never sees as events."""
    fake.deliver = False
    fake.remove("services", "default/b")
    fake.put("services", svc("c", type="NodePort"))
    fake.put("services", svc("d"))
    fake.remove("services", "default/e")
    fake.put("services", svc("e"))  # the same name, a new object (a new uid)
    fake.deliver = True


def _expected_after_gap(fake: FakeApiServer, rv_c: str) -> list[Event]:
    return [("update", "default/c", rv_c, rv_of(fake, "services", "default/c")),
            ("add", "default/d"),
            ("delete", "default/e"), ("add", "default/e"),
            ("delete", "default/b")]


@pytest.mark.parametrize("how", ["error-event", "http-410"])
def test_relist_after_410_delivers_the_difference(how: str) -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        for name in "abce":
            fake.put("services", svc(name))
        async with serving(fake) as (_, client):
            informer, sleeps = informer_for(client)
            rec = Recorder().attach(informer)
            async with informer:
                await synced_and_watching(informer, fake)
                old_uid_e = informer.store.get("e", "default")["metadata"]["uid"]  # type: ignore[index]
                rv_c = rv_of(fake, "services", "default/c")
                if how == "error-event":
                    _gap(fake)
                    fake.expire_watches()  # a 410 ERROR event in the open stream
                else:
                    fake.expired_as_http = True
                    fake.drop_watches()
                    _gap(fake)
                    fake.compact()  # the re-watch gets an HTTP 410
                await eventually(lambda: informer.lists == 2 and len(rec.events) == 9)
                assert rec.events[:4] == [("add", f"default/{n}") for n in "abce"]
                assert rec.events[4:] == _expected_after_gap(fake, rv_c)
                assert sorted(informer.store.keys()) == ["default/a", "default/c", "default/d", "default/e"]
                assert informer.store.get("e", "default")["metadata"]["uid"] != old_uid_e  # type: ignore[index]
                assert informer.resource_version == str(fake.revision)

                # And the stream goes on from the relist's resourceVersion.
                fake.put("services", svc("f"))
                await eventually(lambda: len(rec.events) == 10)
                assert rec.events[-1] == ("add", "default/f")
                assert fake.watch_requests()[-1]["resourceVersion"] == str(fake.revision - 1)
                assert len(sleeps.calls) == (1 if how == "error-event" else 2)
        assert_only_this_task_left()

    asyncio.run(scenario())


# --- backoff -----------------------------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered() -> None:
    plain = Backoff(initial=1.0, maximum=5.0, factor=2.0, jitter=0.0)
    assert [plain.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    plain.reset()
    assert plain.next() == 1.0

    class High(random.Random):
        def random(self) -> float:
            return 0.5

    jittered = Backoff(initial=1.0, maximum=5.0, jitter=1.0, rng=High())
    assert [jittered.next() for _ in range(4)] == [1.5, 3.0, 6.0, 7.5]
    seeded = Backoff(rng=random.Random(7))
    delays = [seeded.next() for _ in range(10)]
    assert all(0.8 <= d <= 60.0 for d in delays) and delays[-1] >= 30.0


def test_informer_backoff_grows_on_failures_and_resets_on_progress() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        async with serving(fake) as (_, client):
            informer, sleeps = informer_for(client)
            rec = Recorder().attach(informer)
            async with informer:
                await synced_and_watching(informer, fake)
                fake.inject(500, "InternalError", "etcdserver: leader changed", times=3,
                            when=lambda r: r.query.get("watch") == "1")
                fake.drop_watches()
                fake.put("services", svc("b"))
                await eventually(lambda: rec.events[-1] == ("add", "default/b"))
                assert sleeps.calls == [0.8, 1.6, 3.2, 6.4]

                # An event arrived, so the next failure starts again from the first delay.
                fake.inject(429, "TooManyRequests", "slow down", headers={"Retry-After": "5"},
                            when=lambda r: r.query.get("watch") == "1")
                fake.drop_watches()
                fake.put("services", svc("c"))
                await eventually(lambda: rec.events[-1] == ("add", "default/c"))
                assert sleeps.calls[4:] == [0.8, 5.0]  # Retry-After outweighs a shorter backoff

                # A server that closes every watch at once without an event: client-go's "very short
                # watch" counts as a failure, so we back off instead of spinning.
                fake.end_watches_at_once = True
                fake.drop_watches()
                await eventually(lambda: len(sleeps.calls) >= 10)
                assert sleeps.calls[6:10] == [0.8, 1.6, 3.2, 6.4]
                fake.end_watches_at_once = False
                fake.put("services", svc("d"))
                await eventually(lambda: rec.events[-1] == ("add", "default/d"))
        assert_only_this_task_left()

    asyncio.run(scenario())


def test_failed_first_list_retries_and_wait_synced_times_out() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        async with serving(fake) as (_, client):
            fake.inject(503, "ServiceUnavailable", "starting", times=2)
            informer, sleeps = informer_for(client)
            rec = Recorder().attach(informer)
            informer.start()
            assert await informer.wait_synced(timeout=5)
            assert sleeps.calls == [0.8, 1.6] and rec.events == [("add", "default/a")]
            await informer.stop()

            fake.forbidden.add(("list", "pods"))
            pods, _ = informer_for(client, PODS)
            pods.start()
            assert not await pods.wait_synced(timeout=0.05)
            await pods.stop()
            assert not await pods.wait_synced()  # stopped before syncing: False at once, no hang
            with pytest.raises(RuntimeError):
                pods.start()
        assert_only_this_task_left()

    asyncio.run(scenario())


# --- handlers, indexers, several informers -----------------------------------------------------------------


def test_a_failing_handler_is_logged_and_the_stream_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        async with serving(fake) as (_, client):
            informer, _ = informer_for(client)

            def broken(obj: dict[str, Any]) -> None:
                raise RuntimeError("handler bug")

            informer.add_handler(on_add=broken)
            rec = Recorder().attach(informer)
            async with informer:
                await informer.wait_synced(timeout=5)
                fake.put("services", svc("b"))
                await eventually(lambda: len(rec.events) == 2)
        assert "handler bug" in caplog.text
        assert_only_this_task_left()

    asyncio.run(scenario())


def test_indexer_moves_objects_between_index_values() -> None:
    store = Indexer({"node": index_by_field("spec.nodeName"), "service": index_by_label(SERVICE_NAME_LABEL)})
    store.put({"metadata": {"name": "p1", "namespace": "ns"}, "spec": {"nodeName": "n1"}})
    store.put({"metadata": {"name": "p2", "namespace": "ns"}, "spec": {"nodeName": "n1"}})
    store.put({"metadata": {"name": "p3", "namespace": "ns"}, "spec": {}})
    assert store.index_keys("node", "n1") == ["ns/p1", "ns/p2"]
    store.put({"metadata": {"name": "p1", "namespace": "ns"}, "spec": {"nodeName": "n2"}})
    assert store.index_keys("node", "n1") == ["ns/p2"] and store.index_keys("node", "n2") == ["ns/p1"]
    store.remove("ns/p2")
    assert store.index_values("node") == ["n2"]
    store.put({"metadata": {"name": "web-abc", "namespace": "ns", "labels": {SERVICE_NAME_LABEL: "web"}}})
    assert [o["metadata"]["name"] for o in store.by_index("service", "web")] == ["web-abc"]
    assert len(store) == 3 and "ns/p3" in store and store.get("p3", "ns") is not None
    with pytest.raises(KeyError, match="no index named"):
        store.by_index("nope", "x")


def test_several_informers_sync_together() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("web"))
        slice_ = {"metadata": {"name": "web-x1", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
                  "addressType": "IPv4", "endpoints": []}
        fake.put("endpointslices", slice_, group="discovery.k8s.io")
        async with serving(fake) as (_, client):
            services, _ = informer_for(client)
            slices, _ = informer_for(client, ENDPOINT_SLICES, indexers={"service": index_by_label(SERVICE_NAME_LABEL)},
                                     page_size=1)
            async with services, slices:
                assert await wait_for_cache_sync(services, slices, timeout=5)
                assert [o["metadata"]["name"] for o in slices.store.by_index("service", "web")] == ["web-x1"]
                assert slices.store.list()[0]["apiVersion"] == "discovery.k8s.io/v1"
        assert_only_this_task_left()

    asyncio.run(scenario())


def test_quiet_logging_never_shows_the_token(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        fake = FakeApiServer(token="very-secret-token")
        async with serving(fake) as (_, client):
            caplog.set_level(logging.DEBUG)
            informer, _ = informer_for(client)
            async with informer:
                await synced_and_watching(informer, fake)
                fake.inject(500, "InternalError", "x", when=lambda r: r.query.get("watch") == "1")
                fake.drop_watches()
                await eventually(lambda: len(fake.watch_requests()) >= 3)
        assert "very-secret" not in caplog.text and "retrying" in caplog.text

    asyncio.run(scenario())


def test_a_resource_version_ahead_of_the_server_means_relist_and_nameless_objects_are_skipped(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        async with serving(fake) as (_, client):
            informer, sleeps = informer_for(client)
            rec = Recorder().attach(informer)
            async with informer:
                await synced_and_watching(informer, fake)
                fake.inject(504, "Timeout", "Too large resource version: 999, current: 102",
                            when=lambda r: r.query.get("watch") == "1")
                # kube-apiserver's exact shape for this: a Timeout Status with a ResourceVersionTooLarge cause.
                fake.injected[-1].raw = (
                    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too large '
                    b'resource version: 999, current: 102","reason":"Timeout","details":{"causes":[{"reason":'
                    b'"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},'
                    b'"code":504}')
                fake.drop_watches()
                await eventually(lambda: informer.lists == 2)
                assert sleeps.calls[:2] == [0.8, 1.6]

                fake.inject(200, "", when=lambda r: r.query.get("watch") == "1", raw=(
                    b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"150"}}}\n'
                    b'{"type":"ADDED","object":{"metadata":{"name":"z","namespace":"default",'
                    b'"resourceVersion":"151"}}}\n'))
                await eventually(lambda: len(fake.watchers) == 1)
                fake.drop_watches()
                await eventually(lambda: ("add", "default/z") in rec.events)
                assert informer.store.keys() == ["default/a", "default/z"]
        assert "without metadata.name" in caplog.text
        assert_only_this_task_left()

    asyncio.run(scenario())


def test_a_relist_transforms_page_by_page_and_managed_fields_can_be_stripped() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        managed = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
        for name in "abcde":
            fake.put("services", {**svc(name), "metadata": {"name": name, "namespace": "default",
                                                            "managedFields": managed}})
        async with serving(fake) as (_, client):
            lists_before: list[int] = []

            def transform(obj: dict[str, Any]) -> dict[str, Any]:
                lists_before.append(sum(1 for r in fake.requests if r[0] == "GET" and "watch" not in r[2]))
                return strip_managed_fields(obj)

            informer, _ = informer_for(client, page_size=2, transform=transform)
            async with informer:
                await synced_and_watching(informer, fake)
                assert informer.store.keys() == [f"default/{n}" for n in "abcde"]
                assert all("managedFields" not in o["metadata"] for o in informer.store.list())
                assert lists_before == [1, 1, 2, 2, 3]  # never more than one page of whole objects
                assert informer.resource_version == str(fake.revision)

                fake.put("services", {**svc("f"), "metadata": {"name": "f", "namespace": "default",
                                                               "managedFields": managed}})
                await eventually(lambda: "default/f" in informer.store)
                assert "managedFields" not in informer.store.get("f", "default")["metadata"]  # type: ignore[index]

    asyncio.run(scenario())
