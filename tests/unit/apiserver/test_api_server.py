"""The apiserver's HTTP semantics against a real SQLite store, through aiohttp's in-process test server
(plain HTTP here; TLS is covered end to end)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from control.apiserver.admission import BasicAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator, User
from control.apiserver.bootstrap import bootstrap
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.server import APIServer, take_batch
from control.apiserver.watchcache import WatchEvent
from control.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin"}
NODE1 = {"Authorization": "Bearer node1"}
PROXY = {"Authorization": "Bearer proxy"}

Scenario = Callable[[TestClient, Registry], Awaitable[None]]


def run(scenario: Scenario, tmp_path: Path, *, bookmark_interval: float = 15.0,
        unknown_fields: Callable[[str, dict[str, Any]], list[str]] | None = None,
        admission: Any = None) -> None:
    async def main() -> None:
        store = await SQLiteStore.open(str(tmp_path / "store.db"), compact_interval=None)
        registry = Registry(store, admission=admission or BasicAdmission(), patcher=apply_patch,
                            allocator=ServiceAllocator("10.96.0.0/16", (30000, 32767)))
        await registry.start()
        await bootstrap(registry, service_cidr="10.96.0.0/16", advertise_address="172.18.0.2", port=6443)
        tokens = TokenAuthenticator({
            "admin": User("kubernetes-admin", ("system:masters",)),
            "node1": User("system:node:worker-1", ("system:nodes",)),
            "proxy": User("system:kube-proxy"),
        })
        server = APIServer(registry, tokens, bookmark_interval=bookmark_interval, unknown_fields=unknown_fields)
        server.ready = True
        client = TestClient(TestServer(server.app()))
        await client.start_server()
        try:
            await scenario(client, registry)
        finally:
            await client.close()
            await registry.stop()
            await store.close()

    asyncio.run(main())


def pod(name: str, node: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def test_bootstrap_and_discovery(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        resp = await client.get("/api/v1/namespaces", headers=ADMIN)
        names = [n["metadata"]["name"] for n in (await resp.json())["items"]]
        assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
        svc = await (await client.get("/api/v1/namespaces/default/services/kubernetes", headers=ADMIN)).json()
        assert svc["spec"]["clusterIP"] == "10.96.0.1"
        groups = await (await client.get("/apis", headers=ADMIN)).json()
        assert {g["name"] for g in groups["groups"]} == {"apps", "batch", "discovery.k8s.io", "coordination.k8s.io",
                                                     "networking.k8s.io", "policy.networking.k8s.io",
                                                     "rbac.authorization.k8s.io", "authorization.k8s.io",
                                                     "authentication.k8s.io", "storage.k8s.io",
                                                     "apiextensions.k8s.io", "apiregistration.k8s.io"}
        core = await (await client.get("/api/v1", headers=ADMIN)).json()
        pods = next(r for r in core["resources"] if r["name"] == "pods")
        assert pods["shortNames"] == ["po"] and pods["namespaced"] and "watch" in pods["verbs"]
        scale = next(r for r in core["resources"] if r["name"] == "replicationcontrollers/scale")
        assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/version")).status == 200

    run(scenario, tmp_path)


def test_no_token_is_401_and_roles_are_enforced(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        for path in ("/api/v1/pods", "/api/v1/namespaces/default/services", "/apis/apps/v1/deployments", "/api"):
            resp = await client.get(path)
            assert resp.status == 401, path
            assert (await resp.json())["reason"] == "Unauthorized"
        assert (await client.get("/api/v1/pods", headers={"Authorization": "Bearer wrong"})).status == 401
        # kube-proxy may watch services but not write them.
        assert (await client.get("/api/v1/services", headers=PROXY)).status == 200
        resp = await client.post("/api/v1/namespaces/default/services", headers=PROXY, json={})
        assert resp.status == 403
        body = await resp.json()
        assert body["message"] == ('services is forbidden: User "system:kube-proxy" cannot create resource "services" '
                                   'in API group "" in the namespace "default"')

    run(scenario, tmp_path)


def test_node_restriction(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        for name in ("worker-1", "worker-2"):
            resp = await client.post("/api/v1/nodes", headers=ADMIN, json={"metadata": {"name": name}})
            assert resp.status == 201
        own = await client.patch("/api/v1/nodes/worker-1/status", headers={
            **NODE1, "Content-Type": "application/merge-patch+json"}, data=b'{"status":{"phase":"Running"}}')
        assert own.status == 200
        other = await client.patch("/api/v1/nodes/worker-2", headers={
            **NODE1, "Content-Type": "application/merge-patch+json"}, data=b'{"metadata":{"labels":{"x":"y"}}}')
        assert other.status == 403
        assert 'node "worker-1" is not allowed to modify node "worker-2"' in (await other.json())["message"]
        await client.post("/api/v1/namespaces/default/pods", headers=ADMIN, json=pod("mine", "worker-1"))
        await client.post("/api/v1/namespaces/default/pods", headers=ADMIN, json=pod("theirs", "worker-2"))
        status = {"status": {"phase": "Running"}}
        mine = await client.put("/api/v1/namespaces/default/pods/mine/status", headers=NODE1,
                                json={**pod("mine", "worker-1"), **status})
        assert mine.status == 200
        theirs = await client.put("/api/v1/namespaces/default/pods/theirs/status", headers=NODE1,
                                  json={**pod("theirs", "worker-2"), **status})
        assert theirs.status == 403

    run(scenario, tmp_path)


def test_create_get_update_conflict_delete(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        resp = await client.post("/api/v1/namespaces/default/configmaps", headers=ADMIN,
                                 json={"metadata": {"name": "cfg"}, "data": {"a": "1"}})
        assert resp.status == 201
        created = await resp.json()
        meta = created["metadata"]
        assert meta["uid"] and meta["creationTimestamp"] and meta["resourceVersion"]
        again = await client.post("/api/v1/namespaces/default/configmaps", headers=ADMIN,
                                  json={"metadata": {"name": "cfg"}})
        assert again.status == 409 and (await again.json())["reason"] == "AlreadyExists"

        created["data"]["a"] = "2"
        updated = await (await client.put("/api/v1/namespaces/default/configmaps/cfg", headers=ADMIN,
                                          json=created)).json()
        assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
        assert updated["metadata"]["uid"] == meta["uid"]
        stale = await client.put("/api/v1/namespaces/default/configmaps/cfg", headers=ADMIN, json=created)
        assert stale.status == 409
        assert (await stale.json())["message"].endswith(
            "the object has been modified; please apply your changes to the latest version and try again")

        missing = await client.get("/api/v1/namespaces/default/configmaps/nope", headers=ADMIN)
        assert missing.status == 404
        assert (await missing.json())["message"] == 'configmaps "nope" not found'
        no_ns = await client.post("/api/v1/namespaces/ghost/configmaps", headers=ADMIN,
                                  json={"metadata": {"name": "x"}})
        assert no_ns.status == 404 and (await no_ns.json())["message"] == 'namespaces "ghost" not found'

        deleted = await client.delete("/api/v1/namespaces/default/configmaps/cfg", headers=ADMIN)
        assert deleted.status == 200
        assert (await client.get("/api/v1/namespaces/default/configmaps/cfg", headers=ADMIN)).status == 404

    run(scenario, tmp_path)


def test_malformed_bodies_are_400_and_bad_names_422(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/configmaps"
        bad = await client.post(url, headers={**ADMIN, "Content-Type": "application/json"}, data=b"{not json")
        assert bad.status == 400 and (await bad.json())["reason"] == "BadRequest"
        array = await client.post(url, headers={**ADMIN, "Content-Type": "application/json"}, data=b"[1,2]")
        assert array.status == 400
        wrong_kind = await client.post(url, headers=ADMIN, json={"kind": "Pod", "metadata": {"name": "x"}})
        assert wrong_kind.status == 400
        invalid = await client.post(url, headers=ADMIN, json={"metadata": {"name": "Bad_Name"}})
        assert invalid.status == 422
        body = await invalid.json()
        assert body["reason"] == "Invalid"
        assert body["details"]["causes"][0]["field"] == "metadata.name"
        huge = await client.post(url, headers={**ADMIN, "Content-Type": "application/json"},
                                 data=io.BytesIO(b" " * (4 << 20)))
        assert huge.status == 413
        unknown = await client.get("/api/v1/widgets", headers=ADMIN)
        assert unknown.status == 404

    run(scenario, tmp_path)


def test_services_get_addresses_and_node_ports_with_upstream_errors(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/services"

        def svc(name: str, **spec: Any) -> dict[str, Any]:
            return {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], **spec}}

        first = await (await client.post(url, headers=ADMIN, json=svc("a", type="NodePort"))).json()
        ip = first["spec"]["clusterIP"]
        assert ip.startswith("10.96.") and ip != "10.96.0.1" and first["spec"]["clusterIPs"] == [ip]
        assert 30000 <= first["spec"]["ports"][0]["nodePort"] <= 32767
        taken = await client.post(url, headers=ADMIN, json=svc("b", clusterIP=ip))
        assert taken.status == 422
        cause = (await taken.json())["details"]["causes"][0]
        assert cause["field"] == "spec.clusterIPs"
        assert cause["message"] == f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: provided IP is ' \
                                   "already allocated"
        outside = await client.post(url, headers=ADMIN, json=svc("c", clusterIP="10.1.2.3"))
        assert "is not in the valid range. The range of valid IPs is 10.96.0.0/16" in \
            (await outside.json())["details"]["causes"][0]["message"]
        port = first["spec"]["ports"][0]["nodePort"]
        clash = await client.post(url, headers=ADMIN, json={"metadata": {"name": "d"}, "spec": {
            "type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}})
        assert (await clash.json())["details"]["causes"][0] == {
            "reason": "FieldValueInvalid", "field": "spec.ports[0].nodePort",
            "message": f"Invalid value: {port}: provided port is already allocated"}
        lb = await (await client.post(url, headers=ADMIN, json=svc("lb", type="LoadBalancer",
                                                                   externalTrafficPolicy="Local"))).json()
        assert lb["spec"]["healthCheckNodePort"] > 0
        # Deleting frees the address for someone else.
        await client.delete(f"{url}/a", headers=ADMIN)
        reused = await client.post(url, headers=ADMIN, json=svc("e", clusterIP=ip))
        assert reused.status == 201

    run(scenario, tmp_path)


def test_list_selectors_and_pagination(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/pods"
        for i in range(7):
            await client.post(url, headers=ADMIN, json=pod(f"p{i}", "worker-1" if i % 2 else "worker-2",
                                                           {"app": "web" if i < 5 else "db"}))
        web = await (await client.get(url, headers=ADMIN, params={"labelSelector": "app=web"})).json()
        assert [p["metadata"]["name"] for p in web["items"]] == ["p0", "p1", "p2", "p3", "p4"]
        on1 = await (await client.get("/api/v1/pods", headers=ADMIN,
                                      params={"fieldSelector": "spec.nodeName=worker-1"})).json()
        assert [p["metadata"]["name"] for p in on1["items"]] == ["p1", "p3", "p5"]
        sets = await (await client.get(url, headers=ADMIN, params={"labelSelector": "app in (db),app!=web"})).json()
        assert len(sets["items"]) == 2
        bad = await client.get(url, headers=ADMIN, params={"fieldSelector": "spec.bogus=1"})
        assert bad.status == 400 and (await bad.json())["message"] == "field label not supported: spec.bogus"

        seen, token, pages = [], None, 0
        while True:
            params = {"limit": "3", **({"continue": token} if token else {})}
            page = await (await client.get(url, headers=ADMIN, params=params)).json()
            seen += [p["metadata"]["name"] for p in page["items"]]
            pages += 1
            token = page["metadata"].get("continue")
            if not token:
                break
        assert seen == [f"p{i}" for i in range(7)] and pages == 3
        garbage = await client.get(url, headers=ADMIN, params={"limit": "2", "continue": "!!!"})
        assert garbage.status == 400

    run(scenario, tmp_path)


async def _read_events(resp: Any, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    events = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = await resp.content.readline()
            if not line:
                break
            events.append(json.loads(line))
    return events


def test_watch_initial_state_live_events_resume_and_bookmarks(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/configmaps"
        await client.post(url, headers=ADMIN, json={"metadata": {"name": "one"}})
        watch = await client.get(url, headers=ADMIN, params={"watch": "1", "allowWatchBookmarks": "true"})
        first = await _read_events(watch, 1)
        assert first[0]["type"] == "ADDED" and first[0]["object"]["metadata"]["name"] == "one"
        await client.post(url, headers=ADMIN, json={"metadata": {"name": "two"}})
        await client.delete(f"{url}/one", headers=ADMIN)
        live = await _read_events(watch, 2)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in live] == [("ADDED", "two"), ("DELETED", "one")]
        bookmark = await _read_events(watch, 1)
        assert bookmark[0]["type"] == "BOOKMARK"
        assert int(bookmark[0]["object"]["metadata"]["resourceVersion"]) >= \
            int(live[-1]["object"]["metadata"]["resourceVersion"])
        watch.close()

        # Resume from the revision after "two" was added: exactly the delete is replayed.
        resumed = await client.get(url, headers=ADMIN, params={
            "watch": "1", "resourceVersion": live[0]["object"]["metadata"]["resourceVersion"]})
        replay = await _read_events(resumed, 1)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in replay] == [("DELETED", "one")]
        resumed.close()

        # Selector watches see objects enter and leave the selection as ADDED and DELETED.
        sel = await client.get(url, headers=ADMIN, params={"watch": "1", "labelSelector": "tier=front",
                                                           "resourceVersion": bookmark[0]["object"]["metadata"][
                                                               "resourceVersion"]})
        two = await (await client.get(f"{url}/two", headers=ADMIN)).json()
        two["metadata"]["labels"] = {"tier": "front"}
        two = await (await client.put(f"{url}/two", headers=ADMIN, json=two)).json()
        two["metadata"]["labels"] = {"tier": "back"}
        await client.put(f"{url}/two", headers=ADMIN, json=two)
        moves = await _read_events(sel, 2)
        assert [e["type"] for e in moves] == ["ADDED", "DELETED"]
        sel.close()

    run(scenario, tmp_path, bookmark_interval=0.3)


def test_a_terminating_apiserver_ends_open_watches(tmp_path: Path) -> None:
    """Watches never end by themselves; at shutdown they are ended so the server stops at once (a watch
    left open would hold the shutdown for its whole timeout)."""
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/configmaps"
        watch = await client.get(url, headers=ADMIN, params={"watch": "1"})
        await client.post(url, headers=ADMIN, json={"metadata": {"name": "one"}})
        assert (await _read_events(watch, 1))[0]["type"] == "ADDED"
        registry.end_watches()
        assert await asyncio.wait_for(watch.content.read(), timeout=5) == b""  # the stream ended cleanly
        assert not any(cache.watchers for cache in registry.caches.values())

    run(scenario, tmp_path)


def test_watch_from_a_compacted_revision_is_410(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/configmaps"
        for i in range(5):
            await client.post(url, headers=ADMIN, json={"metadata": {"name": f"c{i}"}})
        current = await registry.store.current_revision()
        await registry.store.compact(current)
        cache = registry.caches["configmaps"]
        cache.window_start = current  # as if the window had moved past the old revisions
        resp = await client.get(url, headers=ADMIN, params={"watch": "1", "resourceVersion": "2"})
        events = await _read_events(resp, 1)
        assert events[0]["type"] == "ERROR"
        assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"

    run(scenario, tmp_path)


def test_graceful_pod_deletion_and_finalizers(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/pods"
        bound = pod("bound", "worker-1")
        bound["spec"]["terminationGracePeriodSeconds"] = 30
        await client.post(url, headers=ADMIN, json=bound)
        await client.post(url, headers=ADMIN, json=pod("unbound"))
        graceful = await (await client.delete(f"{url}/bound", headers=ADMIN)).json()
        assert graceful["metadata"]["deletionGracePeriodSeconds"] == 30 and graceful["metadata"]["deletionTimestamp"]
        assert (await client.get(f"{url}/bound", headers=ADMIN)).status == 200  # the kubelet finishes it
        # The kubelet reports the containers stopping: the pod stays until its grace-0 delete.
        status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}
        patched = await client.patch(f"{url}/bound/status", headers={
            **ADMIN, "Content-Type": "application/merge-patch+json"}, json=status)
        assert patched.status == 200
        assert (await client.get(f"{url}/bound", headers=ADMIN)).status == 200
        await client.delete(f"{url}/bound", headers=ADMIN, json={"gracePeriodSeconds": 0})
        assert (await client.get(f"{url}/bound", headers=ADMIN)).status == 404
        await client.delete(f"{url}/unbound", headers=ADMIN)
        assert (await client.get(f"{url}/unbound", headers=ADMIN)).status == 404  # no kubelet: deleted at once

        held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
        await client.post("/api/v1/namespaces/default/configmaps", headers=ADMIN, json=held)
        await client.delete("/api/v1/namespaces/default/configmaps/held", headers=ADMIN)
        kept = await (await client.get("/api/v1/namespaces/default/configmaps/held", headers=ADMIN)).json()
        assert kept["metadata"]["deletionTimestamp"]
        kept["metadata"]["finalizers"] = []
        await client.put("/api/v1/namespaces/default/configmaps/held", headers=ADMIN, json=kept)
        assert (await client.get("/api/v1/namespaces/default/configmaps/held", headers=ADMIN)).status == 404

    run(scenario, tmp_path)


def test_binding_scale_and_tables(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        await client.post("/api/v1/namespaces/default/pods", headers=ADMIN, json=pod("p"))
        bind = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "worker-1"}}
        assert (await client.post("/api/v1/namespaces/default/pods/p/binding", headers=ADMIN, json=bind)).status == 201
        again = await client.post("/api/v1/namespaces/default/pods/p/binding", headers=ADMIN, json=bind)
        assert again.status == 409
        bound = await (await client.get("/api/v1/namespaces/default/pods/p", headers=ADMIN)).json()
        assert bound["spec"]["nodeName"] == "worker-1"
        assert bound["status"]["conditions"][0]["type"] == "PodScheduled"

        deploy = {"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
        await client.post("/apis/apps/v1/namespaces/default/deployments", headers=ADMIN, json=deploy)
        scale = await (await client.get("/apis/apps/v1/namespaces/default/deployments/web/scale",
                                        headers=ADMIN)).json()
        assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=web"
        patched = await client.patch("/apis/apps/v1/namespaces/default/deployments/web/scale", headers={
            **ADMIN, "Content-Type": "application/merge-patch+json"}, data=b'{"spec":{"replicas":5}}')
        assert (await patched.json())["spec"]["replicas"] == 5
        web = await (await client.get("/apis/apps/v1/namespaces/default/deployments/web", headers=ADMIN)).json()
        assert web["spec"]["replicas"] == 5 and web["metadata"]["generation"] == 2

        table = await (await client.get("/api/v1/namespaces/default/pods", headers={
            **ADMIN, "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})).json()
        assert table["kind"] == "Table"
        assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
        assert table["rows"][0]["cells"][:3] == ["p", "0/1", "Pending"]
        assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"

    run(scenario, tmp_path)


def test_unknown_fields_warn_by_default_and_fail_when_strict(tmp_path: Path) -> None:
    from control.apiserver.schema import unknown_fields

    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/services"
        body = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "bogus": 1}]}}
        strict = await client.post(url, headers=ADMIN, params={"fieldValidation": "Strict"}, json=body)
        assert strict.status == 400
        assert (await strict.json())["message"] == 'strict decoding error: unknown field "spec.ports[0].bogus"'
        warned = await client.post(url, headers=ADMIN, json=body)
        assert warned.status == 201
        assert warned.headers["Warning"] == '299 - "unknown field \\"spec.ports[0].bogus\\""'

    run(scenario, tmp_path, unknown_fields=unknown_fields)


def _event(name: str, revision: int, kind: str = "ADDED") -> WatchEvent:
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "resourceVersion": str(revision)}}
    return WatchEvent(kind, obj, None, revision)


def test_take_batch_takes_what_is_queued_in_order_up_to_the_limit() -> None:
    queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
    for i in range(2, 6):
        queue.put_nowait(_event(f"c{i}", i))
    batch, ended = take_batch(_event("c1", 1), queue)
    assert [e.revision for e in batch] == [1, 2, 3, 4, 5] and not ended and queue.empty()
    # Alone, an event goes out alone: nothing waits for more.
    assert take_batch(_event("c6", 6), queue) == ([_event("c6", 6)], False)
    # The limit cuts a batch after the event that reaches it; the rest stays queued, in order.
    for i in range(8, 11):
        queue.put_nowait(_event(f"c{i}", i))
    batch, ended = take_batch(_event("c7", 7), queue, limit=2 * len(_event("c7", 7).line))
    assert [e.revision for e in batch] == [7, 8] and not ended and queue.qsize() == 2
    # The end of the queue (None) ends the watch after what came before it; so does an ERROR, sent last.
    queue = asyncio.Queue()
    queue.put_nowait(_event("c2", 2))
    queue.put_nowait(None)
    assert take_batch(_event("c1", 1), queue) == ([_event("c1", 1), _event("c2", 2)], True)
    error = WatchEvent("ERROR", {"kind": "Status", "code": 410}, None, 0)
    queue.put_nowait(error)
    queue.put_nowait(_event("c9", 9))
    assert take_batch(_event("c3", 3), queue) == ([_event("c3", 3), error], True)
    assert take_batch(None, queue) == ([], True)


def test_a_burst_of_events_reaches_every_watch_whole_and_in_order(tmp_path: Path) -> None:
    """Events that pile up while a watch's writer waits go out together (take_batch): every line is still
    one whole event, none lost or reordered, for a plain watch, a selector watch and a Table watch alike."""
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/configmaps"
        cache = registry.caches["configmaps"]
        start = str(cache.revision)
        plain = await client.get(url, headers=ADMIN, params={"watch": "1", "resourceVersion": start})
        odd = await client.get(url, headers=ADMIN, params={"watch": "1", "resourceVersion": start,
                                                           "labelSelector": "odd=yes"})
        table = await client.get(url, headers={**ADMIN, "Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"},
                                 params={"watch": "1", "resourceVersion": start})
        first = cache.revision + 1
        count = 600  # well over one batch's bytes
        for i in range(count):  # applied in one go, as a burst of store events is: nothing is sent meanwhile
            event = _event(f"c{i}", first + i)
            if i % 2:
                event.object["metadata"]["labels"] = {"odd": "yes"}
            cache.apply(event, f"/registry/configmaps/default/c{i}")
        got = await _read_events(plain, count)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [("ADDED", f"c{i}") for i in range(count)]
        selected = await _read_events(odd, count // 2)
        assert [e["object"]["metadata"]["name"] for e in selected] == [f"c{i}" for i in range(1, count, 2)]
        rows = await _read_events(table, count)
        assert [e["object"]["rows"][0]["cells"][0] for e in rows] == [f"c{i}" for i in range(count)]
        for resp in (plain, odd, table):
            resp.close()

    run(scenario, tmp_path)


def test_an_update_starts_from_the_watch_cache_and_a_stale_copy_never_decides(tmp_path: Path) -> None:
    """GuaranteedUpdate's cachedExistingObject: a write starts from the watch cache's copy (no store read); a
    copy behind the store (the cache lags it by an event) never makes a false 409 nor hides a change."""
    async def scenario(client: TestClient, registry: Registry) -> None:
        url = "/api/v1/namespaces/default/configmaps"
        first = await (await client.post(url, headers=ADMIN, json={"metadata": {"name": "c"},
                                                                  "data": {"a": "1"}})).json()
        cache = registry.caches["configmaps"]
        key = "/registry/configmaps/default/c"

        async def settled() -> None:
            async with asyncio.timeout(5):
                while cache.objects.get(key, {}).get("metadata", {}).get("resourceVersion") != \
                        str(await registry.store.current_revision()):
                    await asyncio.sleep(0.01)

        await settled()
        reads = 0
        store_get = registry.store.get

        async def counting_get(k: str) -> Any:
            nonlocal reads
            reads += 1
            return await store_get(k)

        registry.store.get = counting_get  # type: ignore[method-assign]
        patched = await client.patch(f"{url}/c", headers={**ADMIN, "Content-Type": "application/merge-patch+json"},
                                     data=json.dumps({"data": {"a": "2"}}))
        assert patched.status == 200 and reads == 0  # the cache's copy was current: no store read
        second = await patched.json()
        await settled()

        # The cache one event behind: it still holds the first version.
        cache.objects[key] = first
        # A no-op against the stale copy (a=1) is a change against the stored object (a=2): it is written.
        patched = await client.patch(f"{url}/c", headers={**ADMIN, "Content-Type": "application/merge-patch+json"},
                                     data=json.dumps({"data": {"a": "1"}}))
        third = await patched.json()
        assert patched.status == 200 and third["data"] == {"a": "1"}
        assert int(third["metadata"]["resourceVersion"]) > int(second["metadata"]["resourceVersion"])
        await settled()
        # An update naming the stored resourceVersion succeeds though the copy is older.
        cache.objects[key] = first
        third["data"] = {"a": "3"}
        updated = await client.put(f"{url}/c", headers=ADMIN, json=third)
        assert updated.status == 200 and (await updated.json())["data"] == {"a": "3"}
        # ...and one naming an old resourceVersion is still a 409.
        stale = await client.put(f"{url}/c", headers=ADMIN, json=second)
        assert stale.status == 409
        stored = await (await client.get(f"{url}/c", headers=ADMIN)).json()
        assert stored["data"] == {"a": "3"}

    run(scenario, tmp_path)


def test_a_binding_against_a_stale_cache_copy_is_decided_on_the_stored_pod(tmp_path: Path) -> None:
    async def scenario(client: TestClient, registry: Registry) -> None:
        unbound = await (await client.post("/api/v1/namespaces/default/pods", headers=ADMIN, json=pod("p"))).json()
        bind = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "worker-1"}}
        assert (await client.post("/api/v1/namespaces/default/pods/p/binding", headers=ADMIN, json=bind)).status == 201
        # The cache one event behind (the pod still unbound there): a second binding is still refused.
        registry.caches["pods"].objects["/registry/pods/default/p"] = unbound
        bind["target"] = {"name": "worker-2"}
        again = await client.post("/api/v1/namespaces/default/pods/p/binding", headers=ADMIN, json=bind)
        assert again.status == 409 and "already assigned" in (await again.json())["message"]
        stored = await (await client.get("/api/v1/namespaces/default/pods/p", headers=ADMIN)).json()
        assert stored["spec"]["nodeName"] == "worker-1"
        # A pod that is gone, though the cache still has it: 404.
        await registry.store.delete("/registry/pods/default/p")
        registry.caches["pods"].objects["/registry/pods/default/p"] = unbound
        gone = await client.post("/api/v1/namespaces/default/pods/p/binding", headers=ADMIN, json=bind)
        assert gone.status == 404

    run(scenario, tmp_path)
