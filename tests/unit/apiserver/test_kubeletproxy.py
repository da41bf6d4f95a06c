"""What the apiserver checks before it asks a kubelet: exec/attach options as the kubelet API's query,
the container of the pod, and PodLogOptions (422 naming the field, 400 for a sinceTime that is no time)."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from control.apiserver.errors import APIError
from control.apiserver.kubeletproxy import check_log_options, container_of, exec_params, portforward_params

POD = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}


def test_exec_options_become_the_kubelets_query_in_order() -> None:
    query = MultiDict([("command", "sh"), ("command", "-c"), ("command", "exit 3"), ("stdin", "true"),
                       ("stdout", "True"), ("tty", "1"), ("container", "a")])
    assert exec_params(query, attach=False) == [("command", "sh"), ("command", "-c"), ("command", "exit 3"),
                                                ("input", "1"), ("output", "1"), ("tty", "1")]
    assert exec_params(MultiDict([("stdout", "true")]), attach=True) == [("output", "1")]


@pytest.mark.parametrize(("query", "attach", "message"), [
    ([("stdout", "true")], False, "you must specify at least 1 command"),
    ([("command", "ls")], False, "you must specify at least 1 of stdin, stdout, stderr"),
    ([("stdin", "false")], True, "you must specify at least 1 of stdin, stdout, stderr"),
])
def test_exec_options_that_ask_for_nothing_are_refused(query: list[tuple[str, str]], attach: bool,
                                                       message: str) -> None:
    with pytest.raises(APIError) as refused:
        exec_params(MultiDict(query), attach=attach)
    assert (refused.value.code, refused.value.message) == (400, message)


def test_the_container_is_the_pods_own_or_its_only_one() -> None:
    assert container_of(POD, "b") == "b"
    assert container_of({"metadata": {"name": "solo"}, "spec": {"containers": [{"name": "c"}]}}, "") == "c"
    with pytest.raises(APIError, match=r"a container name must be specified for pod web, choose one of: \[a b\]"):
        container_of(POD, "")
    with pytest.raises(APIError, match="container nope is not valid for pod web"):
        container_of(POD, "nope")


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"tailLines": "-1"}, "tailLines", "Invalid value: -1: must be greater than or equal to 0"),
    ({"limitBytes": "0"}, "limitBytes", "Invalid value: 0: must be greater than 0"),
    ({"sinceSeconds": "x"}, "sinceSeconds", "Invalid value: 'x': must be an integer"),
    ({"sinceSeconds": "5", "sinceTime": "2026-01-01T00:00:00Z"}, "",
     "at most one of `sinceTime` or `sinceSeconds` may be specified"),
])
def test_bad_log_options_are_invalid_naming_the_field(query: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(APIError) as refused:
        check_log_options("web", query)
    assert refused.value.code == 422 and refused.value.reason == "Invalid"
    assert refused.value.details is not None
    assert refused.value.details["kind"] == "PodLogOptions"
    assert [(c["field"], c["message"]) for c in refused.value.details["causes"]] == [(field, message)]


def test_good_log_options_pass_and_a_malformed_since_time_is_a_bad_request() -> None:
    check_log_options("web", {"tailLines": "0", "limitBytes": "10", "follow": "true", "timestamps": "true",
                              "sinceTime": "2026-01-01T00:00:00.5+02:00"})
    check_log_options("web", {"sinceSeconds": "60"})
    with pytest.raises(APIError) as refused:
        check_log_options("web", {"sinceTime": "yesterday"})
    assert refused.value.code == 400 and "sinceTime" in refused.value.message


def test_port_forward_ports_are_numbers_in_range() -> None:
    assert portforward_params(MultiDict([("ports", "8080"), ("ports", "80, 9000")])) == [("ports", "8080,80,9000")]
    for bad in ([], [("ports", "")], [("ports", "0")], [("ports", "http")], [("ports", "70000")]):
        with pytest.raises(APIError) as refused:
            portforward_params(MultiDict(bad))
        assert refused.value.code == 400
