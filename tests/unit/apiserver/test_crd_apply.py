"""Server-side apply merges a custom resource's lists as its structural schema types them: a list-type map
by its keys (two managers each own their own items), a set by value, anything else atomic (one owner, a
conflict for another); ObjectMeta's lists as for every kind, also inside an embedded resource. The types are
registered while the CRD's version is served, and dropped when it goes."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp

from control.apiserver.apply import schema_for
from control.apiserver.crd.applyschema import StructuralListTypes
from tests.crd_examples import GROUP, NAME, crontab, crontab_crd
from tests.harness import LocalAPIServer, local_apiserver
from tests.security.authz_kit import call
from tests.unit.apiserver.test_crd_server import CRDS, V1, established

APPLY = "application/apply-patch+yaml"
PATH = f"{V1}/namespaces/default/crontabs/tab"


def crd() -> dict[str, Any]:
    """The shared CronTab CRD, with an untyped list (atomic) and a map-list whose key has a default."""
    made = crontab_crd()
    spec = made["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    spec["hosts"] = {"type": "array", "items": {"type": "string"}}
    spec["listeners"] = {"type": "array", "x-kubernetes-list-type": "map",
                         "x-kubernetes-list-map-keys": ["port", "protocol"],
                         "items": {"type": "object", "required": ["port"], "properties": {
                             "port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"},
                             "name": {"type": "string"}}}}
    spec["pinned"] = {"type": "object", "x-kubernetes-map-type": "atomic",
                      "additionalProperties": {"type": "string"}}
    spec["notes"] = {"type": "object", "additionalProperties": {"type": "string"}}
    spec["byZone"] = {"type": "object", "additionalProperties": {"type": "array", "x-kubernetes-list-type": "set",
                                                                 "items": {"type": "string"}}}
    return made


def test_list_types_from_the_schema() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    types = StructuralListTypes(schema)
    routes = types.list_type(("spec", "routes"))
    assert (routes.kind, routes.keys, dict(routes.defaults)) == ("map", ("name",), {})
    listeners = types.list_type(("spec", "listeners"))
    assert (listeners.kind, listeners.keys, dict(listeners.defaults)) == ("map", ("port", "protocol"),
                                                                        {"protocol": "TCP"})
    assert types.list_type(("spec", "tags")).kind == "set"
    assert types.list_type(("spec", "hosts")).kind == "atomic"  # no list type: atomic, upstream's default
    assert types.list_type(("spec", "byZone", "eu-west")).kind == "set"  # through additionalProperties
    assert types.list_type(("spec", "extra", "anything")).kind == "atomic"  # preserved, undescribed
    assert types.atomic_maps is not None
    assert types.atomic_maps(("spec", "pinned")) and not types.atomic_maps(("spec", "notes"))
    assert not types.atomic_maps(("metadata", "labels"))
    # a schema without atomic maps has no lookup: writes of its kind never ask
    assert StructuralListTypes(crontab_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]).atomic_maps is None
    assert types.list_type(("metadata", "finalizers")).kind == "set"
    owners = types.list_type(("metadata", "ownerReferences"))
    assert (owners.kind, owners.keys) == ("map", ("uid",))
    # an embedded resource's metadata is ObjectMeta too
    assert types.list_type(("spec", "template", "metadata", "finalizers")).kind == "set"


async def applied(session: aiohttp.ClientSession, api: LocalAPIServer, manager: str, body: dict[str, Any],
                  force: bool = False) -> tuple[int, dict[str, Any]]:
    query = f"?fieldManager={manager}" + ("&force=true" if force else "")
    status, got = await call(session, api, "admin", "PATCH", f"{PATH}{query}", body, APPLY)
    return status, got


def fields(obj: dict[str, Any], manager: str) -> dict[str, Any]:
    entry = next(m for m in obj["metadata"]["managedFields"] if m["manager"] == manager)
    spec: dict[str, Any] = entry["fieldsV1"]["f:spec"]
    return spec


def test_two_managers_share_a_map_list_and_a_set_and_conflict_on_an_atomic_list(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            status, body = await call(session, api, "admin", "POST", CRDS, crd())
            assert status == 201, body
            await established(session, api)
            types = schema_for("CronTab", f"{GROUP}/v1")
            assert isinstance(types, StructuralListTypes)

            mine = crontab("tab", routes=[{"name": "a", "weight": 1}], tags=["x"], hosts=["h1"],
                           listeners=[{"port": 80}])
            status, got = await applied(session, api, "me", mine)
            assert status == 201, got
            theirs = crontab("tab", routes=[{"name": "b", "weight": 2}], tags=["y"], listeners=[{"port": 443}])
            del theirs["spec"]["cronSpec"], theirs["spec"]["image"]
            status, got = await applied(session, api, "other", theirs)
            assert status == 200, got
            # each owns its own items: both kept, in the order they came
            assert [r["name"] for r in got["spec"]["routes"]] == ["a", "b"]
            assert got["spec"]["tags"] == ["x", "y"]
            assert [li["port"] for li in got["spec"]["listeners"]] == [80, 443]
            assert set(fields(got, "other")["f:routes"]) == {'k:{"name":"b"}'}
            assert set(fields(got, "other")["f:tags"]) == {'v:"y"'}
            # the defaulted key is part of the item's identity, as for a container port's protocol
            assert set(fields(got, "me")["f:listeners"]) == {'k:{"port":80,"protocol":"TCP"}'}
            assert "f:hosts" in fields(got, "me") and fields(got, "me")["f:hosts"] == {}

            # an atomic list is one field: another manager changing it conflicts
            hosts = copy.deepcopy(theirs)
            hosts["spec"]["hosts"] = ["h2"]
            status, conflict = await applied(session, api, "other", hosts)
            assert status == 409 and [c["field"] for c in conflict["details"]["causes"]] == [".spec.hosts"]

            # an atomic map is one field too, replaced whole; a granular map's keys are each their own
            pinned = copy.deepcopy(theirs)
            mine["spec"]["pinned"], mine["spec"]["notes"] = {"a": "1", "b": "1"}, {"mine": "1"}
            assert (await applied(session, api, "me", mine))[0] == 200
            pinned["spec"]["pinned"], pinned["spec"]["notes"] = {"c": "2"}, {"theirs": "2"}
            status, conflict = await applied(session, api, "other", pinned)
            assert status == 409 and [c["field"] for c in conflict["details"]["causes"]] == [".spec.pinned"]
            status, got = await applied(session, api, "other", pinned, force=True)
            assert status == 200, got
            assert got["spec"]["pinned"] == {"c": "2"}  # not merged with mine
            assert got["spec"]["notes"] == {"mine": "1", "theirs": "2"}
            assert fields(got, "other")["f:pinned"] == {} and "f:pinned" not in fields(got, "me")
            del mine["spec"]["pinned"]

            # dropping an item from my configuration removes it, the other manager's stays
            mine["spec"]["routes"] = []
            mine["spec"]["tags"] = []
            status, got = await applied(session, api, "me", mine)
            assert status == 200, got
            assert [r["name"] for r in got["spec"]["routes"]] == ["b"] and got["spec"]["tags"] == ["y"]

            # the CRD gone, the kind's list types go with it
            await call(session, api, "admin", "DELETE", f"{CRDS}/{NAME}")

            async def dropped() -> bool:
                return not isinstance(schema_for("CronTab", f"{GROUP}/v1"), StructuralListTypes)

            for _ in range(1500):
                if await dropped():
                    break
                await asyncio.sleep(0.02)
            assert await dropped()

    asyncio.run(main())
