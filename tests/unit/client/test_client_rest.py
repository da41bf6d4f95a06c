"""Client: paths, verbs and the mapping of Kubernetes Status errors, against the fake apiserver."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from typing import Any

import aiohttp
import pytest
from kubefake import FakeApiServer, Sleeps, serving

from control.client import (
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    AlreadyExists,
    ApiConnectionError,
    ApiError,
    BadRequest,
    Client,
    ConfigError,
    Conflict,
    Expired,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ProtocolError,
    ServerError,
    StatusCause,
    TooManyRequests,
    Unauthorized,
    error_from_response,
    error_from_status,
    resource_path,
)


def svc(name: str, ns: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"ports": [{"port": 80}]}}


# --- paths -------------------------------------------------------------------------------------------------


def test_paths_core_and_named_groups() -> None:
    assert resource_path("", "v1", "pods") == "/api/v1/pods"
    assert resource_path("", "v1", "pods", "default") == "/api/v1/namespaces/default/pods"
    assert resource_path("", "v1", "pods", "kube-system", "web", "status") == \
        "/api/v1/namespaces/kube-system/pods/web/status"
    assert resource_path("", "v1", "nodes", name="n1") == "/api/v1/nodes/n1"
    assert resource_path("apps", "v1", "deployments", "default", "web", "scale") == \
        "/apis/apps/v1/namespaces/default/deployments/web/scale"
    assert ENDPOINT_SLICES.path("ns") == "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices"
    assert NAMESPACES.path(name="default") == "/api/v1/namespaces/default"
    assert DEPLOYMENTS.api_version == "apps/v1" and PODS.api_version == "v1"


def test_paths_refuse_tricks_and_wrong_scope() -> None:
    with pytest.raises(ValueError, match="path segment"):
        resource_path("", "v1", "pods", "default", "..")
    assert resource_path("", "v1", "pods", "default", "a/b") == "/api/v1/namespaces/default/pods/a%2Fb"
    with pytest.raises(ValueError, match="cluster-scoped"):
        NODES.path("default", "n1")
    with pytest.raises(ValueError, match="live in namespaces"):
        PODS.path(name="web")
    with pytest.raises(ValueError, match="needs an object name"):
        resource_path("", "v1", "pods", "default", None, "status")


# --- CRUD --------------------------------------------------------------------------------------------------


def test_crud_round_trip() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        async with serving(fake) as (_, client):
            created = await client.create(SERVICES, svc("web", app="web"))
            assert created["metadata"]["resourceVersion"]
            got = await client.get(SERVICES, "web", namespace="default")
            assert got["metadata"]["uid"] == created["metadata"]["uid"]

            got["spec"]["ports"][0]["port"] = 8080
            updated = await client.update(SERVICES, got)
            assert updated["spec"]["ports"][0]["port"] == 8080
            assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

            patched = await client.patch(SERVICES, "web", {"metadata": {"labels": {"tier": "front"}}},
                                         namespace="default")
            assert patched["metadata"]["labels"] == {"app": "web", "tier": "front"}
            patched = await client.patch(SERVICES, "web", [{"op": "add", "path": "/spec/type", "value": "NodePort"}],
                                         namespace="default", patch_type="json")
            assert patched["spec"]["type"] == "NodePort"
            patched = await client.patch(SERVICES, "web", {"spec": {"ports": [{"port": 81}]}},
                                         namespace="default", patch_type="strategic")
            ctypes = [h["Content-Type"] for (m, _p, _q, _b, h) in fake.requests if m == "PATCH"]
            assert ctypes == ["application/merge-patch+json", "application/json-patch+json",
                              "application/strategic-merge-patch+json"]

            status_body = dict(patched, status={"loadBalancer": {"ingress": [{"ip": "172.18.255.1"}]}})
            after = await client.update_status(SERVICES, status_body)
            assert after["status"]["loadBalancer"]["ingress"][0]["ip"] == "172.18.255.1"
            assert fake.requests[-1][1] == "/api/v1/namespaces/default/services/web/status"

            deleted = await client.delete(SERVICES, "web", namespace="default", propagation_policy="Foreground",
                                          grace_period_seconds=0,
                                          preconditions={"uid": created["metadata"]["uid"]})
            assert deleted["metadata"]["name"] == "web"
            method, path, _q, body, _h = fake.requests[-1]
            assert (method, path) == ("DELETE", "/api/v1/namespaces/default/services/web")
            assert body == {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
                            "gracePeriodSeconds": 0, "preconditions": {"uid": created["metadata"]["uid"]}}
            with pytest.raises(NotFound):
                await client.get(SERVICES, "web", namespace="default")

    asyncio.run(scenario())


def test_cluster_scoped_and_named_group_resources() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        async with serving(fake) as (_, client):
            await client.create(NODES, {"metadata": {"name": "node-1"}})
            assert (await client.get(NODES, "node-1"))["kind"] == "Node"
            await client.create(DEPLOYMENTS, {"metadata": {"name": "web", "namespace": "apps"}})
            assert fake.requests[-1][1] == "/apis/apps/v1/namespaces/apps/deployments"
            with pytest.raises(ValueError, match="namespace"):
                await client.create(PODS, {"metadata": {"name": "nameless-namespace"}})

    asyncio.run(scenario())


def test_bind_and_create_event() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        async with serving(fake) as (_, client):
            pod = await client.create(PODS, {"metadata": {"name": "web-1", "namespace": "default"}, "spec": {}})
            result = await client.bind("web-1", "node-2", namespace="default", uid=pod["metadata"]["uid"])
            assert result["status"] == "Success"
            _m, path, _q, body, _h = fake.requests[-1]
            assert path == "/api/v1/namespaces/default/pods/web-1/binding"
            assert body["kind"] == "Binding" and body["target"] == {"apiVersion": "v1", "kind": "Node",
                                                                    "name": "node-2"}
            assert (await client.get(PODS, "web-1", namespace="default"))["spec"]["nodeName"] == "node-2"

            when = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
            event = await client.create_event(pod, reason="Scheduled", message="assigned default/web-1 to node-2",
                                              component="default-scheduler", now=when)
            assert event["metadata"]["namespace"] == "default"
            assert event["metadata"]["name"] == f"web-1.{int(when.timestamp() * 1e9):x}"
            assert event["involvedObject"]["kind"] == "Pod"
            assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
            assert event["source"] == {"component": "default-scheduler"}
            assert event["firstTimestamp"] == "2026-05-01T12:00:00Z" and event["count"] == 1
            # A cluster-scoped object's events go to "default", as client-go's recorder does.
            node = await client.create(NODES, {"metadata": {"name": "node-2"}})
            ev = await client.create_event(node, reason="NodeReady", message="ready", component="kubelet",
                                           host="node-2", event_type="Normal")
            assert ev["metadata"]["namespace"] == "default" and "namespace" not in ev["involvedObject"]

    asyncio.run(scenario())


# --- errors ------------------------------------------------------------------------------------------------


def test_status_errors_map_to_the_tree() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        async with serving(fake) as (_, client):
            await client.create(SERVICES, svc("web"))
            with pytest.raises(AlreadyExists) as exists:
                await client.create(SERVICES, svc("web"))
            assert exists.value.status == 409 and exists.value.reason == "AlreadyExists"
            assert exists.value.details == {"name": "web", "group": "", "kind": "services"}
            assert exists.value.message == 'services "web" already exists'

            stale = svc("web")
            stale["metadata"]["resourceVersion"] = "1"
            with pytest.raises(Conflict) as conflict:
                await client.update(SERVICES, stale)
            assert "the object has been modified" in conflict.value.message

            with pytest.raises(NotFound) as missing:
                await client.get(SERVICES, "nope", namespace="default")
            assert missing.value.status == 404 and missing.value.details["name"] == "nope"

            with pytest.raises(Invalid) as invalid:
                await client.create(SERVICES, {"metadata": {"namespace": "default"}})
            assert invalid.value.status == 422
            assert invalid.value.causes == [StatusCause("FieldValueRequired",
                                                        "Required value: name or generateName is required",
                                                        "metadata.name")]

            fake.forbidden.add(("list", "pods"))
            with pytest.raises(Forbidden) as forbidden:
                await client.list(PODS)
            assert 'cannot list resource "pods"' in forbidden.value.message

            fake.inject(400, "BadRequest", "bad")
            with pytest.raises(BadRequest):
                await client.get(SERVICES, "web", namespace="default")
            fake.inject(500, "InternalError", "etcd fell over")
            with pytest.raises(ServerError) as server_error:
                await client.get(SERVICES, "web", namespace="default")
            assert server_error.value.status == 500

        async with serving(fake, token="wrong-token") as (_, client):
            with pytest.raises(Unauthorized) as unauthorized:
                await client.list(SERVICES)
            assert unauthorized.value.status == 401 and isinstance(unauthorized.value, ApiError)

    asyncio.run(scenario())


def test_non_status_bodies_and_watch_error_objects() -> None:
    err = error_from_response(502, b"<html>Bad Gateway</html>")
    assert isinstance(err, ServerError) and err.reason == "InternalError" and err.status == 502
    assert "Bad Gateway" in err.message
    assert isinstance(error_from_response(404, b""), NotFound)
    assert type(error_from_status({"kind": "Status", "code": 410, "reason": "Expired", "message": "old"})) is Expired
    assert type(error_from_status({"kind": "Status", "code": 410, "reason": "Gone"})) is Gone
    assert issubclass(Expired, Gone)
    # A Status code in the body wins over a missing one; a 409 without AlreadyExists is a Conflict.
    assert isinstance(error_from_status({"kind": "Status", "code": 409}), Conflict)
    too_many = error_from_response(429, b"", "7")
    assert isinstance(too_many, TooManyRequests) and too_many.retry_after == 7.0


def test_retry_after_is_honoured_then_gives_up() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        sleeps = Sleeps()
        async with serving(fake, sleep=sleeps, max_retries=3) as (_, client):
            await client.create(SERVICES, svc("web"))
            fake.inject(429, "TooManyRequests", "slow down", times=2, headers={"Retry-After": "2"})
            got = await client.get(SERVICES, "web", namespace="default")
            assert got["metadata"]["name"] == "web"
            assert sleeps.calls == [2.0, 2.0]

            fake.inject(429, "TooManyRequests", "slow down", times=10, headers={"Retry-After": "1"})
            with pytest.raises(TooManyRequests) as exc:
                await client.get(SERVICES, "web", namespace="default")
            assert exc.value.retry_after == 1.0
            assert sleeps.calls == [2.0, 2.0, 1.0, 1.0, 1.0]

            # 5xx with Retry-After is retried too; without it, it is not.
            fake.injected.clear()
            fake.inject(503, "ServiceUnavailable", "starting", headers={"Retry-After": "0"})
            assert (await client.get(SERVICES, "web", namespace="default"))["metadata"]["name"] == "web"
            fake.inject(503, "ServiceUnavailable", "starting")
            with pytest.raises(ServerError):
                await client.get(SERVICES, "web", namespace="default")

    asyncio.run(scenario())


def test_connection_errors_are_typed() -> None:
    async def scenario() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # Nothing listens on the port any more: connection refused.
        async with Client(f"http://127.0.0.1:{port}", token="t", connect_timeout=2) as client:
            with pytest.raises(ApiConnectionError):
                await client.get(NODES, "n1")
            with pytest.raises(ApiConnectionError):
                async with client.watch(NODES) as events:
                    async for _ in events:
                        pass

    asyncio.run(scenario())


# --- pagination --------------------------------------------------------------------------------------------


def test_list_pages_transparently_from_one_snapshot() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        for i in range(7):
            fake.put("services", svc(f"s{i}"))
        async with serving(fake) as (_, client):
            first_rv = str(fake.revision)
            listed = await client.list(SERVICES, namespace="default", limit=3)
            assert [o["metadata"]["name"] for o in listed["items"]] == [f"s{i}" for i in range(7)]
            assert listed["metadata"] == {"resourceVersion": first_rv}
            assert listed["kind"] == "ServiceList"
            lists = [q for (m, _p, q, _b, _h) in fake.requests if m == "GET"]
            assert [q.get("limit") for q in lists] == ["3", "3", "3"]
            assert "continue" not in lists[0] and all("continue" in q for q in lists[1:])

            # Explicit paging, with a change between pages that the snapshot must not show.
            page = await client.list(SERVICES, namespace="default", limit=4, all_pages=False)
            assert len(page["items"]) == 4 and page["metadata"]["remainingItemCount"] == 3
            fake.put("services", svc("s0a"))
            fake.remove("services", "default/s6")
            rest = await client.list(SERVICES, namespace="default", limit=4, all_pages=False,
                                     continue_=page["metadata"]["continue"], resource_version="ignored")
            assert [o["metadata"]["name"] for o in rest["items"]] == ["s4", "s5", "s6"]
            assert "resourceVersion" not in fake.requests[-1][2]

    asyncio.run(scenario())


def test_list_transforms_each_page_as_it_arrives() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        for i in range(7):
            fake.put("services", svc(f"s{i}"))
        async with serving(fake) as (_, client):
            pages_read: list[int] = []

            def keep_name(obj: dict[str, Any]) -> dict[str, Any] | None:
                pages_read.append(sum(1 for r in fake.requests if r[0] == "GET"))
                name = obj["metadata"]["name"]
                return None if name == "s3" else {"metadata": {"name": name}}

            listed = await client.list(SERVICES, namespace="default", limit=3, transform=keep_name)
            assert listed["items"] == [{"metadata": {"name": f"s{i}"}} for i in (0, 1, 2, 4, 5, 6)]
            # Each page's items were transformed before the next page was asked for.
            assert pages_read == [1, 1, 1, 2, 2, 2, 3]
            assert listed["metadata"] == {"resourceVersion": str(fake.revision)}

            unpaged = await client.list(SERVICES, namespace="default", transform=keep_name)
            assert unpaged["items"] == listed["items"]

            fake.inject(410, "Expired", "continue token too old", when=lambda r: "continue" in r.query)
            expired = await client.list(SERVICES, namespace="default", limit=3, transform=keep_name)
            assert expired["items"] == listed["items"]

    asyncio.run(scenario())


def test_list_falls_back_to_a_full_list_when_the_continue_token_expires() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        for i in range(5):
            fake.put("services", svc(f"s{i}"))
        async with serving(fake) as (_, client):
            page = await client.list(SERVICES, limit=2, all_pages=False)
            fake.put("services", svc("s9"))
            fake.compact()
            with pytest.raises(Expired):
                await client.list(SERVICES, limit=2, continue_=page["metadata"]["continue"], all_pages=False)

            # Transparent paging: expire the snapshot between the first and second page.
            fake.inject(410, "Expired", "continue token too old", when=lambda r: "continue" in r.query)
            listed = await client.list(SERVICES, limit=2, label_selector="")
            assert [o["metadata"]["name"] for o in listed["items"]] == [f"s{i}" for i in (0, 1, 2, 3, 4, 9)]
            assert "limit" not in fake.requests[-1][2] and "continue" not in fake.requests[-1][2]

    asyncio.run(scenario())


def test_list_selectors_and_resource_version_params() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("services", svc("a", app="x"))
        fake.put("services", svc("b", app="y"))
        fake.put("services", svc("c", "other", app="x"))
        async with serving(fake) as (_, client):
            listed = await client.list(SERVICES, label_selector="app=x")
            assert sorted(o["metadata"]["name"] for o in listed["items"]) == ["a", "c"]
            listed = await client.list(SERVICES, field_selector="metadata.name=b", resource_version="0",
                                       resource_version_match="NotOlderThan")
            assert [o["metadata"]["name"] for o in listed["items"]] == ["b"]
            assert fake.requests[-1][2] == {"fieldSelector": "metadata.name=b", "resourceVersion": "0",
                                            "resourceVersionMatch": "NotOlderThan"}

    asyncio.run(scenario())


# --- credentials -------------------------------------------------------------------------------------------


def test_token_goes_in_the_header_and_nowhere_else(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        fake = FakeApiServer(token="s3cr3t-value")
        sleeps = Sleeps()
        async with serving(fake, sleep=sleeps) as (_, client):
            caplog.set_level(logging.DEBUG)
            fake.inject(429, "TooManyRequests", "slow", headers={"Retry-After": "0"})
            await client.list(SERVICES)
            assert fake.requests[-1][4]["Authorization"] == "Bearer s3cr3t-value"
            assert "s3cr3t" not in repr(client)
            with pytest.raises(NotFound) as exc:
                await client.get(SERVICES, "x", namespace="default")
            assert "s3cr3t" not in str(exc.value)
        assert "s3cr3t" not in caplog.text

    asyncio.run(scenario())


def test_token_file_is_read_and_reread(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        token = tmp_path / "token"
        token.write_text("first\n")
        fake = FakeApiServer(token="first")
        async with serving(fake, token=None, token_file=token) as (_, client):
            await client.list(SERVICES)
            token.write_text("second")
            fake.token = "second"
            # Within a minute the cached token is used; after that the file is read again (client-go).
            with pytest.raises(Unauthorized):
                await client.list(SERVICES)
            clock = [1e9]
            monkeypatch.setattr("control.client._client.time.monotonic", lambda: clock[0])
            await client.list(SERVICES)

    asyncio.run(scenario())


def test_a_success_that_is_not_json_is_a_protocol_error() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        async with serving(fake) as (_, client):
            fake.inject(200, "", raw=b"<html>captive portal</html>")
            with pytest.raises(ProtocolError, match="not JSON"):
                await client.list(SERVICES)
            fake.inject(200, "", raw=b"[1, 2]")
            with pytest.raises(ProtocolError, match="JSON object"):
                await client.list(SERVICES)

    asyncio.run(scenario())


def test_an_injected_session_is_used_and_left_open() -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("nodes", {"metadata": {"name": "n1"}})
        async with serving(fake) as (server, _), aiohttp.ClientSession() as session:
            client = Client(str(server.make_url("")), token="test-token", session=session)
            assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"
            await client.close()
            assert not session.closed
            with pytest.raises(ConfigError, match="closed"):
                await client.get(NODES, "n1")

    asyncio.run(scenario())


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Client("ftp://example")
    with pytest.raises(ConfigError):
        Client("https://127.0.0.1:6443", token="a", token_file="b")
    with pytest.raises(ConfigError):
        Client("https://127.0.0.1:6443", insecure_skip_tls_verify=True, ca_data="x")
    with pytest.raises(ConfigError):
        Client("https://127.0.0.1:6443", ca_file="/nonexistent/ca.crt")
