"""Server-side printing: meta.k8s.io/v1 Table responses for `kubectl get`, with the columns upstream's
printers give (pkg/printers/internalversion/printers.go). Priority-1 columns are the `-o wide` ones."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from typing import Any

from control.api import SelectorError, label_selector_as_selector, selector_from_set

Row = list[Any]
Column = tuple[str, str, int]  # (name, type, priority)


def _age(timestamp: str | None, now: float | None = None) -> str:
    """kubectl's HumanDuration of the time since TIMESTAMP (duration.HumanDuration)."""
    if not timestamp:
        return "<unknown>"
    try:
        then = calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return "<invalid>"
    seconds = int((now or time.time()) - then)
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d" if days < 365 * 8 else f"{days // 365}y"


def _created(obj: dict[str, Any]) -> str:
    return _age(obj.get("metadata", {}).get("creationTimestamp"))


def _set_selector_string(selector: Any) -> str:
    """A map selector (Service, ReplicationController) as labels.FormatLabels prints it."""
    return str(selector_from_set(selector if isinstance(selector, dict) else {})) or "<none>"


def _label_selector_string(selector: Any) -> str:
    """A metav1.LabelSelector as metav1.FormatLabelSelector prints it: its canonical string,
    "<none>" when that is empty (nil or {}), "<error>" when it is invalid."""
    try:
        shown = str(label_selector_as_selector(selector if isinstance(selector, dict) else None))
    except SelectorError:
        return "<error>"
    return shown or "<none>"


def _format_label_selector(selector: dict[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: the selector's requirements sorted by key, as labels.Selector prints
    them ("app=web", "tier in (a,b)", "env notin (x)", "canary", "!legacy"); "<none>" for an empty one."""
    selector = selector if isinstance(selector, dict) else {}
    requirements = [(key, f"{key}={value}") for key, value in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, operator = expr.get("key", ""), expr.get("operator")
        values = ",".join(sorted(expr.get("values") or []))
        shown = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                 "DoesNotExist": f"!{key}"}.get(operator)
        if shown is None:
            return "<error>"
        requirements.append((key, shown))
    return ",".join(shown for _, shown in sorted(requirements, key=lambda r: r[0])) or "<none>"


def _pod_row(pod: dict[str, Any]) -> Row:
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod.get("metadata") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in statuses:
        state = s.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            terminated = state["terminated"]
            reason = terminated.get("reason") or (f"Signal:{terminated['signal']}" if terminated.get("signal")
                                                  else f"ExitCode:{terminated.get('exitCode', 0)}")
    if meta.get("deletionTimestamp"):
        reason = "Terminating" if status.get("reason") != "NodeLost" else "Unknown"
    return [meta.get("name"), f"{ready}/{total}", reason, restarts, _created(pod),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", "<none>"]


def _service_row(svc: dict[str, Any]) -> Row:
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    svc_type = spec.get("type", "ClusterIP")
    external = [i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
    external += spec.get("externalIPs") or []
    if svc_type == "ExternalName":
        external_ip = spec.get("externalName", "<none>")
    elif external:
        external_ip = ",".join(x for x in external if x)
    else:
        external_ip = "<pending>" if svc_type == "LoadBalancer" else "<none>"
    ports = []
    for p in spec.get("ports") or []:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        ports.append(f"{text}/{p.get('protocol', 'TCP')}")
    return [svc["metadata"].get("name"), svc_type, spec.get("clusterIP") or "<none>", external_ip,
            ",".join(ports) or "<none>", _created(svc), _set_selector_string(spec.get("selector"))]


def _containers(obj: dict[str, Any]) -> tuple[str, str]:
    containers = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _pod_template_row(obj: dict[str, Any]) -> Row:
    """printPodTemplate: the template's containers, images and pod labels (labels.FormatLabels); no age."""
    names, images = _containers({"spec": obj})
    labels = ((obj.get("template") or {}).get("metadata") or {}).get("labels")
    return [obj["metadata"].get("name"), names, images, _set_selector_string(labels)]


def _deployment_row(d: dict[str, Any]) -> Row:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(d)
    return [d["metadata"].get("name"), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _created(d), names, images,
            _label_selector_string(spec.get("selector"))]


def _replicaset_row(rs: dict[str, Any]) -> Row:
    return _replicated_row(rs, _label_selector_string)


def _replication_controller_row(rc: dict[str, Any]) -> Row:
    return _replicated_row(rc, _set_selector_string)


def _replicated_row(obj: dict[str, Any], selector_string: Callable[[Any], str]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [obj["metadata"].get("name"), spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), _created(obj), names, images, selector_string(spec.get("selector"))]


def _node_row(node: dict[str, Any]) -> Row:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None or ready.get("status") == "Unknown" else \
        ("Ready" if ready.get("status") == "True" else "NotReady")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (meta.get("labels") or {}) if k.startswith("node-role.kubernetes.io/"))
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [meta.get("name"), state, ",".join(roles) or "<none>", _created(node), info.get("kubeletVersion", ""),
            addresses.get("InternalIP", "<none>"), addresses.get("ExternalIP", "<none>"), info.get("osImage", ""),
            info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]


def _endpoints_row(ep: dict[str, Any]) -> Row:
    addresses = [f"{a.get('ip')}:{p.get('port')}" for s in ep.get("subsets") or []
                 for a in s.get("addresses") or [] for p in s.get("ports") or [{"port": ""}]]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
    return [ep["metadata"].get("name"), shown or "<none>", _created(ep)]


def _slice_row(es: dict[str, Any]) -> Row:
    ports = ",".join(str(p.get("port", "")) for p in es.get("ports") or []) or "<unset>"
    addresses = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
    return [es["metadata"].get("name"), es.get("addressType", ""), ports, shown or "<unset>", _created(es)]


def _event_row(ev: dict[str, Any]) -> Row:
    """printEvent with Wide (the server always prints wide; kubectl hides the priority-1 cells without -o wide)."""
    def age(stamp: str | None) -> str:
        return _age(stamp[:19] + "Z" if stamp and len(stamp) > 20 else stamp)  # MicroTime to whole seconds

    obj, source, series = ev.get("involvedObject") or {}, ev.get("source") or {}, ev.get("series") or {}
    first = ev.get("firstTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    count = ev.get("count") or 1  # a singleton event of the events.k8s.io API has no count
    if series:
        last, count = series.get("lastObservedTime") or last, series.get("count", count)
    kind = (obj.get("kind") or "").lower()
    component = source.get("component") or ev.get("reportingComponent") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    return [age(last), ev.get("type", ""), ev.get("reason", ""), f"{kind}/{obj['name']}" if obj.get("name") else kind,
            obj.get("fieldPath", ""), f"{component}, {instance}" if instance else component,
            str(ev.get("message", "")).strip(), age(first), count, ev["metadata"].get("name")]


def _job_status(job: dict[str, Any]) -> str:
    """printJob's STATUS: the first condition that holds, in upstream's order, else Running."""
    held = {c.get("type") for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    for kind in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet", "Suspended"):
        if kind in held:
            return kind
    return "Terminating" if job["metadata"].get("deletionTimestamp") else "Running"


def _job_row(job: dict[str, Any]) -> Row:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    duration = ""
    if status.get("startTime"):
        if status.get("completionTime"):
            finished = calendar.timegm(time.strptime(status["completionTime"], "%Y-%m-%dT%H:%M:%SZ"))
            duration = _age(status["startTime"], float(finished))
        else:
            duration = _age(status["startTime"])
    names, images = _containers(job)
    return [job["metadata"].get("name"), _job_status(job), completions, duration, _created(job), names, images,
            _label_selector_string(spec.get("selector"))]


def _daemon_set_row(ds: dict[str, Any]) -> Row:
    spec, status = ds.get("spec") or {}, ds.get("status") or {}
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    names, images = _containers(ds)
    return [ds["metadata"].get("name"), status.get("desiredNumberScheduled", 0),
            status.get("currentNumberScheduled", 0), status.get("numberReady", 0),
            status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0),
            _set_selector_string(node_selector), _created(ds), names, images,
            _label_selector_string(spec.get("selector"))]


def _stateful_set_row(sts: dict[str, Any]) -> Row:
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    names, images = _containers(sts)
    return [sts["metadata"].get("name"), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            _created(sts), names, images]


def _controller_revision_row(rev: dict[str, Any]) -> Row:
    owner = next((r for r in rev["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
    shown = "<none>"
    if owner is not None:
        group = str(owner.get("apiVersion", "")).rpartition("/")[0]
        shown = f"{owner.get('kind', '').lower()}.{group}/{owner.get('name')}" if group else \
            f"{owner.get('kind', '').lower()}/{owner.get('name')}"
    return [rev["metadata"].get("name"), shown, rev.get("revision", 0), _created(rev)]


def _cron_job_row(cj: dict[str, Any]) -> Row:
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    job_spec = ((spec.get("jobTemplate") or {}).get("spec") or {})
    names, images = _containers({"spec": job_spec})
    last = _age(status["lastScheduleTime"]) if status.get("lastScheduleTime") else "<none>"
    # printBoolPtr: SUSPEND is the text True or False.
    return [cj["metadata"].get("name"), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "True" if spec.get("suspend") else "False", len(status.get("active") or []), last, _created(cj),
            names, images,
            _label_selector_string(job_spec.get("selector"))]


def _simple(extra: Callable[[dict[str, Any]], list[Any]]) -> Callable[[dict[str, Any]], Row]:
    return lambda obj: [obj["metadata"].get("name"), *extra(obj), _created(obj)]


def _binding_row(obj: dict[str, Any]) -> Row:
    """printRoleBinding / printClusterRoleBinding: the role as Kind/name; wide: users, groups, service accounts."""
    ref = obj.get("roleRef") or {}
    subjects = [s for s in obj.get("subjects") or [] if isinstance(s, dict)]

    def of(kind: str) -> str:
        return ", ".join((f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount" else
                          str(s.get("name", ""))) for s in subjects if s.get("kind") == kind)

    return [obj["metadata"].get("name"), f"{ref.get('kind', '')}/{ref.get('name', '')}", _created(obj),
            of("User"), of("Group"), of("ServiceAccount")]


# printers.go's storage rows. Access modes as kubectl abbreviates them (GetAccessModesAsString).
_MODE_SHORT = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")


def _access_modes(modes: Any) -> str:
    present = set(modes) if isinstance(modes, list) else set()
    return ",".join(short for mode, short in _MODE_SHORT.items() if mode in present)


def _phase(obj: dict[str, Any]) -> str:
    return "Terminating" if obj["metadata"].get("deletionTimestamp") else \
        str((obj.get("status") or {}).get("phase", ""))


def _persistent_volume_row(pv: dict[str, Any]) -> Row:
    spec, status = pv.get("spec") or {}, pv.get("status") or {}
    claim = spec.get("claimRef") or {}
    claimed = f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else ""
    return [pv["metadata"].get("name"), str((spec.get("capacity") or {}).get("storage", "")),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""), _phase(pv),
            claimed, spec.get("storageClassName", ""), spec.get("volumeAttributesClassName") or "<unset>",
            status.get("reason", ""), _created(pv), spec.get("volumeMode") or "<unset>"]


def _persistent_volume_claim_row(pvc: dict[str, Any]) -> Row:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    bound = bool(spec.get("volumeName"))
    return [pvc["metadata"].get("name"), _phase(pvc), spec.get("volumeName", ""),
            str((status.get("capacity") or {}).get("storage", "")) if bound else "",
            _access_modes(status.get("accessModes")) if bound else "", spec.get("storageClassName") or "",
            spec.get("volumeAttributesClassName") or "<unset>", _created(pvc), spec.get("volumeMode") or "<unset>"]


def is_default_class(sc: dict[str, Any]) -> bool:
    annotations = sc["metadata"].get("annotations") or {}
    return any(annotations.get(key) == "true" for key in DEFAULT_CLASS_ANNOTATIONS)


def _storage_class_row(sc: dict[str, Any]) -> Row:
    name = str(sc["metadata"].get("name"))
    return [f"{name} (default)" if is_default_class(sc) else name, sc.get("provisioner", ""),
            sc.get("reclaimPolicy") or "Delete", sc.get("volumeBindingMode") or "Immediate",
            "true" if sc.get("allowVolumeExpansion") else "false", _created(sc)]


_ROLE_COLUMNS: list[Column] = [("Name", "string", 0), ("Created At", "date", 0)]
_BINDING_COLUMNS: list[Column] = [("Name", "string", 0), ("Role", "string", 0), ("Age", "string", 0),
                                  ("Users", "string", 1), ("Groups", "string", 1), ("ServiceAccounts", "string", 1)]


PRINTERS: dict[str, tuple[list[Column], Callable[[dict[str, Any]], Row]]] = {
    "persistentvolumes": ([("Name", "string", 0), ("Capacity", "string", 0), ("Access Modes", "string", 0),
                           ("Reclaim Policy", "string", 0), ("Status", "string", 0), ("Claim", "string", 0),
                           ("StorageClass", "string", 0), ("VolumeAttributesClass", "string", 0),
                           ("Reason", "string", 0), ("Age", "string", 0), ("VolumeMode", "string", 1)],
                          _persistent_volume_row),
    "persistentvolumeclaims": ([("Name", "string", 0), ("Status", "string", 0), ("Volume", "string", 0),
                                ("Capacity", "string", 0), ("Access Modes", "string", 0),
                                ("StorageClass", "string", 0), ("VolumeAttributesClass", "string", 0),
                                ("Age", "string", 0), ("VolumeMode", "string", 1)], _persistent_volume_claim_row),
    "storageclasses": ([("Name", "string", 0), ("Provisioner", "string", 0), ("ReclaimPolicy", "string", 0),
                        ("VolumeBindingMode", "string", 0), ("AllowVolumeExpansion", "string", 0),
                        ("Age", "string", 0)], _storage_class_row),
    "pods": ([("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
              ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
              ("Readiness Gates", "string", 1)], _pod_row),
    "services": ([("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
                  ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
                  ("Selector", "string", 1)], _service_row),
    "deployments": ([("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "integer", 0),
                     ("Available", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
                     ("Images", "string", 1), ("Selector", "string", 1)], _deployment_row),
    "replicasets": ([("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
                     ("Ready", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
                     ("Images", "string", 1), ("Selector", "string", 1)], _replicaset_row),
    "podtemplates": ([("Name", "string", 0), ("Containers", "string", 0), ("Images", "string", 0),
                      ("Pod Labels", "string", 0)], _pod_template_row),
    "replicationcontrollers": ([("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
                                ("Ready", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
                                ("Images", "string", 1), ("Selector", "string", 1)], _replication_controller_row),
    "jobs": ([("Name", "string", 0), ("Status", "string", 0), ("Completions", "string", 0),
              ("Duration", "string", 0), ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1),
              ("Selector", "string", 1)], _job_row),
    "daemonsets": ([("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
                    ("Ready", "integer", 0), ("Up-to-date", "integer", 0), ("Available", "integer", 0),
                    ("Node Selector", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
                    ("Images", "string", 1), ("Selector", "string", 1)], _daemon_set_row),
    "statefulsets": ([("Name", "string", 0), ("Ready", "string", 0), ("Age", "string", 0),
                      ("Containers", "string", 1), ("Images", "string", 1)], _stateful_set_row),
    "controllerrevisions": ([("Name", "string", 0), ("Controller", "string", 0), ("Revision", "integer", 0),
                             ("Age", "string", 0)], _controller_revision_row),
    "cronjobs": ([("Name", "string", 0), ("Schedule", "string", 0), ("Timezone", "string", 0),
                  ("Suspend", "boolean", 0), ("Active", "integer", 0), ("Last Schedule", "string", 0),
                  ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1),
                  ("Selector", "string", 1)], _cron_job_row),
    "nodes": ([("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0),
               ("Version", "string", 0), ("Internal-IP", "string", 1), ("External-IP", "string", 1),
               ("OS-Image", "string", 1), ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)],
              _node_row),
    "namespaces": ([("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
                   _simple(lambda o: [(o.get("status") or {}).get("phase", "")])),
    "endpoints": ([("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)], _endpoints_row),
    "endpointslices": ([("Name", "string", 0), ("AddressType", "string", 0), ("Ports", "string", 0),
                        ("Endpoints", "string", 0), ("Age", "string", 0)], _slice_row),
    "events": ([("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0), ("Object", "string", 0),
                ("Subobject", "string", 1), ("Source", "string", 1), ("Message", "string", 0),
                ("First Seen", "string", 1), ("Count", "string", 1), ("Name", "string", 1)], _event_row),
    "configmaps": ([("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
                   _simple(lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {})])),
    "secrets": ([("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
                _simple(lambda o: [o.get("type", ""), len(o.get("data") or {})])),
    "serviceaccounts": ([("Name", "string", 0), ("Secrets", "integer", 0), ("Age", "string", 0)],
                        _simple(lambda o: [len(o.get("secrets") or [])])),
    "leases": ([("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
               _simple(lambda o: [(o.get("spec") or {}).get("holderIdentity", "")])),
    "networkpolicies": ([("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)],
                        _simple(lambda o: [_format_label_selector((o.get("spec") or {}).get("podSelector"))])),
    # The CRD's additionalPrinterColumns: Priority (as a string, as the CRD declares it), then Age.
    "adminnetworkpolicies": ([("Name", "string", 0), ("Priority", "string", 0), ("Age", "string", 0)],
                             _simple(lambda o: [str((o.get("spec") or {}).get("priority", ""))])),
}
for _plural in ("roles", "clusterroles"):
    PRINTERS[_plural] = (_ROLE_COLUMNS, lambda o: [o["metadata"].get("name"), o["metadata"].get("creationTimestamp")])
for _plural in ("rolebindings", "clusterrolebindings"):
    PRINTERS[_plural] = (_BINDING_COLUMNS, _binding_row)
DEFAULT: tuple[list[Column], Callable[[dict[str, Any]], Row]] = (
    [("Name", "string", 0), ("Age", "string", 0)], _simple(lambda o: []))


def _partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def to_table(plural: str, objects: list[dict[str, Any]], list_meta: dict[str, Any] | None = None,
             include_object: str = "Metadata") -> dict[str, Any]:
    columns, row_of = PRINTERS.get(plural, DEFAULT)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": row_of(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial_metadata(obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta or {},
        "columnDefinitions": [
            {"name": name, "type": kind, "format": "name" if name == "Name" else "", "description": "",
             "priority": priority}
            for name, kind, priority in columns
        ],
        "rows": rows,
    }
