"""A hostile-request suite against a real `python -m control.apiserver` process (HTTPS, SQLite store): thousands of
seeded requests over every verb, subresource and content type (JSON, YAML, protobuf, merge/strategic/JSON patch),
deep nesting, huge and aliased bodies, bogus resourceVersions and timeouts, and 200 concurrent watches opened and
dropped, twice. It proves:

- no answer is a 5xx, and every refusal is a Kubernetes Status whose code is the HTTP status;
- nothing hangs: every request has a client timeout (CLIENT_TIMEOUT) and none reaches it;
- the apiserver process that started is the one alive at the end (same pid, never restarted);
- every object is still listable, a paginated list agrees with a full one, and both agree with the store;
- the resourceVersions the suite's writes returned are unique and increasing, in the order the writes were made.

Unlike tests/unit/apiserver/test_api_fuzz.py (in-process, plain HTTP), this goes through TLS, aiohttp's HTTP parser,
the body limits and the worker-thread decoding of the real process."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from control.apiserver.resources import RESOURCES, Resource
from control.store import SQLiteStore
from tests.mutation import mutate
from tests.security.apiserver_process import CLIENT_TIMEOUT, RunningAPIServer, running_apiserver

SEED = 20261203
REQUESTS = 2200
CONCURRENT_WATCHES = 200

JSON, YAML, PROTOBUF = "application/json", "application/yaml", "application/vnd.kubernetes.protobuf"
MERGE, STRATEGIC, JSON_PATCH = ("application/merge-patch+json", "application/strategic-merge-patch+json",
                                "application/json-patch+json")
NAMESPACES = ["default", "hostile-a", "hostile-b"]
NASTY_STRINGS = ["", "a" * 300, "..", "%2e%2e", "UPPER", "ünïcødé", "a/b", "-x-", "x" * 64, "0", " ", "\t",
                 "$(id)", "<script>", "\u0000", "\ud7ff", "a" * 5000]
NASTY_VALUES: list[Any] = [None, True, False, -1, 0, 70000, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 1e308,
                           1.5, "", "x" * 3000, [], {}, [[[]]], {"a": {"b": {"c": {}}}}, "1.5.5", "-100m", "NaN",
                           [None], {"": ""}]
BOGUS_RESOURCE_VERSIONS = ["-1", "-0", "abc", "1.5", "99999999999999999999999", "1e3", " 1", "0x10", "٣", "",
                           "18446744073709551616", "0"]
WATCH_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
BOGUS_TIMEOUTS = ["nan", "inf", "-inf", "1e308", "-1", "x", "0.01", "0.05", "9" * 400]


@dataclass
class Kind:
    resource: Resource
    body: Callable[[str], dict[str, Any]]

    def collection(self, namespace: str) -> str:
        res = self.resource
        root = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
        return f"{root}/namespaces/{namespace}/{res.plural}" if res.namespaced else f"{root}/{res.plural}"


def _labels(name: str) -> dict[str, str]:
    return {"app": name[:40] or "x"}


def _pod_template(name: str) -> dict[str, Any]:
    return {"metadata": {"labels": _labels(name)},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}}


def _workload(name: str) -> dict[str, Any]:
    return {"replicas": 1, "selector": {"matchLabels": _labels(name)}, "template": _pod_template(name)}


BODIES: dict[str, Callable[[str], dict[str, Any]]] = {
    "namespaces": lambda name: {},
    "nodes": lambda name: {"spec": {"podCIDR": "10.244.9.0/24"}},
    "pods": lambda name: {"spec": _pod_template(name)["spec"]},
    "services": lambda name: {"spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": _labels(name)}},
    "endpoints": lambda name: {"subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 80}]}]},
    "serviceaccounts": lambda name: {},
    "events": lambda name: {"involvedObject": {"kind": "Pod", "name": name, "namespace": "default"},
                            "reason": "Hostile", "message": "m", "type": "Normal"},
    "configmaps": lambda name: {"data": {"k": "v"}},
    "replicationcontrollers": lambda name: {"spec": {"replicas": 1, "selector": _labels(name),
                                                     "template": _pod_template(name)}},
    "deployments": lambda name: {"spec": _workload(name)},
    "replicasets": lambda name: {"spec": _workload(name)},
    "endpointslices": lambda name: {"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"]}],
                                    "ports": [{"port": 80, "protocol": "TCP"}]},
    "leases": lambda name: {"spec": {"holderIdentity": name, "leaseDurationSeconds": 40}},
}
KINDS = [Kind(res, BODIES[res.plural]) for res in RESOURCES if res.plural in BODIES]


def _valid(kind: Kind, name: str) -> dict[str, Any]:
    res = kind.resource
    return {"apiVersion": f"{res.group}/{res.version}" if res.group else res.version, "kind": res.kind,
            "metadata": {"name": name, "labels": _labels(name)}, **kind.body(name)}


def _mutate(obj: Any, rng: random.Random) -> Any:
    return mutate(obj, rng, strings=NASTY_STRINGS, values=NASTY_VALUES)


# -- bodies in every encoding ---------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _protobuf_configmap(name: str, data: dict[str, str]) -> bytes:
    """A ConfigMap in Kubernetes' protobuf envelope (k8s\\x00, runtime.Unknown{typeMeta, raw})."""
    meta = _field(1, name.encode())
    entries = b"".join(_field(2, _field(1, k.encode()) + _field(2, v.encode())) for k, v in data.items())
    raw = _field(1, meta) + entries
    return b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + _field(2, raw)


