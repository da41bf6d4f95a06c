"""The facts `kubesim graph` draws, gathered from a running cluster: its recorded topology (nodes,
addresses, pod CIDRs, the network mode, external hosts, the host link) and, through the admin
kubeconfig, the API's pods, Services and EndpointSlices. The shape is kubesim.graph.model's.

A cluster built with --network-only has no API: its facts say so in `notes` and hold no pods.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kubesim import components
from kubesim.errors import StateError
from kubesim.state import ClusterState
from netsim import names, namespaces


def gather(name: str, *, root: Path | None = None) -> dict[str, Any]:
    """The facts of cluster NAME. StateError when it does not exist; an API that does not answer is a
    note, not an error, so the network is still drawn."""
    state = ClusterState(name, root)
    topology = state.topology() if state.exists else None
    if topology is None:
        raise StateError(f"cluster {name!r} does not exist; bring it up with `kubesim up`")
    net = topology.network
    # What the kernel holds, beside what was recorded: a node namespace lost in a crash, or a pod the API
    # lists whose sandbox is gone, is drawn as such instead of as a healthy box.
    present = set(namespaces.list_names())
    facts: dict[str, Any] = {
        "cluster": name,
        "mode": net.mode,
        "network": {"nodeCIDR": net.node_cidr, "clusterCIDR": net.cluster_cidr, "serviceCIDR": net.service_cidr,
                    "hostAddress": net.host_address, "hostLink": names.host_link(name)},
        "nodes": [{"name": n.name, "role": n.role, "address": n.address, "podCIDR": n.pod_cidr,
                   "present": names.node_ns(name, n.name) in present} for n in topology.nodes],
        "externalHosts": [{"name": h.name, "address": h.address} for h in topology.external_hosts],
        "pods": [],
        "services": [],
        "notes": [],
    }
    kubeconfig = components.kubeconfig_path(state)
    if not kubeconfig.exists():
        facts["notes"].append("this cluster runs no control plane (--network-only): no pods or Services to show")
        return facts
    from control.client import KubeClientError

    try:
        pods, services, slices = _read_api(kubeconfig)
    except KubeClientError as exc:  # an apiserver that is down still leaves a network worth drawing
        facts["notes"].append(f"the apiserver did not answer ({type(exc).__name__}: {exc}); pods and Services "
                              "are not shown: `kubesim start apiserver` if it was stopped")
        return facts
    facts["pods"] = [pod_facts(p) for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    for pod in facts["pods"]:
        if pod["node"] and not pod["hostNetwork"] and pod["uid"]:
            pod["sandbox"] = names.pod_ns(name, pod["uid"]) in present
    facts["services"] = service_facts(services, slices)
    return facts


def _read_api(kubeconfig: Path) -> list[list[dict[str, Any]]]:
    from control.client import ENDPOINT_SLICES, PODS, SERVICES, load_kubeconfig

    async def read() -> list[list[dict[str, Any]]]:
        client = load_kubeconfig(kubeconfig, timeout=5)
        try:
            return [list((await client.list(kind)).get("items") or ()) for kind in (PODS, SERVICES, ENDPOINT_SLICES)]
        finally:
            await client.close()

    return asyncio.run(read())


def pod_facts(pod: dict[str, Any]) -> dict[str, Any]:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    return {"namespace": meta.get("namespace", "default"), "name": meta.get("name", ""), "uid": meta.get("uid"),
            "node": spec.get("nodeName"), "ip": status.get("podIP"), "hostNetwork": bool(spec.get("hostNetwork")),
            "phase": status.get("phase")}


def service_facts(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each Service with the endpoints its EndpointSlices list (found by the kubernetes.io/service-name
    label, as kube-proxy finds them)."""
    endpoints: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for piece in slices:
        meta = piece.get("metadata") or {}
        owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not owner:
            continue
        found = endpoints.setdefault((meta.get("namespace", "default"), owner), [])
        for endpoint in piece.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            pod = f"{ref.get('namespace', meta.get('namespace', 'default'))}/{ref['name']}" \
                if ref.get("kind") == "Pod" and ref.get("name") else None
            # Unset `ready` means ready (discovery.k8s.io/v1 EndpointConditions).
            ready = (endpoint.get("conditions") or {}).get("ready") is not False
            found += [{"ip": ip, "ready": ready, "pod": pod} for ip in endpoint.get("addresses") or []]
    out = []
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        key = (meta.get("namespace", "default"), meta.get("name", ""))
        out.append({"namespace": key[0], "name": key[1], "type": spec.get("type", "ClusterIP"),
                    "clusterIP": spec.get("clusterIP"), "externalName": spec.get("externalName"),
                    "ports": [{"port": p.get("port"), "protocol": p.get("protocol", "TCP"),
                               "targetPort": p.get("targetPort")} for p in spec.get("ports") or []],
                    "endpoints": _unique(endpoints.get(key, []))})
    return out


def _unique(endpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per address: a Service with several slices (or several address families) may list one twice."""
    seen: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        seen.setdefault(endpoint["ip"], endpoint)
    return list(seen.values())
