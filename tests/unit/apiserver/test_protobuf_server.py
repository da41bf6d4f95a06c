"""kubectl 1.33's protobuf request bodies through the apiserver's HTTP layer (in-process aiohttp server, SQLite
store): created as the JSON equivalent would be; DELETE bodies in protobuf; malformed bodies are Status 400s."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from control.apiserver.admission import BasicAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator, User
from control.apiserver.bootstrap import bootstrap
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.schema import unknown_fields
from control.apiserver.server import APIServer
from control.store import SQLiteStore

FIXTURES = Path(__file__).parent / "protobuf_fixtures"
Client = TestClient[web.Request, web.Application]
# What kubectl 1.33 sends with its typed commands.
KUBECTL = {"Authorization": "Bearer admin", "Content-Type": "application/vnd.kubernetes.protobuf",
           "Accept": "application/vnd.kubernetes.protobuf,application/json"}


def run(scenario: Callable[[Client], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        store = await SQLiteStore.open(str(tmp_path / "store.db"), compact_interval=None)
        registry = Registry(store, admission=BasicAdmission(), patcher=apply_patch,
                            allocator=ServiceAllocator("10.96.0.0/16", (30000, 32767)))
        await registry.start()
        await bootstrap(registry, service_cidr="10.96.0.0/16", advertise_address="172.18.0.2", port=6443)
        server = APIServer(registry, TokenAuthenticator({"admin": User("kubernetes-admin", ("system:masters",))}),
                           unknown_fields=unknown_fields)
        server.ready = True
        client = TestClient(TestServer(server.app()))
        await client.start_server()
        try:
            await scenario(client)
        finally:
            await client.close()
            await registry.stop()
            await store.close()

    asyncio.run(main())


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.pb").read_bytes()


def delete_options(policy: str, *, uid: str = "") -> bytes:
    """DeleteOptions{preconditions: 2 {uid: 1}, propagationPolicy: 4} in upstream's envelope, as client-go's typed
    Delete sends it."""
    def field(number: int, value: bytes) -> bytes:
        return bytes([number << 3 | 2, len(value)]) + value

    options = (field(2, field(1, uid.encode())) if uid else b"") + field(4, policy.encode())
    type_meta = field(1, b"meta.k8s.io/v1") + field(2, b"DeleteOptions")
    return b"k8s\x00" + field(1, type_meta) + field(2, options)


def test_kubectl_typed_creates_in_protobuf(tmp_path: Path) -> None:
    async def scenario(client: Client) -> None:
        for name, url in [
            ("configmap", "/api/v1/namespaces/default/configmaps"),
            ("configmap_binary", "/api/v1/namespaces/default/configmaps"),
            ("namespace", "/api/v1/namespaces"),
            ("deployment", "/apis/apps/v1/namespaces/default/deployments"),
            ("deployment_zero_replicas", "/apis/apps/v1/namespaces/default/deployments"),
            ("service_nodeport", "/api/v1/namespaces/default/services"),
            ("service_headless", "/api/v1/namespaces/default/services"),
            ("serviceaccount", "/api/v1/namespaces/default/serviceaccounts"),
        ]:
            resp = await client.post(url, headers=KUBECTL, data=fixture(name))
            created = await resp.json()
            assert resp.status == 201, (name, created)
            assert "Warning" not in resp.headers, (name, resp.headers["Warning"])
            sent = json.loads((FIXTURES / f"{name}.json").read_text())
            assert created["metadata"]["name"] == sent["metadata"]["name"]
            assert created["kind"] == sent["kind"] and created["metadata"]["uid"]

        cm = await (await client.get("/api/v1/namespaces/default/configmaps/x1", headers=KUBECTL)).json()
        assert cm["data"] == {"a": "1"}
        binary = await (await client.get("/api/v1/namespaces/default/configmaps/bin1", headers=KUBECTL)).json()
        assert binary["data"] == {"text": "hello"} and binary["binaryData"]["blob"].startswith("AAECAwQF")
        deploy = await (await client.get("/apis/apps/v1/namespaces/default/deployments/web1",
                                         headers=KUBECTL)).json()
        assert deploy["spec"]["replicas"] == 2
        assert deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
        idle = await (await client.get("/apis/apps/v1/namespaces/default/deployments/idle2",
                                       headers=KUBECTL)).json()
        assert idle["spec"]["replicas"] == 0  # a pointer field: zero survives
        svc = await (await client.get("/api/v1/namespaces/default/services/web1", headers=KUBECTL)).json()
        assert svc["spec"]["type"] == "NodePort" and 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
        assert svc["spec"]["ports"][0]["targetPort"] == 8080
        headless = await (await client.get("/api/v1/namespaces/default/services/headless1",
                                           headers=KUBECTL)).json()
        assert headless["spec"]["clusterIP"] == "None"
        ns = await client.get("/api/v1/namespaces/team-b", headers=KUBECTL)
        assert ns.status == 200

    run(scenario, tmp_path)


def test_protobuf_delete_options_and_malformed_bodies(tmp_path: Path) -> None:
    async def scenario(client: Client) -> None:
        url = "/api/v1/namespaces/default/configmaps"
        assert (await client.post(url, headers=KUBECTL, data=fixture("configmap"))).status == 201
        stale = await client.delete(f"{url}/x1", headers=KUBECTL, data=delete_options("Background", uid="other"))
        assert stale.status == 409, await stale.text()  # the precondition was read from the protobuf body
        bad_policy = await client.delete(f"{url}/x1", headers=KUBECTL, data=delete_options("Sometimes"))
        assert bad_policy.status == 400
        gone = await client.delete(f"{url}/x1", headers=KUBECTL, data=delete_options("Background"))
        assert gone.status == 200, await gone.text()
        assert (await client.get(f"{url}/x1", headers=KUBECTL)).status == 404

        for bad in (b"k8s\x00\x0a\x05ab", b"not protobuf", fixture("configmap")[:-3]):
            resp = await client.post(url, headers=KUBECTL, data=bad)
            status = await resp.json()
            assert resp.status == 400 and status["reason"] == "BadRequest", status
        wrong = await client.post(url, headers=KUBECTL, data=fixture("namespace"))
        assert wrong.status == 400  # a Namespace posted to configmaps: the kind check, as for JSON

    run(scenario, tmp_path)
