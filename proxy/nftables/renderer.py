"""Incremental rendering: ProxyPlan -> Ruleset, re-rendering only the service ports whose plan changed.

The layout itself (chains, maps, what one service port contributes) is in layout.py.
"""

from __future__ import annotations

import logging

from firewall.nftables.ruleset import Chain, Ruleset, Set
from proxy.nftables.layout import (
    FAMILY,
    LB_FAMILIES,
    SETS,
    TABLE,
    Fragment,
    backends_map,
    base_chains,
    lb_chain,
    render_service,
    static_chains,
)
from proxy.plan import NodeContext, ProxyPlan, ServicePlan

log = logging.getLogger(__name__)


class _Held:
    """A service port's Fragment as the renderer keeps it between renders, flat: at 10k Services the
    dicts and sets of 10k Fragments (mostly empty or of one element) cost ~8 MB more than tuples."""

    __slots__ = ("elements", "lb_chains", "objects")

    def __init__(self, frag: Fragment) -> None:
        # (set, key, value) in the Fragment's order, which decides which of two claims wins.
        self.elements: tuple[tuple[str, str, str | None], ...] = tuple(
            (set_name, key, value) for set_name, elems in frag.elements.items() for key, value in elems.items())
        self.objects: tuple[Chain | Set, ...] = (*frag.chains.values(), *frag.sets.values())
        self.lb_chains: tuple[tuple[str, int], ...] = tuple(frag.lb_chains)


