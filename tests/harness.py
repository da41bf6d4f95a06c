"""A real apiserver in the test's own event loop, for testing components that speak to one.

    async with local_apiserver(tmp_path) as api:
        client = api.client("admin")            # a control.client.Client with that identity's token
        ...

It is the real thing (Registry over a SQLite store, the HTTP layer, bootstrap objects, tokens and
roles) on plain HTTP over loopback; TLS is covered by the end-to-end tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp.test_utils import TestServer

from control.apiserver.admission import KubernetesAdmission
from control.apiserver.aggregation import Aggregator
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator, User
from control.apiserver.bootstrap import bootstrap
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.schema import unknown_fields
from control.apiserver.server import APIServer
from control.client import Client
from control.store import SQLiteStore

IDENTITIES = {
    "admin": User("kubernetes-admin", ("system:masters",)),
    "scheduler": User("system:kube-scheduler"),
    "controller-manager": User("system:kube-controller-manager"),
    "kube-proxy": User("system:kube-proxy"),
    "coredns": User("system:serviceaccount:kube-system:coredns",
                    ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated")),
    "netpol": User("system:serviceaccount:kube-system:kube-network-policies",
                   ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated")),
    "kubelet-worker-1": User("system:node:worker-1", ("system:nodes",)),
    "kubelet-worker-2": User("system:node:worker-2", ("system:nodes",)),
}


@dataclass
class LocalAPIServer:
    url: str
    registry: Registry
    clients: list[Client] = field(default_factory=list)

    def client(self, who: str = "admin") -> Client:
        """A client with WHO's token (the token is the identity's key in IDENTITIES)."""
        client = Client(self.url, token=f"token-{who}")
        self.clients.append(client)
        return client


@asynccontextmanager
async def local_apiserver(tmp_path: Path, *, service_cidr: str = "10.96.0.0/16",
                          bookmark_interval: float = 15.0) -> AsyncIterator[LocalAPIServer]:
    store = await SQLiteStore.open(str(tmp_path / "apiserver.db"), compact_interval=None)
    registry = Registry(store, admission=KubernetesAdmission(), patcher=apply_patch,
                        allocator=ServiceAllocator(service_cidr, (30000, 32767)))
    await registry.start()
    await bootstrap(registry, service_cidr=service_cidr, advertise_address="127.0.0.1", port=6443)
    aggregator = Aggregator(registry)
    aggregator.start()
    tokens = TokenAuthenticator({f"token-{who}": user for who, user in IDENTITIES.items()})
    server = APIServer(registry, tokens, bookmark_interval=bookmark_interval, unknown_fields=unknown_fields)
    server.ready = True
    test_server = TestServer(server.app(), host="127.0.0.1")
    await test_server.start_server()
    api = LocalAPIServer(str(test_server.make_url("")).rstrip("/"), registry)
    try:
        yield api
    finally:
        for client in api.clients:
            await client.close()
        await test_server.close()
        await aggregator.stop()
        await registry.stop()
        await store.close()
