"""5,000 malformed and hostile requests: the apiserver answers every one with a Kubernetes Status (never
a 5xx), and the store stays consistent (every object decodes, lists agree with the store)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from control.apiserver.registry import Registry
from control.apiserver.schema import unknown_fields
from tests.mutation import mutate
from tests.unit.apiserver.test_api_server import ADMIN, NODE1, run

REQUESTS = 5000
PLURALS = ["pods", "services", "configmaps", "endpoints", "events", "serviceaccounts", "replicationcontrollers"]
GROUPED = ["apis/apps/v1/namespaces/default/deployments", "apis/apps/v1/namespaces/default/replicasets",
           "apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
           "apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"]
NASTY_STRINGS = ["", "a" * 300, "..", "../../etc/passwd", "%2e%2e", "UPPER", "ünïcødé", "a/b", "-x-", "x" * 64,
                 "null", "0", " ", "\t", "a;b", "$(id)", "<script>", "\u0000"]
NASTY_VALUES: list[Any] = [None, True, -1, 0, 70000, 2**63, -(2**63) - 1, 1e308, "", "x" * 5000, [], {}, [[[]]],
                           {"a": {"b": {"c": {}}}}, "1.5.5", "-100m", "NaN"]


def _valid(kind: str, name: str) -> dict[str, Any]:
    base: dict[str, Any] = {"metadata": {"name": name, "labels": {"app": "x"}}}
    if kind == "pods":
        base["spec"] = {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}
    elif kind == "services":
        base["spec"] = {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "x"}}
    elif kind == "configmaps":
        base["data"] = {"k": "v"}
    return base


def _mutate(obj: Any, rng: random.Random) -> Any:
    return mutate(obj, rng, strings=NASTY_STRINGS, values=NASTY_VALUES)


def _request(rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None, dict[str, str]]:
    plural = rng.choice(PLURALS)
    namespace = "default" if rng.random() < 0.7 else rng.choice(["ghost", *NASTY_STRINGS[:4]])
    collection = f"/api/v1/namespaces/{namespace}/{plural}"
    if rng.random() < 0.2:
        collection = "/" + rng.choice(GROUPED)
    name = f"obj-{rng.randrange(40)}" if rng.random() < 0.6 else rng.choice(NASTY_STRINGS)
    if rng.random() < 0.7:
        path = rng.choice([collection, f"{collection}/{name}"])
    else:
        path = rng.choice([f"{collection}/{name}/status", f"{collection}/{name}/scale", f"{collection}/{name}/binding",
                           f"/api/v1/{plural}", f"/api/v1/{rng.choice(NASTY_STRINGS)}",
                           "/apis/" + rng.choice(NASTY_STRINGS), f"{collection}/{name}/x/y/z"])
    method = rng.choice(["GET", "POST", "POST", "PUT", "PATCH", "PATCH", "DELETE", "OPTIONS", "HEAD"])
    params: dict[str, str] = {}
    for key, values in (("labelSelector", ["app=x", "a in (", "!!", "a=b,c notin (d)", "x" * 400, "=,="]),
                        ("fieldSelector", ["metadata.name=x", "spec.bogus=1", "a", "metadata.name!=y,,"]),
                        ("limit", ["1", "-1", "abc", "999999999999999999999", "0"]),
                        ("continue", ["garbage", "eyJydiI6IDF9", ""]),
                        ("resourceVersion", ["0", "-5", "abc", "99999999", "1"]),
                        ("fieldValidation", ["Strict", "Warn", "Bogus"]),
                        ("gracePeriodSeconds", ["0", "-1", "x"]),
                        ("propagationPolicy", ["Orphan", "Sideways"]),
                        ("dryRun", ["All", "Nope"])):
        if rng.random() < 0.15:
            params[key] = rng.choice(values)
    if method == "GET" and rng.random() < 0.1:
        params["watch"] = "1"
        # "0" asks for the default timeout (30 to 60 minutes), so the fuzz uses short ones.
        params["timeoutSeconds"] = rng.choice(["0.01", "0.05", "x", "-1", "nan", "inf"])
    body: bytes | None = None
    headers = {**(ADMIN if rng.random() < 0.8 else rng.choice([NODE1, {}, {"Authorization": "Bearer nope"}]))}
    if method in ("POST", "PUT", "PATCH"):
        choice = rng.random()
        if choice < 0.15:
            body = rng.choice([b"{", b"[]", b"null", b"\xff\xfe", b'{"a":' * 200, b"1e999", b'"str"', b""])
        else:
            valid = _valid(plural, f"obj-{rng.randrange(40)}")
            body = json.dumps(valid if choice < 0.4 else _mutate(valid, rng)).encode()
        fitting = ["application/merge-patch+json", "application/strategic-merge-patch+json"] if method == "PATCH" \
            else ["application/json", "application/yaml"]
        headers["Content-Type"] = rng.choice(fitting) if rng.random() < 0.8 else rng.choice(
            ["application/json-patch+json", "text/html", "x/y", "application/json"])
    return method, path, params, body, headers


def test_hostile_requests_never_get_a_5xx(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        rng = random.Random(20261125)
        # Some real objects for the requests to hit.
        for i in range(20):
            await client.post("/api/v1/namespaces/default/configmaps", headers=ADMIN, json=_valid("configmaps",
                                                                                                  f"obj-{i}"))
            await client.post("/api/v1/namespaces/default/services", headers=ADMIN, json=_valid("services",
                                                                                                f"obj-{i}"))
        statuses: dict[int, int] = {}
        for n in range(REQUESTS):
            method, path, params, body, headers = _request(rng)
            async with client.request(method, path, params=params, data=body, headers=headers) as resp:
                raw = await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                assert resp.status < 500, f"request {n}: {method} {path} {params} -> {resp.status} {raw[:300]!r}"
                if resp.status >= 400 and method != "HEAD":
                    status = json.loads(raw)
                    assert status["kind"] == "Status" and status["code"] == resp.status, raw[:300]
        # The mix reached the success paths as well as every kind of refusal.
        assert all(statuses.get(code, 0) > 10 for code in (200, 201, 400, 401, 403, 404, 405, 415, 422)), \
            str(sorted(statuses.items()))

        # The store is consistent: everything in it decodes, and lists agree with it.
        for plural, cache in registry.caches.items():
            stored = await registry.store.range(cache.prefix)
            for kv in stored.items:
                obj = json.loads(kv.value)
                assert obj["metadata"]["name"] and obj["metadata"]["uid"], kv.key
            listed = await client.get(f"/api/v1/{plural}" if cache.resource.group == "" else
                                      f"/apis/{cache.resource.group}/{cache.resource.version}/{plural}",
                                      headers=ADMIN)
            assert len((await listed.json())["items"]) == len(stored.items), plural

    run(scenario, tmp_path, unknown_fields=unknown_fields)
