"""RBAC's cost per request: microseconds to authorize one request against the default policy plus N
namespaces each with a Role and a RoleBinding for its own user; prints JSON.

    .venv/bin/python bench/rbac_authorize.py [--namespaces 1,100,1000] [--requests 20000] [--runs 3]

The index is control/apiserver/rbac.py's RBACIndex over in-memory caches holding the objects as the
watch caches would (the apiserver decides every request this way, no store read). Asked per request: an
allowed namespaced list (its user's own binding), a denied one (another namespace), and a controller-manager
request (cluster bindings only). Reported: the median over runs of the mean per request, and the one-off
re-index after a change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from control.apiserver.auth import User, with_authenticated_group
from control.apiserver.rbac import RBACIndex, Request, RuleResolver
from control.apiserver.rbac_policy import cluster_bindings, cluster_roles


class _Cache:
    def __init__(self, objects: list[dict[str, Any]]):
        self.objects = {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o for o in objects}
        self.listeners: list[Any] = []


def _namespaced(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    roles, bindings = [], []
    for i in range(n):
        ns = f"ns-{i}"
        roles.append({"metadata": {"name": "reader", "namespace": ns},
                      "rules": [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]}]})
        bindings.append({"metadata": {"name": "reader", "namespace": ns},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
                         "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": f"user-{i}"}]})
    return roles, bindings


def measure(namespaces: int, requests: int) -> dict[str, float]:
    roles, bindings = _namespaced(namespaces)
    caches = {"clusterroles": _Cache(cluster_roles()), "clusterrolebindings": _Cache(cluster_bindings()),
              "roles": _Cache(roles), "rolebindings": _Cache(bindings)}
    index = RBACIndex(caches)  # type: ignore[arg-type]
    started = time.perf_counter()
    index.refresh()
    reindex = time.perf_counter() - started
    resolver = RuleResolver(index)
    user = with_authenticated_group(User("user-0"))
    manager = with_authenticated_group(User("system:kube-controller-manager"))
    asks = [(user, Request("list", "", "pods", namespace="ns-0"), True),
            (user, Request("list", "", "pods", namespace="default"), False),
            (manager, Request("update", "apps", "replicasets", "status", "web", "default"), True)]
    out: dict[str, float] = {"reindex_ms": reindex * 1000}
    for label, (who, req, expected) in zip(("allowed_us", "denied_us", "controller_manager_us"), asks, strict=True):
        assert resolver.allows(who, req)[0] is expected
        started = time.perf_counter()
        for _ in range(requests):
            resolver.allows(who, req)
        out[label] = (time.perf_counter() - started) / requests * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", default="1,100,1000")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for n in (int(x) for x in args.namespaces.split(",")):
        runs = [measure(n, args.requests) for _ in range(args.runs)]
        results[str(n)] = {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
    print(json.dumps({"benchmark": "rbac_authorize", "runs": args.runs, "requests": args.requests,
                      "namespaces": results}, indent=2))


if __name__ == "__main__":
    main()
