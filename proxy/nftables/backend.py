"""The nftables backend: plan in, one transaction out, applied through a runner seam.

It remembers the last desired state it applied, so a sync is the diff (`partial`) unless asked for a
full sync, the node context changed, or the previous sync failed: kube-proxy's rule that a failed sync
forces the next one to be full, since the kernel's state is then unknown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from firewall.errors import NftError
from firewall.nftables.ruleset import NeedsFullSync, Ruleset, diff_transaction, full_transaction
from firewall.nftables.runner import NftRunner, SubprocessNft
from proxy.errors import raised_as_proxy_errors
from proxy.nftables.layout import FAMILY, TABLE
from proxy.nftables.renderer import Renderer
from proxy.plan import ProxyPlan


@dataclass(frozen=True)
class SyncResult:
    full: bool
    transaction: str
    seconds: float  # render + apply

    @property
    def lines(self) -> int:
        return self.transaction.count("\n")


class NftablesBackend:
    def __init__(self, *, runner: NftRunner | None = None, table: str = TABLE) -> None:
        self.runner: NftRunner = runner if runner is not None else SubprocessNft()
        self.table = table
        self._renderer = Renderer(table=table)
        self._applied: Ruleset | None = None
        self._rendered: Ruleset | None = None
        self._applied_node: object = None

    @property
    def applied(self) -> Ruleset | None:
        return self._applied

    @raised_as_proxy_errors
    def sync(self, plan: ProxyPlan, *, full: bool = False) -> SyncResult:
        start = time.perf_counter()
        # The renderer's change list is relative to its previous render; usable only if that is
        # what the kernel holds.
        renderer_in_step = self._applied is not None and self._applied is self._rendered
        desired = self._renderer.render(plan)
        self._rendered = desired
        touched = self._renderer.touched if renderer_in_step else None
        transaction = ""
        is_full = full or self._applied is None or self._applied_node != plan.node
        if not is_full:
            assert self._applied is not None
            try:
                transaction = diff_transaction(self._applied, desired, touched=touched)
            except NeedsFullSync:
                is_full = True
        if is_full:
            transaction = full_transaction(desired)
        try:
            self.runner.run(transaction)
        except NftError:
            self._applied = None  # unknown kernel state: the next sync recreates the table
            raise
        self._applied = desired
        self._applied_node = plan.node
        return SyncResult(is_full, transaction, time.perf_counter() - start)

    @raised_as_proxy_errors
    def intact(self) -> bool:
        """Whether our table is still in the kernel with every chain of the last sync (a flush of the
        ruleset from outside must force a full sync). Terse: the chains, not the thousands of elements."""
        if self._applied is None:
            return False
        listed = self.runner.list_table(FAMILY, self.table, terse=True)
        if listed is None:
            return False
        present = {line.split()[1] for line in listed.splitlines() if line.strip().startswith("chain ")}
        return all(name in present for name in self._applied.chains)

    @raised_as_proxy_errors
    def cleanup(self) -> None:
        """Remove everything of ours: the whole table (`add` first so that deleting never fails)."""
        where = f"{FAMILY} {self.table}"
        self.runner.run(f"add table {where}\ndelete table {where}\n")
        self._applied = None
