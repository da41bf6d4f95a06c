"""The Python `kubernetes` client, unmodified, against the real apiserver process over HTTPS (no cluster:
everything here is API-only): `utils.create_from_yaml` with a multi-document file, a `kind: List` and a
conflict (an object that exists: FailToCreateError carrying the 409s), the typed clients (CoreV1Api,
AppsV1Api, BatchV1Api, RbacAuthorizationV1Api) and the dynamic client (discovery-driven) creating,
reading, patching and deleting each object kind issue 12 names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config, utils
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from tests.e2e.test_kubectl_apply import users_apiserver

USERS = {"admin": ("e2e-admin-token", "kubernetes-admin", ("system:masters",))}
TEMPLATE = {"metadata": {"labels": {"app": "py"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[k8s.ApiClient]:
    with users_apiserver(tmp_path_factory.mktemp("pyclient"), USERS) as kubeconfigs:
        api_client = config.new_client_from_config(config_file=str(kubeconfigs["admin"]))
        try:
            yield api_client
        finally:
            api_client.close()


def namespace(api: k8s.ApiClient, name: str) -> str:
    k8s.CoreV1Api(api).create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def workloads(ns: str) -> list[dict[str, Any]]:
    """One object of each kind issue 12 names, as a user's manifest has them (no defaults filled in)."""
    labels = {"matchLabels": {"app": "py"}}
    pod_template = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "restartPolicy": "Always"}}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns},
         "data": {"mode": "fast"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": ns},
         "stringData": {"password": "s3cret"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
         "spec": {"selector": {"app": "py"}, "ports": [{"port": 80}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
         "spec": {"replicas": 2, "selector": labels, "template": pod_template}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": ns},
         "spec": {"selector": labels, "template": pod_template}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
         "spec": {"serviceName": "web", "replicas": 2, "selector": labels, "template": pod_template}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": ns},
         "spec": {"completions": 3, "parallelism": 2, "template": TEMPLATE}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": ns},
         "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": TEMPLATE}}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader", "namespace": ns},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "alice-reads", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]},
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "stamp", "namespace": ns},
         "template": pod_template},
    ]


def test_create_from_yaml_multi_document_list_and_conflict(api: k8s.ApiClient, tmp_path: Path) -> None:
    ns = namespace(api, "from-yaml")
    documents = workloads(ns)
    multi = tmp_path / "multi.yaml"
    multi.write_text(yaml.safe_dump_all(documents[:5]))
    created = utils.create_from_yaml(api, str(multi))
    # One result per document, each the typed object the server returned.
    assert [type(objects[0]).__name__ for objects in created] == \
        ["V1ConfigMap", "V1Secret", "V1Service", "V1Deployment", "V1DaemonSet"]
    assert created[2][0].spec.cluster_ip and created[3][0].metadata.uid

    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": documents[5:]}))
    [from_list] = utils.create_from_yaml(api, str(listed))
    assert [type(o).__name__ for o in from_list] == ["V1StatefulSet", "V1Job", "V1CronJob", "V1Role", "V1RoleBinding",
                                                     "V1PodTemplate"]

    # All of it again, plus one new object: the new one is made, the ones that exist come back as 409s.
    again = tmp_path / "again.yaml"
    fresh = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fresh", "namespace": ns}}
    again.write_text(yaml.safe_dump_all([documents[0], fresh, documents[3]]))
    with pytest.raises(utils.FailToCreateError) as failed:
        utils.create_from_yaml(api, str(again))
    errors = failed.value.api_exceptions
    assert [(e.status, e.reason) for e in errors] == [(409, "Conflict"), (409, "Conflict")]
    assert '"reason":"AlreadyExists"' in errors[0].body.replace(" ", "")
    assert 'configmaps \\"settings\\" already exists' in errors[0].body
    assert 'deployments.apps \\"web\\" already exists' in errors[1].body
    assert k8s.CoreV1Api(api).read_namespaced_config_map("fresh", ns).metadata.name == "fresh"


