"""The iptables seam: apply one iptables-restore input, and read a table back as iptables-save prints it.

`IptablesRunner` is the protocol; `SubprocessIptables` runs the real tools, optionally inside a named
network namespace (`ip netns exec`), and `FakeIptables` (fake.py) is the in-memory one for unit tests.

Two flavours, as on a real node: "nft" (iptables 1.8.9 on nf_tables, Debian's default) and "legacy"
(x_tables). The binaries are named explicitly (iptables-nft-restore, iptables-legacy-restore) rather than
through the `iptables-restore` alternative, so that which kernel API we write to never depends on a
symlink.
"""

from __future__ import annotations

import re
import subprocess
from typing import Literal, Protocol

from firewall.errors import IptablesError
from firewall.iptables.ruleset import saved_chains

Flavour = Literal["nft", "legacy"]


# Above this many chains declared in one input, -Z first (below: fetching every chain costs more than it
# saves; a one-endpoint change at 10k services restores in 0.2 s without it, 2 s with it).
ZERO_COUNTERS_ABOVE_CHAINS = 1000


def zero_counters_first(text: str) -> str:
    """Put `-Z` (zero all counters) first in every table of an iptables-restore input.

    iptables-nft 1.8.9 keeps the chain names its commands mention in a sorted linked list (to know which
    chains to fetch from the kernel), inserting every rule's chain and jump target by a linear walk: a
    restore takes time ~ rules x chains. Measured here, kube-proxy's layout at 10,000 services x 5
    endpoints (60k chains, 170k rules) took over 4 minutes. A command that names no chain makes it fetch
    all chains instead and skip the list, and -Z is the one such command without effect on the rules
    (it zeroes the packet counters of the table, statistics only): the same restore then takes 5.7 s.
    Legacy iptables needs none of it.
    """
    return re.sub(r"^(\*\w+)$", r"\1\n-Z", text, flags=re.MULTILINE)


def chains_of_table(listing: str, table: str) -> list[str]:
    """The chain names of `ip TABLE` in `nft list chains ip` output (every table of the family, each as
    `table ip NAME {` with its `chain NAME {` lines)."""
    names: list[str] = []
    current = None
    for line in listing.splitlines():
        words = line.split()
        if words[:2] == ["table", "ip"] and len(words) >= 3:
            current = words[2]
        elif current == table and len(words) >= 2 and words[0] == "chain":
            names.append(words[1])
    return names


class IptablesRunner(Protocol):
    def restore(self, text: str) -> None:
        """Apply `text` with iptables-restore --noflush, or raise IptablesError."""

    def save(self, table: str) -> str:
        """The table as `iptables-save -t TABLE` prints it ("" when it does not exist)."""

    def chains(self, table: str) -> list[str]:
        """The names of TABLE's chains, built-in and user-defined, without reading their rules."""

    def chain_rules(self, table: str, chain: str) -> list[str]:
        """CHAIN's rules as `iptables -S CHAIN` prints them (`-A CHAIN spec`); [] when it does not exist."""


class SubprocessIptables:
    """The real one: one iptables-restore process per transaction."""

    def __init__(self, *, netns: str | None = None, flavour: Flavour = "nft", wait: int = 5,
                 timeout: float = 600.0) -> None:
        self.netns = netns
        self.flavour: Flavour = flavour
        self.wait = wait
        self.timeout = timeout

    def _argv(self, tool: str, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, f"iptables-{self.flavour}-{tool}", *args]

    def restore(self, text: str) -> None:
        if not text:
            return
        if self.flavour == "nft" and text.count("\n:") > ZERO_COUNTERS_ABOVE_CHAINS:
            text = zero_counters_first(text)
        # -w: legacy iptables serialises on /run/xtables.lock, shared by every namespace of the machine.
        done = subprocess.run(self._argv("restore", "-w", str(self.wait), "--noflush"), input=text,
                              capture_output=True, text=True, timeout=self.timeout, check=False)
        # Success is the exit status, never the (empty or not) output.
        if done.returncode != 0:
            where = f" in netns {self.netns}" if self.netns else ""
            raise IptablesError(
                f"iptables-{self.flavour}-restore{where} failed ({done.returncode}): {done.stderr.strip()[:2000]}",
                transaction=text, stderr=done.stderr)

    def chains(self, table: str) -> list[str]:
        if self.flavour == "legacy":  # x_tables: a save is quick, and the only listing there is
            return saved_chains(self.save(table))
        # iptables-nft's tables are nf_tables tables (`ip nat`, `ip filter`): nft lists their chain names in
        # milliseconds, where iptables-nft-save of kube-proxy's nat table at 10k Services takes 1.7 s.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        done = subprocess.run([*prefix, "nft", "list", "chains", "ip"], capture_output=True, text=True,
                              timeout=self.timeout, check=False)
        if done.returncode != 0:
            raise IptablesError(f"nft list chains ip failed: {done.stderr.strip()}", stderr=done.stderr)
        return chains_of_table(done.stdout, table)

    def chain_rules(self, table: str, chain: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        done = subprocess.run([*prefix, f"iptables-{self.flavour}", "-w", str(self.wait), "-t", table, "-S", chain],
                              capture_output=True, text=True, timeout=self.timeout, check=False)
        if done.returncode != 0:
            return []  # the chain (or its table) is gone: for the caller, no rules
        return [line for line in done.stdout.splitlines() if line.startswith("-A ")]

    def save(self, table: str) -> str:
        done = subprocess.run(self._argv("save", "-t", table), capture_output=True, text=True,
                              timeout=self.timeout, check=False)
        if done.returncode != 0:
            raise IptablesError(f"iptables-{self.flavour}-save -t {table} failed: {done.stderr.strip()}",
                                stderr=done.stderr)
        return done.stdout
