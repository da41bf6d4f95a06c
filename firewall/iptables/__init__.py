"""iptables for any layout: the iptables-restore seam, the pieces of an input, and an in-memory fake.

    FILTER, NAT, BUILTIN_CHAINS, Jump, comment, table_section, saved_chains, missing_jumps   (ruleset.py)
    IptablesRunner: SubprocessIptables(netns=..., flavour="nft"|"legacy") | FakeIptables()
                                                 the seam: the real tools, or in memory with trace()
"""

from firewall.iptables.fake import FakeIptables
from firewall.iptables.ruleset import (
    BUILTIN_CHAINS,
    FILTER,
    NAT,
    Jump,
    comment,
    missing_jumps,
    present_jumps,
    quote,
    saved_chains,
    table_section,
)
from firewall.iptables.runner import Flavour, IptablesRunner, SubprocessIptables

__all__ = [
    "BUILTIN_CHAINS",
    "FILTER",
    "NAT",
    "FakeIptables",
    "Flavour",
    "IptablesRunner",
    "Jump",
    "SubprocessIptables",
    "comment",
    "missing_jumps",
    "present_jumps",
    "quote",
    "saved_chains",
    "table_section",
]
