"""The kube-proxy process: informers -> change tracker -> bounded-frequency sync -> backend.

Watch handlers only record which Services changed (kube-proxy's change trackers); the runner syncs, never before
every informer has synced; a failed sync makes the next one full; the sync period's syncs are partial
and a full one runs once an hour (upstream's FullSyncPeriod: a full sync at 10k Services holds back every
change behind it), while the tamper check restores rules changed from outside within seconds. Around it:
/healthz and /metrics with kube-proxy's metric names, health-check node port servers for
externalTrafficPolicy Local services, and removal of stale UDP conntrack entries when endpoints change.

The blocking work (planning, `nft -f` / `iptables-restore`, `conntrack -D`, the tamper check) runs on
a worker thread, never on the event loop, so watches, /healthz and /metrics keep being served during a
long sync; one lock keeps a sync and a tamper check from touching the kernel at the same time.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from control.api.meta import labels_of
from control.client import ENDPOINT_SLICES, NODES, SERVICES, Client, Informer, strip_managed_fields
from firewall.bounded_frequency import BoundedFrequencyRunner
from proxy.errors import ObjectError
from proxy.model import parse_endpoint_slice, parse_node, parse_service
from proxy.plan import NodeContext, ProxyPlan, plan, replan

log = logging.getLogger("kube-proxy")
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
BY_SERVICE = "service"  # the slices informer's index: "namespace/service" -> its EndpointSlices


def _slice_service(obj: dict[str, Any]) -> tuple[str, str] | None:
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (meta.get("namespace", ""), service) if service else None


def _index_by_service(obj: dict[str, Any]) -> list[str]:
    service = _slice_service(obj)
    return [f"{service[0]}/{service[1]}"] if service else []


PARSED = "parsed"  # where a kept object holds its parsed value (None: the object is unusable)


def _kept(parse: Callable[[dict[str, Any]], Any], what: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The informers' transform: what the proxy keeps of a Service or an EndpointSlice is the metadata it
    reads (name, namespace, uid, resourceVersion, labels, the trigger-time annotation) and the object
    parsed once, as it arrives. At 10k Services x 5 endpoints the raw objects were some 57 MB of the
    proxy's memory, their parsed values a third of that. A bad object is reported once, here, and kept as
    unusable (None), so a sync leaves it out."""
    def keep(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        kept_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "labels") if k in meta}
        # Interned: 20k kept objects repeat a few namespaces, label keys and kinds (the JSON decoder makes
        # a string per occurrence); a slice's service-name label is its Service's name.
        if isinstance(kept_meta.get("namespace"), str):
            kept_meta["namespace"] = sys.intern(kept_meta["namespace"])
        labels = kept_meta.get("labels")
        if isinstance(labels, dict):
            kept_meta["labels"] = {sys.intern(str(k)): sys.intern(str(v)) for k, v in labels.items()}
        trigger = (meta.get("annotations") or {}).get(TRIGGER_TIME)
        if trigger is not None:
            kept_meta["annotations"] = {TRIGGER_TIME: trigger}
        try:
            value = parse(obj)
        except ObjectError as err:
            log.warning("skipping %s: %s", what, err)
            value = None
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        return {"apiVersion": sys.intern(api_version) if isinstance(api_version, str) else api_version,
                "kind": sys.intern(kind) if isinstance(kind, str) else kind, "metadata": kept_meta, PARSED: value}
    return keep


def _parsed(obj: dict[str, Any]) -> Any:
    return obj.get(PARSED)


# What a partial sync takes from the informers, per changed Service: its object (None: gone) and its slices.
ChangedObjects = dict[tuple[str, str], tuple[dict[str, Any] | None, list[dict[str, Any]]]]


class Backend(Protocol):
    def sync(self, plan: ProxyPlan, *, full: bool = False) -> Any: ...
    def cleanup(self) -> None: ...
    def intact(self) -> bool: ...


Conntrack = Callable[[list[str]], None]
"""Runs one `conntrack` command line (the seam tests replace to see which entries would go)."""


