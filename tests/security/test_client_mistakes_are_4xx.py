"""Defect 7: requests of a few hundred bytes got 500s. Each is now a Kubernetes Status with upstream's 4xx code,
and the apiserver keeps serving."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

from tests.security.apiserver_process import TOKEN, RunningAPIServer, namespaced_pod

PODS = "/api/v1/namespaces/default/pods"


def _deep_json(levels: int) -> bytes:
    return b'{"metadata":{"name":"deep"},"data":' + b'{"a":' * levels + b"1" + b"}" * levels + b"}"


def _deep_yaml(levels: int) -> bytes:
    return b"metadata: {name: deep}\ndata: " + b"[" * levels + b"]" * levels + b"\n"


def _assert_status(answer: tuple[int, Any, Any], code: int, reason: str) -> dict[str, Any]:
    status, _, body = answer
    assert status == code, (status, body)
    assert body["kind"] == "Status" and body["code"] == code and body["reason"] == reason, body
    return dict(body)


def test_deep_nesting_is_a_400_not_a_recursion_error(apiserver: RunningAPIServer) -> None:
    async def scenario() -> None:
        for levels in (400, 5000):
            _assert_status(await apiserver.call("POST", "/api/v1/namespaces/default/configmaps",
                                                data=_deep_json(levels)), 400, "BadRequest")
            _assert_status(await apiserver.call("POST", "/api/v1/namespaces/default/configmaps",
                                                data=_deep_yaml(levels), content_type="application/yaml"),
                           400, "BadRequest")
            _assert_status(await apiserver.call("PATCH", "/api/v1/namespaces/default/configmaps/x",
                                                data=_deep_json(levels),
                                                content_type="application/merge-patch+json"), 400, "BadRequest")

    asyncio.run(scenario())


def test_an_object_too_large_for_the_store_is_a_413(apiserver: RunningAPIServer) -> None:
    async def scenario() -> None:
        # Under the 3 MiB body limit, over the store's 1.5 MiB value limit (etcd's): a Lease's holder is free-form.
        leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
        big = {"metadata": {"name": "big"}, "spec": {"holderIdentity": "x" * 1_600_000}}
        _assert_status(await apiserver.call("POST", leases, body=big), 413, "RequestEntityTooLarge")
        # A JSON patch that copies a value grows past it from a small body.
        assert (await apiserver.call("POST", leases, body={"metadata": {"name": "grows"}, "spec": {
            "holderIdentity": "x" * 800_000}}))[0] == 201
        ops = [{"op": "add", "path": "/spec/strategy", "value": "OldestEmulationVersion"},
               {"op": "copy", "from": "/spec/holderIdentity", "path": "/spec/preferredHolder"}]
        _assert_status(await apiserver.call("PATCH", f"{leases}/grows", body=ops,
                                            content_type="application/json-patch+json"), 413, "RequestEntityTooLarge")

    asyncio.run(scenario())


def test_bad_binding_preconditions_finalizers_and_list_options(apiserver: RunningAPIServer) -> None:
    async def scenario() -> None:
        assert (await apiserver.call("POST", PODS, body=namespaced_pod("bindme")))[0] == 201
        body = _assert_status(await apiserver.call("POST", f"{PODS}/bindme/binding",
                                                   body={"metadata": {"name": "bindme"}, "target": "node-1"}),
                              400, "BadRequest")
        assert "target" in body["message"]
        body = _assert_status(await apiserver.call("DELETE", f"{PODS}/bindme", body={"preconditions": ["uid"]}),
                              400, "BadRequest")
        assert "DeleteOptions.preconditions" in body["message"]
        assert (await apiserver.call("POST", "/api/v1/namespaces", body={"metadata": {"name": "fin"}}))[0] == 201
        body = _assert_status(await apiserver.call("PUT", "/api/v1/namespaces/fin/finalize",
                                                   body={"metadata": {"name": "fin"}, "spec": {"finalizers": 5}}),
                              400, "BadRequest")
        assert "spec.finalizers" in body["message"]
        body = _assert_status(await apiserver.call("GET", PODS, params={"resourceVersion": "-1",
                                                                        "resourceVersionMatch": "Exact"}),
                              400, "BadRequest")
        body = _assert_status(await apiserver.call("GET", PODS, params={"resourceVersion": "0",
                                                                        "resourceVersionMatch": "Exact"}),
                              422, "Invalid")
        assert body["details"]["causes"][0]["field"] == "resourceVersionMatch"
        _assert_status(await apiserver.call("GET", PODS, params={"resourceVersionMatch": "Sometime",
                                                                 "resourceVersion": "1"}), 422, "Invalid")
        _assert_status(await apiserver.call("GET", PODS, params={"watch": "1", "resourceVersion": "-3"}),
                       400, "BadRequest")
        # The pod is untouched by all of it.
        status, _, pod = await apiserver.call("GET", f"{PODS}/bindme")
        assert status == 200 and not pod["spec"].get("nodeName")

    asyncio.run(scenario())


async def _raw_request(api: RunningAPIServer, head: bytes) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port, ssl=api.ssl_context(),
                                                   server_hostname="127.0.0.1")
    try:
        writer.write(head)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body) if body.startswith(b"{") else {}


def test_connect_is_method_not_allowed(apiserver: RunningAPIServer) -> None:
    for target in (f"{PODS}/x", "127.0.0.1:443"):
        head = (f"CONNECT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Connection: close\r\n\r\n").encode()
        code, body = asyncio.run(_raw_request(apiserver, head))
        assert 400 <= code < 500, (target, code, body)
        if target.startswith("/"):
            assert code == 405 and body["reason"] == "MethodNotAllowed", body
    assert apiserver.alive()


def test_ssl_context_is_verified(apiserver: RunningAPIServer) -> None:
    assert apiserver.ssl_context().verify_mode == ssl.CERT_REQUIRED


def test_namespaces_cannot_be_deleted_as_a_collection(apiserver: RunningAPIServer) -> None:
    """Upstream's namespace storage has no DeleteCollection (discovery lists no deletecollection verb): one DELETE on
    /api/v1/namespaces must not start terminating every namespace, default included."""
    async def scenario() -> None:
        _assert_status(await apiserver.call("DELETE", "/api/v1/namespaces"), 405, "MethodNotAllowed")
        _assert_status(await apiserver.call("DELETE", "/api/v1/namespaces", body={"propagationPolicy": "Orphan"}),
                       405, "MethodNotAllowed")
        status, _, namespace = await apiserver.call("GET", "/api/v1/namespaces/default")
        assert status == 200 and namespace["status"]["phase"] == "Active" and \
            "deletionTimestamp" not in namespace["metadata"], namespace
        status, _, discovery = await apiserver.call("GET", "/api/v1")
        verbs = next(r["verbs"] for r in discovery["resources"] if r["name"] == "namespaces")
        assert "deletecollection" not in verbs
        # Collections that do serve it still do.
        assert (await apiserver.call("DELETE", "/api/v1/namespaces/default/configmaps",
                                     params={"labelSelector": "nothing=here"}))[0] == 200

    asyncio.run(scenario())
