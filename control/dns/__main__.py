"""`python -m control.dns`: the cluster DNS server (CoreDNS's kubernetes plugin's behaviour) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import dns.exception

from control.client import KubeClientError, load_kubeconfig
from control.dns._process import DNSOptions, DNSProcess, split_address
from control.dns._zone import ZoneConfig

log = logging.getLogger("control.dns")


async def run(args: argparse.Namespace, options: DNSOptions) -> None:
    client = load_kubeconfig(args.kubeconfig, user_agent="coredns/v1.30.0 (linux/amd64) kubesim")
    async with client:
        process = DNSProcess(client, options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, process.stop)
        await process.run()
        log.info("stopped")


def options_from(args: argparse.Namespace) -> DNSOptions:
    """The options, or ValueError naming the flag that is wrong."""
    try:
        zone = ZoneConfig(domain=args.cluster_domain, ttl=args.ttl, pods=args.pods)
    except dns.exception.DNSException as exc:
        raise ValueError(f"--cluster-domain {args.cluster_domain!r}: not a DNS name ({exc})") from None
    for flag in ("dns_address", "metrics_address", "ready_address", "health_address"):
        split_address(getattr(args, flag))
    return DNSOptions(zone=zone, dns_address=args.dns_address, metrics_address=args.metrics_address,
                      ready_address=args.ready_address, health_address=args.health_address,
                      log_queries=not args.no_query_log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubesim-dns", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig with the DNS server's credentials")
    parser.add_argument("--cluster-domain", default="cluster.local", help="the zone served (default: %(default)s)")
    parser.add_argument("--ttl", type=int, default=5, help="TTL of answers, seconds (default: %(default)s)")
    parser.add_argument("--pods", choices=("disabled", "insecure", "verified"), default="verified",
                        help="pod A records a-b-c-d.<ns>.pod.<domain>, as CoreDNS's `pods` (default: %(default)s)")
    parser.add_argument("--dns-address", default="0.0.0.0:53")
    parser.add_argument("--metrics-address", default="0.0.0.0:9153")
    parser.add_argument("--ready-address", default="0.0.0.0:8181")
    parser.add_argument("--health-address", default="0.0.0.0:8080")
    parser.add_argument("--no-query-log", action="store_true", help="no log line per query")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s coredns %(levelname)s %(message)s")
    logging.getLogger("control.client").setLevel(logging.WARNING)
    try:
        options = options_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(run(args, options))
    except KubeClientError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
