"""`python -m netpol`: one node's network-policy agent, run inside that node's network namespace."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from control.client import load_kubeconfig
from netpol.errors import NetpolError
from netpol.iptables import Flavour, IptablesCommand
from netpol.server import BACKENDS, AgentConfig, Backend, NetpolAgent, remove_rules


async def main_async(args: argparse.Namespace) -> None:
    client = load_kubeconfig(args.kubeconfig, user_agent="kube-network-policies/v1.30.0 (linux/amd64) kubesim")
    config = AgentConfig(node_name=args.node_name, mode=args.mode, min_sync_period=args.min_sync_period,
                         sync_period=args.sync_period, healthz_address=args.healthz_bind_address,
                         metrics_address=args.metrics_bind_address,
                         admin_network_policies=args.admin_network_policy)
    backend: Backend | None = None
    if args.mode == "iptables":
        backend = IptablesCommand(flavour=_flavour(args))
    agent = NetpolAgent(client, config, backend)
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, agent.stop)
    try:
        await agent.run()
    finally:
        await client.close()


def _flavour(args: argparse.Namespace) -> Flavour:
    return "legacy" if args.iptables_legacy else "nft"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kubesim-netpol", description=__doc__)
    parser.add_argument("--kubeconfig", help="credentials of the agent (required unless --cleanup)")
    parser.add_argument("--node-name", help="the node whose pods this agent judges (required unless --cleanup)")
    parser.add_argument("--mode", choices=sorted(BACKENDS), default="nftables",
                        help="how rules are written; kubesim runs the agent in its kube-proxy's mode")
    parser.add_argument("--iptables-legacy", action="store_true",
                        help="in iptables mode, use iptables-legacy instead of iptables-nft (as kube-proxy's flag)")
    parser.add_argument("--admin-network-policy", action=argparse.BooleanOptionalAction, default=True,
                        help="enforce AdminNetworkPolicies and the BaselineAdminNetworkPolicy "
                             "(policy.networking.k8s.io/v1alpha1); --no-admin-network-policy for an apiserver "
                             "that does not serve them")
    parser.add_argument("--min-sync-period", type=float, default=1.0)
    parser.add_argument("--sync-period", type=float, default=30.0)
    parser.add_argument("--healthz-bind-address", default="0.0.0.0:9081")
    parser.add_argument("--metrics-bind-address", default="127.0.0.1:9080")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove the agent's rules (both modes) from this namespace and exit")
    args = parser.parse_args(argv)
    if args.cleanup:
        try:
            remove_rules(iptables_backend=IptablesCommand(flavour=_flavour(args)))
        except NetpolError as exc:
            sys.exit(f"kubesim-netpol: {exc}")
        return
    if not args.kubeconfig or not args.node_name:
        parser.error("--kubeconfig and --node-name are required (or --cleanup)")
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s netpol[{args.node_name}] %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
