"""An in-memory iptables for unit tests: applies iptables-restore --noflush input, traces virtual packets.

The subset it understands is what kube-proxy's renderer emits, and it refuses anything else loudly:

    *nat | *filter ... COMMIT
    :CHAIN - [0:0]                  create a user chain, or flush it if it exists (as --noflush does)
    -A CHAIN spec | -I CHAIN [n] spec | -D CHAIN spec | -F CHAIN | -X CHAIN
    spec:    [!] -s/-d CIDR, -p tcp|udp|sctp, -m comment --comment "...", -m tcp|udp|sctp --dport N[:M],
             -m addrtype [!] --src-type|--dst-type LOCAL, -m statistic --mode random --probability P,
             -m recent --name N (--set | --rcheck --seconds T [--reap]), -m mark [!] --mark V/M,
             -m conntrack [!] --ctstate S[,S]
    targets: a user chain, ACCEPT, DROP, RETURN, REJECT, DNAT --to-destination IP:PORT,
             MASQUERADE [--random-fully], MARK --or-mark V | --xor-mark V | --set-xmark V/M, or none

Like iptables it refuses: a jump to a chain that does not exist (yet), deleting a chain that is not empty
or still referenced, deleting a rule that is not there, chain loops, and targets outside the tables and
hooks the kernel allows them in (REJECT: filter INPUT/FORWARD/OUTPUT; DNAT: nat PREROUTING/OUTPUT;
MASQUERADE: nat POSTROUTING). A whole input is applied all or nothing (iptables-legacy-restore commits
per table; being stricter here costs nothing).

`trace()` walks a new connection's first packet through nat PREROUTING -> filter INPUT | (filter FORWARD
-> nat POSTROUTING), or for the node's own traffic nat OUTPUT -> filter OUTPUT -> nat POSTROUTING
[-> filter INPUT], exploring both outcomes of every `statistic` match ("all branches reachable") and
answering like the nftables fake (same Packet / PathResult / TraceResult): DNAT to which endpoints, DROP,
REJECT or untouched, masqueraded or not, and the comments of the commented rules that decided
something on the way (`verdict_rules`: an ACCEPT, DROP or REJECT, or a MARK, which is how a rule that
cannot end the chain says "allowed"). `recent` lists are kept per name with a settable clock (`now`).
"""

from __future__ import annotations

import copy
import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import Literal

from firewall.errors import FakeIptablesError
from firewall.iptables.ruleset import BUILTIN_CHAINS, FILTER, NAT
from firewall.tracing import Chooser, Packet, PathResult, TraceResult, every_path

MAX_PATHS = 4096
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
PROTOCOLS = ("tcp", "udp", "sctp")
MODULES = ("comment", "tcp", "udp", "sctp", "addrtype", "statistic", "recent", "mark", "conntrack")
CT_STATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT")
BUILTIN_TARGETS = ("ACCEPT", "DROP", "RETURN", "REJECT", "DNAT", "MASQUERADE", "MARK")
# Where the kernel accepts a target: (table, hooks) (xt_target .table / .hooks).
TARGET_PLACES: dict[str, tuple[str, tuple[str, ...]]] = {
    "REJECT": (FILTER, ("INPUT", "FORWARD", "OUTPUT")),
    "DNAT": (NAT, ("PREROUTING", "OUTPUT")),
    "MASQUERADE": (NAT, ("POSTROUTING",)),
}

__all__ = ["FakeIptables", "Packet", "PathResult", "TraceResult"]


@dataclass
class Match:
    kind: str  # dport | addrtype | statistic | recent | mark | ctstate | comment
    negate: bool = False
    port: int = 0
    port_end: int = 0  # --dport N:M (0: a single port)
    addr_dir: str = ""  # src | dst
    addr_type: str = ""
    probability: float = 0.0
    name: str = ""
    recent_op: str = ""  # set | rcheck
    seconds: int | None = None
    reap: bool = False
    mark: tuple[int, int] = (0, 0)
    states: frozenset[str] = frozenset()
    module: str = ""


