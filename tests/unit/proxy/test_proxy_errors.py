"""What the backends raise when the kernel's tools refuse: the proxy's errors, which are firewall's too,
so callers catching ProxyError (the process entry) and callers catching firewall's classes both work."""

from __future__ import annotations

import pytest
from proxy_flows import cluster_plan

from firewall import errors as firewall_errors
from firewall.errors import FakeIptablesError, FakeNftError
from proxy.errors import IptablesError, NftError, ProxyError
from proxy.iptables import IptablesBackend
from proxy.nftables import NftablesBackend


class RefusingNft:
    def run(self, transaction: str) -> None:
        raise FakeNftError("refused on purpose", transaction=transaction, stderr="Error: no")

    def list_table(self, family: str, table: str, *, terse: bool = False) -> str | None:
        raise firewall_errors.NftError("cannot list")

    def list_chains(self, family: str, table: str) -> list[str] | None:
        raise firewall_errors.NftError("cannot list")


class RefusingIptables:
    def restore(self, text: str) -> None:
        raise FakeIptablesError("refused on purpose", transaction=text, stderr="iptables-restore: no")

    def save(self, table: str) -> str:
        return ""

    def chains(self, table: str) -> list[str]:
        return []

    def chain_rules(self, table: str, chain: str) -> list[str]:
        return []


def test_nftables_backend_raises_proxy_errors_that_are_firewall_errors() -> None:
    backend = NftablesBackend(runner=RefusingNft())
    with pytest.raises(ProxyError) as caught:
        backend.sync(cluster_plan())
    err = caught.value
    assert isinstance(err, NftError) and isinstance(err, firewall_errors.NftError)
    assert isinstance(err.__cause__, FakeNftError)  # what the fake said is kept
    assert err.stderr == "Error: no" and err.transaction.startswith("add table ip kubesim-proxy")
    with pytest.raises(NftError, match="refused on purpose"):
        backend.cleanup()


def test_iptables_backend_raises_proxy_errors_that_are_firewall_errors() -> None:
    backend = IptablesBackend(runner=RefusingIptables())
    with pytest.raises(firewall_errors.IptablesError) as caught:
        backend.sync(cluster_plan())
    err = caught.value
    assert isinstance(err, IptablesError) and isinstance(err, ProxyError)
    assert isinstance(err.__cause__, FakeIptablesError) and err.transaction.startswith("*filter")


def test_a_proxy_error_from_the_seam_passes_through_as_it_is() -> None:
    mine = NftError("the runner's own")

    class Runner(RefusingNft):
        def run(self, transaction: str) -> None:
            raise mine

    with pytest.raises(NftError) as caught:
        NftablesBackend(runner=Runner()).sync(cluster_plan())
    assert caught.value is mine
