"""The in-memory iptables refuses what iptables-restore or the kernel would refuse, all or nothing."""

from __future__ import annotations

import pytest

from firewall.errors import FakeIptablesError
from firewall.iptables import FakeIptables


def state(fake: FakeIptables) -> tuple[str, str]:
    return fake.save("filter"), fake.save("nat")


BASE = "*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\nCOMMIT\n"


@pytest.mark.parametrize(("text", "complaint"), [
    ("*nat\n-A KUBE-A -j KUBE-NOWHERE\nCOMMIT\n", "Couldn't load target"),
    ("*nat\n-A KUBE-NOWHERE -j ACCEPT\nCOMMIT\n", "no chain"),
    ("*nat\n-X KUBE-B\nCOMMIT\n", "Too many links"),
    ("*nat\n-X KUBE-A\nCOMMIT\n", "not empty"),
    ("*nat\n-D KUBE-A -j ACCEPT\nCOMMIT\n", "Bad rule"),
    ("*nat\n-A KUBE-B -j REJECT\nCOMMIT\n", "only valid in filter"),
    ("*filter\n:X - [0:0]\n-A X -m tcp -p tcp -j DNAT --to-destination 1.2.3.4:80\nCOMMIT\n", "only valid in nat"),
    ("*nat\n-A KUBE-B -m tcp -p tcp -j DNAT --to-destination 1.2.3.4:80\n-A POSTROUTING -j KUBE-A\nCOMMIT\n",
     "invalid hook"),
    ("*nat\n-A KUBE-B -j MASQUERADE\n-I PREROUTING -j KUBE-A\nCOMMIT\n", "invalid hook"),
    ("*nat\n-A KUBE-B -j KUBE-A\n-A OUTPUT -j KUBE-A\nCOMMIT\n", "loop"),
    ("*nat\n-A KUBE-B -i eth0 -j ACCEPT\nCOMMIT\n", "not in the subset"),
    ("*nat\n-A KUBE-B -m tcp --dport 80 -j ACCEPT\nCOMMIT\n", "-p tcp"),
    ("*nat\n-A KUBE-B -m statistic --mode random --probability 1.0 -j ACCEPT\nCOMMIT\n", "unreachable"),
    ("*nat\n:PREROUTING DROP [0:0]\nCOMMIT\n", "built-in"),
    ("*raw\nCOMMIT\n", "not in the subset"),
    ("*nat\n-A KUBE-B -j ACCEPT\n", "no COMMIT"),
])
def test_fake_refuses(text: str, complaint: str) -> None:
    fake = FakeIptables()
    fake.restore(BASE)
    before = state(fake)
    with pytest.raises(FakeIptablesError, match=complaint):
        fake.restore(text)
    assert state(fake) == before  # all or nothing


def test_declaring_an_existing_chain_flushes_it() -> None:
    fake = FakeIptables()
    fake.restore(BASE)
    fake.restore("*nat\n:KUBE-A - [0:0]\n-X KUBE-B\nCOMMIT\n")
    assert fake.tables["nat"]["KUBE-A"].rules == [] and "KUBE-B" not in fake.tables["nat"]


def test_chain_names_are_read_per_table_from_an_nft_listing() -> None:
    from firewall.iptables.runner import chains_of_table

    listing = ("table ip nat {\n\tchain PREROUTING {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
               "\t}\n\tchain KUBE-SERVICES {\n\t}\n}\ntable ip kubesim-proxy {\n\tchain services {\n\t}\n}\n"
               "table ip filter {\n\tchain KUBE-FORWARD {\n\t}\n}\n")
    assert chains_of_table(listing, "nat") == ["PREROUTING", "KUBE-SERVICES"]
    assert chains_of_table(listing, "filter") == ["KUBE-FORWARD"]
    assert chains_of_table(listing, "mangle") == []


def test_the_fake_lists_chain_names_and_one_chains_rules_as_iptables_does() -> None:
    fake = FakeIptables()
    fake.restore("*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n")
    assert "KUBE-SERVICES" in fake.chains("nat") and "PREROUTING" in fake.chains("nat")
    assert fake.chain_rules("nat", "PREROUTING") == ["-A PREROUTING -j KUBE-SERVICES"]
    assert fake.chain_rules("nat", "KUBE-NOWHERE") == []
