"""`python -m control.scheduler`: schedule pods that name this scheduler until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from control.client import KubeClientError, load_kubeconfig
from control.scheduler._framework import PROFILES
from control.scheduler._scheduler import Scheduler
from control.scheduler._types import DEFAULT_SCHEDULER_NAME
from control.scheduler._volumebinding import DEFAULT_BIND_TIMEOUT

log = logging.getLogger("control.scheduler")


async def run(args: argparse.Namespace) -> None:
    client = load_kubeconfig(args.kubeconfig, user_agent="kube-scheduler/v1.30.0 (linux/amd64) kubesim")
    async with client:
        scheduler = Scheduler(client, scheduler_name=args.scheduler_name, profile=args.profile,
                              bind_timeout=args.bind_timeout)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        start = asyncio.ensure_future(scheduler.start())
        stopping = asyncio.ensure_future(stop.wait())
        # SIGTERM during the first list must still end the process promptly.
        await asyncio.wait({start, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if start.done():
            start.result()
            log.info("%r running", scheduler)
            await stopping
        else:
            start.cancel()
        log.info("%r: stopping", scheduler)
        stopping.cancel()
        await scheduler.stop()
        log.info("%r: stopped (%d scheduled, %d unschedulable attempts, %d errors)", scheduler,
                 scheduler.stats.scheduled, scheduler.stats.unschedulable, scheduler.stats.errors)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubesim-scheduler", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig with the scheduler's credentials")
    parser.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                        help="schedule pods whose spec.schedulerName is this (default: %(default)s)")
    parser.add_argument("--profile", choices=PROFILES, default="default",
                        help="scoring profile: default (spread, least allocated) or most-allocated (bin packing)")
    parser.add_argument("--bind-timeout", type=_seconds, default=DEFAULT_BIND_TIMEOUT, metavar="SECONDS",
                        help="how long a binding waits for the pod's WaitForFirstConsumer claims to be bound "
                             "(VolumeBinding's bindTimeoutSeconds; default: %(default)s)")
    parser.add_argument("--v", type=int, default=2, metavar="LEVEL",
                        help="verbosity as klog's: 0-1 warnings, 2-3 one line per decision, 4+ debug")
    args = parser.parse_args(argv)
    level = logging.WARNING if args.v < 2 else logging.INFO if args.v < 4 else logging.DEBUG
    logging.basicConfig(level=level, format=f"%(asctime)s scheduler[{args.scheduler_name}] %(levelname)s %(message)s")
    if args.v < 4:
        # The client's per-request chatter is debug material.
        logging.getLogger("control.client").setLevel(max(level, logging.WARNING))
    try:
        asyncio.run(run(args))
    except KubeClientError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
