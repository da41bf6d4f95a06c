"""Incremental rendering: ProxyPlan -> Ruleset, re-rendering only the service ports whose plan changed.

`changed` names the service ports whose chains differ from the previous render (None: everything, after
a node change or a flip of upstream's large-cluster mode, which changes every endpoint rule's comment):
exactly what a partial sync must rewrite.
"""

from __future__ import annotations

from firewall.iptables.ruleset import NAT
from proxy.iptables.layout import (
    KUBE_SERVICES,
    LARGE_CLUSTER_ENDPOINTS,
    EndpointChains,
    Fragment,
    render_service,
    static_rules,
    tail_rules,
    total_endpoints,
)
from proxy.iptables.ruleset import Ruleset
from proxy.plan import NodeContext, ProxyPlan, ServicePlan


class Renderer:
    def __init__(self, *, endpoint_chains: EndpointChains = "all") -> None:
        self.endpoint_chains: EndpointChains = endpoint_chains
        self._node: NodeContext | None = None
        self._large: bool | None = None
        self._frags: dict[str, tuple[ServicePlan, Fragment]] = {}
        self.changed: set[str] | None = None

    def render(self, plan: ProxyPlan) -> Ruleset:
        node = plan.node
        large = total_endpoints(plan.services) > LARGE_CLUSTER_ENDPOINTS
        changed: set[str] | None = set()
        if node != self._node or large != self._large:
            self._frags = {}
            self._node, self._large = node, large
            changed = None
        seen: set[str] = set()
        for sp in plan.services:
            name = sp.name
            seen.add(name)
            held = self._frags.get(name)
            if held is not None and (held[0] is sp or held[0] == sp):
                continue
            frag = render_service(sp, node, large=large, endpoint_chains=self.endpoint_chains)
            if changed is not None and (held is None or held[1].chains != frag.chains):
                changed.add(name)
            self._frags[name] = (sp, frag)
        for name in [n for n in self._frags if n not in seen]:
            del self._frags[name]
            if changed is not None:
                changed.add(name)
        self.changed = changed
        return self._snapshot(node)

    def _snapshot(self, node: NodeContext) -> Ruleset:
        top: dict[tuple[str, str], list[str]] = {k: list(v) for k, v in static_rules(node).items()}
        chains: dict[str, tuple[str, ...]] = {}
        owners: dict[str, tuple[str, ...]] = {}
        for name in sorted(self._frags):
            frag = self._frags[name][1]
            for key, rules in frag.rules.items():
                top.setdefault(key, []).extend(rules)
            chains.update(frag.chains)
            owners[name] = tuple(frag.chains)
        top.setdefault((NAT, KUBE_SERVICES), []).extend(tail_rules(node))
        return Ruleset({k: tuple(v) for k, v in top.items()}, chains, owners)


def render(plan: ProxyPlan, *, endpoint_chains: EndpointChains = "all") -> Ruleset:
    """The desired chains for `plan` (stateless convenience around `Renderer`)."""
    return Renderer(endpoint_chains=endpoint_chains).render(plan)
