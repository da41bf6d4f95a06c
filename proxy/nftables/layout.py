"""ProxyPlan -> the desired nftables `Ruleset` for table `ip kubesim-proxy`.

Why this layout: Debian 12's nft 1.0.6 loads a transaction in time quadratic in its chains (measured), so
kube-proxy's own nftables layout (a chain per service, per endpoint) takes ~200 s for 10k services.
Here a service costs map elements, not chains:

    services:  ip daddr . meta l4proto . th dport vmap @service-ips   -> goto cluster-ip | external | ...
    cluster-ip / external / external-local / nodeport / nodeport-local: the masquerade decision
               (kube-proxy's service-/external- chains, shared), then
               ip daddr . meta l4proto . th dport vmap @lb-ips       -> goto lb-<N>
    lb-<N>:    dnat ip to ip daddr . meta l4proto . th dport . numgen random mod N map @lb-<N>-backends

one `lb-<N>` chain (and its backends map) per distinct endpoint count N. Only a Service with
sessionAffinity ClientIP gets chains of its own (kube-proxy's affinity sets per endpoint need a chain
per endpoint to be updated from); everything else is elements, so a sync touches elements.

Filtering follows kube-proxy's nftables mode (pkg/proxy/nftables/proxier.go): REJECT / DROP of services
without (local) endpoints through the @no-endpoint-* vmaps in filter chains after DNAT (reject is not
allowed in nat chains), loadBalancerSourceRanges before DNAT, and after DNAT a REJECT for the remaining
traffic to ClusterIPs (an unknown port) and a DROP for the rest of the service CIDR (unallocated).
Hairpin (a pod reaching itself) is masqueraded in postrouting from a set of endpoint pairs, which is
kube-proxy's per-endpoint "ip saddr <ep> jump mark-for-masquerade" as data.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from firewall.nftables.ruleset import BaseHook, Chain, Set
from proxy.model import Endpoint
from proxy.plan import NodeContext, ServicePlan

log = logging.getLogger(__name__)

FAMILY = "ip"
TABLE = "kubesim-proxy"

# Netfilter hook priorities: NF_IP_PRI_NAT_DST = -100, NF_IP_PRI_FILTER = 0, NF_IP_PRI_NAT_SRC = 100.
# Numbers, not "dstnat - 10": nft 1.0.6 refuses priority expressions in some chain types.
DSTNAT = -100
FILTER = 0
SRCNAT = 100

FRONTEND = "type ipv4_addr . inet_proto . inet_service"
PORT_KEY = "type inet_proto . inet_service"
IP_BACKENDS = "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport"
NODEPORT_BACKENDS = "typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport"
IP_DISPATCH = "ip daddr . meta l4proto . th dport"
PORT_DISPATCH = "meta l4proto . th dport"

# Static sets and maps: name -> (kind, spec).
SETS: dict[str, tuple[str, str]] = {
    "service-ips": ("map", f"{FRONTEND} : verdict ;"),
    "service-nodeports": ("map", f"{PORT_KEY} : verdict ;"),
    "lb-ips": ("map", f"{FRONTEND} : verdict ;"),
    "lb-nodeports": ("map", f"{PORT_KEY} : verdict ;"),
    "short-circuit-ips": ("map", f"{FRONTEND} : verdict ;"),
    "short-circuit-nodeports": ("map", f"{PORT_KEY} : verdict ;"),
    "no-endpoint-services": ("map", f"{FRONTEND} : verdict ;"),
    "no-endpoint-nodeports": ("map", f"{PORT_KEY} : verdict ;"),
    "firewall-ips": ("set", f"{FRONTEND} ;"),
    "firewall-allow": ("set", f"{FRONTEND} . ipv4_addr ; flags interval ;"),
    "cluster-ips": ("set", "type ipv4_addr ;"),
    "nodeport-ips": ("set", "type ipv4_addr ;"),
    "hairpin": ("set", "type ipv4_addr . ipv4_addr ;"),
}

# The numgen chains, per family: (key expression, backends map declaration). Each chain `<family>-<N>`
# has its own map `<family>-<N>-backends`: nft 1.0.6 cannot add a rule that uses a typeof map with
# `ip daddr . th dport` data unless the map is declared in the same transaction ("conflicting protocols
# specified: ip vs. th" while it reloads the map's typeof from the kernel). A chain and its map are
# therefore always created, and deleted, together.
LB_FAMILIES: dict[str, tuple[str, str]] = {
    "lb": (IP_DISPATCH, IP_BACKENDS),
    "sc": (IP_DISPATCH, IP_BACKENDS),
    "np-lb": (PORT_DISPATCH, NODEPORT_BACKENDS),
    "np-sc": (PORT_DISPATCH, NODEPORT_BACKENDS),
}

MARK_MASQ = "mark-for-masquerade"


def _cidrs(cidrs: Iterable[str]) -> str:
    items = list(cidrs)
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def base_chains() -> list[Chain]:
    return [
        # Filtering on pre-DNAT addresses (loadBalancerSourceRanges) must run before DNAT.
        Chain("filter-prerouting-pre-dnat", ("ct state new jump firewall-check",),
              BaseHook("filter", "prerouting", DSTNAT - 10)),
        Chain("filter-output-pre-dnat", ("ct state new jump firewall-check",),
              BaseHook("filter", "output", DSTNAT - 10)),
        # After DNAT: whatever still targets a service address was not load-balanced. `reject` is only
        # valid in input/forward/output, hence these hooks.
        Chain("filter-input", ("ct state new jump services-endpoints-check",
                               "ct state new jump nodeport-endpoints-check"),
              BaseHook("filter", "input", FILTER)),
        Chain("filter-forward", ("ct state new jump services-endpoints-check",
                                 "ct state new jump cluster-ips-check"),
              BaseHook("filter", "forward", FILTER)),
        Chain("filter-output", ("ct state new jump services-endpoints-check",
                                "ct state new jump cluster-ips-check"),
              BaseHook("filter", "output", FILTER)),
        Chain("nat-prerouting", ("jump services",), BaseHook("nat", "prerouting", DSTNAT)),
        Chain("nat-output", ("jump services",), BaseHook("nat", "output", DSTNAT)),
        Chain("nat-postrouting", ("jump masquerading",), BaseHook("nat", "postrouting", SRCNAT)),
    ]


def static_chains(node: NodeContext) -> list[Chain]:
    mark = f"0x{node.masquerade_mark:x}"
    if node.masquerade_all:
        cluster_masq: tuple[str, ...] = (f"jump {MARK_MASQ}",)
    elif node.cluster_cidrs:
        # Off-cluster sources reaching a ClusterIP may be routed back through another node: masquerade
        # so that replies return through us (nftables/proxier.go, localDetector.IfNotLocalNFT).
        cluster_masq = (f"ip saddr != {_cidrs(node.cluster_cidrs)} jump {MARK_MASQ}",)
    else:
        cluster_masq = ()
    pods_short_circuit: tuple[str, ...] = ()
    np_pods_short_circuit: tuple[str, ...] = ()
    if node.cluster_cidrs:
        # ETP Local: pod traffic to an external destination behaves as if it went out to the load
        # balancer and came back: it may use any endpoint and keeps its source.
        pods_short_circuit = (f"ip saddr {_cidrs(node.cluster_cidrs)} {IP_DISPATCH} vmap @short-circuit-ips",)
        np_pods_short_circuit = (
            f"ip saddr {_cidrs(node.cluster_cidrs)} {PORT_DISPATCH} vmap @short-circuit-nodeports",
        )
    return [
        Chain("firewall-check", (
            f"{IP_DISPATCH} @firewall-ips {IP_DISPATCH} . ip saddr != @firewall-allow drop",
        )),
        Chain("services-endpoints-check", (f"{IP_DISPATCH} vmap @no-endpoint-services",)),
        Chain("nodeport-endpoints-check", (f"ip daddr @nodeport-ips {PORT_DISPATCH} vmap @no-endpoint-nodeports",)),
        Chain("cluster-ips-check", (
            "ip daddr @cluster-ips reject",
            *(f"ip daddr {cidr} drop" for cidr in node.service_cidrs),
        )),
        Chain("reject-chain", ("reject",)),
        Chain("services", (
            f"{IP_DISPATCH} vmap @service-ips",
            f"ip daddr @nodeport-ips {PORT_DISPATCH} vmap @service-nodeports",
        )),
        Chain(MARK_MASQ, (f"meta mark set meta mark or {mark}",)),
        Chain("masquerading", (
            f"ct status dnat ip saddr . ip daddr @hairpin jump {MARK_MASQ}",
            f"meta mark and {mark} == 0 return",
            # Clear the bit so that a packet re-entering (e.g. via a tunnel) is not masqueraded twice.
            f"meta mark set meta mark xor {mark}",
            "masquerade fully-random",
        )),
        Chain("cluster-ip", (*cluster_masq, f"{IP_DISPATCH} vmap @lb-ips")),
        Chain("external", (f"jump {MARK_MASQ}", f"{IP_DISPATCH} vmap @lb-ips")),
        Chain("external-local", (
            *pods_short_circuit,
            # The node's own traffic to a VIP that is local gets the VIP as source: masquerade it.
            f"fib saddr type local jump {MARK_MASQ}",
            f"fib saddr type local {IP_DISPATCH} vmap @short-circuit-ips",
            f"{IP_DISPATCH} vmap @lb-ips",
        )),
        Chain("nodeport", (f"jump {MARK_MASQ}", f"{PORT_DISPATCH} vmap @lb-nodeports")),
        Chain("nodeport-local", (
            *np_pods_short_circuit,
            f"fib saddr type local jump {MARK_MASQ}",
            f"fib saddr type local {PORT_DISPATCH} vmap @short-circuit-nodeports",
            f"{PORT_DISPATCH} vmap @lb-nodeports",
        )),
    ]


def backends_map(family: str, count: int) -> str:
    return f"{family}-{count}-backends"


def lb_chain(family: str, count: int) -> Chain:
    key = LB_FAMILIES[family][0]
    return Chain(f"{family}-{count}",
                 (f"dnat ip to {key} . numgen random mod {count} map @{backends_map(family, count)}",))


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:8]


def _port_base(sp: ServicePlan) -> str:
    n = sp.port.name
    base = f"{n.namespace}/{n.name}/{sp.port.protocol.lower()}/{n.port}"
    return f"{_hash(base)}-{base}"


def _endpoint_base(sp: ServicePlan, ep: Endpoint) -> str:
    n = sp.port.name
    base = f"{n.namespace}/{n.name}/{sp.port.protocol.lower()}/{n.port}__{ep.ip}/{ep.port}"
    return f"{_hash(base)}-{base}"


@dataclass(slots=True)
class Fragment:
    """One service port's contribution: elements per static set/map, plus chains/sets of its own."""

    elements: dict[str, dict[str, str | None]] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, Set] = field(default_factory=dict)
    lb_chains: set[tuple[str, int]] = field(default_factory=set)

    def add(self, set_name: str, key: str, value: str | None = None) -> None:
        self.elements.setdefault(set_name, {})[key] = value


