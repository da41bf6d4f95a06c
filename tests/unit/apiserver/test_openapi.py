"""The OpenAPI documents: upstream's names and extensions, operations for every resource, the v3 index,
the protobuf form of v2, and how the server serves them."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.apiserver.admission import BasicAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator, User
from control.apiserver.openapi import openapi_document, v2_document, v2_protobuf, v3_document, v3_index
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.resources import RESOURCES
from control.apiserver.server import APIServer
from control.store import SQLiteStore

V2_PREFIX = "#/definitions/"
V3_PREFIX = "#/components/schemas/"
GROUP_VERSIONS = ["api/v1", "apis/apiextensions.k8s.io/v1", "apis/apiregistration.k8s.io/v1", "apis/apps/v1",
                  "apis/authentication.k8s.io/v1", "apis/authentication.k8s.io/v1beta1",
                  "apis/authorization.k8s.io/v1", "apis/batch/v1", "apis/coordination.k8s.io/v1",
                  "apis/discovery.k8s.io/v1", "apis/networking.k8s.io/v1", "apis/policy.networking.k8s.io/v1alpha1",
                  "apis/rbac.authorization.k8s.io/v1", "apis/storage.k8s.io/v1"]


def refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def v2_def(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = v2_document()["definitions"][name]
    return definition


# -- definitions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("definition", "gvk"), [
    ("io.k8s.api.core.v1.Pod", {"group": "", "version": "v1", "kind": "Pod"}),
    ("io.k8s.api.core.v1.Service", {"group": "", "version": "v1", "kind": "Service"}),
    ("io.k8s.api.core.v1.PodList", {"group": "", "version": "v1", "kind": "PodList"}),
    ("io.k8s.api.apps.v1.Deployment", {"group": "apps", "version": "v1", "kind": "Deployment"}),
    ("io.k8s.api.discovery.v1.EndpointSlice", {"group": "discovery.k8s.io", "version": "v1",
                                               "kind": "EndpointSlice"}),
    ("io.k8s.api.coordination.v1.Lease", {"group": "coordination.k8s.io", "version": "v1", "kind": "Lease"}),
    ("io.k8s.api.autoscaling.v1.Scale", {"group": "autoscaling", "version": "v1", "kind": "Scale"}),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", {"group": "", "version": "v1", "kind": "Status"}),
])
def test_top_level_kinds_carry_their_group_version_kind(definition: str, gvk: dict[str, str]) -> None:
    assert v2_def(definition)["x-kubernetes-group-version-kind"] == [gvk]


def test_nested_types_are_named_like_upstream_and_carry_no_gvk() -> None:
    definitions = v2_document()["definitions"]
    for name in ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "io.k8s.api.core.v1.PodSpec",
                 "io.k8s.api.core.v1.Container", "io.k8s.api.apps.v1.DeploymentSpec",
                 "io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.Time"):
        assert name in definitions, name
    assert "x-kubernetes-group-version-kind" not in definitions["io.k8s.api.core.v1.PodSpec"]
    assert definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    pod = definitions["io.k8s.api.core.v1.Pod"]["properties"]
    assert pod["metadata"] == {"$ref": V2_PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    assert pod["spec"] == {"$ref": V2_PREFIX + "io.k8s.api.core.v1.PodSpec"}


@pytest.mark.parametrize(("definition", "field", "merge_key", "strategy", "map_keys"), [
    ("io.k8s.api.core.v1.PodSpec", "containers", "name", "merge", ["name"]),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "name", "merge", ["name"]),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "name", "merge,retainKeys", ["name"]),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "name", "merge", ["name"]),
    ("io.k8s.api.core.v1.Container", "ports", "containerPort", "merge", ["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.Container", "env", "name", "merge", ["name"]),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath", "merge", ["mountPath"]),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "port", "merge", ["port", "protocol"]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "uid", "merge", ["uid"]),
])
def test_list_fields_carry_the_strategic_merge_patch_extensions(definition: str, field: str, merge_key: str,
                                                                strategy: str, map_keys: list[str]) -> None:
    for schema in (v2_def(definition)["properties"][field],
                   _v3_schema(definition)["properties"][field]):
        assert schema["type"] == "array"
        assert schema["x-kubernetes-patch-merge-key"] == merge_key
        assert schema["x-kubernetes-patch-strategy"] == strategy
        assert schema["x-kubernetes-list-type"] == "map"
        assert schema["x-kubernetes-list-map-keys"] == map_keys


def test_required_fields_follow_upstream() -> None:
    assert v2_def("io.k8s.api.core.v1.Container")["required"] == ["name"]
    assert v2_def("io.k8s.api.apps.v1.DeploymentSpec")["required"] == ["selector", "template"]
    assert v2_def("io.k8s.api.core.v1.PodList")["required"] == ["items"]
    assert "required" not in v2_def("io.k8s.api.core.v1.Pod")
    for name, definition in v2_document()["definitions"].items():
        assert set(definition.get("required", ())) <= set(definition.get("properties", {})), name


def test_other_patch_annotations() -> None:
    finalizers = v2_def("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")["properties"]["finalizers"]
    assert finalizers["x-kubernetes-patch-strategy"] == "merge"
    assert finalizers["x-kubernetes-list-type"] == "set"
    assert "x-kubernetes-patch-merge-key" not in finalizers
    args = v2_def("io.k8s.api.core.v1.Container")["properties"]["args"]
    assert args == {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"}
    # A $ref with a sibling extension: v2 keeps it beside the $ref, v3 wraps the reference in allOf.
    assert v2_def("io.k8s.api.apps.v1.DeploymentSpec")["properties"]["strategy"] == {
        "$ref": V2_PREFIX + "io.k8s.api.apps.v1.DeploymentStrategy", "x-kubernetes-patch-strategy": "retainKeys"}
    assert _v3_schema("io.k8s.api.apps.v1.DeploymentSpec")["properties"]["strategy"] == {
        "allOf": [{"$ref": V3_PREFIX + "io.k8s.api.apps.v1.DeploymentStrategy"}],
        "x-kubernetes-patch-strategy": "retainKeys"}
    labels = v2_def("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")["properties"]["labels"]
    assert labels == {"type": "object", "additionalProperties": {"type": "string"}}


def _v3_schema(name: str) -> dict[str, Any]:
    for key in GROUP_VERSIONS:
        document = v3_document(key)
        assert document is not None
        schemas = document["components"]["schemas"]
        if name in schemas:
            schema: dict[str, Any] = schemas[name]
            return schema
    raise AssertionError(f"{name} is in no v3 document")


def test_every_reference_resolves() -> None:
    v2 = v2_document()
    for ref in refs(v2):
        assert ref.startswith(V2_PREFIX) and ref[len(V2_PREFIX):] in v2["definitions"], ref
    for key in GROUP_VERSIONS:
        document = v3_document(key)
        assert document is not None
        for ref in refs(document):
            assert ref.startswith(V3_PREFIX) and ref[len(V3_PREFIX):] in document["components"]["schemas"], (key, ref)


# -- paths ------------------------------------------------------------------------------------------------


def _operations(paths: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in paths.items() for method, op in item.items()
            if method in ("get", "put", "post", "patch", "delete")]


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.plural)
def test_every_resource_has_its_operations(resource: Any) -> None:
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    root = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    scope = f"{root}/namespaces/{{namespace}}" if resource.namespaced else root
    key = root.lstrip("/")
    document = v3_document(key)
    assert document is not None
    for paths in (v2_document()["paths"], document["paths"]):
        ops = {(path, method): op for path, method, op in _operations(paths)
               if op["x-kubernetes-group-version-kind"] == gvk}
        collection, item = f"{scope}/{resource.plural}", f"{scope}/{resource.plural}/{{name}}"
        expected = {(item, "get"): "get", (item, "put"): "put", (item, "patch"): "patch",
                    (item, "delete"): "delete", (collection, "get"): "list", (collection, "post"): "post",
                    (f"{scope.replace(root, root + '/watch', 1)}/{resource.plural}", "get"): "watchlist"}
        if "deletecollection" in resource.verbs:
            expected[(collection, "delete")] = "deletecollection"
        if resource.verbs == ("create",):  # the reviews: POST to the collection, nothing else
            expected = {(collection, "post"): "post"}
            assert set(ops) == set(expected), sorted(ops)
        for where, action in expected.items():
            assert where in ops, where
            assert ops[where]["x-kubernetes-action"] == action
        for (_, method), op in ops.items():
            names = {p.get("name") for p in op["parameters"]}
            assert ("fieldValidation" in names) == (method in ("post", "put", "patch")), (method, op["operationId"])
        if resource.namespaced and "list" in resource.verbs:
            assert (f"{root}/{resource.plural}", "get") in ops  # list across namespaces


def test_operation_ids_follow_upstream() -> None:
    ids = {op["operationId"] for _, _, op in _operations(v2_document()["paths"])}
    assert {"listCoreV1NamespacedPod", "createCoreV1NamespacedPod", "readCoreV1NamespacedPod",
            "replaceCoreV1NamespacedPod", "patchCoreV1NamespacedPod", "deleteCoreV1NamespacedPod",
            "deleteCoreV1CollectionNamespacedPod", "listCoreV1PodForAllNamespaces", "watchCoreV1NamespacedPodList",
            "readCoreV1Node", "patchAppsV1NamespacedDeploymentScale", "readCoreV1NamespacedPodStatus",
            "createDiscoveryV1NamespacedEndpointSlice", "listCoordinationV1NamespacedLease"} <= ids


def test_v3_patch_operation_has_query_parameter_shape_kubectl_checks() -> None:
    document = v3_document("apis/apps/v1")
    assert document is not None
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert {"name": "fieldValidation", "in": "query"}.items() <= next(
        p for p in patch["parameters"] if p["name"] == "fieldValidation").items()
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment", "version": "v1"}


# -- the v3 index and dispatch ------------------------------------------------------------------------------


def test_v3_index_names_each_group_version_with_its_hash() -> None:
    index = openapi_document("/openapi/v3")
    assert isinstance(index, dict)
    assert sorted(index["paths"]) == GROUP_VERSIONS
    for key, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        path, _, query = url.partition("?hash=")
        assert path == f"/openapi/v3/{key}"
        digest = hashlib.sha512(json.dumps(v3_document(key), sort_keys=True, separators=(",", ":")).encode())
        assert query == digest.hexdigest().upper()
        assert openapi_document(url) == v3_document(key)
    assert v3_index() is index


def test_unknown_paths_have_no_document() -> None:
    assert openapi_document("/openapi/v3/apis/policy/v1") is None
    assert openapi_document("/openapi/v4") is None
    assert openapi_document("/api/v1") is None
    assert openapi_document("/openapi/v2/") == v2_document()


def test_v3_documents_contain_only_what_they_reference() -> None:
    document = v3_document("apis/coordination.k8s.io/v1")
    assert document is not None
    schemas = document["components"]["schemas"]
    assert "io.k8s.api.coordination.v1.Lease" in schemas
    assert "io.k8s.api.core.v1.PodSpec" not in schemas
    assert document["openapi"].startswith("3.")


# -- protobuf -----------------------------------------------------------------------------------------------


def decode(data: bytes) -> list[tuple[int, Any]]:
    """Protobuf wire format -> [(field number, int or bytes)]."""
    out: list[tuple[int, Any]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            length = varint()
            out.append((number, data[i:i + length]))
            i += length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def fields(data: bytes, number: int) -> list[Any]:
    return [value for n, value in decode(data) if n == number]


def named(data: bytes, number: int) -> dict[str, bytes]:
    """A gnostic Named* list (name = 1, value = 2) as a dict."""
    return {fields(entry, 1)[0].decode(): fields(entry, 2)[0] for entry in fields(data, number)}


def extensions(data: bytes, number: int) -> dict[str, Any]:
    return {name: json.loads(fields(any_, 2)[0]) for name, any_ in named(data, number).items()}


def test_v2_protobuf_is_gnostics_document() -> None:
    document = v2_protobuf()
    assert fields(document, 1) == [b"2.0"]
    definitions = named(fields(document, 9)[0], 1)
    assert set(definitions) == set(v2_document()["definitions"])
    pod_spec = definitions["io.k8s.api.core.v1.PodSpec"]
    assert fields(fields(pod_spec, 22)[0], 1) == [b"object"]  # Schema.type -> TypeItem.value
    containers = named(fields(pod_spec, 25)[0], 1)["containers"]  # Schema.properties
    assert extensions(containers, 31)["x-kubernetes-patch-merge-key"] == "name"
    items = fields(fields(containers, 23)[0], 1)[0]  # Schema.items -> ItemsItem.schema
    assert fields(items, 1) == [b"#/definitions/io.k8s.api.core.v1.Container"]
    pod = definitions["io.k8s.api.core.v1.Pod"]
    assert extensions(pod, 31)["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]

    paths = named(fields(document, 8)[0], 2)
    patch = fields(paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"], 8)[0]  # PathItem.patch
    assert extensions(patch, 13)["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    query_names = []
    for item in fields(patch, 8):  # Operation.parameters -> ParametersItem
        parameter = fields(item, 1)[0]
        for non_body in fields(parameter, 2):
            for query in fields(non_body, 3):
                query_names.append(fields(query, 4)[0].decode())
    assert "fieldValidation" in query_names
    assert openapi_document("/openapi/v2.pb") is document


# -- served ------------------------------------------------------------------------------------------------


def test_server_serves_json_protobuf_and_the_index(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SQLiteStore.open(str(tmp_path / "store.db"), compact_interval=None)
        registry = Registry(store, admission=BasicAdmission(), patcher=apply_patch,
                            allocator=ServiceAllocator("10.96.0.0/16", (30000, 32767)))
        await registry.start()
        server = APIServer(registry, TokenAuthenticator({"admin": User("kubernetes-admin", ("system:masters",))}),
                           openapi=openapi_document)
        server.ready = True
        client = TestClient(TestServer(server.app()))
        await client.start_server()
        auth = {"Authorization": "Bearer admin"}
        try:
            pb = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            response = await client.get("/openapi/v2", headers={**auth, "Accept": pb})
            assert response.status == 200
            assert "protobuf" in response.headers["Content-Type"]
            assert await response.read() == v2_protobuf()
            response = await client.get("/openapi/v2", headers={**auth, "Accept": "application/json"})
            assert response.status == 200 and (await response.json())["swagger"] == "2.0"
            response = await client.get("/openapi/v3", headers=auth)
            index = await response.json()
            url = index["paths"]["api/v1"]["serverRelativeURL"]
            response = await client.get(url, headers=auth)
            assert (await response.json())["components"]["schemas"]["io.k8s.api.core.v1.Pod"]
            response = await client.get("/openapi/v3/api/v1", headers={**auth, "Accept": pb})
            assert response.status == 406
            response = await client.get("/openapi/v3/apis/nope/v1", headers=auth)
            assert response.status == 404
            response = await client.get("/openapi/v2")
            assert response.status == 401
        finally:
            await client.close()
            await registry.stop()
            await store.close()

    asyncio.run(main())
