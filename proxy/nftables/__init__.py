"""nftables backend: render a ProxyPlan into one transaction for table `ip kubesim-proxy`.

    render(plan) -> Ruleset                    desired state (layout.py: the table layout and why)
    full_transaction(rs) / diff_transaction(old, new) -> nft -f text   (ruleset.py)
    NftablesBackend(runner=...).sync(plan)     full or partial sync through a runner seam (backend.py)
    SubprocessNft(netns=...) | FakeNft(...)    the seam: real `nft -f -`, or in memory with trace()
"""

from proxy.nftables.backend import NftablesBackend, SyncResult
from proxy.nftables.fake import FakeNft
from proxy.nftables.layout import FAMILY, TABLE
from proxy.nftables.renderer import Renderer, render
from proxy.nftables.ruleset import NeedsFullSync, Ruleset, diff_transaction, full_transaction
from proxy.nftables.runner import NftRunner, SubprocessNft
from proxy.tracing import Packet, PathResult, TraceResult

__all__ = [
    "FAMILY",
    "TABLE",
    "FakeNft",
    "NeedsFullSync",
    "NftRunner",
    "NftablesBackend",
    "Packet",
    "PathResult",
    "Renderer",
    "Ruleset",
    "SubprocessNft",
    "SyncResult",
    "TraceResult",
    "diff_transaction",
    "full_transaction",
    "render",
]
