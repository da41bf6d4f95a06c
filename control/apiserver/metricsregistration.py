"""v1beta1.metrics.k8s.io as an APIService object, kept true to how this apiserver serves the group.

Upstream, metrics-server's manifest registers the APIService (groupPriorityMinimum 100, versionPriority
100, service kube-system/metrics-server) and kube-aggregator's available-condition controller keeps its
Available condition: a GET of the group version's discovery at the service, as system:kube-aggregator in
system:masters through the front proxy, every so often; True/Passed when it answers 2xx, False/
FailedDiscoveryCheck with the error otherwise.

Here the registration is the apiserver's flags (metricsapi.MetricsServerConfig) and this module writes the
object from them:

    proxied     spec.service kube-system/metrics-server at the URL's port, and the CA the apiserver verifies
                the metrics-server with as caBundle (the apiserver does verify it: no insecureSkipTLSVerify).
                There is no Service object: the apiserver reaches the registered URL directly, as upstream's
                --enable-aggregator-routing reaches an endpoint rather than the Service's ClusterIP.
                Available comes from the discovery check above, re-run every CHECK_INTERVAL seconds.
    in-process  served by this apiserver (metricsapi.MetricsAPI on its registry): a Local APIService,
                Available by being local, as for the built-in groups.
    not served  no APIService; one left from an earlier start is marked Available=False (ServiceNotFound).

    MetricsRegistration(registry, config, served=...).start()   write it, then keep Available; stop() ends it
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from control.apiserver.crd.apiservice import apiservice_name, local_status
from control.apiserver.errors import APIError
from control.apiserver.metricsapi import GROUP, VERSION, MetricsServerConfig
from control.apiserver.registry import Registry, Tracking, now_rfc3339
from control.apiserver.resources import BY_KIND

log = logging.getLogger(__name__)

NAME = apiservice_name(GROUP, VERSION)
SERVICE = {"namespace": "kube-system", "name": "metrics-server"}
# metrics-server's own manifest (components.yaml) registers the group with these
PRIORITY = {"groupPriorityMinimum": 100, "versionPriority": 100}
LABELS = {"k8s-app": "metrics-server"}
CHECK_INTERVAL = 10.0
CHECK_TIMEOUT = 5.0  # upstream's discovery check gives up after 5 s
_MANAGER = Tracking("kube-apiserver")


def metrics_apiservice(config: MetricsServerConfig | None) -> dict[str, Any]:
    """The APIService for metrics.k8s.io: at CONFIG's metrics-server, or Local (served in this process)."""
    spec: dict[str, Any] = {"group": GROUP, "version": VERSION, **PRIORITY}
    if config is None:
        spec["service"] = None
    else:
        port = urlsplit(config.url).port or 443
        spec["service"] = {**SERVICE, "port": port}
        spec["caBundle"] = base64.b64encode(Path(config.certificate_authority).read_bytes()).decode()
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": NAME, "labels": dict(LABELS)}, "spec": spec}


def available(ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": "Available", "status": "True" if ok else "False", "lastTransitionTime": now_rfc3339(),
            "reason": reason, "message": message}


class MetricsRegistration:
    def __init__(self, registry: Registry, config: MetricsServerConfig | None, *, served: bool,
                 interval: float = CHECK_INTERVAL):
        self.registry = registry
        self.config = config
        self.served = served or config is not None
        self.interval = interval
        self._context: ssl.SSLContext | None = config.ssl_context() if config is not None else None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.served:
            await self._left_unserved()
            return
        await self._write_spec()
        if self.config is None:
            await self._write_condition(local_status()["conditions"][0])
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics-apiservice-available")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:  # the first check at once, so the object soon has a condition after a start
            try:
                await self.check()
            except Exception:  # a failed write is retried at the next check; never end the loop
                log.exception("checking %s", NAME)
            await asyncio.sleep(self.interval)

    async def check(self) -> dict[str, Any]:
        """The discovery check, written as the Available condition; the condition."""
        assert self.config is not None and self._context is not None  # start() runs checks only when proxied
        url = f"{self.config.url.rstrip('/')}/apis/{GROUP}/{VERSION}"
        headers = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT)) as session, \
                    session.get(url, headers=headers, ssl=self._context) as answer:
                code = answer.status
            problem = None if 200 <= code < 300 else f"bad status from {url}: {code}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            problem = f"failing or missing response from {url}: {exc or type(exc).__name__}"
        condition = available(True, "Passed", "all checks passed") if problem is None \
            else available(False, "FailedDiscoveryCheck", problem)
        return await self._write_condition(condition)

    async def _left_unserved(self) -> None:
        """An APIService from an earlier start (or a user's) that nothing serves now: not Available, with the
        reason upstream's controller gives a service that is not there."""
        try:
            current = await self.registry.get(BY_KIND["APIService"], None, NAME)
        except APIError as exc:
            if exc.code != 404:
                raise
            return
        service = (current.get("spec") or {}).get("service") or SERVICE
        await self._write_condition(available(False, "ServiceNotFound", f"service/{service.get('name')} in "
                                              f"\"{service.get('namespace')}\" is not present"))

    async def _write_spec(self) -> None:
        res = BY_KIND["APIService"]
        wanted = metrics_apiservice(self.config)
        try:
            current = await self.registry.get(res, None, NAME)
        except APIError as exc:
            if exc.code != 404:
                raise
            with contextlib.suppress(APIError):  # made meanwhile by another apiserver: the update below is theirs
                await self.registry.create(res, None, wanted, tracking=_MANAGER)
            return
        if current.get("spec") != wanted["spec"]:
            # restarted with other flags (another port, CA, or served in-process now): the flags are the truth
            await self.registry.update(res, None, NAME, {**current, "spec": wanted["spec"]}, tracking=_MANAGER)

    async def _write_condition(self, condition: dict[str, Any]) -> dict[str, Any]:
        """CONDITION as the APIService's Available, keeping lastTransitionTime while the status holds."""
        res = BY_KIND["APIService"]
        current = await self.registry.get(res, None, NAME)
        conditions = [c for c in (current.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
        before = next((c for c in conditions if c.get("type") == "Available"), None)
        if before is not None and before.get("status") == condition["status"]:
            condition = {**condition, "lastTransitionTime": before.get("lastTransitionTime")}
            if {k: before.get(k) for k in condition} == condition:
                return condition
        others = [c for c in conditions if c.get("type") != "Available"]
        await self.registry.patch(res, None, NAME, json.dumps({"status": {"conditions": [*others, condition]}})
                                  .encode(), "application/merge-patch+json", subresource="status",
                                  tracking=Tracking(_MANAGER.manager, "status"))
        if before is None or before.get("status") != condition["status"]:
            log.info("%s Available=%s (%s): %s", NAME, condition["status"], condition["reason"], condition["message"])
        return condition


__all__ = ["CHECK_INTERVAL", "NAME", "MetricsRegistration", "metrics_apiservice"]
