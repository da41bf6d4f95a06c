"""Deployment: a ReplicaSet per pod template, rolled from old to new (pkg/controller/deployment).

The new ReplicaSet is `<deployment>-<pod-template-hash>`; the hash (of the template and
status.collisionCount) is also a label on the ReplicaSet's selector and template, so the ReplicaSets of
one Deployment never select each other's pods. Rolling updates honour maxSurge / maxUnavailable with
upstream's rounding (surge up, unavailable down, both zero -> unavailable 1); Recreate scales the old
ones to zero and waits for their pods to be gone. Status and the Progressing / Available conditions are
what `kubectl rollout status` reads.
"""

from __future__ import annotations

import json
import math
from typing import ClassVar

from control.api.meta import annotations_of, labels_of, meta, name_of, namespace_of, uid_of
from control.client import (
    DEPLOYMENTS,
    PODS,
    REPLICA_SETS,
    AlreadyExists,
    Conflict,
    NotFound,
    Resource,
)
from control.controllers._base import NAMESPACE_INDEX, OWNER_INDEX, Controller
from control.controllers._util import (
    POD_TEMPLATE_HASH,
    JsonObject,
    controller_ref,
    deepcopy,
    is_deleting,
    key_of,
    make_controller_ref,
    owner_refs,
    parse_time,
    rfc3339,
    scaled_value,
    selector_matches,
    split_key,
)

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Annotations of the Deployment not copied to its ReplicaSets (deployment/util's annotationsToSkip).
_SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
                     DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"}

# Condition reasons (deployment/util).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def compute_hash(template: JsonObject, collision_count: int | None) -> str:
    """controller.ComputeHash: FNV-1a (32 bit) over the template, plus the collision count, rendered
    with rand.SafeEncodeString. Upstream hashes Go's printed form of the struct; we hash canonical JSON,
    so the values differ from a real cluster's but have the same shape and stability."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[int(c) % len(_SAFE_ALPHABET)] for c in str(h))


def _without_hash(template: JsonObject) -> JsonObject:
    t = deepcopy(template or {})
    tmeta = t.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH, None)
    if labels:
        tmeta["labels"] = labels
    else:
        tmeta.pop("labels", None)
    tmeta = {k: v for k, v in tmeta.items() if v is not None}
    if tmeta:
        t["metadata"] = tmeta
    else:
        t.pop("metadata", None)
    return t


def equal_ignore_hash(a: JsonObject, b: JsonObject) -> bool:
    """deployment/util.EqualIgnoreHash: templates equal apart from the pod-template-hash label."""
    return _without_hash(a) == _without_hash(b)


def replicas(obj: JsonObject | None) -> int:
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_int(obj: JsonObject | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def revision(rs: JsonObject) -> int:
    try:
        return int(annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def _int_annotation(rs: JsonObject, key: str) -> int | None:
    try:
        return int(annotations_of(rs)[key])
    except (KeyError, ValueError):
        return None


def _strategy(d: JsonObject) -> JsonObject:
    return ((d.get("spec") or {}).get("strategy")) or {}


def is_rolling(d: JsonObject) -> bool:
    return bool(_strategy(d).get("type", "RollingUpdate") == "RollingUpdate")


def fenceposts(d: JsonObject) -> tuple[int, int]:
    """deployment/util.ResolveFenceposts: (maxSurge rounded up, maxUnavailable rounded down)."""
    params = _strategy(d).get("rollingUpdate") or {}
    want = replicas(d)
    surge = scaled_value(params.get("maxSurge", "25%"), want, True)
    unavailable = scaled_value(params.get("maxUnavailable", "25%"), want, False)
    if surge == 0 and unavailable == 0:
        # Rounding down can make both zero, which would never make progress.
        unavailable = 1
    return surge, unavailable


def max_surge(d: JsonObject) -> int:
    return fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: JsonObject) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(fenceposts(d)[1], replicas(d))


def new_rs_new_replicas(d: JsonObject, all_rss: list[JsonObject], new_rs: JsonObject) -> int:
    """deployment/util.NewRSNewReplicas: how big the new ReplicaSet may be now."""
    if not is_rolling(d):
        return replicas(d)
    surge = scaled_value((_strategy(d).get("rollingUpdate") or {}).get("maxSurge", "25%"), replicas(d), True)
    current = sum(replicas(rs) for rs in all_rss)
    max_total = replicas(d) + surge
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def _creation_key(rs: JsonObject) -> tuple[float, str]:
    return (parse_time(meta(rs).get("creationTimestamp")) or 0.0, name_of(rs))


def active(rss: list[JsonObject | None]) -> list[JsonObject]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def get_condition(d: JsonObject, kind: str) -> JsonObject | None:
    for cond in (d.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def set_condition(status: JsonObject, cond: JsonObject) -> None:
    """deployment/util.SetDeploymentCondition: same status and reason -> nothing changes; same status ->
    keep lastTransitionTime."""
    conditions = list(status.get("conditions") or [])
    current = next((c for c in conditions if c.get("type") == cond["type"]), None)
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    status["conditions"] = [c for c in conditions if c.get("type") != cond["type"]] + [cond]


def condition(kind: str, status: str, reason: str, message: str, now: float) -> JsonObject:
    stamp = rfc3339(now)
    return {"type": kind, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def deployment_complete(d: JsonObject, status: JsonObject) -> bool:
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0) >= int(meta(d).get("generation") or 1))


def deployment_progressing(d: JsonObject, new: JsonObject) -> bool:
    old = d.get("status") or {}

    def g(s: JsonObject, f: str) -> int:
        return int(s.get(f) or 0)

    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new, "replicas") - g(new, "updatedReplicas")
    return (g(new, "updatedReplicas") > g(old, "updatedReplicas") or new_old < old_old
            or g(new, "readyReplicas") > g(old, "readyReplicas")
            or g(new, "availableReplicas") > g(old, "availableReplicas"))


def progress_deadline(d: JsonObject) -> int | None:
    spec = d.get("spec") or {}
    if "progressDeadlineSeconds" in spec and spec["progressDeadlineSeconds"] is None:
        return None
    value = int(spec.get("progressDeadlineSeconds", 600))
    return None if value >= 2**31 - 1 else value


class DeploymentController(Controller):
    name: ClassVar[str] = "deployment"
    component: ClassVar[str] = "deployment-controller"
    primary: ClassVar[Resource | None] = DEPLOYMENTS
    resources: ClassVar[tuple[Resource, ...]] = (DEPLOYMENTS, REPLICA_SETS, PODS)

    # --- handlers --------------------------------------------------------------------------------

    def register(self) -> None:
        self.informer(DEPLOYMENTS).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                                               on_delete=self.enqueue)
        self.informer(REPLICA_SETS).add_handler(on_add=self._rs_changed, on_update=self._rs_updated,
                                                on_delete=self._rs_changed)
        self.informer(PODS).add_handler(on_delete=self._pod_deleted)

    def _owner_of(self, obj: JsonObject) -> JsonObject | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.informer(DEPLOYMENTS).store.get(str(ref.get("name")), namespace_of(obj))
        return d if d is not None and uid_of(d) == ref.get("uid") else None

    def _rs_changed(self, rs: JsonObject) -> None:
        owner = self._owner_of(rs)
        if owner is not None:
            self.enqueue(owner)
            return
        if controller_ref(rs) is None:
            for d in self.informer(DEPLOYMENTS).store.by_index(NAMESPACE_INDEX, namespace_of(rs)):
                if selector_matches((d.get("spec") or {}).get("selector"), labels_of(rs)):
                    self.enqueue(d)

    def _rs_updated(self, old: JsonObject, new: JsonObject) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        old_owner = self._owner_of(old)
        if old_owner is not None and (controller_ref(new) or {}).get("uid") != uid_of(old_owner):
            self.enqueue(old_owner)
        self._rs_changed(new)

    def _pod_deleted(self, pod: JsonObject) -> None:
        # Recreate waits for the old pods to be gone: look again when one goes.
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.informer(REPLICA_SETS).store.get(str(ref.get("name")), namespace_of(pod))
        if rs is None:
            return
        d = self._owner_of(rs)
        if d is not None and not is_rolling(d):
            self.enqueue(d)

    # --- sync ------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        assert namespace is not None
        cached = self.informer(DEPLOYMENTS).store.get(name, namespace)
        if cached is None:
            return
        d = deepcopy(cached)
        selector = (d.get("spec") or {}).get("selector") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            self.log.warning("Deployment %s has an empty selector; it would select every pod: skipped", key)
            return
        rs_list = await self.claim_replica_sets(d)
        if is_deleting(d):
            new_rs, old = self.split(d, rs_list)
            await self.sync_status(old + ([new_rs] if new_rs else []), new_rs, d)
            return
        if (d.get("spec") or {}).get("paused") or await self.is_scaling_event(d, rs_list):
            await self.sync_scale(d, rs_list)
            return
        if is_rolling(d):
            await self.rollout_rolling(d, rs_list)
        else:
            await self.rollout_recreate(d, rs_list)

    async def claim_replica_sets(self, d: JsonObject) -> list[JsonObject]:
        claimed: list[JsonObject] = []
        selector = (d.get("spec") or {}).get("selector")
        can_adopt: bool | None = None
        for cached in self.informer(REPLICA_SETS).store.by_index(NAMESPACE_INDEX, namespace_of(d)):
            rs = deepcopy(cached)
            ref = controller_ref(rs)
            matches = selector_matches(selector, labels_of(rs))
            if ref is not None:
                if ref.get("uid") != uid_of(d):
                    continue
                if matches:
                    claimed.append(rs)
                elif not is_deleting(d):
                    refs = [r for r in owner_refs(rs) if r.get("uid") != uid_of(d)]
                    await self._patch_refs(rs, refs)
                    self.log.info("Deployment %s released ReplicaSet %s", key_of(d), name_of(rs))
                continue
            if not matches or is_deleting(d) or is_deleting(rs):
                continue
            if can_adopt is None:
                try:
                    fresh = await self.client.get(DEPLOYMENTS, name_of(d), namespace=namespace_of(d))
                    can_adopt = uid_of(fresh) == uid_of(d) and not is_deleting(fresh)
                except NotFound:
                    can_adopt = False
            if can_adopt:
                updated = await self._patch_refs(rs, [*owner_refs(rs), make_controller_ref(d, "apps/v1", "Deployment")])
                if updated is not None:
                    self.log.info("Deployment %s adopted ReplicaSet %s", key_of(d), name_of(rs))
                    claimed.append(updated)
        return claimed

    async def _patch_refs(self, rs: JsonObject, refs: list[JsonObject]) -> JsonObject | None:
        try:
            return await self.client.patch(REPLICA_SETS, name_of(rs), {"metadata": {
                "ownerReferences": refs or None, "resourceVersion": meta(rs).get("resourceVersion")}},
                namespace=namespace_of(rs))
        except NotFound:
            return None

    # --- ReplicaSets -----------------------------------------------------------------------------

    def split(self, d: JsonObject, rs_list: list[JsonObject]) -> tuple[JsonObject | None, list[JsonObject]]:
        """FindNewReplicaSet (the oldest one whose template equals the Deployment's) and FindOldReplicaSets."""
        template = (d.get("spec") or {}).get("template") or {}
        ordered = sorted(rs_list, key=_creation_key)
        new_rs = next((rs for rs in ordered
                       if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template)), None)
        if new_rs is None:
            # If the apiserver defaults ReplicaSet templates differently from Deployment ones, the stored
            # templates never compare equal; the name and hash label still say which template made it,
            # and without this we would make a new ReplicaSet on every sync.
            expected = compute_hash(template, (d.get("status") or {}).get("collisionCount"))
            new_rs = next((rs for rs in ordered if name_of(rs) == f"{name_of(d)}-{expected}"
                           and labels_of(rs).get(POD_TEMPLATE_HASH) == expected), None)
        return new_rs, [rs for rs in rs_list if rs is not new_rs]

    async def get_all(self, d: JsonObject, rs_list: list[JsonObject], create: bool
                      ) -> tuple[JsonObject | None, list[JsonObject]]:
        """getAllReplicaSetsAndSyncRevision."""
        new_rs, old = self.split(d, rs_list)
        new_rs = await self.get_new_rs(d, new_rs, old, create)
        return new_rs, old

    def _set_new_rs_annotations(self, d: JsonObject, rs: JsonObject, new_revision: str, exists: bool) -> bool:
        annotations = dict(annotations_of(rs))
        before = dict(annotations)
        for k, v in annotations_of(d).items():
            if k not in _SKIP_ANNOTATIONS:
                annotations[k] = v
        old_revision = annotations.get(REVISION, "")
        try:
            older = int(old_revision or "0") < int(new_revision)
        except ValueError:
            older = True
        if older:
            annotations[REVISION] = new_revision
            if old_revision:
                history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
                annotations[REVISION_HISTORY] = ",".join([*history, old_revision])
        if not exists:
            annotations[DESIRED_REPLICAS] = str(replicas(d))
            annotations[MAX_REPLICAS] = str(replicas(d) + max_surge(d))
        rs.setdefault("metadata", {})["annotations"] = annotations
        return annotations != before

    async def _set_deployment_revision(self, d: JsonObject, value: str) -> None:
        if not value or annotations_of(d).get(REVISION) == value:
            return
        # Our status subresource takes only status (upstream's status strategy would keep annotations),
        # so the revision goes on the object itself with a merge patch.
        patched = await self.client.patch(DEPLOYMENTS, name_of(d), {"metadata": {"annotations": {REVISION: value}}},
                                          namespace=namespace_of(d))
        d.clear()
        d.update(patched)

    async def get_new_rs(self, d: JsonObject, existing: JsonObject | None, old: list[JsonObject], create: bool
                         ) -> JsonObject | None:
        max_old = max((revision(rs) for rs in old), default=0)
        new_revision = str(max_old + 1)
        now = self.ctx.now()
        if existing is not None:
            rs_copy = deepcopy(existing)
            annotations_changed = self._set_new_rs_annotations(d, rs_copy, new_revision, True)
            min_ready = (d.get("spec") or {}).get("minReadySeconds", 0)
            min_ready_changed = (rs_copy.get("spec") or {}).get("minReadySeconds", 0) != min_ready
            if annotations_changed or min_ready_changed:
                rs_copy.setdefault("spec", {})["minReadySeconds"] = min_ready
                updated = await self.client.update(REPLICA_SETS, rs_copy, namespace=namespace_of(d))
                existing.clear()
                existing.update(updated)
            await self._set_deployment_revision(d, annotations_of(existing).get(REVISION, ""))
            if progress_deadline(d) is not None and get_condition(d, "Progressing") is None:
                status = deepcopy(d.get("status") or {})
                set_condition(status, condition("Progressing", "True", FOUND_NEW_RS,
                                                f'Found new replica set "{name_of(existing)}"', now))
                await self._write_status(d, status)
            return existing
        if not create:
            return None
        spec = d.get("spec") or {}
        collision = (d.get("status") or {}).get("collisionCount")
        template = deepcopy(spec.get("template") or {})
        pod_hash = compute_hash(template, collision)
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = pod_hash
        selector = deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = pod_hash
        new_rs: JsonObject = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{name_of(d)}-{pod_hash}", "namespace": namespace_of(d),
                         "ownerReferences": [make_controller_ref(d, "apps/v1", "Deployment")],
                         "labels": dict(template["metadata"]["labels"])},
            "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds", 0), "selector": selector,
                     "template": template},
        }
        new_rs["spec"]["replicas"] = new_rs_new_replicas(d, [*old, new_rs], new_rs)
        self._set_new_rs_annotations(d, new_rs, new_revision, False)
        try:
            created = await self.client.create(REPLICA_SETS, new_rs, namespace=namespace_of(d))
        except AlreadyExists:
            found = await self.client.get(REPLICA_SETS, name_of(new_rs), namespace=namespace_of(d))
            ref = controller_ref(found)
            if ref is not None and ref.get("uid") == uid_of(d) and (equal_ignore_hash(
                    (found.get("spec") or {}).get("template") or {}, spec.get("template") or {})
                    or labels_of(found).get(POD_TEMPLATE_HASH) == pod_hash):
                return found
            # A hash collision with someone else's ReplicaSet: bump collisionCount so the next hash differs.
            status = deepcopy(d.get("status") or {})
            status["collisionCount"] = int(collision or 0) + 1
            await self._write_status(d, status)
            raise Conflict(409, "AlreadyExists", f"hash collision for ReplicaSet {name_of(new_rs)}; "
                           f"collisionCount is now {status['collisionCount']}") from None
        self.log.info("Deployment %s: created new ReplicaSet %s with %d replicas (revision %s)", key_of(d),
                      name_of(created), replicas(created), new_revision)
        if replicas(created) > 0:
            self.event(d, "ScalingReplicaSet", f"Scaled up replica set {name_of(created)} to {replicas(created)}")
        await self._set_deployment_revision(d, new_revision)
        if progress_deadline(d) is not None:
            status = deepcopy(d.get("status") or {})
            set_condition(status, condition("Progressing", "True", NEW_RS_CREATED,
                                            f'Created new replica set "{name_of(created)}"', now))
            await self._write_status(d, status)
        return created

    async def scale_rs(self, rs: JsonObject, new_scale: int, d: JsonObject) -> bool:
        """scaleReplicaSet: size and the desired/max-replicas annotations; the RS is updated in place."""
        size_changed = replicas(rs) != new_scale
        annotations = dict(annotations_of(rs))
        wanted = {DESIRED_REPLICAS: str(replicas(d)), MAX_REPLICAS: str(replicas(d) + max_surge(d))}
        annotations_changed = any(annotations.get(k) != v for k, v in wanted.items())
        if not size_changed and not annotations_changed:
            return False
        body = deepcopy(rs)
        body.setdefault("metadata", {})["annotations"] = {**annotations, **wanted}
        body.setdefault("spec", {})["replicas"] = new_scale
        updated = await self.client.update(REPLICA_SETS, body, namespace=namespace_of(rs))
        if size_changed:
            direction = "up" if new_scale > replicas(rs) else "down"
            self.log.info("Deployment %s: scaled %s replica set %s from %d to %d", key_of(d), direction,
                          name_of(rs), replicas(rs), new_scale)
            self.event(d, "ScalingReplicaSet",
                       f"Scaled {direction} replica set {name_of(rs)} to {new_scale} from {replicas(rs)}")
        rs.clear()
        rs.update(updated)
        return size_changed

    # --- scaling ---------------------------------------------------------------------------------

    async def is_scaling_event(self, d: JsonObject, rs_list: list[JsonObject]) -> bool:
        new_rs, old = await self.get_all(d, rs_list, create=False)
        for rs in active([*old, new_rs]):
            desired = _int_annotation(rs, DESIRED_REPLICAS)
            if desired is not None and desired != replicas(d):
                return True
        return False

    async def sync_scale(self, d: JsonObject, rs_list: list[JsonObject]) -> None:
        """The controller's `sync`: a scaling event or a paused Deployment."""
        new_rs, old = await self.get_all(d, rs_list, create=False)
        await self.scale(d, new_rs, old)
        if (d.get("spec") or {}).get("paused"):
            await self.cleanup(d, old)
        await self.sync_status([*old, *([new_rs] if new_rs else [])], new_rs, d)

    async def scale(self, d: JsonObject, new_rs: JsonObject | None, old: list[JsonObject]) -> None:
        """deployment's `scale`, with proportional scaling of the active ReplicaSets during a rollout."""
        latest = self._find_active_or_latest(new_rs, old)
        if latest is not None:
            if replicas(latest) != replicas(d):
                await self.scale_rs(latest, replicas(d), d)
            return
        if self._is_saturated(d, new_rs):
            for rs in active(list(old)):
                await self.scale_rs(rs, 0, d)
            return
        if not is_rolling(d):
            return
        all_rss = active([*old, new_rs])
        allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
        to_add = allowed - sum(replicas(rs) for rs in all_rss)
        if to_add > 0:
            # ReplicaSetsBySizeNewer: larger first, newer first among equals.
            all_rss.sort(key=lambda rs: (-replicas(rs), -_creation_key(rs)[0], name_of(rs)))
        elif to_add < 0:
            # ReplicaSetsBySizeOlder: larger first, older first among equals.
            all_rss.sort(key=lambda rs: (-replicas(rs), _creation_key(rs)))
        sizes: list[int] = []
        added = 0
        for rs in all_rss:
            proportion = self._proportion(rs, d, to_add, added) if to_add else 0
            sizes.append(replicas(rs) + proportion)
            added += proportion
        for i, rs in enumerate(all_rss):
            size = sizes[i]
            if i == 0 and to_add:
                size = max(0, size + to_add - added)
            await self.scale_rs(rs, size, d)

    def _proportion(self, rs: JsonObject, d: JsonObject, to_add: int, added: int) -> int:
        if replicas(rs) == 0 or to_add == added:
            return 0
        fraction = self._fraction(rs, d)
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    def _fraction(self, rs: JsonObject, d: JsonObject) -> int:
        if replicas(d) == 0:
            return -replicas(rs)
        deployment_replicas = replicas(d) + max_surge(d)
        annotated = _int_annotation(rs, MAX_REPLICAS)
        if annotated is None:
            annotated = status_int(d, "replicas")
        if annotated <= 0:
            return 0
        size = replicas(rs) * deployment_replicas / annotated
        rounded = math.floor(size + 0.5)  # Go's math.Round: halves away from zero (sizes are >= 0)
        return int(rounded) - replicas(rs)

    @staticmethod
    def _find_active_or_latest(new_rs: JsonObject | None, old: list[JsonObject]) -> JsonObject | None:
        if new_rs is None and not old:
            return None
        newest_first = sorted(old, key=_creation_key, reverse=True)
        live = active([*newest_first, new_rs])
        if not live:
            return new_rs if new_rs is not None else newest_first[0]
        if len(live) == 1:
            return live[0]
        return None

    @staticmethod
    def _is_saturated(d: JsonObject, rs: JsonObject | None) -> bool:
        if rs is None:
            return False
        return (replicas(rs) == replicas(d) and _int_annotation(rs, DESIRED_REPLICAS) == replicas(d)
                and status_int(rs, "availableReplicas") == replicas(d))

    # --- rolling update --------------------------------------------------------------------------

    async def rollout_rolling(self, d: JsonObject, rs_list: list[JsonObject]) -> None:
        new_rs, old = await self.get_all(d, rs_list, create=True)
        assert new_rs is not None
        all_rss = [*old, new_rs]
        if await self.reconcile_new(all_rss, new_rs, d):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if await self.reconcile_old(all_rss, active(list(old)), new_rs, d):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if deployment_complete(d, d.get("status") or {}):
            await self.cleanup(d, old)
        await self.sync_rollout_status(all_rss, new_rs, d)

    async def reconcile_new(self, all_rss: list[JsonObject], new_rs: JsonObject, d: JsonObject) -> bool:
        if replicas(new_rs) == replicas(d):
            return False
        if replicas(new_rs) > replicas(d):
            return await self.scale_rs(new_rs, replicas(d), d)
        return await self.scale_rs(new_rs, new_rs_new_replicas(d, all_rss, new_rs), d)

    async def reconcile_old(self, all_rss: list[JsonObject], old: list[JsonObject], new_rs: JsonObject,
                            d: JsonObject) -> bool:
        if sum(replicas(rs) for rs in old) == 0:
            return False
        all_count = sum(replicas(rs) for rs in all_rss)
        min_available = replicas(d) - max_unavailable(d)
        new_unavailable = replicas(new_rs) - status_int(new_rs, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # First the old pods that are not available anyway (cleanupUnhealthyReplicas) ...
        cleaned = 0
        for rs in sorted(old, key=_creation_key):
            if cleaned >= max_scaled_down:
                break
            if replicas(rs) == 0 or replicas(rs) == status_int(rs, "availableReplicas"):
                continue
            count = min(max_scaled_down - cleaned, replicas(rs) - status_int(rs, "availableReplicas"))
            await self.scale_rs(rs, replicas(rs) - count, d)
            cleaned += count
        # ... then available ones, as far as maxUnavailable allows (scaleDownOldReplicaSetsForRollingUpdate).
        available = sum(status_int(rs, "availableReplicas") for rs in [*old, new_rs])
        scaled = 0
        if available > min_available:
            budget = available - min_available
            for rs in sorted(old, key=_creation_key):
                if scaled >= budget:
                    break
                if replicas(rs) == 0:
                    continue
                count = min(replicas(rs), budget - scaled)
                await self.scale_rs(rs, replicas(rs) - count, d)
                scaled += count
        return cleaned + scaled > 0

    # --- recreate --------------------------------------------------------------------------------

    async def rollout_recreate(self, d: JsonObject, rs_list: list[JsonObject]) -> None:
        new_rs, old = await self.get_all(d, rs_list, create=False)
        all_rss = [*old, *([new_rs] if new_rs else [])]
        scaled = False
        for rs in active(list(old)):
            scaled = await self.scale_rs(rs, 0, d) or scaled
        if scaled or self._old_pods_running(new_rs, old):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old = await self.get_all(d, rs_list, create=True)
            assert new_rs is not None
            all_rss = [*old, new_rs]
        await self.scale_rs(new_rs, replicas(d), d)
        if deployment_complete(d, d.get("status") or {}):
            await self.cleanup(d, old)
        await self.sync_rollout_status(all_rss, new_rs, d)

    def _old_pods_running(self, new_rs: JsonObject | None, old: list[JsonObject]) -> bool:
        if sum(status_int(rs, "replicas") for rs in old) > 0:
            return True
        pods = self.informer(PODS).store
        for rs in old:
            for pod in pods.by_index(OWNER_INDEX, uid_of(rs)):
                if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False

    # --- history ---------------------------------------------------------------------------------

    async def cleanup(self, d: JsonObject, old: list[JsonObject]) -> None:
        """cleanupDeployment: keep at most revisionHistoryLimit old ReplicaSets (scaled-down ones go)."""
        limit = (d.get("spec") or {}).get("revisionHistoryLimit", 10)
        if limit is None:
            return
        alive = sorted((rs for rs in old if not is_deleting(rs)), key=lambda rs: (revision(rs), _creation_key(rs)))
        diff = len(alive) - int(limit)
        for rs in alive[:max(diff, 0)]:
            if (status_int(rs, "replicas") != 0 or replicas(rs) != 0
                    or int(meta(rs).get("generation") or 1) > status_int(rs, "observedGeneration")):
                continue
            try:
                await self.client.delete(REPLICA_SETS, name_of(rs), namespace=namespace_of(rs),
                                         preconditions={"uid": uid_of(rs)})
            except NotFound:
                continue
            self.log.info("Deployment %s: deleted old ReplicaSet %s (revision history limit %s)", key_of(d),
                          name_of(rs), limit)

    # --- status ----------------------------------------------------------------------------------

    def calculate_status(self, all_rss: list[JsonObject], new_rs: JsonObject | None, d: JsonObject) -> JsonObject:
        available = sum(status_int(rs, "availableReplicas") for rs in all_rss)
        total = sum(replicas(rs) for rs in all_rss)
        status = deepcopy(d.get("status") or {})
        status.update({
            "observedGeneration": int(meta(d).get("generation") or 1),
            "replicas": sum(status_int(rs, "replicas") for rs in all_rss),
            "updatedReplicas": status_int(new_rs, "replicas"),
            "readyReplicas": sum(status_int(rs, "readyReplicas") for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, total - available),
        })
        now = self.ctx.now()
        if available >= replicas(d) - max_unavailable(d):
            set_condition(status, condition("Available", "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.", now))
        else:
            set_condition(status, condition("Available", "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", now))
        return status

    async def sync_status(self, all_rss: list[JsonObject], new_rs: JsonObject | None, d: JsonObject) -> None:
        status = self.calculate_status(all_rss, new_rs, d)
        if status != (d.get("status") or {}):
            await self._write_status(d, status)

    async def sync_rollout_status(self, all_rss: list[JsonObject], new_rs: JsonObject | None, d: JsonObject) -> None:
        status = self.calculate_status(all_rss, new_rs, d)
        deadline = progress_deadline(d)
        now = self.ctx.now()
        if deadline is not None:
            current = get_condition(d, "Progressing")
            complete = (int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                        and current is not None and current.get("reason") == NEW_RS_AVAILABLE)
            if not complete:
                if deployment_complete(d, status):
                    msg = (f'ReplicaSet "{name_of(new_rs)}" has successfully progressed.' if new_rs
                           else "Deployment has successfully progressed.")
                    set_condition(status, condition("Progressing", "True", NEW_RS_AVAILABLE, msg, now))
                elif deployment_progressing(d, status):
                    msg = f'ReplicaSet "{name_of(new_rs)}" is progressing.' if new_rs else "Deployment is progressing."
                    cond = condition("Progressing", "True", RS_UPDATED, msg, now)
                    if current is not None and current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    # Always replaced: lastUpdateTime records the latest progress.
                    status["conditions"] = [c for c in status.get("conditions") or []
                                            if c.get("type") != "Progressing"] + [cond]
                elif current is not None and current.get("status") == "True" and self._timed_out(current, deadline):
                    msg = (f'ReplicaSet "{name_of(new_rs)}" has timed out progressing.' if new_rs
                           else f'Deployment "{name_of(d)}" has timed out progressing.')
                    set_condition(status, condition("Progressing", "False", TIMED_OUT, msg, now))
                else:
                    # Not done and no progress this time: look again by the deadline (requeueStuckDeployment).
                    remaining = self._remaining(current, deadline)
                    if remaining is not None:
                        self.queue.add_after(key_of(d), min(max(remaining, 0.1), self.options.max_requeue))
        if status != (d.get("status") or {}):
            await self._write_status(d, status)

    def _remaining(self, cond: JsonObject | None, deadline: int) -> float | None:
        if cond is None:
            return None
        updated = parse_time(cond.get("lastUpdateTime"))
        return None if updated is None else updated + deadline - self.ctx.now()

    def _timed_out(self, cond: JsonObject, deadline: int) -> bool:
        if cond.get("reason") == NEW_RS_AVAILABLE:
            return False
        remaining = self._remaining(cond, deadline)
        return remaining is not None and remaining < 0

    async def _write_status(self, d: JsonObject, status: JsonObject) -> None:
        body = deepcopy(d)
        body["status"] = status
        updated = await self.client.update_status(DEPLOYMENTS, body, namespace=namespace_of(d))
        d.clear()
        d.update(updated)


__all__ = ["DeploymentController", "compute_hash", "equal_ignore_hash", "fenceposts", "new_rs_new_replicas"]