@dataclass
class Rule:
    text: str
    tokens: tuple[str, ...]
    proto: str | None = None
    src: tuple[ipaddress.IPv4Network, bool] | None = None
    dst: tuple[ipaddress.IPv4Network, bool] | None = None
    matches: list[Match] = field(default_factory=list)
    target: str | None = None
    to: tuple[ipaddress.IPv4Address, int] | None = None
    mark_op: tuple[str, int, int] | None = None  # (or | xor | setx, value, mask)
    comment: str = ""


@dataclass
class FakeChain:
    name: str
    builtin: bool
    rules: list[Rule] = field(default_factory=list)


def _net(text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise FakeIptablesError(f"host/network {text!r} not found") from None


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise FakeIptablesError(f"bad number {text!r}") from None


def _mark(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return _int(value), _int(mask) if mask else 0xFFFFFFFF


def parse_rule(spec: str, table: str) -> Rule:
    try:
        tokens = tuple(shlex.split(spec))
    except ValueError as err:
        raise FakeIptablesError(f"cannot split {spec!r}: {err}") from None
    rule = Rule(text=spec, tokens=tokens)
    modules: list[str] = []
    current: Match | None = None
    negate = False
    i = 0

    def arg() -> str:
        nonlocal i
        if i + 1 >= len(tokens):
            raise FakeIptablesError(f"option {tokens[i]!r} requires an argument in: {spec}")
        i += 1
        return tokens[i]

    def need(module: str) -> Match:
        if current is None or current.module != module:
            raise FakeIptablesError(f"option {tokens[i]!r} needs -m {module} in: {spec}")
        return current

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negate = True
            i += 1
            continue
        if rule.target is not None:
            # Target options.
            if rule.target == "DNAT" and tok == "--to-destination":
                ip, _, port = arg().partition(":")
                if not port:
                    raise FakeIptablesError(f"DNAT without a port is not in the subset: {spec}")
                rule.to = (ipaddress.IPv4Address(ip), _int(port))
            elif rule.target == "MASQUERADE" and tok == "--random-fully":
                pass
            elif rule.target == "MARK" and tok in ("--or-mark", "--xor-mark"):
                rule.mark_op = (tok[2:-5], _int(arg()), 0)
            elif rule.target == "MARK" and tok == "--set-xmark":
                value, mask = _mark(arg())
                rule.mark_op = ("setx", value, mask)
            else:
                raise FakeIptablesError(f"unknown option {tok!r} for target {rule.target} in: {spec}")
        elif tok in ("-s", "--source", "-d", "--destination"):
            address = (_net(arg()), negate)
            if tok in ("-s", "--source"):
                rule.src = address
            else:
                rule.dst = address
        elif tok in ("-p", "--protocol"):
            proto = arg().lower()
            if proto not in PROTOCOLS or negate:
                raise FakeIptablesError(f"protocol {'! ' if negate else ''}{proto} is not in the subset: {spec}")
            rule.proto = proto
        elif tok == "-m":
            module = arg()
            if module not in MODULES:
                raise FakeIptablesError(f"match {module!r} is not in the subset: {spec}")
            modules.append(module)
            current = Match("comment" if module == "comment" else module, module=module)
            if module not in ("tcp", "udp", "sctp", "comment"):
                rule.matches.append(current)
        elif tok == "--comment":
            need("comment")
            rule.comment = arg()
        elif tok == "--dport":
            m = current
            if m is None or m.module not in PROTOCOLS:
                raise FakeIptablesError(f"--dport needs -m tcp|udp|sctp in: {spec}")
            first, _, last = arg().partition(":")
            rule.matches.append(Match("dport", negate, port=_int(first), port_end=_int(last) if last else 0,
                                      module=m.module))
        elif tok in ("--src-type", "--dst-type"):
            m = need("addrtype")
            m.negate, m.addr_dir, m.addr_type = negate, tok[2:5], arg()
            if m.addr_type != "LOCAL":
                raise FakeIptablesError(f"addrtype {m.addr_type} is not in the subset: {spec}")
        elif tok == "--mode":
            need("statistic")
            if arg() != "random":
                raise FakeIptablesError(f"statistic mode other than random is not in the subset: {spec}")
        elif tok == "--probability":
            m = need("statistic")
            m.probability = float(arg())
            if not 0.0 < m.probability < 1.0:
                raise FakeIptablesError(f"probability {m.probability} leaves a branch unreachable: {spec}")
        elif tok == "--name":
            need("recent").name = arg()
        elif tok in ("--set", "--rcheck"):
            m = need("recent")
            if m.recent_op:
                raise FakeIptablesError(f"recent: only one of --set/--rcheck per match: {spec}")
            m.recent_op = tok[2:]
        elif tok == "--seconds":
            need("recent").seconds = _int(arg())
        elif tok == "--reap":
            need("recent").reap = True
        elif tok == "--mark":
            m = need("mark")
            m.negate, m.mark = negate, _mark(arg())
        elif tok == "--ctstate":
            m = need("conntrack")
            states = frozenset(arg().split(","))
            if not states <= set(CT_STATES):
                raise FakeIptablesError(f"unknown ctstate in: {spec}")
            m.negate, m.states = negate, states
        elif tok in ("-j", "--jump"):
            rule.target = arg()
        else:
            raise FakeIptablesError(f"option {tok!r} is not in the subset: {spec}")
        negate = False  # a "!" applies to the one option after it
        i += 1
    for m in rule.matches:
        rcheck = m.recent_op == "rcheck"
        if m.kind == "recent" and (not m.name or not m.recent_op or rcheck != (m.seconds is not None)):
            raise FakeIptablesError(f"recent match needs --name and --set, or --rcheck --seconds: {spec}")
        if m.kind == "addrtype" and not m.addr_dir:
            raise FakeIptablesError(f"addrtype without --src-type/--dst-type: {spec}")
        if m.kind == "statistic" and not m.probability:
            raise FakeIptablesError(f"statistic without --probability: {spec}")
        if m.kind == "mark" and m.mark == (0, 0):
            raise FakeIptablesError(f"mark match without --mark: {spec}")
        if m.kind == "conntrack" and not m.states:
            raise FakeIptablesError(f"conntrack match without --ctstate: {spec}")
        if m.kind == "dport" and rule.proto != m.module:
            raise FakeIptablesError(f"-m {m.module} --dport needs -p {m.module} in: {spec}")
    for module in modules:
        if module in PROTOCOLS and rule.proto != module:
            raise FakeIptablesError(f"-m {module} is only valid with -p {module}: {spec}")
    t = rule.target
    if t == "DNAT" and rule.to is None:
        raise FakeIptablesError(f"DNAT needs --to-destination: {spec}")
    if t == "DNAT" and rule.proto is None:
        raise FakeIptablesError(f"DNAT to a port needs -p tcp|udp|sctp: {spec}")
    if t == "MARK" and rule.mark_op is None:
        raise FakeIptablesError(f"MARK needs --or-mark/--xor-mark/--set-xmark: {spec}")
    if t in TARGET_PLACES and TARGET_PLACES[t][0] != table:
        raise FakeIptablesError(f"{t} target: only valid in {TARGET_PLACES[t][0]} table, not {table}: {spec}")
    return rule


Tables = dict[str, dict[str, FakeChain]]


class _Terminal(Exception):
    def __init__(self, verdict: str) -> None:
        self.verdict = verdict


@dataclass
class _Ctx:
    saddr: ipaddress.IPv4Address
    daddr: ipaddress.IPv4Address
    proto: str
    dport: int
    chooser: Chooser
    mark: int = 0
    dnat: tuple[ipaddress.IPv4Address, int] | None = None
    masquerade: bool = False
    updates: list[tuple[str, str]] = field(default_factory=list)
    verdict_rules: list[str] = field(default_factory=list)


class FakeIptables:
    """In-memory nat and filter tables; `restore()` like iptables-restore --noflush, `save()`, `trace()`."""

    flavour = "fake"

    def __init__(self, *, local_addresses: tuple[str, ...] = ()) -> None:
        self.tables: Tables = {}
        self.local_addresses = frozenset(ipaddress.IPv4Address(a) for a in local_addresses)
        self.recent: dict[str, dict[ipaddress.IPv4Address, float]] = {}
        self.now = 0.0  # seconds, for `recent`
        self.transactions: list[str] = []

    # -- the runner seam ---------------------------------------------------------------------------

    def restore(self, text: str) -> None:
        state = copy.deepcopy(self.tables)
        table: str | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("*"):
                    if table is not None:
                        raise FakeIptablesError(f"*{line[1:]} before COMMIT of {table}")
                    table = line[1:]
                    if table not in BUILTIN_CHAINS:
                        raise FakeIptablesError(f"table {table!r} is not in the subset")
                    state.setdefault(table, {c: FakeChain(c, True) for c in BUILTIN_CHAINS[table]})
                elif table is None:
                    raise FakeIptablesError("a command outside of *table ... COMMIT")
                elif line == "COMMIT":
                    _validate(table, state[table])
                    table = None
                elif line.startswith(":"):
                    self._declare(state[table], line)
                else:
                    self._command(table, state[table], line)
            except FakeIptablesError as err:
                raise FakeIptablesError(f"line {lineno}: {err}", transaction=text) from None
        if table is not None:
            raise FakeIptablesError(f"no COMMIT for table {table}", transaction=text)
        self.tables = state
        self.transactions.append(text)

    def chains(self, table: str) -> list[str]:
        return list(self.tables.get(table) or BUILTIN_CHAINS[table])

    def chain_rules(self, table: str, chain: str) -> list[str]:
        found = (self.tables.get(table) or {}).get(chain)
        return [f"-A {chain} {r.text}" for r in found.rules] if found is not None else []

    def save(self, table: str) -> str:
        chains = self.tables.get(table)
        if chains is None:
            chains = {c: FakeChain(c, True) for c in BUILTIN_CHAINS[table]}
        lines = [f"*{table}"]
        builtins = [c for c in chains.values() if c.builtin]
        users = sorted((c for c in chains.values() if not c.builtin), key=lambda c: c.name)
        lines += [f":{c.name} ACCEPT [0:0]" for c in builtins]
        lines += [f":{c.name} - [0:0]" for c in users]
        for c in builtins + users:
            lines += [f"-A {c.name} {r.text}" for r in c.rules]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    # -- commands ----------------------------------------------------------------------------------

    @staticmethod
    def _declare(chains: dict[str, FakeChain], line: str) -> None:
        parts = line[1:].split()
        if len(parts) != 3 or parts[2] != "[0:0]":
            raise FakeIptablesError(f"bad chain line {line!r}")
        name, policy = parts[0], parts[1]
        if name in chains and chains[name].builtin:
            raise FakeIptablesError(f"declaring built-in chain {name} is not in the subset (it sets the policy)")
        if policy != "-":
            raise FakeIptablesError(f"user chain {name} cannot have a policy")
        if len(name) > 28 or name in BUILTIN_TARGETS:
            raise FakeIptablesError(f"invalid chain name {name!r}")
        if name in chains:
            chains[name].rules.clear()  # --noflush: declaring an existing chain flushes it
        else:
            chains[name] = FakeChain(name, False)

    def _command(self, table: str, chains: dict[str, FakeChain], line: str) -> None:
        verb, _, rest = line.partition(" ")
        name, _, spec = rest.partition(" ")
        chain = chains.get(name)
        if chain is None:
            raise FakeIptablesError(f"{verb} {name}: no chain/target/match by that name")
        if verb == "-F":
            if spec:
                raise FakeIptablesError(f"-F takes a chain only: {line}")
            chain.rules.clear()
        elif verb == "-X":
            if spec or chain.builtin:
                raise FakeIptablesError(f"-X {name}: cannot delete")
            if chain.rules:
                raise FakeIptablesError(f"-X {name}: Directory not empty")
            users = [c.name for c in chains.values() for r in c.rules if r.target == name]
            if users:
                raise FakeIptablesError(f"-X {name}: Too many links (referenced from {users[0]})")
            del chains[name]
        elif verb in ("-A", "-I"):
            position = 0
            if verb == "-I":
                first, _, after = spec.partition(" ")
                if first.isdigit():
                    position, spec = int(first) - 1, after
                if not 0 <= position <= len(chain.rules):
                    raise FakeIptablesError(f"-I {name} {position + 1}: index of insertion too big")
            rule = parse_rule(spec, table)
            if rule.target is not None and rule.target not in BUILTIN_TARGETS:
                target = chains.get(rule.target)
                if target is None:
                    raise FakeIptablesError(f"Couldn't load target `{rule.target}': No such file or directory")
                if target.builtin:
                    raise FakeIptablesError(f"cannot jump to built-in chain {rule.target}")
            if verb == "-A":
                chain.rules.append(rule)
            else:
                chain.rules.insert(position, rule)
        elif verb == "-D":
            tokens = tuple(shlex.split(spec))
            for i, r in enumerate(chain.rules):
                if r.tokens == tokens:
                    del chain.rules[i]
                    break
            else:
                raise FakeIptablesError(f"-D {name}: Bad rule (does a matching rule exist in that chain?)")
        else:
            raise FakeIptablesError(f"command {verb!r} is not in the subset: {line}")

    # -- tracing -----------------------------------------------------------------------------------

    def chain(self, table: str, name: str) -> FakeChain:
        return self.tables[table][name]

    def trace(self, packet: Packet, *, remember: bool = False) -> TraceResult:
        """Every outcome of `packet` (a new connection's first packet) over all statistic choices.

        With `remember`, what the first path adds to `recent` lists is kept, as if that connection had
        really been made (at `now`).
        """
        paths = every_path(lambda chooser: self._trace_path(packet, chooser), limit=MAX_PATHS,
                           too_many=lambda: FakeIptablesError(f"more than {MAX_PATHS} paths for {packet}"))
        if remember:
            for name, element in paths[0].updates:
                self.recent.setdefault(name, {})[ipaddress.IPv4Address(element)] = self.now
        return TraceResult(tuple(paths))

    def _is_local(self, ip: ipaddress.IPv4Address) -> bool:
        return ip in self.local_addresses or ip in LOOPBACK

    def _trace_path(self, packet: Packet, chooser: Chooser) -> PathResult:
        ctx = _Ctx(ipaddress.IPv4Address(packet.src), ipaddress.IPv4Address(packet.dst),
                   packet.protocol.lower(), packet.dport, chooser)
        try:
            if packet.ingress == "node":
                self._hook(NAT, "OUTPUT", ctx)
                self._hook(FILTER, "OUTPUT", ctx)
                self._hook(NAT, "POSTROUTING", ctx)
                if self._is_local(ctx.daddr):
                    self._hook(FILTER, "INPUT", ctx)
            else:
                self._hook(NAT, "PREROUTING", ctx)
                if self._is_local(ctx.daddr):
                    self._hook(FILTER, "INPUT", ctx)
                else:
                    self._hook(FILTER, "FORWARD", ctx)
                    self._hook(NAT, "POSTROUTING", ctx)
        except _Terminal as t:
            verdict: Literal["ACCEPT", "DROP", "REJECT"] = "DROP" if t.verdict == "DROP" else "REJECT"
            return PathResult(verdict, _addr(ctx.dnat), ctx.masquerade, tuple(ctx.updates), tuple(ctx.verdict_rules))
        return PathResult("ACCEPT", _addr(ctx.dnat), ctx.masquerade, tuple(ctx.updates), tuple(ctx.verdict_rules))

    def _hook(self, table: str, hook: str, ctx: _Ctx) -> None:
        chains = self.tables.get(table)
        if chains is None:
            return
        outcome = self._run(chains, chains[hook], ctx, 0)
        if outcome in ("DROP", "REJECT"):
            raise _Terminal(outcome)
        if outcome == "DNAT" and ctx.dnat is not None:
            ctx.daddr, ctx.dport = ctx.dnat

    def _run(self, chains: dict[str, FakeChain], chain: FakeChain, ctx: _Ctx, depth: int) -> str | None:
        if depth > 32:
            raise FakeIptablesError(f"jump depth exceeded at {chain.name}")
        for rule in chain.rules:
            if not self._matches(rule, ctx):
                continue
            t = rule.target
            if t is None:
                continue
            if rule.comment and t in ("ACCEPT", "DROP", "REJECT", "MARK"):
                ctx.verdict_rules.append(rule.comment)
            if t == "MARK":
                assert rule.mark_op is not None
                op, value, mask = rule.mark_op
                ctx.mark = {"or": ctx.mark | value, "xor": ctx.mark ^ value,
                            "setx": (ctx.mark & ~mask) ^ value}[op]
                continue
            if t == "RETURN":
                return None
            if t == "DNAT":
                ctx.dnat = rule.to
                return "DNAT"
            if t == "MASQUERADE":
                ctx.masquerade = True
                return "ACCEPT"
            if t in ("ACCEPT", "DROP", "REJECT"):
                return t
            outcome = self._run(chains, chains[t], ctx, depth + 1)
            if outcome is not None:
                return outcome
        return None

    def _matches(self, rule: Rule, ctx: _Ctx) -> bool:
        # The IP header part first (ip_packet_match), then the matches left to right, as the kernel does.
        if rule.proto is not None and rule.proto != ctx.proto:
            return False
        for part, addr in ((rule.src, ctx.saddr), (rule.dst, ctx.daddr)):
            if part is not None and (addr in part[0]) == part[1]:
                return False
        return all(self._match(m, ctx) != m.negate for m in rule.matches)

    def _match(self, m: Match, ctx: _Ctx) -> bool:
        if m.kind == "dport":
            return m.port <= ctx.dport <= m.port_end if m.port_end else ctx.dport == m.port
        if m.kind == "addrtype":
            return self._is_local(ctx.saddr if m.addr_dir == "src" else ctx.daddr)
        if m.kind == "statistic":
            return ctx.chooser.choose(2) == 0  # both branches reachable: 0 = matched
        if m.kind == "mark":
            value, mask = m.mark
            return ctx.mark & mask == value
        if m.kind == "conntrack":
            return "NEW" in m.states  # a new connection's first packet
        if m.kind == "recent":
            if m.recent_op == "set":
                ctx.updates.append((m.name, str(ctx.saddr)))
                return True
            seen = self.recent.get(m.name, {}).get(ctx.saddr)
            assert m.seconds is not None
            return seen is not None and self.now - seen <= m.seconds
        raise FakeIptablesError(f"cannot evaluate {m.kind}")


def _addr(dnat: tuple[ipaddress.IPv4Address, int] | None) -> str | None:
    return f"{dnat[0]}:{dnat[1]}" if dnat else None


def _validate(table: str, chains: dict[str, FakeChain]) -> None:
    """Targets only where the kernel allows them, reached from the hooks; no loops."""
    for hook in BUILTIN_CHAINS[table]:
        done: set[str] = set()

        def visit(chain: FakeChain, stack: list[str], hook: str = hook, done: set[str] = done) -> None:
            if chain.name in stack:
                raise FakeIptablesError(f"chain loop: {' -> '.join([*stack, chain.name])} (Too many levels of links)")
            if chain.name in done:
                return
            for rule in chain.rules:
                t = rule.target
                if t in TARGET_PLACES and hook not in TARGET_PLACES[t][1]:
                    raise FakeIptablesError(f"{t} in {chain.name} reached from {table} {hook}: invalid hook")
                if t is not None and t not in BUILTIN_TARGETS:
                    visit(chains[t], [*stack, chain.name])
            done.add(chain.name)

        visit(chains[hook], [])
