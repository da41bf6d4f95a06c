"""Defect 6: int32 fields took any integer (`replicas: 2147483648` made a Deployment flood the cluster). Every
int32/int64 field of the schema is range-checked on decoding, generically, with Go's decoding words (a 400, as
kube-apiserver answers it for built-in types), and OpenAPI shows each field's format."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from control.apiserver.decoding import type_error
from control.apiserver.openapi import openapi_document
from control.apiserver.schema import INTEGER_RANGES, TYPES, field_type
from tests.security.apiserver_process import RunningAPIServer

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def _deployment(name: str, replicas: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def test_replicas_beyond_int32_are_refused_and_nothing_is_stored(apiserver: RunningAPIServer) -> None:
    async def scenario() -> None:
        status, _, body = await apiserver.call("POST", DEPLOYMENTS, body=_deployment("flood", 2**31))
        assert status == 400, body
        assert body["reason"] == "BadRequest"
        assert body["message"] == ('Deployment in version "apps/v1" cannot be handled as a Deployment: json: cannot '
                                   'unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas '
                                   'of type int32')
        status, _, _ = await apiserver.call("GET", f"{DEPLOYMENTS}/flood")
        assert status == 404
        status, _, body = await apiserver.call("POST", DEPLOYMENTS, body=_deployment("edge", 2**31 - 1))
        assert status == 201, body
        # A patch and the scale subresource meet the same check.
        status, _, body = await apiserver.call("PATCH", f"{DEPLOYMENTS}/edge", body={"spec": {"replicas": 2**32}},
                                               content_type="application/merge-patch+json")
        assert status == 400 and "spec.replicas of type int32" in body["message"], body
        status, _, body = await apiserver.call("PATCH", f"{DEPLOYMENTS}/edge/scale",
                                               body={"spec": {"replicas": -(2**31) - 1}},
                                               content_type="application/merge-patch+json")
        assert status == 400 and "of type int32" in body["message"], body
        status, _, body = await apiserver.call("GET", f"{DEPLOYMENTS}/edge")
        assert body["spec"]["replicas"] == 2**31 - 1

    asyncio.run(scenario())


def test_negative_replicas_keep_their_validation(apiserver: RunningAPIServer) -> None:
    status, _, body = asyncio.run(apiserver.call("POST", DEPLOYMENTS, body=_deployment("negative", -1)))
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.replicas", body


def _integer_fields() -> list[tuple[str, str, str]]:
    found = []
    for type_name, table in TYPES.items():
        for field, spec in table.items():
            item = field_type(spec, type_name.rsplit(".", 1)[0]).item
            if item in INTEGER_RANGES:
                found.append((type_name, field, item))
    return found


def test_every_integer_field_of_the_schema_has_a_go_width() -> None:
    assert not any('"integer"' in spec for table in TYPES.values() for spec in table.values())
    widths = {(t, f): w for t, f, w in _integer_fields()}
    # Spot checks against upstream's Go types.
    assert widths[("apps.v1.DeploymentSpec", "replicas")] == "int32"
    assert widths[("core.v1.ServicePort", "port")] == "int32"
    assert widths[("meta.v1.ObjectMeta", "generation")] == "int64"
    assert widths[("core.v1.PodSpec", "terminationGracePeriodSeconds")] == "int64"
    assert widths[("core.v1.PodSecurityContext", "fsGroup")] == "int64"


@pytest.mark.parametrize(("type_name", "field", "width"), [
    ("core.v1.ContainerPort", "containerPort", "int32"), ("core.v1.Probe", "periodSeconds", "int32"),
    ("core.v1.PodSpec", "activeDeadlineSeconds", "int64"), ("coordination.v1.LeaseSpec", "leaseDurationSeconds",
                                                             "int32")])
def test_ranges_come_from_the_schema_for_any_field(type_name: str, field: str, width: str) -> None:
    """The check is generic: a Pod (or Lease) with an out-of-range value in the named field fails decoding."""
    low, high = INTEGER_RANGES[width]
    objects = {
        "core.v1.ContainerPort": lambda v: ("Pod", {"spec": {"containers": [{"name": "c", "ports": [
            {"containerPort": v}]}]}}, "ContainerPort.spec.containers.ports.containerPort"),
        "core.v1.Probe": lambda v: ("Pod", {"spec": {"containers": [{"name": "c", "readinessProbe": {
            "periodSeconds": v}}]}}, "Probe.spec.containers.readinessProbe.periodSeconds"),
        "core.v1.PodSpec": lambda v: ("Pod", {"spec": {"activeDeadlineSeconds": v}},
                                      "PodSpec.spec.activeDeadlineSeconds"),
        "coordination.v1.LeaseSpec": lambda v: ("Lease", {"spec": {"leaseDurationSeconds": v}},
                                                "LeaseSpec.spec.leaseDurationSeconds"),
    }
    for value, ok in ((high, True), (low, True), (high + 1, False), (low - 1, False)):
        kind, obj, path = objects[type_name](value)
        problem = type_error(kind, obj)
        if ok:
            assert problem is None, problem
        else:
            assert problem is not None and f"number {value} into Go struct field {path} of type {width}" in problem


def test_openapi_renders_each_width() -> None:
    document = openapi_document("/openapi/v2")
    definitions = document["definitions"]
    spec = definitions["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert spec["replicas"] == {"type": "integer", "format": "int32"} or spec["replicas"]["format"] == "int32"
    meta = definitions["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["generation"]["format"] == "int64"
