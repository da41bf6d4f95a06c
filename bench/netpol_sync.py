"""Benchmark: the network-policy agent's sync at P pods x N policies, and the data path under its rules.

Prints one JSON document. Needs root: everything happens in throwaway network namespaces
(ksim-test-<random>.*, deleted afterwards); the root namespace is never touched.

    python bench/netpol_sync.py                       # 1000 pods x 1000 policies, 3 runs each
    python bench/netpol_sync.py --pods 200 --policies 100 --runs 5
    python bench/netpol_sync.py --skip-datapath       # only the sync times

Sync times are NetpolAgent.sync() itself, the live agent's code path, run inside a node namespace
(the bench re-runs itself there, as the agent runs in its node): the informer stores hold the
objects as a watch would leave them (uid and resourceVersion set; a change is a new resourceVersion),
and the backend is the agent's own NftCommand against the kernel.
(a) full_sync: a new agent's first sync, all objects present, the table written whole;
(b) one_policy_changed: one policy's peers and ipBlock changed, the next sync;
(c) one_pod_label_changed: one of the node's pods moves to another app, the next sync.
Each also says how long the backend took (apply_ms: nft, or iptables-restore) and how many bytes it
was sent. Half the pods are on the node; every policy selects pods by an app label and allows from
another app in its namespace and from an ipBlock (less an except), on a numeric and a named port.

The data path: two pods on the node (veth + /32 routes, as a node's CNI would), a TCP server in one
and a client opening and resetting connections in a loop in the other, for --seconds; connections per
second with the agent's rules for N policies loaded versus with none (its table, no policies). The
server pod is isolated by the 20 policies of its app; the client is allowed only by the ipBlock of
the last of them in name order, so a new connection's first packet walks every one of their chains.
--mode picks the agent's backend: nftables, iptables (iptables-nft, KUBE-NWPLCY-* chains restored with
iptables-restore), or both (the default), one after the other in the same run, so that the two modes'
figures stand side by side under the same load of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NODE = "node-a"
APPS = 50
SERVER_IP, GATEWAY = "10.250.0.3", "10.250.255.1"
SERVER_PORT = 80
MODES = ("nftables", "iptables")  # --mode both: each of these, in this order


# --- the objects -------------------------------------------------------------------------------------

def _meta(namespace: str, name: str, version: int, **more: Any) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "uid": f"uid-{namespace}-{name}",
            "resourceVersion": str(version), **more}


def namespace_objects() -> list[dict[str, Any]]:
    return [{"metadata": {"name": f"ns{i}", "uid": f"uid-ns{i}", "resourceVersion": "1",
                          "labels": {"team": f"t{i % 5}"}}} for i in range(10)]


def pod_object(i: int, app: str, version: int = 1) -> dict[str, Any]:
    return {
        "metadata": _meta(f"ns{i % 10}", f"p{i}", version, labels={"app": app}),
        "spec": {"nodeName": NODE if i % 2 == 0 else "node-b",
                 "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": f"10.{244 + i // 60000}.{i // 250 % 240}.{i % 250 + 2}"},
    }


def client_ip(policies: int) -> str:
    """An address only the last (in name order) of the policies isolating the server allows: inside
    its ipBlock, outside the block's except."""
    last = max((i for i in range(policies) if i % APPS == 0), key=lambda i: f"pol{i}", default=0)
    return f"192.168.{last % 250}.5"


def datapath_pods(policies: int) -> list[dict[str, Any]]:
    """The data path's two pods: the server has app a0 of ns0 (isolated by every policy of that app),
    the client an app no policy names, at an address only the last such policy's ipBlock allows."""
    def pod(name: str, app: str, ip: str) -> dict[str, Any]:
        return {"metadata": _meta("ns0", name, 1, labels={"app": app}),
                "spec": {"nodeName": NODE, "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": ip}}
    return [pod("server", "a0", SERVER_IP), pod("client", "client", client_ip(policies))]


def policy_object(i: int, version: int = 1) -> dict[str, Any]:
    # Version 2 of a policy is a real change: another peer app (one its namespace has) and ipBlock.
    peer_app = f"a{(i + 1) % APPS}" if version == 1 else f"a{(i + 10) % APPS}"
    block = f"192.168.{i % 250}.0/24" if version == 1 else f"172.16.{i % 250}.0/24"
    return {
        "metadata": _meta(f"ns{i % 10}", f"pol{i}", version),
        "spec": {
            "podSelector": {"matchLabels": {"app": f"a{i % APPS}"}},
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app": peer_app}}},
                         {"ipBlock": {"cidr": block, "except": [block.replace(".0/24", ".128/25")]}}],
                "ports": [{"port": SERVER_PORT}, {"port": "http"}],
            }],
        },
    }


