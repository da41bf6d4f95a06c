"""`python -m control.scheduler` as the lead starts it: kubeconfig in, decisions logged, SIGTERM out."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import pytest
import yaml
from scheduler_testlib import node, pod, wait_for

from control.client import NODES, PODS, Informer
from control.scheduler.__main__ import _seconds
from tests.harness import local_apiserver

REPO = Path(__file__).resolve().parents[3]


def test_process_schedules_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            kubeconfig = tmp_path / "scheduler.kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "scheduler",
                "clusters": [{"name": "local", "cluster": {"server": api.url}}],
                "users": [{"name": "scheduler", "user": {"token": "token-scheduler"}}],
                "contexts": [{"name": "scheduler", "context": {"cluster": "local", "user": "scheduler"}}],
            }))
            admin = api.client("admin")
            await admin.create(NODES, node("worker-1"))
            await admin.create(PODS, pod("p", cpu="100m"))
            await admin.create(PODS, pod("q", scheduler="someone-else"))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "control.scheduler", "--kubeconfig", str(kubeconfig),
                "--scheduler-name", "default-scheduler", "--profile", "default", "--v", "2",
                cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                pods = Informer(admin, PODS)
                async with pods:
                    await pods.wait_synced(5)
                    await wait_for(lambda: (pods.store.get("p", "default") or {}).get("spec", {}).get("nodeName"),
                                   timeout=15, what="p bound by the scheduler process")
                    assert not (pods.store.get("q", "default") or {}).get("spec", {}).get("nodeName")
                proc.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(proc.communicate(), 15)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            log = stderr.decode()
            assert proc.returncode == 0, log
            assert 'Successfully bound pod to node pod="default/p" node="worker-1"' in log
            assert "someone-else" not in log and "default/q" not in log
            assert "stopped (1 scheduled" in log
    asyncio.run(main())


def test_bad_arguments_are_refused() -> None:
    async def main() -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "control.scheduler", "--kubeconfig", "x", "--profile", "nope", cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        return proc.returncode or 0, err
    code, err = asyncio.run(main())
    assert code == 2 and b"invalid choice: 'nope'" in err


def test_bind_timeout_flag_is_checked() -> None:
    assert _seconds("2.5") == 2.5
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a positive number of seconds"):
            _seconds(bad)
