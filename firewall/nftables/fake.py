"""An in-memory nftables for unit tests: applies transactions and traces virtual packets.

It understands the subset of nft syntax its users' renderers emit, in both of nft's forms: one command
per line (kube-proxy's `add rule ip t c ...`) and the block syntax (the network-policy agent's
`table ip t { set s { ...; elements = { ... } }  chain c { type ... ; rules } }`, read as the add
commands it spells), and refuses anything else loudly, so a renderer change that leaves the subset
fails the unit tests instead of passing them vacuously.

Like the kernel it applies a transaction all or nothing, and refuses: dangling jump/goto/vmap/@set
references, chain loops, deleting what is missing or still referenced, re-adding an element with
another value, overlapping elements of an interval set, comments over 128 bytes or not last in their
rule, re-declaring a set differently, and statements in hooks that do not allow them (dnat outside
nat prerouting/output, masquerade outside nat postrouting, reject outside input/forward/output): the
checks `nft` and the kernel do, found the hard way.

`trace()` walks a new connection's first packet through the hooks (prerouting -> input | forward ->
postrouting, or output -> postrouting [-> input] for the node's own traffic), exploring every
`numgen random` choice, and answers: DNAT to which endpoints, DROP, REJECT or untouched, masqueraded,
and the comments of the rules whose verdicts it met (which policy rule let it through or dropped it).
Conntrack state is always `new` (the first packet); replies are out of its scope.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from firewall.errors import FakeNftError
from firewall.nftables.fake_syntax import (
    HOOKS,
    IDENT,
    Atom,
    Cursor,
    Dnat,
    Expr,
    FakeSet,
    Field,
    Key,
    Match,
    Rule,
    Statement,
    VerdictValue,
    Vmap,
    atom_matches,
    overlaps,
    parse_element,
    parse_rule,
    parse_set_spec,
    tokens,
    types_of,
)
from firewall.tracing import Chooser, Packet, PathResult, TraceResult, every_path

MAX_PATHS = 4096


# --- the ruleset ----------------------------------------------------------------------------------

@dataclass
class FakeChain:
    name: str
    base: tuple[str, str, int] | None  # (type, hook, priority)
    rules: list[Rule] = field(default_factory=list)


@dataclass
class FakeTable:
    family: str
    name: str
    chains: dict[str, FakeChain] = field(default_factory=dict)
    sets: dict[str, FakeSet] = field(default_factory=dict)


@dataclass
class _Block:
    """Where `nft -f` is inside the block syntax: `table ip t {`, then `chain c {` or one-line sets."""

    table: FakeTable | None = None
    chain: FakeChain | None = None
    new_chain: bool = False  # the open chain is declared by this block (so the block may give it a hook)


@dataclass
class _Ctx:
    saddr: ipaddress.IPv4Address
    daddr: ipaddress.IPv4Address
    proto: str
    dport: int
    local: frozenset[ipaddress.IPv4Address]
    chooser: Chooser
    mark: int = 0
    dnat: tuple[ipaddress.IPv4Address, int] | None = None
    masquerade: bool = False
    updates: list[tuple[str, str]] = field(default_factory=list)
    verdict_rules: list[str] = field(default_factory=list)  # comments of the rules whose verdict it met


class _Terminal(Exception):
    def __init__(self, verdict: str) -> None:
        self.verdict = verdict


class FakeNft:
    """In-memory nftables. `run()` is the runner seam; `trace()` answers what a packet meets."""

    def __init__(self, *, local_addresses: Iterable[str] = ()) -> None:
        self.tables: dict[tuple[str, str], FakeTable] = {}
        # Addresses of the (virtual) node: `fib ... type local`, and where input vs forward goes.
        self.local_addresses = frozenset(ipaddress.IPv4Address(a) for a in local_addresses)
        self.transactions: list[str] = []
        self._declared: set[str] = set()  # sets declared by the transaction being applied

    # -- the runner seam ---------------------------------------------------------------------------

    def run(self, transaction: str) -> None:
        tables = copy.deepcopy(self.tables)
        self._declared = set()
        block = _Block()
        for n, line in enumerate(transaction.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if block.table is None and not line.startswith("table "):
                    self._command(tables, line)
                else:
                    self._block_line(tables, block, line)
            except FakeNftError as err:
                raise FakeNftError(f"line {n}: {err}", transaction=transaction) from None
        if block.table is not None:
            where = f"chain {block.chain.name} of " if block.chain else ""
            raise FakeNftError(f"{where}table {block.table.name}: block not closed (missing '}}')",
                               transaction=transaction)
        for table in tables.values():
            _validate(table)
        self.tables = tables
        self.transactions.append(transaction)

    def list_table(self, family: str, table: str, *, terse: bool = False) -> str | None:
        t = self.tables.get((family, table))
        if t is None:
            return None
        return "\n".join([f"table {family} {table}", *(f"chain {c}" for c in t.chains),
                          *(f"{s.kind} {s.name}" for s in t.sets.values())])

    def list_chains(self, family: str, table: str) -> list[str] | None:
        t = self.tables.get((family, table))
        return None if t is None else list(t.chains)

    def table(self, family: str, name: str) -> FakeTable:
        return self.tables[(family, name)]

    # -- commands ----------------------------------------------------------------------------------

    def _command(self, tables: dict[tuple[str, str], FakeTable], line: str) -> None:
        cur = Cursor(tokens(line), line)
        verb = cur.take("add", "delete", "flush")
        what = cur.take("table", "chain", "rule", "set", "map", "element")
        family = cur.take("ip")
        name = cur.take()
        key = (family, name)
        if what == "table":
            if verb == "add":
                tables.setdefault(key, FakeTable(family, name))
            elif verb == "delete":
                if key not in tables:
                    raise FakeNftError(f"delete table {family} {name}: no such table")
                del tables[key]
            else:
                raise FakeNftError(f"unsupported: {line}")
            if not cur.done():
                raise FakeNftError(f"unexpected {cur.peek()!r} in: {line}")
            return
        table = tables.get(key)
        if table is None:
            raise FakeNftError(f"table {family} {name} does not exist: {line}")
        obj = cur.take()
        if not IDENT.match(obj):
            raise FakeNftError(f"{obj!r} is not a valid name: {line}")
        if what == "chain":
            self._chain(table, verb, obj, cur)
        elif what == "rule":
            if verb != "add":
                raise FakeNftError(f"unsupported: {line}")
            chain = table.chains.get(obj)
            if chain is None:
                raise FakeNftError(f"add rule: no chain {obj}")
            rest = line.split(None, 5)[5] if len(line.split(None, 5)) > 5 else ""
            self._add_rule(table, chain, rest)
        elif what in ("set", "map"):
            self._set(table, verb, what, obj, cur)
        else:
            self._element(table, verb, obj, cur)

    def _add_rule(self, table: FakeTable, chain: FakeChain, text: str) -> None:
        rule = parse_rule(text)
        self._check_typeof_quirk(table, rule)
        chain.rules.append(rule)

    def _block_line(self, tables: dict[tuple[str, str], FakeTable], block: _Block, line: str) -> None:
        """One line of the block syntax (`table ip t {` ... `}`): nft reads it as the add commands it
        spells, so it lands in the same methods as one-line commands do."""
        cur = Cursor(tokens(line), line)
        if block.table is None:
            cur.take("table")
            family = cur.take("ip")
            name = cur.take()
            cur.take("{")
            _end(cur)
            block.table = tables.setdefault((family, name), FakeTable(family, name))
            return
        table = block.table
        if block.chain is None:
            word = cur.take("set", "map", "chain", "}")
            if word == "}":
                _end(cur)
                block.table = None
                return
            name = cur.take()
            if not IDENT.match(name):
                raise FakeNftError(f"{name!r} is not a valid name: {line}")
            if word in ("set", "map"):
                self._set(table, "add", word, name, cur)
                return
            cur.take("{")
            block.new_chain = name not in table.chains
            table.chains.setdefault(name, FakeChain(name, None))
            if cur.peek() == "}":  # `chain c { }`: declared, empty
                cur.i += 1
            else:
                block.chain = table.chains[name]
            _end(cur)
            return
        chain = block.chain
        if cur.peek() == "}":
            cur.i += 1
            _end(cur)
            block.chain = None
            return
        if cur.peek() == "type":
            # nft takes the hook line anywhere in the chain's block, even after rules.
            base = _parse_hook(Cursor(["{", *cur.toks, "}"], line))
            if not block.new_chain and chain.base != base:
                raise FakeNftError(f"chain {chain.name} exists with another hook")
            chain.base = base
            return
        self._add_rule(table, chain, line)

    def _check_typeof_quirk(self, table: FakeTable, rule: Rule) -> None:
        # nft 1.0.6 rebuilds a typeof map's declaration from the kernel to check a new rule against
        # it, and fails on `ip daddr . th dport` data ("conflicting protocols specified: ip vs. th")
        # unless the map is declared in the same transaction, so it has not been fetched.
        for item in rule.items:
            ref = item.map_ref if isinstance(item, Dnat | Vmap) else None
            s = table.sets.get(ref) if ref else None
            if s is not None and s.name not in self._declared and s.spec[0] == "typeof" \
                    and "ip" in s.spec[s.spec.index(":"):] and "th" in s.spec[s.spec.index(":"):]:
                raise FakeNftError(f"conflicting protocols specified: ip vs. th (a rule using typeof map "
                                   f"{s.name} must be added in the transaction that declares it)")

    def _chain(self, table: FakeTable, verb: str, name: str, cur: Cursor) -> None:
        chain = table.chains.get(name)
        if verb == "add":
            base = _parse_hook(cur) if not cur.done() else None
            _end(cur)
            if chain is not None:
                if base is not None and chain.base != base:
                    raise FakeNftError(f"chain {name} exists with another hook")
                return
            table.chains[name] = FakeChain(name, base)
            return
        if chain is None:
            raise FakeNftError(f"{verb} chain {name}: no such chain")
        if verb == "flush":
            chain.rules.clear()
        else:
            # The kernel refuses (EBUSY) deleting a chain that something jumps to; checked after the
            # transaction by _validate, as the kernel checks at commit.
            del table.chains[name]

    def _set(self, table: FakeTable, verb: str, kind: str, name: str, cur: Cursor) -> None:
        existing = table.sets.get(name)
        if verb == "add":
            new, elements = parse_set_spec(kind, name, cur)
            _end(cur)
            if existing is not None:
                if _declaration(existing) != _declaration(new):
                    raise FakeNftError(f"{kind} {name} exists with another declaration")
            else:
                table.sets[name] = existing = new
                self._declared.add(name)
            for key, data in elements:
                _add_element(existing, key, data)
            return
        if existing is None or existing.kind != kind:
            raise FakeNftError(f"{verb} {kind} {name}: no such {kind}")
        if verb == "flush":
            existing.elements.clear()
        else:
            del table.sets[name]

    def _element(self, table: FakeTable, verb: str, name: str, cur: Cursor) -> None:
        s = table.sets.get(name)
        if s is None:
            raise FakeNftError(f"{verb} element: no set or map {name}")
        if verb == "flush":
            raise FakeNftError("flush element is not nft syntax")
        cur.take("{")
        while True:
            key, data = parse_element(cur, s, with_data=(verb == "add"))
            if verb == "add":
                _add_element(s, key, data)
            else:
                if key not in s.elements:
                    raise FakeNftError(f"delete element {name}: {key} not present (No such file)")
                del s.elements[key]
            if cur.take(",", "}") == "}":
                break
        if not cur.done():
            raise FakeNftError(f"unexpected {cur.peek()!r} after elements in: {cur.line}")

    # -- tracing -----------------------------------------------------------------------------------

    def trace(self, packet: Packet, *, remember: bool = False) -> TraceResult:
        """Every outcome of `packet` (a new connection's first packet) over all random choices.

        With `remember`, what the first path adds to dynamic sets (affinity) is kept, as if that
        connection had really been made.
        """
        paths = every_path(lambda chooser: self._trace_path(packet, chooser), limit=MAX_PATHS,
                           too_many=lambda: FakeNftError(f"more than {MAX_PATHS} paths for {packet}"))
        if remember:
            for set_name, element in paths[0].updates:
                for table in self.tables.values():
                    if set_name in table.sets:
                        s = table.sets[set_name]
                        s.elements[(ipaddress.IPv4Address(element),)] = ()
        return TraceResult(tuple(paths))

    def _trace_path(self, packet: Packet, chooser: Chooser) -> PathResult:
        proto = packet.protocol.lower()
        ctx = _Ctx(ipaddress.IPv4Address(packet.src), ipaddress.IPv4Address(packet.dst), proto, packet.dport,
                   self.local_addresses, chooser)
        try:
            if packet.ingress == "node":
                self._hook("output", ctx)
                self._hook("postrouting", ctx)
                if ctx.daddr in self.local_addresses:
                    self._hook("input", ctx)
            else:
                self._hook("prerouting", ctx)
                if ctx.daddr in self.local_addresses:
                    self._hook("input", ctx)
                else:
                    self._hook("forward", ctx)
                    self._hook("postrouting", ctx)
        except _Terminal as t:
            verdict: Literal["ACCEPT", "DROP", "REJECT"] = "DROP" if t.verdict == "drop" else "REJECT"
            return PathResult(verdict, _addr(ctx.dnat), ctx.masquerade, tuple(ctx.updates), tuple(ctx.verdict_rules))
        return PathResult("ACCEPT", _addr(ctx.dnat), ctx.masquerade, tuple(ctx.updates), tuple(ctx.verdict_rules))

    def _hook(self, hook: str, ctx: _Ctx) -> None:
        chains = sorted(
            ((c.base[2], t, c) for t in self.tables.values() for c in t.chains.values()
             if c.base and c.base[1] == hook),
            key=lambda x: x[0],
        )
        for _, table, chain in chains:
            if chain.base and chain.base[0] == "nat" and hook != "postrouting" and ctx.dnat is not None:
                continue  # one DNAT per connection: later nat chains do not see the first packet again
            outcome = self._chain_run(table, chain, ctx, 0)
            if outcome in ("drop", "reject"):
                raise _Terminal(outcome)
            if outcome == "dnat" and ctx.dnat is not None:
                ctx.daddr, ctx.dport = ctx.dnat

    def _chain_run(self, table: FakeTable, chain: FakeChain, ctx: _Ctx, depth: int) -> str | None:
        if depth > 16:
            raise FakeNftError(f"jump depth exceeded at {chain.name}")
        for rule in chain.rules:
            result = self._rule_run(table, rule, ctx)
            if result is None:
                continue
            kind, target = result
            if kind in ("accept", "drop", "reject") and rule.comment is not None:
                ctx.verdict_rules.append(rule.comment)
            if kind == "return":
                return None
            if kind == "jump":
                outcome = self._chain_run(table, table.chains[target], ctx, depth + 1)
                if outcome is not None:
                    return outcome
                continue
            if kind == "goto":
                return self._chain_run(table, table.chains[target], ctx, depth + 1)
            return kind  # accept | drop | reject | dnat | masquerade
        return None

    def _rule_run(self, table: FakeTable, rule: Rule, ctx: _Ctx) -> tuple[str, str] | None:
        for item in rule.items:
            if isinstance(item, Match):
                if not self._match(table, item, ctx):
                    return None
            elif isinstance(item, Vmap):
                key = self._eval(item.expr, ctx)
                verdict: VerdictValue | None = None
                if item.map_ref is not None:
                    hit = table.sets[item.map_ref].lookup(key)
                    verdict = hit[0] if hit else None  # type: ignore[assignment]
                else:
                    for k, v in item.inline:
                        if all(atom_matches(a, b) for a, b in zip(k, key, strict=True)):
                            verdict = v
                            break
                if verdict is None:
                    return None  # a lookup miss ends the rule (NFT_BREAK)
                return (verdict.kind, verdict.target)
            elif isinstance(item, Dnat):
                if item.fixed is not None:
                    ip, port = item.fixed
                    ctx.dnat = (ip, port if port is not None else ctx.dport)
                else:
                    assert item.map_ref is not None
                    hit = table.sets[item.map_ref].lookup(self._eval(item.expr, ctx))
                    if hit is None:
                        return None
                    ip_atom, port_atom = hit
                    if not isinstance(ip_atom, ipaddress.IPv4Address) or not isinstance(port_atom, int):
                        raise FakeNftError(f"@{item.map_ref} holds {hit}, not ip . port")
                    ctx.dnat = (ip_atom, port_atom)
                return ("dnat", "")
            else:
                if item.kind == "verdict":
                    assert item.verdict is not None
                    return (item.verdict.kind, item.verdict.target)
                if item.kind == "reject":
                    return ("reject", "")
                if item.kind == "masquerade":
                    ctx.masquerade = True
                    return ("accept", "")
                if item.kind == "markset":
                    ctx.mark = {"or": ctx.mark | item.value, "xor": ctx.mark ^ item.value,
                                "and": ctx.mark & item.value}[item.op]
                elif item.kind == "update":
                    key = self._eval(item.expr, ctx)
                    ctx.updates.append((item.set_ref, ".".join(str(a) for a in key)))
        return None

    def _match(self, table: FakeTable, m: Match, ctx: _Ctx) -> bool:
        if m.expr == (Field("ct status"),):
            # ct status is a bitmask: "ct status dnat" tests the bit.
            hit = all(v[0] != "dnat" or ctx.dnat is not None for v in m.values)
            return hit != m.negate
        value = self._eval(m.expr, ctx)
        if m.set_ref is not None:
            hit = table.sets[m.set_ref].lookup(value) is not None
        else:
            hit = any(all(atom_matches(a, b) for a, b in zip(v, value, strict=True)) for v in m.values)
        return hit != m.negate

    def _eval(self, expr: Expr, ctx: _Ctx) -> Key:
        out: list[Atom] = []
        for f in expr:
            if f.name == "ip saddr":
                out.append(ctx.saddr)
            elif f.name == "ip daddr":
                out.append(ctx.daddr)
            elif f.name == "meta l4proto":
                out.append(ctx.proto)
            elif f.name == "th dport":
                out.append(ctx.dport)
            elif f.name == "meta mark":
                out.append(ctx.mark & f.arg if f.arg is not None else ctx.mark)
            elif f.name == "ct state":
                out.append("new")
            elif f.name == "fib saddr type":
                out.append("local" if ctx.saddr in ctx.local else "unicast")
            elif f.name == "fib daddr type":
                out.append("local" if ctx.daddr in ctx.local else "unicast")
            elif f.name == "numgen":
                assert f.arg is not None
                out.append(ctx.chooser.choose(f.arg))
            else:
                raise FakeNftError(f"cannot evaluate {f.name}")
        return tuple(out)


def _end(cur: Cursor) -> None:
    if not cur.done():
        raise FakeNftError(f"syntax error, unexpected {cur.peek()!r} in: {cur.line}")


def _parse_hook(cur: Cursor) -> tuple[str, str, int]:
    """`{ type filter hook forward priority 10 ; [policy accept ;] }` -> (type, hook, priority)."""
    cur.take("{")
    cur.take("type")
    ctype = cur.take("filter", "nat")
    cur.take("hook")
    hook = cur.take(*HOOKS)
    cur.take("priority")
    text = cur.take()
    try:
        priority = int(text)
    except ValueError:
        raise FakeNftError(f"priority {text!r} is not a number (this fake knows no named priorities): "
                           f"{cur.line}") from None
    cur.take(";")
    if cur.peek() == "policy":
        cur.i += 1
        cur.take("accept")  # a drop policy would break every other table's traffic: never ours to set
        cur.take(";")
    cur.take("}")
    return (ctype, hook, priority)


def _add_element(s: FakeSet, key: Key, data: Key) -> None:
    held = s.elements.get(key)
    if held is not None and held != data:
        raise FakeNftError(f"add element {s.name}: {key} exists with another value (File exists)")
    if s.interval and held is None:
        # An interval set holds no two elements that share a value (the same element twice is fine):
        # nft refuses a one-field overlap itself, the kernel a concatenated one (pipapo: EEXIST).
        clash = next((k for k in s.elements if overlaps(k, key)), None)
        if clash is not None:
            pair = f"{_show(key)} and {_show(clash)}"
            if len(key) == 1:
                raise FakeNftError(f"add element {s.name}: conflicting intervals specified ({pair})")
            raise FakeNftError(f"add element {s.name}: Could not process rule: File exists ({pair} overlap)")
    s.elements[key] = data


def _declaration(s: FakeSet) -> tuple[object, ...]:
    """What nft compares when a set is declared again (spelling aside: `;` or not before `}`)."""
    return (s.kind, s.spec[:1], s.key_types, s.data_types, s.interval, s.timeout)


def _show(key: Key) -> str:
    return " . ".join(str(a) for a in key)


def _addr(dnat: tuple[ipaddress.IPv4Address, int] | None) -> str | None:
    return f"{dnat[0]}:{dnat[1]}" if dnat else None


# --- commit-time validation -----------------------------------------------------------------------

def _references(table: FakeTable, chain: FakeChain) -> Iterator[tuple[str, str]]:
    """(kind, name) of everything a chain's rules refer to: ("chain", x) and ("set", x)."""
    for rule in chain.rules:
        for item in rule.items:
            if isinstance(item, Match | Vmap | Dnat):
                ref = item.set_ref if isinstance(item, Match) else item.map_ref
                if ref is not None:
                    yield ("set", ref)
            if isinstance(item, Vmap):
                for _, v in item.inline:
                    if v.target:
                        yield ("chain", v.target)
                if item.map_ref is not None and item.map_ref in table.sets:
                    for data in table.sets[item.map_ref].elements.values():
                        verdict = data[0]
                        if isinstance(verdict, VerdictValue) and verdict.target:
                            yield ("chain", verdict.target)
            if isinstance(item, Statement):
                if item.verdict is not None and item.verdict.target:
                    yield ("chain", item.verdict.target)
                if item.kind == "update":
                    yield ("set", item.set_ref)


def _validate(table: FakeTable) -> None:
    for s in table.sets.values():
        for data in s.elements.values():
            if data and isinstance(data[0], VerdictValue) and data[0].target \
                    and data[0].target not in table.chains:
                raise FakeNftError(f"map {s.name} refers to missing chain {data[0].target}")
    for chain in table.chains.values():
        for kind, name in _references(table, chain):
            if kind == "chain" and name not in table.chains:
                raise FakeNftError(f"chain {chain.name} jumps to missing chain {name}")
            if kind == "set" and name not in table.sets:
                raise FakeNftError(f"chain {chain.name} refers to missing set {name}")
            if kind == "chain" and table.chains[name].base is not None:
                raise FakeNftError(f"chain {chain.name} jumps to base chain {name}")
        _check_types(table, chain)
    for chain in table.chains.values():
        if chain.base is not None:
            _check_reachable(table, chain)


def _check_types(table: FakeTable, chain: FakeChain) -> None:
    for rule in chain.rules:
        for item in rule.items:
            ref = None
            if isinstance(item, Match | Vmap | Dnat):
                ref = item.set_ref if isinstance(item, Match) else item.map_ref
            if ref is None:
                continue
            s = table.sets[ref]
            want = types_of(item.expr)
            if s.key_types != want:
                raise FakeNftError(f"{chain.name}: {rule.text!r}: key {want} does not fit @{ref} {s.key_types}")
            if isinstance(item, Match) and s.kind != "set":
                raise FakeNftError(f"{chain.name}: @{ref} is a map, used as a set")
            if isinstance(item, Vmap) and s.data_types != ("verdict",):
                raise FakeNftError(f"{chain.name}: vmap @{ref} is not a verdict map")
            if isinstance(item, Dnat) and s.data_types != ("ipv4_addr", "inet_service"):
                raise FakeNftError(f"{chain.name}: dnat map @{ref} must map to ip . port")


def _check_reachable(table: FakeTable, base: FakeChain) -> None:
    assert base.base is not None
    ctype, hook, _ = base.base
    done: set[str] = set()

    def visit(chain: FakeChain, stack: list[str]) -> None:
        if chain.name in stack:
            raise FakeNftError(f"chain loop: {' -> '.join([*stack, chain.name])} (Too many links)")
        if chain.name in done:
            return
        for rule in chain.rules:
            for item in rule.items:
                if isinstance(item, Dnat) and (ctype != "nat" or hook not in ("prerouting", "output")):
                    raise FakeNftError(f"dnat in {chain.name} reached from a {ctype} {hook} chain")
                if isinstance(item, Statement) and item.kind == "masquerade" \
                        and (ctype != "nat" or hook != "postrouting"):
                    raise FakeNftError(f"masquerade in {chain.name} reached from a {ctype} {hook} chain")
                if isinstance(item, Statement) and item.kind == "reject" \
                        and hook not in ("input", "forward", "output"):
                    raise FakeNftError(f"reject in {chain.name} reached from a {hook} chain")
        for name in {name for kind, name in _references(table, chain) if kind == "chain"}:
            visit(table.chains[name], [*stack, chain.name])
        done.add(chain.name)

    visit(base, [])
