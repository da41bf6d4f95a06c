"""Watch streams: newline-delimited JSON over chunked HTTP, however the bytes arrive."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubefake import FakeApiServer, serving

from control.client import (
    NODES,
    SERVICES,
    ApiConnectionError,
    Expired,
    Forbidden,
    Gone,
    LineSplitter,
    ProtocolError,
    WatchEvent,
)


def svc(name: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, **extra}


# --- the line splitter -------------------------------------------------------------------------------------


def test_splitter_joins_lines_across_chunks_and_splits_chunks_into_lines() -> None:
    data = b'{"a":1}\n{"b":2}\r\n\n{"c":' + b"3}\n"
    for size in (1, 2, 3, 5, 7, len(data)):
        splitter = LineSplitter()
        lines: list[bytes] = []
        for i in range(0, len(data), size):
            lines += splitter.feed(data[i:i + size])
        assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}'], size
        assert splitter.finish() == b""


def test_splitter_keeps_a_tail_and_bounds_a_runaway_line() -> None:
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"12345") == []
    assert splitter.finish() == b"12345"
    with pytest.raises(ProtocolError, match="exceeds 10 bytes"):
        splitter.feed(b"x" * 11)
    # A big line delivered in many small chunks is found in one piece (no rescans of what was scanned).
    big = LineSplitter()
    payload = b"y" * 3_000_000
    out: list[bytes] = []
    for i in range(0, len(payload), 4096):
        out += big.feed(payload[i:i + 4096])
    out += big.feed(b"\n")
    assert out == [payload]


# --- streams from the fake apiserver -----------------------------------------------------------------------


def test_watch_streams_events_after_the_resource_version() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("old"))
        rv = str(fake.revision)
        fake.put("services", svc("a"))
        async with serving(fake) as (_, client):
            seen: list[tuple[str, str, str]] = []
            async with client.watch(SERVICES, namespace="default", resource_version=rv, timeout_seconds=30) as events:
                async for event in events:
                    seen.append((event.type, event.object["metadata"].get("name", ""), event.resource_version))
                    if len(seen) == 1:
                        fake.put("services", svc("a", spec={"type": "NodePort"}))
                        fake.bookmark()
                    elif len(seen) == 3:
                        fake.remove("services", "default/a")
                    elif len(seen) == 4:
                        break
            assert [s[:2] for s in seen] == [("ADDED", "a"), ("MODIFIED", "a"), ("BOOKMARK", ""), ("DELETED", "a")]
            assert seen[2][2] == str(fake.revision - 1)
            assert [int(s[2]) for s in seen] == sorted(int(s[2]) for s in seen)
            query = fake.watch_requests()[0]
            assert query == {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "30",
                             "allowWatchBookmarks": "true", }
            await asyncio.sleep(0.01)
            assert fake.watchers == []  # leaving the block closed the connection; the server noticed

    asyncio.run(scenario())


def test_watch_survives_tiny_writes_and_huge_lines() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        rv = str(fake.revision)
        # aiohttp's readline() gives up at 128 KiB; a 1 MiB annotation must still come through.
        fake.put("services", svc("big", metadata={"name": "big", "namespace": "default",
                                                  "annotations": {"blob": "z" * (1 << 20)}}))
        fake.put("services", svc("small"))
        fake.split_writes = 4093
        async with serving(fake) as (_, client):
            names = []
            async with client.watch(SERVICES, resource_version=rv, timeout_seconds=30) as events:
                async for event in events:
                    names.append(event.object["metadata"]["name"])
                    if len(names) == 1:
                        assert len(event.object["metadata"]["annotations"]["blob"]) == 1 << 20
                        fake.split_writes = 1
                    if len(names) == 2:
                        break
            assert names == ["big", "small"]

    asyncio.run(scenario())


def test_watch_ends_cleanly_at_the_servers_timeout() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        async with serving(fake) as (_, client):
            events = [e async for e in client.watch(SERVICES, timeout_seconds=0)]
            # No resourceVersion: the current state comes first as ADDED, as from kube-apiserver.
            assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "a")]

    asyncio.run(scenario())


def test_watch_error_event_carries_a_410_status() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        fake.put("services", svc("b"))
        fake.compact()
        async with serving(fake) as (_, client):
            async with client.watch(SERVICES, resource_version="101", timeout_seconds=30) as stream:
                events = [e async for e in stream]
            assert [e.type for e in events] == ["ERROR"]
            error = events[0].error()
            assert isinstance(error, Expired) and isinstance(error, Gone) and error.status == 410
            assert "too old resource version" in error.message

            fake.expired_as_http = True
            with pytest.raises(Gone):
                async with client.watch(SERVICES, resource_version="101") as stream:
                    pass

            fake.forbidden.add(("watch", "nodes"))
            with pytest.raises(Forbidden):
                async for _ in client.watch(NODES):
                    pass

    asyncio.run(scenario())


def test_dropped_watch_raises_a_connection_error() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a"))
        async with serving(fake) as (_, client):
            seen = []
            with pytest.raises(ApiConnectionError, match="watch /api/v1/services broke"):
                async with client.watch(SERVICES, timeout_seconds=30) as events:
                    async for event in events:
                        seen.append(event.type)
                        fake.drop_watches()
            assert seen == ["ADDED"]

    asyncio.run(scenario())


def test_malformed_stream_lines_are_protocol_errors() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        async with serving(fake) as (_, client):
            fake.inject(200, "", raw=b'{"type":"ADDED","object":{"metadata":{"name":"x"}}}\nnot json\n',
                        headers={"Content-Type": "application/json;stream=watch"})
            got: list[WatchEvent] = []
            with pytest.raises(ProtocolError, match="not JSON"):
                async for event in client.watch(SERVICES):
                    got.append(event)
            assert [e.type for e in got] == ["ADDED"]

            fake.inject(200, "", raw=b'{"type":"WHAT","object":{}}\n')
            with pytest.raises(ProtocolError, match="known type"):
                async for _ in client.watch(SERVICES):
                    pass

            # The server closing in the middle of an event is a broken connection, not a protocol error.
            fake.inject(200, "", raw=json.dumps({"type": "ADDED", "object": {}}).encode()[:-3])
            with pytest.raises(ApiConnectionError, match="middle of an event"):
                async for _ in client.watch(SERVICES):
                    pass
            # And a last line without a newline that is whole is still delivered.
            fake.inject(200, "", raw=json.dumps({"type": "ADDED", "object": {"metadata": {"name": "t"}}}).encode())
            assert [e.object["metadata"]["name"] async for e in client.watch(SERVICES)] == ["t"]

    asyncio.run(scenario())
