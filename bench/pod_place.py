"""Make N pod places (a pod's UTS and mount namespaces beside its network namespace, as a kubelet
asks: hostname, /etc files bound in, the state directory hidden, one volume) on the real kernel and
print JSON: milliseconds and CPU milliseconds per place (this process, and its place helper with the
set-up children it forks: netsim/placemaker.py), median of --runs runs. As root, from the repository root:

    sudo .venv/bin/python -m bench.pod_place --pods 100 --runs 3

The network namespaces are made and removed outside the timed part: only LinuxKernel.ns_create_place
is measured (what the node runtime calls for each pod sandbox), the same in this process as in a runtime:
the set-up child is forked by the small helper, never by the caller.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from netsim import namespaces
from netsim.kernel import LinuxKernel, place_helper_pid
from netsim.place import PodPlace


def _cpu_seconds() -> float:
    """This process's CPU, its ended children's, and its place helper's (with the set-up children it reaped)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    helper = place_helper_pid()
    if helper is not None:
        fields = Path(f"/proc/{helper}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return total


def _place(root: Path, index: int) -> PodPlace:
    files = root / f"pod-{index}"
    volume = files / "volume"
    volume.mkdir(parents=True)
    (volume / "key").write_text("value\n")
    (files / "scratch").mkdir()
    for name in ("hosts", "hostname", "resolv.conf"):
        (files / name).write_text(f"{name} of pod {index}\n")
    return PodPlace(f"pod-{index}", files=tuple((f"/etc/{n}", str(files / n)) for n in ("hosts", "hostname",
                                                                                            "resolv.conf")),
                    hidden=(str(root),), volumes=(("/mnt/config", str(volume), True),), scratch=str(files / "scratch"))


def measure_once(pods: int) -> dict[str, float]:
    kernel = LinuxKernel()
    prefix = f"ksim-bench-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(pods)]
    with tempfile.TemporaryDirectory() as state:
        places = [_place(Path(state), i) for i in range(pods)]
        try:
            for name in names:
                namespaces.create(name)
            cpu0, t0 = _cpu_seconds(), time.monotonic()
            for name, place in zip(names, places, strict=True):
                kernel.ns_create_place(name, place)
            wall, cpu = time.monotonic() - t0, _cpu_seconds() - cpu0
        finally:
            for name in names:
                namespaces.delete(name)
            kernel.close()
    return {"ms_per_place": round(wall * 1000 / pods, 2), "cpu_ms_per_place": round(cpu * 1000 / pods, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: pod places are real namespaces")
    results = [measure_once(args.pods) for _ in range(args.runs)]
    print(json.dumps({"benchmark": "pod_place", "pods": args.pods, "runs": args.runs,
                      **{key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}},
                     indent=2))


if __name__ == "__main__":
    main()
