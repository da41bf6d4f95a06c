"""Pod templates refuse ephemeral containers, as upstream's ValidatePodTemplateSpec does for every kind that
stamps pods out of one: an ephemeral container joins a running pod through its subresource only."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from control.apiserver.defaults import default
from control.apiserver.validation import validate

Obj = dict[str, Any]
LABELS = {"app": "t"}
EPHEMERAL = [{"name": "debug", "image": "busybox", "command": ["sh"]}]
MESSAGE = "Forbidden: ephemeral containers not allowed in pod template"


def template(restart: str = "Always") -> Obj:
    return {"metadata": {"labels": dict(LABELS)},
            "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]}}


def workload(kind: str) -> tuple[Obj, list[str]]:
    """A valid object of KIND and the path of its pod template's spec."""
    meta = {"name": "t", "namespace": "default"}
    selector = {"matchLabels": dict(LABELS)}
    if kind == "Job":
        # the selector the Job strategy generates on create, given here as a user's own
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta,
                "spec": {"manualSelector": True, "selector": selector, "template": template("Never")}}, \
            ["spec", "template", "spec"]
    if kind == "CronJob":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta,
                "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": template("Never")}}}}, \
            ["spec", "jobTemplate", "spec", "template", "spec"]
    if kind == "ReplicationController":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta,
                "spec": {"selector": dict(LABELS), "template": template()}}, ["spec", "template", "spec"]
    spec: Obj = {"selector": selector, "template": template()}
    if kind == "StatefulSet":
        spec["serviceName"] = "t"
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}, ["spec", "template", "spec"]


KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController", "Job", "CronJob")


def errors(kind: str, obj: Obj) -> list[tuple[str, str]]:
    obj = copy.deepcopy(obj)
    default(kind, obj)
    return [(e.field, e.message) for e in validate(kind, obj)]


def pod_spec(obj: Obj, path: list[str]) -> Obj:
    here = obj
    for key in path:
        here = here[key]
    return here


@pytest.mark.parametrize("kind", KINDS)
def test_a_pod_template_with_ephemeral_containers_is_forbidden(kind: str) -> None:
    obj, path = workload(kind)
    assert errors(kind, obj) == []
    pod_spec(obj, path)["ephemeralContainers"] = EPHEMERAL
    assert errors(kind, obj) == [(".".join([*path, "ephemeralContainers"]), MESSAGE)]


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_list_of_ephemeral_containers_is_allowed(kind: str) -> None:
    # upstream tests the list's length: an empty list (as some serialisers write) is no ephemeral container
    obj, path = workload(kind)
    pod_spec(obj, path)["ephemeralContainers"] = []
    assert errors(kind, obj) == []


def test_a_pod_may_still_be_given_ephemeral_containers_by_its_subresource_only() -> None:
    # the rule is the template's; a pod refuses them on create for its own reason (ephemeral.py)
    pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}], "ephemeralContainers": EPHEMERAL}}
    found = errors("Pod", pod)
    assert found and all("pod template" not in message for _, message in found)
