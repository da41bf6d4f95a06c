"""`python -m control.kubelet`: one node's kubelet, run inside that node's network namespace."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
from pathlib import Path

from control.api.validators import is_label_value, is_qualified_name
from control.client import load_kubeconfig
from control.kubelet.agent import Kubelet, NodeConfig
from control.kubelet.server import serve, server_context
from control.runtime import RuntimeClient
from netsim.topology import TAINT_EFFECTS


def _taints(text: str) -> list[dict[str, str]]:
    """key=value:Effect,key:Effect, as upstream's --register-with-taints."""
    taints = []
    for item in filter(None, text.split(",")):
        head, colon, effect = item.rpartition(":")
        if not colon or effect not in TAINT_EFFECTS:
            raise argparse.ArgumentTypeError(f"taint {item!r} needs an effect, one of {', '.join(TAINT_EFFECTS)}: "
                                             "write key=value:Effect or key:Effect, e.g. dedicated=edge:NoSchedule")
        key, _, value = head.partition("=")
        problems = [f"key {key!r}: {p}" for p in is_qualified_name(key)]
        problems += [f"value {value!r}: {p}" for p in is_label_value(value)] if value else []
        if problems:
            raise argparse.ArgumentTypeError(f"taint {item!r}: {'; '.join(problems)}")
        taints.append({"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect})
    return taints


def _labels(text: str) -> dict[str, str]:
    """key=value,key=value, as upstream's --node-labels: a bad pair is a usage error naming the fix."""
    labels = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{item!r} is not a label: write key=value pairs separated by commas, "
                                             "e.g. --node-labels tier=edge,zone=a")
        problems = [f"key {key!r}: {p}" for p in is_qualified_name(key)]
        problems += [f"value {value!r}: {p}" for p in is_label_value(value)]
        if problems:
            raise argparse.ArgumentTypeError(f"label {item!r}: {'; '.join(problems)}")
        labels[key] = value
    return labels


def _addresses(text: str) -> list[str]:
    """IP[,IP...], as upstream's --cluster-dns."""
    found = [item.strip() for item in text.split(",") if item.strip()]
    for item in found:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not an IP address: give the cluster DNS Service's "
                                             "ClusterIP, e.g. --cluster-dns 10.96.0.10") from None
    return found


async def main_async(args: argparse.Namespace) -> None:
    client = load_kubeconfig(args.kubeconfig, user_agent="kubelet/v1.30.0 (linux/amd64) kubesim")
    config = NodeConfig(
        name=args.node_name, cluster=args.cluster, address=args.node_ip, pod_cidr=args.pod_cidr, role=args.role,
        labels=args.node_labels, taints=args.register_with_taints, cpu=args.cpu,
        memory=args.memory, pods=args.max_pods, mtu=args.pod_mtu, state_dir=Path(args.root_dir),
        heartbeat_period=args.heartbeat_period, cluster_dns=args.cluster_dns, cluster_domain=args.cluster_domain,
        resolv_conf=Path(args.resolv_conf) if args.resolv_conf else None,
        hidden_dirs=[Path(d) for d in args.hide_dir])
    runtime = RuntimeClient(Path(args.container_runtime_endpoint)) if args.container_runtime_endpoint else None
    kubelet = Kubelet(client, config, runtime=runtime)
    context = server_context(args.tls_cert_file, args.tls_private_key_file, args.client_ca_file)
    runner = await serve(kubelet, args.node_ip, context)
    task = asyncio.get_running_loop().create_task(kubelet.run())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    done, _ = await asyncio.wait([task, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if task in done and task.exception():
        logging.error("kubelet stopped: %s", task.exception())
    await runner.cleanup()
    await client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubesim-kubelet", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--cluster", required=True, help="the kubesim cluster name (names the pod namespaces)")
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--role", default="worker")
    parser.add_argument("--node-labels", type=_labels, default={}, metavar="KEY=VALUE[,KEY=VALUE...]")
    parser.add_argument("--register-with-taints", type=_taints, default=[], metavar="KEY[=VALUE]:EFFECT[,...]")
    parser.add_argument("--cpu", default="4")
    parser.add_argument("--memory", default="8Gi")
    parser.add_argument("--max-pods", type=int, default=110)
    parser.add_argument("--pod-mtu", type=int, default=1500)
    parser.add_argument("--heartbeat-period", type=float, default=2.0)
    parser.add_argument("--root-dir", required=True, help="where pod addresses and logs are kept")
    parser.add_argument("--container-runtime-endpoint", default="",
                        help="the node runtime's Unix socket (python -m control.runtime); '' runs containers in "
                             "the kubelet's own process, and they die with it")
    # upstream's DNS flags: what a pod's /etc/resolv.conf says
    parser.add_argument("--cluster-dns", type=_addresses, default=[], metavar="IP[,IP...]",
                        help="the cluster DNS server(s) of ClusterFirst pods (none: they fall back to Default)")
    parser.add_argument("--cluster-domain", default="cluster.local")
    parser.add_argument("--resolv-conf", default="/etc/resolv.conf",
                        help="the node's resolver file (dnsPolicy Default, and searches for ClusterFirst); "
                             "'' for none")
    parser.add_argument("--hide-dir", action="append", default=[], metavar="DIR",
                        help="a directory no pod may see (kubesim's state directory), repeatable; "
                             "--root-dir always is one")
    # upstream's flag names; the kubelet API is served over HTTPS only, to callers with a client
    # certificate from --client-ca-file
    parser.add_argument("--tls-cert-file", required=True, help="the kubelet API's serving certificate")
    parser.add_argument("--tls-private-key-file", required=True)
    parser.add_argument("--client-ca-file", required=True, help="the CA whose client certificates authenticate")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s kubelet[{args.node_name}] %(levelname)s %(message)s")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
