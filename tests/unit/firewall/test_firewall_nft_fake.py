"""The fake refuses what nft or the kernel would refuse, all or nothing."""

from __future__ import annotations

import pytest

from firewall.errors import FakeNftError
from firewall.nftables import FakeNft
from firewall.tracing import Packet

BASE = """add table ip t
add chain ip t pre { type nat hook prerouting priority -100 ; policy accept ; }
add chain ip t fwd { type filter hook forward priority 0 ; policy accept ; }
add chain ip t svc
add map ip t m { type ipv4_addr . inet_proto . inet_service : verdict ; }
add rule ip t pre ip daddr . meta l4proto . th dport vmap @m
"""


def loaded() -> FakeNft:
    fake = FakeNft()
    fake.run(BASE)
    return fake


@pytest.mark.parametrize(("transaction", "complaint"), [
    ("add rule ip t svc jump nowhere", "missing chain nowhere"),
    ("add element ip t m { 10.0.0.1 . tcp . 80 : goto nowhere }", "missing chain nowhere"),
    ("add rule ip t svc ip daddr @nothing drop", "missing set nothing"),
    ("add rule ip t svc tcp dport 80 drop", "unsupported expression"),
    ("add rule ip t svc ip daddr 10.0.0.1 log", "unsupported expression"),
    ("insert rule ip t svc drop", "expected add"),
    ("add element ip t m { 10.0.0.1 . tcp : goto svc }", "expected ."),
    ("add element ip t m { 10.0.0.1 . tcp . 80 . 1 : goto svc }", "more parts"),
    ("add element ip t m { 10.0.0.0/8 . tcp . 80 : goto svc }", "interval"),
    ("delete element ip t m { 10.0.0.1 . tcp . 80 }", "not present"),
    ("delete chain ip t missing", "no such chain"),
    ("add map ip t m { type ipv4_addr : verdict ; }", "another declaration"),
    ("add rule ip t svc reject\nadd element ip t m { 10.0.0.1 . tcp . 80 : goto svc }", "reject in svc"),
    ("add rule ip t fwd jump svc\nadd rule ip t svc dnat ip to 10.0.0.1", "dnat in svc"),
    ("add rule ip t svc dnat ip to 10.0.0.1:80", "transport protocol"),
    ("add chain ip t a\nadd rule ip t a jump svc\nadd rule ip t svc jump a\nadd rule ip t fwd jump a", "loop"),
    ("add rule ip t svc ip daddr . th dport vmap @m", "does not fit"),
])
def test_refuses(transaction: str, complaint: str) -> None:
    fake = loaded()
    before = fake.list_table("ip", "t")
    with pytest.raises(FakeNftError, match=complaint):
        fake.run(transaction)
    assert fake.list_table("ip", "t") == before


def test_a_failed_transaction_changes_nothing() -> None:
    fake = loaded()
    with pytest.raises(FakeNftError):
        fake.run("add element ip t m { 10.0.0.1 . tcp . 80 : goto svc }\nadd rule ip t svc jump nowhere")
    assert fake.table("ip", "t").sets["m"].elements == {}


def test_deleting_a_referenced_chain_is_refused() -> None:
    fake = loaded()
    fake.run("add element ip t m { 10.0.0.1 . tcp . 80 : goto svc }")
    with pytest.raises(FakeNftError, match="missing chain svc"):
        fake.run("delete chain ip t svc")


def test_readding_an_element_with_another_value_is_refused() -> None:
    fake = loaded()
    fake.run("add chain ip t other\nadd element ip t m { 10.0.0.1 . tcp . 80 : goto svc }")
    fake.run("add element ip t m { 10.0.0.1 . tcp . 80 : goto svc }")  # same value: fine, as in nft
    with pytest.raises(FakeNftError, match="another value"):
        fake.run("add element ip t m { 10.0.0.1 . tcp . 80 : goto other }")


def test_trace_explores_every_numgen_choice() -> None:
    fake = loaded()
    fake.run(
        "add map ip t be { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport ; }\n"
        "add rule ip t svc dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 3 map @be\n"
        "add element ip t m { 10.96.0.1 . tcp . 80 : goto svc }\n"
        "add element ip t be { 10.96.0.1 . tcp . 80 . 0 : 10.0.0.1 . 8080, 10.96.0.1 . tcp . 80 . 1 : 10.0.0.2 . 8080,"
        " 10.96.0.1 . tcp . 80 . 2 : 10.0.0.3 . 8080 }\n"
    )
    result = fake.trace(Packet("10.244.0.9", "10.96.0.1", 80))
    assert result.verdict == "DNAT"
    assert result.endpoints == {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}
    assert len(result.paths) == 3
    assert fake.trace(Packet("10.244.0.9", "10.96.0.1", 80, "UDP")).verdict == "ACCEPT"


def test_typeof_map_with_ip_and_th_data_needs_its_rules_in_the_declaring_transaction() -> None:
    # nft 1.0.6: "conflicting protocols specified: ip vs. th" (see proxy/nftables/layout.py LB_FAMILIES).
    declare = ("add map ip t be { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : "
               "ip daddr . th dport ; }\n")
    rule = "add rule ip t svc dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @be\n"
    loaded().run(declare + rule)
    fake = loaded()
    fake.run(declare)
    with pytest.raises(FakeNftError, match=r"ip vs\. th"):
        fake.run(rule)


def test_chains_of_reads_one_tables_chains_from_nft_list_chains() -> None:
    from firewall.nftables.runner import chains_of

    listing = """table ip filter {
	chain FORWARD {
		type filter hook forward priority filter; policy accept;
	}
}
table ip kubesim-proxy {
	chain services {
	}
	chain filter-forward {
		type filter hook forward priority filter; policy accept;
	}
}
"""
    assert chains_of(listing, "ip", "kubesim-proxy") == ["services", "filter-forward"]
    assert chains_of(listing, "ip", "filter") == ["FORWARD"]
    assert chains_of(listing, "ip", "gone") is None