def _proto(sp: ServicePlan) -> str:
    return sp.port.protocol.lower()


def _target(frag: Fragment, sp: ServicePlan, eps: tuple[Endpoint, ...], family: str, key: str) -> str:
    """The verdict that load-balances `key` over `eps`; fills the backends map or affinity chains."""
    if sp.port.affinity_timeout is not None:
        return f"goto {_affinity_chain(frag, sp, eps)}"
    backends = frag.elements.setdefault(backends_map(family, len(eps)), {})
    backends.update({f"{key} . {i}": f"{ep.ip} . {ep.port}" for i, ep in enumerate(eps)})
    frag.lb_chains.add((family, len(eps)))
    return f"goto {family}-{len(eps)}"


def _affinity_chain(frag: Fragment, sp: ServicePlan, eps: tuple[Endpoint, ...]) -> str:
    # kube-proxy's ClientIP affinity (nftables/proxier.go writeServiceToEndpointRules): a dynamic set of
    # client addresses per endpoint, filled by the endpoint's chain, checked before the random choice.
    # The timeout is part of the set's name: nft cannot change a set's timeout in place.
    timeout = sp.port.affinity_timeout
    role = "cluster" if eps == sp.cluster_endpoints else "local"
    chain_name = f"affinity-{role}-{_port_base(sp)}"
    rules: list[str] = []
    targets: list[str] = []
    for ep in eps:
        base = _endpoint_base(sp, ep)
        set_name = f"affinity-{timeout}s-{base}"
        ep_chain = f"endpoint-{base}"
        frag.sets[set_name] = Set(
            set_name, "set", f"type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ;", dynamic=True)
        frag.chains[ep_chain] = Chain(ep_chain, (
            f"update @{set_name} {{ ip saddr }}",
            # A port in `dnat to` needs a transport protocol match in the same rule (nft refuses it
            # otherwise: "transport protocol mapping is only valid after transport protocol match").
            f"meta l4proto {_proto(sp)} dnat ip to {ep.ip}:{ep.port}",
        ))
        rules.append(f"ip saddr @{set_name} goto {ep_chain}")
        targets.append(ep_chain)
    if len(targets) == 1:
        rules.append(f"goto {targets[0]}")
    else:
        choices = ", ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
        rules.append(f"numgen random mod {len(targets)} vmap {{ {choices} }}")
    frag.chains[chain_name] = Chain(chain_name, tuple(rules))
    return chain_name


