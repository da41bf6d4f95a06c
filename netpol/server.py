"""The network-policy agent process: informers -> bounded-frequency sync -> plan -> nft (or iptables).

The same shape as kube-proxy: watch handlers only ask for a sync; the runner syncs at most once per
min_sync_period and at least once per sync_period, never before every informer has synced, so rules
are never written from a partial view. Each sync parses only the objects that changed, re-plans only
the policies whose inputs changed, and sends nft one transaction with the difference from the last
applied plan; the first sync, one every full_sync_period and the one after a failure replace the
whole table instead. The kernel applies a transaction all or none, so a failed sync leaves the
previous rules in place, and the runner retries. Around it: /healthz (200 once a sync has landed)
and /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from control.client import (
    ADMIN_NETWORK_POLICIES,
    BASELINE_ADMIN_NETWORK_POLICIES,
    NAMESPACES,
    NETWORK_POLICIES,
    NODES,
    PODS,
    Client,
    Informer,
    strip_managed_fields,
)
from firewall.bounded_frequency import BoundedFrequencyRunner
from netpol import iptables, nftables
from netpol.admin import AdminPolicy, parse_anp, parse_banp
from netpol.decide import ClusterView
from netpol.errors import NetpolError
from netpol.model import Direction, ParseCache, node_addresses, parse_all, parse_namespace, parse_pod, parse_policy
from netpol.nftables import Plan, Planner, delta_transaction, full_transaction

log = logging.getLogger("kube-network-policies")


class Backend(Protocol):
    def apply(self, transaction: str) -> None: ...


class NftCommand:
    """`nft -f -` in the agent's own namespace (the agent runs inside its node)."""

    def apply(self, transaction: str) -> None:
        done = subprocess.run(["nft", "-f", "-"], input=transaction, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NetpolError(f"nft refused the ruleset: {done.stderr.strip()}")


# The agent follows the cluster's kube-proxy mode, so one node never mixes nftables and iptables.
BACKENDS: dict[str, Callable[[], Backend]] = {"nftables": NftCommand, "iptables": iptables.IptablesCommand}


@dataclass
class AgentConfig:
    node_name: str
    mode: str = "nftables"  # a key of BACKENDS
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    # Between syncs that replace the whole table instead of sending only changes.
    full_sync_period: float = 600.0
    healthz_address: str = "0.0.0.0:9081"
    metrics_address: str = "127.0.0.1:9080"
    # Whether to watch and enforce AdminNetworkPolicies and the BaselineAdminNetworkPolicy (off for an
    # apiserver that does not serve policy.networking.k8s.io: its informers would never sync).
    admin_network_policies: bool = True


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sync_duration = Histogram(
            "kube_network_policies_sync_duration_seconds", "Time to render and apply the node's ruleset.",
            registry=self.registry, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )
        self.failures = Counter("kube_network_policies_sync_failures_total", "Syncs nft refused.",
                                registry=self.registry)
        self.policies = Gauge("kube_network_policies_policies", "NetworkPolicies known.", registry=self.registry)
        self.admin_policies = Gauge("kube_network_policies_admin_policies",
                                    "AdminNetworkPolicies and BaselineAdminNetworkPolicies known.",
                                    registry=self.registry)
        self.isolated = Gauge("kube_network_policies_isolated_pods", "This node's pods isolated, by direction.",
                              ["direction"], registry=self.registry)
        self.rules = Gauge("kube_network_policies_rules", "Rules in the node's table.", registry=self.registry)


class NetpolAgent:
    def __init__(self, client: Client, config: AgentConfig, backend: Backend | None = None) -> None:
        self.config = config
        if config.mode not in BACKENDS:
            raise NetpolError(f"--mode {config.mode!r}: use one of {', '.join(BACKENDS)}")
        self.backend = backend or BACKENDS[config.mode]()
        self.metrics = Metrics()
        # managedFields (server-side apply's bookkeeping) are dropped as objects arrive, as upstream's
        # agents do: the agent never reads them, and on every Pod they would be most of what it keeps.
        strip = strip_managed_fields
        self.policies = Informer(client, NETWORK_POLICIES, transform=strip)
        self.pods = Informer(client, PODS, transform=strip)
        self.namespaces = Informer(client, NAMESPACES, transform=strip)
        self.nodes = Informer(client, NODES, transform=strip)
        self.admin_policies: tuple[Informer, ...] = ()
        if config.admin_network_policies:
            self.admin_policies = (Informer(client, ADMIN_NETWORK_POLICIES, transform=strip),
                                   Informer(client, BASELINE_ADMIN_NETWORK_POLICIES, transform=strip))
        self.informers = (self.policies, self.pods, self.namespaces, self.nodes, *self.admin_policies)
        self.runner = BoundedFrequencyRunner(self.sync, min_interval=config.min_sync_period,
                                             max_interval=config.sync_period)
        self.parsed_policies = ParseCache(parse_policy)
        self.parsed_pods = ParseCache(parse_pod)
        self.parsed_namespaces = ParseCache(parse_namespace)
        self.parsed_admin = (ParseCache(parse_anp), ParseCache(parse_banp))
        self.planner = Planner(config.node_name)
        self.applied: Plan | None = None  # what the kernel holds; None: unknown, the next sync is full
        self.last_full = 0.0
        # iptables mode: its planner, and the chains the kernel holds (None: unknown, the next sync is full)
        self.iptables_planner = iptables.Planner(config.node_name)
        self.applied_chains: iptables.Chains | None = None
        self.last_synced = 0.0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def admin(self) -> list[AdminPolicy]:
        """The AdminNetworkPolicies and BaselineAdminNetworkPolicies the informers hold, parsed; counted."""
        found = [policy for informer, cache in zip(self.admin_policies, self.parsed_admin, strict=False)
                 for policy in cache.parse_all(informer.store.list())]
        self.metrics.admin_policies.set(len(found))
        return found

    def view(self) -> ClusterView:
        nodes = dict(parse_all(self.nodes.store.list(), node_addresses))
        return ClusterView(
            policies=parse_all(self.policies.store.list(), parse_policy),
            pods=parse_all(self.pods.store.list(), parse_pod),
            namespaces=parse_all(self.namespaces.store.list(), parse_namespace),
            nodes=nodes,
            admin=self.admin(),
        )

    async def sync(self) -> None:
        """One sync: parse what changed, plan, and send nft only the difference from what it holds.

        A full sync (the whole table replaced in one transaction) runs first, every full_sync_period
        (repairing whatever else changed the table) and after any failure: a refused transaction left
        the previous rules in place, but the next one is built against what the kernel surely holds."""
        if not all(informer.has_synced for informer in self.informers):
            return
        if self.config.mode == "iptables":
            await self._sync_iptables()
            return
        start = time.monotonic()
        try:
            plan = self.planner.update(
                self.parsed_policies.parse_all(self.policies.store.list()),
                self.parsed_pods.parse_all(self.pods.store.list()),
                self.parsed_namespaces.parse_all(self.namespaces.store.list()),
                self.admin(),
            )
        except Exception:
            self.planner, self.applied = Planner(self.config.node_name), None  # start from scratch
            raise
        full = self.applied is None or start - self.last_full >= self.config.full_sync_period
        previous = None if full else self.applied
        transaction = full_transaction(plan) if previous is None else delta_transaction(previous, plan)
        if transaction:
            try:
                await asyncio.to_thread(self.backend.apply, transaction)
            except Exception:
                self.metrics.failures.inc()
                self.applied = None
                raise  # the runner retries; the kernel still holds the previous rules
        if full:
            self.last_full = start
        self.applied = plan
        self._synced(start, len(self.planner.index.policies), len(self.planner.index.isolation), plan.isolated,
                     plan.rules, f"{'the whole table' if full else 'changes only'}, {len(transaction)} bytes to nft")

    async def _sync_iptables(self) -> None:
        """iptables mode, as the nftables one: the planner renders again only what changed, and only the
        chains that differ from what the kernel holds are restored (`iptables-restore --noflush`: all of
        it or none, so a refusal leaves the previous rules). A full sync (every chain of ours, our jumps
        from FORWARD put back in place, stale chains removed) runs first, every full_sync_period and
        after any failure."""
        start = time.monotonic()
        try:
            chains = self.iptables_planner.update(
                self.parsed_policies.parse_all(self.policies.store.list()),
                self.parsed_pods.parse_all(self.pods.store.list()),
                self.parsed_namespaces.parse_all(self.namespaces.store.list()),
                self.admin(),
            )
        except Exception:
            self.iptables_planner, self.applied_chains = iptables.Planner(self.config.node_name), None
            raise
        full = self.applied_chains is None or start - self.last_full >= self.config.full_sync_period
        if full:
            transaction = iptables.restore_text(chains)
        else:
            assert self.applied_chains is not None
            transaction = iptables.delta(self.applied_chains, chains)
        if transaction:
            try:
                if full:
                    await asyncio.to_thread(self.backend.apply, transaction)
                else:
                    await asyncio.to_thread(self._restore_changes, transaction)
            except Exception:
                self.metrics.failures.inc()
                self.applied_chains = None
                raise
        if full:
            self.last_full = start
        self.applied_chains = chains
        index = self.iptables_planner.index
        isolated = {d: sum(1 for by in index.isolation.values() if by.get(d)) for d in iptables.DIRECTIONS}
        self._synced(start, len(index.policies), len(index.isolation), isolated, iptables.rule_count(chains),
                     f"iptables mode, {'every chain' if full else 'changed chains only'}, "
                     f"{len(transaction)} bytes to iptables-restore")

    def _restore_changes(self, transaction: str) -> None:
        """A delta goes to iptables-restore as it is: no iptables-save first (the jumps from FORWARD stay
        where the last full sync put them)."""
        restore = getattr(self.backend, "apply_changes", None)
        if restore is None:
            raise NetpolError("iptables mode: the backend cannot apply changes alone (no apply_changes)")
        restore(transaction)

    def _synced(self, start: float, policies: int, local_pods: int, isolated: Mapping[Direction, int], rules: int,
                how: str) -> None:
        """A sync landed: the health check, the metrics and the log line, the same in both modes."""
        elapsed = time.monotonic() - start
        self.last_synced = time.time()
        self.metrics.sync_duration.observe(elapsed)
        self.metrics.policies.set(policies)
        self.metrics.rules.set(rules)
        for direction in ("Ingress", "Egress"):
            self.metrics.isolated.labels(direction=direction.lower()).set(isolated.get(direction, 0))
        log.info("synced: %d policies, %d local pods, %d isolated for ingress, %d for egress, %d rules; %s, "
                 "in %.1f ms", policies, local_pods, isolated.get("Ingress", 0), isolated.get("Egress", 0), rules,
                 how, elapsed * 1000)

    def _queue(self, *_: object) -> None:
        self.runner.run()

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy = self.last_synced > 0 and time.time() - self.last_synced <= 2 * self.config.sync_period + 5
        return web.Response(text="ok" if healthy else "not synced", status=200 if healthy else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _serve(self) -> list[web.AppRunner]:
        runners = []
        for address, path, handler in ((self.config.healthz_address, "/healthz", self._healthz),
                                       (self.config.metrics_address, "/metrics", self._metrics)):
            host, _, port = address.rpartition(":")
            app = web.Application()
            app.router.add_get(path, handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
            runners.append(runner)
        return runners

    async def run(self) -> None:
        for informer in self.informers:
            informer.add_handler(on_add=self._queue, on_update=self._queue, on_delete=self._queue)
        runners = await self._serve()
        for informer in self.informers:
            informer.start()
        loop_task = asyncio.get_running_loop().create_task(self.runner.loop())
        try:
            for informer in self.informers:
                await informer.wait_synced()
            self.runner.run()
            await self._stop.wait()
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            for informer in self.informers:
                await informer.stop()
            for runner in runners:
                await runner.cleanup()


def remove_rules(backend: Backend | None = None, *, iptables_backend: iptables.IptablesCommand | None = None) -> None:
    """What `--cleanup` does, whatever mode the agent ran in: its nftables table and its iptables chains go."""
    (backend or NftCommand()).apply(nftables.cleanup())
    (iptables_backend or iptables.IptablesCommand()).cleanup()
