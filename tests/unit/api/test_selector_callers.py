"""Where the old selector copies disagreed with upstream, the callers now follow upstream's rules."""

from __future__ import annotations

from typing import Any

import pytest

from control.apiserver.registry import Registry
from control.apiserver.resources import BY_KIND
from control.apiserver.tables import PRINTERS
from control.controllers._util import map_selector_matches, selector_matches
from control.scheduler._types import _term

INVALID = [
    {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]},  # Exists takes no values
    {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": []}]},  # NotIn needs some
    {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]},  # not a LabelSelector operator
    {"matchLabels": {"-app": "web"}},  # not a qualified name
    {"matchLabels": {"app": "-web"}},  # not a label value
]


@pytest.mark.parametrize("selector", INVALID)
def test_a_controllers_invalid_selector_selects_nothing(selector: dict[str, Any]) -> None:
    # upstream: LabelSelectorAsSelector fails, so the controller skips the object
    assert not selector_matches(selector, {"app": "web", "-app": "web"})


def test_a_controllers_nil_or_empty_selector_selects_nothing() -> None:
    assert not selector_matches(None, {"app": "web"}) and not selector_matches({}, {"app": "web"})
    assert selector_matches({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                            {"app": "web"})
    assert not map_selector_matches({}, {"app": "web"}) and map_selector_matches({"app": "web"}, {"app": "web"})


@pytest.mark.parametrize("term", [
    {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": []}]},
    {"matchExpressions": [{"key": "-zone", "operator": "Exists"}]},
    {"matchExpressions": [{"key": "zone", "operator": "Exists", "values": ["a"]}]},
    {"matchExpressions": [{"key": "zone", "operator": "Equal", "values": ["a"]}]},
    {"matchFields": [{"key": "metadata.namespace", "operator": "NotIn", "values": ["x"]}]},
    {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["x", "y"]}]},
    {"matchFields": [{"key": "metadata.name", "operator": "Exists"}]},
])
def test_an_invalid_node_selector_term_matches_no_node(term: dict[str, Any]) -> None:
    # nodeaffinity: a term whose requirements do not parse matches nothing
    assert not _term(term).matches({"zone": "b", "-zone": "b"}, {"metadata.name": "n1"})


def test_node_selector_terms_still_match() -> None:
    assert _term({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]},
                                       {"key": "cores", "operator": "Gt", "values": ["2"]}],
                  "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
                 ).matches({"zone": "b", "cores": "4"}, {"metadata.name": "n1"})
    assert not _term({}).matches({}, {})


def _cell(plural: str, obj: dict[str, Any]) -> Any:
    return PRINTERS[plural][1](obj)[-1]


@pytest.mark.parametrize(("plural", "selector", "shown"), [
    ("replicasets", {"matchExpressions": [{"key": "app", "operator": "Exists"},
                                          {"key": "canary", "operator": "DoesNotExist"},
                                          {"key": "tier", "operator": "NotIn", "values": ["db", "cache"]}]},
     "app,!canary,tier notin (cache,db)"),
    ("replicasets", {"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
    ("replicasets", {}, "<none>"),
    ("replicasets", {"matchExpressions": [{"key": "app", "operator": "Bogus"}]}, "<error>"),
    ("deployments", {"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["b", "a"]}]}, "app=web,env in (a,b)"),
    ("replicationcontrollers", {"app": "web", "tier": "fe"}, "app=web,tier=fe"),
    ("replicationcontrollers", {}, "<none>"),
    ("services", {"app": "web"}, "app=web"),
    ("services", None, "<none>"),
])
def test_the_selector_column_is_the_canonical_string(plural: str, selector: Any, shown: str) -> None:
    # metav1.FormatLabelSelector for LabelSelectors, labels.FormatLabels for map selectors
    obj = {"metadata": {"name": "x"}, "spec": {"selector": selector}, "status": {}}
    assert _cell(plural, obj) == shown


def test_scale_status_selector_carries_match_expressions() -> None:
    rs = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 2, "selector": {
        "matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}}}
    assert Registry.scale_of(BY_KIND["ReplicaSet"], rs)["status"]["selector"] == "app=web,env notin (dev)"
    rc = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 2, "selector": {"app": "web"}}}
    assert Registry.scale_of(BY_KIND["ReplicationController"], rc)["status"]["selector"] == "app=web"


def test_the_label_selector_parameter_is_parsed_as_labels_parse() -> None:
    from control.apiserver.errors import APIError
    from control.apiserver.selectors import labels_match, parse_label_selector

    pod = {"metadata": {"labels": {"replicas": "3", "app": "web"}}}
    assert labels_match(parse_label_selector("replicas>2,app in (web,)"), pod)
    assert labels_match(parse_label_selector(None), pod)
    for bad in ("a/b/c=x", "x=a||y=b", "app in (web"):
        with pytest.raises(APIError) as caught:
            parse_label_selector(bad)
        assert caught.value.code == 400
