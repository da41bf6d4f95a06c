"""Runs an etcd server process of our own: a data dir, loopback ports, stopped by its pid; with
`tls`, over TLS with client certificate authentication for clients and peers, as kubeadm runs etcd.

Debian's etcd-server package also starts a system etcd on 127.0.0.1:2379; kubesim never uses or
touches that one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from control.store._errors import StoreUnavailable
from control.store._etcd import EtcdTLS


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EtcdServer:
    """One single-member etcd. start() returns when it serves; stop() ends it by pid.

    Ports default to free loopback ports chosen at construction and kept across restarts, so a
    restarted server is found where the old one was.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        client_port: int | None = None,
        peer_port: int | None = None,
        binary: str = "etcd",
        name: str = "kubesim",
        log_path: str | Path | None = None,
        tls: EtcdTLS | None = None,
        client_tls: EtcdTLS | None = None,
    ) -> None:
        """TLS: the server's certificate and key and the CA its clients' (and peers') certificates must
        come from; CLIENT_TLS: the client certificate its own health check presents (needed with TLS)."""
        if (tls is None) != (client_tls is None):
            raise ValueError("etcd: tls (the server's certificate) and client_tls (a client's, for the health "
                             "check) go together")
        found = shutil.which(binary)
        if found is None:
            raise StoreUnavailable(f"no {binary!r} on PATH: install Debian's etcd-server (scripts/setup.sh)")
        self.binary = found
        self.data_dir = Path(data_dir)
        self.host = host
        self.client_port = client_port or free_port(host)
        self.peer_port = peer_port or free_port(host)
        self.name = name
        self.log_path = Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".log")
        self.tls = tls
        self.client_tls = client_tls
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def store_url(self) -> str:
        """The URL open_store takes for this server."""
        return f"{'etcds' if self.tls else 'etcd'}://{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        peer = f"{self.scheme}://{self.host}:{self.peer_port}"
        return [
            self.binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
            *self._tls_flags(),
        ]

    def _tls_flags(self) -> list[str]:
        """kubeadm's etcd flags (cmd/kubeadm/app/phases/etcd/local.go): clients and peers both need a
        certificate from the CA."""
        if self.tls is None:
            return []
        return [
            f"--cert-file={self.tls.cert_file}", f"--key-file={self.tls.key_file}",
            "--client-cert-auth=true", f"--trusted-ca-file={self.tls.ca_file}",
            f"--peer-cert-file={self.tls.cert_file}", f"--peer-key-file={self.tls.key_file}",
            "--peer-client-cert-auth=true", f"--peer-trusted-ca-file={self.tls.ca_file}",
        ]

    def start(self, timeout: float = 20.0) -> None:
        if self._process is not None:
            raise RuntimeError(f"etcd {self.url} is already running as pid {self._process.pid}")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        # The unset ETCD_* variables keep a stray environment from reconfiguring our member.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        self._process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._reap()
                raise StoreUnavailable(f"etcd exited at start-up; its log is {self.log_path}")
            if self._healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise StoreUnavailable(f"etcd did not become healthy in {timeout:.0f} s; its log is {self.log_path}")

    def _healthy(self) -> bool:
        return etcd_healthy(self.url, self.client_tls)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by pid, then SIGKILL if it lingers. Idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL by pid: a crash, for durability tests."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _reap(self) -> None:
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def etcd_healthy(url: str, tls: EtcdTLS | None = None) -> bool:
    """Whether the etcd at URL answers its /health with health "true" (over TLS with TLS's client
    certificate, for an https URL)."""
    context = None
    if tls is not None:
        context = ssl.create_default_context(cafile=tls.ca_file)
        context.load_cert_chain(tls.cert_file, tls.key_file)
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1, context=context) as response:
            return b'"true"' in response.read()
    except (urllib.error.URLError, OSError):
        return False
