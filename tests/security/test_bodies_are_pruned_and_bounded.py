"""Defect 8: unknown fields were stored (a 338-byte request stored a 1.5 MB object) and YAML aliases expanded (a
436-byte alias bomb blocked the event loop). Unknown fields are dropped as kube-apiserver's decoding drops them
(fieldValidation Warn: one Warning header each; Strict: 400, for PATCH too), aliases have a budget, bodies a size
and a depth limit, and large bodies are decoded off the event loop."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control.apiserver import server as server_module
from tests.security.apiserver_process import TOKEN, RunningAPIServer, apiserver_in_process, namespaced_pod

PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def _alias_bomb() -> bytes:
    lines = [b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]".encode())
        previous = name
    return b"\n".join(lines) + b"\nmetadata: {name: bomb}\n"


def test_unknown_fields_are_dropped_with_one_warning_each(apiserver: RunningAPIServer) -> None:
    async def scenario() -> None:
        pod = namespaced_pod("pruned")
        pod["spec"]["bogus"] = "x" * 100_000
        pod["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
        status, headers, body = await apiserver.call("POST", PODS, body=pod)
        assert status == 201, body
        # In the body's order, as upstream's decoder meets them (containers come before the added field).
        assert headers.getall("Warning") == ['299 - "unknown field \\"spec.containers[0].imagePullPolicyy\\""',
                                             '299 - "unknown field \\"spec.bogus\\""']
        _, _, stored = await apiserver.call("GET", f"{PODS}/pruned")
        assert "bogus" not in stored["spec"] and "imagePullPolicyy" not in stored["spec"]["containers"][0]

        # PATCH honours fieldValidation too: Strict refuses, Warn warns, Ignore is silent; none stores it.
        patch = {"spec": {"bogus": "y" * 1000}, "metadata": {"labels": {"a": "b"}}}
        status, _, body = await apiserver.call("PATCH", f"{PODS}/pruned", body=patch,
                                               content_type="application/merge-patch+json",
                                               params={"fieldValidation": "Strict"})
        assert status == 400 and body["message"] == 'strict decoding error: unknown field "spec.bogus"', body
        status, headers, body = await apiserver.call("PATCH", f"{PODS}/pruned", body=patch,
                                                     content_type="application/strategic-merge-patch+json")
        assert status == 200 and headers.getall("Warning") == ['299 - "unknown field \\"spec.bogus\\""'], body
        assert "bogus" not in body["spec"] and body["metadata"]["labels"] == {"a": "b"}
        status, headers, body = await apiserver.call("PATCH", f"{PODS}/pruned", body=patch,
                                                     content_type="application/merge-patch+json",
                                                     params={"fieldValidation": "Ignore"})
        assert status == 200 and "Warning" not in headers and "bogus" not in body["spec"]
        _, _, stored = await apiserver.call("GET", f"{PODS}/pruned")
        assert "bogus" not in stored["spec"]

    asyncio.run(scenario())


def test_yaml_alias_bomb_is_refused(apiserver: RunningAPIServer) -> None:
    bomb = _alias_bomb()
    assert len(bomb) < 500
    status, _, body = asyncio.run(apiserver.call("POST", CONFIGMAPS, data=bomb, content_type="application/yaml"))
    assert status == 400 and "aliases" in body["message"], body
    # A few honest aliases still work.
    honest = b"metadata: {name: honest, labels: &l {app: x}, annotations: *l}\ndata: {a: b}\n"
    status, _, body = asyncio.run(apiserver.call("POST", CONFIGMAPS, data=honest, content_type="application/yaml"))
    assert status == 201 and body["metadata"]["annotations"] == {"app": "x"}, body


def test_bodies_over_3_mib_are_413_with_or_without_a_length(apiserver: RunningAPIServer) -> None:
    big = b'{"metadata":{"name":"huge"},"data":{"a":"' + b"x" * (3 * 1024 * 1024) + b'"}}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    async def scenario() -> None:
        status, _, body = await apiserver.call("POST", CONFIGMAPS, data=big)
        assert status == 413 and body["reason"] == "RequestEntityTooLarge", body
        async with apiserver.session() as session, session.post(
                CONFIGMAPS, data=chunks(), headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413 and (await resp.json())["reason"] == "RequestEntityTooLarge"

    asyncio.run(scenario())


def test_a_large_body_is_decoded_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a large YAML body is being decoded (3 MiB of it take seconds of pure Python), the server still answers
    others. The decoder is held until a health check sent meanwhile has been answered: were it running on the event
    loop, no answer could come, the hold would run out and the decoder would report it."""
    lines = [b"metadata: {name: slow}", b"data:"] + [f"  k{i}: v{i}".encode() for i in range(50_000)]
    body = b"\n".join(lines) + b"\n"
    assert len(body) > server_module.THREAD_DECODE_BYTES
    decoding, answered = threading.Event(), threading.Event()
    held: list[bool] = []
    decode_yaml = server_module.decode_yaml

    def held_decode(raw: bytes) -> Any:
        decoding.set()
        held.append(answered.wait(timeout=30))  # True only if the loop answered while this decoder ran
        return decode_yaml(raw)

    monkeypatch.setattr(server_module, "decode_yaml", held_decode)

    async def scenario() -> None:
        async with apiserver_in_process(tmp_path) as port, aiohttp.ClientSession(
                f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=aiohttp.ClientTimeout(total=60)) as session:
            async def big() -> int:
                async with session.post(CONFIGMAPS, data=io.BytesIO(body),
                                        headers={"Content-Type": "application/yaml"}) as resp:
                    return resp.status

            big_task = asyncio.create_task(big())
            await asyncio.to_thread(decoding.wait, 30)
            assert decoding.is_set(), "the big body never reached the decoder"
            async with session.get("/healthz") as resp:
                assert resp.status == 200
            answered.set()
            assert await big_task == 201

    asyncio.run(scenario())
    assert held == [True]
