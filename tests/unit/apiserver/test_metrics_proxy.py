"""The aggregation path of metrics.k8s.io without a cluster: the apiserver's MetricsProxy forwards an
authorized request, as its user, over TLS with its proxy client certificate to the metrics-server
component (control.metricsserver), which accepts only that certificate's name; a metrics-server that
does not answer is upstream's 503. Certificates are made by the cluster's own CA code."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from control.apiserver.auth import User
from control.apiserver.certs import KUBELET_CLIENT_USER, issue, make_certificates
from control.apiserver.certs import cluster_ca as ca_of
from control.apiserver.metricsapi import MetricsProxy, MetricsServerConfig
from control.metricsserver import MetricsAPI, serve, server_context

NODE = {"metadata": {"name": "worker-1"}, "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}}
POD = {"metadata": {"name": "busy", "namespace": "default"}, "spec": {"nodeName": "worker-1",
       "containers": [{"name": "c"}]}, "status": {"phase": "Running"}}


class Lister:
    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str | None]] = []

    async def nodes(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        return [NODE]

    async def pods(self, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.asked.append((namespace, label_selector))
        return [POD]


class Kubelet:
    def __init__(self) -> None:
        self.seconds = 0

    async def fetch(self, url: str) -> str:
        self.seconds += 1
        now = 1_700_000_000_000 + self.seconds * 1000
        return (f"node_cpu_usage_seconds_total {self.seconds} {now}\nnode_memory_working_set_bytes 2048 {now}\n"
                f'container_cpu_usage_seconds_total{{container="c",namespace="default",pod="busy"}} '
                f"{self.seconds / 4} {now}\n"
                f'container_memory_working_set_bytes{{container="c",namespace="default",pod="busy"}} 1024 {now}\n'
                f'container_start_time_seconds{{container="c",namespace="default",pod="busy"}} 1699999990 {now}\n')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_apiserver_proxies_as_its_user_and_the_metrics_server_trusts_only_its_certificate(tmp_path: Path) -> None:
    make_certificates(tmp_path, addresses=["172.18.0.2"])
    other = issue(ca_of(tmp_path), tmp_path / "other.crt", tmp_path / "other.key", common_name="jane", client=True)
    ca = str(tmp_path / "ca.crt")
    proxy_cert, proxy_key = (str(tmp_path / f"apiserver-kubelet-client.{end}") for end in ("crt", "key"))
    lister = Lister()

    async def main() -> None:
        port = _free_port()
        api = MetricsAPI(lister, None, fetch=Kubelet().fetch, min_window_ms=0)
        runner = await serve(api, "127.0.0.1", port, server_context(str(tmp_path / "metrics-server.crt"),
                                                                    str(tmp_path / "metrics-server.key"), ca),
                             frozenset({KUBELET_CLIENT_USER}))
        try:
            proxy = MetricsProxy(MetricsServerConfig(f"https://127.0.0.1:{port}", ca, proxy_cert, proxy_key))
            user = User("jane", ("dev", "system:authenticated"))
            answer = await proxy.forward(user, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
                                         {"labelSelector": "app=busy"}, CIMultiDict())
            body = answer.body
            assert answer.status == 200 and isinstance(body, bytes)
            assert b'"name":"busy"' in body and b'"cpu":"250000000n"' in body
            assert lister.asked[-1] == ("default", "app=busy")
            missing = await proxy.forward(user, "/apis/metrics.k8s.io/v1beta1/nodes/nope", {}, CIMultiDict())
            assert missing.status == 404
            # a client certificate of another name is not the apiserver's: refused
            context = ssl.create_default_context(cafile=ca)
            context.load_cert_chain(str(other.cert), str(other.key))
            async with aiohttp.ClientSession() as session, session.get(
                    f"https://127.0.0.1:{port}/apis/metrics.k8s.io/v1beta1/nodes", ssl=context,
                    headers={"X-Remote-User": "system:admin"}) as refused:
                assert refused.status == 401
        finally:
            await runner.cleanup()
        gone = await proxy.forward(User("jane"), "/apis/metrics.k8s.io/v1beta1/nodes", {}, CIMultiDict())
        assert gone.status == 503

    asyncio.run(main())
