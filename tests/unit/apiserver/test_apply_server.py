"""Server-side apply and managedFields through the apiserver's HTTP routes (in-process server, SQLite store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient

from control.apiserver.admission import KubernetesAdmission
from control.apiserver.registry import Registry
from tests.unit.apiserver.test_api_server import ADMIN, run

APPLY = {**ADMIN, "Content-Type": "application/apply-patch+yaml"}
MERGE = {**ADMIN, "Content-Type": "application/merge-patch+json"}
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"

CONFIG = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx}]
"""


def managers(obj: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"], e.get("subresource", "")): e["fieldsV1"]
            for e in obj["metadata"].get("managedFields", [])}


async def applied(client: TestClient, path: str, body: str, query: str = "fieldManager=me",
                  status: int = 200) -> dict[str, Any]:
    resp = await client.patch(f"{path}?{query}", headers=APPLY, data=body.encode())
    answer: dict[str, Any] = await resp.json()
    assert resp.status == status, answer.get("message", answer)
    return answer


def test_apply_creates_then_patches_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        dry = await applied(client, f"{DEPLOYMENTS}/web", CONFIG, "fieldManager=me&dryRun=All", 201)
        assert ("me", "Apply", "") in managers(dry)
        assert (await client.get(f"{DEPLOYMENTS}/web", headers=ADMIN)).status == 404
        created = await applied(client, f"{DEPLOYMENTS}/web", CONFIG, status=201)
        assert created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"]  # defaulted, not owned
        owned = managers(created)[("me", "Apply", "")]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        assert owned == {'k:{"name":"c"}': {".": {}, "f:image": {}, "f:name": {}}}
        again = await applied(client, f"{DEPLOYMENTS}/web", CONFIG)
        assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        # what the manager no longer sends would go: its whole configuration again, with 3 replicas, as JSON
        json_body = json.dumps(yaml.safe_load(CONFIG.replace("replicas: 2", "replicas: 3")))
        dry = await applied(client, f"{DEPLOYMENTS}/web", json_body, "fieldManager=me&dryRun=All")
        assert dry["spec"]["replicas"] == 3
        stored = await (await client.get(f"{DEPLOYMENTS}/web", headers=ADMIN)).json()
        assert stored["spec"]["replicas"] == 2

    run(scenario, tmp_path, admission=KubernetesAdmission())


