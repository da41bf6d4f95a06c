"""What one ListContainerStats costs the node runtime (control/runtime/stats.py): N process containers
(each a session of its own: a shell and its child, as `sh -c 'sleep 600'` is) measured in one call;
prints JSON with the median of --runs calls (seconds) for each N. Needs no privileges.

    .venv/bin/python bench/container_stats.py [--containers 10,100,300] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

from control.runtime.stats import container_stats


def measure(count: int, runs: int) -> dict[str, float | int]:
    children = [subprocess.Popen(["sh", "-c", "sleep 600; :"], start_new_session=True) for _ in range(count)]
    try:
        ids = [(f"c{i}", p.pid) for i, p in enumerate(children)]
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            stats = container_stats(ids)
            times.append(time.perf_counter() - start)
        assert len(stats) == count
        return {"containers": count, "processes_on_machine": len([d for d in os.listdir("/proc") if d.isdigit()]),
                "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "runs": runs}
    finally:
        for p in children:
            os.killpg(p.pid, 9)
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", default="10,100,300")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"bench": "container_stats",
                      "results": [measure(int(n), max(3, args.runs)) for n in args.containers.split(",")]}, indent=1))


if __name__ == "__main__":
    main()
