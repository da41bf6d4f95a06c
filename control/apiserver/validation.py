"""Validation of the built-in kinds, in Kubernetes' words, on defaulted JSON objects.

    validate("Service", svc)              -> [FieldError("FieldValueInvalid", "spec.ports[0].port",
                                              "Invalid value: 70000: must be between 1 and 65535, inclusive")]
    validate_update("Service", new, old)  -> the above, plus what may not change

The rules and messages follow upstream: k8s.io/apimachinery/pkg/util/validation (names, labels, ports),
k8s.io/apimachinery/pkg/util/validation/field/errors.go (how an error reads),
k8s.io/apimachinery/pkg/apis/meta/v1/validation (labels, selectors), pkg/apis/core/validation/validation.go
(pods, services, namespaces, nodes, config maps, endpoints, replication controllers),
pkg/apis/apps/validation/validation.go (deployments, replica sets) and
pkg/apis/discovery/validation/validation.go (endpoint slices). Objects are expected to be defaulted
first (defaults.py), as upstream validates after defaulting. Kinds without rules get name checks only.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from control.api import SelectorError, label_selector_as_selector
from control.api.quantity import Quantity, QuantityError, parse_quantity
from control.api.validators import (
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_label_value,
    is_qualified_name,
    is_valid_port_name,
    is_valid_port_num,
)

__all__ = ["FieldError", "validate", "validate_update"]


@dataclass(frozen=True)
class FieldError:
    """One cause of a 422: `type` is the StatusCause reason (upstream's field.ErrorType)."""

    type: str
    field: str
    message: str


# -- field errors (field/errors.go) ---------------------------------------------------------------------------


def go_value(value: Any) -> str:
    """A bad value as upstream prints it: %v for numbers and booleans, %q for strings, %#v otherwise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "}"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return "map[string]string{" + ", ".join(f"{json.dumps(k)}:{json.dumps(v)}"
                                                 for k, v in sorted(value.items())) + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))


def invalid(path: str, value: Any, detail: str) -> FieldError:
    message = f"Invalid value: {go_value(value)}" + (f": {detail}" if detail else "")
    return FieldError("FieldValueInvalid", path, message)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, f"Duplicate value: {go_value(value)}")


def not_supported(path: str, value: Any, valid: Iterable[str]) -> FieldError:
    quoted = ", ".join(json.dumps(v) for v in valid)
    return FieldError("FieldValueNotSupported", path,
                      f"Unsupported value: {go_value(value)}" + (f": supported values: {quoted}" if quoted else ""))


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, "Forbidden" + (f": {detail}" if detail else ""))


def not_found(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", path, f"Not found: {go_value(value)}")


def too_long(path: str, limit: int) -> FieldError:
    return FieldError("FieldValueTooLong", path, f"Too long: must have at most {limit} bytes")


def too_many(path: str, actual: int, limit: int) -> FieldError:
    return FieldError("FieldValueTooMany", path, f"Too many: {actual}: must have at most {limit} items")


def immutable(path: str, value: Any) -> FieldError:
    return invalid(path, value, "field is immutable")


# -- names and values: the validators of apimachinery/pkg/util/validation live in control.api.validators -----


def _is_ip(value: Any, version: int | None = None) -> bool:
    if not isinstance(value, str):
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return version is None or address.version == version


def _ip_errors(path: str, value: Any) -> list[FieldError]:
    if _is_ip(value):
        return []
    return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def nonnegative(path: str, value: Any) -> list[FieldError]:
    number = _int(value)
    if number is not None and number < 0:
        return [invalid(path, number, "must be greater than or equal to 0")]
    return []


# -- metadata (apimachinery/pkg/api/validation/objectmeta.go, meta/v1/validation) ----------------------------

NameCheck = Callable[[str], list[str]]
TOTAL_ANNOTATION_SIZE = 256 * 1024


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in _dict(labels).items():
        errs.extend(invalid(path, key, msg) for msg in is_qualified_name(key))
        if not isinstance(value, str):
            errs.append(invalid(path, value, "must be a string"))
            continue
        errs.extend(invalid(path, value, msg) for msg in is_label_value(value))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    size = 0
    for key, value in _dict(annotations).items():
        errs.extend(invalid(path, key, msg) for msg in is_qualified_name(key.lower()))
        size += len(key) + len(value if isinstance(value, str) else "")
    if size > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE))
    return errs


def validate_object_meta(obj: dict[str, Any], name_check: NameCheck) -> list[FieldError]:
    meta = _dict(obj.get("metadata"))
    name = _as_str(meta.get("name"))
    errs: list[FieldError] = []
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        errs.extend(invalid("metadata.name", name, msg) for msg in name_check(name))
    errs += validate_labels(meta.get("labels"), "metadata.labels")
    errs += validate_annotations(meta.get("annotations"), "metadata.annotations")
    errs += validate_owner_references(meta.get("ownerReferences"), "metadata.ownerReferences")
    return errs


# Kinds that may never own anything (upstream's BannedOwners): events are not durable.
_BANNED_OWNERS = {("", "v1", "Event")}


def _group_version(api_version: str) -> tuple[str, str]:
    """(group, version) of an apiVersion as schema.ParseGroupVersion reads it; ("", "") when it cannot."""
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", ""


def _validate_owner_reference(ref: dict[str, Any], path: str) -> list[FieldError]:
    api_version, kind = _as_str(ref.get("apiVersion")), _as_str(ref.get("kind"))
    group, version = _group_version(api_version)
    errs: list[FieldError] = []
    if not version:
        errs.append(invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
    if not kind:
        errs.append(invalid(f"{path}.kind", kind, "must not be empty"))
    for field in ("name", "uid"):
        if not _as_str(ref.get(field)):
            errs.append(invalid(f"{path}.{field}", _as_str(ref.get(field)), "must not be empty"))
    if (group, version, kind) in _BANNED_OWNERS:
        errs.append(invalid(path, ref, f"{group}/{version}, Kind={kind} is disallowed from being an owner"))
    return errs


def validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    """Upstream's ValidateOwnerReferences: each reference names apiVersion, kind, name and uid, and at most one
    is the controller. Errors name the list itself (not an index), as upstream's do."""
    errs: list[FieldError] = []
    first_controller = ""
    for ref in _list(refs):
        ref = _dict(ref)
        errs += _validate_owner_reference(ref, path)
        if ref.get("controller") is True:
            current = f"{_as_str(ref.get('kind'))}/{_as_str(ref.get('name'))}"
            if first_controller:
                errs.append(invalid(path, refs, "Only one reference can have Controller set to true. Found "
                                    f'"true" in references for {first_controller} and {current}'))
            else:
                first_controller = current
    return errs


_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(selector: Any, path: str) -> list[FieldError]:
    selector = _dict(selector)
    errs = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(_list(selector.get("matchExpressions"))):
        where = f"{path}.matchExpressions[{i}]"
        req = _dict(req)
        operator, values = req.get("operator"), _list(req.get("values"))
        if operator in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{where}.values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{where}.operator", operator, "not a valid selector operator"))
        key = _as_str(req.get("key"))
        errs.extend(invalid(f"{where}.key", key, msg) for msg in is_qualified_name(key))
    return errs


# -- pods (pkg/apis/core/validation/validation.go) ----------------------------------------------------------

PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def validate_port_num_or_name(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        return [invalid(path, value, msg) for msg in is_valid_port_name(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        return [invalid(path, value, msg) for msg in is_valid_port_num(value)]
    return [invalid(path, value, "must contain an int or string")]


def _protocol_errors(path: str, protocol: Any) -> list[FieldError]:
    if protocol in (None, ""):
        return [required(path)]
    if protocol not in PROTOCOLS:
        return [not_supported(path, protocol, PROTOCOLS)]
    return []


def _quantity(value: Any) -> Quantity | None:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def validate_resources(resources: Any, path: str) -> list[FieldError]:
    resources = _dict(resources)
    errs: list[FieldError] = []
    parsed: dict[str, dict[str, Quantity]] = {"limits": {}, "requests": {}}
    for part in ("limits", "requests"):
        for name, raw in _dict(resources.get(part)).items():
            where = f"{path}.{part}[{name}]"
            if "/" not in name and name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
                errs.append(invalid(where, name, "must be a standard resource for containers"))
                continue
            if "/" in name:
                errs.extend(invalid(where, name, msg) for msg in is_qualified_name(name))
            quantity = _quantity(raw)
            if quantity is None:
                errs.append(invalid(where, raw, "quantities must match the regular expression "
                                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
                continue
            if quantity.is_negative:
                errs.append(invalid(where, str(quantity), "must be greater than or equal to 0"))
                continue
            parsed[part][name] = quantity
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            errs.append(invalid(f"{path}.requests[{name}]", str(request),
                                f"must be less than or equal to {name} limit of {limit}"))
    return errs


def validate_handler(handler: dict[str, Any], path: str, kinds: tuple[str, ...]) -> list[FieldError]:
    present = [k for k in kinds if handler.get(k) is not None]
    if not present:
        return [required(path, "must specify a handler type")]
    errs = [forbidden(f"{path}.{k}", "may not specify more than 1 handler type") for k in present[1:]]
    kind = present[0]
    action = _dict(handler[kind])
    where = f"{path}.{kind}"
    if kind == "exec" and not _list(action.get("command")):
        errs.append(required(f"{where}.command"))
    elif kind == "httpGet":
        if not action.get("path"):
            errs.append(required(f"{where}.path"))
        errs += validate_port_num_or_name(action.get("port"), f"{where}.port")
        if action.get("scheme") not in ("HTTP", "HTTPS"):
            errs.append(not_supported(f"{where}.scheme", action.get("scheme"), ("HTTP", "HTTPS")))
    elif kind == "tcpSocket":
        errs += validate_port_num_or_name(action.get("port"), f"{where}.port")
    elif kind == "grpc":
        errs.extend(invalid(f"{where}.port", action.get("port"), msg) for msg in is_valid_port_num(action.get("port")))
    return errs


def validate_probe(probe: Any, path: str) -> list[FieldError]:
    if probe is None:
        return []
    probe = _dict(probe)
    errs = validate_handler(probe, path, _PROBE_HANDLERS)
    for field in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += nonnegative(f"{path}.{field}", probe.get(field))
    return errs


def validate_env(env: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, var in enumerate(_list(env)):
        var = _dict(var)
        where = f"{path}[{i}]"
        name = _as_str(var.get("name"))
        if not name:
            errs.append(required(f"{where}.name"))
        else:
            errs.extend(invalid(f"{where}.name", name, msg) for msg in is_env_var_name(name))
        source = var.get("valueFrom")
        if source is not None:
            sources = [k for k in _ENV_SOURCES if _dict(source).get(k) is not None]
            if var.get("value"):
                errs.append(invalid(f"{where}.valueFrom", "", "may not be specified when `value` is not empty"))
            if not sources:
                errs.append(invalid(f"{where}.valueFrom", "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                    "`configMapKeyRef` or `secretKeyRef`"))
            elif len(sources) > 1:
                errs.append(invalid(f"{where}.valueFrom", "", "may not have more than one field specified at a time"))
    return errs


def validate_container(container: dict[str, Any], path: str, volumes: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    name = _as_str(container.get("name"))
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs.extend(invalid(f"{path}.name", name, msg) for msg in is_dns1123_label(name))
    if not container.get("image"):
        errs.append(required(f"{path}.image"))
    policy = container.get("imagePullPolicy")
    if not policy:
        errs.append(required(f"{path}.imagePullPolicy"))
    elif policy not in PULL_POLICIES:
        errs.append(not_supported(f"{path}.imagePullPolicy", policy, PULL_POLICIES))
    message_policy = container.get("terminationMessagePolicy")
    if not message_policy:
        errs.append(required(f"{path}.terminationMessagePolicy"))
    elif message_policy not in TERMINATION_MESSAGE_POLICIES:
        errs.append(not_supported(f"{path}.terminationMessagePolicy", message_policy, TERMINATION_MESSAGE_POLICIES))

    port_names: set[str] = set()
    for i, port in enumerate(_list(container.get("ports"))):
        port = _dict(port)
        where = f"{path}.ports[{i}]"
        port_name = _as_str(port.get("name"))
        if port_name:
            errs.extend(invalid(f"{where}.name", port_name, msg) for msg in is_valid_port_name(port_name))
            if port_name in port_names:
                errs.append(duplicate(f"{where}.name", port_name))
            port_names.add(port_name)
        container_port = port.get("containerPort")
        if not container_port:
            errs.append(required(f"{where}.containerPort"))
        else:
            errs.extend(invalid(f"{where}.containerPort", container_port, msg)
                        for msg in is_valid_port_num(container_port))
        if port.get("hostPort"):
            errs.extend(invalid(f"{where}.hostPort", port["hostPort"], msg)
                        for msg in is_valid_port_num(port["hostPort"]))
        errs += _protocol_errors(f"{where}.protocol", port.get("protocol"))
    errs += validate_env(container.get("env"), f"{path}.env")
    errs += validate_resources(container.get("resources"), f"{path}.resources")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        errs += validate_probe(container.get(probe), f"{path}.{probe}")
    for probe in ("livenessProbe", "startupProbe"):
        threshold = _dict(container.get(probe)).get("successThreshold")
        if container.get(probe) is not None and threshold not in (None, 1):
            errs.append(invalid(f"{path}.{probe}.successThreshold", threshold, "must be 1"))
    mount_paths: set[str] = set()
    for i, mount in enumerate(_list(container.get("volumeMounts"))):
        mount = _dict(mount)
        where = f"{path}.volumeMounts[{i}]"
        mount_name = _as_str(mount.get("name"))
        if not mount_name:
            errs.append(required(f"{where}.name"))
        elif mount_name not in volumes:
            errs.append(not_found(f"{where}.name", mount_name))
        mount_path = _as_str(mount.get("mountPath"))
        if not mount_path:
            errs.append(required(f"{where}.mountPath"))
        elif mount_path in mount_paths:
            errs.append(invalid(f"{where}.mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
    return errs


def validate_tolerations(tolerations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, toleration in enumerate(_list(tolerations)):
        toleration = _dict(toleration)
        where = f"{path}[{i}]"
        key, operator = _as_str(toleration.get("key")), toleration.get("operator") or ""
        value, effect = _as_str(toleration.get("value")), toleration.get("effect") or ""
        if key:
            errs.extend(invalid(f"{where}.key", key, msg) for msg in is_qualified_name(key))
        if not key and operator != "Exists":
            errs.append(invalid(f"{where}.operator", operator,
                                'operator must be Exists when `key` is empty, which means "match all values and all '
                                'keys"'))
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(invalid(f"{where}.effect", effect,
                                "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if operator in ("Equal", ""):
            messages = is_label_value(value)
            if messages:
                errs.append(invalid(f"{where}.operator", value, ";".join(messages)))
        elif operator == "Exists":
            if value:
                errs.append(invalid(f"{where}.operator", toleration, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(f"{where}.operator", operator, ("Equal", "Exists")))
        if effect and effect not in TAINT_EFFECTS:
            errs.append(not_supported(f"{where}.effect", effect, TAINT_EFFECTS))
    return errs


def validate_pod_spec(spec: Any, path: str) -> list[FieldError]:
    spec = _dict(spec)
    errs: list[FieldError] = []
    volumes: set[str] = set()
    for i, volume in enumerate(_list(spec.get("volumes"))):
        name = _as_str(_dict(volume).get("name"))
        where = f"{path}.volumes[{i}].name"
        if not name:
            errs.append(required(where))
        else:
            errs.extend(invalid(where, name, msg) for msg in is_dns1123_label(name))
            if name in volumes:
                errs.append(duplicate(where, name))
        volumes.add(name)
    containers = _list(spec.get("containers"))
    if not containers:
        errs.append(required(f"{path}.containers"))
    names: set[str] = set()
    host_ports: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, container in enumerate(_list(spec.get(group))):
            where = f"{path}.{group}[{i}]"
            container = _dict(container)
            errs += validate_container(container, where, volumes)
            name = _as_str(container.get("name"))
            if name and name in names:
                errs.append(duplicate(f"{where}.name", name))
            names.add(name)
            restart = container.get("restartPolicy")
            if restart is not None and group == "containers":
                errs.append(forbidden(f"{where}.restartPolicy", "may not be set for non-init containers"))
            elif restart is not None and restart != "Always":
                errs.append(not_supported(f"{where}.restartPolicy", restart, ("Always",)))
            if group != "containers":
                continue
            # checkHostPortConflicts: one protocol/hostIP/hostPort per pod.
            for p, port in enumerate(_list(container.get("ports"))):
                port = _dict(port)
                if not port.get("hostPort"):
                    continue
                key = f"{port.get('protocol')}/{_as_str(port.get('hostIP'))}/{port.get('hostPort')}"
                if key in host_ports:
                    errs.append(duplicate(f"{where}.ports[{p}].hostPort", key))
                host_ports.add(key)
    restart = spec.get("restartPolicy")
    if not restart:
        errs.append(required(f"{path}.restartPolicy"))
    elif restart not in RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", restart, RESTART_POLICIES))
    dns = spec.get("dnsPolicy")
    if not dns:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dns not in DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dns, DNS_POLICIES))
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    account = _as_str(spec.get("serviceAccountName"))
    if account:
        errs.extend(invalid(f"{path}.serviceAccountName", account, msg) for msg in is_dns1123_subdomain(account))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not (isinstance(deadline, int) and 1 <= deadline <= 2**31 - 1):
        errs.append(invalid(f"{path}.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive"))
    errs += nonnegative(f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"))
    errs += validate_tolerations(spec.get("tolerations"), f"{path}.tolerations")
    node_name = _as_str(spec.get("nodeName"))
    if node_name:
        errs.extend(invalid(f"{path}.nodeName", node_name, msg) for msg in is_dns1123_subdomain(node_name))
    for field in ("hostname", "subdomain"):
        value = _as_str(spec.get(field))
        if value:
            errs.extend(invalid(f"{path}.{field}", value, msg) for msg in is_dns1123_label(value))
    return errs


def validate_pod(pod: dict[str, Any]) -> list[FieldError]:
    return validate_object_meta(pod, is_dns1123_subdomain) + validate_pod_spec(pod.get("spec"), "spec")


_POD_UPDATE_MESSAGE = ("pod updates may not change fields other than `spec.containers[*].image`,"
                       "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                       "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                       "(allow it to be set to 1 if it was previously negative)")


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_pod(new)
    new_spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    # What may change is copied from the new spec onto the old one; anything else left different is forbidden.
    munged = json.loads(json.dumps(new_spec))
    for group in ("containers", "initContainers"):
        old_containers = _list(old_spec.get(group))
        for i, container in enumerate(_list(munged.get(group))):
            if i < len(old_containers) and isinstance(container, dict):
                container["image"] = _dict(old_containers[i]).get("image")
    old_deadline = _int(old_spec.get("activeDeadlineSeconds"))
    new_deadline = _int(new_spec.get("activeDeadlineSeconds"))
    # activeDeadlineSeconds may be set, or lowered, never raised or removed.
    if new_deadline is not None and (old_deadline is None or new_deadline <= old_deadline):
        munged["activeDeadlineSeconds"] = old_deadline
        if old_deadline is None:
            munged.pop("activeDeadlineSeconds", None)
    old_tolerations = _list(old_spec.get("tolerations"))
    new_tolerations = _list(new_spec.get("tolerations"))
    if all(t in new_tolerations for t in old_tolerations):
        if old_tolerations:
            munged["tolerations"] = old_tolerations
        else:
            munged.pop("tolerations", None)
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and new_spec.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if munged != old_spec:
        changed = sorted(k for k in set(munged) | set(old_spec) if munged.get(k) != old_spec.get(k))
        errs.append(forbidden("spec", f"{_POD_UPDATE_MESSAGE}\n  core.PodSpec{{ changed: {', '.join(changed)} }}"))
    return errs


# -- services -----------------------------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
TRAFFIC_POLICIES = ("Cluster", "Local")
MAX_CLIENT_IP_TIMEOUT = 86400
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")


def _service_port_key(protocol: Any, port: Any) -> str:
    return (f'core.ServicePort{{Name:"", Protocol:"{protocol}", AppProtocol:(*string)(nil), Port:{port}, '
            'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}')


def validate_service(svc: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(svc, is_dns1035_label)
    spec = _dict(svc.get("spec"))
    svc_type = spec.get("type")
    cluster_ip = spec.get("clusterIP")
    headless = cluster_ip == "None"
    if svc_type not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", svc_type, SERVICE_TYPES))
    ports = _list(spec.get("ports"))
    if not ports and not headless and svc_type != "ExternalName":
        errs.append(required("spec.ports"))
    names: set[str] = set()
    seen: set[tuple[str, str]] = set()
    node_ports: set[tuple[str, str]] = set()
    for i, port in enumerate(ports):
        port = _dict(port)
        where = f"spec.ports[{i}]"
        name = _as_str(port.get("name"))
        if len(ports) > 1 and not name:
            errs.append(required(f"{where}.name"))
        elif name:
            errs.extend(invalid(f"{where}.name", name, msg) for msg in is_dns1123_label(name))
            if name in names:
                errs.append(duplicate(f"{where}.name", name))
        names.add(name)
        errs.extend(invalid(f"{where}.port", port.get("port"), msg) for msg in is_valid_port_num(port.get("port")))
        errs += _protocol_errors(f"{where}.protocol", port.get("protocol"))
        if "targetPort" in port:
            errs += validate_port_num_or_name(port.get("targetPort"), f"{where}.targetPort")
        if port.get("nodePort") and svc_type not in ("NodePort", "LoadBalancer"):
            errs.append(forbidden(f"{where}.nodePort", f"may not be used when `type` is '{svc_type}'"))
        node_port = port.get("nodePort")
        if node_port:
            node_key = (json.dumps(port.get("protocol")), json.dumps(node_port))
            if node_key in node_ports:
                errs.append(duplicate(f"{where}.nodePort", node_port))
            node_ports.add(node_key)
        key = (json.dumps(port.get("protocol")), json.dumps(port.get("port")))  # any JSON, hashable
        if key in seen:
            errs.append(FieldError("FieldValueDuplicate", where,
                                   f"Duplicate value: {_service_port_key(port.get('protocol'), port.get('port'))}"))
        seen.add(key)

    affinity = spec.get("sessionAffinity")
    config = spec.get("sessionAffinityConfig")
    if affinity not in ("ClientIP", "None"):
        errs.append(not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    if affinity == "ClientIP":
        # validateClientIPAffinityConfig
        client_ip = _dict(config).get("clientIP")
        timeout = _dict(client_ip).get("timeoutSeconds")
        where = "spec.sessionAffinityConfig"
        if config is None:
            errs.append(required(where, "when session affinity type is ClientIP"))
        elif client_ip is None:
            errs.append(required(f"{where}.clientIP", "when session affinity type is ClientIP"))
        elif timeout is None:
            errs.append(required(f"{where}.clientIP.timeoutSeconds", "when session affinity type is ClientIP"))
        elif not (isinstance(timeout, int) and 0 < timeout <= MAX_CLIENT_IP_TIMEOUT):
            errs.append(invalid(f"{where}.clientIP.timeoutSeconds", timeout,
                                f"must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}"))
    elif affinity == "None" and config is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))

    # The service strategy fills clusterIPs from clusterIP before validation, so IP errors name clusterIPs.
    ips = _list(spec.get("clusterIPs")) or ([cluster_ip] if cluster_ip else [])
    if svc_type == "ExternalName":
        if ips:
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if spec.get("ipFamilies"):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        external = _as_str(spec.get("externalName"))
        if not external:
            errs.append(required("spec.externalName"))
        else:
            errs.extend(invalid("spec.externalName", external, msg)
                        for msg in is_dns1123_subdomain(external.removesuffix(".")))
    else:
        if headless and svc_type in ("NodePort", "LoadBalancer"):
            errs.append(invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {svc_type} services"))
        if cluster_ip and ips and ips[0] != cluster_ip:
            errs.append(invalid("spec.clusterIPs", ips, "first value must match `clusterIP`"))
        for i, ip in enumerate(ips):
            if not (ip == "None" and i == 0):
                errs += _ip_errors(f"spec.clusterIPs[{i}]", ip)
    external_ips = _list(spec.get("externalIPs"))
    for i, ip in enumerate(external_ips):
        errs += _ip_errors(f"spec.externalIPs[{i}]", ip)

    # validateServiceExternalTrafficPolicy: "externally accessible" includes ClusterIP with externalIPs.
    external_policy = spec.get("externalTrafficPolicy")
    if svc_type in ("NodePort", "LoadBalancer") or (svc_type == "ClusterIP" and external_ips):
        if not external_policy:
            errs.append(required("spec.externalTrafficPolicy"))
        elif external_policy not in TRAFFIC_POLICIES:
            errs.append(not_supported("spec.externalTrafficPolicy", external_policy, TRAFFIC_POLICIES))
    elif external_policy:
        errs.append(invalid("spec.externalTrafficPolicy", external_policy,
                            "may only be set for externally-accessible services"))
    internal_policy = spec.get("internalTrafficPolicy")
    if svc_type != "ExternalName":
        if not internal_policy:
            errs.append(required("spec.internalTrafficPolicy"))
        elif internal_policy not in TRAFFIC_POLICIES:
            errs.append(not_supported("spec.internalTrafficPolicy", internal_policy, TRAFFIC_POLICIES))
    if spec.get("healthCheckNodePort") and not (svc_type == "LoadBalancer" and external_policy == "Local"):
        errs.append(invalid("spec.healthCheckNodePort", spec["healthCheckNodePort"],
                            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    if svc_type == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is None:
            errs.append(required("spec.allocateLoadBalancerNodePorts"))
    else:
        for field in ("loadBalancerSourceRanges", "allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if spec.get(field) not in (None, []):
                errs.append(forbidden(f"spec.{field}", "may only be used when `type` is 'LoadBalancer'"))
    for i, cidr in enumerate(_list(spec.get("loadBalancerSourceRanges"))):
        try:
            if not isinstance(cidr, str):
                raise ValueError(cidr)
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            errs.append(invalid(f"spec.loadBalancerSourceRanges[{i}]", cidr,
                                "must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 "))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))
    for i, family in enumerate(_list(spec.get("ipFamilies"))):
        if family not in ("IPv4", "IPv6"):
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6")))
    errs += validate_labels(spec.get("selector"), "spec.selector")
    return errs


def validate_service_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_service(new)
    new_spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    if "ExternalName" in (new_spec.get("type"), old_spec.get("type")):
        return errs  # upstream lets ClusterIPs change to and from ExternalName
    new_ips = _list(new_spec.get("clusterIPs")) or ([new_spec["clusterIP"]] if new_spec.get("clusterIP") else [])
    old_ips = _list(old_spec.get("clusterIPs")) or ([old_spec["clusterIP"]] if old_spec.get("clusterIP") else [])
    for i, ip in enumerate(new_ips[:len(old_ips)]):
        if ip != old_ips[i]:
            errs.append(invalid(f"spec.clusterIPs[{i}]", new_ips, "may not change once set"))
    return errs


# -- workloads (pkg/apis/apps/validation, core ReplicationController) ------------------------------------------


def _go_int_or_string(value: Any) -> str:
    if isinstance(value, str):
        return f'intstr.IntOrString{{Type:1, IntVal:0, StrVal:{json.dumps(value)}}}'
    return f'intstr.IntOrString{{Type:0, IntVal:{value}, StrVal:""}}'


def _go_selector(selector: Any) -> str:
    """A LabelSelector as Go's %#v prints upstream's struct in these messages."""
    selector = _dict(selector)
    labels = _dict(selector.get("matchLabels"))
    shown_labels = go_value(labels) if labels else "map[string]string(nil)"
    expressions = _list(selector.get("matchExpressions"))
    shown_expressions = "[]v1.LabelSelectorRequirement(nil)"
    if expressions:
        shown_expressions = "[]v1.LabelSelectorRequirement{" + ", ".join(
            f'v1.LabelSelectorRequirement{{Key:{json.dumps(_dict(e).get("key"))}, '
            f'Operator:{json.dumps(_dict(e).get("operator"))}, Values:{go_value(_list(_dict(e).get("values")))}}}'
            for e in expressions) + "}"
    return f"v1.LabelSelector{{MatchLabels:{shown_labels}, MatchExpressions:{shown_expressions}}}"


def _int_or_percent(value: Any, path: str) -> tuple[list[FieldError], int | None]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent; the value (a count or a percentage)."""
    if isinstance(value, str):
        match = re.fullmatch(r"([0-9]+)%", value)
        if match is None:
            return [invalid(path, value, "must be an integer or percentage (e.g '5%')")], None
        percent = int(match.group(1))
        if percent > 100:
            return [invalid(path, value, "must not be greater than 100%")], percent
        return [], percent
    number = _int(value)
    if number is None:
        return [invalid(path, value, "must be an integer or percentage (e.g '5%')")], None
    return nonnegative(path, number), number


def validate_template(template: Any, path: str, selector_ok: Callable[[dict[str, Any]], bool] | None,
                      ) -> list[FieldError]:
    """ValidatePodTemplateSpecForReplicaSet: labels matching the selector, a valid pod spec, restartPolicy Always."""
    if template is None:
        return [required(path)]
    template = _dict(template)
    meta = _dict(template.get("metadata"))
    labels = _dict(meta.get("labels"))
    errs: list[FieldError] = []
    if selector_ok is not None and not selector_ok(labels):
        errs.append(invalid(f"{path}.metadata.labels", labels, "`selector` does not match template `labels`"))
    errs += validate_labels(meta.get("labels"), f"{path}.metadata.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.metadata.annotations")
    spec = _dict(template.get("spec"))
    errs += validate_pod_spec(spec, f"{path}.spec")
    if spec.get("restartPolicy") and spec.get("restartPolicy") != "Always":
        errs.append(not_supported(f"{path}.spec.restartPolicy", spec.get("restartPolicy"), ("Always",)))
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(invalid(f"{path}.spec.activeDeadlineSeconds", spec["activeDeadlineSeconds"],
                            "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def _validate_replicated(obj: dict[str, Any], kind: str) -> list[FieldError]:
    """Deployment and ReplicaSet: replicas, a non-empty selector matching the template."""
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    spec = _dict(obj.get("spec"))
    errs += nonnegative("spec.replicas", spec.get("replicas"))
    errs += nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    selector = spec.get("selector")
    selector_ok: Callable[[dict[str, Any]], bool] | None = None
    if selector is None:
        errs.append(required("spec.selector"))
    else:
        selector_errors = validate_label_selector(selector, "spec.selector")
        errs += selector_errors
        selector = _dict(selector)
        if not _dict(selector.get("matchLabels")) and not _list(selector.get("matchExpressions")):
            errs.append(FieldError("FieldValueInvalid", "spec.selector",
                                   f"Invalid value: {_go_selector(selector)}: empty selector is invalid for {kind}"))
        elif not selector_errors:
            def selector_ok(labels: dict[str, Any]) -> bool:
                try:
                    return label_selector_as_selector(selector).matches(labels)
                except SelectorError:  # a malformed shape (not a map) is the decoder's to refuse
                    return True
    errs += validate_template(spec.get("template"), "spec.template", selector_ok)
    return errs


def validate_deployment(obj: dict[str, Any]) -> list[FieldError]:
    errs = _validate_replicated(obj, "deployment")
    spec = _dict(obj.get("spec"))
    strategy = _dict(spec.get("strategy"))
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            errs.append(forbidden("spec.strategy.rollingUpdate",
                                  "may not be specified when strategy `type` is 'Recreate'"))
    elif kind == "RollingUpdate":
        if rolling is None:
            errs.append(required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"))
        else:
            rolling = _dict(rolling)
            unavailable_errs, unavailable = _int_or_percent(rolling.get("maxUnavailable"),
                                                            "spec.strategy.rollingUpdate.maxUnavailable")
            surge_errs, surge = _int_or_percent(rolling.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge")
            errs += unavailable_errs + surge_errs
            if unavailable == 0 and surge == 0:
                errs.append(FieldError("FieldValueInvalid", "spec.strategy.rollingUpdate.maxUnavailable",
                                       f"Invalid value: {_go_int_or_string(rolling.get('maxUnavailable'))}: "
                                       "may not be 0 when `maxSurge` is 0"))
    else:
        errs.append(not_supported("spec.strategy.type", kind, ("Recreate", "RollingUpdate")))
    errs += nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    deadline = _int(spec.get("progressDeadlineSeconds"))
    errs += nonnegative("spec.progressDeadlineSeconds", deadline)
    ready = _int(spec.get("minReadySeconds")) or 0
    if deadline is not None and deadline <= ready:
        errs.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return errs


def validate_replica_set(obj: dict[str, Any]) -> list[FieldError]:
    return _validate_replicated(obj, "replicaset")


def _selector_immutable(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    selector = _dict(new.get("spec")).get("selector")
    if selector != _dict(old.get("spec")).get("selector"):
        return [FieldError("FieldValueInvalid", "spec.selector",
                           f"Invalid value: {_go_selector(selector)}: field is immutable")]
    return []


def validate_deployment_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_deployment(new) + _selector_immutable(new, old)


def validate_replica_set_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return validate_replica_set(new) + _selector_immutable(new, old)


def validate_replication_controller(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    spec = _dict(obj.get("spec"))
    errs += nonnegative("spec.replicas", spec.get("replicas"))
    errs += nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    selector = _dict(spec.get("selector"))
    if not selector:
        errs.append(required("spec.selector"))
    else:
        errs += validate_labels(selector, "spec.selector")

    def selector_ok(labels: dict[str, Any]) -> bool:
        return not selector or all(labels.get(k) == v for k, v in selector.items())

    errs += validate_template(spec.get("template"), "spec.template", selector_ok)
    return errs


# -- the other kinds -----------------------------------------------------------------------------------------


def validate_namespace(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_label)
    for i, finalizer in enumerate(_list(_dict(obj.get("spec")).get("finalizers"))):
        errs.extend(invalid(f"spec.finalizers[{i}]", finalizer, msg) for msg in is_qualified_name(_as_str(finalizer)))
    return errs


def validate_node(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    spec = _dict(obj.get("spec"))
    cidrs = _list(spec.get("podCIDRs")) or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for i, cidr in enumerate(cidrs):
        try:
            if not isinstance(cidr, str):
                raise ValueError(cidr)
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            errs.append(invalid(f"spec.podCIDRs[{i}]", cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or "
                                "2001:db8::/64)"))
    if spec.get("podCIDR") and cidrs and cidrs[0] != spec["podCIDR"]:
        errs.append(invalid("spec.podCIDRs", cidrs, "first value must match `podCIDR`"))
    for i, taint in enumerate(_list(spec.get("taints"))):
        taint = _dict(taint)
        where = f"spec.taints[{i}]"
        key = _as_str(taint.get("key"))
        errs.extend(invalid(f"{where}.key", key, msg) for msg in is_qualified_name(key))
        value = _as_str(taint.get("value"))
        errs.extend(invalid(f"{where}.value", value, msg) for msg in is_label_value(value))
        effect = taint.get("effect")
        if not effect:
            errs.append(required(f"{where}.effect"))
        elif effect not in TAINT_EFFECTS:
            errs.append(not_supported(f"{where}.effect", effect, TAINT_EFFECTS))
    return errs


MAX_CONFIG_MAP_SIZE = 1024 * 1024


def validate_config_map(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    data, binary = _dict(obj.get("data")), _dict(obj.get("binaryData"))
    size = 0
    for key, value in data.items():
        errs.extend(invalid(f"data[{key}]", key, msg) for msg in is_config_map_key(key))
        size += len(value) if isinstance(value, str) else 0
    for key, value in binary.items():
        errs.extend(invalid(f"binaryData[{key}]", key, msg) for msg in is_config_map_key(key))
        if key in data:
            errs.append(invalid(f"binaryData[{key}]", key, "duplicate of key present in data"))
        size += len(value) if isinstance(value, str) else 0
    if size > MAX_CONFIG_MAP_SIZE:
        errs.append(too_long("", MAX_CONFIG_MAP_SIZE))
    return errs


def validate_config_map_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_config_map(new)
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        for field in ("data", "binaryData"):
            if (new.get(field) or {}) != (old.get(field) or {}):
                errs.append(forbidden(field, "field is immutable when `immutable` is set"))
    return errs


def _endpoint_port_errors(port: dict[str, Any], where: str, names: set[str], *, optional: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    name = _as_str(port.get("name"))
    if name:
        errs.extend(invalid(f"{where}.name", name, msg) for msg in is_dns1123_label(name))
    if name in names:
        errs.append(duplicate(f"{where}.name", name))
    names.add(name)
    number = port.get("port")
    if number is not None or not optional:
        errs.extend(invalid(f"{where}.port", number, msg) for msg in is_valid_port_num(number))
    errs += _protocol_errors(f"{where}.protocol", port.get("protocol"))
    return errs


def validate_endpoints(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    for s, subset in enumerate(_list(obj.get("subsets"))):
        subset = _dict(subset)
        for group in ("addresses", "notReadyAddresses"):
            for a, address in enumerate(_list(subset.get(group))):
                ip = _dict(address).get("ip")
                errs += _ip_errors(f"subsets[{s}].{group}[{a}].ip", ip)
        names: set[str] = set()
        ports = _list(subset.get("ports"))
        for p, port in enumerate(ports):
            port = _dict(port)
            where = f"subsets[{s}].ports[{p}]"
            if len(ports) > 1 and not port.get("name"):
                errs.append(required(f"{where}.name"))
            errs += _endpoint_port_errors(port, where, names, optional=False)
    return errs


ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_SLICE_ENDPOINTS = 1000
MAX_SLICE_ADDRESSES = 100
MAX_SLICE_PORTS = 20000


def validate_endpoint_slice(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    address_type = obj.get("addressType")
    if not address_type:
        errs.append(required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        errs.append(not_supported("addressType", address_type, ADDRESS_TYPES))
    endpoints = _list(obj.get("endpoints"))
    if len(endpoints) > MAX_SLICE_ENDPOINTS:
        errs.append(too_many("endpoints", len(endpoints), MAX_SLICE_ENDPOINTS))
    for e, endpoint in enumerate(endpoints):
        endpoint = _dict(endpoint)
        where = f"endpoints[{e}].addresses"
        addresses = _list(endpoint.get("addresses"))
        if not addresses:
            errs.append(required(where, "must contain at least 1 address"))
        elif len(addresses) > MAX_SLICE_ADDRESSES:
            errs.append(too_many(where, len(addresses), MAX_SLICE_ADDRESSES))
        for a, address in enumerate(addresses):
            path = f"{where}[{a}]"
            if address_type == "IPv4" and not _is_ip(address, 4):
                errs.append(invalid(path, address, "must be a valid IPv4 address"))
            elif address_type == "IPv6" and not _is_ip(address, 6):
                errs.append(invalid(path, address, "must be a valid IPv6 address"))
            elif address_type == "FQDN":
                errs.extend(invalid(path, address, msg) for msg in is_dns1123_subdomain(_as_str(address)))
        node_name = _as_str(endpoint.get("nodeName"))
        if node_name:
            errs.extend(invalid(f"endpoints[{e}].nodeName", node_name, msg) for msg in is_dns1123_subdomain(node_name))
        hostname = _as_str(endpoint.get("hostname"))
        if hostname:
            errs.extend(invalid(f"endpoints[{e}].hostname", hostname, msg) for msg in is_dns1123_label(hostname))
    ports = _list(obj.get("ports"))
    if len(ports) > MAX_SLICE_PORTS:
        errs.append(too_many("ports", len(ports), MAX_SLICE_PORTS))
    names: set[str] = set()
    for p, port in enumerate(ports):
        errs += _endpoint_port_errors(_dict(port), f"ports[{p}]", names, optional=True)
    return errs


def validate_endpoint_slice_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_endpoint_slice(new)
    if new.get("addressType") != old.get("addressType"):
        errs.append(immutable("addressType", new.get("addressType")))
    return errs


def validate_lease(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    spec = _dict(obj.get("spec"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and not (isinstance(duration, int) and duration > 0):
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    errs += nonnegative("spec.leaseTransitions", spec.get("leaseTransitions"))
    return errs


def _names_only(check: NameCheck) -> Callable[[dict[str, Any]], list[FieldError]]:
    def validate_meta(obj: dict[str, Any]) -> list[FieldError]:
        return validate_object_meta(obj, check)

    return validate_meta


CREATE: dict[str, Callable[[dict[str, Any]], list[FieldError]]] = {
    "Pod": validate_pod,
    "Service": validate_service,
    "Deployment": validate_deployment,
    "ReplicaSet": validate_replica_set,
    "ReplicationController": validate_replication_controller,
    "Namespace": validate_namespace,
    "Node": validate_node,
    "ConfigMap": validate_config_map,
    "Endpoints": validate_endpoints,
    "EndpointSlice": validate_endpoint_slice,
    "Lease": validate_lease,
}

UPDATE: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[FieldError]]] = {
    "Pod": validate_pod_update,
    "Service": validate_service_update,
    "Deployment": validate_deployment_update,
    "ReplicaSet": validate_replica_set_update,
    "ConfigMap": validate_config_map_update,
    "EndpointSlice": validate_endpoint_slice_update,
}


# NetworkPolicy's rules have their own module, built on the helpers above (hence imported last).
from control.apiserver.validation_networking import (  # noqa: E402
    validate_network_policy,
    validate_network_policy_update,
)

CREATE["NetworkPolicy"] = validate_network_policy
UPDATE["NetworkPolicy"] = validate_network_policy_update


def validate(kind: str, obj: dict[str, Any]) -> list[FieldError]:
    """Errors of a new object of `kind` (already defaulted)."""
    return CREATE.get(kind, _names_only(is_dns1123_subdomain))(obj)


def validate_update(kind: str, obj: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """Errors of an updated object, including changes to what may not change."""
    check = UPDATE.get(kind)
    if check is not None:
        return check(obj, old)
    return validate(kind, obj)
