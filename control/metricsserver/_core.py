"""metrics.k8s.io/v1beta1 (NodeMetrics, PodMetrics) as metrics-server computes them: every kubelet's
/metrics/resource scraped (with a kubelet client certificate: nodes/metrics), two scrapes' CPU
counters made a rate, and the answer in upstream's shapes: the same paths, kinds, verbs (get, list),
label selectors, Tables, and usage as nanocores and Ki over a window. Nodes and pods come from a
Lister: the API (the metrics-server component, _server.py) or the apiserver's own registry.

metrics-server scrapes on a timer (every 15 s) and answers from its last two scrapes. Here the
kubelets are scraped when a request comes, and the usage is the rate since the newest earlier scrape
of that node at least MIN_WINDOW_MS old (the first request of all scrapes twice, MIN_WINDOW_MS
apart); the `window` field says the real interval. A container that started after that earlier
scrape is measured since its start, as metrics-server does. A kubelet that cannot be reached leaves
its node and pods out of the answer (`kubectl top` shows them as unknown), as metrics-server does.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from control.api.resourcemetrics import (
    Scrape,
    Usage,
    format_cpu,
    format_memory,
    format_timestamp,
    format_window,
    read_scrape,
    usage_between,
)

log = logging.getLogger("metrics-server")

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
#: the shortest window a CPU rate is taken over
MIN_WINDOW_MS = 1000
#: scrapes kept per node to take rates from
HISTORY = 8
SCRAPE_TIMEOUT = 10.0
KUBELET_PORT = 10250
#: plural -> (kind, namespaced)
RESOURCES = {"nodes": ("NodeMetrics", False), "pods": ("PodMetrics", True)}


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [version], "preferredVersion": version}


def resource_list() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]}
        for plural, (kind, namespaced) in RESOURCES.items()]}


def _sum_usage(containers: list[dict[str, Any]], resource: str) -> str:
    suffix = "n" if resource == "cpu" else "Ki"
    return f"{sum(int(c['usage'][resource][:-len(suffix)]) for c in containers)}{suffix}"


def as_table(body: dict[str, Any], include_object: str = "Metadata") -> dict[str, Any]:
    """BODY (an object or a list of this group) as a meta.k8s.io Table, with metrics-server's columns
    (Name, CPU, Memory, Window), for `kubectl get nodemetrics` / `podmetrics`."""
    objects = body.get("items", [body]) if body.get("kind", "").endswith("List") else [body]
    rows = []
    for obj in objects:
        if "usage" in obj:
            cpu, memory = obj["usage"]["cpu"], obj["usage"]["memory"]
        else:
            cpu, memory = _sum_usage(obj["containers"], "cpu"), _sum_usage(obj["containers"], "memory")
        row: dict[str, Any] = {"cells": [obj["metadata"]["name"], cpu, memory, obj["window"]]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    columns = [("Name", "string", "Name must be unique within a namespace."),
               ("CPU", "string", "Amount of CPU used"), ("Memory", "string", "Amount of memory used"),
               ("Window", "string", "Time window of the usage")]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": [{"name": name, "type": kind, "format": "name" if name == "Name" else "",
                                   "description": text, "priority": 0} for name, kind, text in columns],
            "rows": rows}


def parse_path(parts: list[str]) -> tuple[str, str | None, str | None] | None:
    """(plural, namespace, name) of a path's parts after /apis/metrics.k8s.io/v1beta1, or None."""
    namespace = None
    if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] == "pods":
        namespace, parts = parts[1], parts[2:]
    if not parts or parts[0] not in RESOURCES or len(parts) > 2:
        return None
    if parts[0] == "nodes" and namespace is not None:
        return None
    return parts[0], namespace, parts[1] if len(parts) == 2 else None


class MetricsNotFound(Exception):
    """No metrics for the object named: a 404 NotFound Status, as upstream words it."""

    def __init__(self, plural: str, name: str):
        super().__init__(f'{plural}.{GROUP} "{name}" not found')
        self.plural, self.name = plural, name


class Lister(Protocol):
    """Where the nodes and pods come from (LABEL_SELECTOR: the request's, already checked to parse)."""

    async def nodes(self, label_selector: str | None = None) -> list[dict[str, Any]]: ...

    async def pods(self, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]: ...


def kubelet_port(node: dict[str, Any]) -> int:
    """The port the node's kubelet reports serving on (status.daemonEndpoints), else 10250."""
    endpoint = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    port = endpoint.get("Port")
    return port if isinstance(port, int) and 0 < port < 65536 else KUBELET_PORT


def _address(node: dict[str, Any]) -> str | None:
    return next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                 if a.get("type") == "InternalIP"), None)


Fetch = Callable[[str], Awaitable[str]]