class Renderer:
    """Renders plans incrementally: only service ports whose plan changed are re-rendered.

    It keeps, per element/chain/set, which service ports claim it (a ClusterIP shared by a Service's
    ports, an endpoint pair shared by Services, an lb-<N> chain shared by every N-endpoint frontend),
    so that removing one claimant never removes what another still needs. `touched` lists the
    elements the last render changed: a diff needs to look at nothing else.
    """

    def __init__(self, *, family: str = FAMILY, table: str = TABLE) -> None:
        self.family = family
        self.table = table
        self._reset(None)

    def _reset(self, node: NodeContext | None) -> None:
        self._node = node
        self._plan: ProxyPlan | None = None  # the plan rendered last
        self._frags: dict[str, tuple[ServicePlan, _Held]] = {}
        self._elements: dict[str, dict[str, str | None]] = {name: {} for name in SETS}
        # set -> key -> its claimant (service port), or every claim [(service port, value)] when
        # several claim it; the first claim's value is the element's.
        self._owners: dict[str, dict[str, str | list[tuple[str, str | None]]]] = {}
        self._objects: dict[tuple[str, str], list[tuple[str, Chain | Set]]] = {}
        self._lb: dict[tuple[str, int], int] = {}
        # Sets whose element dict the last snapshot shares: copied before the next change (copy on
        # write), so that a partial render copies the sets it changes, not all 80k elements at 10k.
        self._lent: set[str] = set()
        # None: everything may have changed (first render, node change).
        self.touched: dict[str, set[str]] | None = None

    def render(self, plan: ProxyPlan) -> Ruleset:
        node = plan.node
        touched: dict[str, set[str]] | None = {}
        if node != self._node:
            self._reset(node)
            touched = None
        # Made by replan() from the plan rendered last: only the port plans it names can differ.
        known = plan.changes_since(self._plan) if touched is not None and self._plan is not None else None
        if known is None:
            for sp in plan.services:
                self._update(sp.name, sp, node, touched)
            for name in [n for n in self._frags if n not in plan.by_name]:
                self._update(name, None, node, touched)
        else:  # in the order the loop above takes: it decides which of two claims to one key wins
            for name in sorted(known):
                if name in plan.by_name:
                    self._update(name, plan.by_name[name], node, touched)
            for name in sorted(known):
                if name not in plan.by_name:
                    self._update(name, None, node, touched)
        self._plan = plan
        self.touched = touched
        return self._snapshot(node)

    def _update(self, name: str, sp: ServicePlan | None, node: NodeContext,
                touched: dict[str, set[str]] | None) -> None:
        """Bring service port NAME's claims to its plan SP (None: it is gone)."""
        held = self._frags.get(name)
        if held is not None and sp is not None and (held[0] is sp or held[0] == sp):
            return
        if held is not None:
            self._withdraw(name, self._frags.pop(name)[1], touched)
        if sp is not None:
            frag = _Held(render_service(sp, node))
            self._frags[name] = (sp, frag)
            self._claim(name, frag, touched)

    def _claim(self, owner: str, frag: _Held, touched: dict[str, set[str]] | None) -> None:
        current = ""
        target: dict[str, str | None] = {}
        owners: dict[str, str | list[tuple[str, str | None]]] = {}
        for set_name, key, value in frag.elements:
            if set_name != current:
                current = set_name
                target = self._writable(set_name)
                owners = self._owners.setdefault(set_name, {})
            held = owners.get(key)
            if held is None:
                owners[key] = owner
                target[key] = value
                if touched is not None:
                    touched.setdefault(set_name, set()).add(key)
                continue
            # Shared (a ClusterIP of a Service's ports, an endpoint of several Services) or
            # contested (two Services claiming one externalIP:port: the first keeps it, the other
            # takes over only if the first goes away).
            if isinstance(held, str):
                held = owners[key] = [(held, target[key])]
            if held[0][1] != value:
                log.warning("%s: %s %s already taken by %s; ignored", owner, set_name, key, held[0][0])
            held.append((owner, value))
        for obj in frag.objects:
            kind = "chain" if isinstance(obj, Chain) else "set"
            self._objects.setdefault((kind, obj.name), []).append((owner, obj))
        for lb in frag.lb_chains:
            self._lb[lb] = self._lb.get(lb, 0) + 1

    def _withdraw(self, owner: str, frag: _Held, touched: dict[str, set[str]] | None) -> None:
        current = ""
        target: dict[str, str | None] = {}
        owners: dict[str, str | list[tuple[str, str | None]]] = {}
        for set_name, key, _ in frag.elements:
            if set_name != current:
                current = set_name
                target = self._writable(set_name)
                owners = self._owners[set_name]
            held = owners[key]
            if isinstance(held, str):
                del owners[key]
                del target[key]
            else:
                rest = [c for c in held if c[0] != owner]
                owners[key] = rest if len(rest) > 1 else rest[0][0]
                if rest[0][1] == target[key]:
                    continue
                target[key] = rest[0][1]
            if touched is not None:
                touched.setdefault(set_name, set()).add(key)
        for obj in frag.objects:
            kind = "chain" if isinstance(obj, Chain) else "set"
            objs = self._objects[(kind, obj.name)]
            objs[:] = [h for h in objs if h[0] != owner]
            if not objs:
                del self._objects[(kind, obj.name)]
        for lb in frag.lb_chains:
            self._lb[lb] -= 1
            if not self._lb[lb]:
                del self._lb[lb]

    def _writable(self, set_name: str) -> dict[str, str | None]:
        target = self._elements.setdefault(set_name, {})
        if set_name in self._lent:
            target = self._elements[set_name] = dict(target)
            self._lent.discard(set_name)
        return target

    def _lend(self, set_name: str) -> dict[str, str | None]:
        self._lent.add(set_name)
        return self._elements.setdefault(set_name, {})

    def _snapshot(self, node: NodeContext) -> Ruleset:
        chains: dict[str, Chain] = {c.name: c for c in base_chains() + static_chains(node)}
        sets = {name: Set(name, kind, spec, self._lend(name)) for name, (kind, spec) in SETS.items()}
        sets["nodeport-ips"] = Set("nodeport-ips", *SETS["nodeport-ips"], dict.fromkeys(node.nodeport_ips))
        for (_, name), held in sorted(self._objects.items()):
            obj = held[0][1]
            if isinstance(obj, Chain):
                chains[name] = obj
            else:
                sets[name] = obj
        for family, count in sorted(self._lb):
            c = lb_chain(family, count)
            chains[c.name] = c
            name = backends_map(family, count)
            sets[name] = Set(name, "map", f"{LB_FAMILIES[family][1]} ;", self._lend(name))
        return Ruleset(self.family, self.table, chains, sets)


def render(plan: ProxyPlan, *, table: str = TABLE) -> Ruleset:
    """The desired table for `plan` (stateless convenience around `Renderer`)."""
    return Renderer(table=table).render(plan)
