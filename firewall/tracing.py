"""What the in-memory rulesets' packet tracers share: the packet, a path's outcome, the outcome over
every random choice, and the chooser that walks those choices one path at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Ingress = Literal["pod", "node", "external"]


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    dport: int
    protocol: str = "TCP"
    ingress: Ingress = "pod"


@dataclass(frozen=True)
class PathResult:
    verdict: Literal["ACCEPT", "DROP", "REJECT"]
    dnat: str | None  # "ip:port"
    masquerade: bool
    updates: tuple[tuple[str, str], ...] = ()  # (set, element) the packet added to dynamic sets
    # The comments of the rules whose verdict (accept, drop, reject) the packet met, in order: which
    # rule of whose let it through or stopped it (the iptables fake counts a MARK as deciding too).
    verdict_rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceResult:
    """The outcome over every random choice the rules can make."""

    paths: tuple[PathResult, ...]

    @property
    def verdict(self) -> str:
        """DNAT | DROP | REJECT | ACCEPT (untouched) | MIXED."""
        kinds = {"DNAT" if p.dnat and p.verdict == "ACCEPT" else p.verdict for p in self.paths}
        return kinds.pop() if len(kinds) == 1 else "MIXED"

    @property
    def endpoints(self) -> frozenset[str]:
        return frozenset(p.dnat for p in self.paths if p.dnat and p.verdict == "ACCEPT")

    @property
    def masquerade(self) -> bool | None:
        """True/False when every path agrees, None when some paths masquerade and some not."""
        kinds = {p.masquerade for p in self.paths}
        return kinds.pop() if len(kinds) == 1 else None


class Chooser:
    """One path through the rules' random choices: replays PREFIX, then takes 0, recording every choice
    so the tracer can enumerate the next path."""

    def __init__(self, prefix: list[int]) -> None:
        self.prefix = prefix
        self.record: list[tuple[int, int]] = []

    def choose(self, modulus: int) -> int:
        n = len(self.record)
        value = self.prefix[n] if n < len(self.prefix) else 0
        self.record.append((value, modulus))
        return value


def every_path(trace_one: Callable[[Chooser], PathResult], *, limit: int,
               too_many: Callable[[], Exception]) -> list[PathResult]:
    """Trace every combination of the rules' random choices, depth first: each run replays the choices
    of the last one up to its last open choice, and takes that choice's next value."""
    paths: list[PathResult] = []
    prefix: list[int] = []
    while True:
        chooser = Chooser(prefix)
        paths.append(trace_one(chooser))
        if len(paths) > limit:
            raise too_many()
        record = chooser.record
        while record and record[-1][0] + 1 >= record[-1][1]:
            record.pop()
        if not record:
            return paths
        prefix = [v for v, _ in record[:-1]] + [record[-1][0] + 1]
