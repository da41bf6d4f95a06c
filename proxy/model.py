"""Kubernetes API objects (plain JSON dicts) -> the proxy's immutable view of them.

This is the shape kube-proxy keeps after its change trackers (pkg/proxy/serviceport.go
BaseServicePortInfo, pkg/proxy/endpoint.go BaseEndpointInfo): one `ServicePort` per port of a Service,
and per Service port the `Endpoint`s resolved from its EndpointSlices.

Objects that cannot be used are skipped with a logged reason (a bad object from the API must never stop
the proxy from programming every other Service); `parse_*` functions raise `ObjectError`, the
`services_from`/`endpoints_from` helpers log and skip.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, NamedTuple

from control.api.meta import labels_of
from proxy.errors import ObjectError
from proxy.gcpause import gc_paused

log = logging.getLogger(__name__)

Protocol = Literal["TCP", "UDP", "SCTP"]
PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")

# pkg/apis/core/v1/defaults.go: DefaultClientIPServiceAffinitySeconds = 10800 (3 hours).
DEFAULT_AFFINITY_SECONDS = 10800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ZONE_LABEL = "topology.kubernetes.io/zone"

JSON = Mapping[str, Any]


@dataclass(frozen=True, order=True)
class ServicePortName:
    namespace: str
    name: str
    port: str = ""

    def __str__(self) -> str:
        # The same text kube-proxy logs and comments with: "ns/name:port" (port name may be empty).
        return f"{self.namespace}/{self.name}:{self.port}"

    @property
    def service(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class ServicePort:
    name: ServicePortName
    protocol: Protocol
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    affinity_timeout: int | None = None  # seconds when sessionAffinity is ClientIP, else None
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @cached_property
    def key(self) -> str:
        """str(name), computed once: the plan and the renderer index by it at every sync."""
        return str(self.name)

    @property
    def externally_accessible(self) -> bool:
        # pkg/apis/core/v1/helper ExternallyAccessible: NodePort, LoadBalancer, or any externalIPs.
        return self.node_port != 0 or bool(self.external_ips) or bool(self.load_balancer_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        # serviceport.go UsesClusterEndpoints: even with ETP Local, cluster endpoints are needed for
        # the short-circuit of traffic from pods and from the node itself.
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)


class Endpoint(NamedTuple):
    # A NamedTuple, not a frozen dataclass: there are 50k of these at 10k services, and a frozen
    # dataclass's __init__ (object.__setattr__ per field) made parsing them the slowest part of a sync.
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    zone: str = ""
    zone_hints: tuple[str, ...] = ()  # hints.forZones[].name: the zones this endpoint is meant for

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    addresses: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def zone(self) -> str:
        return self.labels.get(ZONE_LABEL, "")


def _meta(obj: JSON, kind: str) -> tuple[str, str]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        raise ObjectError(f"{kind} without metadata.name: {str(obj)[:120]}")
    return str(meta.get("namespace") or "default"), str(meta["name"])


def _canonical_ipv4(value: Any) -> str | None:
    # inet_pton is strict dotted-quad (unlike inet_aton's "10.1" forms) and C-fast; ipaddress was a
    # third of a 10k-service sync.
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, str(value)))
    except (OSError, ValueError):
        return None


def _ipv4(value: Any, what: str) -> str:
    ip = _canonical_ipv4(value)
    if ip is None:
        raise ObjectError(f"{what}: {value!r} is not an IPv4 address")
    return ip


def _is_ipv4(value: Any) -> bool:
    return _canonical_ipv4(value) is not None


def _port(value: Any, what: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (0 if allow_zero else 1) <= value <= 65535:
        raise ObjectError(f"{what}: {value!r} is not a port number (1-65535)")
    return value


def _protocol(value: Any, what: str) -> Protocol:
    proto = "TCP" if value is None else str(value)
    for known in PROTOCOLS:
        if proto == known:
            return known
    raise ObjectError(f"{what}: protocol {value!r} is not one of TCP, UDP, SCTP")


def parse_service(obj: JSON) -> tuple[ServicePort, ...]:
    """The proxied ports of a core/v1 Service; () for headless and ExternalName services.

    Only IPv4 is proxied (the nftables table is `ip`); IPv6 cluster IPs are ignored like a single-stack
    IPv4 kube-proxy ignores them.
    """
    namespace, name = _meta(obj, "Service")
    where = f"Service {namespace}/{name}"
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ObjectError(f"{where}: no spec")
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type == "ExternalName":
        return ()
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if not cluster_ips or cluster_ips[0] == "None":
        return ()  # headless: DNS only, kube-proxy programs nothing (servicechangetracker.go).
    v4 = [ip for ip in cluster_ips if _is_ipv4(ip)]
    if not v4:
        if all(":" in str(ip) for ip in cluster_ips):
            return ()  # IPv6-only service: another family's proxier owns it.
        raise ObjectError(f"{where}: spec.clusterIP {cluster_ips[0]!r} is not an IP address")
    cluster_ip = _ipv4(v4[0], f"{where}: spec.clusterIP")
    external_ips = tuple(str(ip) for ip in spec.get("externalIPs") or () if _is_ipv4(ip))
    lb_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    if svc_type == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
        # ipMode "Proxy" means the load balancer proxies to the node: kube-proxy must not capture the
        # VIP (KEP-1860, serviceport.go newBaseServiceInfo).
        lb_ips = tuple(
            str(i["ip"]) for i in ingress
            if isinstance(i, Mapping) and _is_ipv4(i.get("ip")) and i.get("ipMode", "VIP") == "VIP"
        )
        for cidr in spec.get("loadBalancerSourceRanges") or ():
            try:
                network = ipaddress.ip_network(str(cidr).strip(), strict=False)
            except ValueError:
                raise ObjectError(f"{where}: loadBalancerSourceRanges {cidr!r} is not a CIDR") from None
            if network.version == 4:
                source_ranges += (str(network),)
    affinity_timeout: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity_timeout = int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
        if not 0 < affinity_timeout <= 86400:
            raise ObjectError(f"{where}: sessionAffinityConfig timeoutSeconds must be in 1..86400")
    etp_local = spec.get("externalTrafficPolicy") in ("Local", "OnlyLocal")
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    ports = spec.get("ports") or ()
    if not ports:
        raise ObjectError(f"{where}: spec.ports is empty")
    out: list[ServicePort] = []
    for i, port in enumerate(ports):
        pwhere = f"{where}: spec.ports[{i}]"
        if not isinstance(port, Mapping):
            raise ObjectError(f"{pwhere}: not an object")
        node_port = 0
        if svc_type in ("NodePort", "LoadBalancer") and port.get("nodePort"):
            node_port = _port(port["nodePort"], f"{pwhere}.nodePort")
        out.append(ServicePort(
            name=ServicePortName(namespace, name, str(port.get("name") or "")),
            protocol=_protocol(port.get("protocol"), pwhere),
            cluster_ip=cluster_ip,
            port=_port(port.get("port"), f"{pwhere}.port"),
            node_port=node_port,
            external_ips=external_ips,
            load_balancer_ips=lb_ips,
            load_balancer_source_ranges=source_ranges,
            affinity_timeout=affinity_timeout,
            # serviceport.go: externalPolicyLocal only matters for externally accessible services.
            external_policy_local=etp_local and (svc_type in ("NodePort", "LoadBalancer") or bool(external_ips)),
            internal_policy_local=itp_local,
            health_check_node_port=int(spec.get("healthCheckNodePort") or 0) if etp_local else 0,
        ))
    return tuple(out)


@dataclass(frozen=True)
class SliceEndpoints:
    """What one EndpointSlice says: for its service, per (port name, protocol), its endpoints."""

    service: tuple[str, str]
    ports: Mapping[tuple[str, Protocol], tuple[Endpoint, ...]]


def _condition(conditions: Mapping[str, Any], key: str, default: bool) -> bool:
    value = conditions.get(key)
    return default if value is None else bool(value)


def _zone_hints(hints: Any) -> tuple[str, ...]:
    zones = hints.get("forZones") if isinstance(hints, Mapping) else None
    return tuple(str(z["name"]) for z in zones or () if isinstance(z, Mapping) and z.get("name"))


def parse_endpoint_slice(obj: JSON) -> SliceEndpoints | None:
    """A discovery.k8s.io/v1 EndpointSlice; None for slices a v4 proxy ignores (IPv6, FQDN)."""
    namespace, name = _meta(obj, "EndpointSlice")
    where = f"EndpointSlice {namespace}/{name}"
    if obj.get("addressType", "IPv4") != "IPv4":
        return None
    labels = labels_of(obj)
    service = labels.get(SERVICE_NAME_LABEL)
    if not service:
        raise ObjectError(f"{where}: no {SERVICE_NAME_LABEL} label, so no Service owns it")
    ports: dict[tuple[str, Protocol], list[Endpoint]] = {}
    for i, port in enumerate(obj.get("ports") or ()):
        if not isinstance(port, Mapping) or port.get("port") is None:
            # A slice port without a number means "all ports" for selector-less services; kube-proxy
            # skips it (endpointslicecache.go: "ignoring invalid endpoint port").
            log.warning("%s: ports[%d] has no port number; ignored", where, i)
            continue
        key = (str(port.get("name") or ""), _protocol(port.get("protocol"), f"{where}: ports[{i}]"))
        number = _port(port["port"], f"{where}: ports[{i}].port")
        eps = ports.setdefault(key, [])
        for j, ep in enumerate(obj.get("endpoints") or ()):
            addresses = ep.get("addresses") or ()
            if not addresses:
                raise ObjectError(f"{where}: endpoints[{j}] has no addresses")
            conditions = ep.get("conditions") or {}
            # endpointslicecache.go: ready nil => true; serving nil => ready; terminating nil => false.
            ready = _condition(conditions, "ready", True)
            eps.append(Endpoint(
                # kube-proxy uses only the first address (EndpointSlice API: all are fungible).
                ip=_ipv4(addresses[0], f"{where}: endpoints[{j}].addresses[0]"),
                port=number,
                ready=ready,
                serving=_condition(conditions, "serving", ready),
                terminating=_condition(conditions, "terminating", False),
                # Interned: 50k endpoints name a few hundred nodes and zones (a copy each from the JSON).
                node_name=sys.intern(str(ep.get("nodeName") or "")),
                zone=sys.intern(str(ep.get("zone") or "")),
                zone_hints=_zone_hints(ep.get("hints")),
            ))
    return SliceEndpoints(service=(sys.intern(namespace), sys.intern(str(service))),
                          ports={k: tuple(v) for k, v in ports.items()})


def parse_node(obj: JSON) -> NodeInfo:
    _, name = _meta(obj, "Node")
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    addresses = tuple(
        str(a["address"]) for a in status.get("addresses") or ()
        if a.get("type") in ("InternalIP", "ExternalIP") and _is_ipv4(a.get("address"))
    )
    pod_cidrs = tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    labels = labels_of(obj)
    return NodeInfo(name=name, addresses=addresses, pod_cidrs=pod_cidrs,
                    labels={str(k): str(v) for k, v in labels.items()})


@gc_paused
def services_from(objects: Iterable[JSON]) -> tuple[ServicePort, ...]:
    """Every proxied port of every usable Service; unusable ones are logged and skipped."""
    out: list[ServicePort] = []
    for obj in objects:
        try:
            out.extend(parse_service(obj))
        except ObjectError as err:
            log.warning("skipping service: %s", err)
    return tuple(out)


@gc_paused  # 10k slices make ~100k objects, none of them cyclic garbage (see gcpause.py)
def slices_from(objects: Iterable[JSON]) -> tuple[SliceEndpoints, ...]:
    out: list[SliceEndpoints] = []
    for obj in objects:
        try:
            parsed = parse_endpoint_slice(obj)
        except ObjectError as err:
            log.warning("skipping endpoint slice: %s", err)
            continue
        if parsed is not None:
            out.append(parsed)
    return tuple(out)


def endpoints_for(
    port: ServicePort, slices: Iterable[SliceEndpoints]
) -> tuple[Endpoint, ...]:
    """The endpoints of one service port, merged across its slices.

    An address may appear in several slices while the controller moves it; kube-proxy keeps one entry
    per ip:port (endpointslicecache.go addEndpoints), and so do we, preferring a ready copy.
    """
    merged: dict[str, Endpoint] = {}
    key = (port.name.port, port.protocol)
    for s in slices:
        if s.service != port.name.service:
            continue
        for ep in s.ports.get(key, ()):
            held = merged.get(ep.address)
            if held is None or (ep.ready and not held.ready):
                merged[ep.address] = ep
    return tuple(sorted(merged.values()))
