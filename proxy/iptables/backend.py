"""The iptables backend: plan in, one iptables-restore --noflush out, through a runner seam.

Like upstream's syncProxyRules: a full sync (the first one, after a failure, on request, or when the
node context changes) reads the nat and filter tables back (iptables-save) to find stale chains and the
jumps from the built-in chains that are missing, and rewrites everything of ours; a partial sync
rewrites only the chains of service ports that changed and the top-level chains whose rules changed.
A failed sync forces the next one to be full, since the kernel's state is then unknown. `intact()` tells
whether someone removed our chains or jumps behind our back (then sync with full=True).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from firewall.errors import IptablesError
from firewall.iptables.ruleset import FILTER, NAT, missing_jumps, saved_chains
from firewall.iptables.runner import IptablesRunner, SubprocessIptables
from proxy.errors import raised_as_proxy_errors
from proxy.iptables.layout import JUMPS, TOP_CHAINS, EndpointChains, is_service_chain
from proxy.iptables.renderer import Renderer
from proxy.iptables.ruleset import Ruleset, full_transaction, owned_rules_in_builtins, partial_transaction
from proxy.plan import ProxyPlan


@dataclass(frozen=True)
class SyncResult:
    full: bool
    transaction: str
    seconds: float  # render + apply

    @property
    def lines(self) -> int:
        return self.transaction.count("\n")


class IptablesBackend:
    def __init__(self, *, runner: IptablesRunner | None = None, legacy: bool = False,
                 endpoint_chains: EndpointChains | None = None) -> None:
        """`legacy` picks iptables-legacy for the default runner (the real tools in this namespace)."""
        self.runner: IptablesRunner = runner if runner is not None else SubprocessIptables(
            flavour="legacy" if legacy else "nft")
        # Upstream's layout unless asked otherwise ("local": fewer chains, see layout.py).
        self.endpoint_chains: EndpointChains = endpoint_chains or "all"
        self._renderer = Renderer(endpoint_chains=self.endpoint_chains)
        self._applied: Ruleset | None = None
        self._rendered: Ruleset | None = None
        self._applied_node: object = None

    @property
    def applied(self) -> Ruleset | None:
        return self._applied

    @raised_as_proxy_errors
    def sync(self, plan: ProxyPlan, *, full: bool = False) -> SyncResult:
        start = time.perf_counter()
        # The renderer's change list is relative to its previous render; usable only if that is what
        # the kernel holds.
        in_step = self._applied is not None and self._applied is self._rendered
        desired = self._renderer.render(plan)
        self._rendered = desired
        changed = self._renderer.changed if in_step else None
        is_full = full or self._applied is None or self._applied_node != plan.node or changed is None
        if is_full:
            nat = self.runner.save(NAT)
            filter_ = self.runner.save(FILTER)
            jumps = missing_jumps(FILTER, filter_, JUMPS) + missing_jumps(NAT, nat, JUMPS)
            transaction = full_transaction(desired, existing_nat=saved_chains(nat), missing_jumps=jumps)
        else:
            assert self._applied is not None and changed is not None
            # Nothing changed at all: "" (no iptables-restore; upstream would rewrite the top-level chains).
            transaction = partial_transaction(self._applied, desired, changed)
        try:
            self.runner.restore(transaction)
        except IptablesError:
            self._applied = None  # unknown kernel state: the next sync is full
            raise
        self._applied = desired
        self._applied_node = plan.node
        return SyncResult(is_full, transaction, time.perf_counter() - start)

    @raised_as_proxy_errors
    def intact(self) -> bool:
        """Whether the kernel still holds every chain and jump of the last sync (upstream watches a canary
        chain for the same purpose: a firewall reload that flushes everything must force a full sync)."""
        if self._applied is None:
            return False
        nat, filter_ = self.runner.save(NAT), self.runner.save(FILTER)
        if missing_jumps(NAT, nat, JUMPS) or missing_jumps(FILTER, filter_, JUMPS):
            return False
        have = {NAT: set(saved_chains(nat)), FILTER: set(saved_chains(filter_))}
        return (all(set(TOP_CHAINS[t]) <= have[t] for t in (NAT, FILTER))
                and all(c in have[NAT] for c in self._applied.chains))

    @raised_as_proxy_errors
    def cleanup(self) -> None:
        """Remove every KUBE-* chain of ours and every jump to them (like `kube-proxy --cleanup`)."""
        lines: list[str] = []
        for table in (FILTER, NAT):
            saved = self.runner.save(table)
            existing = saved_chains(saved)
            ours = [c for c in existing if c in TOP_CHAINS[table] or (table == NAT and is_service_chain(c))]
            if not ours:
                continue
            lines.append(f"*{table}")
            lines += [f":{c} - [0:0]" for c in ours]  # flushes them
            lines += [f"-D {rule}" for rule in owned_rules_in_builtins(saved, ours)]
            lines += [f"-X {c}" for c in ours]
            lines.append("COMMIT")
        if lines:
            self.runner.restore("\n".join(lines) + "\n")
        self._applied = None
