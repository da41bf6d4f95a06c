"""What every Deployment sync does, whatever its strategy (pkg/controller/deployment/sync.go).

Finding or creating the new ReplicaSet (and syncing the revision annotations), scaling one ReplicaSet,
scaling events and paused Deployments with proportional scaling, cleaning up old history, and the
status without its Progressing condition (that is progress.py's).
"""

from __future__ import annotations

import math

from control.api.meta import annotations_of, labels_of, meta, name_of, namespace_of, uid_of
from control.client import DEPLOYMENTS, REPLICA_SETS, AlreadyExists, Conflict, NotFound
from control.controllers._base import Controller
from control.controllers._deployment.util import (
    _SKIP_ANNOTATIONS,
    DESIRED_REPLICAS,
    FOUND_NEW_RS,
    MAX_REPLICAS,
    MIN_AVAILABLE,
    MIN_UNAVAILABLE,
    NEW_RS_CREATED,
    REVISION,
    REVISION_HISTORY,
    _creation_key,
    _int_annotation,
    active,
    compute_hash,
    condition,
    equal_ignore_hash,
    get_condition,
    is_rolling,
    max_surge,
    max_unavailable,
    new_rs_new_replicas,
    progress_deadline,
    replicas,
    revision,
    set_condition,
    status_int,
)
from control.controllers._util import (
    POD_TEMPLATE_HASH,
    JsonObject,
    controller_ref,
    deepcopy,
    is_deleting,
    key_of,
    make_controller_ref,
)


class DeploymentSync(Controller):
    """The shared steps; the strategies (rolling.py, recreate.py) and the controller build on them."""

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

    async def _write_status(self, d: JsonObject, status: JsonObject) -> None:
        body = deepcopy(d)
        body["status"] = status
        updated = await self.client.update_status(DEPLOYMENTS, body, namespace=namespace_of(d))
        d.clear()
        d.update(updated)
