"""A full sync whose big sets are filled over netlink before one small `nft -f` makes everything live.

nft 1.0.6 spends most of a 10k-Service full sync parsing elements in userspace (0.45 s of 0.63 s for the
50k-element backends map alone). Here the big, plain sets and maps (no intervals, no timeouts) are
written by netlink.py instead, and atomicity is kept by generations: packets never see a set that is
being filled, because nothing refers to it until the last step.

    1. prepare (nft -f, small): the new sets, declared under names the kernel does not hold yet
       (`lb-ips`, or `lb-ips-g1`, `-g2`... when an older generation is there); every chain a verdict
       element will name (empty if new: nothing jumps to it yet); and the chains whose rules read a
       `typeof` set, renamed likewise and filled, since nft 1.0.6 adds a rule on a typeof map with
       `ip daddr . th dport` data only in the transaction declaring the map (layout.py).
    2. elements (one netlink batch): the new sets filled.
    3. commit (nft -f, one atomic transaction): every existing chain flushed, then every chain and rule
       of the desired table written against the new names, the small sets refilled, and the sets of
       older generations deleted. Before it commits the packet path sees the old table; after, the new.

Chains the kernel holds that the table no longer has are only flushed here and deleted by the next sync
(the two-phase deletion of backend.py): kernels before 6.2 refuse deleting a chain in the transaction
that drops the map elements naming it, and step 3 drops whole maps of them.

The chosen names stay in use (`Generation`): every later render is renamed the same way, so partial
syncs diff against what the kernel really holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from firewall.nftables.ruleset import Chain, Ruleset, Set, full_transaction
from proxy.nftables.netlink import ElementCodec

__all__ = ["ElementLoader", "FakeElements", "FullLoad", "Generation", "plan_full_load"]

# Below this many elements a set stays in the nft text: the generation swap is not worth its names.
DEFAULT_THRESHOLD = 2000


class ElementLoader(Protocol):
    def load(self, family: str, table: str, sets: Mapping[str, tuple[ElementCodec, Mapping[str, str | None]]],
             *, atomic: bool = True, prepare: Callable[[], None] | None = None) -> int:
        """Add the elements of SETS (name -> (codec, elements)), atomically or not, after running PREPARE;
        raises NftError."""

    def list_sets(self, family: str, table: str) -> dict[str, str] | None:
        """Name -> "set" | "map" of the table's sets, or None when there is no such table."""


class _RenamedValues(Mapping[str, "str | None"]):
    """A map's elements with verdicts naming renamed chains rewritten, computed per lookup: a partial
    diff looks at a handful of keys of 10k."""

    def __init__(self, elements: Mapping[str, str | None], verdicts: Mapping[str, str]) -> None:
        self._elements = elements
        self._verdicts = verdicts

    def __getitem__(self, key: str) -> str | None:
        value = self._elements[key]
        return self._verdicts.get(value, value) if value is not None else None

    def __iter__(self) -> Iterator[str]:
        return iter(self._elements)

    def __len__(self) -> int:
        return len(self._elements)


@dataclass(frozen=True)
class Generation:
    """The kernel's names for sets and chains the renderer names otherwise (base name -> kernel name)."""

    sets: Mapping[str, str] = field(default_factory=dict)
    chains: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sets or self.chains)

    def rule(self, rule: str) -> str:
        if "@" not in rule and not (self.chains and ("goto " in rule or "jump " in rule)):
            return rule
        words = rule.split(" ")
        for i, word in enumerate(words):
            if word.startswith("@") and word[1:] in self.sets:
                words[i] = "@" + self.sets[word[1:]]
            elif i and words[i - 1] in ("goto", "jump") and word in self.chains:
                words[i] = self.chains[word]
        return " ".join(words)

    def ruleset(self, rs: Ruleset) -> Ruleset:
        """RS with this generation's names (RS itself when there is nothing to rename)."""
        if not self:
            return rs
        verdicts = {f"{verb} {old}": f"{verb} {new}" for old, new in self.chains.items() for verb in ("goto", "jump")}
        chains: dict[str, Chain] = {}
        for name, c in rs.chains.items():
            rules = tuple(self.rule(r) for r in c.rules)
            new = self.chains.get(name, name)
            chains[new] = c if new == name and rules == c.rules else Chain(new, rules, c.base)
        sets: dict[str, Set] = {}
        for name, s in rs.sets.items():
            new = self.sets.get(name, name)
            elements: Mapping[str, str | None] = s.elements
            if verdicts and s.kind == "map" and "verdict" in s.spec:
                elements = _RenamedValues(s.elements, verdicts)
            sets[new] = s if new == name and elements is s.elements else Set(new, s.kind, s.spec, elements, s.dynamic)
        return Ruleset(rs.family, rs.table, chains, sets)

    def touched(self, touched: Mapping[str, set[str]] | None) -> dict[str, set[str]] | None:
        if touched is None:
            return None
        return {self.sets.get(name, name): keys for name, keys in touched.items()}


@dataclass(frozen=True)
class FullLoad:
    """The three steps of a preloaded full sync, and what the kernel holds after them."""

    prepare: str
    elements: dict[str, tuple[ElementCodec, Mapping[str, str | None]]]
    commit: str
    state: Ruleset
    generation: Generation
    stale_chains: frozenset[str]

    @property
    def element_count(self) -> int:
        return sum(len(e) for _, e in self.elements.values())

    def fallback(self) -> str:
        """The same state as one classic transaction (the table deleted and written again)."""
        return full_transaction(self.state)


