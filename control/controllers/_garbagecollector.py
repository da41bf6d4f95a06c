"""Garbage collection by ownerReferences (pkg/controller/garbagecollector).

- Background: an object none of whose owners exist any more is deleted. An owner missing from the
  cache is looked up live before we conclude it is gone (the cache may not have seen it yet), and by
  uid, so a new object under the old name doesn't count. References to owners that are gone while
  others remain are removed.
- Foreground: an owner deleted with propagationPolicy=Foreground carries the foregroundDeletion
  finalizer; we delete its dependents and remove the finalizer once none with blockOwnerDeletion=true
  is left (the apiserver then deletes the owner).
- Orphan: an owner deleted with propagationPolicy=Orphan carries the orphan finalizer; we remove the
  references to it from its dependents, then the finalizer.

Owners and dependents are the built-in resources our client knows and, as upstream's GC discovers every
resource that can be listed, watched and deleted, the custom resources of every Established CRD (through
its storage version, else its first served one), followed as CRDs come, change and go. When a CRD goes,
the apiserver has deleted its instances first; the dependents of those our cache still held are looked at
once more, and an owner of that kind is then looked up live (404: gone). Events are not watched (their
volume is high and nothing owns them in practice).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

from control.api.meta import meta, name_of, namespace_of, uid_of
from control.client import (
    CONFIG_MAPS,
    CONTROLLER_REVISIONS,
    CRON_JOBS,
    DAEMON_SETS,
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    ENDPOINTS,
    JOBS,
    LEASES,
    NAMESPACES,
    NETWORK_POLICIES,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    REPLICA_SETS,
    REPLICATION_CONTROLLERS,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
    STATEFUL_SETS,
    Conflict,
    NotFound,
    Resource,
)
from control.controllers._base import OWNER_INDEX, UID_INDEX, Context, Controller
from control.controllers._util import (
    JsonObject,
    is_deleting,
    key_of,
    owner_refs,
)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
MONITORED: tuple[Resource, ...] = (PODS, REPLICA_SETS, DEPLOYMENTS, REPLICATION_CONTROLLERS, JOBS, SERVICES, ENDPOINTS,
                                   ENDPOINT_SLICES, CONFIG_MAPS, SECRETS, SERVICE_ACCOUNTS, LEASES, NETWORK_POLICIES,
                                   NODES, NAMESPACES, DAEMON_SETS, STATEFUL_SETS, CONTROLLER_REVISIONS, CRON_JOBS,
                                   PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES)
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False,
                 kind="CustomResourceDefinition")


def _ident(resource: Resource) -> str:
    """A resource's name in work-queue keys: plural names alone clash across groups (custom resources)."""
    return f"{resource.group}/{resource.plural}"


def _group_of(api_version: Any) -> str:
    return str(api_version or "").rpartition("/")[0]


