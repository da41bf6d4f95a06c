"""`python -m control.runtime`: one node's runtime (the containerd role), run in that node's namespace."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from control.api import quantity
from control.runtime.crilog import LOG_MAX_FILES, LOG_MAX_SIZE
from control.runtime.server import serving
from control.runtime.service import Runtime
from netsim.kernel import LinuxKernel


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m control.runtime", description=__doc__)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help="the node's directory (sandbox records)")
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to serve (made mode 0600)")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--container-log-max-size", default=str(LOG_MAX_SIZE),
                        help="rotate a container's log before it grows past this quantity (upstream: 10Mi)")
    parser.add_argument("--container-log-max-files", type=int, default=LOG_MAX_FILES,
                        help="the most files of one container's log, the one written included (upstream: 5)")
    args = parser.parse_args()
    try:
        max_size = quantity.value(args.container_log_max_size)
    except quantity.QuantityError as exc:
        parser.error(f"--container-log-max-size {args.container_log_max_size!r}: {exc}; give a size such as 10Mi")
    if max_size < 1 or args.container_log_max_files < 2:
        parser.error("--container-log-max-size must be positive and --container-log-max-files at least 2 "
                     "(the file written and one rotated), as upstream's kubelet validates them")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runtime %(levelname)s %(message)s")

    async def run() -> None:
        runtime = Runtime(args.cluster, args.node, args.pod_cidr, args.state_dir, kernel=LinuxKernel(), mtu=args.mtu,
                          log_max_size=max_size, log_max_files=args.container_log_max_files)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with serving(runtime, args.socket):
                logging.info("serving node %s on %s", args.node, args.socket)
                await stop.wait()
        finally:
            runtime.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
