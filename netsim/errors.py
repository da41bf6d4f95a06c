"""netsim's exceptions.

    NetsimError
    ├── TopologyError          a topology file is wrong; carries every problem found
    ├── NetlinkError           the kernel refused a netlink request (names the object)
    ├── NamespaceError         a network namespace could not be made, entered or removed
    └── ConflictError          what we are asked to make collides with something that exists
"""

from __future__ import annotations

from dataclasses import dataclass


class NetsimError(Exception):
    """Base of every error netsim raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One mistake in a topology: where (field path) and what, with the fix in the message."""

    path: str
    message: str

    def render(self, source: str) -> str:
        where = f"{source}: " if source else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class TopologyError(NetsimError):
    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.render(source) for p in problems))


class NetlinkError(NetsimError):
    pass


class NamespaceError(NetsimError):
    pass


class ConflictError(NetsimError):
    pass
