"""What kube-apiserver makes for itself at start: the system namespaces and the `kubernetes` Service
with its Endpoints and EndpointSlice pointing at the apiserver (pkg/controlplane's bootstrap
controller), and the default RBAC policy as objects (rbac_policy.py; upstream's rbac/bootstrap-roles post-start
hook). Idempotent: existing objects are left as they are, but for the default RBAC objects, which gain what a
newer default adds (reconciled())."""

from __future__ import annotations

import asyncio
from typing import Any

from netaddr import IPNetwork

from control.apiserver.aggregation import aggregated_rules
from control.apiserver.errors import APIError
from control.apiserver.rbac import missing_rules
from control.apiserver.rbac_policy import AUTOUPDATE_KEY as AUTOUPDATE
from control.apiserver.rbac_policy import cluster_bindings, cluster_roles
from control.apiserver.registry import Registry, Tracking
from control.apiserver.resources import BY_KIND

MANAGER = "kube-apiserver"  # the field manager of what the apiserver writes itself
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def _ensure(registry: Registry, kind: str, namespace: str | None, body: dict) -> None:  # type: ignore[type-arg]
    resource = BY_KIND[kind]
    try:
        await registry.get(resource, namespace, body["metadata"]["name"])
        return  # made by an earlier start: leave it as it is
    except APIError as exc:
        if exc.code != 404:
            raise
    try:
        await registry.create(resource, namespace, body, tracking=Tracking(MANAGER))
    except APIError as exc:
        if exc.code != 409:  # another apiserver made it meanwhile
            raise


def reconciled(kind: str, existing: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any] | None:
    """What a default object already stored becomes at start (pkg/registry/rbac/reconciliation), or None to leave
    it: unless annotated rbac.authorization.kubernetes.io/autoupdate=false, a ClusterRole gains the default rules
    it does not cover (and the default aggregation selectors), a binding the default subjects it lacks. Nothing
    an administrator added is taken away."""
    annotations = existing.get("metadata", {}).get("annotations") or {}
    if annotations.get(AUTOUPDATE) == "false":
        return None
    updated = {**existing}
    if kind == "ClusterRole":
        have = [r for r in existing.get("rules") or [] if isinstance(r, dict)]
        if "aggregationRule" in wanted:
            found = existing.get("aggregationRule")
            rule: dict[str, Any] = found if isinstance(found, dict) else {}
            selectors = list(rule.get("clusterRoleSelectors") or [])
            missing = [s for s in wanted["aggregationRule"]["clusterRoleSelectors"] if s not in selectors]
            if not missing:
                return None
            updated["aggregationRule"] = {"clusterRoleSelectors": selectors + missing}
        else:
            absent = [r for r in wanted["rules"] if missing_rules(have, [r])]
            if not absent:
                return None
            updated["rules"] = have + absent
    else:
        subjects = [s for s in existing.get("subjects") or [] if isinstance(s, dict)]
        absent = [s for s in wanted["subjects"] if s not in subjects]
        if not absent:
            return None
        updated["subjects"] = subjects + absent
    return updated


async def _ensure_default(registry: Registry, kind: str, body: dict[str, Any]) -> None:
    resource = BY_KIND[kind]
    try:
        existing = await registry.get(resource, None, body["metadata"]["name"])
    except APIError as exc:
        if exc.code != 404:
            raise
        await _ensure(registry, kind, None, body)
        return
    updated = reconciled(kind, existing, body)
    if updated is not None:
        await registry.update(resource, None, body["metadata"]["name"], updated, tracking=Tracking(MANAGER))


async def bootstrap_rbac(registry: Registry) -> None:
    """The default ClusterRoles (the aggregated ones already holding what they aggregate) and bindings, then a
    wait until the watch caches hold them all: no request is decided before the policy is in place."""
    roles = cluster_roles()
    for _ in roles:  # to a fixed point: view aggregates into edit, edit into admin
        changed = False
        for role in roles:
            wanted = aggregated_rules(role, roles)
            if wanted is not None and wanted != role["rules"]:
                role["rules"], changed = wanted, True
        if not changed:
            break
    for role in roles:
        await _ensure_default(registry, "ClusterRole", role)
    bindings = cluster_bindings()
    for binding in bindings:
        await _ensure_default(registry, "ClusterRoleBinding", binding)
    names = {"clusterroles": {r["metadata"]["name"] for r in roles},
              "clusterrolebindings": {b["metadata"]["name"] for b in bindings}}
    for plural, expected in names.items():
        res = BY_KIND["ClusterRole" if plural == "clusterroles" else "ClusterRoleBinding"]
        cache = registry.caches[plural]
        for _ in range(1000):
            if all(res.key(None, n) in cache.objects for n in expected):
                break
            await asyncio.sleep(0.01)


async def bootstrap(registry: Registry, *, service_cidr: str, advertise_address: str, port: int) -> None:
    for name in SYSTEM_NAMESPACES:
        await _ensure(registry, "Namespace", None, {"metadata": {"name": name}})
    cluster_ip = str(IPNetwork(service_cidr)[1])
    labels = {"component": "apiserver", "provider": "kubernetes"}
    await _ensure(registry, "Service", "default", {
        "metadata": {"name": "kubernetes", "labels": labels},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    })
    await _ensure(registry, "Endpoints", "default", {
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise_address}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    })
    await _ensure(registry, "EndpointSlice", "default", {
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [advertise_address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    })
    await bootstrap_rbac(registry)
