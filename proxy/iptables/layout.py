"""ProxyPlan -> kube-proxy's iptables layout (pkg/proxy/iptables/proxier.go syncProxyRules).

Chains, all created and owned by us:

    nat     KUBE-SERVICES    dispatch on ClusterIP / externalIP / LoadBalancer IP; last rule -> KUBE-NODEPORTS
            KUBE-NODEPORTS   dispatch on node ports
            KUBE-SVC-<hash>  a service port's cluster endpoints (statistic --mode random --probability 1/N)
            KUBE-SVL-<hash>  its node-local endpoints (internal/externalTrafficPolicy Local)
            KUBE-EXT-<hash>  external destinations: masquerade, or under ETP Local the short-circuit of pods
                             (cluster CIDR) and of the node (addrtype LOCAL) to KUBE-SVC
            KUBE-FW-<hash>   loadBalancerSourceRanges: allowed sources -> KUBE-EXT, the rest falls through
            KUBE-SEP-<hash>  one endpoint: hairpin masquerade (-s <endpoint>), affinity (recent --set), DNAT
            KUBE-MARK-MASQ / KUBE-POSTROUTING   mark 0x4000, MASQUERADE --random-fully in postrouting
    filter  KUBE-SERVICES / KUBE-EXTERNAL-SERVICES   REJECT (no endpoints) / DROP (Local, none here)
            KUBE-PROXY-FIREWALL  DROP what KUBE-FW-* did not DNAT;  KUBE-NODEPORTS  health-check node ports
            KUBE-FORWARD     conntrack INVALID drop, accept marked and established traffic

Chain names hash "ns/name:port" + protocol as upstream (portProtoHash: base32(sha256)[:16]), so
`iptables-save` of a kubesim node reads like one of a real node.

By default (`endpoint_chains="all"`) that is upstream's layout exactly. `endpoint_chains="local"` is an
option for fewer chains: a KUBE-SEP chain only for this node's endpoints — the only ones whose own
traffic can reach this node's nat PREROUTING un-DNATed, i.e. the only ones that can hairpin — while
remote endpoints are DNATed straight from the KUBE-SVC/KUBE-SVL rule (statistic, recent and DNAT in one
rule; iptables evaluates matches left to right, so `recent --set` only runs for the chosen endpoint).
Affinity lists keep the KUBE-SEP-<hash> names either way. Measured here at 10,000 services x 5
endpoints with iptables-nft: full sync 8.9 s with upstream's layout (60k chains), 3.4 s with "local"
(10k chains); see firewall/iptables/runner.py for why iptables-nft's restore time depends on the chain
count at all. `endpoint_chains="auto"` (the proxy's default with iptables-nft) is upstream's layout up to
upstream's own large-cluster threshold (LARGE_CLUSTER_ENDPOINTS endpoints, where upstream already drops
the endpoint rules' comments to cut restore time) and "local" above it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from firewall.iptables.ruleset import FILTER, NAT, Jump, comment
from proxy.model import Endpoint
from proxy.plan import NodeContext, ServicePlan

EndpointChains = Literal["all", "local", "auto"]

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"

# The chains every sync rewrites whole (declaring a chain in iptables-restore --noflush flushes it).
TOP_CHAINS: dict[str, tuple[str, ...]] = {
    FILTER: (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL),
    NAT: (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ),
}
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")

# upstream: largeClusterEndpointsThreshold — above it, per-endpoint comments are left out (~40% less text).
LARGE_CLUSTER_ENDPOINTS = 1000


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)


_NEW = "-m conntrack --ctstate NEW"

# In upstream's order; each is prepended (EnsureRule Prepend), so the last listed ends up first.
JUMPS: tuple[Jump, ...] = (
    Jump(FILTER, "INPUT", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
    Jump(FILTER, "FORWARD", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
    Jump(FILTER, "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    Jump(FILTER, "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    Jump(FILTER, "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    Jump(FILTER, "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    Jump(FILTER, "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump(FILTER, "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump(FILTER, "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump(NAT, "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    Jump(NAT, "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    Jump(NAT, "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
)


def _b32_hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """upstream portProtoHash: base32(sha256("ns/name:port" + "tcp"))[:16] (chain names cap at 28 chars)."""
    return _b32_hash(service_port_name + protocol)


def endpoint_chain(service_port_name: str, protocol: str, ep: Endpoint) -> str:
    """upstream servicePortEndpointChainName: KUBE-SEP- + base32(sha256(name + protocol + "ip:port"))[:16]."""
    return "KUBE-SEP-" + _b32_hash(f"{service_port_name}{protocol}{ep.ip}:{ep.port}")


def mark_text(mark: int) -> str:
    # upstream: fmt.Sprintf("%#08x", 1<<masqueradeBit) == "0x004000".
    return f"{mark:#08x}"


def static_rules(node: NodeContext) -> dict[tuple[str, str], list[str]]:
    """Rules of the top-level chains that do not depend on services (head or tail, see `TAIL`)."""
    mark = mark_text(node.masquerade_mark)
    return {
        (NAT, KUBE_POSTROUTING): [
            f"-m mark ! --mark {mark}/{mark} -j RETURN",
            # Clear the mark so a packet re-traversing the stack (e.g. via a tunnel) is not masqueraded twice.
            f"-j MARK --xor-mark {mark}",
            f"{comment('kubernetes service traffic requiring SNAT')} -j MASQUERADE --random-fully",
        ],
        (NAT, KUBE_MARK_MASQ): [f"-j MARK --or-mark {mark}"],
        (FILTER, KUBE_FORWARD): [
            # Out-of-window packets conntrack calls INVALID would otherwise reach the pod un-NATed and be
            # answered with a RST (kubernetes#74839).
            "-m conntrack --ctstate INVALID -j DROP",
            f"{comment('kubernetes forwarding rules')} -m mark --mark {mark}/{mark} -j ACCEPT",
            f"{comment('kubernetes forwarding conntrack rule')} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ],
    }


def tail_rules(node: NodeContext) -> list[str]:
    """nat KUBE-SERVICES' last rules: the node ports (after every service IP, upstream's "NOTE")."""
    note = comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    if not node.nodeport_addresses:
        # iptables mode accepts node ports on every local address when --nodeport-addresses is unset;
        # localhost node ports need route_localnet, which we do not set (upstream !localhostNodePorts).
        return [f"{note} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j {KUBE_NODEPORTS}"]
    return [f"{note} -d {ip} -j {KUBE_NODEPORTS}" for ip in node.nodeport_ips]


@dataclass
class Fragment:
    """One service port's contribution: nat chains of its own, and rules in the shared top-level chains."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    endpoints: int = 0  # endpoint rules written (for the large-cluster threshold)

    def add(self, table: str, chain: str, rule: str) -> None:
        self.rules.setdefault((table, chain), []).append(rule)


