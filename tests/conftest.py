"""Test tiers and the leak guard.

Tiers: tests/unit needs no privileges; tests/kernel, tests/e2e and tests/packet need root and make
their own namespaces; tests/security holds one regression test per hardening defect, of either kind (a
test there that needs root says so with the `root` marker). Outside CI a kernel/e2e test skips without
root; in CI (CI=true) nothing may skip silently, so a missing privilege or tool fails instead. Any test
that needs something the machine may lack (a tool such as kubectl, tshark or etcd, a Python module,
root) asks through require_tool / require_module / require_root, or unavailable(reason), here: never
through pytest.skip, skipif or importorskip directly.

The leak guard snapshots the root namespace before a session that runs privileged tests (namespaces,
links, nftables ruleset, iptables-save for both iptables flavours, the mounts pinning pods' UTS and mount
namespaces) and fails the run if any of it differs afterwards.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
from hypothesis import settings

# Property tests judge behaviour, never speed: hypothesis' per-example deadline is a wall-clock
# threshold, which a shared 2-core machine under a full suite's load trips at random.
settings.register_profile("kubesim", deadline=None, print_blob=True)
settings.load_profile("kubesim")

REPO = Path(__file__).resolve().parents[1]
KubesimCli = Callable[..., subprocess.CompletedProcess[str]]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
IS_ROOT = os.geteuid() == 0
PRIVILEGED_DIRS = ("kernel", "e2e", "packet")


def _privileged(item: pytest.Item) -> bool:
    parts = Path(str(item.fspath)).parts
    return any(d in parts for d in PRIVILEGED_DIRS) or item.get_closest_marker("root") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _privileged(item):
            item.add_marker(pytest.mark.kernel)


def unavailable(reason: str) -> NoReturn:
    """A test that cannot run on this machine: it skips on a laptop and fails in CI (CI=true), where
    nothing may skip silently. Every skip of the suite goes through here."""
    if IN_CI:
        pytest.fail(f"{reason}: in CI this test must run, not skip", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, *, install: str = "") -> str:
    """The path of program NAME (on PATH); without it, unavailable(), saying how to INSTALL it."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"needs {name}" + (f" ({install})" if install else ""))
    return path


def require_module(name: str, *, install: str = "") -> ModuleType:
    """Python module NAME, imported; without it, unavailable()."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"needs the Python module {name} ({install or exc})")


def require_root() -> None:
    if not IS_ROOT:
        unavailable("needs root")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _privileged(item):
        return
    require_root()
    for tool in ("ip", "nft", "iptables-restore", "conntrack"):
        require_tool(tool, install="scripts/setup.sh installs it")


def _run(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return done.stdout


def root_snapshot() -> dict[str, str]:
    """What kubesim must leave as it found it in the root namespace."""
    links = _run(["ip", "-o", "link", "show"])
    return {
        "ip netns list": _run(["ip", "netns", "list"]),
        # Only names and flags: counters and the like change by themselves.
        "ip link": "\n".join(sorted(line.split(":")[1].strip() for line in links.splitlines() if ":" in line)),
        "nft list ruleset": _run(["nft", "list", "ruleset"]),
        "iptables-save": _strip_comments(_run(["iptables-save"])),
        "iptables-legacy-save": _strip_comments(_run(["iptables-legacy-save"])),
        "mounts of pod namespaces": _pod_pin_mounts(),
    }


def _pod_pin_mounts() -> str:
    """The mounts under the directory pinning pods' UTS and mount namespaces (and its own)."""
    from netsim.namespaces import PIN_DIR

    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return "\n".join(sorted(p for p in points if p == PIN_DIR or p.startswith(PIN_DIR + "/")))


def _strip_comments(text: str) -> str:
    # iptables-save prints timestamps and packet counters in comments and chain headers.
    return "\n".join(
        line.split(" [")[0] for line in text.splitlines() if not line.startswith("#")
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    # Only a session that runs privileged tests is watched: the unit tier may run beside the privileged
    # tiers (scripts/test.sh), and would otherwise take their clusters for its own leaks.
    if IS_ROOT and any(_privileged(item) for item in session.items):
        session.config.stash[_SNAPSHOT] = root_snapshot()


_SNAPSHOT = pytest.StashKey[dict[str, str]]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_SNAPSHOT, None)
    if before is None:
        return
    after = root_snapshot()
    changed = [key for key in before if before[key] != after[key]]
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for key in changed:
            message = f"LEAK: the root namespace's `{key}` changed during the test run:\n" \
                      f"--- before\n{before[key]}\n--- after\n{after[key]}\n"
            if reporter:
                reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def throwaway_netns() -> Iterator[Callable[[], str]]:
    """Makes network namespaces named ksim-test-<random>.<n> and removes them after the test."""
    made: list[str] = []
    run_id = uuid.uuid4().hex[:8]

    def make() -> str:
        name = f"ksim-test-{run_id}.{len(made)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    yield make
    for name in reversed(made):
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def kubesim(tmp_path: Path) -> Iterator[KubesimCli]:
    """Runs the real `kubesim` CLI with a state root of the test's own; removes every cluster it made."""
    env = {**os.environ, "KUBESIM_STATE_DIR": str(tmp_path / "state")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "kubesim", *args], capture_output=True, text=True, env=env,
                              check=False, cwd=REPO)
        if check and done.returncode != 0:
            raise AssertionError(f"kubesim {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    yield run
    run("down", "--all", check=False)
