"""Fixtures for the store suite: a runner for async tests, a real etcd, and one `backend` fixture
parametrized over SQLite and etcd so that every contract test runs on both.

The etcd tests need only the `etcd` binary (Debian's etcd-server), no root: without it they skip,
except in CI (CI=true), where they fail, as the tier rules in tests/conftest.py ask.
"""

from __future__ import annotations

import asyncio
import inspect
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from control.store import EtcdServer, EtcdStore, SQLiteStore, Store
from tests.conftest import require_tool

#: Every test gets this long before it fails: a hung watch must not hang the suite.
TEST_TIMEOUT = 30.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs `async def` tests in a fresh event loop (no plugin needed for this one suite)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT))
    return True


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary directory removed after the test (pytest's tmp_path keeps old runs around)."""
    with tempfile.TemporaryDirectory(prefix="kubesim-store-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    require_tool("etcd", install="apt-get install etcd-server")
    with tempfile.TemporaryDirectory(prefix="kubesim-etcd-") as path:
        server = EtcdServer(Path(path) / "data")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@dataclass
class Backend:
    """Opens stores of one kind on the same data, and restarts what holds it."""

    name: str
    path: Path | None = None
    server: EtcdServer | None = None
    key_prefix: str = ""
    opened: list[Store] = field(default_factory=list)

    async def open(self, **options: Any) -> Store:
        options.setdefault("compact_interval", None)
        store: Store
        if self.server is not None:
            store = await EtcdStore.open(
                self.server.host, self.server.client_port, key_prefix=self.key_prefix, **options
            )
        else:
            assert self.path is not None
            store = await SQLiteStore.open(self.path, **options)
        self.opened.append(store)
        return store

    def restart(self, *, crash: bool = False) -> None:
        """Restarts the server process (etcd); SQLite has none: reopening the file is its restart."""
        if self.server is not None:
            if crash:
                self.server.kill()
                self.server.start()
            else:
                self.server.restart()


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request: pytest.FixtureRequest, scratch: Path) -> Backend:
    if request.param == "etcd":
        server: EtcdServer = request.getfixturevalue("etcd_server")
        # Keys of each test live under their own prefix; revisions are shared by the whole etcd.
        return Backend("etcd", server=server, key_prefix=f"/test-{uuid.uuid4().hex[:12]}")
    return Backend("sqlite", path=scratch / "store.db")
