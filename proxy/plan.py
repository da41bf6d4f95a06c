"""The pure heart of the proxy: (services, endpoint slices, node) -> what each service port must do.

No I/O and no backend syntax here: `plan()` decides, the backends render. The decisions follow
kube-proxy's own (pkg/proxy/topology.go CategorizeEndpoints; pkg/proxy/nftables/proxier.go and
pkg/proxy/iptables/proxier.go syncProxyRules), so that both of our backends behave the same:

- Endpoints: ready ones; if none is ready anywhere, the serving+terminating ones; never non-serving.
  Local ("this node's") endpoints follow the same fallback on their own.
- ClusterIP traffic goes to the cluster endpoints, or to the local ones under internalTrafficPolicy
  Local. External traffic (NodePort, externalIPs, LoadBalancer) goes to the cluster endpoints, or to the
  local ones under externalTrafficPolicy Local, where pods and the node itself short-circuit to the
  cluster endpoints.
- No endpoints at all: REJECT. Endpoints only elsewhere under a Local policy: DROP.
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from proxy.gcpause import gc_paused
from proxy.model import Endpoint, NodeInfo, ServicePort, SliceEndpoints, endpoints_for

Verdict = Literal["dnat", "reject", "drop"]

# kube-proxy's default --masquerade-bit 14 (pkg/proxy/apis/config/v1alpha1 defaults).
DEFAULT_MASQUERADE_MARK = 0x4000


@dataclass(frozen=True)
class NodeContext:
    """What the proxy knows about the node it runs on, and its flags."""

    name: str
    node_ips: tuple[str, ...] = ()
    # The cluster (pod) CIDR: kube-proxy's --cluster-cidr local-traffic detector. Empty: no detector,
    # so off-cluster ClusterIP traffic is not masqueraded and pods do not short-circuit ETP Local.
    cluster_cidrs: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    # --nodeport-addresses: CIDRs selecting which node IPs accept NodePorts; empty = all node IPs
    # (kube-proxy's "primary" default for nftables mode).
    nodeport_addresses: tuple[str, ...] = ()
    masquerade_all: bool = False
    masquerade_mark: int = DEFAULT_MASQUERADE_MARK
    zone: str = ""  # the node's topology.kubernetes.io/zone label: which endpoint hints apply here

    @classmethod
    def from_node(cls, node: NodeInfo, **flags: Any) -> NodeContext:
        """The context for a Node object (its name, addresses and zone) plus the proxy's flags."""
        return cls(name=node.name, node_ips=node.addresses, zone=node.zone, **flags)

    @property
    def nodeport_ips(self) -> tuple[str, ...]:
        if not self.nodeport_addresses:
            return tuple(ip for ip in self.node_ips if not ipaddress.IPv4Address(ip).is_loopback)
        nets = [ipaddress.ip_network(c, strict=False) for c in self.nodeport_addresses]
        # Loopback NodePorts are not supported in nftables mode (proxier.go setupNFTables).
        return tuple(
            ip for ip in self.node_ips
            if any(ipaddress.ip_address(ip) in n for n in nets) and not ipaddress.ip_address(ip).is_loopback
        )


