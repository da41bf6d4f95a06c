"""Generic REST storage over the store: the semantics of kube-apiserver's generic registry.

Objects are JSON in the store under /registry/...; metadata.resourceVersion is the store's mod
revision, set when read, never stored. Create fills in uid, creationTimestamp and generation; update
is compare-and-swap on the revision the client read (409 Conflict if stale) or, without one, retried
until it lands (upstream's GuaranteedUpdate); status is a subresource for the kinds that have one;
deletion honours finalizers, propagationPolicy and pods' graceful deletion.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from control.api import SelectorError, label_selector_as_selector, selector_from_set
from control.api.jsoncopy import json_copy
from control.apiserver import errors
from control.apiserver.allocator import Allocation, ServiceAllocator
from control.apiserver.apply import Scope, record_update
from control.apiserver.crd import hooks as crd_hooks
from control.apiserver.crd.catalog import Catalog, CustomResource
from control.apiserver.decoding import type_error
from control.apiserver.ephemeral import ONLY_FIELD_SUBRESOURCES
from control.apiserver.errors import APIError
from control.apiserver.resources import BY_KIND, RESOURCES, Resource
from control.apiserver.selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from control.apiserver.serviceaccount import add_api_access_volume
from control.apiserver.storage import admit_storage
from control.apiserver.strategy import patch_allocated_values, prepare_for_create
from control.apiserver.watchcache import WatchCache, decode
from control.store import CompactedError, ConflictError, FutureRevisionError, KeyExistsError, KeyNotFoundError, Store

MAX_RETRIES = 16


class FieldErrorLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def message(self) -> str: ...


class Admission(Protocol):
    """Defaulting and validation, per kind (pure functions on JSON objects)."""

    def default(self, kind: str, obj: dict[str, Any]) -> None: ...
    def validate_create(self, kind: str, obj: dict[str, Any]) -> list[FieldErrorLike]: ...
    def validate_update(self, kind: str, obj: dict[str, Any], old: dict[str, Any], *,
                        subresource: str | None = None) -> list[FieldErrorLike]: ...


Admit = Callable[[dict[str, Any] | None, dict[str, Any] | None], None]
"""admit(new, old): a per-request admission check (NodeRestriction) on the object as it will be stored and
the one it replaces (new is None for a delete, old for a create); raises APIError to refuse the write."""

PatchFn = Callable[[dict[str, Any], bytes, str, str], dict[str, Any]]
"""apply_patch(original, body, content_type, kind) -> patched copy; raises APIError for bad patches."""


def now_rfc3339(clock: Callable[[], float] = time.time) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def encode(obj: dict[str, Any]) -> bytes:
    """The stored form: the object without its resourceVersion (that is the store's revision). A shallow
    copy suffices: only metadata's top level changes."""
    meta = obj.get("metadata")
    stored = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}} \
        if isinstance(meta, dict) else obj
    return json.dumps(stored, separators=(",", ":"), sort_keys=True).encode()


def _generate_suffix() -> str:
    # Upstream's alphabet for generateName: no vowels (no words), no confusable characters.
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def causes_of(field_errors: list[FieldErrorLike]) -> list[dict[str, Any]]:
    return [{"reason": e.type, "message": e.message, "field": e.field} for e in field_errors]


@dataclass(frozen=True)
class Tracking:
    """Who writes, for metadata.managedFields: the field manager and the subresource written through."""

    manager: str
    subresource: str = ""


@dataclass
class ListOptions:
    label_selector: str | None = None
    field_selector: str | None = None
    limit: int = 0
    continue_token: str | None = None
    resource_version: str | None = None
    resource_version_match: str | None = None


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None


