"""`python -m control.apiserver`: run the apiserver (HTTPS) over a store until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from control.apiserver.admission import KubernetesAdmission
from control.apiserver.aggregation import Aggregator
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator
from control.apiserver.bootstrap import bootstrap
from control.apiserver.kubeletproxy import KubeletClientConfig, KubeletProxy
from control.apiserver.metricsapi import MetricsServerConfig
from control.apiserver.metricsregistration import MetricsRegistration
from control.apiserver.openapi import openapi_document
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.schema import unknown_fields
from control.apiserver.server import APIServer
from control.apiserver.serviceaccount import DEFAULT_ISSUER, TokenIssuer
from control.store import EtcdTLS, open_store


def kubelet_logs(registry: Registry, kubelets: KubeletClientConfig | None
                 ) -> Callable[[str, str, Mapping[str, str]], Awaitable[bytes]]:
    """`kubectl logs` without follow: the pod's log read from its kubelet (KubeletProxy.read_log)."""
    return KubeletProxy(registry, kubelets).read_log


def _kubelet_client(args: argparse.Namespace) -> KubeletClientConfig | None:
    given = (args.kubelet_client_certificate, args.kubelet_client_key, args.kubelet_certificate_authority)
    if not any(given):
        return None
    if not all(given):
        raise SystemExit("kube-apiserver: --kubelet-client-certificate, --kubelet-client-key and "
                         "--kubelet-certificate-authority go together; give all three")
    return KubeletClientConfig(*given)


def _metrics_server(args: argparse.Namespace) -> MetricsServerConfig | None:
    given = (args.metrics_server_url, args.metrics_server_ca_file, args.proxy_client_cert_file,
             args.proxy_client_key_file)
    if not any(given):
        return None
    if not all(given):
        raise SystemExit("kube-apiserver: --metrics-server-url, --metrics-server-ca-file, --proxy-client-cert-file "
                         "and --proxy-client-key-file go together; give all four")
    return MetricsServerConfig(*given)


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
    issuer = TokenIssuer.from_file(args.service_account_signing_key_file, args.service_account_issuer) \
        if args.service_account_signing_key_file else None
    registry = Registry(store, admission=KubernetesAdmission(), patcher=apply_patch,
                        allocator=ServiceAllocator(args.service_cluster_ip_range, (low, high)),
                        service_account_tokens=issuer is not None)
    await registry.start()
    await bootstrap(registry, service_cidr=args.service_cluster_ip_range, advertise_address=args.advertise_address,
                    port=args.secure_port)
    aggregator = Aggregator(registry)  # upstream's clusterrole-aggregation controller, in-process
    aggregator.start()
    metrics_server = _metrics_server(args)
    server = APIServer(registry, TokenAuthenticator.from_file(args.token_auth_file),
                       advertise_address=args.advertise_address, port=args.secure_port,
                       kubelets=KubeletProxy(registry, _kubelet_client(args)), unknown_fields=unknown_fields,
                       openapi=openapi_document, service_accounts=issuer, metrics_server=metrics_server)
    # v1beta1.metrics.k8s.io's APIService, as the flags register it, and its Available condition
    registration = MetricsRegistration(registry, metrics_server, served=server.metrics is not None)
    await registration.start()
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
    # Watches never end by themselves: left open, they would hold the runner's shutdown for its whole
    # timeout (upstream ends them at termination too). Other in-flight requests get the timeout to finish.
    registry.end_watches()
    await runner.cleanup()
    await registration.stop()
    await aggregator.stop()
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
    parser.add_argument("--service-account-signing-key-file",
                        help="RSA key (PEM) that signs ServiceAccount tokens: serves serviceaccounts/token, "
                             "authenticates its tokens and mounts them into pods")
    parser.add_argument("--service-account-issuer", default=DEFAULT_ISSUER)
    parser.add_argument("--kubelet-client-certificate", help="the client certificate for kubelet APIs")
    parser.add_argument("--kubelet-client-key")
    parser.add_argument("--kubelet-certificate-authority", help="the CA that signed the kubelets' serving certs")
    parser.add_argument("--service-cluster-ip-range", default="10.96.0.0/16")
    parser.add_argument("--service-node-port-range", default="30000-32767")
    # the registration of v1beta1.metrics.k8s.io (upstream: an APIService and its service) and upstream's
    # proxy client flags; without them, metrics.k8s.io is served in this process
    parser.add_argument("--metrics-server-url", help="https://HOST:PORT of the metrics-server to proxy "
                                                     "metrics.k8s.io to")
    parser.add_argument("--metrics-server-ca-file", help="the CA that signed the metrics-server's certificate")
    parser.add_argument("--proxy-client-cert-file", help="the client certificate presented to the metrics-server")
    parser.add_argument("--proxy-client-key-file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s apiserver %(levelname)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
