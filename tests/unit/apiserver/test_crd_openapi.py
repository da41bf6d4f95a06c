"""A served custom resource in the OpenAPI documents (crd/openapi.py over openapi.py's built-in ones): its v3
group-version document with the schema under upstream's definition name and group-version-kind, the PATCH
operation listing fieldValidation (what kubectl checks before it lets the server validate), the v3 index, and
v2 (JSON and the protobuf kubectl 1.27 reads) with the definition merged in."""

from __future__ import annotations

from typing import Any

from control.apiserver.crd import openapi as crd_openapi
from control.apiserver.crd.catalog import Catalog, resources_of
from control.apiserver.openapi import openapi_document
from tests.crd_examples import GROUP, crontab_crd


def catalog() -> Catalog:
    crd = crontab_crd(versions=("v1", "v1beta1"))
    crd["status"] = {"acceptedNames": {**crd["spec"]["names"], "listKind": "CronTabList"}}
    served = Catalog()
    served.serve(crd["metadata"]["name"], resources_of(crd))
    return served


def document(path: str, served: Catalog | None = None) -> Any:
    return crd_openapi.document(openapi_document, served or catalog(), path)


def test_v3_group_version_document() -> None:
    doc = document(f"/openapi/v3/apis/{GROUP}/v1")
    schema = doc["components"]["schemas"]["com.example.stable.v1.CronTab"]
    assert schema["x-kubernetes-group-version-kind"] == [{"group": GROUP, "version": "v1", "kind": "CronTab"}]
    assert schema["properties"]["spec"]["properties"]["replicas"]["maximum"] == 10
    assert schema["properties"]["metadata"] == {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    item = doc["paths"][f"/apis/{GROUP}/v1/namespaces/{{namespace}}/crontabs/{{name}}"]
    assert "fieldValidation" in {p["name"] for p in item["patch"]["parameters"]}
    # What kubectl reads to choose its patch type: no strategic merge patch for a custom resource.
    assert sorted(item["patch"]["requestBody"]["content"]) == [
        "application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]
    assert item["patch"]["x-kubernetes-group-version-kind"] == {"group": GROUP, "version": "v1", "kind": "CronTab"}
    assert f"/apis/{GROUP}/v1/namespaces/{{namespace}}/crontabs/{{name}}/scale" in doc["paths"]


def test_v3_index_lists_the_custom_group_versions() -> None:
    index = document("/openapi/v3")
    assert {f"apis/{GROUP}/v1", f"apis/{GROUP}/v1beta1", "api/v1"} <= set(index["paths"])
    assert index["paths"][f"apis/{GROUP}/v1"]["serverRelativeURL"].startswith(f"/openapi/v3/apis/{GROUP}/v1?hash=")
    # Built-in documents are passed through unchanged.
    assert document("/openapi/v3/apis/apps/v1") == openapi_document("/openapi/v3/apis/apps/v1")


def test_v2_carries_the_definition_without_what_v2_cannot_say() -> None:
    v2 = document("/openapi/v2")
    definition = v2["definitions"]["com.example.stable.v1beta1.CronTab"]
    port = definition["properties"]["spec"]["properties"]["port"]
    assert "type" not in port  # x-kubernetes-int-or-string: no single v2 type
    assert definition["properties"]["metadata"] == {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1."
                                                            "ObjectMeta"}
    assert f"/apis/{GROUP}/v1/namespaces/{{namespace}}/crontabs" in v2["paths"]
    assert "io.k8s.api.core.v1.Pod" in v2["definitions"]
    protobuf = document("/openapi/v2.pb")
    assert isinstance(protobuf, bytes) and b"com.example.stable.v1.CronTab" in protobuf


def test_without_custom_resources_the_documents_are_the_built_in_ones() -> None:
    assert document("/openapi/v2", Catalog()) is openapi_document("/openapi/v2")
