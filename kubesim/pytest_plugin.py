"""pytest plugin for packet-trace tests: the session-scoped `kubesim_cluster` fixture.

Installed with kubesim (entry point `pytest11`), so a user's test needs no conftest:

    def test_echo_spreads(kubesim_cluster):
        kubesim_cluster.apply("echo.yaml")
        kubesim_cluster.wait_ready("app=echo", count=3)
        trace = kubesim_cluster.trace("worker-1", "10.96.0.80:80", count=30)
        assert trace.verdict == "DNAT" and len(trace.endpoints) == 3, trace

The cluster comes up once per session, on first use, and goes down at the end of the session, also
after Ctrl-C (pytest_unconfigure takes down what the fixture's teardown did not reach). A cluster of
the same name left by a run that was killed outright is removed before the new one comes up.

Options (command line, or the ini file's [pytest] section):
    --kubesim-topology PATH    kubesim_topology    the topology file (relative to the ini file's
                                                   folder); default: kubesim's two-node topology
    --kubesim-name NAME        kubesim_name        the cluster's name (default: pytest)
    --kubesim-proxy-mode MODE  kubesim_proxy_mode  nftables or iptables (default: the topology's)

Needs root, as kubesim does: without it the fixture fails (it never skips) and says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubesim.testing import Cluster, cluster_for_tests

_active: list[Cluster] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubesim", "kubesim clusters for packet-trace tests")
    group.addoption("--kubesim-topology", help="topology file of the test cluster (default: two-node)")
    group.addoption("--kubesim-name", help="name of the test cluster (default: pytest)")
    group.addoption("--kubesim-proxy-mode", choices=("nftables", "iptables"), help="kube-proxy's mode")
    parser.addini("kubesim_topology", "topology file of the test cluster, relative to the ini file", default="")
    parser.addini("kubesim_name", "name of the test cluster", default="pytest")
    parser.addini("kubesim_proxy_mode", "kube-proxy's mode (nftables or iptables)", default="")


def _setting(config: pytest.Config, name: str) -> str:
    given = config.getoption(f"kubesim_{name}")
    return str(given) if given else str(config.getini(f"kubesim_{name}"))


@pytest.fixture(scope="session")
def kubesim_cluster(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """A whole kubesim cluster for the session (kubesim.testing.Cluster)."""
    if os.geteuid() != 0:
        pytest.fail("kubesim_cluster needs root (network namespaces, nftables): run pytest as root", pytrace=False)
    topology: Path | None = None
    if (written := _setting(pytestconfig, "topology")):
        topology = Path(written)
        if not topology.is_absolute() and pytestconfig.inipath is not None and not pytestconfig.getoption(
                "kubesim_topology"):
            topology = pytestconfig.inipath.parent / topology
    with cluster_for_tests(topology, name=_setting(pytestconfig, "name") or "pytest",
                           proxy_mode=_setting(pytestconfig, "proxy_mode") or None) as cluster:
        _active.append(cluster)
        try:
            yield cluster
        finally:
            _active.remove(cluster)


def pytest_unconfigure(config: pytest.Config) -> None:
    for cluster in list(_active):
        _active.remove(cluster)
        cluster.down()
