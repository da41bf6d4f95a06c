"""The nftables backend: plan in, one transaction out, applied through a runner seam.

It remembers the last desired state it applied, so a sync is the diff (`partial`) unless asked for a
full sync, the node context changed, or the previous sync failed: kube-proxy's rule that a failed sync
forces the next one to be full, since the kernel's state is then unknown. The sequence is proxy/backend.py's;
this module supplies nftables' steps: a diff against the applied table, limited to what the renderer
touched, or the whole table recreated when the diff cannot be written (`NeedsFullSync`).
"""

from __future__ import annotations

from firewall.errors import NftError
from firewall.nftables.ruleset import Chain, NeedsFullSync, Ruleset, diff_transaction, full_transaction
from firewall.nftables.runner import NftRunner, SubprocessNft
from proxy.backend import Backend, SyncResult
from proxy.errors import raised_as_proxy_errors
from proxy.nftables.layout import FAMILY, TABLE
from proxy.nftables.renderer import Renderer
from proxy.plan import ProxyPlan

__all__ = ["NftablesBackend", "SyncResult"]

# The renderer's change list: per set or map, the keys whose elements the last render changed.
Touched = dict[str, set[str]]


class NftablesBackend(Backend[Ruleset, Touched]):
    apply_error = NftError  # after which the next sync recreates the table

    def __init__(self, *, runner: NftRunner | None = None, table: str = TABLE) -> None:
        super().__init__()
        self.runner: NftRunner = runner if runner is not None else SubprocessNft()
        self.table = table
        self._renderer = Renderer(table=table)
        # Chains the plan no longer has, kept empty in the kernel until a later sync deletes them.
        self._flushed: frozenset[str] = frozenset()

    def _render(self, plan: ProxyPlan) -> Ruleset:
        """The renderer's table, plus, empty, the chains that have just gone stale.

        Two-phase deletion, as upstream's nftables proxier does: kernels before 6.2 (Debian 12 runs 6.1)
        can refuse to delete a chain in the transaction that removes the map element jumping to it. So
        a chain the plan drops is flushed in this sync and deleted in the next one; one that comes back
        meanwhile is simply filled again."""
        rendered = self._renderer.render(plan)
        applied = self._applied
        if applied is None:
            self._flushed = frozenset()
            return rendered
        stale = {name: Chain(name, (), chain.base) for name, chain in applied.chains.items()
                 if name not in rendered.chains and name not in self._flushed}
        self._flushed = frozenset(stale)
        if not stale:
            return rendered
        return Ruleset(rendered.family, rendered.table, {**rendered.chains, **stale}, rendered.sets)

    def _changes(self) -> Touched | None:
        return self._renderer.touched

    def _partial(self, applied: Ruleset, desired: Ruleset, changes: Touched | None) -> str | None:
        try:
            return diff_transaction(applied, desired, touched=changes)
        except NeedsFullSync:
            return None

    def _full(self, desired: Ruleset) -> str:
        return full_transaction(desired)

    def _apply(self, transaction: str) -> None:
        self.runner.run(transaction)

    @raised_as_proxy_errors
    def intact(self) -> bool:
        """Whether our table is still in the kernel with every chain of the last sync (a flush of the
        ruleset from outside must force a full sync). Only the chain names: listing the table, even tersely,
        costs 0.8 s at 10k Services, during which no sync could run."""
        if self._applied is None:
            return False
        present = self.runner.list_chains(FAMILY, self.table)
        return present is not None and set(self._applied.chains) <= set(present)

    @raised_as_proxy_errors
    def cleanup(self) -> None:
        """Remove everything of ours: the whole table (`add` first so that deleting never fails)."""
        where = f"{FAMILY} {self.table}"
        self.runner.run(f"add table {where}\ndelete table {where}\n")
        self._applied = None
