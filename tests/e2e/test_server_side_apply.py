"""Server-side apply against the real apiserver process (no cluster) with unmodified kubectl 1.27 and 1.33 and
the Python client: apply of a Deployment and a Service, a second manager's conflict (409, upstream's message),
--force-conflicts taking the field over, client-side apply then --server-side (kubectl's managedFields
migration), and managedFields as `get --show-managed-fields` prints them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_kubectl_apply import VERSIONS, Kubectl, users_apiserver, versioned_kubectl

TOKEN = "ssa-admin-token"


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("ssa")
    with users_apiserver(root, {"admin": (TOKEN, "kubernetes-admin", ("system:masters",))}) as kubeconfigs:
        yield kubeconfigs["admin"]


@pytest.fixture(params=VERSIONS)
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return versioned_kubectl(request.param, kubeconfig, tmp_path)


def _namespace(kubectl: Kubectl, prefix: str) -> str:
    name = f"{prefix}-{kubectl.version.replace('.', '-')}"  # type: ignore[attr-defined]
    kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    return name


def _manifest(namespace: str, replicas: int = 2, image: str = "nginx:1.25") -> str:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                     "name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}}}}
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 80}]}}
    return yaml.safe_dump_all([deployment, service])


def _managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


def _get(kubectl: Kubectl, namespace: str, what: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(kubectl("get", "-n", namespace, what, "-o", "json",
                                               "--show-managed-fields").stdout)
    return shown


def test_apply_conflict_force_and_managed_fields(kubectl: Kubectl, tmp_path: Path) -> None:
    namespace = _namespace(kubectl, "ssa")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(_manifest(namespace))
    done = kubectl("apply", "--server-side", "-f", str(manifest))
    assert "deployment.apps/web serverside-applied" in done.stdout, done.stdout + done.stderr
    assert "service/web serverside-applied" in done.stdout

    deployment = _get(kubectl, namespace, "deployment/web")
    fields = _managers(deployment)[("kubectl", "Apply")]
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert container["f:ports"] == {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}
    assert "f:replicas" in fields["f:spec"]
    service = _get(kubectl, namespace, "service/web")
    assert 'k:{"port":80,"protocol":"TCP"}' in _managers(service)[("kubectl", "Apply")]["f:spec"]["f:ports"]
    shown = kubectl("get", "-n", namespace, "deployment", "web", "-o", "yaml", "--show-managed-fields").stdout
    assert "managedFields:" in shown and "manager: kubectl" in shown and "operation: Apply" in shown
    assert "managedFields" not in kubectl("get", "-n", namespace, "deployment", "web", "-o", "yaml").stdout

    # A server-side dry run and diff see the change without making it.
    manifest.write_text(_manifest(namespace, image="nginx:1.27"))
    dry = kubectl("apply", "--server-side", "--dry-run=server", "-f", str(manifest))
    assert "deployment.apps/web serverside-applied (server dry run)" in dry.stdout, dry.stdout
    diff = kubectl("diff", "--server-side", "-f", str(manifest), check=False)
    added = [line for line in diff.stdout.splitlines() if line.startswith("+ ")]
    assert diff.returncode == 1 and any("image: nginx:1.27" in line for line in added), diff.stdout + diff.stderr
    assert _get(kubectl, namespace, "deployment/web")["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "nginx:1.25"
    manifest.write_text(_manifest(namespace))

    # Re-applying the same manifest changes nothing (no new resourceVersion).
    kubectl("apply", "--server-side", "-f", str(manifest))
    assert _get(kubectl, namespace, "deployment/web")["metadata"]["resourceVersion"] == \
        deployment["metadata"]["resourceVersion"]

    # Another manager setting replicas to another value conflicts with kubectl's ownership.
    scaled = yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "web", "namespace": namespace}, "spec": {"replicas": 5}})
    refused = kubectl("apply", "--server-side", "--field-manager=other", "-f", "-", stdin=scaled, check=False)
    assert refused.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in refused.stderr, refused.stderr
    assert _get(kubectl, namespace, "deployment/web")["spec"]["replicas"] == 2

    kubectl("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-", stdin=scaled)
    deployment = _get(kubectl, namespace, "deployment/web")
    assert deployment["spec"]["replicas"] == 5
    managers = _managers(deployment)
    assert managers[("other", "Apply")] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in managers[("kubectl", "Apply")]["f:spec"]

    # kubectl, no longer owning replicas, applies a manifest without it: the field stays (other owns it);
    # the label it stops sending goes (nobody else owns it).
    trimmed = yaml.safe_load_all(_manifest(namespace))
    docs = list(trimmed)
    del docs[0]["spec"]["replicas"]
    del docs[0]["metadata"]["labels"]
    manifest.write_text(yaml.safe_dump_all(docs))
    kubectl("apply", "--server-side", "-f", str(manifest))
    deployment = _get(kubectl, namespace, "deployment/web")
    assert deployment["spec"]["replicas"] == 5
    assert "labels" not in deployment["metadata"]


def test_client_side_then_server_side_apply_migrates(kubectl: Kubectl, tmp_path: Path) -> None:
    namespace = _namespace(kubectl, "csa")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(_manifest(namespace))
    kubectl("apply", "-f", str(manifest))
    before = _managers(_get(kubectl, namespace, "deployment/web"))
    assert ("kubectl-client-side-apply", "Update") in before

    manifest.write_text(_manifest(namespace, replicas=3, image="nginx:1.27"))
    done = kubectl("apply", "--server-side", "-f", str(manifest))
    assert "deployment.apps/web serverside-applied" in done.stdout, done.stdout + done.stderr
    deployment = _get(kubectl, namespace, "deployment/web")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    after = _managers(deployment)
    # kubectl moved the client-side manager's fields to its own Apply entry (a JSON patch of managedFields),
    # the annotation to "kubectl-last-applied" (an apply of its own)
    assert ("kubectl-client-side-apply", "Update") not in after, after
    assert set(after) <= {("kubectl", "Apply"), ("kubectl-last-applied", "Apply")}, after
    assert "f:replicas" in after[("kubectl", "Apply")]["f:spec"]
    annotation = deployment["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(annotation)["spec"]["replicas"] == 3  # kept in step for a later client-side apply

    # ... so a later client-side apply still patches from the right base.
    manifest.write_text(_manifest(namespace, replicas=4, image="nginx:1.27"))
    assert "deployment.apps/web configured" in kubectl("apply", "-f", str(manifest)).stdout
    assert _get(kubectl, namespace, "deployment/web")["spec"]["replicas"] == 4


def test_python_client_server_side_apply_conflict_and_force(kubeconfig: Path) -> None:
    from kubernetes import config, dynamic
    from kubernetes.client.exceptions import ApiException

    api = dynamic.DynamicClient(config.new_client_from_config(config_file=str(kubeconfig)))
    configmaps = api.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"},
            "data": {"mode": "one", "level": "3"}}
    created = configmaps.server_side_apply(body=body, field_manager="python-a")
    assert created.data.mode == "one"

    with pytest.raises(ApiException) as refused:
        configmaps.patch(body={**body, "data": {"mode": "two"}}, content_type="application/apply-patch+yaml",
                         field_manager="python-b")
    assert refused.value.status == 409
    status = json.loads(refused.value.body)
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "python-a": .data.mode'
    assert status["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "python-a"',
                                            "field": ".data.mode"}]

    forced = configmaps.server_side_apply(body={**body, "data": {"mode": "two"}}, field_manager="python-b",
                                          force_conflicts=True)
    assert forced.data.mode == "two" and forced.data.level == "3"
    owners = {e["manager"]: e["fieldsV1"] for e in forced.to_dict()["metadata"]["managedFields"]}
    assert owners == {"python-a": {"f:data": {"f:level": {}}}, "python-b": {"f:data": {"f:mode": {}}}}