def watched_resource(crd: JsonObject) -> Resource | None:
    """The resource the GC watches a CRD's instances through, or None while it is not Established: its storage
    version if served, else its first served version. A terminating CRD is still followed: the apiserver
    deletes its instances then, and their deletions are what frees their dependents."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Established" and c.get("status") == "True"
               for c in conditions if isinstance(c, dict)):
        return None
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = [v for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("served")]
    if not served or not names.get("plural") or not names.get("kind"):
        return None
    version = next((v for v in served if v.get("storage")), served[0])
    return Resource(str(spec.get("group")), str(version.get("name")), str(names["plural"]),
                    namespaced=spec.get("scope") != "Cluster", kind=str(names["kind"]))


def _finalizers(obj: JsonObject) -> list[str]:
    return [str(f) for f in meta(obj).get("finalizers") or []]


class GarbageCollector(Controller):
    name: ClassVar[str] = "garbagecollector"
    resources: ClassVar[tuple[Resource, ...]] = (*MONITORED, CRDS)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        # What is watched now, by _ident; owners are resolved by (group, kind), custom resources' too (an
        # ownerReference may name any served version of a CRD's group), and a CRD's kind stays known after
        # it goes so that its instances are looked up live, and found gone.
        self._watched: dict[str, Resource] = {_ident(r): r for r in MONITORED}
        self._by_group_kind: dict[tuple[str, str], Resource] = {(r.group, r.kind): r for r in MONITORED}
        self._of_crd: dict[str, Resource] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    # --- handlers --------------------------------------------------------------------------------

    def register(self) -> None:
        for resource in MONITORED:
            self._watch(resource)
        self.informer(CRDS).add_handler(on_add=self._follow, on_update=lambda old, new: self._follow(new),
                                        on_delete=lambda crd: self._unfollow(name_of(crd)))

    def _follow(self, crd: JsonObject) -> None:
        wanted = watched_resource(crd)
        current = self._of_crd.get(name_of(crd))
        if wanted == current:
            return
        if current is not None:
            self._unfollow(name_of(crd))
        if wanted is None or _ident(wanted) in self._watched:
            return  # not served (yet), or a clash with what is watched already: the apiserver refuses such names
        self._of_crd[name_of(crd)] = wanted
        self._watched[_ident(wanted)] = wanted
        self._by_group_kind[(wanted.group, wanted.kind)] = wanted
        self._watch(wanted)
        self.ctx.informers.start()  # the new informer only: the others run already
        self.log.info("following %s %s (CustomResourceDefinition %s)", wanted.kind, wanted.api_version,
                      name_of(crd))

    def _unfollow(self, crd_name: str) -> None:
        resource = self._of_crd.pop(crd_name, None)
        if resource is None:
            return
        del self._watched[_ident(resource)]
        informer = self.ctx.informers.discard(resource)
        if informer is None:
            return
        # Their deletions may not all have reached this watch before the CRD's did: their dependents are
        # looked at again, and the owners looked up live.
        for obj in informer.store.list():
            for dep_resource, dependent in self.dependents(uid_of(obj)):
                self.queue.add(self.item(dep_resource, dependent))
        task = asyncio.get_running_loop().create_task(informer.stop(), name=f"stop {resource.plural} informer")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        self.log.info("no longer following %s %s (CustomResourceDefinition %s gone)", resource.kind,
                      resource.api_version, crd_name)

    def _watch(self, resource: Resource) -> None:
        def on_add(obj: JsonObject) -> None:
            self._changed(resource, obj)

        def on_update(old: JsonObject, new: JsonObject) -> None:
            self._changed(resource, new)

        def on_delete(obj: JsonObject) -> None:
            self._deleted(resource, obj)

        self.informer(resource).add_handler(on_add=on_add, on_update=on_update, on_delete=on_delete)

    async def stop(self) -> None:
        await super().stop()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    @staticmethod
    def item(resource: Resource, obj: JsonObject) -> str:
        return f"{_ident(resource)}|{key_of(obj)}"

    def _interesting(self, obj: JsonObject) -> bool:
        return bool(owner_refs(obj)) or (is_deleting(obj) and bool({ORPHAN, FOREGROUND} & set(_finalizers(obj))))

    def _changed(self, resource: Resource, obj: JsonObject) -> None:
        if self._interesting(obj):
            self.queue.add(self.item(resource, obj))

    def _deleted(self, resource: Resource, obj: JsonObject) -> None:
        # Its dependents may now be orphans; its owners may be waiting for it (foreground).
        for dep_resource, dependent in self.dependents(uid_of(obj)):
            self.queue.add(self.item(dep_resource, dependent))
        for ref in owner_refs(obj):
            owner_resource = self._watched_owner(ref)
            if owner_resource is None:
                continue
            for owner in self.informer(owner_resource).store.by_index(UID_INDEX, str(ref.get("uid"))):
                self.queue.add(self.item(owner_resource, owner))

    def _resource_of(self, ref: dict[str, Any]) -> Resource | None:
        return self._by_group_kind.get((_group_of(ref.get("apiVersion")), str(ref.get("kind"))))

    def _watched_owner(self, ref: dict[str, Any]) -> Resource | None:
        resource = self._resource_of(ref)
        return resource if resource is not None and _ident(resource) in self._watched else None

    def dependents(self, uid: str) -> list[tuple[Resource, JsonObject]]:
        if not uid:
            return []
        return [(r, d) for r in list(self._watched.values()) for d in self.informer(r).store.by_index(OWNER_INDEX, uid)]

    def resync_keys(self) -> list[str]:
        return [self.item(r, obj) for r in list(self._watched.values()) for obj in self.informer(r).store.list()
                if self._interesting(obj)]

    # --- sync ------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ident, _, obj_key = key.partition("|")
        resource = self._watched.get(ident)
        if resource is None:
            return  # a custom resource whose CRD went: its objects went first
        obj = self.informer(resource).store.get_by_key(obj_key)
        if obj is None:
            return
        finalizers = _finalizers(obj)
        if is_deleting(obj) and ORPHAN in finalizers:
            await self.orphan_dependents(resource, obj)
            return
        if is_deleting(obj) and FOREGROUND in finalizers:
            await self.process_foreground(resource, obj)
            return
        if owner_refs(obj) and not is_deleting(obj):
            await self.attempt_to_delete(resource, obj)

    async def _owner(self, dependent: JsonObject, ref: dict[str, Any]) -> tuple[bool, JsonObject | None]:
        """(exists, owner). An owner of a kind we don't know is assumed to exist: never delete on a guess."""
        resource = self._resource_of(ref)
        uid = str(ref.get("uid") or "")
        if resource is None or (resource in MONITORED and resource.api_version != ref.get("apiVersion")):
            return True, None
        if resource.namespaced and not namespace_of(dependent):
            return False, None  # a cluster-scoped object can't be owned by a namespaced one
        if _ident(resource) in self._watched:
            cached = self.informer(resource).store.by_index(UID_INDEX, uid)
            if cached:
                return True, cached[0]
        try:
            live = await self.client.get(resource, str(ref.get("name")),
                                         namespace=namespace_of(dependent) if resource.namespaced else None)
        except NotFound:
            return False, None
        return (True, live) if uid_of(live) == uid else (False, None)

    async def attempt_to_delete(self, resource: Resource, obj: JsonObject) -> None:
        """attemptToDeleteItem."""
        solid: list[dict[str, Any]] = []
        dangling: list[dict[str, Any]] = []
        waiting: list[dict[str, Any]] = []
        for ref in owner_refs(obj):
            exists, owner = await self._owner(obj, ref)
            if not exists:
                dangling.append(ref)
            elif owner is not None and is_deleting(owner) and FOREGROUND in _finalizers(owner):
                waiting.append(ref)
            else:
                solid.append(ref)
        if solid:
            if not dangling and not waiting:
                return
            # Keep the object; drop references to owners that are gone, and stop blocking owners that
            # wait for their dependents (they would otherwise wait for us forever).
            gone = {str(r.get("uid")) for r in dangling}
            refs = []
            for ref in owner_refs(obj):
                if str(ref.get("uid")) in gone:
                    continue
                ref = dict(ref)
                if ref in waiting or any(w.get("uid") == ref.get("uid") for w in waiting):
                    ref["blockOwnerDeletion"] = False
                refs.append(ref)
            await self.client.patch(resource, name_of(obj), {"metadata": {
                "ownerReferences": refs, "resourceVersion": meta(obj).get("resourceVersion")}},
                namespace=namespace_of(obj) or None)
            self.log.info("%s %s: removed references to deleted owners %s", resource.kind, key_of(obj),
                          ", ".join(f"{r.get('kind')}/{r.get('name')}" for r in dangling) or "-")
            return
        finalizers = _finalizers(obj)
        policy: Literal["Orphan", "Background", "Foreground"] = "Background"
        if waiting and self.dependents(uid_of(obj)):
            policy = "Foreground"  # our owner waits for us: our own dependents must go first
        elif ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        try:
            await self.client.delete(resource, name_of(obj), namespace=namespace_of(obj) or None,
                                     propagation_policy=policy,
                                     preconditions={"uid": uid_of(obj)})
        except (NotFound, Conflict):
            return
        owners = ", ".join(f"{r.get('kind')}/{r.get('name')}" for r in [*dangling, *waiting])
        self.log.info("deleted %s %s (owners gone or being deleted: %s; propagation %s)", resource.kind,
                      key_of(obj), owners, policy)

    async def process_foreground(self, resource: Resource, owner: JsonObject) -> None:
        """processDeletingDependentsItem."""
        uid = uid_of(owner)
        blocking = []
        for dep_resource, dependent in self.dependents(uid):
            if any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in owner_refs(dependent)):
                blocking.append((dep_resource, dependent))
            if not is_deleting(dependent):
                self.queue.add(self.item(dep_resource, dependent))
        if blocking:
            return  # each dependent's deletion brings us back here
        await self._remove_finalizer(resource, owner, FOREGROUND)
        self.log.info("%s %s: dependents gone, foreground deletion completes", resource.kind, key_of(owner))

    async def orphan_dependents(self, resource: Resource, owner: JsonObject) -> None:
        uid = uid_of(owner)
        for dep_resource, dependent in self.dependents(uid):
            refs = [r for r in owner_refs(dependent) if r.get("uid") != uid]
            try:
                await self.client.patch(dep_resource, name_of(dependent), {"metadata": {
                    "ownerReferences": refs or None, "resourceVersion": meta(dependent).get("resourceVersion")}},
                    namespace=namespace_of(dependent) or None)
            except NotFound:
                continue
            self.log.info("orphaned %s %s (owner %s %s deleted with propagationPolicy=Orphan)", dep_resource.kind,
                          key_of(dependent), resource.kind, key_of(owner))
        await self._remove_finalizer(resource, owner, ORPHAN)

    async def _remove_finalizer(self, resource: Resource, obj: JsonObject, finalizer: str) -> None:
        rest = [f for f in _finalizers(obj) if f != finalizer]
        try:
            await self.client.patch(resource, name_of(obj), {"metadata": {
                "finalizers": rest or None, "resourceVersion": meta(obj).get("resourceVersion")}},
                namespace=namespace_of(obj) or None)
        except NotFound:
            return
