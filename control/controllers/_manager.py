"""The controller-manager: one process, shared informers, every enabled controller's loop."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Iterable
from types import TracebackType

from control.client import Client
from control.controllers._base import Context, Controller, Options, SharedInformers

log = logging.getLogger("control.controllers")


# (module, class) in kube-controller-manager's start order.
_CONTROLLERS: tuple[tuple[str, str], ...] = (
    ("control.controllers._replicaset", "ReplicaSetController"),
    ("control.controllers._replicaset", "ReplicationControllerController"),
    ("control.controllers._deployment", "DeploymentController"),
    ("control.controllers._job", "JobController"),
    ("control.controllers._daemonset", "DaemonSetController"),
    ("control.controllers._statefulset", "StatefulSetController"),
    ("control.controllers._cronjob", "CronJobController"),
    ("control.controllers._persistentvolume", "PersistentVolumeController"),
    ("control.controllers._volumeprotection", "PVCProtectionController"),
    ("control.controllers._volumeprotection", "PVProtectionController"),
    ("control.controllers._localpath", "LocalPathProvisioner"),
    ("control.controllers._endpointslice", "EndpointSliceController"),
    ("control.controllers._endpoints", "EndpointsController"),
    ("control.controllers._namespace", "NamespaceController"),
    ("control.controllers._namespace", "ServiceAccountController"),
    ("control.controllers._rootcacert", "RootCACertPublisher"),
    ("control.controllers._nodelifecycle", "NodeLifecycleController"),
    ("control.controllers._loadbalancer", "LoadBalancerController"),
    ("control.controllers._garbagecollector", "GarbageCollector"),
    ("control.controllers._nodeipam", "NodeIPAMController"),
)


def registry() -> dict[str, type[Controller]]:
    """Controller names as kube-controller-manager's --controllers knows them."""
    classes: dict[str, type[Controller]] = {}
    for module, attr in _CONTROLLERS:
        cls = getattr(importlib.import_module(module), attr)
        classes[cls.name] = cls
    return classes


def select_controllers(spec: Iterable[str], known: Iterable[str]) -> list[str]:
    """--controllers semantics: '*' for all, 'name' to enable, '-name' to disable; order kept."""
    names = list(known)
    items = [s.strip() for part in spec for s in part.split(",") if s.strip()]
    unknown = [i.lstrip("-") for i in items if i != "*" and i.lstrip("-") not in names]
    if unknown:
        raise ValueError(f"unknown controllers {', '.join(unknown)}: choose from {', '.join(names)}")
    enabled = set(names) if "*" in items else set()
    for item in items:
        if item.startswith("-"):
            enabled.discard(item[1:])
        elif item != "*":
            enabled.add(item)
    return [n for n in names if n in enabled]


class ControllerManager:
    """Runs the chosen controllers over one set of shared informers.

        async with ControllerManager(client, Options(...), controllers=["replicaset"]) as cm:
            ...
    """

    def __init__(self, client: Client, options: Options | None = None, *,
                 controllers: Iterable[str] = ("*",)) -> None:
        self.client = client
        self.options = options or Options()
        self.informers = SharedInformers(client.rate_limited(self.options.kube_api_qps, self.options.kube_api_burst))
        self.ctx = Context(client, self.informers, self.options)
        known = registry()
        self.controllers: dict[str, Controller] = {
            name: known[name](self.ctx) for name in select_controllers(controllers, known)}

    async def start(self, sync_timeout: float | None = None) -> None:
        for controller in self.controllers.values():
            for resource in controller.resources:
                self.informers.get(resource)
            controller.register()
        self.informers.start()
        if not await self.informers.wait_synced(sync_timeout):
            raise TimeoutError("the informers did not sync")
        for name, controller in self.controllers.items():
            await controller.start()
            log.info("started controller %s", name)

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.controllers.values()))
        await self.informers.stop()
        log.info("controllers stopped")

    async def __aenter__(self) -> ControllerManager:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
