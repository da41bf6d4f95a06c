"""nftables for any table: the `nft -f` seam, desired state as data, and an in-memory fake.

    Ruleset / full_transaction / diff_transaction     desired state -> nft -f text (ruleset.py)
    NftRunner: SubprocessNft(netns=...) | FakeNft()   the seam: real `nft -f -`, or in memory with trace()
"""

from firewall.nftables.fake import FakeNft, FakeTable
from firewall.nftables.ruleset import (
    BaseHook,
    Chain,
    NeedsFullSync,
    Ruleset,
    Set,
    diff_transaction,
    full_transaction,
)
from firewall.nftables.runner import NftRunner, SubprocessNft

__all__ = [
    "BaseHook",
    "Chain",
    "FakeNft",
    "FakeTable",
    "NeedsFullSync",
    "NftRunner",
    "Ruleset",
    "Set",
    "SubprocessNft",
    "diff_transaction",
    "full_transaction",
]
