"""`python -m control.apiserver`: run the apiserver (HTTPS) over a store until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from control.apiserver.admission import KubernetesAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator
from control.apiserver.bootstrap import bootstrap
from control.apiserver.errors import APIError
from control.apiserver.openapi import openapi_document
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.resources import BY_KIND
from control.apiserver.schema import unknown_fields
from control.apiserver.server import APIServer
from control.store import EtcdTLS, open_store

KUBELET_PORT = 10250


@dataclass(frozen=True)
class KubeletClientConfig:
    """How the apiserver reaches kubelet APIs: upstream's --kubelet-client-certificate / -key and
    --kubelet-certificate-authority. Kubelets are reached over HTTPS only, their serving certificate
    verified against the CA (it names the node's IP), the apiserver authenticated by its client cert."""

    certificate: str
    key: str
    certificate_authority: str

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.certificate_authority)
        context.load_cert_chain(self.certificate, self.key)
        return context


def _container_of(pod: dict[str, Any], requested: str) -> str:
    """The container a log request is for: the one named, which must be in the pod's spec, or the
    pod's only one (upstream's pod LogLocation in pkg/registry/core/pod/strategy.go)."""
    name = pod["metadata"]["name"]
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if not requested:
        if len(containers) != 1:
            raise APIError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                                              f"[{' '.join(str(c) for c in containers)}]")
        return str(containers[0])
    if requested not in containers:
        raise APIError(400, "BadRequest", f"container {requested} is not valid for pod {name}")
    return requested


def _kubelet_port(node: dict[str, Any]) -> int:
    """The port the node's kubelet reports serving its API on, or the default (upstream's
    NodeConnectionInfoGetter in pkg/kubelet/client/kubelet_client.go)."""
    endpoint = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    port = endpoint.get("Port")
    return port if isinstance(port, int) and 0 < port < 65536 else KUBELET_PORT


def kubelet_logs(registry: Registry, kubelets: KubeletClientConfig | None):  # type: ignore[no-untyped-def]
    """`kubectl logs`: ask the kubelet of the pod's node (its containerLogs endpoint, as upstream's
    apiserver proxies to the kubelet API), over HTTPS with the apiserver's kubelet client certificate."""
    context = kubelets.ssl_context() if kubelets else None

    async def fetch(namespace: str, name: str, query: dict[str, str]) -> bytes:
        pod = await registry.get(BY_KIND["Pod"], namespace, name)
        container = _container_of(pod, query.get("container") or "")
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise APIError(400, "BadRequest", f'pod "{name}" is not scheduled to a node yet')
        if context is None:
            raise APIError(503, "ServiceUnavailable", "the apiserver has no kubelet client credentials: start it "
                                                      "with --kubelet-client-certificate, --kubelet-client-key and "
                                                      "--kubelet-certificate-authority")
        node = await registry.get(BY_KIND["Node"], None, node_name)
        address = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"), None)
        if address is None:
            raise APIError(503, "ServiceUnavailable", f"node {node_name} has no InternalIP")
        port = _kubelet_port(node)
        # every part was checked above (stored names, a container of the pod): no path of the caller's
        url = f"https://{address}:{port}/containerLogs/{namespace}/{name}/{container}"
        params = {k: v for k, v in query.items() if k == "tailLines"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                    session.get(url, params=params, ssl=context) as response:
                body = await response.read()
                if response.status != 200:
                    raise APIError(404 if response.status == 404 else 502,
                                   "NotFound" if response.status == 404 else "BadGateway",
                                   body.decode(errors="replace") or f"the kubelet answered {response.status}")
                return body
        except aiohttp.ClientError as exc:
            raise APIError(503, "ServiceUnavailable", f"cannot reach the kubelet of {node_name}: {exc}") from None

    return fetch


def _kubelet_client(args: argparse.Namespace) -> KubeletClientConfig | None:
    given = (args.kubelet_client_certificate, args.kubelet_client_key, args.kubelet_certificate_authority)
    if not any(given):
        return None
    if not all(given):
        raise SystemExit("kube-apiserver: --kubelet-client-certificate, --kubelet-client-key and "
                         "--kubelet-certificate-authority go together; give all three")
    return KubeletClientConfig(*given)


def _etcd_tls(args: argparse.Namespace) -> EtcdTLS | None:
    given = (args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile)
    if not any(given):
        return None
    if not all(given):
        raise SystemExit("kube-apiserver: --etcd-cafile, --etcd-certfile and --etcd-keyfile go together; give all "
                         "three")
    return EtcdTLS(*given)


async def serve(args: argparse.Namespace) -> None:
    store = await open_store(args.store, tls=_etcd_tls(args))
    low, high = (int(x) for x in args.service_node_port_range.split("-"))
    registry = Registry(store, admission=KubernetesAdmission(), patcher=apply_patch,
                        allocator=ServiceAllocator(args.service_cluster_ip_range, (low, high)))
    await registry.start()
    await bootstrap(registry, service_cidr=args.service_cluster_ip_range, advertise_address=args.advertise_address,
                    port=args.secure_port)
    server = APIServer(registry, TokenAuthenticator.from_file(args.token_auth_file),
                       advertise_address=args.advertise_address, port=args.secure_port,
                       pod_logs=kubelet_logs(registry, _kubelet_client(args)), unknown_fields=unknown_fields,
                       openapi=openapi_document)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert_file, args.tls_private_key_file)
    runner = server.runner()
    await runner.setup()
    site = web.TCPSite(runner, args.bind_address, args.secure_port, ssl_context=context, backlog=1024)
    await site.start()
    server.ready = True
    logging.info("serving on https://%s:%d", args.bind_address, args.secure_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await registry.stop()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="kubesim-apiserver", description=__doc__)
    parser.add_argument("--store", required=True, help="sqlite:///PATH, etcd://HOST:PORT or etcds://HOST:PORT")
    # kube-apiserver's flags for a TLS etcd (etcds://): its CA, and the apiserver's client certificate
    parser.add_argument("--etcd-cafile", help="the CA that signed etcd's serving certificate")
    parser.add_argument("--etcd-certfile", help="the apiserver's client certificate for etcd")
    parser.add_argument("--etcd-keyfile")
    parser.add_argument("--bind-address", default="0.0.0.0")
    parser.add_argument("--secure-port", type=int, default=6443)
    parser.add_argument("--advertise-address", required=True)
    parser.add_argument("--tls-cert-file", required=True)
    parser.add_argument("--tls-private-key-file", required=True)
    parser.add_argument("--token-auth-file", required=True)
    parser.add_argument("--kubelet-client-certificate", help="the client certificate for kubelet APIs")
    parser.add_argument("--kubelet-client-key")
    parser.add_argument("--kubelet-certificate-authority", help="the CA that signed the kubelets' serving certs")
    parser.add_argument("--service-cluster-ip-range", default="10.96.0.0/16")
    parser.add_argument("--service-node-port-range", default="30000-32767")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s apiserver %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
