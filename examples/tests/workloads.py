"""Objects the example tests share: agnhost netexec Deployments (each pod answers /hostname with its
name and /clientip with the address it saw) and Services in front of them. Plain dicts, as the API
takes them; `cluster.apply()` takes YAML text, files and lists of dicts alike."""

from __future__ import annotations

from typing import Any

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


def netexec(name: str, replicas: int = 1, *, namespace: str = "default", node: str | None = None,
            ready_probe: bool = True) -> dict[str, Any]:
    """A Deployment of agnhost netexec on port 8080, labelled app=NAME (on NODE only, when given)."""
    container: dict[str, Any] = {"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}
    if ready_probe:
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
    pod_spec: dict[str, Any] = {"containers": [container]}
    if node:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}}


def service(name: str, *, namespace: str = "default", selector: dict[str, str] | None = None,
            **spec: Any) -> dict[str, Any]:
    """A Service on port 80 to the pods' 8080, selecting app=NAME unless told otherwise."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector or {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}
