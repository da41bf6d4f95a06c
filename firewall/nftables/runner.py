"""The `nft` seam: something that applies one transaction text, all or nothing.

`NftRunner` is the protocol; `SubprocessNft` runs the real `nft -f -`, optionally inside a named network
namespace (`ip netns exec`), and `FakeNft` (fake.py) is the in-memory one for unit tests.
"""

from __future__ import annotations

import subprocess
from typing import Protocol

from firewall.errors import NftError


class NftRunner(Protocol):
    def run(self, transaction: str) -> None:
        """Apply `transaction` atomically or raise NftError (nothing applied)."""

    def list_table(self, family: str, table: str, *, terse: bool = False) -> str | None:
        """The table as `nft list table` prints it (without set and map elements when terse), or None
        when it does not exist."""

    def list_chains(self, family: str, table: str) -> list[str] | None:
        """The names of the table's chains, or None when it does not exist."""


class SubprocessNft:
    """The real one: one `nft -f -` process per transaction."""

    def __init__(self, *, netns: str | None = None, nft: str = "nft", timeout: float = 600.0) -> None:
        self.netns = netns
        self.nft = nft
        self.timeout = timeout

    def _argv(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, self.nft, *args]

    def run(self, transaction: str) -> None:
        if not transaction:
            return
        done = subprocess.run(self._argv("-f", "-"), input=transaction, capture_output=True, text=True,
                              timeout=self.timeout, check=False)
        # Success is nft's exit status, never its (empty or not) output.
        if done.returncode != 0:
            where = f" in netns {self.netns}" if self.netns else ""
            raise NftError(f"nft -f{where} failed ({done.returncode}): {done.stderr.strip()[:2000]}",
                           transaction=transaction, stderr=done.stderr)

    def list_table(self, family: str, table: str, *, terse: bool = False) -> str | None:
        flags = ["-t"] if terse else []
        done = subprocess.run(self._argv(*flags, "list", "table", family, table), capture_output=True, text=True,
                              timeout=self.timeout, check=False)
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise NftError(f"nft list table {family} {table} failed: {done.stderr.strip()}",
                           stderr=done.stderr)
        return done.stdout

    def list_chains(self, family: str, table: str) -> list[str] | None:
        """`nft list chains FAMILY`, this table's part: milliseconds whatever the sets hold, where even a
        terse `list table` makes nft 1.0.6 fetch every element (0.8 s at 10k Services)."""
        done = subprocess.run(self._argv("list", "chains", family), capture_output=True, text=True,
                              timeout=self.timeout, check=False)
        if done.returncode != 0:
            raise NftError(f"nft list chains {family} failed: {done.stderr.strip()}", stderr=done.stderr)
        return chains_of(done.stdout, family, table)


def chains_of(listing: str, family: str, table: str) -> list[str] | None:
    """The chain names of table FAMILY TABLE in `nft list chains` output; None when the table is not in it."""
    found: list[str] | None = None
    inside = False
    for line in listing.splitlines():
        words = line.split()
        if line.startswith("table "):
            inside = words[1:3] == [family, table]
            if inside:
                found = []
        elif inside and found is not None and words[:1] == ["chain"] and len(words) >= 2:
            found.append(words[1])
    return found
