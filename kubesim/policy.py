"""`kubesim policy`: who may talk to whom, and why, from the NetworkPolicies themselves.

No packet is sent: the cluster's policies (NetworkPolicies, AdminNetworkPolicies and the
BaselineAdminNetworkPolicy), pods, namespaces and nodes are read through the admin
kubeconfig and judged by netpol.decide, the semantics the agents' kernel rules are tested against.
A destination that is a Service's ClusterIP is judged on each of its endpoints, as the kernel judges
it after kube-proxy's DNAT.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubesim.errors import PolicyQueryError
from netpol.admin import parse_anp, parse_banp
from netpol.decide import ClusterView, Verdict, decide
from netpol.model import node_addresses, parse_all, parse_namespace, parse_pod, parse_policy


@dataclass
class Snapshot:
    view: ClusterView
    services: list[dict[str, Any]]
    slices: list[dict[str, Any]]


def snapshot(kubeconfig: Path) -> Snapshot:
    from control.client import (
        ADMIN_NETWORK_POLICIES,
        BASELINE_ADMIN_NETWORK_POLICIES,
        ENDPOINT_SLICES,
        NAMESPACES,
        NETWORK_POLICIES,
        NODES,
        PODS,
        SERVICES,
        KubeClientError,
        load_kubeconfig,
    )

    async def read() -> list[list[dict[str, Any]]]:
        client = load_kubeconfig(kubeconfig, timeout=5)
        try:
            kinds = (NETWORK_POLICIES, PODS, NAMESPACES, NODES, SERVICES, ENDPOINT_SLICES, ADMIN_NETWORK_POLICIES,
                     BASELINE_ADMIN_NETWORK_POLICIES)
            return [list((await client.list(kind)).get("items") or ()) for kind in kinds]
        finally:
            await client.close()

    if not kubeconfig.exists():
        raise PolicyQueryError(f"no kubeconfig at {kubeconfig}: this cluster runs no control plane")
    try:
        policies, pods, namespaces, nodes, services, slices, anps, banps = asyncio.run(read())
    except KubeClientError as exc:
        raise PolicyQueryError(f"reading the cluster's objects: {exc}") from None
    view = ClusterView(
        policies=parse_all(policies, parse_policy), pods=parse_all(pods, parse_pod),
        namespaces=parse_all(namespaces, parse_namespace), nodes=dict(parse_all(nodes, node_addresses)),
        admin=[*parse_all(anps, parse_anp), *parse_all(banps, parse_banp)],
    )
    return Snapshot(view, services, slices)


def resolve(snap: Snapshot, text: str) -> str:
    """An address, or a pod as NAMESPACE/NAME or NAME (namespace default), -> its address."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    namespace, _, name = text.rpartition("/")
    namespace = namespace or "default"
    for pod in snap.view.pods:
        if pod.namespace == namespace and pod.name == name:
            return str(pod.ips[0])
    raise PolicyQueryError(f"no running pod {namespace}/{name} with an address (give NAMESPACE/NAME or an IP)")


def label(snap: Snapshot, ip: str) -> str:
    pod = snap.view.pod_by_ip.get(ipaddress.ip_address(ip))
    return f"{pod.key} ({ip})" if pod else ip


def endpoints_behind(snap: Snapshot, ip: str, port: int, protocol: str) -> list[tuple[str, int]] | None:
    """(endpoint address, target port) behind a ClusterIP:port, or None when IP is no Service's."""
    for svc in snap.services:
        spec = svc.get("spec") or {}
        if ip not in (spec.get("clusterIPs") or [spec.get("clusterIP")]):
            continue
        meta = svc.get("metadata") or {}
        ports = [p for p in spec.get("ports") or () if p.get("port") == port and p.get("protocol", "TCP") == protocol]
        if not ports:
            raise PolicyQueryError(f"Service {meta.get('namespace')}/{meta.get('name')} has no {protocol} port {port}")
        out: list[tuple[str, int]] = []
        for eps in snap.slices:
            eps_meta = eps.get("metadata") or {}
            if eps_meta.get("namespace") != meta.get("namespace") or \
                    (eps_meta.get("labels") or {}).get("kubernetes.io/service-name") != meta.get("name"):
                continue
            wanted = ports[0].get("name", "")
            target = next((p.get("port") for p in eps.get("ports") or () if p.get("name", "") == wanted), None)
            if target is None:
                continue
            for endpoint in eps.get("endpoints") or ():
                out.extend((address, int(target)) for address in endpoint.get("addresses") or ())
        return out
    return None


