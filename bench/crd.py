"""Custom resources against built-in ones through the real HTTP layer; prints JSON.

    PYTHONPATH=. .venv/bin/python bench/crd.py [--ops 300] [--runs 3]

An in-process apiserver (the registry over SQLite, the HTTP layer, authn/authz: tests/harness.py) on
loopback. Each run: a CRD (upstream's CronTab, grown with a schema to validate, prune and default) is
created and timed until it is Established and served; then --ops creates, gets and merge patches of
CronTabs and of ConfigMaps, sequentially, and a list of them all. The result is the median over --runs
runs of each run's p50 / p99 (milliseconds): what schema validation, pruning, defaulting and the
storage-version rewrite cost a custom resource over a built-in one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

# Run as `python bench/crd.py`, this file's directory is sys.path[0]: the repository (tests/ helpers) instead.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.benchstats import median_of, summary_ms
from tests.crd_examples import GROUP, NAME, crontab, crontab_crd
from tests.harness import local_apiserver

HEADERS = {"Authorization": "Bearer token-admin"}
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


async def _timed(session: aiohttp.ClientSession, method: str, url: str, body: Any, content_type: str,
                 expected: int) -> float:
    started = time.perf_counter()
    async with session.request(method, url, data=json.dumps(body), headers={
            **HEADERS, "Content-Type": content_type}) as response:
        await response.read()
        if response.status != expected:
            raise RuntimeError(f"{method} {url}: {response.status}")
    return time.perf_counter() - started


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"image": "x"}}


async def one_run(ops: int) -> dict[str, float]:
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with local_apiserver(Path(tmp)) as api, aiohttp.ClientSession() as session:
            started = time.perf_counter()
            await _timed(session, "POST", api.url + CRDS, crontab_crd(), "application/json", 201)
            while True:
                async with session.get(f"{api.url}/apis/{GROUP}/v1/crontabs", headers=HEADERS) as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.001)
            result["crd_established_ms"] = round((time.perf_counter() - started) * 1000, 2)
            kinds = {"crontab": (f"{api.url}/apis/{GROUP}/v1/namespaces/default/crontabs",
                                 lambda i: crontab(f"c{i}", unknownField=i)),
                     "configmap": (f"{api.url}/api/v1/namespaces/default/configmaps", lambda i: _configmap(f"c{i}"))}
            for kind, (path, make) in kinds.items():
                creates = [await _timed(session, "POST", path, make(i), "application/json", 201) for i in range(ops)]
                gets = [await _timed(session, "GET", f"{path}/c{i}", None, "application/json", 200)
                        for i in range(ops)]
                patches = [await _timed(session, "PATCH", f"{path}/c{i}", {"metadata": {"labels": {"n": str(i)}}},
                                        "application/merge-patch+json", 200) for i in range(ops)]
                listed = await _timed(session, "GET", path, None, "application/json", 200)
                for verb, samples in (("create", creates), ("get", gets), ("patch", patches)):
                    summary = summary_ms(samples)
                    result[f"{kind}_{verb}_p50_ms"] = summary["p50_ms"]
                    result[f"{kind}_{verb}_p99_ms"] = summary["p99_ms"]
                result[f"{kind}_list_{ops}_ms"] = round(listed * 1000, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.ops)) for _ in range(args.runs)]
    print(json.dumps({"benchmark": "crd", "crd": NAME, "ops": args.ops, "runs": args.runs,
                      "median": median_of(runs)}, indent=2))


if __name__ == "__main__":
    main()
