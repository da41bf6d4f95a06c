"""Load shedding for the UDP side: when queries arrive faster than the server answers them, answer every
source its fair share and drop the surplus of the heaviest, so that one pod's flood does not starve the
others. Nothing is dropped while the server keeps up.

The server reads everything waiting on its socket at once (cheap: the kernel's buffer stays nearly empty,
so the kernel itself, which drops blindly when the buffer is full, never has to choose), then keeps
`keep(sources, capacity)` of it: all of it when it is no more than CAPACITY, otherwise a max-min fair
allotment per source (each source's earliest queries), never less than one per source.
"""

from __future__ import annotations

from collections import Counter


def allotments(counts: dict[str, int], capacity: int) -> dict[str, int]:
    """Max-min fair shares of CAPACITY among sources wanting COUNTS: the light get all they ask, the
    heaviest split what is left; every source gets at least one."""
    shares: dict[str, int] = {}
    remaining = capacity
    ordered = sorted(counts.items(), key=lambda item: item[1])
    for i, (source, wanted) in enumerate(ordered):
        share = max(1, remaining // (len(ordered) - i))
        shares[source] = min(wanted, share)
        remaining = max(0, remaining - shares[source])
    return shares


def keep(sources: list[str], capacity: int) -> list[bool]:
    """For packets from SOURCES (in arrival order), which to answer."""
    if len(sources) <= capacity:
        return [True] * len(sources)
    left = allotments(dict(Counter(sources)), capacity)
    kept = []
    for source in sources:
        kept.append(left[source] > 0)
        left[source] -= 1
    return kept
