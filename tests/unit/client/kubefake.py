"""A small fake apiserver for the client's tests: the Kubernetes API's shapes, not its breadth.

What it keeps faithful: List objects with metadata.resourceVersion and limit/continue served from one
snapshot (an expired continue token is a 410 Expired); watches as chunked newline-delimited JSON that
start after the given resourceVersion, carry BOOKMARKs when allowed, and answer a compacted
resourceVersion with an ERROR event holding a 410 Expired Status (what kube-apiserver does); Status
bodies for 401/403/404/409/422 in the apiserver's exact shape and wording.

What it lets a test do to it: inject failures, drop every open watch (an abrupt connection close),
send a 410 ERROR in the middle of a stream, change objects without telling watchers (the gap a
disconnected client misses), compact history, split each event into tiny writes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from control.client import Client

JsonObject = dict[str, Any]

KINDS = {
    "pods": "Pod",
    "services": "Service",
    "nodes": "Node",
    "namespaces": "Namespace",
    "events": "Event",
    "endpointslices": "EndpointSlice",
    "deployments": "Deployment",
    "configmaps": "ConfigMap",
}
CLUSTER_SCOPED = {"nodes", "namespaces"}


def status(code: int, reason: str, message: str, details: JsonObject | None = None) -> JsonObject:
    body: JsonObject = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def status_response(code: int, reason: str, message: str, details: JsonObject | None = None,
                    headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(status(code, reason, message, details), status=code, headers=headers)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: JsonObject, ops: list[JsonObject]) -> JsonObject:
    """RFC 6902, just add/replace/remove on object members: enough to see the content type round-trip."""
    result = copy.deepcopy(target)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        if op["op"] in ("add", "replace"):
            node[last] = op["value"]
        elif op["op"] == "remove":
            del node[last]
    return result


@dataclass
class Coll:
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def kind(self) -> str:
        return KINDS.get(self.plural, self.plural.capitalize())


@dataclass
class Record:
    rev: int
    type: str
    coll: str
    key: str
    obj: JsonObject


@dataclass
class Injected:
    code: int
    reason: str
    message: str
    times: int
    when: Callable[[web.Request], bool]
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


@dataclass
class Watcher:
    coll: str
    queue: asyncio.Queue[tuple[str, Any]]
    matches: Callable[[JsonObject], bool]


def key_of(obj: JsonObject) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def parse_selector(text: str) -> Callable[[dict[str, str]], bool]:
    terms: list[tuple[str, str, str]] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            terms.append(("!=", k.strip(), v.strip()))
        elif "=" in term:
            k, v = term.split("=", 1)
            terms.append(("=", k.strip().rstrip("="), v.strip().lstrip("=")))
        else:
            terms.append(("exists", term, ""))

    def match(values: dict[str, str]) -> bool:
        for op, k, v in terms:
            if op == "=" and values.get(k) != v:
                return False
            if op == "!=" and values.get(k) == v:
                return False
            if op == "exists" and k not in values:
                return False
        return True

    return match


def field_values(obj: JsonObject) -> dict[str, str]:
    meta = obj.get("metadata", {})
    values = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
    node = (obj.get("spec") or {}).get("nodeName")
    if node is not None:
        values["spec.nodeName"] = node
    return values


class FakeApiServer:
    def __init__(self, *, token: str | None = "test-token") -> None:
        self.token = token
        self.revision = 100
        self.compacted = 0
        self.state: dict[str, dict[str, JsonObject]] = {}
        self.history: list[Record] = []
        self.colls: dict[str, Coll] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any, dict[str, str]]] = []
        self.injected: list[Injected] = []
        self.watchers: list[Watcher] = []
        self.forbidden: set[tuple[str, str]] = set()  # (verb, plural)
        self.deliver = True          # False: changes go to history but not to open watches
        self.split_writes = 0        # >0: write every event in pieces of this many bytes
        self.expired_as_http = False  # True: a compacted watch RV gets an HTTP 410, not an ERROR event
        self.end_watches_at_once = False
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    # --- direct manipulation (what other clients of a real cluster would do) -----------------------

    def _coll(self, group: str, version: str, plural: str) -> str:
        name = f"{group}/{version}/{plural}"
        self.colls.setdefault(name, Coll(group, version, plural))
        self.state.setdefault(name, {})
        return name

    def _record(self, kind: str, coll: str, obj: JsonObject) -> None:
        rec = Record(self.revision, kind, coll, key_of(obj), copy.deepcopy(obj))
        self.history.append(rec)
        if not self.deliver:
            return
        for w in self.watchers:
            if w.coll == coll and w.matches(rec.obj):
                w.queue.put_nowait(("event", rec))

    def put(self, plural: str, obj: JsonObject, *, group: str = "", version: str = "v1") -> JsonObject:
        """Create or replace, bumping the revision, as if another client wrote it."""
        coll = self._coll(group, version, plural)
        obj = copy.deepcopy(obj)
        self.revision += 1
        meta = obj.setdefault("metadata", {})
        key = key_of(obj)
        old = self.state[coll].get(key)
        meta["resourceVersion"] = str(self.revision)
        meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        obj["kind"] = self.colls[coll].kind
        obj["apiVersion"] = self.colls[coll].api_version
        self.state[coll][key] = obj
        self._record("MODIFIED" if old else "ADDED", coll, obj)
        return copy.deepcopy(obj)

    def remove(self, plural: str, key: str, *, group: str = "", version: str = "v1") -> JsonObject:
        coll = self._coll(group, version, plural)
        obj = self.state[coll].pop(key)
        self.revision += 1
        obj = copy.deepcopy(obj)
        # A DELETED event's object carries the deletion's revision (kube-apiserver's watch cache does).
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self._record("DELETED", coll, obj)
        return obj

    def compact(self) -> None:
        """Forget history up to now: watches from an older resourceVersion are 410 Expired."""
        self.compacted = self.revision
        self.history = [r for r in self.history if r.rev > self.compacted]

    def bookmark(self) -> None:
        for w in self.watchers:
            w.queue.put_nowait(("bookmark", self.revision))

    def drop_watches(self) -> None:
        """Abort every open watch connection, as a crashed apiserver or a cut network would."""
        for w in self.watchers:
            w.queue.put_nowait(("drop", None))
        self.watchers.clear()

    def expire_watches(self) -> None:
        """Compact, and tell every open watch it is too old with a 410 ERROR event in its stream."""
        self.compact()
        for w in self.watchers:
            w.queue.put_nowait(("expire", None))
        self.watchers.clear()

    def inject(self, code: int, reason: str, message: str = "injected", *, times: int = 1,
               when: Callable[[web.Request], bool] = lambda r: True, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> None:
        self.injected.append(Injected(code, reason, message, times, when, headers or {}, raw))

    def watch_requests(self) -> list[dict[str, str]]:
        return [q for (m, _p, q, _b, _h) in self.requests if m == "GET" and q.get("watch") in ("1", "true")]

    # --- HTTP ----------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                return status_response(400, "BadRequest", "the body is not JSON")
        self.requests.append((request.method, request.path, dict(request.query), body, dict(request.headers)))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return status_response(401, "Unauthorized", "Unauthorized")
        for inj in self.injected:
            if inj.times > 0 and inj.when(request):
                inj.times -= 1
                if inj.raw is not None:
                    return web.Response(status=inj.code, body=inj.raw, headers=inj.headers)
                return status_response(inj.code, inj.reason, inj.message, headers=inj.headers)
        parsed = self._parse_path(request.path)
        if parsed is None:
            return status_response(404, "NotFound", "the server could not find the requested resource")
        coll, ns, name, sub = parsed
        c = self.colls[coll]
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(request.method, "")
        if request.method == "GET" and request.query.get("watch") in ("1", "true"):
            verb = "watch"
        if (verb, c.plural) in self.forbidden:
            scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            return status_response(
                403, "Forbidden",
                f'{c.plural} is forbidden: User "system:kube-proxy" cannot {verb} resource "{c.plural}" '
                f'in API group "{c.group}" {scope}',
                {"kind": c.plural})
        if verb == "watch":
            return await self._watch(request, coll, ns)
        if verb == "list":
            return self._list(request, coll, ns)
        if verb == "get":
            obj = self.state[coll].get(f"{ns}/{name}" if ns else str(name))
            if obj is None:
                return self._not_found(c, name)
            return web.json_response(obj)
        if verb == "create":
            return self._create(c, coll, ns, name, sub, body)
        if verb == "update":
            return self._update(c, coll, ns, name, sub, body)
        if verb == "patch":
            return self._patch(request, c, coll, ns, name, body)
        if verb == "delete":
            return self._delete(c, coll, ns, name, body)
        return status_response(405, "MethodNotAllowed", "the server does not allow this method")

    def _parse_path(self, path: str) -> tuple[str, str | None, str | None, str | None] | None:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return self._coll(group, version, plural), ns, name, sub

    def _not_found(self, c: Coll, name: str | None) -> web.Response:
        return status_response(404, "NotFound", f'{c.plural} "{name}" not found',
                               {"name": name, "group": c.group, "kind": c.plural})

    def _selected(self, request: web.Request, ns: str | None) -> Callable[[JsonObject], bool]:
        labels = parse_selector(request.query.get("labelSelector", ""))
        fields = parse_selector(request.query.get("fieldSelector", ""))

        def match(obj: JsonObject) -> bool:
            meta = obj.get("metadata", {})
            if ns is not None and meta.get("namespace") != ns:
                return False
            return labels(meta.get("labels") or {}) and fields(field_values(obj))

        return match

    def _state_at(self, coll: str, rev: int) -> dict[str, JsonObject]:
        if rev == self.revision:
            return dict(self.state[coll])
        state: dict[str, JsonObject] = {}
        # Rebuild from history: only possible above the compaction point, as in etcd.
        for rec in self.history:
            if rec.rev > rev:
                break
            if rec.coll != coll:
                continue
            if rec.type == "DELETED":
                state.pop(rec.key, None)
            else:
                state[rec.key] = rec.obj
        return state

    def _list(self, request: web.Request, coll: str, ns: str | None) -> web.Response:
        c = self.colls[coll]
        limit = int(request.query.get("limit", "0") or 0)
        token = request.query.get("continue")
        after = ""
        rev = self.revision
        if token:
            if "resourceVersion" in request.query:
                return status_response(400, "BadRequest",
                                       "specifying resource version is not allowed when using continue")
            decoded = json.loads(base64.b64decode(token))
            rev, after = decoded["rv"], decoded["start"]
            if rev <= self.compacted:
                return status_response(
                    410, "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter, or use the continue token in this "
                    "response to retrieve the remainder of the results. Continuing with the provided token "
                    "results in an inconsistent list - objects that were created, modified, or deleted between "
                    "the time the first chunk was returned and now may show up in the list.")
        match = self._selected(request, ns)
        items = [o for k, o in sorted(self._state_at(coll, rev).items()) if k > after and match(o)]
        meta: JsonObject = {"resourceVersion": str(rev)}
        if limit and len(items) > limit:
            page, rest = items[:limit], items[limit:]
            meta["continue"] = base64.b64encode(
                json.dumps({"rv": rev, "start": key_of(page[-1])}).encode()).decode()
            meta["remainingItemCount"] = len(rest)
            items = page
        # Items of a typed List carry no kind/apiVersion.
        stripped = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        return web.json_response({"kind": f"{c.kind}List", "apiVersion": c.api_version, "metadata": meta,
                                  "items": stripped})

    def _create(self, c: Coll, coll: str, ns: str | None, name: str | None, sub: str | None,
                body: Any) -> web.Response:
        if sub == "binding" and c.plural == "pods":
            key = f"{ns}/{name}"
            pod = self.state[coll].get(key)
            if pod is None:
                return self._not_found(c, name)
            pod = copy.deepcopy(pod)
            pod.setdefault("spec", {})["nodeName"] = body["target"]["name"]
            self.put("pods", pod)
            return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "code": 201}, status=201)
        meta = body.get("metadata") or {}
        if not meta.get("name"):
            return status_response(
                422, "Invalid",
                f'{c.kind} "" is invalid: metadata.name: Required value: name or generateName is required',
                {"kind": c.kind, "causes": [{"reason": "FieldValueRequired",
                                             "message": "Required value: name or generateName is required",
                                             "field": "metadata.name"}]})
        if ns is not None:
            meta["namespace"] = ns
        body["metadata"] = meta
        key = key_of(body)
        if key in self.state[coll]:
            return status_response(409, "AlreadyExists", f'{c.plural} "{meta["name"]}" already exists',
                                   {"name": meta["name"], "group": c.group, "kind": c.plural})
        meta.pop("resourceVersion", None)
        return web.json_response(self.put(c.plural, body, group=c.group, version=c.version), status=201)

    def _conflict(self, c: Coll, name: str | None) -> web.Response:
        return status_response(
            409, "Conflict",
            f'Operation cannot be fulfilled on {c.plural} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            {"name": name, "group": c.group, "kind": c.plural})

    def _update(self, c: Coll, coll: str, ns: str | None, name: str | None, sub: str | None,
                body: Any) -> web.Response:
        key = f"{ns}/{name}" if ns else str(name)
        current = self.state[coll].get(key)
        if current is None:
            return self._not_found(c, name)
        if body.get("metadata", {}).get("name") != name:
            return status_response(400, "BadRequest", "the name of the object does not match the name on the URL")
        rv = body.get("metadata", {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            return self._conflict(c, name)
        if sub == "status":
            new = copy.deepcopy(current)
            new["status"] = body.get("status")
        else:
            new = copy.deepcopy(body)
            if ns is not None:
                new["metadata"]["namespace"] = ns
            new["metadata"]["uid"] = current["metadata"]["uid"]
        return web.json_response(self.put(c.plural, new, group=c.group, version=c.version))

    def _patch(self, request: web.Request, c: Coll, coll: str, ns: str | None, name: str | None,
               body: Any) -> web.Response:
        key = f"{ns}/{name}" if ns else str(name)
        current = self.state[coll].get(key)
        if current is None:
            return self._not_found(c, name)
        ctype = request.content_type
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            new = merge_patch(current, body)
        elif ctype == "application/json-patch+json":
            new = json_patch(current, body)
        else:
            return status_response(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                   f"format - accepted media types include: application/json-patch+json, "
                                   f"application/merge-patch+json, application/apply-patch+yaml, "
                                   f"application/strategic-merge-patch+json; got {ctype}")
        new["metadata"].pop("resourceVersion", None)
        return web.json_response(self.put(c.plural, new, group=c.group, version=c.version))

    def _delete(self, c: Coll, coll: str, ns: str | None, name: str | None, body: Any) -> web.Response:
        key = f"{ns}/{name}" if ns else str(name)
        current = self.state[coll].get(key)
        if current is None:
            return self._not_found(c, name)
        pre = (body or {}).get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
            return status_response(
                409, "Conflict",
                f"Operation cannot be fulfilled on {c.plural} \"{name}\": Precondition failed: UID in "
                f"precondition: {pre['uid']}, UID in object meta: {current['metadata']['uid']}",
                {"name": name, "group": c.group, "kind": c.plural})
        return web.json_response(self.remove(c.plural, key, group=c.group, version=c.version))

    # --- watch -----------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, coll: str, ns: str | None) -> web.StreamResponse:
        c = self.colls[coll]
        rv_text = request.query.get("resourceVersion", "")
        rv = int(rv_text) if rv_text not in ("", "0") else None
        bookmarks = request.query.get("allowWatchBookmarks") == "true"
        timeout = float(request.query["timeoutSeconds"]) if "timeoutSeconds" in request.query else None
        expired = rv is not None and rv < self.compacted
        if expired and self.expired_as_http:
            return status_response(410, "Expired", f"too old resource version: {rv} ({self.compacted})")
        response = web.StreamResponse(headers={"Content-Type": "application/json;stream=watch"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if expired:
            await self._send(response, {"type": "ERROR", "object": status(
                410, "Expired", f"too old resource version: {rv} ({self.compacted})")})
            await response.write_eof()
            return response
        if self.end_watches_at_once:
            await response.write_eof()
            return response
        match = self._selected(request, ns)
        watcher = Watcher(coll, asyncio.Queue(), match)
        self.watchers.append(watcher)
        # Synchronously with registering (no await in between): the backlog, then live events.
        if rv is None:
            backlog = [Record(self.revision, "ADDED", coll, k, o) for k, o in sorted(self.state[coll].items())
                       if match(o)]
        else:
            backlog = [r for r in self.history if r.rev > rv and r.coll == coll and match(r.obj)]
        try:
            for rec in backlog:
                await self._send(response, {"type": rec.type, "object": rec.obj})
            while True:
                try:
                    what, arg = await asyncio.wait_for(watcher.queue.get(), timeout)
                except TimeoutError:
                    break
                if what == "event":
                    await self._send(response, {"type": arg.type, "object": arg.obj})
                elif what == "bookmark":
                    if bookmarks:
                        await self._send(response, {"type": "BOOKMARK", "object": {
                            "kind": c.kind, "apiVersion": c.api_version,
                            "metadata": {"resourceVersion": str(arg)}}})
                elif what == "expire":
                    await self._send(response, {"type": "ERROR", "object": status(
                        410, "Expired", f"too old resource version: {rv} ({self.compacted})")})
                    break
                elif what == "drop":
                    assert request.transport is not None
                    request.transport.abort()
                    return response
            await response.write_eof()
        except ConnectionResetError:
            pass
        finally:
            if watcher in self.watchers:
                self.watchers.remove(watcher)
        return response

    async def _send(self, response: web.StreamResponse, event: JsonObject) -> None:
        data = (json.dumps(event) + "\n").encode()
        if not self.split_writes:
            await response.write(data)
            return
        size = self.split_writes
        for i in range(0, len(data), size):
            await response.write(data[i:i + size])
            await asyncio.sleep(0)


# --- test helpers ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(fake: FakeApiServer, **client_options: Any) -> AsyncIterator[tuple[TestServer, Client]]:
    """The fake on a loopback port and a Client pointed at it; both closed afterwards."""
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    client_options.setdefault("token", fake.token)
    client = Client(str(server.make_url("")), **client_options)
    try:
        yield server, client
    finally:
        await client.close()
        await server.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class Sleeps:
    """The sleep seam: records each delay and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.calls.append(delay)
        await asyncio.sleep(0)
