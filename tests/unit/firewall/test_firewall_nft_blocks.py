"""The fake reads nft's block syntax (`table ip t { ... }`) as the network-policy agent writes it:
forward hooks by priority, conntrack state lists, verdict maps that goto, interval and concatenated
sets with prefixes and port ranges, counters and comments; and refuses what nft 1.0.6 refuses. Each
text below was checked once against the real `nft -c -f` (in a fresh network namespace) for the
verdict its test claims: refused, accepted, or accepted by nft but outside the fake's subset."""

from __future__ import annotations

import pytest

from firewall.errors import FakeNftError
from firewall.nftables import FakeNft
from firewall.tracing import Packet

PORTS = "0.0.0.0/0 . tcp . 80-81, 10.244.1.10 . udp . 53"
TABLE = """add table ip t
delete table ip t
table ip t {
  set peers { type ipv4_addr; flags interval; elements = { 10.244.2.0/24, 10.244.9.7/32 } }
  set ports { type ipv4_addr . inet_proto . inet_service; flags interval; elements = { PORTS } }
  set selves { type ipv4_addr . ipv4_addr; elements = { 10.244.1.10 . 10.244.1.10 }; }
  chain allow-web {
    ip saddr @peers ip daddr . meta l4proto . th dport @ports accept comment "x/web ingress rule 0"
  }
  chain isolated {
    jump allow-web
    counter drop comment "ingress isolated by x/web, x/other"
  }
  map pods { type ipv4_addr : verdict; elements = { 10.244.1.10 : goto isolated }; }
  chain late {
    type filter hook forward priority 11; policy accept;
    ct state established,related accept
    ip saddr . ip daddr @selves accept
    ip daddr vmap @pods
  }
  chain early {
    type filter hook forward priority -5; policy accept;
    ip saddr 10.244.3.3 drop comment "early"
  }
}
""".replace("PORTS", PORTS)


def loaded() -> FakeNft:
    fake = FakeNft()
    fake.run(TABLE)
    return fake


@pytest.mark.parametrize(("src", "dport", "proto", "verdict", "rules"), [
    ("10.244.2.5", 80, "TCP", "ACCEPT", ("x/web ingress rule 0",)),   # a peer, a port of the range
    ("10.244.2.5", 81, "TCP", "ACCEPT", ("x/web ingress rule 0",)),
    ("10.244.2.5", 82, "TCP", "DROP", ("ingress isolated by x/web, x/other",)),
    ("10.244.2.5", 80, "UDP", "DROP", ("ingress isolated by x/web, x/other",)),
    ("10.244.2.5", 53, "UDP", "ACCEPT", ("x/web ingress rule 0",)),    # the per-address element
    ("10.244.9.7", 80, "TCP", "ACCEPT", ("x/web ingress rule 0",)),    # a /32 peer
    ("10.244.9.8", 80, "TCP", "DROP", ("ingress isolated by x/web, x/other",)),
    ("10.244.1.10", 99, "TCP", "ACCEPT", ()),                          # itself, by the selves set
    ("10.244.3.3", 80, "TCP", "DROP", ("early",)),                     # priority -5 runs first
])
def test_packets_through_the_block_ruleset(src: str, dport: int, proto: str, verdict: str,
                                           rules: tuple[str, ...]) -> None:
    result = loaded().trace(Packet(src, "10.244.1.10", dport, proto))
    assert result.verdict == verdict
    assert result.paths[0].verdict_rules == rules


def test_addresses_outside_the_verdict_map_are_not_judged() -> None:
    result = loaded().trace(Packet("10.244.2.5", "10.244.1.11", 9999, "UDP"))
    assert (result.verdict, result.paths[0].verdict_rules) == ("ACCEPT", ())


def test_base_chains_keep_their_hooks_and_priorities() -> None:
    chains = loaded().table("ip", "t").chains
    assert chains["late"].base == ("filter", "forward", 11)
    assert chains["early"].base == ("filter", "forward", -5)
    assert chains["isolated"].base is None


def test_a_second_load_replaces_the_table_whole() -> None:
    fake = loaded()
    fake.run(TABLE.replace("10.244.1.10 : goto isolated", "10.244.1.99 : goto isolated"))
    assert fake.trace(Packet("10.244.2.5", "10.244.1.10", 82)).verdict == "ACCEPT"
    assert fake.trace(Packet("10.244.2.5", "10.244.1.99", 82)).verdict == "DROP"


def _block(*lines: str) -> str:
    return "table ip t {\n" + "\n".join(lines) + "\n}\n"


CHAIN = "  chain c {\n    %s\n  }"