@dataclass(frozen=True)
class ServicePlan:
    """The decisions for one service port on one node."""

    port: ServicePort
    cluster_endpoints: tuple[Endpoint, ...]
    local_endpoints: tuple[Endpoint, ...]
    has_endpoints: bool
    # Where ClusterIP traffic goes, or what happens to it when there is nowhere to go.
    internal_endpoints: tuple[Endpoint, ...]
    internal_verdict: Verdict
    # Where external traffic that is not short-circuited goes.
    external_endpoints: tuple[Endpoint, ...]
    external_verdict: Verdict
    # Source CIDRs allowed to reach the LoadBalancer IPs; () = no firewall.
    firewall_sources: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.port.key

    @property
    def captures_external(self) -> bool:
        """External destinations get dispatched (even with no external endpoints: short-circuits)."""
        return self.has_endpoints and self.port.externally_accessible

    @property
    def short_circuits(self) -> bool:
        """Under ETP Local, pods and the node reach external destinations via the cluster endpoints."""
        return self.port.external_policy_local

    @property
    def reachable_endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint some traffic of this port may be sent to (kube-proxy's allLocallyReachable)."""
        seen = dict.fromkeys(self.internal_endpoints)
        if self.captures_external:
            seen.update(dict.fromkeys(self.external_endpoints))
            if self.short_circuits:
                seen.update(dict.fromkeys(self.cluster_endpoints))
        return tuple(sorted(seen))


@dataclass(frozen=True)
class ProxyPlan:
    node: NodeContext
    services: tuple[ServicePlan, ...]

    @cached_property
    def by_name(self) -> Mapping[str, ServicePlan]:
        return {s.name: s for s in self.services}

    @cached_property
    def by_service(self) -> Mapping[tuple[str, str], tuple[str, ...]]:
        """(namespace, name) of a Service -> the names of its ports' plans."""
        out: dict[tuple[str, str], tuple[str, ...]] = {}
        for s in self.services:
            out[s.port.name.service] = (*out.get(s.port.name.service, ()), s.name)
        return out

    @classmethod
    def of(cls, node: NodeContext, by_name: dict[str, ServicePlan],
           by_service: dict[tuple[str, str], tuple[str, ...]] | None = None,
           base: tuple[ProxyPlan, frozenset[str]] | None = None) -> ProxyPlan:
        """The plan of BY_NAME's service ports, in name order, with the indexes already made kept. BASE:
        the plan this one was made from and the names of the port plans that may differ from it."""
        made = cls(node=node, services=tuple(by_name[k] for k in sorted(by_name)))
        made.__dict__["by_name"] = by_name  # what cached_property would compute, known already
        if by_service is not None:
            made.__dict__["by_service"] = by_service
        if base is not None:
            # Weakly: a chain of plans each holding the one before would never be freed.
            made.__dict__["_base"] = (weakref.ref(base[0]), base[1])
        return made

    def changes_since(self, other: ProxyPlan) -> frozenset[str] | None:
        """The names of the port plans that may differ from OTHER's, when this plan was made from OTHER
        by replan(); None when that is not known (compare every port plan)."""
        base = self.__dict__.get("_base")
        return base[1] if base is not None and base[0]() is other else None

    def service(self, name: str) -> ServicePlan:
        return self.by_name[name]

    @property
    def no_local_endpoints_internal(self) -> int:
        """kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}."""
        return sum(1 for s in self.services if s.has_endpoints and s.internal_verdict == "drop")

    @property
    def no_local_endpoints_external(self) -> int:
        return sum(1 for s in self.services
                   if s.has_endpoints and s.port.externally_accessible and s.external_verdict == "drop")


def can_use_topology(endpoints: Iterable[Endpoint], zone: str) -> bool:
    """topology.go canUseTopology: only if every ready endpoint carries zone hints (one without would
    be left out everywhere) and at least one is hinted for this node's zone (else no traffic here)."""
    for_this_zone = False
    for ep in endpoints:
        if not ep.ready:
            continue
        if not ep.zone_hints:
            return False
        for_this_zone = for_this_zone or (bool(zone) and zone in ep.zone_hints)
    return for_this_zone


def _is_local(ep: Endpoint, node: NodeContext) -> bool:
    return ep.node_name == node.name


def categorize_endpoints(
    endpoints: Iterable[Endpoint], port: ServicePort, node: NodeContext
) -> tuple[tuple[Endpoint, ...], tuple[Endpoint, ...], bool]:
    """(cluster endpoints, local endpoints, has any usable endpoint) as topology.go CategorizeEndpoints.

    With zone hints (the EndpointSlice controller sets them for `trafficDistribution: PreferClose`),
    the cluster endpoints are the ready ones hinted for this node's zone, when `can_use_topology` says
    the hints are usable here; otherwise every ready endpoint.
    """
    eps = tuple(endpoints)
    cluster: tuple[Endpoint, ...] = ()
    has_any = False
    if port.uses_cluster_endpoints:
        if can_use_topology(eps, node.zone):
            cluster = tuple(ep for ep in eps if ep.ready and node.zone in ep.zone_hints)
        else:
            cluster = tuple(ep for ep in eps if ep.ready)
        if not cluster:
            # Fall back to terminating endpoints that still serve, so that a rolling update or a
            # scale-down does not black-hole connections (KEP-1669).
            cluster = tuple(ep for ep in eps if ep.serving and ep.terminating)
        has_any = bool(cluster)
    if not port.uses_local_endpoints:
        return cluster, (), has_any
    local_ready = tuple(ep for ep in eps if ep.ready and _is_local(ep, node))
    local_terminating = tuple(ep for ep in eps if not ep.ready and ep.serving and ep.terminating
                              and _is_local(ep, node))
    has_any = has_any or any(ep.ready or (ep.serving and ep.terminating) for ep in eps)
    return cluster, local_ready or local_terminating, has_any


def _firewall_sources(port: ServicePort, node: NodeContext) -> tuple[str, ...]:
    if not port.load_balancer_ips or not port.load_balancer_source_ranges:
        return ()
    sources = list(port.load_balancer_source_ranges)
    nets = [ipaddress.ip_network(c) for c in sources]
    # A VIP-style load balancer may put the VIP on the node itself; the node's own requests to the VIP
    # then loop back with the VIP as source, so a range covering the node allows the VIPs too
    # (nftables/proxier.go "allowFromNode").
    if any(ipaddress.ip_address(ip) in n for ip in node.node_ips for n in nets):
        sources.extend(f"{ip}/32" for ip in port.load_balancer_ips)
    return tuple(dict.fromkeys(sources))


def plan_service(port: ServicePort, endpoints: Iterable[Endpoint], node: NodeContext) -> ServicePlan:
    cluster, local, has_any = categorize_endpoints(endpoints, port, node)
    if not has_any:
        # REJECT: an immediate "connection refused" rather than a timeout.
        return ServicePlan(port, (), (), False, (), "reject", (), "reject", _firewall_sources(port, node))
    internal = local if port.internal_policy_local else cluster
    external = local if port.external_policy_local else cluster
    return ServicePlan(
        port=port,
        cluster_endpoints=cluster,
        local_endpoints=local,
        has_endpoints=True,
        internal_endpoints=internal,
        # Endpoints exist, just not here: DROP rather than REJECT, as kube-proxy does, because a
        # client elsewhere (or the load balancer's health check) must not be told "refused".
        internal_verdict="dnat" if internal else "drop",
        external_endpoints=external,
        external_verdict="dnat" if external else "drop",
        firewall_sources=_firewall_sources(port, node),
    )


@gc_paused
def plan(
    services: Iterable[ServicePort],
    endpoint_slices: Iterable[SliceEndpoints],
    node: NodeContext,
    *,
    previous: ProxyPlan | None = None,
    changed: Collection[tuple[str, str]] | None = None,
) -> ProxyPlan:
    """Decide, for every service port, where its traffic goes on `node`. Pure and deterministic.

    With `previous` and `changed` (the (namespace, name) of Services whose Service or EndpointSlices
    changed since `previous`, as kube-proxy's change trackers record them), the plans of all other
    service ports are reused as they are: the result is the same, only cheaper.
    """
    reuse: Mapping[str, ServicePlan] = {}
    if previous is not None and changed is not None and previous.node == node:
        reuse = previous.by_name
    dirty = frozenset(changed or ())
    plans: dict[str, ServicePlan] = {}
    todo: list[ServicePort] = []
    for port in services:
        key = port.key
        if key in plans:
            continue  # a Service lists each port name once; a duplicate is a bad object, first one wins
        held = reuse.get(key)
        if held is not None and (held.port is port or held.port == port) and port.name.service not in dirty:
            plans[key] = held
        else:
            todo.append(port)
    if todo:
        wanted = {port.name.service for port in todo}
        by_service: dict[tuple[str, str], list[SliceEndpoints]] = {}
        for s in endpoint_slices:
            if s.service in wanted:
                by_service.setdefault(s.service, []).append(s)
        for port in todo:
            if port.key not in plans:
                plans[port.key] = plan_service(port, endpoints_for(port, by_service.get(port.name.service, ())), node)
    return ProxyPlan.of(node, plans)


def replan(previous: ProxyPlan, changed: Mapping[tuple[str, str], tuple[tuple[ServicePort, ...],
                                                                       tuple[SliceEndpoints, ...]]]) -> ProxyPlan:
    """`plan()` of everything, from PREVIOUS and the Services that changed since it: CHANGED maps each
    (namespace, name) whose Service or EndpointSlices changed to its ports and slices now (no ports: the
    Service is gone). The same result as planning everything again, in time proportional to the change
    (kube-proxy's change trackers applied to its ServicePortMap and EndpointsMap)."""
    node = previous.node
    by_name = dict(previous.by_name)
    by_service = dict(previous.by_service)
    touched: set[str] = set()
    for service, (ports, slices) in changed.items():
        for name in by_service.pop(service, ()):
            del by_name[name]
            touched.add(name)
        names: list[str] = []
        for port in ports:
            if port.key not in by_name:  # a port name twice in one Service: the first one wins, as in plan()
                by_name[port.key] = plan_service(port, endpoints_for(port, slices), node)
                names.append(port.key)
        if names:
            by_service[service] = tuple(names)
        touched.update(names)
    return ProxyPlan.of(node, by_name, by_service, base=(previous, frozenset(touched)))