class Registry:
    def __init__(self, store: Store, *, admission: Admission, patcher: PatchFn, allocator: ServiceAllocator,
                 clock: Callable[[], float] = time.time, service_account_tokens: bool = False):
        self.store = store
        self.admission = admission
        # The ServiceAccount admission's token volume, when the apiserver issues tokens (pods' creates only)
        self.service_account_tokens = service_account_tokens
        self.patcher = patcher
        self.allocator = allocator
        self.clock = clock
        self.caches: dict[str, WatchCache] = {r.plural: WatchCache(store, r) for r in RESOURCES if r.stored}
        # The custom resources being served (crd/), kept by the CRD controller, which start() runs.
        self.custom = Catalog()
        self._crd_controller: Any = None

    async def start(self) -> None:
        for cache in self.caches.values():
            await cache.start()
        self.allocator.rebuild(self.caches["services"].objects.values())
        # Imported here: the controller drives this registry, so it imports this module.
        from control.apiserver.crd.controller import CRDController

        self._crd_controller = CRDController(self)
        await self._crd_controller.start()

    async def stop(self) -> None:
        if self._crd_controller is not None:
            await self._crd_controller.stop()
        for cache in list(self.caches.values()):
            await cache.stop()

    async def add_cache(self, res: Resource) -> None:
        """A watch cache for a resource served from now on (a custom resource); one per storage, shared by
        the versions that serve it."""
        if res.cache_key not in self.caches:
            cache = WatchCache(self.store, res)
            self.caches[res.cache_key] = cache
            await cache.start()

    async def remove_cache(self, key: str) -> None:
        cache = self.caches.pop(key, None)
        if cache is not None:
            await cache.stop()

    def _admission(self, res: Resource) -> Admission:
        custom = crd_hooks.admission_for(res)
        return custom if custom is not None else self.admission

    def end_watches(self) -> None:
        """End every open watch, as a terminating apiserver does: clients re-list or re-watch from their
        last resourceVersion when it (or another) is back."""
        for cache in self.caches.values():
            for watcher in list(cache.watchers):
                cache.unwatch(watcher)

    # -- helpers --------------------------------------------------------------------------------------

    def _namespace_state(self, namespace: str) -> dict[str, Any] | None:
        return self.caches["namespaces"].objects.get(BY_KIND["Namespace"].key(None, namespace))

    async def _check_namespace(self, res: Resource, namespace: str | None) -> None:
        if not res.namespaced:
            return
        assert namespace is not None
        # Upstream's NamespaceLifecycle admission reads its namespace informer, and the stored object only when
        # the informer has not seen the namespace yet (one created a moment ago): here the watch cache.
        key = BY_KIND["Namespace"].key(None, namespace)
        ns = self.caches["namespaces"].objects.get(key)
        if ns is None:
            stored = await self.store.get(key)
            if stored is None:
                raise errors.not_found("", "namespaces", namespace)
            ns = json.loads(stored.value)
        if (ns.get("status") or {}).get("phase") == "Terminating":
            raise APIError(403, "Forbidden", f"unable to create new content in namespace {namespace} because it is "
                           "being terminated",
                           {"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                        "message": f"namespace {namespace} is being terminated"}]})

    async def _read(self, res: Resource, namespace: str | None, name: str) -> tuple[dict[str, Any], int]:
        kv = await self.store.get(res.key(namespace, name))
        if kv is None:
            raise errors.not_found(res.group, res.plural, name)
        return res.from_storage(decode(kv.value, kv.mod_revision)), kv.mod_revision

    def _invalid(self, res: Resource, name: str, field_errors: list[FieldErrorLike]) -> APIError:
        refused = errors.invalid(res.group, res.kind, name, causes_of(field_errors))
        if isinstance(res, CustomResource):  # upstream names a custom kind with its group: CronTab.stable.example.com
            refused.message = refused.message.replace(res.kind, f"{res.kind}.{res.group}", 1)
        return refused

    # -- reads ----------------------------------------------------------------------------------------

    async def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj, _ = await self._read(res, namespace, name)
        return obj

    async def list_objects(self, res: Resource, namespace: str | None, options: ListOptions) -> dict[str, Any]:
        labels = parse_label_selector(options.label_selector)
        fields = parse_field_selector(options.field_selector, res.plural)
        prefix = res.key_prefix(namespace)

        def accepts(obj: dict[str, Any]) -> bool:
            return labels_match(labels, obj) and fields_match(fields, obj, res.plural)

        items: list[dict[str, Any]]
        next_token = ""
        if options.resource_version == "0" and not options.continue_token:
            # "Any version" may be served from the watch cache, as upstream does.
            cache = self.caches[res.cache_key]
            items = [res.from_storage(obj) for key, obj in sorted(cache.objects.items())
                     if key.startswith(prefix) and accepts(obj)]
            revision = cache.revision
        else:
            items, revision, next_token = await self._list_from_store(res, prefix, accepts, options)
        for item in items:
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        metadata: dict[str, Any] = {"resourceVersion": str(revision)}
        if next_token:
            metadata["continue"] = next_token
        return {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": metadata, "items": items}

    async def _list_from_store(self, res: Resource, prefix: str, accepts: Callable[[dict[str, Any]], bool],
                               options: ListOptions) -> tuple[list[dict[str, Any]], int, str]:
        revision = 0
        start_after: str | None = None
        if options.continue_token:
            revision, start_after = _decode_continue(options.continue_token, prefix)
        elif options.resource_version not in (None, "", "0"):
            try:
                requested = int(options.resource_version or "")
            except ValueError:
                raise errors.bad_request(f"invalid resource version {options.resource_version!r}") from None
            if options.resource_version_match == "Exact":
                revision = requested
        limit = max(options.limit, 0)
        items: list[dict[str, Any]] = []
        page = min(limit, 1000) if limit else 1000  # what the store reads at once, whatever the client's limit
        try:
            while True:
                result = await self.store.range(prefix, limit=page, start_after=start_after, revision=revision)
                revision = result.revision
                for kv in result.items:
                    start_after = kv.key
                    obj = res.from_storage(decode(kv.value, kv.mod_revision))
                    if accepts(obj):
                        items.append(obj)
                        if limit and len(items) == limit:
                            more = result.more or kv.key != result.items[-1].key
                            return items, revision, _encode_continue(revision, kv.key) if more else ""
                if not result.more:
                    return items, revision, ""
        except CompactedError:
            raise errors.expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a "
                "new list without the continue parameter.") from None
        except FutureRevisionError:
            raise APIError(504, "Timeout", f"Too large resource version: {revision}, current: "
                           f"{await self.store.current_revision()}") from None

    # -- create ---------------------------------------------------------------------------------------

    async def create(self, res: Resource, namespace: str | None, body: dict[str, Any], *,
                     dry_run: bool = False, admit: Admit | None = None,
                     tracking: Tracking | None = None) -> dict[str, Any]:
        obj = json_copy(body)
        _check_types(res, obj)
        meta = _metadata(obj)
        if res.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on "
                                         "the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _generate_suffix()
        name = meta.get("name") or ""
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339(self.clock)
        meta["generation"] = 1
        if _builtin(res) == "Namespace":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        self._admission(res).default(res.kind, obj)
        if tracking is not None:
            # After defaulting (upstream defaults as it decodes, so the creator owns the defaults), before the
            # strategy and admission add what nobody asked for (a Job's generated selector, the token volume).
            record_update(obj, None, tracking.manager, _scope(res, tracking), self.clock)
        prepare_for_create(_builtin(res), obj)
        if isinstance(res, CustomResource) and res.status_subresource:
            obj.pop("status", None)  # written through /status only, from the start (upstream's CR strategy)
        if _builtin(res) == "Pod" and self.service_account_tokens:
            add_api_access_volume(obj)
        if res.kind in ("PersistentVolumeClaim", "PersistentVolume"):
            admit_storage(res.kind, obj, self.caches["storageclasses"].objects.values())
        if admit is not None:
            admit(obj, None)
        problems = self._admission(res).validate_create(res.kind, obj)
        if problems:
            raise self._invalid(res, name, problems)
        await self._check_namespace(res, namespace)

        reserved = Allocation()
        if _builtin(res) == "Service":
            alloc_errors, reserved = self.allocator.assign(obj)
            if alloc_errors:
                raise self._invalid(res, name, alloc_errors)  # type: ignore[arg-type]
        if dry_run:
            self.allocator.abort(reserved)
            return obj
        try:
            revision = await self.store.create(res.key(namespace, name), encode(res.to_storage(obj)))
        except KeyExistsError:
            self.allocator.abort(reserved)
            raise errors.already_exists(res.group, res.plural, name) from None
        except BaseException:
            self.allocator.abort(reserved)
            raise
        if _builtin(res) == "Service":
            self.allocator.commit(obj)
        meta["resourceVersion"] = str(revision)
        return obj

    # -- update and patch -----------------------------------------------------------------------------

    async def update(self, res: Resource, namespace: str | None, name: str, body: dict[str, Any], *,
                     subresource: str | None = None, admit: Admit | None = None,
                     tracking: Tracking | None = None) -> dict[str, Any]:
        _check_types(res, body)
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the "
                                     f"URL ({name})")
        wanted = meta.get("resourceVersion") or None

        def change(old: dict[str, Any]) -> dict[str, Any]:
            return json_copy(body)

        return await self._guaranteed_update(res, namespace, name, change, subresource=subresource,
                                             precondition=wanted, admit=admit, tracking=tracking)

    async def patch(self, res: Resource, namespace: str | None, name: str, patch_body: bytes, content_type: str, *,
                    subresource: str | None = None, admit: Admit | None = None,
                    patcher: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                    tracking: Tracking | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Apply the patch to the stored object; `patcher(old) -> new`, when given, applies it instead of
        self.patcher (the server's, which also prunes unknown fields from the result). Server-side apply
        passes no tracking: its patcher writes managedFields itself."""
        def change(old: dict[str, Any]) -> dict[str, Any]:
            if patcher is not None:
                return patcher(old)
            return self.patcher(old, patch_body, content_type, res.kind)

        return await self._guaranteed_update(res, namespace, name, change, subresource=subresource,
                                             precondition=None, patch=True, admit=admit, tracking=tracking,
                                             dry_run=dry_run)

    async def _guaranteed_update(self, res: Resource, namespace: str | None, name: str,
                                 change: Callable[[dict[str, Any]], dict[str, Any]], *, subresource: str | None,
                                 precondition: str | None, patch: bool = False,
                                 admit: Admit | None = None, tracking: Tracking | None = None,
                                 dry_run: bool = False) -> dict[str, Any]:
        key = res.key(namespace, name)
        # Upstream's cachedExistingObject: the watch cache's copy is the first guess, which saves a store read
        # (most writes are status updates of objects the cache has). As in etcd3's GuaranteedUpdate, whatever
        # goes wrong on a guess (an error, a precondition or CAS mismatch, a no-op, the object gone) is tried
        # again on the stored object before it counts. Services keep to the store (their allocations), and so
        # do custom resources (their cache holds the storage version, not the one asked for).
        guess = None if _builtin(res) in ("Service", "") else self._cached_copy(res, key)
        for _ in range(MAX_RETRIES):
            current = guess is None
            if guess is not None:
                (old, revision), guess = guess, None
            else:
                old, revision = await self._read(res, namespace, name)
            try:
                if precondition is not None and precondition != str(revision):
                    raise errors.conflict(res.group, res.plural, name, errors.STALE)
                new = change(json_copy(old))
                _check_types(res, new)
                new_meta = new.get("metadata") or {}
                if patch and new_meta.get("resourceVersion") not in (None, str(revision)):
                    # A patch that names a resourceVersion is a precondition (kubectl edit/apply use it).
                    raise errors.conflict(res.group, res.plural, name, errors.STALE)
                new = self._prepare_update(res, new, old, subresource)
                if _builtin(res) == "Service":
                    patch_allocated_values(new, old)
                if tracking is not None:
                    record_update(new, old, tracking.manager, _scope(res, tracking), self.clock)
                if admit is not None:
                    admit(new, old)
            except APIError:
                if current:
                    raise
                continue
            if new == old:
                if not current:
                    continue  # a no-op against a guess may not be one against the stored object
                return old  # upstream writes nothing (and keeps the resourceVersion) for a no-op update
            reserved = Allocation()
            if _builtin(res) == "Service":
                alloc_errors, reserved = self.allocator.assign(new, old)
                if alloc_errors:
                    raise self._invalid(res, name, alloc_errors)  # type: ignore[arg-type]
            # the status subresource is judged by the kind's rules; ephemeralcontainers has its own
            problems = self._admission(res).validate_update(res.kind, new, old, subresource=(
                subresource if subresource in ONLY_FIELD_SUBRESOURCES else None))
            if problems:
                self.allocator.abort(reserved)
                if not current:
                    continue
                raise self._invalid(res, name, problems)
            meta = new["metadata"]
            if dry_run:
                self.allocator.abort(reserved)
                return new
            try:
                if (meta.get("deletionTimestamp") and not meta.get("finalizers") and not _namespace_finalizers(new)
                        and not old["metadata"].get("deletionGracePeriodSeconds")):
                    # The last finalizer is gone: the deletion that was waiting for it completes now. Not
                    # while a grace period runs (a pod's, whose kubelet still writes its status as it stops
                    # the containers): its deletion completes with the grace-0 delete that follows, as
                    # upstream's ShouldDeleteDuringUpdate has it.
                    deleted = await self.store.delete(key, expected_mod_revision=revision)
                    self._released(res, new)
                    meta["resourceVersion"] = str(deleted)
                    return new
                new_revision = await self.store.update(key, encode(res.to_storage(new)), expected_mod_revision=revision)
            except ConflictError:
                self.allocator.abort(reserved)
                if precondition is not None and current:
                    raise errors.conflict(res.group, res.plural, name, errors.STALE) from None
                continue
            except KeyNotFoundError:
                self.allocator.abort(reserved)
                if not current:
                    continue
                raise errors.not_found(res.group, res.plural, name) from None
            if _builtin(res) == "Service":
                self.allocator.commit(new)
            meta["resourceVersion"] = str(new_revision)
            return new
        raise errors.conflict(res.group, res.plural, name, "too many concurrent updates; try again")

    def _cached_copy(self, res: Resource, key: str) -> tuple[dict[str, Any], int] | None:
        """The watch cache's copy of the object under KEY and its revision, or None if it has none."""
        cache = self.caches.get(res.cache_key)
        cached = cache.objects.get(key) if cache is not None else None
        if cached is None:
            return None
        return json_copy(cached), int(cached["metadata"]["resourceVersion"])

    def _prepare_update(self, res: Resource, new: dict[str, Any], old: dict[str, Any],
                        subresource: str | None) -> dict[str, Any]:
        """What upstream's PrepareForUpdate strategies do: keep what the caller may not change."""
        if subresource == "status":
            updated = json_copy(old)
            updated["status"] = new.get("status", {})
            managed = (new.get("metadata") or {}).get("managedFields")
            if managed is not None:  # server-side apply's record of this write (others' are recorded after)
                updated["metadata"]["managedFields"] = managed
            new = updated
        elif subresource in ONLY_FIELD_SUBRESOURCES:
            new = ONLY_FIELD_SUBRESOURCES[subresource](new, old)
        elif res.status_subresource and "status" in old:
            new["status"] = json_copy(old["status"])
        elif res.status_subresource:
            new.pop("status", None)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        meta = _metadata(new)
        old_meta = old["metadata"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        if subresource != "status":
            self._admission(res).default(res.kind, new)
        if res.tracks_generation and res.generation_changed(new, old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        return new

    def _released(self, res: Resource, obj: dict[str, Any]) -> None:
        if _builtin(res) == "Service":
            self.allocator.release(f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}")

    # -- subresources ---------------------------------------------------------------------------------

    async def bind(self, namespace: str, name: str, binding: dict[str, Any]) -> dict[str, Any]:
        """POST pods/NAME/binding: assign the pod to a node, once (upstream's BindingREST)."""
        res = BY_KIND["Pod"]
        _check_kind_types("Binding", binding)
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise errors.invalid("", "Binding", name, [{"reason": "FieldValueRequired", "message": "Required value",
                                                        "field": "target.name"}])

        def assign(pod: dict[str, Any]) -> dict[str, Any]:
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.conflict("", "pods", name, f"pod {name} is already assigned to node "
                                      f"\"{spec['nodeName']}\"")
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("", "pods", name, f"pod {name} is being deleted, cannot be assigned to a host")
            spec["nodeName"] = target
            status = pod.setdefault("status", {})
            conditions = [c for c in status.get("conditions", []) if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": now_rfc3339(self.clock)})
            status["conditions"] = conditions
            return pod

        key = res.key(namespace, name)
        guess = self._cached_copy(res, key)  # as in _guaranteed_update: a guess first, the store when it fails
        for _ in range(MAX_RETRIES):
            current = guess is None
            if guess is not None:
                (old, revision), guess = guess, None
            else:
                old, revision = await self._read(res, namespace, name)
            try:
                new = assign(json_copy(old))
                await self.store.update(key, encode(new), expected_mod_revision=revision)
            except APIError:
                if current:
                    raise
                continue
            except KeyNotFoundError:
                if current:
                    raise errors.not_found("", "pods", name) from None
                continue
            except ConflictError:
                continue
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        raise errors.conflict("", "pods", name, "too many concurrent updates; try again")

    @staticmethod
    def scale_of(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        if isinstance(res, CustomResource):
            return crd_hooks.scale_of(res, obj)
        meta = obj["metadata"]
        raw = (obj.get("spec") or {}).get("selector")
        # Upstream's scale subresource: a map selector (ReplicationController) via SelectorFromSet,
        # a LabelSelector via LabelSelectorAsSelector, either in its canonical string form.
        if _builtin(res) == "ReplicationController":
            selector = selector_from_set(raw if isinstance(raw, dict) else {})
        else:
            try:
                selector = label_selector_as_selector(raw if isinstance(raw, dict) else None)
            except SelectorError as err:
                raise errors.bad_request(str(err)) from None
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": str(selector)},
        }

    async def update_scale(self, res: Resource, namespace: str, name: str,
                           scale_change: Callable[[dict[str, Any]], dict[str, Any]],
                           precondition: str | None = None, tracking: Tracking | None = None) -> dict[str, Any]:
        def change(obj: dict[str, Any]) -> dict[str, Any]:
            wanted = scale_change(self.scale_of(res, obj))
            problem = type_error("Scale", wanted)
            if problem:
                raise errors.bad_request(problem)
            replicas = (wanted.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid("autoscaling", "Scale", name, [{
                    "reason": "FieldValueInvalid", "field": "spec.replicas",
                    "message": f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0"}])
            if isinstance(res, CustomResource):
                return crd_hooks.set_replicas(res, obj, replicas)
            obj.setdefault("spec", {})["replicas"] = replicas
            return obj

        updated = await self._guaranteed_update(res, namespace, name, change, subresource=None,
                                                precondition=precondition, tracking=tracking)
        return self.scale_of(res, updated)

    # -- delete ---------------------------------------------------------------------------------------

    async def delete(self, res: Resource, namespace: str | None, name: str, options: DeleteOptions, *,
                     admit: Admit | None = None) -> dict[str, Any]:
        key = res.key(namespace, name)
        for _ in range(MAX_RETRIES):
            obj, revision = await self._read(res, namespace, name)
            if admit is not None:
                admit(None, obj)
            meta = obj["metadata"]
            if options.precondition_uid and options.precondition_uid != meta.get("uid"):
                raise errors.conflict(res.group, res.plural, name, f"Precondition failed: UID in precondition: "
                                      f"{options.precondition_uid}, UID in object meta: {meta.get('uid')}")
            if options.precondition_resource_version and options.precondition_resource_version != str(revision):
                raise errors.conflict(res.group, res.plural, name, "Precondition failed: ResourceVersion in "
                                      f"precondition: {options.precondition_resource_version}, ResourceVersion in "
                                      f"object meta: {revision}")
            graceful = self._graceful_state(res, obj, options)
            try:
                if graceful is None:
                    deleted = await self.store.delete(key, expected_mod_revision=revision)
                    self._released(res, obj)
                    meta["resourceVersion"] = str(deleted)
                    if _builtin(res) in ("Pod", "Service", "Namespace"):
                        return obj
                    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": {"name": name, "group": res.group, "kind": res.plural, "uid": meta.get("uid")}}
                if graceful == obj:
                    return obj  # already being deleted; nothing more to record
                new_revision = await self.store.update(key, encode(res.to_storage(graceful)),
                                                       expected_mod_revision=revision)
            except (ConflictError, KeyNotFoundError):
                continue
            graceful["metadata"]["resourceVersion"] = str(new_revision)
            return graceful
        raise errors.conflict(res.group, res.plural, name, "too many concurrent updates; try again")

    def _graceful_state(self, res: Resource, obj: dict[str, Any], options: DeleteOptions) -> dict[str, Any] | None:
        """The object as it should be kept while it is being deleted, or None to delete it now."""
        new = json_copy(obj)
        meta = new["metadata"]
        finalizers: list[str] = list(meta.get("finalizers") or [])
        policy = options.propagation_policy
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        # A kind that cleans up after itself first (a CRD its instances): upstream's REST Delete adds its finalizer.
        own = res.extra.get("deleteFinalizer")
        if own and own not in finalizers and not meta.get("deletionTimestamp"):
            finalizers.append(own)
        grace = 0
        if _builtin(res) == "Pod":
            spec, status = new.get("spec") or {}, new.get("status") or {}
            grace = options.grace_period_seconds if options.grace_period_seconds is not None else \
                spec.get("terminationGracePeriodSeconds", 30)
            # Upstream deletes at once what no kubelet will clean up: unbound or finished pods.
            if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
                grace = 0
            if meta.get("deletionGracePeriodSeconds") is not None:
                grace = min(grace, meta["deletionGracePeriodSeconds"])
        namespace_finalizers = _builtin(res) == "Namespace" and bool((new.get("spec") or {}).get("finalizers"))
        if not finalizers and grace <= 0 and not namespace_finalizers:
            return None
        if finalizers:
            meta["finalizers"] = finalizers
        if not meta.get("deletionTimestamp") or _builtin(res) == "Pod":
            meta["deletionTimestamp"] = now_rfc3339(lambda: self.clock() + max(grace, 0))
        meta["deletionGracePeriodSeconds"] = max(grace, 0)
        if _builtin(res) == "Namespace":
            new.setdefault("status", {})["phase"] = "Terminating"
        return new

    async def delete_collection(self, res: Resource, namespace: str | None, list_options: ListOptions,
                                options: DeleteOptions) -> dict[str, Any]:
        listed = await self.list_objects(res, namespace, list_options)
        for item in listed["items"]:
            meta = item["metadata"]
            try:
                await self.delete(res, meta.get("namespace"), meta["name"], options)
            except APIError as exc:
                if exc.code != 404:
                    raise
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}

    async def finalize_namespace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT namespaces/NAME/finalize: only spec.finalizers changes; an empty list lets deletion finish."""
        res = BY_KIND["Namespace"]
        _check_kind_types("Namespace", body)

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            obj.setdefault("spec", {})["finalizers"] = list((body.get("spec") or {}).get("finalizers") or [])
            return obj

        return await self._guaranteed_update(res, None, name, change, subresource=None, precondition=None)


def _scope(res: Resource, tracking: Tracking) -> Scope:
    return Scope(res.kind, res.api_version, res.status_subresource, tracking.subresource)


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """obj's metadata, made a map if absent or null (Go decodes null as the zero value)."""
    if not isinstance(obj.get("metadata"), dict):
        obj["metadata"] = {}
    meta: dict[str, Any] = obj["metadata"]
    return meta


def _builtin(res: Resource) -> str:
    """The kind of a built-in resource, "" for a custom one: what kind-specific storage logic (a Service's
    addresses, a Pod's grace period) keys on, since a custom kind may share a built-in's name (Knative's
    Service)."""
    return "" if isinstance(res, CustomResource) else res.kind


def _check_types(res: Resource, obj: dict[str, Any]) -> None:
    if not isinstance(res, CustomResource):  # its schema checks it (a 422), whatever its kind's name
        _check_kind_types(res.kind, obj)


def _check_kind_types(kind: str, obj: dict[str, Any]) -> None:
    problem = type_error(kind, obj)
    if problem:
        raise errors.bad_request(problem)


def _namespace_finalizers(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Namespace" and bool((obj.get("spec") or {}).get("finalizers"))


def _encode_continue(revision: int, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": "kubesim/1", "rv": revision, "start": key}).encode()).decode()


def _decode_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        revision, start = int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.bad_request("continue key is not valid: invalid continue token") from None
    if not start.startswith(prefix):
        raise errors.bad_request("continue key is not valid: the token belongs to another list")
    return revision, start
