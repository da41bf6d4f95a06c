"""The Deployment controller's pure helpers: annotations, condition reasons, the template hash, the
rolling-update fenceposts and the conditions' arithmetic (pkg/controller/deployment/util, and
controller.ComputeHash). No I/O: the controller's modules build on these."""

from __future__ import annotations

import json

from control.api.meta import annotations_of, meta, name_of
from control.controllers._util import POD_TEMPLATE_HASH, JsonObject, deepcopy, parse_time, rfc3339, scaled_value

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
