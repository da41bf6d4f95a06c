"""Small helpers shared by the controllers: label selectors, owner references, pod state, time, intstr.

Objects are plain JSON dicts as the API returns them; informer objects are shared, so nothing here
mutates its arguments.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from control.api import SelectorError, label_selector_as_selector, selector_from_set
from control.api.jsoncopy import json_copy
from control.api.meta import meta, name_of, namespace_of, uid_of

JsonObject = dict[str, Any]

#: Kubernetes' well-known labels and annotations used by more than one controller.
POD_TEMPLATE_HASH = "pod-template-hash"
ZONE_LABEL = "topology.kubernetes.io/zone"


# --- time ----------------------------------------------------------------------------------------

def rfc3339(when: float | None = None) -> str:
    """Seconds-resolution RFC 3339 in UTC, the shape metav1.Time serialises to."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if when is None else when))


def parse_time(value: Any) -> float | None:
    """Unix seconds of an RFC 3339 timestamp (metav1.Time or MicroTime), None if absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


# --- metadata ------------------------------------------------------------------------------------

# meta, name_of, namespace_of, uid_of, labels_of and annotations_of come from control.api.meta.


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def key_of(obj: Mapping[str, Any]) -> str:
    ns, name = namespace_of(obj), name_of(obj)
    return f"{ns}/{name}" if ns else name


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


def owner_refs(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    refs = meta(obj).get("ownerReferences")
    return [r for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []


def controller_ref(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with controller=true (metav1.GetControllerOf)."""
    for ref in owner_refs(obj):
        if ref.get("controller"):
            return ref
    return None


def make_controller_ref(owner: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    # metav1.NewControllerRef: blockOwnerDeletion so foreground deletion of the owner waits for it.
    return {"apiVersion": api_version, "kind": kind, "name": name_of(owner), "uid": uid_of(owner),
            "controller": True, "blockOwnerDeletion": True}


def index_by_owner_uid(obj: JsonObject) -> list[str]:
    return [str(r["uid"]) for r in owner_refs(obj) if r.get("uid")]


def index_by_uid(obj: JsonObject) -> list[str]:
    uid = uid_of(obj)
    return [uid] if uid else []


def deepcopy(obj: JsonObject) -> JsonObject:
    return json_copy(obj)


# --- label selectors -----------------------------------------------------------------------------

def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """Whether a controller's metav1.LabelSelector selects these labels, as upstream's controllers
    decide it: an invalid selector selects nothing (LabelSelectorAsSelector fails, the object is
    skipped), and so does a nil or empty one ("a ... with a nil or empty selector creeps in, it
    should match nothing, not everything", the listers' Get*ForPod)."""
    try:
        parsed = label_selector_as_selector(selector if isinstance(selector, Mapping) else None)
    except SelectorError:
        return False
    return not parsed.empty() and parsed.matches(labels)


def map_selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A plain map selector (Service, ReplicationController) as labels.SelectorFromSet reads it, except
    that a missing or empty one selects nothing: a Service without a selector gets no endpoints, and an
    RC with an empty selector creeps in to match nothing (the API omits an empty map, so it arrives nil)."""
    if not isinstance(selector, Mapping) or not selector:
        return False
    return selector_from_set(selector).matches(labels)


# --- pods ----------------------------------------------------------------------------------------

def pod_condition(pod: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_pod_terminal(pod: Mapping[str, Any]) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """controller.IsPodActive: not finished and not being deleted."""
    return not is_pod_terminal(pod) and not is_deleting(pod)


def is_pod_available(pod: Mapping[str, Any], min_ready_seconds: int, now: float) -> bool:
    """podutil.IsPodAvailable: Ready for at least minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def pod_ips(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    ips = [str(p.get("ip")) for p in status.get("podIPs") or [] if isinstance(p, dict) and p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return ips


def restart_count(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(s.get("restartCount") or 0) for s in statuses if isinstance(s, dict)), default=0)


# --- intstr --------------------------------------------------------------------------------------

def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, "25%" of TOTAL rounded up or down."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid int-or-percent {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = int(text[:-1])
        except ValueError:
            raise ValueError(f"invalid percent {value!r}") from None
        exact = percent * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"invalid int-or-percent {value!r}") from None


def drop_none(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in items if v is not None}
