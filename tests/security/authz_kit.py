"""Shared pieces of the authorization tests: raw HTTP calls with an identity's token against the
in-process apiserver (tests/harness.py), a seeded cluster state, and a table runner that reports every
row that came out differently, not just the first."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.harness import LocalAPIServer

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Row:
    who: str  # a key of tests.harness.IDENTITIES
    method: str
    path: str
    expected: int  # the HTTP status: 403 for forbidden, the success code otherwise
    body: Any = None
    content_type: str = "application/json"

    def describe(self) -> str:
        return f"{self.who} {self.method} {self.path}"


async def call(session: aiohttp.ClientSession, api: LocalAPIServer, who: str, method: str, path: str,
               body: Any = None, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer token-{who}", "Content-Type": content_type}
    async with session.request(method, api.url + path, data=data, headers=headers) as response:
        text = await response.text()
        try:
            payload = json.loads(text) if text else {}
        except ValueError:
            payload = {"raw": text}
        return response.status, payload if isinstance(payload, dict) else {"raw": payload}


async def check_table(api: LocalAPIServer, rows: list[Row]) -> None:
    """Run ROWS in order (later rows may depend on earlier writes) and fail listing every mismatch."""
    wrong = []
    async with aiohttp.ClientSession() as session:
        for row in rows:
            status, payload = await call(session, api, row.who, row.method, row.path, row.body, row.content_type)
            if status != row.expected:
                wrong.append(f"{row.describe()}: expected {row.expected}, got {status} {payload.get('message', '')}")
            elif status == 403:
                assert payload.get("kind") == "Status" and payload.get("reason") == "Forbidden", payload
    assert not wrong, "\n".join(wrong)


def pod(name: str, node: str | None, *, volume_cm: str | None = None, env_cm: str | None = None,
        env_from_cm: str | None = None, projected_cm: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "nginx"}
    if env_cm:
        container["env"] = [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": env_cm, "key": "k"}}}]
    if env_from_cm:
        container["envFrom"] = [{"configMapRef": {"name": env_from_cm}}]
    volumes: list[dict[str, Any]] = []
    if volume_cm:
        volumes.append({"name": "v", "configMap": {"name": volume_cm}})
    if projected_cm:
        volumes.append({"name": "p", "projected": {"sources": [{"configMap": {"name": projected_cm}}]}})
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def node(name: str, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"taints": taints or []}}


def lease(name: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}}


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


CM = "/api/v1/namespaces/kube-system/configmaps"
PODS = "/api/v1/namespaces/kube-system/pods"
NODES = "/api/v1/nodes"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


async def seed(api: LocalAPIServer) -> None:
    """Nodes worker-1 (tainted) and worker-2; in kube-system, a pod on worker-1 referencing configmaps by
    volume, env and envFrom, a pod on worker-2 referencing another, an unbound pod referencing a third."""
    rows = [Row("admin", "POST", NODES, 201, node("worker-1", [{"key": "dedicated", "value": "x",
                                                                 "effect": "NoSchedule"}])),
            Row("admin", "POST", NODES, 201, node("worker-2"))]
    rows += [Row("admin", "POST", CM, 201, configmap(name)) for name in (
        "cm-volume", "cm-env", "cm-envfrom", "cm-projected", "cm-other-node", "cm-unbound", "cm-unreferenced")]
    rows += [
        Row("admin", "POST", PODS, 201, pod("on-1", "worker-1", volume_cm="cm-volume", env_cm="cm-env",
                                            env_from_cm="cm-envfrom", projected_cm="cm-projected")),
        Row("admin", "POST", PODS, 201, pod("on-2", "worker-2", volume_cm="cm-other-node")),
        Row("admin", "POST", PODS, 201, pod("unbound", None, volume_cm="cm-unbound")),
    ]
    await check_table(api, rows)
    await pods_cached(api, {"on-1", "on-2", "unbound"})


async def pods_cached(api: LocalAPIServer, names: set[str]) -> None:
    """Until the pods watch cache (which the Node authorizer's graph follows) holds NAMES."""
    cache = api.registry.caches["pods"]
    while not names <= {p["metadata"]["name"] for p in cache.objects.values()}:
        await asyncio.sleep(0.01)