def _hostile_protobuf(rng: random.Random, name: str) -> bytes:
    good = _protobuf_configmap(name, {"k": "v"})
    return rng.choice([
        good,
        good[: rng.randrange(4, len(good))],  # truncated
        b"k8s\x00" + _field(2, _varint(10**6)),  # a length beyond the body
        b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"Pod")) + _field(2, bytes(rng.randrange(256)
                                                                                       for _ in range(64))),
        b"k8s\x00" + _field(1, _field(1, b"v9") + _field(2, b"Nope")) + _field(2, b""),
        b"\x08" * 40,  # no envelope
        b"k8s\x00" + b"\xff" * 11,  # an endless varint
        b"k8s\x00" + _field(1, b"") + _field(2, _field(1, _field(1, _field(1, _field(1, b"x"))))),
    ])


def _deep_json(levels: int) -> bytes:
    return b'{"metadata":{"name":"deep"},"data":' + b'{"a":' * levels + b"1" + b"}" * levels + b"}"


def _deep_yaml(levels: int) -> bytes:
    return b"metadata: {name: deep}\ndata: " + b"[" * levels + b"]" * levels + b"\n"


def _alias_bomb(width: int, levels: int) -> bytes:
    lines = [b'a: &a ["lol","lol","lol"]']
    previous = "a"
    for index in range(levels):
        name = f"n{index}"
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * width)}]".encode())
        previous = name
    return b"\n".join(lines) + b"\nmetadata: {name: bomb}\n"


def _honest_aliases(name: str) -> bytes:
    return f"metadata: {{name: {name}, labels: &l {{app: x}}, annotations: *l}}\ndata: {{a: b}}\n".encode()


# -- the suite ------------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None
    accept: str | None = None
    chunked: bool = False
    """Send the body in chunks, without a Content-Length."""
    collection_write: bool = False
    """A deletecollection: it writes many objects and answers with a Status, so the suite lists afterwards."""

    def __str__(self) -> str:
        shown = (self.body or b"")[:120]
        return f"{self.method} {self.path} {self.params} {self.content_type} {shown!r}"


SHORT_TIMEOUTS = ("0.01", "0.05", "-1")


