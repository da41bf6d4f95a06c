"""nftables backend: render a ProxyPlan into one transaction for table `ip kubesim-proxy`.

    render(plan) -> Ruleset                    desired state (layout.py: the table layout and why)
    full_transaction(rs) / diff_transaction(old, new) -> nft -f text   (firewall.nftables.ruleset)
    NftablesBackend(runner=...).sync(plan)     full or partial sync through a runner seam (backend.py)
    preload.py / netlink.py                    a full sync's big sets over netlink, under new generation
                                               names, before one small `nft -f` makes them live
    SubprocessNft(netns=...) | FakeNft(...)    the seam: real `nft -f -`, or in memory with trace()
                                               (firewall.nftables, shared with the network-policy agent)
"""

from firewall.nftables.fake import FakeNft
from firewall.nftables.ruleset import NeedsFullSync, Ruleset, diff_transaction, full_transaction
from firewall.nftables.runner import NftRunner, SubprocessNft
from firewall.tracing import Packet, PathResult, TraceResult
from proxy.nftables.backend import NftablesBackend, SyncResult
from proxy.nftables.layout import FAMILY, TABLE
from proxy.nftables.renderer import Renderer, render

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