def _free(base: str, taken: Mapping[str, object] | set[str]) -> str:
    if base not in taken:
        return base
    n = 1
    while f"{base}-g{n}" in taken:
        n += 1
    return f"{base}-g{n}"


def _references(c: Chain) -> set[str]:
    return {w[1:] for r in c.rules for w in r.split(" ") if w.startswith("@")}


def plan_full_load(rendered: Ruleset, *, chains: list[str] | None, sets: dict[str, str] | None,
                   threshold: int = DEFAULT_THRESHOLD) -> FullLoad | None:
    """The steps writing RENDERED (the renderer's names) over a kernel holding CHAINS and SETS of the table
    (None: no table), or None when no set is big and plain enough to be worth it."""
    kernel_chains = list(chains or ())
    kernel_sets = dict(sets or {})
    codecs: dict[str, ElementCodec] = {}
    for name, s in rendered.sets.items():
        codec = ElementCodec.for_spec(s.spec) if not s.dynamic and len(s.elements) >= max(threshold, 1) else None
        if codec is not None:
            codecs[name] = codec
    # Chains reading a typeof set are written in step 1 (see the module docstring); each may read only
    # sets declared there too, and must not be a base chain (it would be live at once).
    readers: dict[str, set[str]] = {name: set() for name, s in rendered.sets.items()
                                    if name in codecs and s.spec.startswith("typeof")}
    for c in rendered.chains.values():
        refs = _references(c)
        for name in refs & readers.keys():
            readers[name].add(c.name)
    early_chains: set[str] = set()
    for name, readers_of in readers.items():
        chains_ok = all(rendered.chains[c].base is None and _references(rendered.chains[c]) <= codecs.keys()
                        for c in readers_of)
        if chains_ok:
            early_chains |= readers_of
        else:
            del codecs[name]
    if not codecs:
        return None
    taken_sets = set(kernel_sets)
    set_names: dict[str, str] = {}
    for name in codecs:
        set_names[name] = _free(name, taken_sets)
        taken_sets.add(set_names[name])
    taken_chains = set(kernel_chains)
    chain_names: dict[str, str] = {}
    for name in sorted(early_chains):
        chain_names[name] = _free(name, taken_chains | set(rendered.chains) - {name})
        taken_chains.add(chain_names[name])
    generation = Generation({k: v for k, v in set_names.items() if k != v},
                            {k: v for k, v in chain_names.items() if k != v})
    state = generation.ruleset(rendered)
    where = state.where
    loaded = set(set_names.values())
    early = set(chain_names.values())

    prepare = [f"add table {where}"]
    prepare += [f"add chain {where} {c.name}" for c in state.chains.values()
                if c.base is None and c.name not in early and c.name not in kernel_chains]
    prepare += [f"add {state.sets[n].kind} {where} {n} {{ {state.sets[n].spec} }}" for n in sorted(loaded)]
    for name in sorted(early):
        prepare.append(f"add chain {where} {name}")
        prepare += [f"add rule {where} {name} {r}" for r in state.chains[name].rules]

    commit = [f"add table {where}"]
    commit += [f"flush chain {where} {c}" for c in kernel_chains]
    for s in state.sets.values():
        if s.name in loaded:
            continue
        commit.append(f"add {s.kind} {where} {s.name} {{ {s.spec} }}")
        if s.name in kernel_sets and not s.dynamic:
            commit.append(f"flush {s.kind} {where} {s.name}")
    late = [c for c in state.chains.values() if c.name not in early]
    commit += [f"add chain {where} {c.name}" + (f" {c.base.spec()}" if c.base else "") for c in late]
    commit += [f"add rule {where} {c.name} {r}" for c in late for r in c.rules]
    text_state = Ruleset(state.family, state.table, {}, {n: s for n, s in state.sets.items() if n not in loaded})
    commit += [line for line in full_transaction(text_state).splitlines() if line.startswith("add element")]
    commit += [f"delete {kind} {where} {name}" for name, kind in kernel_sets.items() if name not in state.sets]

    stale = frozenset(c for c in kernel_chains if c not in state.chains)
    if stale:
        chains_now = {**state.chains, **{c: Chain(c) for c in kernel_chains if c in stale}}
        state = Ruleset(state.family, state.table, chains_now, state.sets)
    return FullLoad(prepare="\n".join(prepare) + "\n",
                    elements={set_names[n]: (codecs[n], state.sets[set_names[n]].elements) for n in codecs},
                    commit="\n".join(commit) + "\n", state=state, generation=generation, stale_chains=stale)


class FakeElements:
    """The loader for a FakeNft: the same elements as `add element` lines, in one transaction."""

    def __init__(self, runner: object) -> None:
        self.runner = runner
        self.loads: list[int] = []

    def load(self, family: str, table: str, sets: Mapping[str, tuple[ElementCodec, Mapping[str, str | None]]],
             *, atomic: bool = True, prepare: Callable[[], None] | None = None) -> int:
        if prepare is not None:
            prepare()
        lines = []
        for name, (codec, elements) in sets.items():
            for key, value in elements.items():
                codec.encode(key, value)  # what the real loader would refuse, refused here too
                item = key if codec.data is None else f"{key} : {value}"
                lines.append(f"add element {family} {table} {name} {{ {item} }}")
        if lines:
            self.runner.run("\n".join(lines) + "\n")  # type: ignore[attr-defined]
        self.loads.append(len(lines))
        return len(lines)

    def list_sets(self, family: str, table: str) -> dict[str, str] | None:
        tables = self.runner.tables  # type: ignore[attr-defined]
        t = tables.get((family, table))
        return None if t is None else {name: s.kind for name, s in t.sets.items()}
