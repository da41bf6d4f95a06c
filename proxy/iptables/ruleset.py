"""Desired state of our iptables chains, and the iptables-restore --noflush text that gets the kernel there.

A `Ruleset` is data: the top-level chains (rewritten whole at every sync, as upstream does) and the nat
chains of every service port, grouped by the service port that owns them. Two transactions:

- `full_transaction`: every chain of ours declared (which flushes it) and filled; chains found in the
  kernel that we no longer want (`existing`, from iptables-save) flushed and deleted; missing jumps from
  the built-in chains inserted.
- `partial_transaction`: upstream's partial sync (kube-proxy >= 1.26): only the chains of service ports
  that changed, stale chains of those deleted with -X, and the top-level chains whose rules changed.
  Unchanged chains are not mentioned at all: in iptables-restore --noflush, a `:CHAIN` line flushes an
  existing chain, so even declaring them would empty them.

Both are one `iptables-restore --noflush` input (one transaction per sync), `*filter` before `*nat` like upstream.
The pieces any iptables writer needs (tables, jumps, sections, reading iptables-save) are firewall's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from firewall.iptables.ruleset import FILTER, NAT, Jump, table_section
from proxy.iptables.layout import TOP_CHAINS, is_service_chain


@dataclass(frozen=True)
class Ruleset:
    # (table, chain) -> rules, for the top-level chains of TOP_CHAINS.
    top: Mapping[tuple[str, str], tuple[str, ...]]
    # nat service chain -> rules.
    chains: Mapping[str, tuple[str, ...]]
    # service port ("ns/name:port") -> the nat chains it owns.
    owners: Mapping[str, tuple[str, ...]]

    @property
    def rule_count(self) -> int:
        return sum(len(r) for r in self.top.values()) + sum(len(r) for r in self.chains.values())


def _top(rs: Ruleset, table: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(chain, rs.top.get((table, chain), ())) for chain in TOP_CHAINS[table]]


def full_transaction(rs: Ruleset, *, existing_nat: Iterable[str] = (), missing_jumps: Iterable[Jump] = ()) -> str:
    """Everything of ours; `existing_nat` are the nat chains the kernel holds (stale ones get deleted)."""
    jumps = list(missing_jumps)
    stale = sorted(c for c in set(existing_nat) if is_service_chain(c) and c not in rs.chains)
    lines: list[str] = []
    table_section(lines, FILTER, TOP_CHAINS[FILTER], jumps, _top(rs, FILTER), ())
    table_section(lines, NAT, [*TOP_CHAINS[NAT], *rs.chains, *stale], jumps,
           [*_top(rs, NAT), *rs.chains.items()], stale)
    return "\n".join(lines) + "\n"


def partial_transaction(old: Ruleset, new: Ruleset, changed: Iterable[str]) -> str:
    """The top-level chains and the chains of the service ports in `changed` (added, altered or gone)."""
    write: dict[str, None] = {}
    gone: dict[str, None] = {}
    for key in sorted(set(changed)):
        write.update(dict.fromkeys(new.owners.get(key, ())))
        gone.update(dict.fromkeys(c for c in old.owners.get(key, ()) if c not in new.chains))
    # Top-level chains whose rules did not change are left alone too (upstream rewrites them every
    # time; KUBE-SERVICES alone is 10k rules at 10k services, most of a one-endpoint change's cost).
    top = {t: [c for c in TOP_CHAINS[t] if old.top.get((t, c), ()) != new.top.get((t, c), ())]
           for t in (FILTER, NAT)}
    lines: list[str] = []
    if top[FILTER]:
        table_section(lines, FILTER, top[FILTER], (), [(c, new.top.get((FILTER, c), ())) for c in top[FILTER]], ())
    if top[NAT] or write or gone:
        table_section(lines, NAT, [*top[NAT], *write, *gone], (),
               [*((c, new.top.get((NAT, c), ())) for c in top[NAT]), *((c, new.chains[c]) for c in write)], gone)
    return "\n".join(lines) + "\n" if lines else ""


def owned_rules_in_builtins(save_text: str, ours: Iterable[str]) -> list[str]:
    """Rules ("CHAIN spec") of built-in chains that jump to one of our chains (for cleanup)."""
    names = set(ours)
    out = []
    for line in save_text.splitlines():
        if not line.startswith("-A "):
            continue
        chain, _, spec = line[3:].partition(" ")
        if chain.startswith("KUBE-"):
            continue
        target = spec.rsplit("-j ", 1)[-1].split(" ", 1)[0] if "-j " in spec else ""
        if target in names or is_service_chain(target):
            out.append(f"{chain} {spec}")
    return out

