"""The nftables backend: plan in, one transaction out, applied through a runner seam.

It remembers the last desired state it applied, so a sync is the diff (`partial`) unless asked for a
full sync, the node context changed, or the previous sync failed: kube-proxy's rule that a failed sync
forces the next one to be full, since the kernel's state is then unknown. The sequence is proxy/backend.py's;
this module supplies nftables' steps: a diff against the applied table, limited to what the renderer
touched, or the whole table recreated when the diff cannot be written (`NeedsFullSync`).

A full sync with big sets (10k Services) is preloaded (preload.py): those sets are filled over netlink
under new names first, then one small `nft -f` makes the new table live at once. Should any step be
refused, the same state is written the classic way, in one `nft -f` that deletes and recreates the table.
"""

from __future__ import annotations

import logging

from firewall.errors import NftError
from firewall.nftables.ruleset import Chain, NeedsFullSync, Ruleset, diff_transaction, full_transaction
from firewall.nftables.runner import NftRunner, SubprocessNft
from proxy.backend import Backend, SyncResult
from proxy.errors import raised_as_proxy_errors
from proxy.nftables.layout import FAMILY, TABLE
from proxy.nftables.netlink import NetlinkElements
from proxy.nftables.preload import DEFAULT_THRESHOLD, ElementLoader, FullLoad, Generation, plan_full_load
from proxy.nftables.renderer import Renderer
from proxy.plan import ProxyPlan

log = logging.getLogger(__name__)

__all__ = ["NftablesBackend", "SyncResult"]

# The renderer's change list: per set or map, the keys whose elements the last render changed.
Touched = dict[str, set[str]]


class NftablesBackend(Backend[Ruleset, Touched]):
    apply_error = NftError  # after which the next sync recreates the table

    def __init__(self, *, runner: NftRunner | None = None, table: str = TABLE, preload: bool = True,
                 elements: ElementLoader | None = None, preload_threshold: int = DEFAULT_THRESHOLD) -> None:
        """PRELOAD: full syncs fill big sets over netlink (ELEMENTS, by default netlink in the real
        runner's namespace; a fake runner has none unless given, e.g. preload.FakeElements) when a set
        has at least PRELOAD_THRESHOLD elements."""
        super().__init__()
        self.runner: NftRunner = runner if runner is not None else SubprocessNft()
        self.table = table
        if elements is None and preload and isinstance(self.runner, SubprocessNft):
            elements = NetlinkElements(netns=self.runner.netns)
        self.elements = elements if preload else None
        self.preload_threshold = preload_threshold
        self._renderer = Renderer(table=table)
        # Chains the plan no longer has, kept empty in the kernel until a later sync deletes them.
        self._flushed: frozenset[str] = frozenset()
        # The kernel's names for what a preloaded full sync renamed; the renderer's last table, unrenamed.
        self._generation = Generation()
        self._base: Ruleset | None = None
        self._pending: FullLoad | None = None
        #: What the last full sync did: "classic", "preloaded", or "fallback" (preloading was refused).
        self.last_full = ""

    def _render(self, plan: ProxyPlan) -> Ruleset:
        """The renderer's table, plus, empty, the chains that have just gone stale.

        Two-phase deletion, as upstream's nftables proxier does: kernels before 6.2 (Debian 12 runs 6.1)
        can refuse to delete a chain in the transaction that removes the map element jumping to it. So
        a chain the plan drops is flushed in this sync and deleted in the next one; one that comes back
        meanwhile is simply filled again."""
        self._base = self._renderer.render(plan)
        rendered = self._generation.ruleset(self._base)
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
        return self._generation.touched(self._renderer.touched)

    def _partial(self, applied: Ruleset, desired: Ruleset, changes: Touched | None) -> str | None:
        try:
            return diff_transaction(applied, desired, touched=changes)
        except NeedsFullSync:
            return None

    def _full(self, desired: Ruleset) -> tuple[str, Ruleset]:
        self._pending = None
        if self.elements is not None and self._base is not None:
            chains = self.runner.list_chains(FAMILY, self.table)
            try:
                sets = self.elements.list_sets(FAMILY, self.table)
            except NftError as err:  # netlink unusable here: this sync is a classic one
                log.warning("cannot list the sets of %s %s over netlink (%s); one nft transaction instead",
                            FAMILY, self.table, err)
                load = None
            else:
                load = plan_full_load(self._base, chains=chains, sets=sets, threshold=self.preload_threshold)
            if load is not None:
                self._pending = load
                self._generation = load.generation
                return load.commit, load.state
        self.last_full = "classic"
        return full_transaction(desired), desired

    def _apply(self, transaction: str) -> None:
        load, self._pending = self._pending, None
        if load is None:
            self.runner.run(transaction)
            return
        assert self.elements is not None
        try:
            # The new sets are not referred to until the commit: their fill need not be one transaction,
            # so it is sent in batches while the next is encoded, and the declaring `nft -f` runs meanwhile.
            self.elements.load(FAMILY, self.table, load.elements, atomic=False,
                               prepare=lambda: self.runner.run(load.prepare))
            self.runner.run(load.commit)
            self.last_full = "preloaded"
        except (NftError, ValueError) as err:
            # Whatever was refused, the packet path still sees the old table: write the same state the
            # classic way (this raises if the kernel refuses that too, and the next sync is full).
            log.warning("preloaded full sync of %s %s refused (%s); writing it in one transaction",
                        FAMILY, self.table, str(err).splitlines()[0][:300])
            self.runner.run(load.fallback())
            self.last_full = "fallback"
        self._flushed = load.stale_chains

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
        self._generation = Generation()
