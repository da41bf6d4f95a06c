"""The nft syntax the fake understands: tokens, typed values, set declarations and rules.

Parsing only; the fake (fake.py) applies and traces. Anything outside this subset raises FakeNftError
naming the line, so that a renderer change that leaves the subset fails loudly.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Union

from firewall.errors import FakeNftError

Atom = Union[ipaddress.IPv4Address, ipaddress.IPv4Network, str, int, "PortRange", "VerdictValue"]
Key = tuple[Atom, ...]

IDENT = re.compile(r"^[A-Za-z_.][A-Za-z0-9_./-]*$")
_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "icmp": "icmp", "6": "tcp", "17": "udp",
              "132": "sctp", "1": "icmp"}
HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
CT_STATES = ("new", "established", "related", "invalid", "untracked")
# The kernel keeps at most 128 bytes of a rule's comment (NFTNL_UDATA_COMMENT_MAXLEN); nft refuses more.
MAX_COMMENT = 128


@dataclass(frozen=True)
class PortRange:
    """`80-81`: an interval of ports, only in sets with `flags interval` (and anonymous sets)."""

    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


@dataclass(frozen=True)
class VerdictValue:
    kind: str  # accept | drop | return | jump | goto
    target: str = ""


# --- types ----------------------------------------------------------------------------------------

_TYPEOF = {
    "ip saddr": "ipv4_addr", "ip daddr": "ipv4_addr", "meta l4proto": "inet_proto",
    "th dport": "inet_service", "numgen": "integer", "meta mark": "mark",
}
_FIELD_TYPES = {**_TYPEOF, "ct state": "ct_state", "ct status": "ct_status", "fib saddr type": "fib_addrtype",
                "fib daddr type": "fib_addrtype"}
_DATA_TYPES = {"ipv4_addr", "inet_proto", "inet_service", "integer", "mark", "verdict"}


def _parse_atom(token: str, atype: str, *, interval: bool) -> Atom:
    try:
        if atype == "ipv4_addr":
            if "/" in token:
                if not interval:
                    raise FakeNftError(f"{token}: a prefix needs a set with flags interval")
                return ipaddress.IPv4Network(token, strict=False)
            return ipaddress.IPv4Address(token)
        if atype == "inet_proto":
            if token not in _PROTOCOLS:
                raise FakeNftError(f"{token}: not a transport protocol this fake knows")
            return _PROTOCOLS[token]
        if atype == "inet_service":
            low, dash, high = token.partition("-")
            if dash:
                if not interval:
                    raise FakeNftError(f"{token}: a range needs a set with flags interval")
                first, last = _port(low), _port(high)
                if first > last:
                    raise FakeNftError(f"{token}: Range has zero or negative size")
                return PortRange(first, last)
            return _port(token)
        if atype in ("integer", "mark"):
            return int(token, 0)
        if atype == "ct_state":
            if token not in CT_STATES:
                raise FakeNftError(f"{token!r} is not a ct state ({', '.join(CT_STATES)})")
            return token
        if atype in ("ct_status", "fib_addrtype"):
            return token
    except ValueError:
        raise FakeNftError(f"{token!r} is not a valid {atype}") from None
    raise FakeNftError(f"unsupported type {atype}")


def _port(token: str) -> int:
    port = int(token)
    if not 0 <= port <= 65535:
        raise ValueError(token)
    return port


def atom_matches(atom: Atom, value: Atom) -> bool:
    if isinstance(atom, ipaddress.IPv4Network):
        return isinstance(value, ipaddress.IPv4Address) and value in atom
    if isinstance(atom, PortRange):
        return isinstance(value, int) and atom.low <= value <= atom.high
    return atom == value


def _span(atom: Atom) -> tuple[int, int] | None:
    """The atom as an interval of integers, for overlap checks (None: not an interval type)."""
    if isinstance(atom, ipaddress.IPv4Network):
        return int(atom.network_address), int(atom.broadcast_address)
    if isinstance(atom, ipaddress.IPv4Address):
        return int(atom), int(atom)
    if isinstance(atom, PortRange):
        return atom.low, atom.high
    if isinstance(atom, int) and not isinstance(atom, bool):
        return atom, atom
    return None


def overlaps(a: Key, b: Key) -> bool:
    """Whether two different elements of an interval set share a value: every field overlaps."""
    if a == b or len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        sx, sy = _span(x), _span(y)
        if sx is None or sy is None:
            if x != y:
                return False
        elif not (sx[0] <= sy[1] and sy[0] <= sx[1]):
            return False
    return True


# --- tokens ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r'"[^"]*"|[{},;]|[^\s{},;"]+|"')


def tokens(text: str) -> list[str]:
    """Words, with braces, commas and semicolons apart, and a quoted string (a comment) kept whole."""
    out = _TOKEN.findall(text)
    if '"' in out:
        raise FakeNftError(f"unterminated string in: {text}")
    return out


class Cursor:
    def __init__(self, toks: list[str], line: str) -> None:
        self.toks = toks
        self.i = 0
        self.line = line

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ""

    def take(self, *expect: str) -> str:
        tok = self.peek()
        if not tok or (expect and tok not in expect):
            want = " or ".join(expect) if expect else "more"
            raise FakeNftError(f"expected {want}, found {tok or 'end of line'!r} in: {self.line}")
        self.i += 1
        return tok

    def done(self) -> bool:
        return self.i >= len(self.toks)


# --- set declarations -----------------------------------------------------------------------------

@dataclass
class FakeSet:
    name: str
    kind: str  # set | map
    spec: tuple[str, ...]
    key_types: tuple[str, ...]
    data_types: tuple[str, ...]  # () for sets
    interval: bool
    timeout: int | None
    elements: dict[Key, Key] = field(default_factory=dict)

    def lookup(self, key: Key) -> Key | None:
        if not self.interval:
            return self.elements.get(key)
        for k, v in self.elements.items():
            if len(k) == len(key) and all(atom_matches(a, b) for a, b in zip(k, key, strict=True)):
                return v
        return None


def parse_set_spec(kind: str, name: str, cur: Cursor) -> tuple[FakeSet, list[tuple[Key, Key]]]:
    """`{ type ...; flags ...; [elements = { ... }[;]] }`: the declaration, and the elements it lists
    (last, as `nft list` prints them; for a map each with its value)."""
    cur.take("{")
    spec_toks: list[str] = []
    while cur.peek() not in ("}", "elements"):
        spec_toks.append(cur.take())
    declared = _declaration(kind, name, spec_toks)
    elements: list[tuple[Key, Key]] = []
    if cur.peek() == "elements":
        cur.i += 1
        cur.take("=")
        cur.take("{")
        while True:
            elements.append(parse_element(cur, declared, with_data=True))
            if cur.take(",", "}") == "}":
                break
        if cur.peek() == ";":
            cur.i += 1
    cur.take("}")
    return declared, elements


def _declaration(kind: str, name: str, spec_toks: list[str]) -> FakeSet:
    statements = " ".join(spec_toks).split(";")
    key_types: tuple[str, ...] = ()
    data_types: tuple[str, ...] = ()
    interval = False
    timeout: int | None = None
    for stmt in (s.strip() for s in statements):
        if not stmt:
            continue
        words = stmt.split()
        if words[0] in ("type", "typeof"):
            rest = " ".join(words[1:])
            key_text, _, data_text = rest.partition(" : ")
            if kind == "map" and not data_text:
                raise FakeNftError(f"map {name} needs a data type after ':'")
            if kind == "set" and data_text:
                raise FakeNftError(f"set {name} cannot have a data type")
            key_types = _decl_types(words[0], key_text, name)
            data_types = _decl_types(words[0], data_text, name) if data_text else ()
        elif words[0] == "flags":
            flags = {f.strip() for f in " ".join(words[1:]).split(",")}
            unknown = flags - {"interval", "dynamic", "timeout"}
            if unknown:
                raise FakeNftError(f"set {name}: unsupported flags {sorted(unknown)}")
            interval = "interval" in flags
        elif words[0] == "timeout" and len(words) == 2 and words[1].endswith("s"):
            timeout = int(words[1][:-1])
        else:
            raise FakeNftError(f"set {name}: unsupported declaration {stmt!r}")
    if not key_types:
        raise FakeNftError(f"set {name} has no type")
    return FakeSet(name, kind, tuple(spec_toks), key_types, data_types, interval, timeout)


def _decl_types(how: str, text: str, name: str) -> tuple[str, ...]:
    parts = [p.strip() for p in text.split(" . ")]
    if how == "type":
        if text.strip() == "verdict":
            return ("verdict",)
        for p in parts:
            if p not in _DATA_TYPES - {"verdict"}:
                raise FakeNftError(f"set {name}: unknown type {p!r}")
        return tuple(parts)
    types: list[str] = []
    for p in parts:
        if p.startswith("numgen random mod "):
            types.append("integer")
        elif p in _TYPEOF:
            types.append(_TYPEOF[p])
        else:
            raise FakeNftError(f"set {name}: unsupported typeof expression {p!r}")
    return tuple(types)


def parse_element(cur: Cursor, s: FakeSet, with_data: bool) -> tuple[Key, Key]:
    key = _parse_concat(cur, s.key_types, interval=s.interval, what=f"element of {s.name}")
    data: Key = ()
    if s.kind == "map" and with_data:
        cur.take(":")
        if s.data_types == ("verdict",):
            data = (_parse_verdict(cur),)
        else:
            data = _parse_concat(cur, s.data_types, interval=False, what=f"value in {s.name}")
    return key, data


def _parse_concat(cur: Cursor, types: tuple[str, ...], *, interval: bool, what: str) -> Key:
    atoms: list[Atom] = []
    for n, atype in enumerate(types):
        if n:
            cur.take(".")
        atoms.append(_parse_atom(cur.take(), atype, interval=interval))
    if cur.peek() == ".":
        raise FakeNftError(f"{what}: more parts than the type has ({len(types)}) in: {cur.line}")
    return tuple(atoms)


def _parse_verdict(cur: Cursor) -> VerdictValue:
    kind = cur.take("accept", "drop", "return", "jump", "goto")
    if kind in ("jump", "goto"):
        target = cur.take()
        if not IDENT.match(target):
            raise FakeNftError(f"{target!r} is not a chain name")
        return VerdictValue(kind, target)
    return VerdictValue(kind)


# --- rules ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    name: str
    arg: int | None = None  # numgen modulus, or the mask of "meta mark and <mask>"


Expr = tuple[Field, ...]


@dataclass(frozen=True)
class Match:
    expr: Expr
    negate: bool
    set_ref: str | None = None
    values: tuple[Key, ...] = ()


@dataclass(frozen=True)
class Vmap:
    expr: Expr
    map_ref: str | None = None
    inline: tuple[tuple[Key, VerdictValue], ...] = ()


@dataclass(frozen=True)
class Dnat:
    expr: Expr = ()
    map_ref: str | None = None
    fixed: tuple[ipaddress.IPv4Address, int | None] | None = None


@dataclass(frozen=True)
class Statement:
    kind: str  # verdict | reject | masquerade | markset | update
    verdict: VerdictValue | None = None
    op: str = ""
    value: int = 0
    set_ref: str = ""
    expr: Expr = ()


RuleItem = Match | Vmap | Dnat | Statement


@dataclass(frozen=True)
class Rule:
    text: str
    items: tuple[RuleItem, ...]
    comment: str | None = None  # the rule's `comment "..."`, which the tracer reports


def _parse_expr(cur: Cursor) -> Expr:
    fields: list[Field] = []
    while True:
        t, t1 = cur.peek(), cur.peek(1)
        if t == "ip" and t1 in ("saddr", "daddr"):
            cur.i += 2
            fields.append(Field(f"ip {t1}"))
        elif t == "meta" and t1 == "l4proto":
            cur.i += 2
            fields.append(Field("meta l4proto"))
        elif t == "meta" and t1 == "mark":
            cur.i += 2
            mask = None
            if cur.peek() == "and":
                cur.i += 1
                mask = int(cur.take(), 0)
            fields.append(Field("meta mark", mask))
        elif t == "th" and t1 == "dport":
            cur.i += 2
            fields.append(Field("th dport"))
        elif t == "ct" and t1 in ("state", "status"):
            cur.i += 2
            fields.append(Field(f"ct {t1}"))
        elif t == "fib" and t1 in ("saddr", "daddr") and cur.peek(2) == "type":
            cur.i += 3
            fields.append(Field(f"fib {t1} type"))
        elif t == "numgen" and t1 == "random" and cur.peek(2) == "mod":
            cur.i += 3
            modulus = int(cur.take())
            if modulus < 1:
                raise FakeNftError(f"numgen modulus must be positive in: {cur.line}")
            fields.append(Field("numgen", modulus))
        else:
            raise FakeNftError(f"unsupported expression at {t!r} in: {cur.line}")
        if cur.peek() != ".":
            return tuple(fields)
        cur.i += 1


def types_of(expr: Expr) -> tuple[str, ...]:
    return tuple(_FIELD_TYPES[f.name] for f in expr)


def parse_rule(text: str) -> Rule:
    cur = Cursor(tokens(text), text)
    items: list[RuleItem] = []
    while not cur.done():
        t = cur.peek()
        if t in ("jump", "goto", "accept", "drop", "return"):
            items.append(Statement("verdict", verdict=_parse_verdict(cur)))
        elif t == "reject":
            cur.i += 1
            items.append(Statement("reject"))
        elif t == "masquerade":
            cur.i += 1
            if cur.peek() == "fully-random":
                cur.i += 1
            items.append(Statement("masquerade"))
        elif t == "counter":
            cur.i += 1
        elif t == "comment":
            # nft's grammar: a rule is statements, then at most one comment, last.
            cur.i += 1
            text_tok = cur.take()
            note = text_tok[1:-1] if text_tok.startswith('"') else text_tok
            if len(note.encode()) > MAX_COMMENT:
                raise FakeNftError(f"comment too long, {MAX_COMMENT} characters maximum allowed: {text}")
            if not cur.done():
                raise FakeNftError(f"syntax error, unexpected {cur.peek()!r} after the comment in: {text}")
            if not items:
                raise FakeNftError(f"a comment alone is no rule: {text}")
            return Rule(text, tuple(items), note)
        elif t == "dnat":
            cur.i += 1
            cur.take("ip")
            cur.take("to")
            target = cur.peek()
            m = re.match(r"^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$", target)
            if m:
                cur.i += 1
                port = int(m.group(2)) if m.group(2) else None
                if port is not None and not any(isinstance(x, Match) and x.expr == (Field("meta l4proto"),)
                                                for x in items):
                    raise FakeNftError(f"transport protocol mapping is only valid after transport "
                                       f"protocol match: {text}")
                items.append(Dnat(fixed=(ipaddress.IPv4Address(m.group(1)), port)))
            else:
                expr = _parse_expr(cur)
                cur.take("map")
                ref = cur.take()
                if not ref.startswith("@"):
                    raise FakeNftError(f"dnat map must be a named map (@name) in: {text}")
                items.append(Dnat(expr=expr, map_ref=ref[1:]))
        elif t == "update":
            cur.i += 1
            ref = cur.take()
            if not ref.startswith("@"):
                raise FakeNftError(f"update needs @set in: {text}")
            cur.take("{")
            expr = _parse_expr(cur)
            cur.take("}")
            items.append(Statement("update", set_ref=ref[1:], expr=expr))
        elif t == "meta" and cur.peek(1) == "mark" and cur.peek(2) == "set":
            cur.i += 3
            cur.take("meta")
            cur.take("mark")
            op = cur.take("or", "xor", "and")
            items.append(Statement("markset", op=op, value=int(cur.take(), 0)))
        else:
            expr = _parse_expr(cur)
            if cur.peek() == "vmap":
                cur.i += 1
                items.append(_parse_vmap(cur, expr))
                continue
            negate = False
            if cur.peek() in ("==", "!="):
                negate = cur.take() == "!="
            items.append(_parse_match_rhs(cur, expr, negate))
    if not items:
        raise FakeNftError("empty rule")
    return Rule(text, tuple(items))


def _parse_vmap(cur: Cursor, expr: Expr) -> Vmap:
    if cur.peek().startswith("@"):
        return Vmap(expr, map_ref=cur.take()[1:])
    cur.take("{")
    entries: list[tuple[Key, VerdictValue]] = []
    while True:
        key = _parse_concat(cur, types_of(expr), interval=True, what="vmap key")
        cur.take(":")
        entries.append((key, _parse_verdict(cur)))
        if cur.take(",", "}") == "}":
            return Vmap(expr, inline=tuple(entries))


def _parse_match_rhs(cur: Cursor, expr: Expr, negate: bool) -> Match:
    tok = cur.peek()
    if tok.startswith("@"):
        cur.i += 1
        return Match(expr, negate, set_ref=tok[1:])
    types = types_of(expr)
    if types in (("ct_state",), ("ct_status",)) and tok != "{":
        # A bitmask: `ct state established,related` matches any of the listed bits.
        flags = [_parse_concat(cur, types, interval=False, what="ct flag")]
        while cur.peek() == ",":
            cur.i += 1
            flags.append(_parse_concat(cur, types, interval=False, what="ct flag"))
        return Match(expr, negate, values=tuple(flags))
    if tok == "{":
        cur.i += 1
        values: list[Key] = []
        while True:
            values.append(_parse_concat(cur, types, interval=True, what="anonymous set"))
            if cur.take(",", "}") == "}":
                return Match(expr, negate, values=tuple(values))
    return Match(expr, negate, values=(_parse_concat(cur, types, interval=True, what="match value"),))