def test_apply_options_are_checked_as_upstream(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        missing = await applied(client, f"{DEPLOYMENTS}/web", CONFIG, "", 422)
        assert missing["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                                      "required for apply patch")
        await applied(client, f"{DEPLOYMENTS}/web", CONFIG, status=201)
        forced = await client.patch(f"{DEPLOYMENTS}/web?force=true", headers=MERGE, data=b'{"spec":{"replicas":1}}')
        assert forced.status == 422
        assert "force: Forbidden: may not be specified for non-apply patch" in (await forced.json())["message"]
        wrong = await applied(client, f"{DEPLOYMENTS}/other", CONFIG, status=400)
        assert "does not match the name on the URL" in wrong["message"]
        broken = await applied(client, f"{DEPLOYMENTS}/web", "kind: [", status=400)
        assert broken["reason"] == "BadRequest"

    run(scenario, tmp_path)


def test_every_write_records_its_manager(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
        created = await (await client.post("/api/v1/namespaces/default/configmaps?fieldManager=maker",
                                           headers=ADMIN, json=cm)).json()
        assert managers(created) == {("maker", "Update", ""): {"f:data": {"f:a": {}}}}
        patched = await (await client.patch("/api/v1/namespaces/default/configmaps/c", data=b'{"data":{"b":"2"}}',
                                            headers={**MERGE, "User-Agent": "tool/1.0 (linux)"})).json()
        assert managers(patched)[("tool", "Update", "")] == {"f:data": {"f:b": {}}}
        put = {**patched, "data": {"a": "9", "b": "2"}}
        put["metadata"] = {k: v for k, v in put["metadata"].items() if k != "managedFields"}
        replaced = await (await client.put("/api/v1/namespaces/default/configmaps/c?fieldManager=editor",
                                           headers=ADMIN, json=put)).json()
        assert managers(replaced) == {("editor", "Update", ""): {"f:data": {"f:a": {}}},
                                      ("tool", "Update", ""): {"f:data": {"f:b": {}}}}
        stripped = await (await client.patch("/api/v1/namespaces/default/configmaps/c", headers=MERGE,
                                             data=b'{"metadata":{"managedFields":[{}]}}')).json()
        assert "managedFields" not in stripped["metadata"]

    run(scenario, tmp_path)


def test_apply_to_status_and_scale(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        await applied(client, f"{DEPLOYMENTS}/web", CONFIG, status=201)
        status = await applied(client, f"{DEPLOYMENTS}/web/status", json.dumps(
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 9}, "status": {"observedGeneration": 1}}), "fieldManager=controller")
        assert status["status"]["observedGeneration"] == 1 and status["spec"]["replicas"] == 2
        assert managers(status)[("controller", "Apply", "status")] == {"f:status": {"f:observedGeneration": {}}}

        scale = json.dumps({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"},
                            "spec": {"replicas": 4}})
        conflict = await applied(client, f"{DEPLOYMENTS}/web/scale", scale, "fieldManager=hpa", 409)
        assert conflict["message"] == 'Apply failed with 1 conflict: conflict with "me": .spec.replicas'
        await applied(client, f"{DEPLOYMENTS}/web/scale", scale, "fieldManager=hpa&force=true")
        stored = await (await client.get(f"{DEPLOYMENTS}/web", headers=ADMIN)).json()
        assert stored["spec"]["replicas"] == 4
        assert managers(stored)[("hpa", "Apply", "scale")] == {"f:spec": {"f:replicas": {}}}
        assert "f:replicas" not in managers(stored)[("me", "Apply", "")]["f:spec"]

    run(scenario, tmp_path)


_POD_SPEC = {"containers": [{"name": "c", "image": "nginx"}]}
_TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": _POD_SPEC}
_SELECTOR = {"matchLabels": {"app": "x"}}
EVERY_KIND: dict[str, dict[str, Any]] = {
    "Namespace": {}, "Node": {}, "Pod": {"spec": _POD_SPEC},
    "Service": {"spec": {"ports": [{"port": 80}]}}, "Endpoints": {"subsets": []}, "ServiceAccount": {},
    "Event": {"involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "R",
              "message": "m", "type": "Normal"},
    "ConfigMap": {"data": {"a": "1"}}, "Secret": {"stringData": {"a": "1"}},
    "ReplicationController": {"spec": {"selector": {"app": "x"}, "template": _TEMPLATE}},
    "PodTemplate": {"template": _TEMPLATE},
    "Deployment": {"spec": {"selector": _SELECTOR, "template": _TEMPLATE}},
    "ReplicaSet": {"spec": {"selector": _SELECTOR, "template": _TEMPLATE}},
    "Job": {"spec": {"template": {"spec": {**_POD_SPEC, "restartPolicy": "Never"}}}},
    "DaemonSet": {"spec": {"selector": _SELECTOR, "template": _TEMPLATE}},
    "StatefulSet": {"spec": {"selector": _SELECTOR, "template": _TEMPLATE, "serviceName": "x"}},
    "ControllerRevision": {"revision": 1, "data": {"spec": {}}},
    "CronJob": {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
        "spec": {**_POD_SPEC, "restartPolicy": "Never"}}}}}},
    "EndpointSlice": {"addressType": "IPv4", "endpoints": []}, "Lease": {"spec": {"holderIdentity": "x"}},
    "NetworkPolicy": {"spec": {"podSelector": {}}},
    "AdminNetworkPolicy": {"spec": {"priority": 10, "subject": {"namespaces": {}}, "ingress": [{
        "action": "Allow", "from": [{"namespaces": {}}]}]}},
    "BaselineAdminNetworkPolicy": {"spec": {"subject": {"namespaces": {}}, "ingress": [{
        "action": "Allow", "from": [{"namespaces": {}}]}]}},
    "ClusterRole": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    "ClusterRoleBinding": {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                       "name": "view"}, "subjects": [{"kind": "User", "name": "u"}]},
    "Role": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    "RoleBinding": {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                    "subjects": [{"kind": "User", "name": "u"}]},
    "PersistentVolume": {"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                  "hostPath": {"path": "/srv/ssa"}}},
    "PersistentVolumeClaim": {"spec": {"accessModes": ["ReadWriteOnce"],
                                       "resources": {"requests": {"storage": "1Gi"}}}},
    "StorageClass": {"provisioner": "example.com/ssa"},
    "CustomResourceDefinition": {"spec": {"group": "ssa.example.com", "scope": "Namespaced", "names": {
        "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"}, "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}},
    "APIService": {"spec": {"group": "metrics.example.com", "version": "v1", "groupPriorityMinimum": 1000,
                            "versionPriority": 15, "insecureSkipTLSVerify": True,
                            "service": {"namespace": "default", "name": "ssa"}}},
}
#: kinds whose names are made of their contents
NAMES = {"BaselineAdminNetworkPolicy": "default", "CustomResourceDefinition": "widgets.ssa.example.com",
         "APIService": "v1.metrics.example.com"}  # not the CRD's group, which gets a Local APIService


def test_every_served_kind_is_applied_and_owned(tmp_path: Path) -> None:
    from control.apiserver.resources import RESOURCES

    stored = [r for r in RESOURCES if r.stored]
    assert {r.kind for r in stored} == set(EVERY_KIND)  # a new kind needs its row here

    async def scenario(client: TestClient, registry: Registry) -> None:
        for res in stored:
            name = NAMES.get(res.kind, "ssa-" + res.kind.lower())
            config = {"apiVersion": res.api_version, "kind": res.kind,
                      "metadata": {"name": name, "labels": {"owner": "me"}}, **EVERY_KIND[res.kind]}
            path = res.path("default", name)
            created = await applied(client, path, json.dumps(config), status=201)
            assert managers(created)[("me", "Apply", "")]["f:metadata"] == {"f:labels": {"f:owner": {}}}, res.kind
            config["metadata"]["labels"] = {"owner": "other"}
            conflict = await applied(client, path, json.dumps(config), "fieldManager=other", 409)
            assert conflict["details"]["causes"][0]["field"] == ".metadata.labels.owner", res.kind

    run(scenario, tmp_path, admission=KubernetesAdmission())