def _filter_verdict(verdict: str) -> str:
    return "goto reject-chain" if verdict == "reject" else "drop"


def render_service(sp: ServicePlan, node: NodeContext) -> Fragment:
    frag = Fragment()
    port = sp.port
    proto = _proto(sp)
    cip_key = f"{port.cluster_ip} . {proto} . {port.port}"
    frag.add("cluster-ips", port.cluster_ip)
    if sp.internal_verdict == "dnat":
        frag.add("service-ips", cip_key, "goto cluster-ip")
        frag.add("lb-ips", cip_key, _target(frag, sp, sp.internal_endpoints, "lb", cip_key))
    else:
        frag.add("no-endpoint-services", cip_key, _filter_verdict(sp.internal_verdict))

    external_chain = "external-local" if sp.short_circuits else "external"
    for ip in dict.fromkeys(port.external_ips + port.load_balancer_ips):
        key = f"{ip} . {proto} . {port.port}"
        if sp.captures_external:
            frag.add("service-ips", key, f"goto {external_chain}")
            if sp.short_circuits:
                frag.add("short-circuit-ips", key, _target(frag, sp, sp.cluster_endpoints, "sc", key))
        if sp.external_verdict == "dnat":
            frag.add("lb-ips", key, _target(frag, sp, sp.external_endpoints, "lb", key))
        else:
            # REJECT (no endpoints at all) or DROP (only elsewhere) whatever was not short-circuited.
            frag.add("no-endpoint-services", key, _filter_verdict(sp.external_verdict))
    for ip in port.load_balancer_ips:
        if sp.firewall_sources:
            key = f"{ip} . {proto} . {port.port}"
            frag.add("firewall-ips", key)
            for source in sp.firewall_sources:
                frag.add("firewall-allow", f"{key} . {source}")

    if port.node_port:
        key = f"{proto} . {port.node_port}"
        if sp.captures_external:
            # NodePorts are not subject to loadBalancerSourceRanges (kube-proxy: "for better or for worse").
            frag.add("service-nodeports", key, "goto nodeport-local" if sp.short_circuits else "goto nodeport")
            if sp.short_circuits:
                frag.add("short-circuit-nodeports", key, _target(frag, sp, sp.cluster_endpoints, "np-sc", key))
        if sp.external_verdict == "dnat":
            frag.add("lb-nodeports", key, _target(frag, sp, sp.external_endpoints, "np-lb", key))
        else:
            frag.add("no-endpoint-nodeports", key, _filter_verdict(sp.external_verdict))

    for ep in sp.reachable_endpoints:
        # Only a pod on this node can reach itself through this node's rules; an endpoint without a
        # nodeName (a manual EndpointSlice) might be here.
        if ep.node_name in ("", node.name):
            frag.add("hairpin", f"{ep.ip} . {ep.ip}")
    return frag
