"""What kube-apiserver makes for itself at start: the system namespaces and the `kubernetes` Service
with its Endpoints and EndpointSlice pointing at the apiserver (pkg/controlplane's bootstrap
controller). Idempotent: existing objects are left as they are."""

from __future__ import annotations

from netaddr import IPNetwork

from control.apiserver.errors import APIError
from control.apiserver.registry import Registry
from control.apiserver.resources import BY_KIND

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
        await registry.create(resource, namespace, body)
    except APIError as exc:
        if exc.code != 409:  # another apiserver made it meanwhile
            raise


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