def _long_watch(request: Request) -> bool:
    """A watch that ends only after minutes (the server's default, or a clamped timeoutSeconds)."""
    return request.params.get("watch") in ("1", "true") and request.params.get("timeoutSeconds") not in SHORT_TIMEOUTS


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 256 * 1024):
        yield body[start:start + 256 * 1024]


@dataclass
class Record:
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    not_status: list[str] = field(default_factory=list)
    rv_violations: list[str] = field(default_factory=list)
    writes: int = 0
    last_rv: dict[tuple[str, str, str], int] = field(default_factory=dict)
    highest_rv: int = 0


class Hostile:
    """Sends the requests one at a time (so that the order of writes is the order of their resourceVersions)."""

    def __init__(self, api: RunningAPIServer, session: aiohttp.ClientSession, rng: random.Random) -> None:
        self.api, self.session, self.rng = api, session, rng
        self.record = Record()

    async def send(self, request: Request) -> tuple[int, Any]:
        headers: dict[str, str] = {}
        if request.content_type is not None:
            headers["Content-Type"] = request.content_type
        if request.accept is not None:
            headers["Accept"] = request.accept
        data: Any = io.BytesIO(request.body) if request.body is not None else None
        if request.chunked and request.body is not None:
            data = _chunks(request.body)
        try:
            async with self.session.request(request.method, request.path, params=request.params, data=data,
                                            headers=headers) as resp:
                status, content_type = resp.status, resp.content_type
                if status == 200 and _long_watch(request):
                    resp.close()  # opened and dropped: it would (rightly) last up to an hour
                    raw = b""
                else:
                    raw = await resp.read()
        except TimeoutError:
            self.record.hangs.append(str(request))
            return 0, None
        self.record.statuses[status] += 1
        decoded: Any = None
        if content_type == "application/json" and raw:
            if status == 200 and request.params.get("watch") in ("1", "true"):
                decoded = [json.loads(line) for line in raw.splitlines()]  # a stream of watch events
                assert all(event["type"] in WATCH_EVENT_TYPES for event in decoded), (str(request), raw[:300])
            else:
                decoded = json.loads(raw)
        if status >= 500:
            self.record.server_errors.append(f"{status} {request}: {raw[:300]!r}")
        elif status >= 400 and request.method != "HEAD":
            if not (isinstance(decoded, dict) and decoded.get("kind") == "Status" and decoded.get("code") == status):
                self.record.not_status.append(f"{status} {request}: {raw[:300]!r}")
        elif 200 <= status < 300 and request.collection_write:
            await self._relist(request.path)
        elif 200 <= status < 300 and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            self._note_write(request, decoded)
        return status, decoded

    async def _relist(self, collection: str) -> None:
        """Learn the objects a deletecollection changed: each one's state now, and the store's revision, which
        every later write must exceed."""
        status, listed = await self.send(Request("GET", collection))
        assert status == 200, (collection, status, listed)
        for item in listed["items"]:
            meta = item["metadata"]
            self.record.last_rv[(item["kind"], meta.get("namespace", ""), meta["name"])] = int(meta["resourceVersion"])
        self.record.highest_rv = max(self.record.highest_rv, int(listed["metadata"]["resourceVersion"]))

    def _note_write(self, request: Request, obj: Any) -> None:
        """A write's new resourceVersion must be above every earlier one; an unchanged one (a no-op update, or a
        delete of an object already being deleted) is no write at all."""
        if request.params.get("dryRun") == "All" or not isinstance(obj, dict) or obj.get("kind") == "Status":
            return
        meta = obj.get("metadata") or {}
        rv = int(meta.get("resourceVersion") or 0)
        key = (obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
        if not rv or self.record.last_rv.get(key) == rv:
            return
        if rv <= self.record.highest_rv:
            self.record.rv_violations.append(f"{request} -> {key} at {rv} after {self.record.highest_rv}")
        self.record.last_rv[key] = rv
        self.record.highest_rv = max(self.record.highest_rv, rv)
        self.record.writes += 1

    # -- request makers ----------------------------------------------------------------------------------------

    def _kind(self) -> Kind:
        return self.rng.choice(KINDS)

    def _namespace(self) -> str:
        return self.rng.choice(NAMESPACES) if self.rng.random() < 0.95 else self.rng.choice(["ghost", "UPPER", ".."])

    def _name(self) -> str:
        return f"h-{self.rng.randrange(12)}" if self.rng.random() < 0.9 else self.rng.choice(NASTY_STRINGS) or "x"

    def _object_path(self, kind: Kind) -> str:
        return f"{kind.collection(self._namespace())}/{self._name()}"

    def _query(self) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, values in (("labelSelector", ["app=h-1", "a in (", "!!", "a=b,c notin (d)", "x" * 400]),
                            ("fieldSelector", ["metadata.name=h-1", "spec.bogus=1", "a", "metadata.name!=y,,"]),
                            ("limit", ["1", "3", "-1", "abc", "999999999999999999999"]),
                            ("continue", ["garbage", "eyJydiI6IDF9", "eyJydiI6LTF9"]),
                            ("resourceVersion", BOGUS_RESOURCE_VERSIONS),
                            ("resourceVersionMatch", ["Exact", "NotOlderThan", "Sometime", ""]),
                            ("fieldValidation", ["Strict", "Warn", "Ignore", "Bogus"]),
                            ("dryRun", ["All", "Nope"])):
            if self.rng.random() < 0.12:
                params[key] = self.rng.choice(values)
        return params

    def _body(self, kind: Kind, name: str, hostile: float) -> tuple[bytes, str]:
        obj = _valid(kind, name)
        if self.rng.random() < hostile:
            obj = _mutate(obj, self.rng)
        if self.rng.random() < 0.1 and isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            obj["metadata"]["resourceVersion"] = self.rng.choice(BOGUS_RESOURCE_VERSIONS)
        encoding = self.rng.random()
        if encoding < 0.25:
            return json.dumps(obj).encode(), YAML  # JSON is YAML too
        if encoding < 0.35 and kind.resource.plural == "configmaps":
            return _protobuf_configmap(name, {"k": str(self.rng.randrange(1000))}), PROTOBUF
        return json.dumps(obj).encode(), JSON

    def create(self) -> Request:
        kind, name = self._kind(), self._name()
        if self.rng.random() < 0.1 and kind.resource.plural == "configmaps":
            return Request("POST", kind.collection(self._namespace()), self._query(),
                           _hostile_protobuf(self.rng, name), PROTOBUF)
        body, content_type = self._body(kind, name, hostile=0.4)
        return Request("POST", kind.collection(self._namespace()), self._query(), body, content_type)

    def read(self) -> Request:
        kind = self._kind()
        path = kind.collection(self._namespace()) if self.rng.random() < 0.6 else self._object_path(kind)
        params = self._query()
        accept = self.rng.choice([None, None, JSON, YAML, PROTOBUF, "application/json;as=Table;v=v1;g=meta.k8s.io",
                                  "text/html", "*/*"])
        method = self.rng.choice(["GET"] * 8 + ["HEAD", "OPTIONS"])
        return Request(method, path, params, accept=accept)

    def watch(self) -> Request:
        kind = self._kind()
        params = {"watch": self.rng.choice(["1", "true"]), "timeoutSeconds": self.rng.choice(BOGUS_TIMEOUTS)}
        if self.rng.random() < 0.5:
            params["resourceVersion"] = self.rng.choice(BOGUS_RESOURCE_VERSIONS)
        if self.rng.random() < 0.2:
            params["sendInitialEvents"] = "true"
        if self.rng.random() < 0.2:
            params["allowWatchBookmarks"] = "true"
        path = kind.collection(self._namespace())
        if self.rng.random() < 0.2:
            path = self._object_path(kind)
        return Request("GET", path, params)

    def update(self) -> Request:
        kind, name = self._kind(), self._name()
        body, content_type = self._body(kind, name, hostile=0.3)
        return Request("PUT", f"{kind.collection(self._namespace())}/{name}", self._query(), body, content_type)

    def patch(self) -> Request:
        kind = self._kind()
        content_type = self.rng.choice([MERGE, STRATEGIC, JSON_PATCH, "application/apply-patch+yaml", "text/plain"])
        body: Any
        if content_type == JSON_PATCH:
            op = self.rng.choice(["add", "replace", "remove", "copy", "move", "test", "bogus"])
            target = self.rng.choice(["/metadata/labels/x", "/spec/replicas", "/spec", "/metadata", "/data/k", "",
                                      "/metadata/labels/~2", "/spec/containers/-", "/spec/containers/99",
                                      "/metadata/resourceVersion", "/metadata/ownerReferences"])
            body = [{"op": op, "path": target, "value": self.rng.choice(NASTY_VALUES), "from": "/metadata/labels"}]
            if self.rng.random() < 0.1:
                body = self.rng.choice([{}, [1], [[]], "x", [{"op": "add"}]])
        else:
            body = {"metadata": {"labels": {"patched": str(self.rng.randrange(10**6))}}}
            if self.rng.random() < 0.5:
                body = _mutate(body, self.rng)
            if self.rng.random() < 0.15:
                body = {"spec": {"replicas": self.rng.choice(NASTY_VALUES),
                                 "containers": self.rng.choice([[], [{"name": "c", "$patch": "delete"}],
                                                                [{"$patch": "replace"}], {"x": 1}])}}
        return Request("PATCH", self._object_path(kind), self._query(), json.dumps(body).encode(), content_type)

    def delete(self) -> Request:
        kind = self._kind()
        params = {}
        if self.rng.random() < 0.3:
            params["gracePeriodSeconds"] = self.rng.choice(["0", "-1", "x", "30", "99999999999999999999"])
        if self.rng.random() < 0.2:
            params["propagationPolicy"] = self.rng.choice(["Orphan", "Background", "Foreground", "Sideways"])
        body = None
        if self.rng.random() < 0.4:
            body = json.dumps(self.rng.choice([
                {"preconditions": ["uid"]}, {"preconditions": {"uid": 5}}, {"preconditions": {"resourceVersion": "1"}},
                {"gracePeriodSeconds": self.rng.choice(NASTY_VALUES)}, {"orphanDependents": "yes"},
                {"propagationPolicy": 7}, {"dryRun": ["All"]}, {"dryRun": "All"}, [], {"kind": "DeleteOptions"},
            ])).encode()
        namespace = self.rng.choice(["hostile-a", "hostile-b", "default"])
        name = self._name()
        if kind.resource.plural == "namespaces":
            name = self.rng.choice(["h-1", "h-4", "ghost"])  # never those the requests are sent to
        if self.rng.random() < 0.05:
            return Request("DELETE", kind.collection(namespace), params, body, JSON if body else None,
                           collection_write=True)
        return Request("DELETE", f"{kind.collection(namespace)}/{name}", params, body, JSON if body else None)

    def subresource(self) -> Request:
        sub = self.rng.choice(["status", "scale", "binding", "finalize", "log", "exec", "proxy", "x/y"])
        plural = {"scale": self.rng.choice(["deployments", "replicasets", "replicationcontrollers", "pods"]),
                  "binding": "pods", "finalize": "namespaces", "log": "pods"}.get(sub)
        kind = next(k for k in KINDS if k.resource.plural == plural) if plural else self._kind()
        name = self._name() if plural != "namespaces" else self.rng.choice(["hostile-a", "hostile-b", "h-2"])
        path = f"{kind.collection(self._namespace())}/{name}/{sub}"
        method = self.rng.choice(["GET", "PUT", "PATCH", "POST", "DELETE"])
        body: Any = None
        content_type = None
        if sub == "binding":
            method = "POST" if self.rng.random() < 0.8 else method
            body = self.rng.choice([{"metadata": {"name": name}, "target": {"kind": "Node", "name": "absent"}},
                                    {"target": "node-1"}, {"target": {"name": 5}}, {"target": None}, []])
        elif sub == "finalize":
            method = "PUT" if self.rng.random() < 0.8 else method
            body = {"metadata": {"name": name}, "spec": {"finalizers": self.rng.choice(
                [5, [], ["kubernetes"], [5], "x", {"a": 1}, None])}}
        elif sub == "scale":
            body = {"metadata": {"name": name}, "spec": {"replicas": self.rng.choice([*NASTY_VALUES, 2, 3])}}
        elif method in ("PUT", "PATCH", "POST"):
            body = _mutate(_valid(kind, name), self.rng) if self.rng.random() < 0.5 else _valid(kind, name)
        if body is not None:
            content_type = MERGE if method == "PATCH" else JSON
            if sub == "log" or self.rng.random() < 0.1:
                content_type = self.rng.choice([YAML, STRATEGIC, JSON_PATCH, "x/y"])
        params = self._query()
        if sub == "log" and self.rng.random() < 0.5:
            params.update({"tailLines": self.rng.choice(["-1", "x", "10"]), "follow": "true"})
        return Request(method, path, params, json.dumps(body).encode() if body is not None else None, content_type)

    def deep(self) -> Request:
        levels = self.rng.choice([50, 99, 101, 150, 400, 1000, 5000, 100_000])
        kind_of_body = self.rng.choice(["json", "yaml", "patch", "list"])
        path = "/api/v1/namespaces/default/configmaps"
        if kind_of_body == "json":
            return Request("POST", path, {}, _deep_json(levels), JSON)
        if kind_of_body == "yaml":
            return Request("POST", path, {}, _deep_yaml(levels), YAML)
        if kind_of_body == "patch":
            return Request("PATCH", f"{path}/h-{self.rng.randrange(12)}", {}, _deep_json(levels),
                           self.rng.choice([MERGE, STRATEGIC, JSON_PATCH]))
        return Request("POST", path, {}, b"[" * levels + b"]" * levels, self.rng.choice([JSON, YAML]))

    def aliased(self) -> Request:
        path = "/api/v1/namespaces/default/configmaps"
        if self.rng.random() < 0.3:
            return Request("POST", path, {}, _honest_aliases(f"alias-{self.rng.randrange(10**6)}"), YAML)
        width, levels = self.rng.choice([(9, 9), (2, 40), (100, 3), (3, 20), (1000, 1)])
        return Request("POST", path, {}, _alias_bomb(width, levels), YAML)

    def odd(self) -> Request:
        method = self.rng.choice(["TRACE", "PROPFIND", "GET", "POST", "OPTIONS", "HEAD", "DELETE"])
        path = self.rng.choice(["/", "/api", "/apis", "/api/v1", "/apis/apps", "/apis/apps/v1", "/api/v2",
                                "/apis/nope/v1/things", "/api/v1/namespaces/default/nothings", "/version",
                                "/openapi/v2", "/healthz", "/readyz", "/livez", "/metrics", "/api/v1/pods/x",
                                "/api/v1/namespaces/default/pods/a/b/c/d", "/%2e%2e/%2e%2e/etc/passwd",
                                "/api/v1/namespaces//pods", "/" + "a/" * 300])
        return Request(method, path, self._query(), accept=self.rng.choice([None, PROTOBUF, YAML]))

    MAKERS: tuple[tuple[str, float], ...] = (("create", 0.24), ("read", 0.18), ("update", 0.1), ("patch", 0.15),
                                             ("delete", 0.07), ("subresource", 0.11), ("watch", 0.04),
                                             ("deep", 0.04), ("aliased", 0.03), ("odd", 0.04))

    def next_request(self) -> Request:
        names, weights = zip(*self.MAKERS, strict=True)
        maker: Callable[[], Request] = getattr(self, self.rng.choices(names, weights)[0])
        return maker()


def _huge_bodies() -> list[Request]:
    path = "/api/v1/namespaces/default/configmaps"
    limit = 3 * 1024 * 1024
    over = b'{"metadata":{"name":"huge"},"data":{"a":"' + b"x" * limit + b'"}}'
    unknown = b'{"metadata":{"name":"huge-unknown"},"data":{"a":"b"},"junk":"' + b"x" * (limit - 200) + b'"}'
    big_store = b'{"metadata":{"name":"huge-store"},"data":{"a":"' + b"x" * (2 * 1024 * 1024) + b'"}}'
    yaml_lines = b"\n".join([b"metadata: {name: huge-yaml}", b"data:"] +
                            [f"  k{i}: v{i}".encode() for i in range(60_000)]) + b"\n"
    managed = {"manager": "m", "operation": "Update", "fieldsType": "FieldsV1",
               "fieldsV1": {f"f:k{i}": "x" * 100_000 for i in range(20)}}
    over_the_store = json.dumps({"metadata": {"name": "huge-lease", "managedFields": [managed]}}).encode()
    return [Request("POST", path, {}, over, JSON), Request("POST", path, {}, unknown, JSON),
            Request("POST", path, {}, over, JSON, chunked=True),
            Request("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", {}, over_the_store, JSON),
            Request("POST", path, {}, big_store, JSON), Request("POST", path, {}, yaml_lines, YAML),
            Request("PUT", f"{path}/h-1", {}, over, YAML),
            Request("PATCH", f"{path}/h-2", {}, b'{"data":{"a":"' + b"y" * (2 * 1024 * 1024) + b'"}}', MERGE)]


async def _concurrent_watches(api: RunningAPIServer, hostile: Hostile, count: int) -> None:
    """Open count watches at once (no timeout: the server's default), see each answered, make a change that every
    one of them is sent, then drop them all without reading on."""
    async with api.session(limit=count + 10) as session:
        responses = []
        plurals = ["configmaps", "pods", "services", "leases"]
        opened = await asyncio.gather(*(session.get(
            next(k for k in KINDS if k.resource.plural == plurals[i % 4]).collection("default"),
            params={"watch": "1"}) for i in range(count)))
        for resp in opened:
            assert resp.status == 200, resp.status
            responses.append(resp)
        await hostile.send(Request("POST", "/api/v1/namespaces/default/configmaps", {},
                                   json.dumps({"metadata": {"generateName": "watched-"}}).encode(), JSON))
        first_lines = await asyncio.gather(*(resp.content.readline() for resp in responses[::4]))
        assert all(json.loads(line)["type"] in WATCH_EVENT_TYPES for line in first_lines)
        for resp in responses:
            resp.close()  # dropped mid-stream, as a crashed client would


async def _list_everything(api: RunningAPIServer, hostile: Hostile) -> dict[str, set[str]]:
    """Every resource lists (cluster-wide), a paginated walk agrees with the full list, and every item reads back."""
    listed: dict[str, set[str]] = {}
    for kind in KINDS:
        res = kind.resource
        collection = (f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}") + \
            f"/{res.plural}"
        status, body = await hostile.send(Request("GET", collection))
        assert status == 200, (collection, status, body)
        names = {f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in body["items"]}
        assert all(i["metadata"]["uid"] and i["metadata"]["resourceVersion"] for i in body["items"])
        paged: set[str] = set()
        token = ""
        while True:
            params = {"limit": "7", **({"continue": token} if token else {})}
            status, page = await hostile.send(Request("GET", collection, params))
            assert status == 200, (collection, status, page)
            paged |= {f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in page["items"]}
            token = page["metadata"].get("continue", "")
            if not token:
                break
        assert paged == names, (res.plural, paged ^ names)
        for item in body["items"]:
            meta = item["metadata"]
            path = f"{kind.collection(meta['namespace'])}/{meta['name']}" if res.namespaced else \
                f"{collection}/{meta['name']}"
            status, _ = await hostile.send(Request("GET", path))
            assert status == 200, (path, status)
        listed[res.plural] = names
    return listed


async def _stored(store_path: Path) -> dict[str, set[str]]:
    """What the store holds per resource, read directly after the apiserver has stopped."""
    store = await SQLiteStore.open(str(store_path), compact_interval=None)
    try:
        found: dict[str, set[str]] = {}
        for kind in KINDS:
            res = kind.resource
            items = (await store.range(res.key_prefix())).items
            found[res.plural] = set()
            for kv in items:
                meta = json.loads(kv.value)["metadata"]
                found[res.plural].add(f"{meta.get('namespace', '')}/{meta['name']}")
        return found
    finally:
        await store.close()


def test_hostile_requests_against_a_real_apiserver(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    with running_apiserver(tmp_path / "apiserver") as api:
        pid = api.process.pid

        async def scenario() -> tuple[Hostile, dict[str, set[str]]]:
            async with api.session() as session:
                hostile = Hostile(api, session, rng)
                for namespace in NAMESPACES[1:]:
                    await hostile.send(Request("POST", "/api/v1/namespaces", {},
                                               json.dumps({"metadata": {"name": namespace}}).encode(), JSON))
                for kind in KINDS:  # real objects for the requests to hit, and their resourceVersions
                    for namespace in NAMESPACES if kind.resource.namespaced else NAMESPACES[:1]:
                        for index in range(0, 12, 2):
                            await hostile.send(Request("POST", kind.collection(namespace), {},
                                                       json.dumps(_valid(kind, f"h-{index}")).encode(), JSON))
                seeded = hostile.record.writes
                await _concurrent_watches(api, hostile, CONCURRENT_WATCHES)
                huge = _huge_bodies()
                huge_at = {REQUESTS * (i + 1) // (len(huge) + 1): request for i, request in enumerate(huge)}
                for n in range(REQUESTS):
                    if n in huge_at:
                        await hostile.send(huge_at[n])
                    await hostile.send(hostile.next_request())
                    if n == REQUESTS // 2:
                        await _concurrent_watches(api, hostile, CONCURRENT_WATCHES)
                stream_writes = hostile.record.writes - seeded
                listed = await _list_everything(api, hostile)
                return hostile, listed, stream_writes

        hostile, listed, stream_writes = asyncio.run(scenario())
        assert api.alive() and api.process.pid == pid, api.log()[-3000:]
        assert "control.apiserver" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    record = hostile.record
    total = sum(record.statuses.values())
    summary = f"{total} answers: {sorted(record.statuses.items())}"
    assert not record.server_errors, "\n".join(record.server_errors[:20])
    assert not record.hangs, f"{len(record.hangs)} requests hit the {CLIENT_TIMEOUT} s client timeout: " \
                             + "\n".join(record.hangs[:20])
    assert not record.not_status, "\n".join(record.not_status[:20])
    assert not record.rv_violations, "\n".join(record.rv_violations[:20])
    assert total >= 2000, summary
    # The mix reached the success paths and every kind of refusal, so the assertions above say something.
    for code in (200, 201, 400, 404, 405, 409, 413, 415, 422):
        assert record.statuses[code] > 0, f"no {code}: {summary}"
    # Most hostile requests are refused by design; the writes that succeed still number hundreds.
    assert stream_writes > 150 and record.writes > 300, f"{stream_writes}/{record.writes} writes: {summary}"
    assert listed == asyncio.run(_stored(tmp_path / "apiserver" / "store.db"))