# --- inside the node: the agent's own sync ---------------------------------------------------------------

class TimedBackend:
    """The agent's backend, timed: how long nft or iptables-restore took and how much it was sent."""

    def __init__(self, mode: str) -> None:
        self.inner = make_backend(mode)
        self.apply_ms = 0.0
        self.bytes = 0

    def apply(self, transaction: str) -> None:
        self._timed(self.inner.apply, transaction)

    def apply_changes(self, transaction: str) -> None:  # iptables mode's deltas
        self._timed(self.inner.apply_changes, transaction)

    def _timed(self, apply: Any, transaction: str) -> None:
        start = time.perf_counter()
        apply(transaction)
        self.apply_ms, self.bytes = (time.perf_counter() - start) * 1000, len(transaction)


def make_backend(mode: str) -> Any:
    from netpol.server import BACKENDS
    if mode not in BACKENDS:
        raise SystemExit(f"--mode {mode}: the agent has no {mode} backend (it has {', '.join(BACKENDS)})")
    return BACKENDS[mode]()


def make_agent(mode: str, pods: int, policies: int, extra_pods: list[dict[str, Any]]) -> Any:
    from control.client import Client
    from netpol.server import AgentConfig, NetpolAgent

    # The client is never used: the stores are filled here, as the informers' watch would fill them.
    agent = NetpolAgent(Client("https://127.0.0.1:1"), AgentConfig(NODE, mode=mode), TimedBackend(mode))
    for obj in namespace_objects():
        agent.namespaces.store.put(obj)
    for i in range(pods):
        agent.pods.store.put(pod_object(i, f"a{i % APPS}"))
    for obj in extra_pods:
        agent.pods.store.put(obj)
    for i in range(policies):
        agent.policies.store.put(policy_object(i))
    for informer in agent.informers:
        informer._synced = True  # what wait_synced() reports after the first list
    return agent


async def timed_sync(agent: Any) -> dict[str, float]:
    agent.backend.apply_ms, agent.backend.bytes = 0.0, 0
    start = time.perf_counter()
    await agent.sync()
    total = (time.perf_counter() - start) * 1000
    return {"total_ms": total, "apply_ms": agent.backend.apply_ms, "bytes": agent.backend.bytes}


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}


async def inside_sync(args: argparse.Namespace) -> dict[str, Any]:
    """In one event loop, as the live agent's syncs are."""
    full, policy, pod = [], [], []
    for _ in range(args.runs):
        subprocess.run(["nft", "flush", "ruleset"], check=True)
        agent = make_agent(args.mode, args.pods, args.policies, [])
        full.append(await timed_sync(agent))
        for version in (2, 1):  # there and back: each a one-policy change
            agent.policies.store.put(policy_object(0, version))
            policy.append(await timed_sync(agent))
        for version, app in ((2, "a10"), (3, "a0")):  # pod 0 (on the node) to another app and back
            agent.pods.store.put(pod_object(0, app, version))
            pod.append(await timed_sync(agent))
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    return {"full_sync": median(full), "one_policy_changed": median(policy), "one_pod_label_changed": median(pod),
            "samples": {"full_sync": len(full), "one_policy_changed": len(policy),
                        "one_pod_label_changed": len(pod)}}


def inside_load(args: argparse.Namespace) -> dict[str, Any]:
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    agent = make_agent(args.mode, args.pods, args.policies, datapath_pods(args.client_policies))
    result = asyncio.run(timed_sync(agent))
    # The measurement means something only if the server is isolated when policies are loaded.
    view = agent.view()
    server = next(pod for pod in view.pods if pod.name == "server")
    isolated = bool(view.isolating(server, "Ingress"))
    if isolated != (args.policies > 0):
        word = "" if isolated else "not "
        raise SystemExit(f"the data path's server is {word}isolated with {args.policies} policies")
    return result


# --- outside: namespaces, the data path -------------------------------------------------------------------

SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{SERVER_IP}", {SERVER_PORT}))
s.listen(1024)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

