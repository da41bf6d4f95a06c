"""iptables backend: render a ProxyPlan into kube-proxy's iptables layout, one iptables-restore per sync.

    render(plan) -> Ruleset                      desired chains (layout.py: the layout and why)
    full_transaction / partial_transaction       -> iptables-restore --noflush text (ruleset.py)
    IptablesBackend(runner=...).sync(plan)       full or partial sync through a runner seam (backend.py)
    SubprocessIptables(netns=..., flavour="nft"|"legacy") | FakeIptables(...)
                                                 the seam: the real tools, or in memory with trace()
                                                 (firewall.iptables, shared with the network-policy agent)
"""

from firewall.errors import FakeIptablesError
from firewall.iptables.fake import FakeIptables
from firewall.iptables.runner import Flavour, IptablesRunner, SubprocessIptables
from firewall.tracing import Packet, PathResult, TraceResult
from proxy.errors import IptablesError
from proxy.iptables.backend import IptablesBackend, SyncResult
from proxy.iptables.layout import JUMPS, EndpointChains, endpoint_chain, port_proto_hash
from proxy.iptables.renderer import Renderer, render
from proxy.iptables.ruleset import Ruleset, full_transaction, partial_transaction

__all__ = [
    "JUMPS",
    "EndpointChains",
    "FakeIptables",
    "FakeIptablesError",
    "Flavour",
    "IptablesBackend",
    "IptablesError",
    "IptablesRunner",
    "Packet",
    "PathResult",
    "Renderer",
    "Ruleset",
    "SubprocessIptables",
    "SyncResult",
    "TraceResult",
    "endpoint_chain",
    "full_transaction",
    "partial_transaction",
    "port_proto_hash",
    "render",
]
