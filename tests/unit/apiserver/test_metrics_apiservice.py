"""v1beta1.metrics.k8s.io as an APIService on a loopback apiserver: registered as the flags say (a proxied
metrics-server: kube-system/metrics-server at the URL's port with the CA as caBundle; served in-process:
Local), listed with upstream's columns, and Available from a real discovery check of a real metrics-server
(control.metricsserver, over TLS with the apiserver's proxy client certificate): True while it answers,
False (FailedDiscoveryCheck) once it is gone or refuses the certificate, True again when it is back."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp

from control.apiserver.certs import KUBELET_CLIENT_USER, make_certificates
from control.apiserver.metricsapi import MetricsServerConfig
from control.apiserver.metricsregistration import NAME, MetricsRegistration
from control.metricsserver import MetricsAPI, serve, server_context
from tests.harness import LocalAPIServer, local_apiserver
from tests.security.authz_kit import call
from tests.unit.apiserver.test_crd_server import until
from tests.unit.apiserver.test_metrics_proxy import Kubelet, Lister, _free_port

PATH = f"/apis/apiregistration.k8s.io/v1/apiservices/{NAME}"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def config(pki: Path, port: int) -> MetricsServerConfig:
    return MetricsServerConfig(f"https://127.0.0.1:{port}", str(pki / "ca.crt"),
                               str(pki / "apiserver-kubelet-client.crt"), str(pki / "apiserver-kubelet-client.key"))


async def metrics_server(pki: Path, port: int, allowed: frozenset[str] = frozenset({KUBELET_CLIENT_USER})) -> Any:
    api = MetricsAPI(Lister(), None, fetch=Kubelet().fetch, min_window_ms=0)
    context = server_context(str(pki / "metrics-server.crt"), str(pki / "metrics-server.key"), str(pki / "ca.crt"))
    return await serve(api, "127.0.0.1", port, context, allowed)


async def row(session: aiohttp.ClientSession, api: LocalAPIServer) -> list[Any]:
    headers = {"Authorization": "Bearer token-admin", "Accept": TABLE}
    async with session.get(f"{api.url}{PATH}", headers=headers) as response:
        table = await response.json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Service", "Available", "Age"]
    cells: list[Any] = table["rows"][0]["cells"][:3]
    return cells


async def availability(session: aiohttp.ClientSession, api: LocalAPIServer, wanted: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        _, got = await call(session, api, "admin", "GET", PATH)
        found = [c for c in (got.get("status") or {}).get("conditions") or [] if c["type"] == "Available"]
        return found[0] if found and found[0]["status"] == wanted else None

    found: dict[str, Any] = await until(check)
    return found


def test_a_proxied_metrics_server_is_registered_and_available_while_it_answers(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_certificates(pki, addresses=["127.0.0.1"])

    async def main() -> None:
        port = _free_port()
        server = await metrics_server(pki, port)
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            registration = MetricsRegistration(api.registry, config(pki, port), served=False, interval=0.05)
            await registration.start()
            try:
                up = await availability(session, api, "True")
                assert (up["reason"], up["message"]) == ("Passed", "all checks passed")
                _, obj = await call(session, api, "admin", "GET", PATH)
                assert obj["spec"]["service"] == {"namespace": "kube-system", "name": "metrics-server",
                                                  "port": port}
                assert base64.b64decode(obj["spec"]["caBundle"]) == (pki / "ca.crt").read_bytes()
                assert "insecureSkipTLSVerify" not in obj["spec"]
                assert (obj["spec"]["group"], obj["spec"]["version"]) == ("metrics.k8s.io", "v1beta1")
                assert await row(session, api) == [NAME, "kube-system/metrics-server", "True"]
                # listed beside the Local ones
                _, listed = await call(session, api, "admin", "GET", "/apis/apiregistration.k8s.io/v1/apiservices")
                assert {NAME, "v1.", "v1.apps", "v1.batch"} <= {i["metadata"]["name"] for i in listed["items"]}

                await server.cleanup()  # the metrics-server goes
                down = await availability(session, api, "False")
                assert down["reason"] == "FailedDiscoveryCheck"
                assert down["message"].startswith(
                    f"failing or missing response from https://127.0.0.1:{port}/apis/metrics.k8s.io/v1beta1")
                assert await row(session, api) == [NAME, "kube-system/metrics-server", "False (FailedDiscoveryCheck)"]

                # back, but trusting another client name only: the apiserver's certificate is refused
                server = await metrics_server(pki, port, frozenset({"someone-else"}))
                refused = await availability(session, api, "False")
                await until(lambda: _message_has(session, api, ": 401"))
                await server.cleanup()
                server = await metrics_server(pki, port)
                again = await availability(session, api, "True")
                assert again["lastTransitionTime"] >= refused["lastTransitionTime"]
            finally:
                await registration.stop()
                await server.cleanup()

    asyncio.run(main())


async def _message_has(session: aiohttp.ClientSession, api: LocalAPIServer, text: str) -> bool:
    _, got = await call(session, api, "admin", "GET", PATH)
    return any(text in c.get("message", "") for c in (got.get("status") or {}).get("conditions") or [])


def test_served_in_process_it_is_local_and_not_served_it_is_absent(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            await MetricsRegistration(api.registry, None, served=False).start()
            assert (await call(session, api, "admin", "GET", PATH))[0] == 404
            registration = MetricsRegistration(api.registry, None, served=True)
            await registration.start()
            await registration.stop()
            _, obj = await call(session, api, "admin", "GET", PATH)
            assert obj["spec"]["service"] is None and "caBundle" not in obj["spec"]
            assert (obj["spec"]["groupPriorityMinimum"], obj["spec"]["versionPriority"]) == (100, 100)
            assert await row(session, api) == [NAME, "Local", "True"]

    asyncio.run(main())


def test_a_restart_with_another_registration_rewrites_the_spec(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_certificates(pki, addresses=["127.0.0.1"])

    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            for port in (_free_port(), _free_port()):
                registration = MetricsRegistration(api.registry, config(pki, port), served=False, interval=0.05)
                await registration.start()
                await availability(session, api, "False")  # nothing listens there
                await registration.stop()
                _, obj = await call(session, api, "admin", "GET", PATH)
                assert obj["spec"]["service"]["port"] == port
            # and served in-process after that: Local, and Available by being so
            registration = MetricsRegistration(api.registry, None, served=True)
            await registration.start()
            _, obj = await call(session, api, "admin", "GET", PATH)
            assert obj["spec"]["service"] is None and "caBundle" not in obj["spec"]
            up = await availability(session, api, "True")
            assert up["reason"] == "Local"
            # and served no more: the object left behind says so
            await MetricsRegistration(api.registry, None, served=False).start()
            down = await availability(session, api, "False")
            assert (down["reason"], down["message"]) == ("ServiceNotFound",
                                                         'service/metrics-server in "kube-system" is not present')

    asyncio.run(main())
