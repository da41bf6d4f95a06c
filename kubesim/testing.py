"""kubesim.testing: the public Python API for the packet-trace tests users write.

    from kubesim.testing import Cluster

    with Cluster.up("topologies/two-node.yaml", name="demo") as cluster:      # down again on leaving
        cluster.apply("examples/echo.yaml")
        pods = cluster.wait_ready("app=echo", count=3)
        vip = f"{cluster.service_ip('echo')}:80"
        trace = cluster.wait_trace("client", vip, "DNAT", endpoints=3, count=40)  # the external host
        assert trace.masquerade, trace
        client = f"default/{pods[0]['metadata']['name']}"
        assert cluster.http(client, "http://echo/hostname").status == 200         # through the cluster DNS

Every call works in this process through the engines the CLI uses (the cluster's lifecycle, the API
client, the trace engine, the cluster's own DNS): no `kubesim` subprocess per call. Only `exec` runs a
process, since running one is what it is for. The calls are synchronous; they need root, as kubesim does.

Where a call takes a place to act from (SRC, TARGET): a node or external host by its name, a pod as
NAMESPACE/NAME (or NAME in default), or, for `trace`, any address `kubesim trace` understands.

The pytest plugin (kubesim.pytest_plugin, loaded through the `pytest11` entry point) gives a test the
session-scoped `kubesim_cluster` fixture built on this module.

Errors: KubesimError (kubesim.errors) and its kinds; netsim's TraceError for a trace asked wrongly;
netsim's FaultInputError for a fault asked wrongly and FaultError for one the kernel cannot make;
TimeoutError from the waits, naming what did not happen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import ipaddress
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from kubesim import cluster, components
from kubesim import trace as tracing
from kubesim.errors import KubesimError
from kubesim.state import ClusterState, state_root
from netsim import namespaces
from netsim.topology import Topology, load_topology
from netsim.trace import DEFAULT_TIMEOUT as DEFAULT_TRACE_TIMEOUT

__all__ = ["DEFAULT_TOPOLOGY", "Cluster", "Hop", "HttpResponse", "Trace", "eventually"]

DEFAULT_TOPOLOGY = cluster.DEFAULT_TOPOLOGY
T = TypeVar("T")


@dataclass(frozen=True)
class Hop:
    """One step of the first probe through the node: where it was seen, the chain and rule that matched
    (for NetworkPolicy, the rule's comment names the policy), and what that rule decided."""
    interface: str
    hook: str
    table: str
    chain: str
    rule: str
    verdict: str
    packet: str = ""

    def __str__(self) -> str:
        where = f"{self.table}/{self.chain}" if self.chain else "(wire)"
        what = self.rule or self.packet
        return f"{self.interface} {self.hook} {where}: {what} -> {self.verdict}".replace("  ", " ")


@dataclass(frozen=True)
class Trace:
    """What the node did with a trace's probes. `verdict` is DNAT, LOCAL, REJECT, DROP or NONE."""
    verdict: str
    endpoints: tuple[str, ...]
    masquerade: bool
    source: str
    dst: str
    proto: str
    hops: tuple[Hop, ...]
    results: dict[str, int]
    raw: dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Trace:
        fields = {f.name for f in dataclasses.fields(Hop)}
        return cls(verdict=result["result"], endpoints=tuple(result["endpoints"]), masquerade=result["masquerade"],
                   source=str(result.get("source") or result.get("src", "")), dst=str(result.get("dst", "")),
                   proto=str(result.get("proto", "")),
                   hops=tuple(Hop(**{k: v for k, v in h.items() if k in fields}) for h in result.get("hops", [])),
                   results=dict(result.get("results", {})), raw=result)

    def chains(self) -> list[str]:
        """table/chain of every hop that met a rule, in order."""
        return [f"{h.table}/{h.chain}" for h in self.hops if h.chain]

    def decided_by(self, verdict: str) -> Hop | None:
        """The first hop whose rule said VERDICT (drop, reject, accept...)."""
        return next((h for h in self.hops if h.verdict.split()[0:1] == [verdict]), None)

    def explain(self) -> str:
        """The human rendering `kubesim trace` prints."""
        return "\n".join(text for text, _ in tracing.render_lines(self.raw))

    def __repr__(self) -> str:
        endpoints = ", ".join(self.endpoints) or "none"
        counts = ", ".join(f"{k} {v}" for k, v in self.results.items())
        hops = "".join(f"\n    {hop}" for hop in self.hops)
        return (f"Trace({self.source} -> {self.dst}/{self.proto}: {self.verdict}, endpoints [{endpoints}], "
                f"masquerade {'yes' if self.masquerade else 'no'}, probes: {counts}){hops}")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str
    headers: dict[str, str]


class Cluster:
    """A kubesim cluster: `Cluster.up(...)` brings one up, `Cluster(name)` takes one that is up.

    Used as a context manager, a cluster this object brought up goes down on leaving the block, also
    on an exception or Ctrl-C; one it only took stays up."""

    def __init__(self, name: str = "kubesim", *, root: Path | None = None) -> None:
        self.name = name
        self.root = root or state_root()
        self.owned = False

    @classmethod
    def up(cls, topology: str | Path | Topology | None = None, *, name: str | None = None,
           proxy_mode: str | None = None, store: str = "sqlite", root: Path | None = None,
           timings: dict[str, str] | None = None) -> Cluster:
        """Bring a cluster up (the default topology unless given) and wait until it is ready. On failure
        nothing of it is left behind and the error says why. TIMINGS are `kubesim up`'s timing flags,
        e.g. {"node_grace_period": "6s", "eviction_timeout": "30s"}: a short grace period makes a node cut
        off by fault_partition() turn NotReady quickly."""
        topo = topology if isinstance(topology, Topology) else load_topology(Path(topology or DEFAULT_TOPOLOGY))
        if name:
            topo = topo.with_name(name)
        if proxy_mode:
            topo = dataclasses.replace(topo, proxy_mode=proxy_mode)
        done = cluster.up(topo, root=root, store=store, timings=timings)
        made = cls(done.topology.name, root=root)
        made.owned = True
        return made

    def down(self) -> list[str]:
        """Remove the cluster, whatever state it is in; what was removed."""
        self.owned = False
        return cluster.down(self.name, root=self.root)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.down()

    def __repr__(self) -> str:
        return f"Cluster({self.name!r})"

    # -- what it is -----------------------------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        state = ClusterState(self.name, self.root)
        if not state.exists:
            raise KubesimError(f"cluster {self.name!r} does not exist; bring it up with Cluster.up()")
        return state

    @property
    def topology(self) -> Topology:
        found = self.state.topology()
        if found is None:
            raise KubesimError(f"cluster {self.name!r} has no topology recorded; bring it up again")
        return found

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (for kubectl or the Python client)."""
        return components.kubeconfig_path(self.state)

    # -- the API ----------------------------------------------------------------------------------------

    def apply(self, *manifests: str | Path | dict[str, Any] | Iterable[dict[str, Any]]) -> list[str]:
        """Create or replace objects: YAML text, a manifest file, an object, or a list of objects.
        Every object is checked before any is sent. Returns "kind/name created|configured" lines."""
        documents: list[tuple[str, Any]] = []
        for manifest in manifests:
            if isinstance(manifest, Path) or (isinstance(manifest, str) and "\n" not in manifest
                                              and manifest.endswith((".yaml", ".yml", ".json"))):
                documents += components.manifest_documents(Path(manifest))
            elif isinstance(manifest, str):
                documents += [("the manifest text", doc) for doc in yaml.safe_load_all(manifest) if doc]
            elif isinstance(manifest, dict):
                documents.append(("the object", manifest))
            else:
                documents += [("the list", doc) for doc in manifest]
        return components.apply_documents(self.state, documents)

    def get(self, kind: str, name: str, *, namespace: str = "default") -> dict[str, Any]:
        """One object by kind (Pod, pods, po, deploy, svc...) and name."""
        resource = _resource(kind)
        return self._api(lambda c: c.get(resource, name, namespace=namespace if resource.namespaced else None))

    def delete(self, kind: str, name: str, *, namespace: str = "default") -> None:
        """Delete one object (gracefully, as kubectl does); an object already gone is fine."""
        from control.client import NotFound

        resource = _resource(kind)

        async def delete(client: Any) -> None:
            with suppress(NotFound):
                await client.delete(resource, name, namespace=namespace if resource.namespaced else None)

        self._api(delete)

    def objects(self, kind: str, selector: str | None = None, *,
                namespace: str | None = "default") -> list[dict[str, Any]]:
        """Objects of KIND (in NAMESPACE; None: all namespaces), optionally by label selector."""
        resource = _resource(kind)

        async def listed(client: Any) -> list[dict[str, Any]]:
            found = await client.list(resource, namespace=namespace if resource.namespaced else None,
                                      label_selector=selector)
            return list(found.get("items") or [])

        return self._api(listed)

    def wait_ready(self, selector: str | None = None, *, namespace: str = "default", count: int | None = None,
                   timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until the pods chosen by SELECTOR (all of NAMESPACE without one) are Ready, and exactly
        COUNT of them when given (terminating pods do not count); returns them."""
        def ready_pods() -> list[dict[str, Any]] | None:
            pods = [p for p in self.objects("pods", selector, namespace=namespace)
                    if not p["metadata"].get("deletionTimestamp")]
            if not pods or (count is not None and len(pods) != count) or not all(_pod_ready(p) for p in pods):
                return None
            return pods

        what = f"{count if count is not None else 'all'} ready pods ({selector or 'every pod'} in {namespace})"
        return _wait_for(ready_pods, timeout, what)

    def wait_endpoints(self, service: str, count: int, *, namespace: str = "default",
                       timeout: float = 60) -> list[str]:
        """Wait until Service SERVICE has exactly COUNT ready endpoint addresses in its EndpointSlices."""
        def ready_addresses() -> list[str] | None:
            found = [address for s in self.objects("endpointslices", f"kubernetes.io/service-name={service}",
                                                namespace=namespace)
                     for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
                     for address in e.get("addresses") or []]
            return found if len(found) == count else None

        return _wait_for(ready_addresses, timeout, f"{count} ready endpoints of Service {namespace}/{service}")

    def service_ip(self, service: str, *, namespace: str = "default") -> str:
        return str(self.get("service", service, namespace=namespace)["spec"]["clusterIP"])

    # -- traffic --------------------------------------------------------------------------------------

    def namespace_of(self, target: str) -> str:
        """The network namespace of a node, an external host, or a pod (NAMESPACE/NAME or NAME)."""
        return tracing.target_namespace(self.name, target, root=self.root)

    def exec(self, target: str, *command: str, timeout: float = 30, check: bool = False,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run COMMAND inside TARGET (a node, an external host, or a pod as NAMESPACE/NAME or NAME: all of the
        pod's namespaces, so it sees the pod's hostname and /etc files); its exit code, stdout and stderr.
        It runs there directly, not through the API: for what `kubectl exec` does (the container's env,
        the apiserver and kubelet in the path), run kubectl."""
        ns = self.namespace_of(target)
        pod = namespaces.pod_place_exists(ns)
        argv = namespaces.command_in(ns, list(command), uts=pod, mnt=pod)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, input=stdin)

    def http(self, src: str, url: str, *, timeout: float = 5.0) -> HttpResponse:
        """GET URL from inside SRC's network namespace, as a client there would: a name is resolved by the
        cluster's DNS Service (from a pod, with the search path and ndots of its resolv.conf), the
        connection is made from SRC's namespace and meets the node's real rules."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise KubesimError(f"{url!r}: give an http:// URL with a host, e.g. http://echo/hostname")
        ns = self.namespace_of(src)
        address = parts.hostname if _is_ip(parts.hostname) else self._resolve(src, ns, parts.hostname)
        with namespaces.entered(ns):
            sock = socket.create_connection((address, parts.port or 80), timeout=timeout)
        try:
            path = parts.path or "/"
            request = (f"GET {path}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
                       f"Host: {parts.netloc}\r\nConnection: close\r\nUser-Agent: kubesim.testing\r\n\r\n")
            sock.sendall(request.encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read().decode(errors="replace")
            return HttpResponse(response.status, body, {k.lower(): v for k, v in response.getheaders()})
        finally:
            sock.close()

    def trace(self, src: str, dst: str, *, proto: str = "tcp", count: int = 1, node: str | None = None,
              ingress: str | None = None, timeout: float = DEFAULT_TRACE_TIMEOUT) -> Trace:
        """Send COUNT probes from SRC to DST (IP:PORT) and report, hop by hop, what the node did."""
        return Trace.from_result(tracing.run_trace(self.name, node=node, src=src, dst=dst, proto=proto, count=count,
                                                   ingress=ingress, timeout=timeout, root=self.root))

    def wait_trace(self, src: str, dst: str, verdict: str, *, endpoints: int | None = None, timeout: float = 20,
                   **options: Any) -> Trace:
        """Trace again until the node says VERDICT (and, given ENDPOINTS, reaches that many endpoints):
        rules follow the API a sync period behind, so a test that just changed something waits here.
        Raises AssertionError with the last trace when it never happens."""
        last: list[Trace] = []

        def settled() -> Trace | None:
            last[:] = [self.trace(src, dst, **options)]
            wanted = last[0].verdict == verdict and (endpoints is None or len(last[0].endpoints) == endpoints)
            return last[0] if wanted else None

        try:
            return _wait_for(settled, timeout, f"{verdict} from {src} to {dst}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; the last trace: {last[0] if last else None!r}") from None

    # -- faults ---------------------------------------------------------------------------------------
    # The calls of `kubesim fault`: each is recorded in the cluster's state directory, lives only inside
    # its namespaces, and is lifted by fault_clear() or when the cluster goes down. Bad input (an unknown
    # node, PCT outside 0-100, a malformed rate) raises FaultInputError with nothing changed.

    def fault_partition(self, a: str, b: str) -> None:
        """Members A and B (nodes or external hosts) cannot reach each other: the fabric drops every frame
        between them. `fault_partition("worker-1", "control-plane")` cuts worker-1's kubelet off the
        apiserver, so the node turns NotReady after the node grace period (Cluster.up(timings=
        {"node_grace_period": "6s"}) makes that quick)."""
        self._fault("partition", (a, b))

    def fault_loss(self, percent: int, node: str) -> None:
        """Drop PERCENT% (0-100) of what NODE sends out of eth0, at random."""
        self._fault("loss", (node,), percent=percent)

    def fault_rate(self, rate: str, node: str) -> None:
        """Limit what NODE sends out of eth0 to RATE in tc's units (10mbit, 500kbit, 1mbps): a tbf qdisc."""
        self._fault("rate", (node,), rate=rate)

    def fault_delay(self, delay: str, node: str, *, jitter: str | None = None) -> None:
        """Delay what NODE sends by DELAY (100ms): netem, so only where the kernel has sch_netem; elsewhere
        FaultError says the kernel lacks it."""
        self._fault("delay", (node,), delay=delay, jitter=jitter)

    def fault_link_down(self, node: str) -> None:
        """Cut NODE's cable: eth0 loses carrier, its addresses and routes stay for fault_link_up()."""
        self._fault("link-down", (node,))

    def fault_link_up(self, node: str) -> None:
        """Mend the cable fault_link_down() cut (nothing if it was not cut)."""
        from kubesim import faults
        from netsim.faults import make_fault

        faults.remove(self.state, make_fault("link-down", (node,)))

    def fault_clear(self, node: str | None = None) -> list[dict[str, Any]]:
        """Lift the faults involving NODE, or all of them; the faults lifted, as fault_list() shows them."""
        from kubesim import faults

        return [f.to_dict() for f in faults.clear(self.state, node)]

    def fault_list(self) -> list[dict[str, Any]]:
        """The faults in force, as `kubesim fault list --json` prints them."""
        from kubesim import faults

        return [f.to_dict() for f in faults.recorded(self.state)]

    def _fault(self, kind: str, nodes: tuple[str, ...], **values: Any) -> None:
        from kubesim import faults
        from netsim.faults import make_fault

        faults.add(self.state, make_fault(kind, nodes, **values))

    # -- inside ---------------------------------------------------------------------------------------

    def _api(self, call: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        from control.client import load_kubeconfig

        async def run() -> T:
            client = load_kubeconfig(str(self.kubeconfig))
            try:
                return await call(client)
            finally:
                await client.close()

        return asyncio.run(run())

    def _resolve(self, src: str, ns: str, name: str) -> str:
        """NAME's A record from the cluster DNS, queried from inside NS with the search path a pod there has."""
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode
        import dns.rdatatype

        from control.dns import dns_service_ip, pod_dns_config

        topology = self.topology
        if not topology.dns.enabled:
            raise KubesimError(f"cluster {self.name!r} runs no DNS (dns.enabled is false in its topology); "
                               f"use an address instead of {name!r}")
        server = dns_service_ip(topology.network.service_cidr)
        searches: list[str] = []
        ndots = 1
        if topology.member(src) is None:  # a pod: its resolv.conf's search path and ndots
            namespace, _, pod_name = src.rpartition("/")
            pod = self.get("pod", pod_name, namespace=namespace or "default")
            config = pod_dns_config(pod, cluster_dns=[server], cluster_domain=topology.dns.cluster_domain,
                                    host_resolv_conf=None)
            searches = list(config.searches)
            ndots = next((int(o.partition(":")[2]) for o in config.options if o.startswith("ndots:")), 1)
        absolute = name.endswith(".")
        bare = name.rstrip(".")
        candidates = [bare] if absolute else ([bare] if bare.count(".") >= ndots else [])
        if not absolute:
            candidates += [f"{bare}.{domain}" for domain in searches]
            if bare.count(".") < ndots:
                candidates.append(bare)
        with namespaces.entered(ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # dnspython reads first and waits only on BlockingIOError: a blocking socket whose answer was
        # lost (a Service not yet programmed) would wait forever instead of timing out.
        sock.setblocking(False)
        try:
            for candidate in candidates:
                query = dns.message.make_query(candidate + ".", dns.rdatatype.A)
                try:
                    reply = dns.query.udp(query, server, timeout=2.0, sock=sock)
                except dns.exception.Timeout:
                    raise KubesimError(f"no answer from the cluster DNS at {server} for {candidate!r} "
                                       "within 2 s") from None
                if reply.rcode() == dns.rcode.NOERROR:
                    for rrset in reply.answer:
                        if rrset.rdtype == dns.rdatatype.A:
                            return str(next(iter(rrset)).address)
        finally:
            sock.close()
        raise KubesimError(f"{name!r} does not resolve in cluster {self.name!r} (tried {', '.join(candidates)} "
                           f"at {server})")


def _resource(kind: str) -> Any:
    from control.apiserver.resources import RESOURCES
    from control.client import Resource

    wanted = kind.lower()
    for r in RESOURCES:
        if wanted in (r.plural, r.singular, r.kind.lower(), *r.short_names):
            return Resource(r.group, r.version, r.plural, namespaced=r.namespaced, kind=r.kind)
    raise KubesimError(f"kind {kind!r} is not one kubesim serves (try pods, services, deployments, ...)")


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def eventually(check: Callable[[], T], *, timeout: float = 20, interval: float = 0.2) -> T:
    """CHECK's value once it stops raising AssertionError or OSError (a refused connection, a name that
    does not resolve yet); after TIMEOUT seconds its last error is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, OSError, KubesimError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)


def _wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


@contextmanager
def cluster_for_tests(topology: str | Path | None = None, *, name: str = "pytest",
                      proxy_mode: str | None = None) -> Iterator[Cluster]:
    """A cluster for a test session: brought up (after removing a stale one of the same name left by a
    killed run) and always taken down."""
    stale = Cluster(name)
    if ClusterState(name, stale.root).exists:
        stale.down()
    with Cluster.up(topology, name=name, proxy_mode=proxy_mode) as made:
        yield made
