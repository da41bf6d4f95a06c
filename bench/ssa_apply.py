"""What managedFields cost a write: server-side apply and Update bookkeeping on a Deployment; prints JSON.

    .venv/bin/python bench/ssa_apply.py [--ops 500] [--runs 3]

Pure functions, one process: per operation, the median over --runs runs of the mean time of --ops operations,
for a Deployment with 3 containers (5 env vars and 2 ports each):
  - update: record_update of an update that changes one container's image (every create/update/patch pays it);
  - apply_noop: kubectl re-applying its unchanged configuration;
  - apply_change: kubectl applying a changed image;
  - apply_conflict: a second manager's apply that conflicts (the 409 path).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from control.apiserver.apply import Scope, apply, record_update
from control.apiserver.errors import APIError

SCOPE = Scope("Deployment", "apps/v1", True)


def config(image: str = "nginx:1.25") -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image,
                   "env": [{"name": f"E{j}", "value": str(j)} for j in range(5)],
                   "ports": [{"containerPort": 8000 + i * 10 + j} for j in range(2)]} for i in range(3)]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}}


def timed(op: Callable[[], object], ops: int, runs: int) -> float:
    means = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(ops):
            op()
        means.append((time.perf_counter() - start) / ops)
    return round(statistics.median(means) * 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    live = apply(None, config(), manager="kubectl", force=False, scope=SCOPE)
    changed = copy.deepcopy(live)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"

    def update() -> None:
        record_update(copy.deepcopy(changed), live, "editor", SCOPE)

    def conflict() -> None:
        try:
            apply(live, config("other"), manager="other", force=False, scope=SCOPE)
        except APIError:
            return
        raise AssertionError("expected a conflict")

    copies = timed(lambda: copy.deepcopy(changed), args.ops, args.runs)
    print(json.dumps({
        "object_bytes": len(json.dumps(live)),
        "managed_fields_bytes": len(json.dumps(live["metadata"]["managedFields"])),
        "deepcopy_us": copies,
        "update_us": timed(update, args.ops, args.runs),
        "apply_noop_us": timed(lambda: apply(live, config(), manager="kubectl", force=False, scope=SCOPE),
                               args.ops, args.runs),
        "apply_change_us": timed(lambda: apply(live, config("nginx:1.27"), manager="kubectl", force=False,
                                               scope=SCOPE), args.ops, args.runs),
        "apply_conflict_us": timed(conflict, args.ops, args.runs),
        "ops": args.ops, "runs": args.runs}, indent=1))


if __name__ == "__main__":
    main()
