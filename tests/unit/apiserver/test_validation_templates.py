"""Pod templates refuse ephemeral containers, as upstream's ValidatePodTemplateSpec does for every kind that
stamps pods out of one: an ephemeral container joins a running pod through its subresource only. And
PodTemplates (core/v1) are served: made, listed with upstream's columns, refused when invalid, deleted."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control.apiserver.defaults import default
from control.apiserver.validation import validate
from tests.harness import local_apiserver
from tests.security.authz_kit import call

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
    if kind == "PodTemplate":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "template": template()}, ["template", "spec"]
    if kind == "ReplicationController":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta,
                "spec": {"selector": dict(LABELS), "template": template()}}, ["spec", "template", "spec"]
    spec: Obj = {"selector": selector, "template": template()}
    if kind == "StatefulSet":
        spec["serviceName"] = "t"
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}, ["spec", "template", "spec"]


KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController", "Job", "CronJob",
         "PodTemplate")


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


def test_pod_templates_are_served(tmp_path: Path) -> None:
    path = "/api/v1/namespaces/default/podtemplates"

    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            obj, spec_path = workload("PodTemplate")
            obj["template"]["spec"]["containers"].append({"name": "side", "image": "nginx:1.25"})
            status, made = await call(session, api, "admin", "POST", path, obj)
            assert status == 201, made
            # defaulted as a pod's spec is
            assert made["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
            assert made["template"]["spec"]["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
            headers = {"Authorization": "Bearer token-admin", "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
            async with session.get(f"{api.url}{path}", headers=headers) as response:
                table = await response.json()
            assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Containers", "Images", "Pod Labels"]
            assert table["rows"][0]["cells"] == ["t", "c,side", "busybox,nginx:1.25", "app=t"]
            _, resources = await call(session, api, "admin", "GET", "/api/v1")
            listed = next(r for r in resources["resources"] if r["name"] == "podtemplates")
            assert (listed["kind"], listed["namespaced"]) == ("PodTemplate", True)

            bad, _ = workload("PodTemplate")
            bad["metadata"]["name"] = "bad"
            pod_spec(bad, spec_path)["ephemeralContainers"] = EPHEMERAL
            status, refused = await call(session, api, "admin", "POST", path, bad)
            assert status == 422
            assert [(c["field"], c["message"]) for c in refused["details"]["causes"]] == [
                ("template.spec.ephemeralContainers", MESSAGE)]
            # the same rule on an update
            changed = copy.deepcopy(made)
            pod_spec(changed, spec_path)["ephemeralContainers"] = EPHEMERAL
            status, _ = await call(session, api, "admin", "PUT", f"{path}/t", changed)
            assert status == 422
            assert (await call(session, api, "admin", "DELETE", f"{path}/t"))[0] == 200
            assert (await call(session, api, "admin", "GET", f"{path}/t"))[0] == 404

    asyncio.run(main())
