"""A real `python -m control.apiserver` for the security tier: HTTPS on a free loopback port, a SQLite store, a
CA and serving certificate from control.apiserver.certs, a token file. No root needed.

    with running_apiserver(tmp_path) as api:
        status, headers, body = asyncio.run(api.call("GET", "/api/v1/namespaces"))
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

from control.apiserver.admission import BasicAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator, User, write_token_file
from control.apiserver.bootstrap import bootstrap
from control.apiserver.certs import make_certificates
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.schema import unknown_fields
from control.apiserver.server import HEADER_READ_TIMEOUT, APIServer
from control.store import SQLiteStore
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "security-admin-token"
CLIENT_TIMEOUT = 30.0
"""Every request the tier sends has this client timeout; none may hit it (a hang is a failure)."""


@dataclass
class RunningAPIServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def store_path(self) -> Path:
        return self.root / "store.db"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root / "ca.crt"))

    def log(self) -> str:
        return (self.root / "apiserver.log").read_text(errors="replace")

    def session(self, limit: int = 100) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.ssl_context(), limit=limit)
        return aiohttp.ClientSession(self.url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
                                     headers={"Authorization": f"Bearer {TOKEN}"})

    async def call(self, method: str, path: str, *, body: Any = None, data: bytes | None = None,
                   content_type: str = "application/json", params: dict[str, str] | None = None,
                   session: aiohttp.ClientSession | None = None
                   ) -> tuple[int, CIMultiDictProxy[str], Any]:
        """One request; the answer's status, headers and body (JSON decoded when it is JSON)."""
        payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": content_type} if payload is not None else {}
        own = session is None
        client = session or self.session()
        try:
            sent = io.BytesIO(payload) if payload is not None else None  # aiohttp warns on large raw bytes
            async with client.request(method, path, data=sent, headers=headers, params=params) as resp:
                raw = await resp.read()
                decoded: Any = raw
                if resp.content_type == "application/json" and raw:
                    decoded = json.loads(raw)
                return resp.status, resp.headers, decoded
        finally:
            if own:
                await client.close()

    def alive(self) -> bool:
        return self.process.poll() is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(api: RunningAPIServer) -> None:
    def ready() -> bool:
        if not api.alive():
            raise AssertionError(f"the apiserver exited ({api.process.returncode}):\n{api.log()}")
        try:
            with urllib.request.urlopen(f"{api.url}/readyz", context=api.ssl_context(), timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(ready, timeout=60, interval=0.1, message="the apiserver ready", describe=api.log)


@contextmanager
def running_apiserver(root: Path) -> Iterator[RunningAPIServer]:
    """Start the apiserver in root (certificates, tokens, store, log there); stop it by its pid afterwards."""
    root.mkdir(parents=True, exist_ok=True)
    make_certificates(root, addresses=["127.0.0.1"])
    write_token_file(root / "tokens.csv", [(TOKEN, "kubernetes-admin", ("system:masters",))])
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with (root / "apiserver.log").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "control.apiserver", "--store", f"sqlite:///{root}/store.db",
             "--bind-address", "127.0.0.1", "--secure-port", str(port), "--advertise-address", "127.0.0.1",
             "--tls-cert-file", str(root / "apiserver.crt"), "--tls-private-key-file", str(root / "apiserver.key"),
             "--token-auth-file", str(root / "tokens.csv")], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    api = RunningAPIServer(root, port, process)
    try:
        _wait_ready(api)
        yield api
    finally:
        if api.alive():
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@asynccontextmanager
async def apiserver_in_process(root: Path, *, header_read_timeout: float = HEADER_READ_TIMEOUT
                               ) -> AsyncIterator[int]:
    """The same APIServer on plain HTTP inside this process, for tests that must reach into it (patch a decoder,
    shorten a timeout); yields its loopback port. The admin token is TOKEN, as for the real process."""
    store = await SQLiteStore.open(str(root / "store.db"), compact_interval=None)
    registry = Registry(store, admission=BasicAdmission(), patcher=apply_patch,
                        allocator=ServiceAllocator("10.96.0.0/16", (30000, 32767)))
    await registry.start()
    server = APIServer(registry, TokenAuthenticator({TOKEN: User("kubernetes-admin", ("system:masters",))}),
                       unknown_fields=unknown_fields)
    server.ready = True
    runner = server.runner(header_read_timeout=header_read_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port: int = runner.addresses[0][1]
        await bootstrap(registry, service_cidr="10.96.0.0/16", advertise_address="127.0.0.1", port=port)
        yield port
    finally:
        await runner.cleanup()
        await registry.stop()
        await store.close()


def namespaced_pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}
