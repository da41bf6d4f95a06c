"""Defect 12 (part): the SQLite store and its WAL/SHM files were world-readable, and malformed ownerReferences were
accepted. The files are 0600 (as etcd keeps its data), and ownerReferences are validated as upstream's
ValidateOwnerReferences does (422 naming the field)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from control.store import SQLiteStore
from tests.security.apiserver_process import RunningAPIServer, namespaced_pod

OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "8f0c2a4e-0000-4000-8000-000000000001"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_files_are_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await SQLiteStore.open(str(tmp_path / "store.db"), compact_interval=None)
        try:
            await store.create("/registry/configmaps/default/a", b"{}")
            files = sorted(tmp_path.glob("store.db*"))
            assert {f.name for f in files} >= {"store.db", "store.db-wal", "store.db-shm"}
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        finally:
            await store.close()

    old = os.umask(0o000)
    try:
        asyncio.run(scenario())
    finally:
        os.umask(old)


def test_an_existing_world_readable_store_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def open_close() -> None:
        store = await SQLiteStore.open(str(path), compact_interval=None)
        await store.close()

    asyncio.run(open_close())
    path.chmod(0o644)
    asyncio.run(open_close())
    assert _mode(path) == 0o600


def test_the_real_apiservers_store_is_owner_only(apiserver: RunningAPIServer) -> None:
    assert asyncio.run(apiserver.call("GET", "/api/v1/namespaces"))[0] == 200
    for path in apiserver.root.glob("store.db*"):
        assert _mode(path) == 0o600, path


def _with_owners(kind: str, name: str, owners: Any) -> tuple[str, dict[str, Any]]:
    if kind == "Pod":
        obj = namespaced_pod(name)
        path = "/api/v1/namespaces/default/pods"
    else:
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}}
        path = "/api/v1/namespaces/default/configmaps"
    obj["metadata"]["ownerReferences"] = owners
    return path, obj


@pytest.mark.parametrize("kind", ["Pod", "ConfigMap"])
@pytest.mark.parametrize(("owners", "causes"), [
    ([{**OWNER, "uid": ""}], [("metadata.ownerReferences.uid", "Invalid value: \"\": must not be empty")]),
    ([{"uid": "u"}], [("metadata.ownerReferences.apiVersion", 'Invalid value: "": version must not be empty'),
                      ("metadata.ownerReferences.kind", 'Invalid value: "": must not be empty'),
                      ("metadata.ownerReferences.name", 'Invalid value: "": must not be empty')]),
    ([{**OWNER, "apiVersion": "a/b/c"}], [("metadata.ownerReferences.apiVersion",
                                          'Invalid value: "a/b/c": version must not be empty')]),
    ([{**OWNER, "controller": True}, {**OWNER, "name": "other", "controller": True}],
     [("metadata.ownerReferences", 'Only one reference can have Controller set to true. Found "true" in references '
                                   "for ReplicaSet/rs and ReplicaSet/other")]),
    ([{**OWNER, "apiVersion": "v1", "kind": "Event"}], [("metadata.ownerReferences",
                                                         "/v1, Kind=Event is disallowed from being an owner")]),
])
def test_malformed_owner_references_are_422_naming_the_field(
        apiserver: RunningAPIServer, kind: str, owners: list[dict[str, Any]], causes: list[tuple[str, str]]) -> None:
    name = f"owned-{abs(hash(repr(owners))) % 10**8}"
    path, obj = _with_owners(kind, name, owners)
    status, _, body = asyncio.run(apiserver.call("POST", path, body=obj))
    assert status == 422 and body["reason"] == "Invalid", body
    found = [(c["field"], c["message"]) for c in body["details"]["causes"]]
    for field, message in causes:
        assert any(f == field and message in m for f, m in found), (field, message, found)
    assert asyncio.run(apiserver.call("GET", f"{path}/{name}"))[0] == 404


def test_well_formed_owner_references_are_kept(apiserver: RunningAPIServer) -> None:
    path, obj = _with_owners("ConfigMap", "owned-ok", [{**OWNER, "controller": True},
                                                        {**OWNER, "name": "second", "controller": False}])
    status, _, body = asyncio.run(apiserver.call("POST", path, body=obj))
    assert status == 201, body
    assert [ref["name"] for ref in body["metadata"]["ownerReferences"]] == ["rs", "second"]
    # An update that breaks them is refused the same way.
    body["metadata"]["ownerReferences"][1]["uid"] = ""
    status, _, answer = asyncio.run(apiserver.call("PUT", f"{path}/owned-ok", body=body))
    assert status == 422 and answer["details"]["causes"][0]["field"] == "metadata.ownerReferences.uid", answer