def explain(snap: Snapshot, src: str, dst: str, protocol: str) -> list[Verdict]:
    """Verdicts for SRC -> DST (DST is ADDRESS:PORT or POD:PORT; a ClusterIP gives one per endpoint)."""
    target, sep, port_text = dst.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise PolicyQueryError(f"destination {dst!r} must be ADDRESS:PORT or NAMESPACE/POD:PORT")
    port = int(port_text)
    src_ip, dst_ip = resolve(snap, src), resolve(snap, target)
    behind = endpoints_behind(snap, dst_ip, port, protocol)
    if behind is None:
        return [decide(snap.view, src_ip, dst_ip, protocol, port)]
    if not behind:
        raise PolicyQueryError(f"{dst} is a Service without endpoints: kube-proxy refuses it before any policy")
    return [decide(snap.view, src_ip, ip, protocol, target_port) for ip, target_port in behind]


def render_verdict(snap: Snapshot, verdict: Verdict) -> list[str]:
    word = "allowed" if verdict.allowed else "DENIED"
    lines = [f"{label(snap, verdict.src)} -> {label(snap, verdict.dst)} {verdict.protocol}/{verdict.port}: {word}"]
    for side in (verdict.egress, verdict.ingress):
        lines.append(f"  {side.direction.lower():8} {side.reason}")
    return lines


def verdict_json(snap: Snapshot, verdict: Verdict) -> dict[str, Any]:
    def side(s: Any) -> dict[str, Any]:
        rule = {"policy": s.rule.policy, "direction": s.rule.direction, "index": s.rule.index} if s.rule else None
        if rule is not None and s.rule.action:
            rule["action"] = s.rule.action  # an admin policy's rule: Allow, Deny or Pass
        return {"allowed": s.allowed, "isolated": s.isolated, "reason": s.reason, "rule": rule,
                "policies": list(s.policies)}

    return {"src": verdict.src, "dst": verdict.dst, "srcName": label(snap, verdict.src),
            "dstName": label(snap, verdict.dst), "protocol": verdict.protocol, "port": verdict.port,
            "allowed": verdict.allowed, "egress": side(verdict.egress), "ingress": side(verdict.ingress)}


def matrix(snap: Snapshot, namespace: str, port: int, protocol: str) -> str:
    """The reachability of NAMESPACE's pods among themselves, drawn as upstream's e2e truth tables:
    '.' allowed, 'X' denied; rows are sources, columns destinations."""
    names, allowed = _matrix(snap, namespace, port, protocol)
    lines = ["-\t" + "\t".join(names)]
    for src in names:
        lines.append(f"{src}\t" + "\t".join("." if allowed[src][dst] else "X" for dst in names))
    return "\n".join(lines)


def matrix_json(snap: Snapshot, namespace: str, port: int, protocol: str) -> dict[str, Any]:
    """The same matrix as data: allowed[source][destination] for NAMESPACE's pods."""
    names, allowed = _matrix(snap, namespace, port, protocol)
    return {"namespace": namespace, "port": port, "protocol": protocol, "pods": names, "allowed": allowed}


def _matrix(snap: Snapshot, namespace: str, port: int, protocol: str) -> tuple[list[str], dict[str, dict[str, bool]]]:
    pods = sorted((p for p in snap.view.pods if p.namespace == namespace and not p.host_network),
                  key=lambda p: p.name)
    if not pods:
        raise PolicyQueryError(f"namespace {namespace!r} has no running pods with addresses")
    allowed = {src.name: {dst.name: decide(snap.view, str(src.ips[0]), str(dst.ips[0]), protocol, port).allowed
                          for dst in pods} for src in pods}
    return [p.name for p in pods], allowed