def run_conntrack(command: list[str]) -> None:
    """Run one deletion and say when it did not work. An entry already gone makes conntrack exit 1 (its
    stderr "0 flow entries have been deleted"): nothing to do, as upstream treats it."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        log.error("conntrack is not installed: stale UDP flows to removed endpoints stay (apt-get install conntrack)")
        return
    said = done.stderr.strip()
    if "flow entries have been deleted" not in said:
        log.warning("%s failed (%d): %s", " ".join(command), done.returncode, said)
    elif ": 0 flow entries" not in said:
        log.info("%s: %s", " ".join(command), said.rsplit(": ", 1)[-1])


@dataclass
class ProxyConfig:
    node_name: str
    mode: str = "nftables"
    cluster_cidr: str = ""
    service_cidr: str = ""
    masquerade_all: bool = False
    nodeport_addresses: tuple[str, ...] = ()
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    full_sync_period: float = 3600.0  # pkg/proxy/util: FullSyncPeriod
    tamper_check_period: float = 10.0
    # Upstream's defaults (pkg/proxy/apis/config/v1alpha1/defaults.go): healthz on every address for
    # load balancers' health checks, metrics on loopback only, out of reach of pods and other nodes.
    healthz_address: str = "0.0.0.0:10256"
    metrics_address: str = "127.0.0.1:10249"
    extra: dict[str, Any] = field(default_factory=dict)


class Metrics:
    """kube-proxy's metric names (pkg/proxy/metrics/metrics.go)."""

    def __init__(self, mode: str) -> None:
        self.registry = CollectorRegistry()
        buckets = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
                   8.192, 16.384)
        self.sync_duration = Histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                                       "SyncProxyRules latency in seconds", buckets=buckets, registry=self.registry)
        self.full_duration = Histogram("kubeproxy_sync_full_proxy_rules_duration_seconds",
                                       "SyncProxyRules latency in seconds for full resyncs", buckets=buckets,
                                       registry=self.registry)
        self.partial_duration = Histogram("kubeproxy_sync_partial_proxy_rules_duration_seconds",
                                          "SyncProxyRules latency in seconds for partial resyncs", buckets=buckets,
                                          registry=self.registry)
        self.programming = Histogram("kubeproxy_network_programming_duration_seconds",
                                     "In Cluster Network Programming Latency in seconds",
                                     buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300), registry=self.registry)
        self.last_sync = Gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                               "The last time proxy rules were successfully synced", registry=self.registry)
        self.last_queued = Gauge("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                                 "The last time a sync of proxy rules was queued", registry=self.registry)
        self.no_local = Gauge("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                              "Number of services with a Local traffic policy and no endpoints",
                              ["traffic_policy"], registry=self.registry)
        failure_name = ("kubeproxy_sync_proxy_rules_nftables_sync_failures_total" if mode == "nftables"
                        else "kubeproxy_sync_proxy_rules_iptables_restore_failures_total")
        self.failures = Counter(failure_name.removesuffix("_total"), "Cumulative proxy rules sync failures",
                                registry=self.registry)
        self.endpoint_changes = Counter("kubeproxy_sync_proxy_rules_endpoint_changes",
                                        "Cumulative proxy rules Endpoint changes", registry=self.registry)
        self.service_changes = Counter("kubeproxy_sync_proxy_rules_service_changes",
                                       "Cumulative proxy rules Service changes", registry=self.registry)


def _trigger_time(slice_obj: dict[str, Any]) -> float | None:
    """Unix seconds of the slice's last-change-trigger-time. Upstream's EndpointSlice controller writes it
    as RFC 3339 with nanoseconds: the fraction is kept, or the programming-latency histogram would read up
    to a second high."""
    stamp = ((slice_obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME)
    if not stamp:
        return None
    try:
        seconds = float(calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None
    fraction = re.match(r"\.(\d+)", stamp[19:])
    return seconds + float("0." + fraction.group(1)) if fraction else seconds


def _udp_endpoints(result: ProxyPlan | None) -> dict[tuple[str, int], set[str]]:
    """(service IP, port) -> endpoint IPs of every UDP service port; a NodePort is keyed ("", node port),
    as it is reached on any node address."""
    found: dict[tuple[str, int], set[str]] = {}
    if result is None:
        return found
    for svc in result.services:
        port = svc.port
        if port.protocol != "UDP":
            continue
        ips = {e.ip for e in svc.cluster_endpoints}
        for vip in (port.cluster_ip, *port.external_ips, *port.load_balancer_ips):
            if vip:
                found[(vip, port.port)] = ips
        if port.node_port:
            found[("", port.node_port)] = ips
    return found


def conntrack_cleanup(before: ProxyPlan | None, after: ProxyPlan) -> list[list[str]]:
    """The conntrack deletions kube-proxy makes for UDP (pkg/proxy/conntrack/cleanup.go): entries of a
    service that had no endpoints (packets were rejected or dropped, and the entry would black-hole the
    client once endpoints appear), and, as upstream filters them, entries to the service IP and port whose
    reply comes from an endpoint that is gone. UDP has no end of flow: a client that keeps its source port
    (a stub resolver) refreshes the stale entry with every query and would never reach a live endpoint."""
    old, new = _udp_endpoints(before), _udp_endpoints(after)
    commands = []
    for (vip, port), ips in new.items():
        target = ["--orig-dst", vip] if vip else []
        if ips and not old.get((vip, port)):
            commands.append(["conntrack", "-D", "-p", "udp", *target, "--orig-port-dst", str(port)])
        for gone in sorted(old.get((vip, port), set()) - ips):
            commands.append(["conntrack", "-D", "-p", "udp", *target, "--orig-port-dst", str(port),
                             "--reply-src", gone])
    return commands


def _node_identity(node: dict[str, Any]) -> tuple[Any, ...]:
    addresses = (node.get("status") or {}).get("addresses") or []
    labels = labels_of(node)
    return (tuple(sorted((a.get("type"), a.get("address")) for a in addresses)), tuple(sorted(labels.items())))


class HealthCheckServers:
    """One HTTP server per healthCheckNodePort (externalTrafficPolicy Local LoadBalancers), answering as
    kube-proxy does (pkg/proxy/healthcheck/service_health.go): 200 with local endpoints, 503 without."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self.addresses = addresses or ("0.0.0.0",)
        self.local: dict[int, tuple[str, str, int]] = {}
        self.runners: dict[int, web.AppRunner] = {}

    def _handler(self, port: int) -> Any:
        async def answer(request: web.Request) -> web.Response:
            namespace, name, count = self.local.get(port, ("", "", 0))
            body = {"service": {"namespace": namespace, "name": name}, "localEndpoints": count,
                    "serviceProxyHealthy": True}
            return web.Response(text=json.dumps(body), status=200 if count > 0 else 503,
                                content_type="application/json", headers={"X-Content-Type-Options": "nosniff"})
        return answer

    async def update(self, result: ProxyPlan) -> None:
        wanted: dict[int, tuple[str, str, int]] = {}
        for svc in result.services:
            hc = svc.port.health_check_node_port
            if hc:
                namespace, name = svc.port.name.service
                previous = wanted.get(hc, (namespace, name, 0))
                wanted[hc] = (namespace, name, max(previous[2], len(svc.local_endpoints)))
        self.local = wanted
        for port in list(self.runners):
            if port not in wanted:
                await self.runners.pop(port).cleanup()
        for port in wanted:
            if port in self.runners:
                continue
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handler(port))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                for address in self.addresses:
                    await web.TCPSite(runner, address, port).start()
            except OSError as exc:
                log.warning("health check node port %d: %s", port, exc)
                await runner.cleanup()
                continue
            self.runners[port] = runner

    async def close(self) -> None:
        for runner in self.runners.values():
            await runner.cleanup()
        self.runners.clear()


class ProxyServer:
    def __init__(self, client: Client, config: ProxyConfig, backend: Backend,
                 conntrack: Conntrack = run_conntrack) -> None:
        self.client = client
        self.config = config
        self.backend = backend
        self.conntrack = conntrack
        self._kernel_lock = asyncio.Lock()
        self.metrics = Metrics(config.mode)
        self.services = Informer(client, SERVICES, transform=_kept(parse_service, "service"))
        self.slices = Informer(client, ENDPOINT_SLICES, indexers={BY_SERVICE: _index_by_service},
                               transform=_kept(parse_endpoint_slice, "endpoint slice"))
        self.node = Informer(client, NODES, field_selector=f"metadata.name={config.node_name}",
                             transform=strip_managed_fields)
        self.runner = BoundedFrequencyRunner(self.sync, min_interval=config.min_sync_period,
                                             max_interval=config.sync_period)
        self.changed: set[tuple[str, str]] = set()
        self.force_full = True
        self.last_full = 0.0
        self.applied: ProxyPlan | None = None
        self.last_synced = 0.0
        self.pending_triggers: list[float] = []
        self.health_checks: HealthCheckServers | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    # -- change tracking (handlers only record) --------------------------------------------------------

    def _service_changed(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.changed.add((meta.get("namespace", ""), meta.get("name", "")))
        self.metrics.service_changes.inc()
        self._queue()

    def _slice_changed(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        # A slice relabelled to another Service changes both.
        for service in {_slice_service(obj), _slice_service(old) if old is not None else None} - {None}:
            assert service is not None
            self.changed.add(service)
        trigger = _trigger_time(obj)
        if trigger is not None:
            self.pending_triggers.append(trigger)
        self.metrics.endpoint_changes.inc()
        self._queue()

    def _node_changed(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        # The kubelet rewrites its Node's status every few seconds (heartbeats, conditions); only what the
        # rules depend on (the node's addresses and labels) calls for a new full sync.
        if old is not None and _node_identity(old) == _node_identity(obj):
            return
        self.force_full = True
        self._queue()

    def _queue(self) -> None:
        self.metrics.last_queued.set_to_current_time()
        self.runner.run()

    def _watch(self) -> None:
        self.services.add_handler(on_add=self._service_changed, on_update=lambda o, n: self._service_changed(n),
                                  on_delete=self._service_changed)
        self.slices.add_handler(on_add=self._slice_changed, on_update=lambda o, n: self._slice_changed(n, o),
                                on_delete=self._slice_changed)
        self.node.add_handler(on_add=self._node_changed, on_update=lambda o, n: self._node_changed(n, o),
                              on_delete=self._node_changed)

    # -- sync -----------------------------------------------------------------------------------------

    def node_context(self) -> NodeContext | None:
        node = self.node.store.get(self.config.node_name)
        if node is None:
            return None
        cfg = self.config
        return NodeContext.from_node(
            parse_node(node), cluster_cidrs=(cfg.cluster_cidr,) if cfg.cluster_cidr else (),
            service_cidrs=(cfg.service_cidr,) if cfg.service_cidr else (), masquerade_all=cfg.masquerade_all,
            nodeport_addresses=cfg.nodeport_addresses)

    async def sync(self) -> None:
        if not (self.services.has_synced and self.slices.has_synced and self.node.has_synced):
            return  # never program rules from a partial view (upstream waits for all informers too)
        node = self.node_context()
        if node is None:
            log.warning("node %s not found; not syncing", self.config.node_name)
            return
        start = time.monotonic()
        previous = self.applied
        full = (self.force_full or previous is None or previous.node != node
                or start - self.last_full >= self.config.full_sync_period)
        changed, self.changed = self.changed, set()
        triggers, self.pending_triggers = self.pending_triggers, []
        # Snapshots, taken on the loop: everything for a full sync, only the changed Services otherwise.
        inputs: tuple[list[dict[str, Any]], list[dict[str, Any]]] | ChangedObjects
        if full:
            inputs = (self.services.store.list(), self.slices.store.list())
        else:
            inputs = {(ns, name): (self.services.store.get(name, ns),
                                   self.slices.store.by_index(BY_SERVICE, f"{ns}/{name}")) for ns, name in changed}
        try:
            async with self._kernel_lock:
                result = await asyncio.to_thread(self._plan_and_apply, inputs, node, previous, full)
        except Exception:
            self.force_full = True
            self.changed |= changed
            self.metrics.failures.inc()
            raise
        elapsed = time.monotonic() - start
        self.applied = result
        self.force_full = False
        if full:
            self.last_full = start
        self.last_synced = time.time()
        self.metrics.sync_duration.observe(elapsed)
        (self.metrics.full_duration if full else self.metrics.partial_duration).observe(elapsed)
        self.metrics.last_sync.set_to_current_time()
        self.metrics.no_local.labels(traffic_policy="internal").set(result.no_local_endpoints_internal)
        self.metrics.no_local.labels(traffic_policy="external").set(result.no_local_endpoints_external)
        now = time.time()
        for trigger in triggers:
            self.metrics.programming.observe(max(0.0, now - trigger))
        if self.health_checks is not None:
            await self.health_checks.update(result)
        endpoints = sum(len(s.cluster_endpoints) for s in result.services)
        log.info("synced %s: %d service ports, %d endpoints, %d changed services, in %.1f ms",
                 "fully" if full else "partially", len(result.services), endpoints, len(changed), elapsed * 1000)

    def _plan_and_apply(self, inputs: tuple[list[dict[str, Any]], list[dict[str, Any]]] | ChangedObjects,
                        node: NodeContext, previous: ProxyPlan | None, full: bool) -> ProxyPlan:
        """On the worker thread: plan (everything, or only the changed Services), program the kernel, then
        drop the UDP flows that point at endpoints the new rules no longer have (after the rules, so a
        client's next packet meets them)."""
        if isinstance(inputs, tuple):  # a full sync (the first one always is)
            services, slices = inputs
            ports = tuple(port for obj in services for port in _parsed(obj) or ())
            result = plan(ports, [s for s in map(_parsed, slices) if s is not None], node)
        else:
            assert previous is not None  # a partial sync replans the plan it follows
            result = replan(previous, {
                service: (tuple(_parsed(obj) or ()) if obj is not None else (),
                          tuple(s for s in map(_parsed, slices) if s is not None))
                for service, (obj, slices) in inputs.items()})
        self.backend.sync(result, full=full)
        for command in conntrack_cleanup(previous, result):
            self.conntrack(command)
        return result

    # -- serving --------------------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        now = time.time()
        healthy = self.last_synced > 0 and now - self.last_synced <= 2 * self.config.sync_period + 5
        body = {"lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_synced)),
                "currentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "nodeEligible": True}
        return web.Response(text=json.dumps(body), status=200 if healthy else 503, content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _serve(self) -> list[web.AppRunner]:
        runners = []
        for address, routes in ((self.config.healthz_address, [("/healthz", self._healthz),
                                                                 ("/livez", self._healthz)]),
                                (self.config.metrics_address, [("/metrics", self._metrics)])):
            host, _, port = address.rpartition(":")
            app = web.Application()
            for path, handler in routes:
                app.router.add_get(path, handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
            runners.append(runner)
        return runners

    async def _check_tampering(self) -> None:
        """Rules changed from outside (a flushed ruleset, a deleted chain) are detected and restored by a
        full sync, without waiting for the next periodic one."""
        while True:
            await asyncio.sleep(self.config.tamper_check_period)
            if self.applied is None:
                continue
            try:
                async with self._kernel_lock:
                    intact = await asyncio.to_thread(self.backend.intact)
            except Exception as exc:  # the check itself failed: the next sync will tell
                log.warning("could not check our rules: %s", exc)
                continue
            if not intact:
                log.warning("our rules were changed from outside; restoring them with a full sync")
                self.force_full = True
                self.runner.run()

    async def run(self) -> None:
        self._watch()
        runners = await self._serve()
        for informer in (self.services, self.slices, self.node):
            informer.start()
        loop_task = asyncio.get_running_loop().create_task(self.runner.loop())
        tamper_task = asyncio.get_running_loop().create_task(self._check_tampering())
        try:
            for informer in (self.services, self.slices, self.node):
                await informer.wait_synced()
            node = self.node_context()
            self.health_checks = HealthCheckServers(node.nodeport_ips if node else ())
            self.runner.run()
            await self._stop.wait()
        finally:
            for task in (loop_task, tamper_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for informer in (self.services, self.slices, self.node):
                await informer.stop()
            if self.health_checks is not None:
                await self.health_checks.close()
            for runner in runners:
                await runner.cleanup()