def _probability(n: int) -> str:
    # upstream computeProbability: "%0.10f" of 1/n.
    return f"{1.0 / n:0.10f}"


class _ServiceWriter:
    def __init__(self, sp: ServicePlan, node: NodeContext, *, large: bool, endpoint_chains: EndpointChains) -> None:
        self.sp = sp
        self.node = node
        self.large = large
        self.endpoint_chains = endpoint_chains
        self.name = sp.port.key
        self.proto = sp.port.protocol.lower()
        h = port_proto_hash(self.name, self.proto)
        self.svc, self.svl, self.ext, self.fw = (f"KUBE-{k}-{h}" for k in ("SVC", "SVL", "EXT", "FW"))
        self.frag = Fragment()
        self.seps: dict[str, Endpoint] = {}

    def match_proto(self) -> str:
        return f"-m {self.proto} -p {self.proto}"

    def ep_comment(self, ep: Endpoint) -> str:
        return "" if self.large else comment(f"{self.name} -> {ep.ip}:{ep.port}") + " "

    def needs_chain(self, ep: Endpoint) -> bool:
        return self.endpoint_chains == "all" or ep.node_name == self.node.name

    def dnat(self, ep: Endpoint) -> str:
        return f"{self.match_proto()} -j DNAT --to-destination {ep.ip}:{ep.port}"

    def endpoint_rules(self, chain: str, eps: tuple[Endpoint, ...]) -> tuple[str, ...]:
        """upstream writeServiceToEndpointRules: affinity checks first, then the random choice."""
        rules: list[str] = []
        timeout = self.sp.port.affinity_timeout
        for ep in eps if timeout is not None else ():
            sep = endpoint_chain(self.name, self.proto, ep)
            check = f"-m recent --name {sep} --rcheck --seconds {timeout} --reap"
            if self.needs_chain(ep):
                self.seps[sep] = ep
                rules.append(f"{self.ep_comment(ep)}{check} -j {sep}")
            else:
                rules.append(f"{self.ep_comment(ep)}{check} -m recent --name {sep} --set {self.dnat(ep)}")
        n = len(eps)
        for i, ep in enumerate(eps):
            sep = endpoint_chain(self.name, self.proto, ep)
            stat = f"-m statistic --mode random --probability {_probability(n - i)} " if i < n - 1 else ""
            if self.needs_chain(ep):
                self.seps[sep] = ep
                rules.append(f"{self.ep_comment(ep)}{stat}-j {sep}")
            else:
                recent = f"-m recent --name {sep} --set " if timeout is not None else ""
                rules.append(f"{self.ep_comment(ep)}{stat}{recent}{self.dnat(ep)}")
        self.frag.endpoints += n
        return tuple(rules)

    def write(self) -> Fragment:
        sp, port, node, frag = self.sp, self.sp.port, self.node, self.frag
        name = self.name
        has_endpoints = sp.has_endpoints
        uses_cluster_chain = bool(sp.cluster_endpoints) and port.uses_cluster_endpoints
        uses_local_chain = bool(sp.local_endpoints) and port.uses_local_endpoints
        internal_chain = self.svl if port.internal_policy_local else self.svc
        has_internal = sp.internal_verdict == "dnat"
        external_policy_chain = self.svl if port.external_policy_local else self.svc
        has_external = sp.external_verdict == "dnat"
        uses_ext = sp.captures_external
        uses_fw = has_endpoints and bool(port.load_balancer_ips) and bool(port.load_balancer_source_ranges)
        lb_chain = self.fw if uses_fw else self.ext

        if not has_endpoints:
            internal_target, internal_why = "REJECT", f"{name} has no endpoints"
            external_target, external_why = "REJECT", f"{name} has no endpoints"
        else:
            internal_target = external_target = "DROP"
            internal_why = external_why = f"{name} has no local endpoints"

        def dest(ip: str, port_number: int) -> str:
            return f"{self.match_proto()} -d {ip} --dport {port_number}"

        cluster_ip = dest(port.cluster_ip, port.port)
        if has_internal:
            frag.add(NAT, KUBE_SERVICES, f"{comment(f'{name} cluster IP')} {cluster_ip} -j {internal_chain}")
        else:
            frag.add(FILTER, KUBE_SERVICES, f"{comment(internal_why)} {cluster_ip} -j {internal_target}")

        for ip in port.external_ips:
            if has_endpoints:
                frag.add(NAT, KUBE_SERVICES, f"{comment(f'{name} external IP')} {dest(ip, port.port)} -j {self.ext}")
            if not has_external:
                frag.add(FILTER, KUBE_EXTERNAL_SERVICES,
                         f"{comment(external_why)} {dest(ip, port.port)} -j {external_target}")
        for ip in port.load_balancer_ips:
            if has_endpoints:
                frag.add(NAT, KUBE_SERVICES,
                         f"{comment(f'{name} loadbalancer IP')} {dest(ip, port.port)} -j {lb_chain}")
            if uses_fw:
                frag.add(FILTER, KUBE_PROXY_FIREWALL,
                         f"{comment(f'{name} traffic not accepted by {self.fw}')} {dest(ip, port.port)} -j DROP")
        if not has_external:
            for ip in port.load_balancer_ips:
                frag.add(FILTER, KUBE_EXTERNAL_SERVICES,
                         f"{comment(external_why)} {dest(ip, port.port)} -j {external_target}")
        if port.node_port:
            np = f"{self.match_proto()} --dport {port.node_port}"
            if has_endpoints:
                # For better or for worse, node ports are not subject to loadBalancerSourceRanges (upstream).
                frag.add(NAT, KUBE_NODEPORTS, f"{comment(name)} {np} -j {self.ext}")
            if not has_external:
                frag.add(FILTER, KUBE_EXTERNAL_SERVICES,
                         f"{comment(external_why)} -m addrtype --dst-type LOCAL {np} -j {external_target}")
        if port.health_check_node_port:
            frag.add(FILTER, KUBE_NODEPORTS, f"{comment(f'{name} health check node port')} -m tcp -p tcp "
                                             f"--dport {port.health_check_node_port} -j ACCEPT")

        chains: dict[str, list[str]] = {}
        if has_internal:
            masq = f"{comment(f'{name} cluster IP')} {cluster_ip}"
            if node.masquerade_all:
                chains.setdefault(internal_chain, []).append(f"{masq} -j {KUBE_MARK_MASQ}")
            elif node.cluster_cidrs:
                # Off-cluster traffic to a service IP (a static route for the service range to any node)
                # may be answered through another node: masquerade it (upstream localDetector.IfNotLocal;
                # one cluster CIDR per family, as --cluster-cidr).
                chains.setdefault(internal_chain, []).append(
                    f"{masq} ! -s {node.cluster_cidrs[0]} -j {KUBE_MARK_MASQ}")
        if uses_ext:
            ext: list[str] = []
            if not port.external_policy_local:
                ext.append(f"{comment(f'masquerade traffic for {name} external destinations')} -j {KUBE_MARK_MASQ}")
            else:
                if node.cluster_cidrs:
                    # Pod -> external destination behaves as if it went out to the load balancer and back:
                    # subject to neither traffic policy.
                    ext.append(f"{comment(f'pod traffic for {name} external destinations')} "
                               f"-s {node.cluster_cidrs[0]} -j {self.svc}")
                # The node's own traffic gets the (local) VIP as source, so it must be masqueraded.
                ext.append(f"{comment(f'masquerade LOCAL traffic for {name} external destinations')} "
                           f"-m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}")
                ext.append(f"{comment(f'route LOCAL traffic for {name} external destinations')} "
                           f"-m addrtype --src-type LOCAL -j {self.svc}")
            if has_external:
                ext.append(f"-j {external_policy_chain}")
            chains[self.ext] = ext
        if uses_fw:
            allow = comment(f"{name} loadbalancer IP")
            fw = [f"{allow} -s {source} -j {self.ext}" for source in sp.firewall_sources]
            # What reaches the end was not DNATed; filter KUBE-PROXY-FIREWALL drops it.
            fw.append(comment(f"other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"))
            chains[self.fw] = fw
        if uses_cluster_chain:
            chains.setdefault(self.svc, []).extend(self.endpoint_rules(self.svc, sp.cluster_endpoints))
        if uses_local_chain:
            chains.setdefault(self.svl, []).extend(self.endpoint_rules(self.svl, sp.local_endpoints))
        for sep, ep in self.seps.items():
            # Hairpin: a pod reaching itself through its service must be masqueraded, or it would see its
            # own address as the source and answer itself directly.
            rules = [f"{self.ep_comment(ep)}-s {ep.ip} -j {KUBE_MARK_MASQ}"]
            recent = f"-m recent --name {sep} --set " if port.affinity_timeout is not None else ""
            rules.append(f"{self.ep_comment(ep)}{recent}{self.dnat(ep)}")
            chains[sep] = rules
        frag.chains = {c: tuple(r) for c, r in chains.items()}
        return frag


def render_service(sp: ServicePlan, node: NodeContext, *, large: bool = False,
                   endpoint_chains: EndpointChains = "all") -> Fragment:
    if endpoint_chains == "auto":
        endpoint_chains = "local" if large else "all"
    return _ServiceWriter(sp, node, large=large, endpoint_chains=endpoint_chains).write()


def total_endpoints(services: Iterable[ServicePlan]) -> int:
    return sum(len(sp.cluster_endpoints) + len(sp.local_endpoints) for sp in services)
