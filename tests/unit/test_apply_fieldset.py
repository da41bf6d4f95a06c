"""FieldsV1 encoding of field sets (server-side apply's ownership records)."""

from __future__ import annotations

import pytest

from control.apiserver.apply.fieldset import encode, fields_of


def keys(path: tuple[str, ...]) -> tuple[str, ...] | str | None:
    return {("spec", "containers"): ("name",), ("spec", "containers", "ports"): ("containerPort", "protocol"),
            ("metadata", "finalizers"): "set"}.get(path)


def test_deployment_like_object_encodes_as_upstream() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"labels": {"app": "web"}, "finalizers": ["a"]},
           "spec": {"containers": [{"name": "c", "image": "nginx",
                                    "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}
    assert encode(fields_of(obj, keys)) == {
        "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {'v:"a"': {}}},
        "f:spec": {"f:containers": {'k:{"name":"c"}': {
            ".": {}, "f:image": {}, "f:name": {},
            "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {},
                                                                     "f:protocol": {}}}}}}}


def test_unknown_lists_are_atomic_leaves() -> None:
    assert encode(fields_of({"spec": {"args": ["x", "y"]}}, lambda p: None)) == {"f:spec": {"f:args": {}}}


def test_associative_item_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match=r"spec\.containers"):
        fields_of({"spec": {"containers": ["bad"]}}, keys)
