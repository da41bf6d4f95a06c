"""What every writer of iptables rules shares: the tables and built-in chains, comments, jumps from
the built-in chains into chains of our own, the sections of an iptables-restore --noflush input, and
reading iptables-save output back.

The layout of the chains (which chains, which rules) is the caller's: kube-proxy's in proxy/iptables,
the network-policy agent's in netpol. One input is one transaction: `*table`, `:CHAIN` declarations
(which, with --noflush, create a chain or flush an existing one), rules, `-X` deletions, `COMMIT`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NAT = "nat"
FILTER = "filter"

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    FILTER: ("INPUT", "FORWARD", "OUTPUT"),
    NAT: ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def comment(text: str) -> str:
    return f"-m comment --comment {quote(text)}"


@dataclass(frozen=True)
class Jump:
    """A rule in a built-in chain that sends traffic into ours (upstream iptablesJumpChains)."""

    table: str
    chain: str  # built-in
    target: str
    comment: str
    extra: str = ""

    @property
    def spec(self) -> str:
        """The rule as iptables-save prints it (so presence is a line comparison)."""
        parts = [self.extra, comment(self.comment), f"-j {self.target}"]
        return " ".join(p for p in parts if p)


def table_section(lines: list[str], table: str, declare: Iterable[str], jumps: Iterable[Jump],
                  rules: Iterable[tuple[str, Iterable[str]]], delete: Iterable[str]) -> None:
    """Append one `*TABLE ... COMMIT` section: declare (create or flush) chains, insert the jumps of
    this table, append every chain's rules, delete chains."""
    lines.append(f"*{table}")
    lines.extend(f":{chain} - [0:0]" for chain in declare)
    # -I without a position prepends, as upstream's EnsureRule(Prepend); our chains exist by now.
    lines.extend(f"-I {j.chain} {j.spec}" for j in jumps if j.table == table)
    for chain, chain_rules in rules:
        prefix = f"-A {chain} "
        lines.extend(prefix + r for r in chain_rules)
    lines.extend(f"-X {chain}" for chain in delete)
    lines.append("COMMIT")


def saved_chains(save_text: str) -> list[str]:
    """Chain names declared in iptables-save output."""
    return [line[1:].split(" ", 1)[0] for line in save_text.splitlines() if line.startswith(":")]


def present_jumps(save_text: str) -> set[str]:
    """`-A CHAIN spec` lines of built-in chains in iptables-save output, as "CHAIN spec"."""
    out: set[str] = set()
    for line in save_text.splitlines():
        if line.startswith("-A "):
            out.add(line[3:])
    return out


def missing_jumps(table: str, save_text: str, jumps: Iterable[Jump]) -> list[Jump]:
    have = present_jumps(save_text)
    return [j for j in jumps if j.table == table and f"{j.chain} {j.spec}" not in have]
