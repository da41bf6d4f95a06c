"""CustomResourceDefinitions through the real HTTP layer (tests/harness.py's in-process apiserver): a CRD is
Established and its resource served (discovery, CRUD, patch, status and scale subresources, Table, watch,
two versions), instances are validated (422 naming the field), pruned and defaulted, deleting the CRD deletes
them and stops serving it, and a restart serves it again from the store. Also the Local APIServices."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.crd_examples import GROUP, NAME, crontab, crontab_crd
from tests.harness import LocalAPIServer, local_apiserver
from tests.security.authz_kit import call

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
V1 = f"/apis/{GROUP}/v1"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


async def until(check: Any) -> Any:
    """check() once it holds; the bound is a hang guard for a loaded machine, not a measurement."""
    for _ in range(1500):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def established(session: aiohttp.ClientSession, api: LocalAPIServer, path: str = V1) -> None:
    async def ready() -> bool:
        status, crd = await call(session, api, "admin", "GET", f"{CRDS}/{NAME}")
        conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions", [])}
        return status == 200 and conditions.get("Established") == "True" and \
            (await call(session, api, "admin", "GET", path))[0] == 200

    await until(ready)


def run(tmp_path: Path, scenario: Any, *, crd: dict[str, Any] | None = None) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            status, body = await call(session, api, "admin", "POST", CRDS, crd or crontab_crd())
            assert status == 201, body
            await established(session, api)
            await scenario(api, session)

    asyncio.run(main())


def test_established_and_discovered(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        _, crd = await call(session, api, "admin", "GET", f"{CRDS}/{NAME}")
        conditions = {c["type"]: (c["status"], c["reason"]) for c in crd["status"]["conditions"]}
        assert conditions == {"NamesAccepted": ("True", "NoConflicts"),
                              "Established": ("True", "InitialNamesAccepted")}
        assert crd["status"]["acceptedNames"]["listKind"] == "CronTabList"
        assert crd["status"]["storedVersions"] == ["v1"]
        _, groups = await call(session, api, "admin", "GET", "/apis")
        ours = next(g for g in groups["groups"] if g["name"] == GROUP)
        assert ours["preferredVersion"] == {"groupVersion": f"{GROUP}/v1", "version": "v1"}
        _, group = await call(session, api, "admin", "GET", f"/apis/{GROUP}")
        assert group["kind"] == "APIGroup" and group["name"] == GROUP
        _, listed = await call(session, api, "admin", "GET", V1)
        entries = {r["name"]: r for r in listed["resources"]}
        assert entries["crontabs"]["shortNames"] == ["ct"] and entries["crontabs"]["categories"] == ["all"]
        assert entries["crontabs"]["namespaced"] is True and entries["crontabs"]["kind"] == "CronTab"
        assert entries["crontabs/scale"]["group"] == "autoscaling" and "crontabs/status" in entries
        # A second CRD wanting a taken name in the group is not accepted, and not served.
        other = crontab_crd()
        other["metadata"]["name"] = f"crontabz.{GROUP}"
        other["spec"]["names"] = {"plural": "crontabz", "kind": "CronTabZ", "shortNames": ["ct"]}
        assert (await call(session, api, "admin", "POST", CRDS, other))[0] == 201

        async def refused() -> Any:
            _, got = await call(session, api, "admin", "GET", f"{CRDS}/crontabz.{GROUP}")
            found = {c["type"]: c for c in (got.get("status") or {}).get("conditions", [])}
            return found if found.get("NamesAccepted", {}).get("status") == "False" else None

        found = await until(refused)
        assert found["NamesAccepted"]["reason"] == "ShortNamesConflict"
        assert found["NamesAccepted"]["message"] == '"ct" is already in use'
        assert found["Established"]["status"] == "False"
        assert (await call(session, api, "admin", "GET", f"{V1}/crontabz"))[0] == 404

    run(tmp_path, scenario)


def test_invalid_crds_are_refused_with_their_fields(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        bad = crontab_crd(versions=("v2",))
        bad["spec"]["versions"][0]["storage"] = False
        bad["metadata"]["name"] = "wrong.name"
        status, body = await call(session, api, "admin", "POST", CRDS, bad)
        assert status == 422 and body["reason"] == "Invalid"
        fields = {c["field"] for c in body["details"]["causes"]}
        assert fields == {"metadata.name", "spec.versions"}
        assert body["details"]["kind"] == "CustomResourceDefinition"

    run(tmp_path, scenario)


def test_instances_validated_pruned_defaulted(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = f"{V1}/namespaces/default/crontabs"
        status, body = await call(session, api, "admin", "POST", path, crontab("bad", replicas="three"))
        assert status == 422, body
        assert body["message"] == ('CronTab.stable.example.com "bad" is invalid: spec.replicas: Invalid value: '
                                   '"string": spec.replicas in body must be of type integer: "string"')
        assert body["details"]["causes"] == [{"reason": "FieldValueTypeInvalid", "field": "spec.replicas",
                                              "message": 'Invalid value: "string": spec.replicas in body must be of '
                                                         'type integer: "string"'}]
        assert body["details"]["group"] == GROUP and body["details"]["kind"] == "CronTab"

        labelled = crontab("labelled")
        labelled["metadata"]["labels"] = {"bad key!": "x"}
        status, body = await call(session, api, "admin", "POST", path, labelled)
        assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.labels", body

        made = crontab("good", unknownField="dropped")
        status, created = await call(session, api, "admin", "POST", path, made)
        assert status == 201, created
        assert "unknownField" not in created["spec"] and created["spec"]["replicas"] == 1
        assert created["metadata"]["generation"] == 1
        _, got = await call(session, api, "admin", "GET", f"{path}/good")
        assert got["spec"] == created["spec"] and got["apiVersion"] == f"{GROUP}/v1"
        # Strict field validation refuses what Warn prunes.
        strict = await call(session, api, "admin", "POST", f"{path}?fieldValidation=Strict", crontab("s", odd=1))
        assert strict[0] == 400 and 'unknown field "spec.odd"' in strict[1]["message"]
        # Short names resolve through discovery only; the path is the plural.
        _, listed = await call(session, api, "admin", "GET", f"{V1}/crontabs")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["good"]
        assert listed["kind"] == "CronTabList"

        # Patches (merge and json) go through the same validation and pruning.
        merge = await call(session, api, "admin", "PATCH", f"{path}/good", {"spec": {"replicas": 50}},
                           "application/merge-patch+json")
        assert merge[0] == 422 and merge[1]["details"]["causes"][0]["field"] == "spec.replicas"
        jpatch = await call(session, api, "admin", "PATCH", f"{path}/good",
                            [{"op": "replace", "path": "/spec/image", "value": "v2"}], "application/json-patch+json")
        assert jpatch[0] == 200 and jpatch[1]["spec"]["image"] == "v2" and jpatch[1]["metadata"]["generation"] == 2
        strategic = await call(session, api, "admin", "PATCH", f"{path}/good", {"spec": {"image": "v3"}},
                               "application/strategic-merge-patch+json")
        assert strategic[0] == 415, strategic

    run(tmp_path, scenario)


def test_status_and_scale_subresources(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = f"{V1}/namespaces/default/crontabs"
        with_status = crontab("c", replicas=2)
        with_status["status"] = {"replicas": 4}
        _, created = await call(session, api, "admin", "POST", path, with_status)
        assert "status" not in created
        # The main resource ignores status; /status ignores everything else and keeps the generation.
        created["status"] = {"replicas": 9}
        _, updated = await call(session, api, "admin", "PUT", f"{path}/c", created)
        assert "status" not in updated and updated["metadata"]["generation"] == 1
        updated["status"] = {"replicas": 2, "labelSelector": "app=c"}
        updated["spec"]["image"] = "ignored"
        status, written = await call(session, api, "admin", "PUT", f"{path}/c/status", updated)
        assert status == 200, written
        assert written["status"]["replicas"] == 2 and written["spec"]["image"] == "my-awesome-cron-image"
        assert written["metadata"]["generation"] == 1
        _, scale = await call(session, api, "admin", "GET", f"{path}/c/scale")
        assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 2}
        assert scale["status"] == {"replicas": 2, "selector": "app=c"}
        status, scaled = await call(session, api, "admin", "PATCH", f"{path}/c/scale", {"spec": {"replicas": 5}},
                                    "application/merge-patch+json")
        assert status == 200 and scaled["spec"]["replicas"] == 5
        _, got = await call(session, api, "admin", "GET", f"{path}/c")
        assert got["spec"]["replicas"] == 5 and got["metadata"]["generation"] == 2

    run(tmp_path, scenario)


def test_table_watch_and_two_versions(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = f"{V1}/namespaces/default/crontabs"
        await call(session, api, "admin", "POST", path, crontab("t", replicas=3))
        headers = {"Authorization": "Bearer token-admin", "Accept": TABLE}
        async with session.get(api.url + path, headers=headers) as response:
            table = await response.json()
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Spec", "Replicas", "Image", "Age"]
        assert [c["priority"] for c in table["columnDefinitions"]] == [0, 0, 0, 1, 0]
        assert table["rows"][0]["cells"][:4] == ["t", "* * * * */5", 3, "my-awesome-cron-image"]

        # A watch sees the object at the version watched: the v1beta1 one is the same object.
        watch = f"/apis/{GROUP}/v1beta1/namespaces/default/crontabs?watch=1&timeoutSeconds=5"
        async with session.get(api.url + watch, headers={"Authorization": "Bearer token-admin"}) as response:
            first = json.loads(await response.content.readline())
            assert first["type"] == "ADDED" and first["object"]["apiVersion"] == f"{GROUP}/v1beta1"
            await call(session, api, "admin", "PATCH", f"{path}/t", {"spec": {"image": "new"}},
                       "application/merge-patch+json")
            second = json.loads(await response.content.readline())
            assert second["type"] == "MODIFIED" and second["object"]["spec"]["image"] == "new"
            assert second["object"]["apiVersion"] == f"{GROUP}/v1beta1"
        # Created through v1beta1, stored at v1 (the storage version), readable at either.
        beta = f"/apis/{GROUP}/v1beta1/namespaces/default/crontabs"
        status, made = await call(session, api, "admin", "POST", beta, crontab("b", version="v1beta1"))
        assert status == 201 and made["apiVersion"] == f"{GROUP}/v1beta1"
        stored = await api.registry.store.get(f"/registry/{GROUP}/crontabs/default/b")
        assert stored is not None and json.loads(stored.value)["apiVersion"] == f"{GROUP}/v1"
        _, again = await call(session, api, "admin", "GET", f"{path}/b")
        assert again["apiVersion"] == f"{GROUP}/v1"

    run(tmp_path, scenario, crd=crontab_crd(versions=("v1", "v1beta1")))


def test_deleting_the_crd_deletes_instances_and_stops_serving(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = f"{V1}/namespaces/default/crontabs"
        for name in ("one", "two"):
            assert (await call(session, api, "admin", "POST", path, crontab(name)))[0] == 201
        status, deleting = await call(session, api, "admin", "DELETE", f"{CRDS}/{NAME}")
        assert status == 200 and "customresourcecleanup.apiextensions.k8s.io" in deleting["metadata"]["finalizers"]

        async def gone() -> bool:
            return (await call(session, api, "admin", "GET", f"{CRDS}/{NAME}"))[0] == 404

        await until(gone)
        assert (await call(session, api, "admin", "GET", path))[0] == 404
        assert (await api.registry.store.range(f"/registry/{GROUP}/")).items == []
        _, groups = await call(session, api, "admin", "GET", "/apis")
        assert GROUP not in [g["name"] for g in groups["groups"]]
        assert (await call(session, api, "admin", "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/v1.{GROUP}")
                )[0] == 404

    run(tmp_path, scenario)


def test_a_restart_serves_stored_crds_again(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        await call(session, api, "admin", "POST", f"{V1}/namespaces/default/crontabs", crontab("kept"))

    run(tmp_path, scenario)

    async def after() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            status, got = await call(session, api, "admin", "GET", f"{V1}/namespaces/default/crontabs/kept")
            assert status == 200 and got["spec"]["replicas"] == 1

    asyncio.run(after())


def test_local_apiservices(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = "/apis/apiregistration.k8s.io/v1/apiservices"
        _, listed = await call(session, api, "admin", "GET", path)
        names = {i["metadata"]["name"] for i in listed["items"]}
        assert {"v1.", "v1.apps", "v1.apiextensions.k8s.io", f"v1.{GROUP}"} <= names
        local = next(i for i in listed["items"] if i["metadata"]["name"] == "v1.apps")
        assert local["spec"]["service"] is None and local["status"]["conditions"][0]["reason"] == "Local"
        # kube-apiserver's priorities; a CRD's group (and ANP's, a CRD upstream) as crdregistration gives them
        priorities = {i["metadata"]["name"]: (i["spec"]["groupPriorityMinimum"], i["spec"]["versionPriority"])
                      for i in listed["items"]}
        assert priorities["v1."] == (18000, 1) and priorities["v1.storage.k8s.io"] == (16800, 15)
        assert priorities[f"v1.{GROUP}"] == priorities["v1alpha1.policy.networking.k8s.io"] == (1000, 100)
        headers = {"Authorization": "Bearer token-admin", "Accept": TABLE}
        async with session.get(f"{api.url}{path}/v1.apps", headers=headers) as response:
            table = await response.json()
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Service", "Available", "Age"]
        assert table["rows"][0]["cells"][:3] == ["v1.apps", "Local", "True"]
        bad = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "x"},
               "spec": {"group": "g.io", "version": "v1", "groupPriorityMinimum": 0, "versionPriority": 1}}
        status, body = await call(session, api, "admin", "POST", path, bad)
        assert status == 422
        assert {c["field"] for c in body["details"]["causes"]} == {"metadata.name", "spec.groupPriorityMinimum"}

    run(tmp_path, scenario)


def test_deletion_waits_for_instances_finalizers(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = f"{V1}/namespaces/default/crontabs"
        held = crontab("held")
        held["metadata"]["finalizers"] = ["example.com/hold"]
        assert (await call(session, api, "admin", "POST", path, held))[0] == 201
        assert (await call(session, api, "admin", "POST", path, crontab("free")))[0] == 201
        await call(session, api, "admin", "DELETE", f"{CRDS}/{NAME}")

        async def terminating() -> Any:
            _, crd = await call(session, api, "admin", "GET", f"{CRDS}/{NAME}")
            found = {c["type"]: c for c in (crd.get("status") or {}).get("conditions", [])}
            return found.get("Terminating")

        condition = await until(terminating)
        assert (condition["status"], condition["reason"]) == ("True", "InstanceDeletionInProgress")

        async def only_held_left() -> bool:
            _, listed = await call(session, api, "admin", "GET", path)
            items = listed.get("items", [])
            return [i["metadata"]["name"] for i in items] == ["held"] and \
                bool(items[0]["metadata"].get("deletionTimestamp"))

        await until(only_held_left)
        refused = await call(session, api, "admin", "POST", path, crontab("late"))
        assert refused[0] == 405, refused
        assert (await call(session, api, "admin", "GET", f"{CRDS}/{NAME}"))[0] == 200
        await call(session, api, "admin", "PATCH", f"{path}/held", {"metadata": {"finalizers": None}},
                   "application/merge-patch+json")

        async def gone() -> bool:
            return (await call(session, api, "admin", "GET", f"{CRDS}/{NAME}"))[0] == 404

        await until(gone)
        assert (await call(session, api, "admin", "GET", path))[0] == 404

    run(tmp_path, scenario)


def test_cluster_scope_and_deletecollection(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = f"{V1}/crontabs"
        for name in ("a", "b"):
            status, made = await call(session, api, "admin", "POST", path, crontab(name, namespace=None))
            assert status == 201 and "namespace" not in made["metadata"], made
        assert (await call(session, api, "admin", "POST", f"{V1}/namespaces/default/crontabs", crontab("n")))[0] \
            == 404
        _, listed = await call(session, api, "admin", "GET", path)
        assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
        assert (await call(session, api, "admin", "DELETE", path))[0] == 200
        _, listed = await call(session, api, "admin", "GET", path)
        assert listed["items"] == []
        headers = {"Authorization": "Bearer token-admin", "Accept": TABLE}
        async with session.get(api.url + CRDS, headers=headers) as response:
            table = await response.json()
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
        assert table["rows"][0]["cells"][0] == NAME

    run(tmp_path, scenario, crd=crontab_crd(scope="Cluster"))


def test_unserved_versions_and_defaults_on_read(tmp_path: Path) -> None:
    crd = crontab_crd(versions=("v1", "v1alpha1"))
    crd["spec"]["versions"][1]["served"] = False

    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        assert (await call(session, api, "admin", "GET", f"/apis/{GROUP}/v1alpha1/crontabs"))[0] == 404
        _, groups = await call(session, api, "admin", "GET", "/apis")
        ours = next(g for g in groups["groups"] if g["name"] == GROUP)
        assert [v["version"] for v in ours["versions"]] == ["v1"]
        path = f"{V1}/namespaces/default/crontabs"
        assert (await call(session, api, "admin", "POST", path, crontab("old")))[0] == 201
        # A default added to the schema later shows on objects stored before it, when read (upstream defaults
        # what it reads from storage), in a get, a list and a watch.
        status, current = await call(session, api, "admin", "GET", f"{CRDS}/{NAME}")
        spec = current["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["mode"] = {"type": "string", "default": "gentle"}
        status, body = await call(session, api, "admin", "PUT", f"{CRDS}/{NAME}", current)
        assert status == 200, body

        async def defaulted() -> bool:
            _, got = await call(session, api, "admin", "GET", f"{path}/old")
            return got["spec"].get("mode") == "gentle"

        await until(defaulted)
        _, listed = await call(session, api, "admin", "GET", path)
        assert listed["items"][0]["spec"]["mode"] == "gentle"
        stored = await api.registry.store.get(f"/registry/{GROUP}/crontabs/default/old")
        assert stored is not None and "mode" not in json.loads(stored.value)["spec"]

    run(tmp_path, scenario, crd=crd)


def test_a_custom_kind_named_like_a_built_in_is_just_a_custom_resource(tmp_path: Path) -> None:
    crd = crontab_crd()
    crd["metadata"]["name"] = f"services.{GROUP}"
    crd["spec"]["names"] = {"plural": "services", "singular": "service", "kind": "Service"}

    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        body = crontab("web")
        body["kind"] = "Service"
        status, made = await call(session, api, "admin", "POST", f"{V1}/namespaces/default/services", body)
        assert status == 201, made
        assert "status" not in made and "clusterIP" not in made["spec"]  # no Service strategy, no allocation
        status, gone = await call(session, api, "admin", "DELETE", f"{V1}/namespaces/default/services/web")
        assert status == 200 and gone["kind"] == "Status"
        _, core = await call(session, api, "admin", "GET", "/api/v1/namespaces/default/services")
        assert [s["metadata"]["name"] for s in core["items"]] == ["kubernetes"]

    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            status, body = await call(session, api, "admin", "POST", CRDS, crd)
            assert status == 201, body

            async def served() -> bool:
                return (await call(session, api, "admin", "GET", f"{V1}/services"))[0] == 200

            await until(served)
            await scenario(api, session)

    asyncio.run(main())


def test_server_side_apply_of_a_custom_resource_owns_and_conflicts(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = f"{V1}/namespaces/default/crontabs/applied"
        apply = "application/apply-patch+yaml"
        body = crontab("applied", replicas=1)
        status, created = await call(session, api, "admin", "PATCH", f"{path}?fieldManager=me", body, apply)
        assert status == 201, created
        assert [m["manager"] for m in created["metadata"]["managedFields"]] == ["me"]
        body["spec"]["replicas"] = 2
        status, conflict = await call(session, api, "admin", "PATCH", f"{path}?fieldManager=other", body, apply)
        assert status == 409 and conflict["details"]["causes"][0]["field"] == ".spec.replicas", conflict
        status, forced = await call(session, api, "admin", "PATCH", f"{path}?fieldManager=other&force=true", body,
                                    apply)
        assert status == 200 and forced["spec"]["replicas"] == body["spec"]["replicas"], forced

    run(tmp_path, scenario)
