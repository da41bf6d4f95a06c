"""kube-proxy for kubesim: Kubernetes objects -> a pure plan -> nftables rules.

    model     API JSON (Service, EndpointSlice, Node) -> ServicePort, Endpoint, NodeInfo
    plan      plan(services, slices, NodeContext) -> ProxyPlan (kube-proxy's decisions, no I/O)
    nftables  the nftables backend (layout, renderer, backend) over firewall.nftables' seam and fake
    iptables  the iptables backend, likewise over firewall.iptables
    errors    ProxyError tree (its NftError / IptablesError are also firewall.errors')
"""

from proxy.errors import FakeNftError, IptablesError, NftError, ObjectError, ProxyError
from proxy.model import (
    Endpoint,
    NodeInfo,
    ServicePort,
    ServicePortName,
    SliceEndpoints,
    parse_endpoint_slice,
    parse_node,
    parse_service,
    services_from,
    slices_from,
)
from proxy.plan import NodeContext, ProxyPlan, ServicePlan, categorize_endpoints, plan, replan

__all__ = [
    "Endpoint",
    "FakeNftError",
    "IptablesError",
    "NftError",
    "NodeContext",
    "NodeInfo",
    "ObjectError",
    "ProxyError",
    "ProxyPlan",
    "ServicePlan",
    "ServicePort",
    "ServicePortName",
    "SliceEndpoints",
    "categorize_endpoints",
    "parse_endpoint_slice",
    "parse_node",
    "parse_service",
    "plan",
    "replan",
    "services_from",
    "slices_from",
]