CLIENT = f"""
import socket, struct, sys, time
linger = struct.pack("ii", 1, 0)  # close with a reset: no TIME_WAIT piling up over thousands of runs
end = time.monotonic() + float(sys.argv[1])
count = 0
while time.monotonic() < end:
    c = socket.socket()
    c.settimeout(2)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    c.connect(("{SERVER_IP}", {SERVER_PORT}))
    c.close()
    count += 1
print(count / float(sys.argv[1]))
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


class Namespaces:
    def __init__(self) -> None:
        self.prefix = f"ksim-test-{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []
        self.node = self.make("np")

    def make(self, suffix: str) -> str:
        name = f"{self.prefix}.{suffix}"
        sh("ip", "netns", "add", name)
        self.made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def pods(self, client: str) -> tuple[str, str]:
        """Two pods on the node, each a veth with a /32 route, as the kernel tests build them."""
        sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        made = []
        for i, (suffix, ip) in enumerate((("srv", SERVER_IP), ("cli", client))):
            ns = self.make(suffix)
            host_if = f"vp{i}"
            sh("ip", "-n", self.node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", self.node, "addr", "add", f"{GATEWAY}/32", "dev", host_if)
            sh("ip", "-n", self.node, "link", "set", host_if, "up")
            sh("ip", "-n", self.node, "route", "add", f"{ip}/32", "dev", host_if)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", GATEWAY, "dev", "eth0")
            sh("ip", "-n", ns, "route", "add", "default", "via", GATEWAY)
            made.append(ns)
        return made[0], made[1]

    def delete(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def inside(ns: str, args: argparse.Namespace, what: str, policies: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()), "--inside", what,
            "--mode", args.mode, "--pods", str(args.pods), "--policies", str(policies), "--runs", str(args.runs),
            "--client-policies", str(args.policies)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the bench inside {ns} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def connection_rate(client_ns: str, seconds: float) -> float:
    done = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", CLIENT, str(seconds)],
                          capture_output=True, text=True, check=False, timeout=seconds + 30)
    if done.returncode != 0:
        raise SystemExit(f"the client failed (are the rules letting it in?):\n{done.stderr[-2000:]}")
    return float(done.stdout)


def datapath(namespaces: Namespaces, args: argparse.Namespace) -> dict[str, Any]:
    server_ns, client_ns = namespaces.pods(client_ip(args.policies))
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the data path's server did not start")
        rates: dict[int, list[float]] = {0: [], args.policies: []}
        loads: dict[int, dict[str, Any]] = {}
        for _ in range(args.runs):  # interleaved, so drift in the machine's load hits both alike
            for policies in rates:
                loads[policies] = inside(namespaces.node, args, "load", policies)
                print(f"data path: {policies} policies loaded", file=sys.stderr)
                connection_rate(client_ns, 0.3)  # warm up: caches, neighbour entries
                rates[policies].append(connection_rate(client_ns, args.seconds))
        none, loaded = statistics.median(rates[0]), statistics.median(rates[args.policies])
        return {
            "mode": args.mode, "seconds_per_run": args.seconds,
            "connections_per_second_no_policies": round(none),
            f"connections_per_second_{args.policies}_policies": round(loaded),
            "ratio": round(loaded / none, 3),
            "runs": {str(k): [round(r) for r in v] for k, v in rates.items()},
            "rules_load": {str(k): v for k, v in loads.items()},
        }
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one connection-rate run")
    parser.add_argument("--skip-datapath", action="store_true")
    parser.add_argument("--inside", choices=("sync", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--client-policies", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 3 and not args.inside:
        parser.error("--runs: medians need at least 3 runs")
    if args.inside == "sync":
        print(json.dumps(asyncio.run(inside_sync(args))))
        return
    if args.inside == "load":
        print(json.dumps(inside_load(args)))
        return
    modes = MODES if args.mode == "both" else (args.mode,)
    for mode in modes:
        make_backend(mode)  # an unknown backend fails before any namespace is made
    results = [one_mode(argparse.Namespace(**{**vars(args), "mode": mode})) for mode in modes]
    print(json.dumps(results[0] if len(results) == 1 else {"pods": args.pods, "policies": args.policies,
                                                           "runs": args.runs, "modes": results}, indent=2))


def one_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One mode's figures, in namespaces of its own (deleted afterwards)."""
    namespaces = Namespaces()
    try:
        result: dict[str, Any] = {"mode": args.mode, "pods": args.pods, "policies": args.policies,
                                  "runs": args.runs}
        result.update(inside(namespaces.node, args, "sync", args.policies))
        print(f"syncs: {json.dumps(result)}", file=sys.stderr)
        if not args.skip_datapath:
            result["datapath"] = datapath(namespaces, args)
        return result
    finally:
        namespaces.delete()


if __name__ == "__main__":
    main()
