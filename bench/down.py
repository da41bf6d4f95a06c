"""Bring a cluster up and take it down again, several times, through the real CLI, and print JSON: the
median, min and max seconds of `kubesim down` (and of `kubesim up`, for scale). Run as root:

    sudo .venv/bin/python bench/down.py --cycles 3

Target (hardening issue): `kubesim down` of the default cluster (topologies/two-node.yaml) in <= 3 s.

Each cycle uses a fresh state directory; after every `down` the cluster's namespaces and recorded
processes must be gone, or the benchmark fails (a fast `down` that leaves things behind is no result).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubesim.state import is_running
from netsim import namespaces

REPO = Path(__file__).resolve().parent.parent


def _kubesim(env: dict[str, str], *args: str) -> float:
    """Run `kubesim ARGS` and return its wall-clock seconds; fail loudly if it fails."""
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kubesim", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, check=False)
    elapsed = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"kubesim {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def _recorded_pids(env: dict[str, str]) -> list[int]:
    done = subprocess.run([sys.executable, "-m", "kubesim", "status", "--json"], capture_output=True, text=True,
                          env=env, cwd=REPO, check=True)
    return [p["pid"] for p in json.loads(done.stdout)["processes"]]


def _cycle(topology: str) -> tuple[float, float]:
    state_dir = tempfile.mkdtemp(prefix="kubesim-bench-down-")
    env = {**os.environ, "KUBESIM_STATE_DIR": state_dir}
    try:
        up = _kubesim(env, "up", topology)
        name = json.loads(subprocess.run([sys.executable, "-m", "kubesim", "status", "--json"], capture_output=True,
                                         text=True, env=env, cwd=REPO, check=True).stdout)["name"]
        pids = _recorded_pids(env)
        down = _kubesim(env, "down")
        alive = [pid for pid in pids if is_running(pid)]  # a zombie has exited; only init has yet to reap it
        left = [ns for ns in namespaces.list_names() if ns.startswith(f"ksim-{name}.")]
        if alive or left:
            raise SystemExit(f"`kubesim down` left processes {alive} and namespaces {left} behind")
        return up, down
    finally:
        subprocess.run([sys.executable, "-m", "kubesim", "down", "--all"], capture_output=True, env=env, cwd=REPO,
                       check=False)
        shutil.rmtree(state_dir, ignore_errors=True)


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3, help="up/down cycles (at least 3)")
    parser.add_argument("--topology", default=str(REPO / "topologies" / "two-node.yaml"))
    args = parser.parse_args()
    if args.cycles < 3:
        parser.error("--cycles must be at least 3 for a median to mean something")
    ups, downs = [], []
    for _ in range(args.cycles):
        up, down = _cycle(args.topology)
        ups.append(up)
        downs.append(down)
    print(json.dumps({"benchmark": "down", "topology": Path(args.topology).name, "cycles": args.cycles,
                      "down_seconds": _summary(downs), "up_seconds": _summary(ups),
                      "down_samples": [round(d, 3) for d in downs]}, indent=2))


if __name__ == "__main__":
    main()
