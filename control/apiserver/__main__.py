"""`python -m control.apiserver`: run the apiserver (HTTPS) over a store until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl

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
from control.store import open_store

KUBELET_PORT = 10250


def kubelet_logs(registry: Registry):  # type: ignore[no-untyped-def]
    """`kubectl logs`: ask the kubelet of the pod's node (its containerLogs endpoint, as upstream's
    apiserver proxies to the kubelet API)."""

    async def fetch(namespace: str, name: str, query: dict[str, str]) -> bytes:
        pod = await registry.get(BY_KIND["Pod"], namespace, name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise APIError(400, "BadRequest", f'pod "{name}" is not scheduled to a node yet')
        node = await registry.get(BY_KIND["Node"], None, node_name)
        address = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"), None)
        if address is None:
            raise APIError(503, "ServiceUnavailable", f"node {node_name} has no InternalIP")
        container = query.get("container") or ""
        url = f"http://{address}:{KUBELET_PORT}/containerLogs/{namespace}/{name}/{container}".rstrip("/")
        params = {k: v for k, v in query.items() if k == "tailLines"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                    session.get(url, params=params) as response:
                body = await response.read()
                if response.status != 200:
                    raise APIError(404, "NotFound", body.decode(errors="replace") or "logs not found")
                return body
        except aiohttp.ClientError as exc:
            raise APIError(503, "ServiceUnavailable", f"cannot reach the kubelet of {node_name}: {exc}") from None

    return fetch


async def serve(args: argparse.Namespace) -> None:
    store = await open_store(args.store)
    low, high = (int(x) for x in args.service_node_port_range.split("-"))
    registry = Registry(store, admission=KubernetesAdmission(), patcher=apply_patch,
                        allocator=ServiceAllocator(args.service_cluster_ip_range, (low, high)))
    await registry.start()
    await bootstrap(registry, service_cidr=args.service_cluster_ip_range, advertise_address=args.advertise_address,
                    port=args.secure_port)
    server = APIServer(registry, TokenAuthenticator.from_file(args.token_auth_file),
                       advertise_address=args.advertise_address, port=args.secure_port,
                       pod_logs=kubelet_logs(registry), unknown_fields=unknown_fields, openapi=openapi_document)
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
    parser.add_argument("--store", required=True, help="sqlite:///PATH or etcd://HOST:PORT")
    parser.add_argument("--bind-address", default="0.0.0.0")
    parser.add_argument("--secure-port", type=int, default=6443)
    parser.add_argument("--advertise-address", required=True)
    parser.add_argument("--tls-cert-file", required=True)
    parser.add_argument("--tls-private-key-file", required=True)
    parser.add_argument("--token-auth-file", required=True)
    parser.add_argument("--service-cluster-ip-range", default="10.96.0.0/16")
    parser.add_argument("--service-node-port-range", default="30000-32767")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s apiserver %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
