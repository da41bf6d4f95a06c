"""A trace interrupted at the worst moment still removes what it made.

Ctrl-C is simulated by raising SIGINT at this process from inside the step that makes something, just
after the thing exists: exactly where a real signal lands when it arrives while the kernel works (Python
runs the handler at its next check, before the maker returns). Without privileges: a fake kernel and a
harmless child process stand in for the namespace and for `nft monitor trace`.
"""

from __future__ import annotations

import signal
import subprocess
import types
from collections.abc import Iterator
from typing import Any

import pytest

import netsim.trace
from netsim import names
from netsim.fake import FakeKernel
from netsim.trace import Origin, TraceRequest, _Run, make_probes

CLUSTER = "itrace"


def _request() -> TraceRequest:
    return TraceRequest(cluster=CLUSTER, node="worker-1", src="203.0.113.20", dst="198.51.100.77", dport=80,
                        origin=Origin.fabric_probe(32, gateway="172.18.0.3"))


class _InterruptedWhileCreating(FakeKernel):
    """Ctrl-C arrives the moment the namespace exists, before ns_create has returned."""

    def ns_create(self, ns: str) -> None:
        super().ns_create(ns)
        signal.raise_signal(signal.SIGINT)


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Ctrl-C as a plain Python process has it (KeyboardInterrupt), whatever pytest installed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_probe_namespace_made_as_ctrl_c_lands_is_removed(monkeypatch: pytest.MonkeyPatch,
                                                         default_sigint: None) -> None:
    kernel = _InterruptedWhileCreating()
    FakeKernel.ns_create(kernel, names.fabric_ns(CLUSTER))  # the fabric is up (without the Ctrl-C)
    run = _Run(_request(), kernel)
    with pytest.raises(KeyboardInterrupt):
        run.make_probe_namespace()
    run.close()
    prefix = names.probe_ns(CLUSTER, "")
    assert [ns for ns in kernel.ns_list() if ns.startswith(prefix)] == []


def test_monitor_started_as_ctrl_c_lands_is_stopped(monkeypatch: pytest.MonkeyPatch, default_sigint: None) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def popen_then_interrupted(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
        # A stand-in for `nft monitor trace`: runs until it is told to stop.
        process = subprocess.Popen(["sleep", "600"], **options)
        started.append(process)
        signal.raise_signal(signal.SIGINT)
        return process

    fake_subprocess = types.SimpleNamespace(Popen=popen_then_interrupted, PIPE=subprocess.PIPE,
                                            DEVNULL=subprocess.DEVNULL, TimeoutExpired=subprocess.TimeoutExpired)
    monkeypatch.setattr(netsim.trace, "subprocess", fake_subprocess)
    run = _Run(_request(), FakeKernel())
    try:
        with pytest.raises(KeyboardInterrupt):
            run.start_tracing(make_probes(3), [])
        run.close()
        assert len(started) == 1
        assert started[0].poll() is not None, "the monitor outlived its trace"
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
