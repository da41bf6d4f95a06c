"""What only the etcd backend promises: key prefixes, and errors when etcd is not there."""

from __future__ import annotations

import asyncio

import pytest

from control.store import EtcdServer, EtcdStore, StoreUnavailable, free_port, open_store


async def test_key_prefixes_isolate_stores_on_one_etcd(etcd_server: EtcdServer) -> None:
    host, port = etcd_server.host, etcd_server.client_port
    async with (
        await EtcdStore.open(host, port, key_prefix="/one", compact_interval=None) as one,
        await EtcdStore.open(host, port, key_prefix="/two", compact_interval=None) as two,
        await EtcdStore.open(host, port, compact_interval=None) as bare,
    ):
        watch = await two.watch("/")
        await one.create("/k", b"1")
        rev = await two.create("/k", b"2")
        assert [kv.value for kv in (await one.range("/")).items] == [b"1"]
        event = await asyncio.wait_for(anext(watch), 5)
        assert (event.key, event.revision) == ("/k", rev)  # the prefix is not shown
        assert {kv.key for kv in (await bare.range("/")).items} >= {"/one/k", "/two/k"}
        await watch.close()
        for store in (one, two):
            await store.delete("/k")


async def test_open_store_by_url(etcd_server: EtcdServer) -> None:
    store = await open_store(f"etcd://{etcd_server.host}:{etcd_server.client_port}/urltest", compact_interval=None)
    async with store:
        assert isinstance(store, EtcdStore)
        await store.create("/x", b"")
        assert await store.delete("/x") > 0


async def test_no_etcd_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        await EtcdStore.open("127.0.0.1", free_port(), timeout=2, compact_interval=None)


def test_a_missing_binary_is_named() -> None:
    with pytest.raises(StoreUnavailable, match="etcd-server"):
        EtcdServer("/nonexistent", binary="no-such-etcd-binary")


async def test_a_store_outlives_an_etcd_restart(etcd_server: EtcdServer) -> None:
    async with await EtcdStore.open(
        etcd_server.host, etcd_server.client_port, key_prefix="/outlive", timeout=2, compact_interval=None
    ) as store:
        rev = await store.create("/k", b"v")
        etcd_server.stop()
        with pytest.raises(StoreUnavailable):
            await store.get("/k")
        etcd_server.start()
        # gRPC reconnects by itself (with backoff): the same store works again without reopening.
        async with asyncio.timeout(15):
            while True:
                try:
                    kv = await store.get("/k")
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.1)
        assert kv is not None and kv.mod_revision == rev
        await store.delete("/k")
