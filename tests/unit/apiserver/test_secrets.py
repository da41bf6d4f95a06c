"""Secrets (core/v1) as kube-apiserver serves them: types and the keys each requires, base64 data, the
write-only stringData, immutability, key names, the size limit, kubectl's table; over HTTP like any kind."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from control.apiserver.admission import KubernetesAdmission
from control.apiserver.decoding import base64_error, type_error
from control.apiserver.defaults import default
from control.apiserver.protobuf import decode_protobuf
from control.apiserver.validation import validate, validate_update
from tests.unit.apiserver import test_api_server as api_server

ADMIN = {"Authorization": "Bearer admin"}
URL = "/api/v1/namespaces/default/secrets"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str = "s", secret_type: str | None = None, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **fields}
    if secret_type:
        obj["type"] = secret_type
    return obj


def errors_of(obj: dict[str, Any]) -> list[tuple[str, str]]:
    default("Secret", obj)
    return [(e.field, e.message) for e in validate("Secret", obj)]


@pytest.mark.parametrize(("text", "offset"), [
    ("", None), ("YWJj", None), ("YQ==", None), ("YWJj\nZGVm", None),
    ("abc", 0), ("ab!d", 2), ("YQ=", 3), ("Y===", 1), ("YQ==x", 4),
])
def test_base64_errors_at_gos_offsets(text: str, offset: int | None) -> None:
    assert base64_error(text) == offset


def test_bad_base64_is_a_decoding_error() -> None:
    assert type_error("Secret", secret(data={"k": "not base64!"})) == \
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 3'
    assert type_error("Secret", secret(data={"k": b64("fine")})) is None


def test_string_data_merges_into_data_and_is_not_kept() -> None:
    obj = secret(data={"a": b64("old"), "b": b64("kept")}, stringData={"a": "new", "c": "plain"})
    default("Secret", obj)
    assert obj["type"] == "Opaque" and "stringData" not in obj
    assert {k: base64.b64decode(v).decode() for k, v in obj["data"].items()} == {"a": "new", "b": "kept",
                                                                                 "c": "plain"}


@pytest.mark.parametrize(("secret_type", "data", "annotations", "expected"), [
    ("Opaque", {}, {}, []),
    ("example.com/custom", {}, {}, []),
    ("kubernetes.io/service-account-token", {}, {},
     [("metadata.annotations[kubernetes.io/service-account.name]", "Required value")]),
    ("kubernetes.io/service-account-token", {}, {"kubernetes.io/service-account.name": "default"}, []),
    ("kubernetes.io/dockerconfigjson", {}, {}, [("data[.dockerconfigjson]", "Required value")]),
    ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64("{oops")}, {},
     [("data[.dockerconfigjson]", 'Invalid value: "<secret contents redacted>": invalid character \'o\' looking '
                                  "for beginning of object key string")]),
    ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64('{"auths": {}}')}, {}, []),
    ("kubernetes.io/tls", {"tls.crt": b64("c")}, {}, [("data[tls.key]", "Required value")]),
    ("kubernetes.io/tls", {"tls.crt": b64("c"), "tls.key": b64("k")}, {}, []),
    ("kubernetes.io/basic-auth", {}, {}, [("data[username]", "Required value"), ("data[password]", "Required value")]),
    ("kubernetes.io/basic-auth", {"password": ""}, {}, []),
    ("kubernetes.io/ssh-auth", {"ssh-privatekey": ""}, {}, [("data[ssh-privatekey]", "Required value")]),
])
def test_types_require_their_keys(secret_type: str, data: dict[str, str], annotations: dict[str, str],
                                  expected: list[tuple[str, str]]) -> None:
    obj = secret(secret_type=secret_type, data=data)
    obj["metadata"]["annotations"] = annotations
    assert errors_of(obj) == expected


def test_key_names_and_size() -> None:
    [(field, message)] = errors_of(secret(data={"bad/key": b64("x")}))
    assert field == "data[bad/key]" and "a valid config key must consist of alphanumeric characters" in message
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    assert errors_of(secret(data={"big": big})) == [("data", "Too long: must have at most 1048576 bytes")]


def test_immutable_and_type_do_not_change() -> None:
    old = secret(data={"a": b64("1")}, immutable=True)
    default("Secret", old)
    changed = secret(data={"a": b64("2")}, immutable=True)
    default("Secret", changed)
    assert [(e.field, e.message) for e in validate_update("Secret", changed, old)] == [
        ("data", "Forbidden: field is immutable when `immutable` is set")]
    unfrozen = secret(data={"a": b64("1")}, immutable=False)
    default("Secret", unfrozen)
    assert [e.field for e in validate_update("Secret", unfrozen, old)] == ["immutable"]
    retyped = secret(secret_type="kubernetes.io/basic-auth", data={"username": b64("u")})
    default("Secret", retyped)
    assert next((e.field, e.message) for e in validate_update("Secret", retyped, old)) == \
        ("type", 'Invalid value: "kubernetes.io/basic-auth": field is immutable')


def test_protobuf_data_is_base64_in_json() -> None:
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    meta = field(1, b"s")
    entry = field(1, b"k") + field(2, b"\x00\xff")
    unknown = field(1, b"v1") + field(2, b"Secret")
    body = b"k8s\x00" + field(1, unknown) + field(2, field(1, meta) + field(2, entry) + field(3, b"Opaque"))
    decoded = decode_protobuf(body)
    assert decoded["data"] == {"k": base64.b64encode(b"\x00\xff").decode()} and decoded["type"] == "Opaque"


def run(tmp_path: Path, scenario: Callable[[TestClient], Awaitable[None]]) -> None:
    """SCENARIO(client) against a real apiserver in-process, with upstream's admission (test_api_server's)."""
    api_server.run(lambda client, _registry: scenario(client), tmp_path, admission=KubernetesAdmission())


def test_secrets_over_http(tmp_path: Path) -> None:
    async def scenario(client: TestClient) -> None:
        core = await (await client.get("/api/v1", headers=ADMIN)).json()
        listed = next(r for r in core["resources"] if r["name"] == "secrets")
        assert listed["kind"] == "Secret" and listed["namespaced"] and "watch" in listed["verbs"]
        watch = await client.get(f"{URL}?watch=true", headers=ADMIN)
        resp = await client.post(URL, headers=ADMIN, json=secret("db", data={"user": b64("admin")},
                                                                   stringData={"password": "s3cret"}))
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        assert created["type"] == "Opaque" and "stringData" not in created
        assert base64.b64decode(created["data"]["password"]) == b"s3cret"
        event = json.loads(await asyncio.wait_for(watch.content.readline(), 5))
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "db")
        watch.close()

        bad = await client.post(URL, headers=ADMIN, json=secret("bad", data={"k": "%%%"}))
        assert bad.status == 400 and "illegal base64 data at input byte 0" in (await bad.json())["message"]
        tls = await client.post(URL, headers=ADMIN, json=secret("tls", "kubernetes.io/tls", data={}))
        body = await tls.json()
        assert tls.status == 422 and [c["field"] for c in body["details"]["causes"]] == ["data[tls.crt]",
                                                                                         "data[tls.key]"]

        table = await (await client.get(URL, headers={
            **ADMIN, "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
        assert table["rows"][0]["cells"][:3] == ["db", "Opaque", 2]

        frozen = await (await client.post(URL, headers=ADMIN, json=secret(
            "frozen", data={"a": b64("1")}, immutable=True))).json()
        frozen["data"]["a"] = b64("2")
        refused = await client.put(f"{URL}/frozen", headers=ADMIN, json=frozen)
        assert refused.status == 422 and "field is immutable when `immutable` is set" in await refused.text()

    run(tmp_path, scenario)
