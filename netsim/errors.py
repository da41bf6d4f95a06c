"""netsim's exceptions.

    NetsimError
    ├── TopologyError          a topology file is wrong; carries every problem found
    ├── NetlinkError           the kernel refused a netlink request (names the object)
    ├── NamespaceError         a network namespace could not be made, entered or removed
    ├── ConflictError          what we are asked to make collides with something that exists
    └── FaultError             a fault could not be applied or removed (netsim/faults.py)
        └── FaultInputError    a fault asked wrongly: unknown member, bad percentage or rate
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


class FaultError(NetsimError):
    """A fault could not be applied or removed: the kernel refused, or lacks what it needs (netem)."""


class FaultInputError(FaultError):
    """A fault asked wrongly (an unknown member, a percentage outside 0-100, a malformed rate): nothing
    was changed. FIELD names the field of a fault's mapping that is wrong (percent, rate, node...)."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.field = field
