"""The iptables backend: plan in, one iptables-restore --noflush out, through a runner seam.

Like upstream's syncProxyRules: a full sync (the first one, after a failure, on request, or when the
node context changes) reads the nat and filter tables back (iptables-save) to find stale chains and the
jumps from the built-in chains that are missing, and rewrites everything of ours; a partial sync
rewrites only the chains of service ports that changed and the top-level chains whose rules changed.
A failed sync forces the next one to be full, since the kernel's state is then unknown. `intact()` tells
whether someone removed our chains or jumps behind our back (then sync with full=True). The sequence is
proxy/backend.py's; this module supplies iptables' steps.
"""

from __future__ import annotations

from firewall.errors import IptablesError
from firewall.iptables.ruleset import FILTER, NAT, saved_chains
from firewall.iptables.runner import IptablesRunner, SubprocessIptables
from proxy.backend import Backend, SyncResult
from proxy.errors import raised_as_proxy_errors
from proxy.iptables.layout import JUMPS, TOP_CHAINS, EndpointChains, is_service_chain
from proxy.iptables.renderer import Renderer
from proxy.iptables.ruleset import Ruleset, full_transaction, owned_rules_in_builtins, partial_transaction
from proxy.plan import ProxyPlan

__all__ = ["IptablesBackend", "SyncResult"]


class IptablesBackend(Backend[Ruleset, set[str]]):
    apply_error = IptablesError  # after which the next sync is full

    def __init__(self, *, runner: IptablesRunner | None = None, legacy: bool = False,
                 endpoint_chains: EndpointChains | None = None) -> None:
        """`legacy` picks iptables-legacy for the default runner (the real tools in this namespace)."""
        super().__init__()
        self.runner: IptablesRunner = runner if runner is not None else SubprocessIptables(
            flavour="legacy" if legacy else "nft")
        # Upstream's layout, with iptables-nft above upstream's large-cluster threshold the one with fewer
        # chains ("auto": its restore time grows with the chain count; see layout.py), unless asked otherwise.
        legacy_tools = getattr(self.runner, "flavour", "nft") == "legacy"
        self.endpoint_chains: EndpointChains = endpoint_chains or ("all" if legacy_tools else "auto")
        self._renderer = Renderer(endpoint_chains=self.endpoint_chains)

    def _render(self, plan: ProxyPlan) -> Ruleset:
        return self._renderer.render(plan)

    def _changes(self) -> set[str] | None:
        return self._renderer.changed  # the service ports whose chains the last render changed

    def _partial(self, applied: Ruleset, desired: Ruleset, changes: set[str] | None) -> str | None:
        if changes is None:
            return None  # no change list to go by: rewrite everything
        # Nothing changed at all: "" (no iptables-restore; upstream would rewrite the top-level chains).
        return partial_transaction(applied, desired, changes)

    def _full(self, desired: Ruleset) -> tuple[str, Ruleset]:
        # Read back what the kernel holds: the nat chains (stale service chains to delete) and the rules of
        # the built-in chains we jump from (jumps to restore). Names and those few rules only, as intact()
        # reads them: two whole iptables-nft-save runs took ~2 s of a 10k-Service full sync.
        present = {table: {line[3:] for builtin in sorted({j.chain for j in JUMPS if j.table == table})
                           for line in self.runner.chain_rules(table, builtin)} for table in (FILTER, NAT)}
        jumps = [j for table in (FILTER, NAT) for j in JUMPS
                 if j.table == table and f"{j.chain} {j.spec}" not in present[table]]
        return full_transaction(desired, existing_nat=self.runner.chains(NAT), missing_jumps=jumps), desired

    def _apply(self, transaction: str) -> None:
        self.runner.restore(transaction)

    @raised_as_proxy_errors
    def intact(self) -> bool:
        """Whether the kernel still holds every chain and jump of the last sync (upstream watches a canary
        chain for the same purpose: a firewall reload that flushes everything must force a full sync)."""
        if self._applied is None:
            return False
        # Chain names and the built-in chains' few rules only: a whole iptables-save of the nat table at
        # 10k Services took 1.7 s every tamper check, holding back the syncs behind it.
        for table in (NAT, FILTER):
            for builtin in sorted({j.chain for j in JUMPS if j.table == table}):
                present = {line[3:] for line in self.runner.chain_rules(table, builtin)}
                if any(f"{j.chain} {j.spec}" not in present for j in JUMPS if (j.table, j.chain) == (table, builtin)):
                    return False
        have = {table: set(self.runner.chains(table)) for table in (NAT, FILTER)}
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
