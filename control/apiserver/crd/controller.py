"""The in-process controllers of apiextensions-apiserver, as one worker over the CRD watch cache:

- naming: a CRD's names are accepted unless another CRD of its group (or a built-in resource) already
  uses one of them (condition NamesAccepted, status.acceptedNames);
- establishing: accepted names make it Established, and its served versions are then served (a watch
  cache started for its storage, discovery, OpenAPI) and registered as Local APIServices;
- finalizing: a deleted CRD (which the registry holds with customresourcecleanup.apiextensions.k8s.io)
  is marked Terminating, its instances are deleted, then the finalizer is removed so that it goes; once
  gone it is no longer served.

At start every stored CRD is reconciled before the apiserver reports ready, so a restart serves them
again. Work is queued by CRD name and done by one task: a CRD is never reconciled twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from control.apiserver import apply
from control.apiserver.crd import apiservice
from control.apiserver.crd.applyschema import StructuralListTypes
from control.apiserver.crd.catalog import (
    CLEANUP_FINALIZER,
    CustomResource,
    is_established,
    resources_of,
    storage_resource,
)
from control.apiserver.errors import APIError
from control.apiserver.resources import BY_KIND, RESOURCES, group_versions
from control.apiserver.watchcache import WatchEvent

if TYPE_CHECKING:
    from control.apiserver.registry import Registry

log = logging.getLogger(__name__)

CRDS = BY_KIND["CustomResourceDefinition"]
APISERVICES = BY_KIND["APIService"]
RETRY_SECONDS = 1.0  # a cleanup waiting on instances' own finalizers looks again this often
MERGE = "application/merge-patch+json"


def _now() -> str:
    from control.apiserver.registry import now_rfc3339

    return now_rfc3339()


def _condition(old: list[dict[str, Any]], kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    previous = next((c for c in old if c.get("type") == kind), None)
    since = previous.get("lastTransitionTime") if previous is not None and previous.get("status") == status \
        else None
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since or _now()}


class CRDController:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.catalog = registry.custom
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._retries: set[asyncio.TimerHandle] = set()

    @property
    def _cache(self) -> Any:
        return self.registry.caches[CRDS.cache_key]

    async def start(self) -> None:
        self._cache.listeners.append(self._changed)
        await self._register_builtins()
        for key in sorted(self._cache.objects):
            name = key.rsplit("/", 1)[-1]
            try:
                await self._reconcile(name)
            except APIError:  # one CRD the store holds in a state refused now must not keep the apiserver down
                log.exception("reconciling CustomResourceDefinition %s at start", name)
                self._retry(name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="crd-controller")

    async def stop(self) -> None:
        for handle in self._retries:
            handle.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _changed(self, event: WatchEvent, key: str) -> None:
        self._enqueue(key.rsplit("/", 1)[-1])
        # A CRD's names free or take names of the others of its group: look at those again too.
        group = (event.object.get("spec") or {}).get("group")
        for other_key, other in self._cache.objects.items():
            if other_key != key and (other.get("spec") or {}).get("group") == group \
                    and not is_established(other):
                self._enqueue(other_key.rsplit("/", 1)[-1])

    def _enqueue(self, name: str) -> None:
        if name not in self._queued:
            self._queued.add(name)
            self._queue.put_nowait(name)

    async def _run(self) -> None:
        while True:
            name = await self._queue.get()
            self._queued.discard(name)
            try:
                await self._reconcile(name)
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed reconcile is retried, never the end of the controller
                log.exception("reconciling CustomResourceDefinition %s", name)
                self._retry(name)

    def _retry(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._retries.discard(handle)
            self._enqueue(name)

        handle = loop.call_later(RETRY_SECONDS, fire)
        self._retries.add(handle)

    # -- one CRD ------------------------------------------------------------------------------------------------

    async def _reconcile(self, name: str) -> None:
        crd = self._cache.objects.get(CRDS.key(None, name))
        if crd is None:
            await self._unserve(name)
            return
        if crd["metadata"].get("deletionTimestamp"):
            await self._finalize(crd)
            return
        status = self._status(crd)
        if status != crd.get("status"):
            crd = await self.registry.patch(CRDS, None, name, json.dumps({"status": status}).encode(), MERGE,
                                            subresource="status")
        if is_established(crd):
            await self._serve(crd)

    def _status(self, crd: dict[str, Any]) -> dict[str, Any]:
        spec = crd.get("spec") or {}
        status = dict(crd.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
        names = dict(spec.get("names") or {})
        conflict = self._conflict(crd, names)
        kept = [c for c in conditions if c.get("type") not in ("NamesAccepted", "Established")]
        if conflict is None:
            status["acceptedNames"] = names
            accepted = _condition(conditions, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
            established = _condition(conditions, "Established", "True", "InitialNamesAccepted",
                                     "the initial names have been accepted")
        else:
            status.setdefault("acceptedNames", {"plural": "", "kind": ""})
            accepted = _condition(conditions, "NamesAccepted", "False", conflict[0], conflict[1])
            established = _condition(conditions, "Established", "False", "NotAccepted", "not all names are accepted")
            if is_established(crd):  # once served, a CRD keeps serving its accepted names (upstream)
                established = next(c for c in conditions if c.get("type") == "Established")
        status["conditions"] = [accepted, established, *kept]
        storage = next((v.get("name") for v in spec.get("versions") or [] if v.get("storage")), None)
        stored = list(status.get("storedVersions") or [])
        if storage and storage not in stored:
            stored.append(storage)
        status["storedVersions"] = stored
        return status

    def _conflict(self, crd: dict[str, Any], names: dict[str, Any]) -> tuple[str, str] | None:
        """(reason, message) of the first name another CRD of the group (or a built-in) already has."""
        group = (crd.get("spec") or {}).get("group")
        mine = crd["metadata"]["name"]
        taken: dict[str, set[str]] = {"plural": set(), "singular": set(), "short": set(), "kind": set(),
                                      "listKind": set()}
        for other in self._cache.objects.values():
            if other["metadata"]["name"] == mine or (other.get("spec") or {}).get("group") != group:
                continue
            accepted = (other.get("status") or {}).get("acceptedNames") or {}
            taken["plural"].add(accepted.get("plural", ""))
            taken["singular"].add(accepted.get("singular", ""))
            taken["short"].update(accepted.get("shortNames") or [])
            taken["kind"].add(accepted.get("kind", ""))
            taken["listKind"].add(accepted.get("listKind", ""))
        for res in RESOURCES:
            if res.group == group:
                taken["plural"].add(res.plural)
                taken["singular"].add(res.singular)
                taken["short"].update(res.short_names)
                taken["kind"].add(res.kind)
        taken = {k: v - {""} for k, v in taken.items()}
        checks = (("plural", "PluralConflict", [names.get("plural")]),
                  ("singular", "SingularConflict", [names.get("singular")]),
                  ("short", "ShortNamesConflict", list(names.get("shortNames") or [])),
                  ("kind", "KindConflict", [names.get("kind")]),
                  ("listKind", "ListKindConflict", [names.get("listKind")]))
        for field, reason, values in checks:
            for value in values:
                if value in taken[field]:
                    return reason, f'"{value}" is already in use'
        return None

    # -- serving ------------------------------------------------------------------------------------------------

    async def _serve(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        rows = resources_of(crd)
        before = {(r.group, r.version) for r in self.catalog.served(name)}
        for row in rows:
            await self.registry.add_cache(row)
        for gone in {(r.kind, r.api_version) for r in self.catalog.served(name)} - \
                {(r.kind, r.api_version) for r in rows}:
            apply.unregister(*gone)
        for row in rows:  # server-side apply merges its lists as this version's schema types them
            apply.register(row.kind, StructuralListTypes(row.schema), row.api_version)
        self.catalog.serve(name, rows)
        for row in rows:
            if (row.group, row.version) not in before:
                await self._ensure_apiservice(row.group, row.version, apiservice.CRD_PRIORITY)
        await self._drop_apiservices(before - {(r.group, r.version) for r in rows})

    async def _unserve(self, name: str) -> None:
        rows = self.catalog.served(name)
        self.catalog.unserve(name)
        for row in rows:
            apply.unregister(row.kind, row.api_version)
        for row in rows:
            if not any(r.cache_key == row.cache_key for r in self.catalog.resources()):
                await self.registry.remove_cache(row.cache_key)
        await self._drop_apiservices({(r.group, r.version) for r in rows})

    async def _register_builtins(self) -> None:
        for group, versions in {"": ["v1"], **group_versions()}.items():
            for version in versions:
                await self._ensure_apiservice(group, version, None)

    async def _ensure_apiservice(self, group: str, version: str, priority: tuple[int, int] | None) -> None:
        obj = apiservice.local_apiservice(group, version, priority)
        if apiservice.apiservice_name(group, version) in {
                o["metadata"]["name"] for o in self.registry.caches[APISERVICES.cache_key].objects.values()}:
            return
        obj["status"] = apiservice.local_status()
        with contextlib.suppress(APIError):  # already there (a race with another writer): nothing to do
            await self.registry.create(APISERVICES, None, obj)

    async def _drop_apiservices(self, group_versions_gone: set[tuple[str, str]]) -> None:
        still = {(r.group, r.version) for r in self.catalog.resources()}
        for group, version in sorted(group_versions_gone - still):
            name = apiservice.apiservice_name(group, version)
            try:
                current = await self.registry.get(APISERVICES, None, name)
                if (current.get("spec") or {}).get("service") is None:
                    from control.apiserver.registry import DeleteOptions

                    await self.registry.delete(APISERVICES, None, name, DeleteOptions())
            except APIError as exc:
                if exc.code != 404:
                    raise

    # -- deletion -----------------------------------------------------------------------------------------------

    async def _finalize(self, crd: dict[str, Any]) -> None:
        from control.apiserver.registry import DeleteOptions, ListOptions

        name = crd["metadata"]["name"]
        if CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or []):
            return  # another finalizer holds it; nothing of ours left to do
        self.catalog.terminating.add(name)
        if is_established(crd) and not self.catalog.served(name):
            await self._serve(crd)  # after a restart: its instances stay readable until they are gone
        conditions = [c for c in (crd.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
        if not any(c.get("type") == "Terminating" for c in conditions):
            terminating = _condition(conditions, "Terminating", "True", "InstanceDeletionInProgress",
                                     "CustomResource deletion is in progress")
            await self.registry.patch(CRDS, None, name, json.dumps(
                {"status": {"conditions": [*conditions, terminating]}}).encode(), MERGE, subresource="status")
        storage: CustomResource | None = storage_resource(crd)
        remaining = 0
        if storage is not None:
            # The instances are deleted through the storage version, from the store (not the cache: it may not
            # be served, e.g. a CRD never Established).
            listed = await self.registry.list_objects(storage, None, ListOptions())
            for item in listed["items"]:
                meta = item["metadata"]
                try:
                    await self.registry.delete(storage, meta.get("namespace"), meta["name"], DeleteOptions())
                except APIError as exc:
                    if exc.code != 404:
                        raise
            remaining = len((await self.registry.list_objects(storage, None, ListOptions()))["items"])
        if remaining:
            # Instances with finalizers of their own: wait for them, as upstream's finalizer controller does.
            self._retry(name)
            return
        finalizers = [f for f in crd["metadata"].get("finalizers") or [] if f != CLEANUP_FINALIZER]
        try:
            await self.registry.patch(CRDS, None, name, json.dumps(
                {"metadata": {"finalizers": finalizers or None}}).encode(), MERGE)
        except APIError as exc:
            if exc.code != 404:
                raise
        if not finalizers:
            await self._unserve(name)


__all__ = ["CRDController"]
