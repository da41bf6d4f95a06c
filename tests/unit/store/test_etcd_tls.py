"""etcd over TLS with client certificate authentication, as `kubesim up --store etcd` runs it: the store
connects with its client certificate; plain text, no certificate or one from another CA get nowhere."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.apiserver.certs import issue as issue_certificate
from control.apiserver.certs import make_ca, make_etcd_certificates
from control.store import EtcdServer, EtcdStore, EtcdTLS, StoreUnavailable, open_store
from tests.conftest import require_tool


@pytest.fixture(scope="module")
def tls_etcd() -> Iterator[tuple[EtcdServer, Path]]:
    require_tool("etcd", install="apt-get install etcd-server")
    with tempfile.TemporaryDirectory(prefix="kubesim-etcd-tls-") as path:
        pki = Path(path) / "pki"
        make_etcd_certificates(pki)
        server = EtcdServer(Path(path) / "data", tls=server_tls(pki), client_tls=client_tls(pki))
        server.start()
        try:
            yield server, pki
        finally:
            server.stop()


def server_tls(pki: Path) -> EtcdTLS:
    return EtcdTLS(str(pki / "etcd/ca.crt"), str(pki / "etcd/server.crt"), str(pki / "etcd/server.key"))


def client_tls(pki: Path) -> EtcdTLS:
    return EtcdTLS(str(pki / "etcd/ca.crt"), str(pki / "apiserver-etcd-client.crt"),
                   str(pki / "apiserver-etcd-client.key"))


async def test_a_client_certificate_from_etcds_ca_reads_and_writes(tls_etcd: tuple[EtcdServer, Path]) -> None:
    server, pki = tls_etcd
    assert server.url.startswith("https://")
    async with await open_store(server.store_url, tls=client_tls(pki), compact_interval=None) as store:
        assert isinstance(store, EtcdStore)
        await store.create("/registry/tls", b"v")
        stored = await store.get("/registry/tls")
        assert stored is not None and stored.value == b"v"
        assert await store.delete("/registry/tls") > 0


async def test_plain_text_is_refused(tls_etcd: tuple[EtcdServer, Path]) -> None:
    server, _ = tls_etcd
    with pytest.raises(StoreUnavailable):
        await EtcdStore.open(server.host, server.client_port, timeout=2, compact_interval=None)


async def test_a_certificate_of_another_ca_is_refused(tls_etcd: tuple[EtcdServer, Path], tmp_path: Path) -> None:
    server, pki = tls_etcd
    other = make_ca(tmp_path / "other-ca.crt", tmp_path / "other-ca.key", "not-etcd")
    stranger = issue_certificate(other, tmp_path / "c.crt", tmp_path / "c.key", common_name="intruder", client=True)
    tls = EtcdTLS(str(pki / "etcd/ca.crt"), str(stranger.cert), str(stranger.key))
    with pytest.raises(StoreUnavailable):
        await EtcdStore.open(server.host, server.client_port, timeout=2, compact_interval=None, tls=tls)


async def test_an_etcds_url_without_certificates_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="--etcd-cafile"):
        await open_store("etcds://127.0.0.1:2379")
