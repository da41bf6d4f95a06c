"""`python -m control.controllers`: the controller-manager process, until SIGTERM.

    python -m control.controllers --kubeconfig controller-manager.kubeconfig --cluster-cidr 10.244.0.0/16 \
        --node-cidr-mask-size 24 --lb-pool 172.18.255.200-172.18.255.250 --node-monitor-grace-period 40s \
        --pod-eviction-timeout 5m --controllers '*'

With --metrics-bind-address it also plays metrics-server (control.metricsserver): metrics.k8s.io over
HTTPS, which the apiserver proxies to, as kube-controller-manager serves its own HTTPS port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from control.api.duration import parse_duration
from control.client import Client, KubeClientError, load_kubeconfig
from control.controllers._base import Options
from control.controllers._manager import ControllerManager, registry, select_controllers

log = logging.getLogger("control.controllers")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m control.controllers", description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", help="kubeconfig with the controller-manager's credentials "
                   "(default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--controllers", action="append", default=None,
                   help="'*' for all, NAME to enable, -NAME to disable, comma-separated; known: "
                        + ", ".join(registry()))
    p.add_argument("--cluster-cidr", help="pod addresses; nodes without spec.podCIDR get a subnet of it")
    p.add_argument("--node-cidr-mask-size", type=int, default=24)
    p.add_argument("--lb-pool", default="", help="LoadBalancer addresses: CIDRs, FIRST-LAST ranges or addresses, "
                   "comma-separated")
    p.add_argument("--node-monitor-grace-period", type=_duration, default=40.0,
                   help="silence after which a node is Unknown (e.g. 40s)")
    p.add_argument("--node-monitor-period", type=_duration, default=5.0)
    p.add_argument("--pod-eviction-timeout", "--default-eviction-timeout", dest="eviction_timeout",
                   type=_duration, default=300.0,
                   help="how long pods without a not-ready/unreachable toleration stay on a failed node")
    p.add_argument("--concurrent-syncs", type=int, default=5, help="workers per controller")
    p.add_argument("--resync-period", type=_duration, default=300.0)
    p.add_argument("--kube-api-qps", type=float, default=20.0,
                   help="requests a second each controller may send the apiserver (0: no limit)")
    p.add_argument("--kube-api-burst", type=int, default=30, help="requests each controller may send at once")
    p.add_argument("--root-ca-file", help="the cluster CA (PEM), published as every namespace's kube-root-ca.crt")
    # metrics-server's role, in this process (control.metricsserver): what the apiserver proxies metrics.k8s.io to
    p.add_argument("--metrics-bind-address", default="", help="HOST:PORT to serve metrics.k8s.io on over HTTPS "
                   "(default: not served)")
    p.add_argument("--metrics-tls-cert-file")
    p.add_argument("--metrics-tls-private-key-file")
    p.add_argument("--requestheader-client-ca-file", help="the CA of the apiserver's proxy client certificate")
    p.add_argument("--requestheader-allowed-names", default="", help="its common names, comma-separated")
    p.add_argument("--kubelet-client-certificate", help="the client certificate to scrape kubelets with")
    p.add_argument("--kubelet-client-key")
    p.add_argument("--kubelet-certificate-authority", help="the CA of the kubelets' serving certificates")
    p.add_argument("--local-path-root", default="",
                   help="the local-path provisioner's directory for volumes (a subdirectory per node)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


_METRICS_FLAGS = ("metrics_tls_cert_file", "metrics_tls_private_key_file", "requestheader_client_ca_file",
                  "requestheader_allowed_names", "kubelet_client_certificate", "kubelet_client_key",
                  "kubelet_certificate_authority")


def _check_metrics_flags(args: argparse.Namespace) -> None:
    if args.metrics_bind_address:
        missing = [f"--{name.replace('_', '-')}" for name in _METRICS_FLAGS if not getattr(args, name)]
        if missing:
            raise ValueError(f"--metrics-bind-address needs {', '.join(missing)} too")
        host, _, port = args.metrics_bind_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--metrics-bind-address {args.metrics_bind_address!r}: give HOST:PORT")


async def _start_metrics_server(args: argparse.Namespace, client: Client) -> web.AppRunner | None:
    """metrics-server's API (control.metricsserver), reading nodes and pods with this process' client."""
    if not args.metrics_bind_address:
        return None
    from control.metricsserver import ClientLister, MetricsAPI, serve, server_context

    kubelets = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.kubelet_certificate_authority)
    kubelets.load_cert_chain(args.kubelet_client_certificate, args.kubelet_client_key)
    host, _, port = args.metrics_bind_address.rpartition(":")
    context = server_context(args.metrics_tls_cert_file, args.metrics_tls_private_key_file,
                             args.requestheader_client_ca_file)
    allowed = frozenset(n.strip() for n in args.requestheader_allowed_names.split(",") if n.strip())
    return await serve(MetricsAPI(ClientLister(client), kubelets), host, int(port), context, allowed)


def options_from(args: argparse.Namespace) -> Options:
    return Options(cluster_cidr=args.cluster_cidr, node_cidr_mask_size=args.node_cidr_mask_size,
                   lb_pool=args.lb_pool, node_monitor_grace_period=args.node_monitor_grace_period,
                   node_monitor_period=args.node_monitor_period, default_eviction_timeout=args.eviction_timeout,
                   workers=args.concurrent_syncs, resync_period=args.resync_period,
                   root_ca=Path(args.root_ca_file).read_text() if args.root_ca_file else "",
                   local_path_root=args.local_path_root, kube_api_qps=args.kube_api_qps,
                   kube_api_burst=args.kube_api_burst)


async def run(args: argparse.Namespace) -> int:
    client = load_kubeconfig(args.kubeconfig, user_agent="kube-controller-manager/v1.30.0 (linux/amd64) kubesim")
    manager = ControllerManager(client, options_from(args), controllers=args.controllers or ["*"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("controller-manager starting against %s with controllers %s", client.base_url,
             ", ".join(manager.controllers))
    metrics = await _start_metrics_server(args, client)
    starting = loop.create_task(manager.start())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if starting.done() and starting.exception() is not None:
        log.error("controller-manager failed to start: %s", starting.exception())
        code = 1
    elif starting.done():
        log.info("controller-manager running")
        await stopping
    log.info("controller-manager stopping")
    starting.cancel()
    stopping.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await starting
    await manager.stop()
    if metrics is not None:
        await metrics.cleanup()
    await client.close()
    return code


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        select_controllers(args.controllers or ["*"], registry())
        options_from(args)
        _check_metrics_flags(args)
        if args.cluster_cidr:
            import ipaddress
            ipaddress.ip_network(args.cluster_cidr, strict=False)
        if args.lb_pool:
            from control.controllers._loadbalancer import parse_pool
            parse_pool(args.lb_pool)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args))
    except KubeClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