class MetricsAPI:
    """The group's handler. LISTER gives nodes and pods; CONTEXT is the TLS client context for kubelets
    (a kubelet client certificate); FETCH reads a kubelet URL's page (an HTTPS GET with CONTEXT by
    default; a fake in tests); MIN_WINDOW_MS as above."""

    def __init__(self, lister: Lister, context: ssl.SSLContext | None, *, fetch: Fetch | None = None,
                 min_window_ms: int = MIN_WINDOW_MS):
        self.lister = lister
        self.context = context
        self.fetch: Fetch = fetch if fetch is not None else self._get
        self.min_window_ms = min_window_ms
        self._history: dict[str, deque[Scrape]] = {}

    async def _get(self, url: str) -> str:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as session, \
                session.get(url, ssl=self.context if self.context is not None else True) as answer:
            text = await answer.text()
            if answer.status != 200:
                raise ValueError(f"answered {answer.status}: {text[:200]}")
            return text

    async def _scrape(self, node: dict[str, Any]) -> Scrape | None:
        name = node["metadata"]["name"]
        address = _address(node)
        if address is None:
            return None
        url = f"https://{address}:{kubelet_port(node)}/metrics/resource"
        try:
            return read_scrape(await self.fetch(url))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.warning("scraping node %s at %s failed: %s", name, url, exc)
            return None

    def _earlier(self, name: str, scrape: Scrape) -> Scrape | None:
        """The newest kept scrape of node NAME at least a minimal window before SCRAPE."""
        assert scrape.node is not None
        for old in reversed(self._history.get(name, ())):
            if old.node is not None and scrape.node.timestamp_ms - old.node.timestamp_ms >= self.min_window_ms:
                return old
        return None

    async def _pairs(self, nodes: list[dict[str, Any]], *, full: bool = False
                     ) -> dict[str, tuple[Scrape | None, Scrape]]:
        """node name -> (an earlier scrape, one made now) for each node whose kubelet answered; FULL:
        NODES are all the cluster's."""
        names = [n["metadata"]["name"] for n in nodes]
        now = dict(zip(names, await asyncio.gather(*(self._scrape(n) for n in nodes)), strict=True))
        fresh = [n for n in nodes if (s := now[n["metadata"]["name"]]) is not None and s.node is not None
                 and self._earlier(n["metadata"]["name"], s) is None]
        if fresh:
            # no earlier scrape to take a rate from: keep this one, and scrape those again a window later
            for node in fresh:
                self._keep(node["metadata"]["name"], now[node["metadata"]["name"]])
            await asyncio.sleep(self.min_window_ms / 1000)
            again = await asyncio.gather(*(self._scrape(n) for n in fresh))
            now.update({n["metadata"]["name"]: s for n, s in zip(fresh, again, strict=True)})
        pairs: dict[str, tuple[Scrape | None, Scrape]] = {}
        if full:  # nodes that are gone take their scrapes with them
            for gone in set(self._history) - set(names):
                del self._history[gone]
        for name, scrape in now.items():
            if scrape is None or scrape.node is None:
                continue
            pairs[name] = (self._earlier(name, scrape), scrape)
            self._keep(name, scrape)
        return pairs

    def _keep(self, name: str, scrape: Scrape | None) -> None:
        if scrape is not None:
            self._history.setdefault(name, deque(maxlen=HISTORY)).append(scrape)

    # -- objects --------------------------------------------------------------------------------------

    @staticmethod
    def _usage(usage: Usage) -> dict[str, str]:
        return {"cpu": format_cpu(usage.nanocores), "memory": format_memory(usage.memory_bytes)}

    def _node_metrics(self, node: dict[str, Any], pair: tuple[Scrape | None, Scrape]) -> dict[str, Any] | None:
        earlier, scrape = pair
        assert scrape.node is not None
        usage = usage_between(earlier.node if earlier else None, scrape.node)
        if usage is None:
            return None
        meta = node["metadata"]
        return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
                "metadata": {"name": meta["name"], "creationTimestamp": format_timestamp(int(time.time() * 1000)),
                             "labels": meta.get("labels") or {}},
                "timestamp": format_timestamp(usage.timestamp_ms), "window": format_window(usage.window_ms),
                "usage": self._usage(usage)}

    def _pod_metrics(self, pod: dict[str, Any], pair: tuple[Scrape | None, Scrape]) -> dict[str, Any] | None:
        """A pod's metrics: every container of its spec running and measured, or none (metrics-server
        leaves out a pod it has not measured whole)."""
        earlier, scrape = pair
        meta = pod["metadata"]
        containers, usages = [], []
        for spec in (pod.get("spec") or {}).get("containers") or []:
            key = (meta.get("namespace", ""), meta["name"], spec.get("name", ""))
            point = scrape.containers.get(key)
            usage = usage_between(earlier.containers.get(key) if earlier else None, point) if point else None
            if usage is None:
                return None
            containers.append({"name": key[2], "usage": self._usage(usage)})
            usages.append(usage)
        if not containers:
            return None
        newest = max(usages, key=lambda u: u.timestamp_ms)
        return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                             "creationTimestamp": format_timestamp(int(time.time() * 1000)),
                             "labels": meta.get("labels") or {}},
                "timestamp": format_timestamp(newest.timestamp_ms), "window": format_window(newest.window_ms),
                "containers": containers}

    # -- requests -------------------------------------------------------------------------------------

    async def serve(self, plural: str, namespace: str | None, name: str | None, label_selector: str | None
                    ) -> dict[str, Any]:
        """The object or list a GET of the group's path names (the caller has authorized it)."""
        nodes = await self.lister.nodes()
        if plural == "nodes":
            if name is not None:
                nodes = [n for n in nodes if n["metadata"]["name"] == name]
            elif label_selector:
                nodes = await self.lister.nodes(label_selector)
            pairs = await self._pairs(nodes, full=name is None and not label_selector)
            found = [m for n in nodes if n["metadata"]["name"] in pairs
                     and (m := self._node_metrics(n, pairs[n["metadata"]["name"]])) is not None]
            kind = "NodeMetrics"
        else:
            pods = await self.lister.pods(namespace, label_selector)
            if name is not None:
                pods = [p for p in pods if p["metadata"]["name"] == name]
            wanted = {(p.get("spec") or {}).get("nodeName") for p in pods}
            pairs = await self._pairs([n for n in nodes if n["metadata"]["name"] in wanted])
            found = [m for p in pods if (node := (p.get("spec") or {}).get("nodeName")) in pairs
                     and (p.get("status") or {}).get("phase") == "Running"
                     and (m := self._pod_metrics(p, pairs[node])) is not None]
            kind = "PodMetrics"
        if name is not None:
            if not found:
                raise MetricsNotFound(plural, name)
            return found[0]
        return {"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {}, "items": found}
