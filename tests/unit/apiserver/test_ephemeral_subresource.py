"""Ephemeral containers (`kubectl debug`): upstream's validation of them, and the pods/NAME/ephemeralcontainers
subresource through the apiserver (what kubectl 1.27 and 1.33 send: a strategic-merge patch of
spec.ephemeralContainers)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from control.apiserver import defaults
from control.apiserver.admission import KubernetesAdmission
from control.apiserver.errors import APIError
from control.apiserver.kubeletproxy import container_of
from control.apiserver.openapi import v2_document, v3_document
from control.apiserver.registry import Registry
from control.apiserver.validation import validate, validate_update
from tests.unit.apiserver.test_api_server import ADMIN, NODE1, PROXY, run

SMP = {**ADMIN, "Content-Type": "application/strategic-merge-patch+json"}
DEBUGGER = {"name": "debugger-abcde", "image": "busybox", "command": ["sh"], "stdin": True, "tty": True,
            "resources": {}, "terminationMessagePolicy": "File"}


def web() -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"containers": [{"name": "app", "image": "nginx"}], "initContainers": [{"name": "init",
                                                                                          "image": "busybox"}],
                    "volumes": [{"name": "data", "emptyDir": {}}]}}
    defaults.default("Pod", pod)
    return pod


def with_debuggers(pod: dict[str, Any], *containers: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(pod)
    new["spec"]["ephemeralContainers"] = [*new["spec"].get("ephemeralContainers", []), *map(copy.deepcopy,
                                                                                              containers)]
    defaults.default("Pod", new)
    return new


def messages(errors: list[Any]) -> list[str]:
    return [f"{e.field}: {e.message}" for e in errors]


def test_a_new_pod_may_not_have_ephemeral_containers() -> None:
    assert messages(validate("Pod", with_debuggers(web(), DEBUGGER))) == [
        "spec.ephemeralContainers: Forbidden: cannot be set on create"]
    assert validate("Pod", web()) == []


def test_an_addition_is_valid() -> None:
    old = web()
    assert validate_update("Pod", with_debuggers(old, DEBUGGER), old, subresource="ephemeralcontainers") == []
    targeted = {**DEBUGGER, "targetContainerName": "app"}
    assert validate_update("Pod", with_debuggers(old, targeted), old, subresource="ephemeralcontainers") == []


@pytest.mark.parametrize(("field", "value"), [
    ("ports", [{"containerPort": 80}]),
    ("resources", {"limits": {"cpu": "1"}}),
    ("livenessProbe", {"tcpSocket": {"port": 80}}),
    ("readinessProbe", {"tcpSocket": {"port": 80}}),
    ("startupProbe", {"tcpSocket": {"port": 80}}),
    ("lifecycle", {"preStop": {"exec": {"command": ["true"]}}}),
    ("restartPolicy", "Always"),
    ("resizePolicy", [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]),
])
def test_what_makes_a_container_part_of_the_workload_is_forbidden(field: str, value: Any) -> None:
    old = web()
    errors = validate_update("Pod", with_debuggers(old, {**DEBUGGER, field: value}), old,
                             subresource="ephemeralcontainers")
    assert f"spec.ephemeralContainers[0].{field}: Forbidden: cannot be set for an Ephemeral Container" \
        in messages(errors)


def test_sub_path_mounts_are_forbidden_and_mounts_must_name_a_volume() -> None:
    old = web()
    mounted = {**DEBUGGER, "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    assert validate_update("Pod", with_debuggers(old, mounted), old, subresource="ephemeralcontainers") == []
    bad = {**DEBUGGER, "volumeMounts": [{"name": "data", "mountPath": "/a", "subPath": "x"},
                                        {"name": "nope", "mountPath": "/b"}]}
    assert messages(validate_update("Pod", with_debuggers(old, bad), old, subresource="ephemeralcontainers")) == [
        'spec.ephemeralContainers[0].volumeMounts[1].name: Not found: "nope"',
        "spec.ephemeralContainers[0].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container"]


def test_names_are_unique_across_all_containers_and_the_target_is_a_regular_one() -> None:
    old = with_debuggers(web(), DEBUGGER)
    for taken in ("app", "init", "debugger-abcde"):
        errors = validate_update("Pod", with_debuggers(old, {**DEBUGGER, "name": taken}), old,
                                 subresource="ephemeralcontainers")
        assert f'spec.ephemeralContainers[1].name: Duplicate value: "{taken}"' in messages(errors)
    for target in ("nope", "debugger-abcde"):  # an ephemeral container is no target
        errors = validate_update("Pod", with_debuggers(old, {**DEBUGGER, "name": "second", "targetContainerName":
                                                             target}), old, subresource="ephemeralcontainers")
        assert messages(errors) == [f'spec.ephemeralContainers[1].targetContainerName: Not found: "{target}"']
    errors = validate_update("Pod", with_debuggers(old, {**DEBUGGER, "name": "Bad_Name", "image": ""}), old,
                             subresource="ephemeralcontainers")
    assert "spec.ephemeralContainers[1].image: Required value" in messages(errors)
    assert any(m.startswith("spec.ephemeralContainers[1].name: Invalid value") for m in messages(errors))


def test_existing_ones_may_be_neither_changed_nor_removed() -> None:
    old = with_debuggers(web(), DEBUGGER, {**DEBUGGER, "name": "other"})
    changed = copy.deepcopy(old)
    changed["spec"]["ephemeralContainers"][0]["image"] = "alpine"
    assert messages(validate_update("Pod", changed, old, subresource="ephemeralcontainers")) == [
        'spec.ephemeralContainers[debugger-abcde]: Forbidden: existing ephemeral containers "debugger-abcde" may '
        "not be changed\n"]
    removed = copy.deepcopy(old)
    del removed["spec"]["ephemeralContainers"][1]
    assert messages(validate_update("Pod", removed, old, subresource="ephemeralcontainers")) == [
        'spec.ephemeralContainers: Forbidden: existing ephemeral containers "other" may not be removed\n']
    reordered = copy.deepcopy(old)  # a patch does not keep their order: only the names count
    reordered["spec"]["ephemeralContainers"].reverse()
    assert validate_update("Pod", reordered, old, subresource="ephemeralcontainers") == []


def test_static_pods_have_none() -> None:
    old = web()
    old["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    assert messages(validate_update("Pod", with_debuggers(old, DEBUGGER), old, subresource="ephemeralcontainers")) \
        == [": Forbidden: static pods do not support ephemeral containers"]


def test_the_main_resource_may_not_change_them() -> None:
    old = web()
    errors = messages(validate_update("Pod", with_debuggers(old, DEBUGGER), old))
    assert len(errors) == 1 and errors[0].startswith("spec: Forbidden: pod updates may not change fields")
    assert "changed: ephemeralContainers" in errors[0]


# -- through the apiserver ----------------------------------------------------------------------------------

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
       "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
PATH = "/api/v1/namespaces/default/pods/web/ephemeralcontainers"


async def _created(client: TestClient) -> dict[str, Any]:
    resp = await client.post("/api/v1/namespaces/default/pods", json=POD, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


def test_the_subresource_takes_kubectls_patch_and_keeps_the_rest(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        created = await _created(client)
        # kubectl's own patch (1.27 and 1.33 send the same), and a change to the image it must not carry
        body = {"spec": {"ephemeralContainers": [DEBUGGER], "containers": [{"name": "app", "image": "evil"}]},
                "metadata": {"labels": {"added": "no"}}}
        resp = await client.patch(PATH, data=json.dumps(body), headers=SMP)
        assert resp.status == 200, await resp.text()
        patched = await resp.json()
        assert patched["kind"] == "Pod"
        [added] = patched["spec"]["ephemeralContainers"]
        assert added["name"] == "debugger-abcde" and added["tty"] is True
        assert added["imagePullPolicy"] == "Always" and added["terminationMessagePath"] == "/dev/termination-log"
        assert patched["spec"]["containers"] == created["spec"]["containers"]
        assert "added" not in (patched["metadata"].get("labels") or {})
        assert patched["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
        got = await (await client.get(PATH, headers=ADMIN)).json()
        assert got["spec"]["ephemeralContainers"] == patched["spec"]["ephemeralContainers"]
        # PUT, as the subresource's update: a second one added, the first kept
        got["spec"]["ephemeralContainers"].append({"name": "second", "image": "busybox", "command": ["true"]})
        resp = await client.put(PATH, json=got, headers=ADMIN)
        assert resp.status == 200, await resp.text()
        assert [c["name"] for c in (await resp.json())["spec"]["ephemeralContainers"]] == ["debugger-abcde",
                                                                                           "second"]
        # a stale resourceVersion is a conflict, as on the main resource
        resp = await client.put(PATH, json=got, headers=ADMIN)
        assert resp.status == 409

    run(scenario, tmp_path, admission=KubernetesAdmission())


def test_bad_requests_get_a_status(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        await _created(client)
        body = {"spec": {"ephemeralContainers": [{**DEBUGGER, "targetContainerName": "nope",
                                                  "ports": [{"containerPort": 80}]}]}}
        resp = await client.patch(PATH, data=json.dumps(body), headers=SMP)
        assert resp.status == 422
        status = await resp.json()
        assert status["kind"] == "Status" and status["reason"] == "Invalid"
        assert {c["field"] for c in status["details"]["causes"]} == {
            "spec.ephemeralContainers[0].targetContainerName", "spec.ephemeralContainers[0].ports"}
        # through the pod itself they may not be added
        pod = await (await client.get("/api/v1/namespaces/default/pods/web", headers=ADMIN)).json()
        pod["spec"]["ephemeralContainers"] = [DEBUGGER]
        resp = await client.put("/api/v1/namespaces/default/pods/web", json=pod, headers=ADMIN)
        assert resp.status == 422 and "may not change fields" in (await resp.json())["message"]
        # a pod that is not there: a 404 naming it (kubectl reads details.name of it)
        resp = await client.patch(PATH.replace("/web/", "/gone/"), data=json.dumps(body), headers=SMP)
        assert resp.status == 404 and (await resp.json())["details"]["name"] == "gone"
        # its own authorization: pods/ephemeralcontainers, which kube-proxy's role has not
        resp = await client.patch(PATH, data=json.dumps({"spec": {"ephemeralContainers": [DEBUGGER]}}),
                                  headers={**PROXY, "Content-Type": SMP["Content-Type"]})
        assert resp.status == 403 and "pods/ephemeralcontainers" in (await resp.json())["message"]
        # nor has a node's kubelet, even for a pod bound to it: it writes only its pods' status
        bound = {**POD, "metadata": {"name": "bound"}, "spec": {**POD["spec"], "nodeName": "worker-1"}}
        assert (await client.post("/api/v1/namespaces/default/pods", json=bound, headers=ADMIN)).status == 201
        assert (await client.get("/api/v1/namespaces/default/pods/bound", headers=NODE1)).status == 200
        resp = await client.patch(PATH.replace("/web/", "/bound/"),
                                  data=json.dumps({"spec": {"ephemeralContainers": [DEBUGGER]}}),
                                  headers={**NODE1, "Content-Type": SMP["Content-Type"]})
        assert resp.status == 403, await resp.text()

    run(scenario, tmp_path, admission=KubernetesAdmission())


def test_discovery_lists_it_and_a_path_not_served_has_details(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        core = await (await client.get("/api/v1", headers=ADMIN)).json()
        entry = next(r for r in core["resources"] if r["name"] == "pods/ephemeralcontainers")
        assert entry["kind"] == "Pod" and entry["verbs"] == ["get", "patch", "update"]
        resp = await client.get("/api/v1/namespaces/default/pods/web/nosuch", headers=ADMIN)
        assert resp.status == 404
        # upstream's 404 for a path it does not serve has empty details; kubectl debug crashed without them
        assert (await resp.json())["details"] == {}

    run(scenario, tmp_path, admission=KubernetesAdmission())


def test_exec_attach_and_logs_may_name_an_ephemeral_container() -> None:
    pod = with_debuggers(web(), DEBUGGER)
    assert container_of(pod, "debugger-abcde") == "debugger-abcde"
    assert container_of(pod, "init") == "init"
    with pytest.raises(APIError, match="container nope is not valid for pod web"):
        container_of(pod, "nope")


def test_the_openapi_documents_carry_the_subresource_and_the_pods_fields() -> None:
    v2 = v2_document()
    pod = v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["ephemeralContainers"]
    assert pod["items"]["$ref"] == "#/definitions/io.k8s.api.core.v1.EphemeralContainer"
    assert pod["x-kubernetes-patch-merge-key"] == "name"
    statuses = v2["definitions"]["io.k8s.api.core.v1.PodStatus"]["properties"]["ephemeralContainerStatuses"]
    assert statuses["items"]["$ref"] == "#/definitions/io.k8s.api.core.v1.ContainerStatus"
    assert "targetContainerName" in v2["definitions"]["io.k8s.api.core.v1.EphemeralContainer"]["properties"]
    for paths in (v2["paths"], (v3_document("api/v1") or {})["paths"]):
        item = paths["/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers"]
        assert {item[m]["operationId"] for m in ("get", "put", "patch")} == {
            "readCoreV1NamespacedPodEphemeralcontainers", "replaceCoreV1NamespacedPodEphemeralcontainers",
            "patchCoreV1NamespacedPodEphemeralcontainers"}