def test_typed_clients_create_read_patch_delete_each_kind(api: k8s.ApiClient) -> None:
    ns = namespace(api, "typed")
    core, apps, batch = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.BatchV1Api(api)
    rbac = k8s.RbacAuthorizationV1Api(api)
    # kind -> (create, read, patch, delete), all namespaced calls of the typed clients
    calls = {
        "ConfigMap": (core.create_namespaced_config_map, core.read_namespaced_config_map,
                      core.patch_namespaced_config_map, core.delete_namespaced_config_map),
        "Secret": (core.create_namespaced_secret, core.read_namespaced_secret,
                   core.patch_namespaced_secret, core.delete_namespaced_secret),
        "Service": (core.create_namespaced_service, core.read_namespaced_service,
                    core.patch_namespaced_service, core.delete_namespaced_service),
        "Deployment": (apps.create_namespaced_deployment, apps.read_namespaced_deployment,
                       apps.patch_namespaced_deployment, apps.delete_namespaced_deployment),
        "DaemonSet": (apps.create_namespaced_daemon_set, apps.read_namespaced_daemon_set,
                      apps.patch_namespaced_daemon_set, apps.delete_namespaced_daemon_set),
        "StatefulSet": (apps.create_namespaced_stateful_set, apps.read_namespaced_stateful_set,
                        apps.patch_namespaced_stateful_set, apps.delete_namespaced_stateful_set),
        "Job": (batch.create_namespaced_job, batch.read_namespaced_job,
                batch.patch_namespaced_job, batch.delete_namespaced_job),
        "CronJob": (batch.create_namespaced_cron_job, batch.read_namespaced_cron_job,
                    batch.patch_namespaced_cron_job, batch.delete_namespaced_cron_job),
        "Role": (rbac.create_namespaced_role, rbac.read_namespaced_role,
                 rbac.patch_namespaced_role, rbac.delete_namespaced_role),
        "PodTemplate": (core.create_namespaced_pod_template, core.read_namespaced_pod_template,
                        core.patch_namespaced_pod_template, core.delete_namespaced_pod_template),
        "RoleBinding": (rbac.create_namespaced_role_binding, rbac.read_namespaced_role_binding,
                        rbac.patch_namespaced_role_binding, rbac.delete_namespaced_role_binding),
    }
    for body in workloads(ns):
        create, read, patch, delete = calls[body["kind"]]
        name = body["metadata"]["name"]
        made = create(ns, body)
        assert made.metadata.resource_version, body["kind"]
        # The typed client deserializes every field it knows: the server's defaults come back typed.
        got = read(name, ns)
        assert got.metadata.uid == made.metadata.uid, body["kind"]
        patched = patch(name, ns, {"metadata": {"labels": {"patched": "yes"}}})
        assert patched.metadata.labels["patched"] == "yes", body["kind"]
        assert int(patched.metadata.resource_version) > int(made.metadata.resource_version), body["kind"]
        delete(name, ns)
        with pytest.raises(ApiException) as gone:
            read(name, ns)
        assert gone.value.status == 404, body["kind"]
    # Defaults the typed models show, as upstream fills them in.
    job = batch.create_namespaced_job(ns, workloads(ns)[6])
    assert (job.spec.backoff_limit, job.spec.completion_mode, job.spec.template.spec.restart_policy) == \
        (6, "NonIndexed", "Never")
    deployment = apps.create_namespaced_deployment(ns, workloads(ns)[3])
    assert deployment.spec.strategy.type == "RollingUpdate"
    assert deployment.spec.strategy.rolling_update.max_surge == "25%"
    assert [d.metadata.name for d in apps.list_namespaced_deployment(ns).items] == ["web"]


def test_dynamic_client_discovers_and_drives_each_kind(api: k8s.ApiClient) -> None:
    ns = namespace(api, "dynamic")
    dynamic = DynamicClient(api)  # reads /api and /apis discovery to find each kind's resource
    for body in workloads(ns):
        resource = dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        assert resource.namespaced, body["kind"]
        name = body["metadata"]["name"]
        made = resource.create(body=body, namespace=ns)
        assert made.kind == body["kind"] and made.metadata.name == name
        listed = resource.get(namespace=ns)
        assert listed.kind == f"{body['kind']}List" and [i.metadata.name for i in listed.items] == [name]
        patched = resource.patch(name=name, namespace=ns, body={"metadata": {"annotations": {"by": "dynamic"}}},
                                 content_type="application/merge-patch+json")
        assert patched.metadata.annotations["by"] == "dynamic"
        resource.delete(name=name, namespace=ns)
        assert resource.get(namespace=ns).items == [], body["kind"]
