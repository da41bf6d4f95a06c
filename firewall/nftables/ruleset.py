"""Desired state of one nftables table, and the transactions that bring the kernel to it.

A `Ruleset` is data: chains (with their rules as text), sets and maps (with their elements). It is
rendered into `nft -f` text in one of two ways:

- `full_transaction`: delete and recreate the table, atomically, in one transaction.
- `diff_transaction`: only what differs from the previous desired state: map/set elements added and
  removed, chains created/flushed/deleted. An endpoint change is a few element lines.

Every command is one line: the fake (fake.py) parses exactly this subset of nft syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

# `nft -f` parses a line of 50k elements fine, but bounded lines keep error messages readable and
# the parser's memory flat.
ELEMENTS_PER_LINE = 1000


class NeedsFullSync(Exception):
    """The change cannot be expressed as a diff; the caller recreates the table instead."""


@dataclass(frozen=True)
class BaseHook:
    type: str  # filter | nat
    hook: str  # prerouting | input | forward | output | postrouting
    priority: int

    def spec(self) -> str:
        return f"{{ type {self.type} hook {self.hook} priority {self.priority} ; policy accept ; }}"


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[str, ...] = ()
    base: BaseHook | None = None


@dataclass(frozen=True)
class Set:
    """A set (value None for every element) or a map (value per element)."""

    name: str
    kind: str  # "set" | "map"
    spec: str  # e.g. "type ipv4_addr . inet_proto . inet_service : verdict ; flags interval ;"
    elements: Mapping[str, str | None] = field(default_factory=dict)
    # Filled by the packet path (affinity): the renderer never lists or rewrites its elements.
    dynamic: bool = False


@dataclass(frozen=True)
class Ruleset:
    family: str
    table: str
    chains: Mapping[str, Chain]
    sets: Mapping[str, Set]

    @property
    def where(self) -> str:
        return f"{self.family} {self.table}"


def _element_lines(verb: str, rs: Ruleset, s: Set, keys: list[str]) -> Iterator[str]:
    for i in range(0, len(keys), ELEMENTS_PER_LINE):
        chunk = keys[i:i + ELEMENTS_PER_LINE]
        if verb == "add" and s.kind == "map":
            body = ", ".join(f"{k} : {s.elements[k]}" for k in chunk)
        else:
            body = ", ".join(chunk)
        yield f"{verb} element {rs.where} {s.name} {{ {body} }}"


def _declare_set(rs: Ruleset, s: Set) -> str:
    return f"add {s.kind} {rs.where} {s.name} {{ {s.spec} }}"


def _declare_chain(rs: Ruleset, c: Chain) -> str:
    return f"add chain {rs.where} {c.name}" + (f" {c.base.spec()}" if c.base else "")


def _rule_lines(rs: Ruleset, c: Chain) -> Iterator[str]:
    for rule in c.rules:
        yield f"add rule {rs.where} {c.name} {rule}"


def full_transaction(rs: Ruleset) -> str:
    """Recreate the table from scratch in one atomic transaction ("add" first: delete needs it to exist)."""
    lines = [f"add table {rs.where}", f"delete table {rs.where}", f"add table {rs.where}"]
    # Order: declarations before references (rules use sets, vmap elements name chains).
    lines += [_declare_set(rs, s) for s in rs.sets.values()]
    lines += [_declare_chain(rs, c) for c in rs.chains.values()]
    for c in rs.chains.values():
        lines += _rule_lines(rs, c)
    for s in rs.sets.values():
        if not s.dynamic:
            lines += _element_lines("add", rs, s, list(s.elements))
    return "\n".join(lines) + "\n"


def diff_transaction(old: Ruleset, new: Ruleset, *, touched: Mapping[str, Iterable[str]] | None = None) -> str:
    """The commands turning `old` into `new`; "" when nothing changed.

    `touched`, when given, promises that elements of sets present in both differ only at these keys
    (the renderer knows what it changed), so that a diff of 10k services does not compare 50k elements.
    """
    if (old.family, old.table) != (new.family, new.table):
        raise ValueError("diff_transaction needs two states of the same table")
    new_chains = [c for n, c in new.chains.items() if n not in old.chains]
    changed_chains = [c for n, c in new.chains.items() if n in old.chains and old.chains[n] != c]
    gone_chains = [c for n, c in old.chains.items() if n not in new.chains]
    new_sets = [s for n, s in new.sets.items() if n not in old.sets]
    gone_sets = [s for n, s in old.sets.items() if n not in new.sets]
    for n, st in new.sets.items():
        if n in old.sets and old.sets[n].spec != st.spec:
            # nft cannot alter a set's type, flags or timeout in place; names that encode such
            # parameters (affinity sets carry their timeout) make this a new set instead.
            raise NeedsFullSync(f"set {n} changed its declaration")

    lines: list[str] = []
    lines += [_declare_set(new, s) for s in new_sets]
    lines += [_declare_chain(new, c) for c in new_chains]
    for c in changed_chains:
        if c.base != old.chains[c.name].base:
            raise NeedsFullSync(f"chain {c.name} changed its hook")
        lines.append(f"flush chain {new.where} {c.name}")
    for c in new_chains + changed_chains:
        lines += _rule_lines(new, c)
    # Elements: deletions before additions, so that a changed value is delete + add of the same key.
    for name, s in new.sets.items():
        if s.dynamic:
            continue
        if name not in old.sets:
            lines += _element_lines("add", new, s, list(s.elements))
            continue
        before = old.sets[name].elements
        if touched is not None:
            keys = touched.get(name, ())
            removed = [k for k in keys if k in before and (k not in s.elements or s.elements[k] != before[k])]
            added = [k for k in keys if k in s.elements and (k not in before or before[k] != s.elements[k])]
        else:
            removed = [k for k, v in before.items() if k not in s.elements or s.elements[k] != v]
            added = [k for k, v in s.elements.items() if k not in before or before[k] != v]
        lines += _element_lines("delete", new, s, removed)
        lines += _element_lines("add", new, s, added)
    for c in gone_chains:
        lines.append(f"flush chain {new.where} {c.name}")
    for c in gone_chains:
        lines.append(f"delete chain {new.where} {c.name}")
    for s in gone_sets:
        lines.append(f"delete {s.kind} {new.where} {s.name}")
    return "\n".join(lines) + "\n" if lines else ""

