"""What every kube-proxy backend's sync does, whatever it writes: the skeleton of syncProxyRules.

    render the plan -> full or partial? -> one transaction -> apply it -> remember what the kernel holds

A backend (nftables/backend.py, iptables/backend.py) fills in the steps that differ: how it renders,
what its renderer says changed, how it writes a partial and a full transaction, and how it applies one.
The order and the bookkeeping are here, once, because that is where the rules live that must not drift
between modes: a change list is usable only if the last render is what the kernel holds; a sync is full
when asked, on the first sync, when the node context changed or when the backend cannot write a partial
one; and a failed apply forgets what was applied, since the kernel's state is then unknown, so the next
sync is full (kube-proxy's rule).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from proxy.errors import raised_as_proxy_errors
from proxy.gcpause import gc_paused
from proxy.plan import ProxyPlan

RulesetT = TypeVar("RulesetT")
ChangesT = TypeVar("ChangesT")


@dataclass(frozen=True)
class SyncResult:
    full: bool
    transaction: str
    seconds: float  # render + apply

    @property
    def lines(self) -> int:
        return self.transaction.count("\n")


class Backend(abc.ABC, Generic[RulesetT, ChangesT]):
    """A desired-state backend: `sync(plan)` renders RulesetT and applies it as one transaction."""

    #: What the runner raises when the kernel refused or could not take a transaction (firewall's
    #: error; the public methods let it out as the proxy's, see proxy/errors.py).
    apply_error: ClassVar[type[Exception]]

    def __init__(self) -> None:
        self._applied: RulesetT | None = None
        self._rendered: RulesetT | None = None
        self._applied_node: object = None

    @property
    def applied(self) -> RulesetT | None:
        return self._applied

    @raised_as_proxy_errors
    @gc_paused
    def sync(self, plan: ProxyPlan, *, full: bool = False) -> SyncResult:
        start = time.perf_counter()
        # The renderer's change list is relative to its previous render; usable only if that is what
        # the kernel holds.
        in_step = self._applied is not None and self._applied is self._rendered
        desired = self._render(plan)
        self._rendered = desired
        changes = self._changes() if in_step else None
        transaction: str | None = None
        is_full = full or self._applied is None or self._applied_node != plan.node
        if not is_full:
            assert self._applied is not None
            transaction = self._partial(self._applied, desired, changes)
        if transaction is None:
            is_full = True
            transaction, desired = self._full(desired)
            self._rendered = desired
        try:
            self._apply(transaction)
        except self.apply_error:
            self._applied = None  # unknown kernel state: the next sync is full
            raise
        self._applied = desired
        self._applied_node = plan.node
        return SyncResult(is_full, transaction, time.perf_counter() - start)

    @abc.abstractmethod
    def _render(self, plan: ProxyPlan) -> RulesetT:
        """The desired state of `plan` (the renderer may reuse its previous render)."""

    @abc.abstractmethod
    def _changes(self) -> ChangesT | None:
        """What the last render changed relative to the one before; None: it cannot say."""

    @abc.abstractmethod
    def _partial(self, applied: RulesetT, desired: RulesetT, changes: ChangesT | None) -> str | None:
        """The transaction from `applied` to `desired` ("" when nothing changed); None: a full one is needed."""

    @abc.abstractmethod
    def _full(self, desired: RulesetT) -> tuple[str, RulesetT]:
        """The transaction that writes everything of ours, whatever the kernel holds now, and the state it
        leaves there (DESIRED, or DESIRED with objects renamed when the backend writes a new generation)."""

    @abc.abstractmethod
    def _apply(self, transaction: str) -> None:
        """Hands the transaction to the runner; raises `apply_error` when it is refused."""

    @abc.abstractmethod
    def intact(self) -> bool:
        """Whether the kernel still holds what the last sync wrote (if not: sync with full=True)."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Removes everything of ours from the kernel."""