@pytest.mark.parametrize(("text", "complaint"), [
    (_block("  set s { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 10.1.0.0/16 } }"),
     "conflicting intervals"),
    (_block("  set s { type ipv4_addr . inet_proto . inet_service; flags interval; "
            "elements = { 0.0.0.0/0 . tcp . 80, 0.0.0.0/0 . tcp . 80-81 } }"), "File exists"),
    (_block("  set s { type ipv4_addr . inet_proto . inet_service; flags interval; "
            "elements = { 0.0.0.0/0 . tcp . 80, 10.0.0.1 . tcp . 80 } }"), "File exists"),
    (_block("  set s { type inet_service; elements = { 80-81 } }"), "flags interval"),
    (_block("  set s { type inet_service; flags interval; elements = { 81-80 } }"), "negative size"),
    (_block("  set s { type ipv4_addr; elements = { } }"), "not a valid"),
    (_block("  set s { type ipv4_addr; elements = { 10.0.0.0/8 } }"), "flags interval"),
    (_block(CHAIN % "ct state established,related,bogus accept"), "not a ct state"),
    (_block(CHAIN % 'drop comment "a" counter'), "after the comment"),
    (_block(CHAIN % ('drop comment "' + "x" * 129 + '"')), "comment too long"),
    (_block(CHAIN % 'drop comment "unterminated'), "unterminated"),
    (_block("  chain c {\n    type filter hook forward priority 0; policy accept;\n  }",
            "  chain c {\n    type filter hook forward priority 5; policy accept;\n  }"), "another hook"),
    (_block("  map m { type ipv4_addr : verdict; elements = { 10.0.0.1 : goto nowhere }; }"), "missing chain"),
    (_block(CHAIN % "ip saddr @nothing accept"), "missing set"),
    (_block("  rule c accept"), "expected set or map or chain"),
    (_block("  set s { type ipv4_addr; } extra"), "unexpected"),
    ("table ip t {\n  chain c {\n    accept\n  }\n", "not closed"),
    ("table ip t {\n  chain c {\n    accept\n", "chain c of table t: block not closed"),
])
def test_refuses_what_nft_refuses(text: str, complaint: str) -> None:
    fake = loaded()
    before = fake.list_table("ip", "t")
    with pytest.raises(FakeNftError, match=complaint):
        fake.run(text)
    assert fake.list_table("ip", "t") == before  # all or nothing


@pytest.mark.parametrize(("text", "complaint"), [
    # nft takes these, but they are outside what the fake models: refused loudly, never half-understood.
    (_block(CHAIN % "type filter hook forward priority filter; policy accept;"), "not a number"),
    (_block(CHAIN % "type filter hook forward priority 0; policy drop;"), "expected accept"),
    ("table inet t {\n}\n", "expected ip"),
    (_block(CHAIN % "tcp dport 80 accept"), "unsupported expression"),
])
def test_refuses_what_it_does_not_model(text: str, complaint: str) -> None:
    with pytest.raises(FakeNftError, match=complaint):
        FakeNft().run(text)


@pytest.mark.parametrize("text", [
    # Each of these nft accepts (checked with `nft -c`); so must the fake.
    _block("  chain c {\n    accept\n    type filter hook forward priority 0; policy accept;\n  }"),
    _block("  set s { type ipv4_addr; flags interval; elements = { 10.0.0.1/32, 10.0.0.1/32 } }"),
    _block("  set s { type inet_service; flags interval; elements = { 80-80 } }"),
    _block("  set s { type ipv4_addr . inet_proto . inet_service; flags interval; "
           "elements = { 10.0.0.0/8 . tcp . 80, 10.0.0.0/8 . udp . 80 } }"),
    _block(CHAIN % 'counter drop comment "a, b { c }; d"'),
    _block(CHAIN % ('drop comment "' + "x" * 128 + '"')),
    _block("  chain d {\n    jump c\n  }", "  chain c {\n  }"),
])
def test_accepts_what_nft_accepts(text: str) -> None:
    FakeNft().run(text)


def test_ct_state_lists_and_sets_are_the_same_match() -> None:
    # The tracer follows a connection's first packet: its state is `new`, never a reply's.
    for rhs in ("established,related", "{ established, related }"):
        fake = FakeNft()
        fake.run(_block("  chain c {\n    type filter hook forward priority 0; policy accept;\n"
                        f"    ct state {rhs} drop\n    ct state != established,related drop comment \"new\"\n  }}"))
        result = fake.trace(Packet("10.0.0.1", "10.0.0.2", 80))
        assert (result.verdict, result.paths[0].verdict_rules) == ("DROP", ("new",))
