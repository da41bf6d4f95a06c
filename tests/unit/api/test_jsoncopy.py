"""json_copy: a deep copy of JSON trees, nothing of the original shared but immutable scalars."""

from __future__ import annotations

from types import MappingProxyType

from control.api.jsoncopy import json_copy


def test_a_copy_equals_the_original_and_shares_no_container() -> None:
    pod = {"metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
           "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}], "args": []}]},
           "status": {"phase": "Running", "ready": True, "count": 1.5, "none": None}}
    copied = json_copy(pod)
    assert copied == pod
    copied["metadata"]["labels"]["app"] = "other"
    copied["spec"]["containers"][0]["ports"].append({"containerPort": 81})
    copied["metadata"]["finalizers"].clear()
    assert pod["metadata"]["labels"] == {"app": "web"}
    assert pod["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]
    assert pod["metadata"]["finalizers"] == ["a"]


def test_lists_scalars_and_read_only_views_at_the_top() -> None:
    assert json_copy([1, [2, {"a": 3}]]) == [1, [2, {"a": 3}]]
    assert json_copy("text") == "text" and json_copy(None) is None
    view = MappingProxyType({"a": {"b": 1}})
    copied = json_copy(view)
    assert copied == {"a": {"b": 1}} and isinstance(copied, dict)
    copied["a"]["b"] = 2
    assert view["a"]["b"] == 1


def test_containers_json_has_no_word_for_are_copied_too() -> None:
    shared = {"inner": [1]}
    value = {"a": (shared,), "b": {1, 2}, "c": MappingProxyType({"d": [3]})}
    copied = json_copy(value)
    assert copied == {"a": (shared,), "b": {1, 2}, "c": {"d": [3]}}
    copied["a"][0]["inner"].append(2)
    copied["b"].add(3)
    copied["c"]["d"].append(4)
    assert value == {"a": ({"inner": [1]},), "b": {1, 2}, "c": MappingProxyType({"d": [3]})}
