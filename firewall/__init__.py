"""What kube-proxy (proxy/) and the network-policy agent (netpol/) share to write a node's firewall.

    nftables/            the `nft -f` seam (SubprocessNft), a table's desired state and its transactions
                         (ruleset), and the in-memory FakeNft that applies transactions all or nothing and
                         traces virtual packets
    iptables/            the iptables-restore seam (SubprocessIptables), tables/jumps/sections (ruleset),
                         and the in-memory FakeIptables with its tracer
    tracing              the packet and the outcomes both fakes' tracers answer with
    bounded_frequency    kube-proxy's BoundedFrequencyRunner: coalesced, rate-bounded, retried syncs
    errors               FirewallError tree

A leaf: it imports nothing of proxy, netpol, control or kubesim (a unit test checks), so each layout
(which chains, which rules) stays with its owner and both owners load the same fakes.
"""

from firewall.bounded_frequency import BoundedFrequencyRunner
from firewall.errors import FakeIptablesError, FakeNftError, FirewallError, IptablesError, NftError
from firewall.tracing import Packet, PathResult, TraceResult

__all__ = [
    "BoundedFrequencyRunner",
    "FakeIptablesError",
    "FakeNftError",
    "FirewallError",
    "IptablesError",
    "NftError",
    "Packet",
    "PathResult",
    "TraceResult",
]
