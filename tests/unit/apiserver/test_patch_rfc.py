"""JSON merge patch and JSON patch: the RFCs' own appendix examples, through apply_patch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from control.apiserver.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    MalformedPatch,
    PatchNotApplicable,
    apply_patch,
)


def merge(original: dict[str, Any], patch: Any) -> dict[str, Any]:
    return apply_patch(original, json.dumps(patch).encode(), MERGE_PATCH, "ConfigMap")


def jsonpatch(original: dict[str, Any], ops: Any) -> dict[str, Any]:
    return apply_patch(original, json.dumps(ops).encode(), JSON_PATCH, "ConfigMap")


# RFC 7386 appendix A, the rows whose target and patch are objects (ours always are).
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC7386)
def test_rfc7386_appendix_a(original: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]) -> None:
    assert merge(original, patch) == result


def test_rfc7386_section3_example() -> None:
    original = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
                "tags": ["example", "sample"], "content": "This will be unchanged"}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None},
             "tags": ["example"]}
    assert merge(original, patch) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
        "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"}


@pytest.mark.parametrize("patch", [["c", "d"], ["c"], None, "bar", 5])
def test_rfc7386_non_object_patches_are_bad_requests(patch: Any) -> None:
    # RFC 7386 would make the document the patch itself; an object's patch must stay an object.
    with pytest.raises(MalformedPatch) as err:
        merge({"a": "foo"}, patch)
    assert err.value.status_code == 400
    assert "must be a JSON object" in err.value.message


def test_merge_patch_replaces_lists_and_keeps_nulls_inside_them() -> None:
    original = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    assert merge(original, {"spec": {"containers": [{"name": "c", "x": None}]}}) == {
        "spec": {"containers": [{"name": "c", "x": None}]}}


# RFC 6902 appendix A.
RFC6902_OK = [
    pytest.param({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
                 {"baz": "qux", "foo": "bar"}, id="A.1 add object member"),
    pytest.param({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
                 {"foo": ["bar", "qux", "baz"]}, id="A.2 add array element"),
    pytest.param({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}],
                 {"foo": "bar"}, id="A.3 remove object member"),
    pytest.param({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
                 {"foo": ["bar", "baz"]}, id="A.4 remove array element"),
    pytest.param({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
                 {"baz": "boo", "foo": "bar"}, id="A.5 replace a value"),
    pytest.param({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                 [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
                 {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}, id="A.6 move a value"),
    pytest.param({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
                 {"foo": ["all", "cows", "eat", "grass"]}, id="A.7 move an array element"),
    pytest.param({"baz": "qux", "foo": ["a", 2, "c"]},
                 [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
                 {"baz": "qux", "foo": ["a", 2, "c"]}, id="A.8 test a value: success"),
    pytest.param({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
                 {"foo": "bar", "child": {"grandchild": {}}}, id="A.10 add a nested member object"),
    pytest.param({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
                 {"foo": "bar", "baz": "qux"}, id="A.11 ignore unrecognized elements"),
    pytest.param({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}],
                 {"/": 9, "~1": 10}, id="A.14 ~ escape ordering"),
    pytest.param({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
                 {"foo": ["bar", ["abc", "def"]]}, id="A.16 add an array value"),
    pytest.param({"foo": "bar"}, [{"op": "copy", "from": "/foo", "path": "/baz"}],
                 {"foo": "bar", "baz": "bar"}, id="copy"),
    pytest.param({"foo": 1}, [{"op": "test", "path": "/foo", "value": 1.0}],
                 {"foo": 1}, id="numbers compare by value"),
    pytest.param({"a": {"b": 1}}, [{"op": "replace", "path": "", "value": {"c": 2}}],
                 {"c": 2}, id="replace the whole document"),
    pytest.param({"a": [1, 2, 3]}, [{"op": "remove", "path": "/a/-1"}],
                 {"a": [1, 2]}, id="negative index as upstream's json-patch v4 allows"),
]


@pytest.mark.parametrize(("original", "ops", "result"), RFC6902_OK)
def test_rfc6902_appendix_a(original: dict[str, Any], ops: list[Any], result: dict[str, Any]) -> None:
    assert jsonpatch(original, ops) == result


RFC6902_FAIL = [
    pytest.param({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}],
                 "testing value /baz failed", id="A.9 test a value: error"),
    pytest.param({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}],
                 'add operation does not apply: doc is missing path: "/baz/bat"', id="A.12 nonexistent target"),
    pytest.param({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}],
                 "testing value /~01 failed", id="A.15 strings are not numbers"),
    pytest.param({"a": True}, [{"op": "test", "path": "/a", "value": 1}],
                 "testing value /a failed", id="booleans are not numbers"),
    pytest.param({"foo": "bar"}, [{"op": "remove", "path": "/nope"}],
                 "remove operation does not apply", id="remove a missing member"),
    pytest.param({"foo": "bar"}, [{"op": "replace", "path": "/nope", "value": 1}],
                 "replace operation does not apply: doc is missing key", id="replace a missing member"),
    pytest.param({"foo": [1]}, [{"op": "add", "path": "/foo/5", "value": 1}],
                 "Unable to access invalid index: 5", id="add past the end"),
    pytest.param({"foo": [1]}, [{"op": "replace", "path": "/foo/-", "value": 1}],
                 "replace operation does not apply", id="'-' names no element to replace"),
    pytest.param({"foo": {"bar": 1}}, [{"op": "move", "from": "/foo", "path": "/foo/bar/baz"}],
                 "is a prefix of", id="move into own child"),
    pytest.param({"foo": 1}, [{"op": "copy", "from": "/bar", "path": "/baz"}],
                 "copy operation does not apply: doc is missing from path", id="copy from nowhere"),
    pytest.param({"foo": 1}, [{"op": "replace", "path": "", "value": [1]}],
                 "not an object", id="the result must stay an object"),
]


@pytest.mark.parametrize(("original", "ops", "message"), RFC6902_FAIL)
def test_rfc6902_failures_are_422(original: dict[str, Any], ops: list[Any], message: str) -> None:
    with pytest.raises(PatchNotApplicable) as err:
        jsonpatch(original, ops)
    assert err.value.status_code == 422
    assert err.value.reason == "Invalid"
    assert message in err.value.message


def test_rfc6902_a13_duplicate_op_member_is_an_error() -> None:
    # A.13: {"op":"add",...,"op":"remove"} is invalid; JSON parsers keep the last "op", and removing the
    # absent /baz fails.
    body = b'[{"op": "add", "path": "/baz", "value": "qux", "op": "remove"}]'
    with pytest.raises(PatchNotApplicable):
        apply_patch({"foo": "bar"}, body, JSON_PATCH, "ConfigMap")


def test_json_patch_is_all_or_nothing_on_the_input() -> None:
    original = {"a": {"b": [1, 2]}}
    with pytest.raises(PatchNotApplicable):
        jsonpatch(original, [{"op": "add", "path": "/a/b/-", "value": 3}, {"op": "test", "path": "/x", "value": 1}])
    assert original == {"a": {"b": [1, 2]}}


def test_json_patch_escapes_label_keys() -> None:
    pod = {"metadata": {"labels": {"app.kubernetes.io/name": "web", "tier": "a~b"}}}
    ops = [{"op": "replace", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "api"},
           {"op": "remove", "path": "/metadata/labels/tier"},
           {"op": "add", "path": "/metadata/labels/x~0y", "value": "z"}]
    assert jsonpatch(pod, ops) == {"metadata": {"labels": {"app.kubernetes.io/name": "api", "x~y": "z"}}}


def test_json_patch_copy_is_deep() -> None:
    result = jsonpatch({"a": {"b": [1]}}, [{"op": "copy", "from": "/a", "path": "/c"},
                                          {"op": "add", "path": "/c/b/-", "value": 2}])
    assert result == {"a": {"b": [1]}, "c": {"b": [1, 2]}}
