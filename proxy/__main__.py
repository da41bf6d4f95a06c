"""`python -m proxy`: one node's kube-proxy, run inside that node's network namespace.

The process entry lives here, beside the proxy, as every other component's does; `kubesim proxy` only
hands its arguments on (and, for `--cleanup --node`, finds the node's namespace first). Flags and
defaults are upstream's kube-proxy's: metrics on 127.0.0.1:10249 so pods and other nodes cannot read
them, healthz on 0.0.0.0:10256.

Exit codes: 0 done (or stopped by SIGTERM/SIGINT), 1 a rule we could not remove, 2 bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from control.client import load_kubeconfig
from proxy.errors import ProxyError
from proxy.server import Backend, ProxyConfig, ProxyServer

PROG = "kube-proxy"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="kube-proxy: make Service IPs load-balance to "
                                     "their endpoints on this node (nftables or iptables).")
    parser.add_argument("--kubeconfig", help="credentials of system:kube-proxy (required unless --cleanup)")
    parser.add_argument("--node-name", help="the node this proxy serves, its own Node object (required unless "
                        "--cleanup)")
    parser.add_argument("--mode", choices=("nftables", "iptables"), default="nftables")
    parser.add_argument("--iptables-legacy", action="store_true",
                        help="in iptables mode, use iptables-legacy instead of iptables-nft")
    parser.add_argument("--cluster-cidr", default="", help="pod range: off-cluster traffic to ClusterIPs is "
                        "masqueraded")
    parser.add_argument("--service-cidr", default="", help="service range: unallocated addresses are dropped "
                        "(nftables)")
    parser.add_argument("--masquerade-all", action="store_true", help="masquerade all traffic sent to Service IPs")
    parser.add_argument("--nodeport-addresses", default="", help="comma-separated CIDRs of node addresses that "
                        "accept NodePorts")
    parser.add_argument("--min-sync-period", type=float, default=1.0, help="seconds between syncs, at least")
    parser.add_argument("--sync-period", type=float, default=30.0, help="seconds between full syncs, at most")
    parser.add_argument("--healthz-bind-address", default="0.0.0.0:10256")
    parser.add_argument("--metrics-bind-address", default="127.0.0.1:10249")
    parser.add_argument("--cleanup", action="store_true", help="remove every rule of ours from this namespace "
                        "and exit")
    return parser


def backend_for(mode: str, legacy: bool) -> Backend:
    if mode == "nftables":
        from proxy.nftables.backend import NftablesBackend

        return NftablesBackend()
    from proxy.iptables.backend import IptablesBackend

    return IptablesBackend(legacy=legacy)


def config_from(args: argparse.Namespace) -> ProxyConfig:
    return ProxyConfig(node_name=args.node_name, mode=args.mode, cluster_cidr=args.cluster_cidr,
                       service_cidr=args.service_cidr, masquerade_all=args.masquerade_all,
                       nodeport_addresses=tuple(filter(None, args.nodeport_addresses.split(","))),
                       min_sync_period=args.min_sync_period, sync_period=args.sync_period,
                       healthz_address=args.healthz_bind_address, metrics_address=args.metrics_bind_address)


async def serve(args: argparse.Namespace) -> None:
    client = load_kubeconfig(args.kubeconfig, user_agent="kube-proxy/v1.30.0 (linux/amd64) kubesim")
    server = ProxyServer(client, config_from(args), backend_for(args.mode, args.iptables_legacy))
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    try:
        await server.run()
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cleanup:
        try:
            backend_for(args.mode, args.iptables_legacy).cleanup()
        except ProxyError as exc:
            sys.exit(f"{PROG}: {exc}")
        print(f"removed kube-proxy's {args.mode} rules")
        return
    if not args.kubeconfig or not args.node_name:
        parser.error("--kubeconfig and --node-name are required (or --cleanup)")
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s kube-proxy[{args.node_name}] %(levelname)s %(message)s")
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
