"""Validation of the core (v1) kinds, in upstream's words (pkg/apis/core/validation/validation.go).

    validate_service(svc)  -> [FieldError("FieldValueInvalid", "spec.ports[0].port",
                               "Invalid value: 70000: must be between 1 and 65535, inclusive")]

Pods, services, namespaces, nodes, config maps, endpoints and replication controllers, with the pieces
other groups build on as upstream's do on core's: pod templates (apps), endpoint ports (discovery),
non-negative fields.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Callable
from typing import Any

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
from control.apiserver.validation.field import (
    FieldError,
    _as_str,
    _dict,
    _int,
    _list,
    duplicate,
    forbidden,
    immutable,
    invalid,
    not_found,
    not_supported,
    required,
    too_long,
)
from control.apiserver.validation.names import _ip_errors, validate_annotations, validate_labels, validate_object_meta


def nonnegative(path: str, value: Any) -> list[FieldError]:
    number = _int(value)
    if number is not None and number < 0:
        return [invalid(path, number, "must be greater than or equal to 0")]
    return []


# -- pods (pkg/apis/core/validation/validation.go) -------------------------------------------------------------

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


# -- services --------------------------------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
TRAFFIC_POLICIES = ("Cluster", "Local")
# spec.trafficDistribution: what the EndpointSlice controller turns into zone hints (PreferClose, GA in 1.33).
TRAFFIC_DISTRIBUTIONS = ("PreferClose",)
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
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in TRAFFIC_DISTRIBUTIONS:
        errs.append(not_supported("spec.trafficDistribution", distribution, TRAFFIC_DISTRIBUTIONS))
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


# -- pod templates and replication controllers -----------------------------------------------------------------


def no_ephemeral_containers(spec: dict[str, Any], path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec's rule for every pod template (workloads, Jobs, CronJobs' job templates):
    ephemeral containers are added to a running pod through its subresource, never stamped out of a template."""
    if _list(spec.get("ephemeralContainers")):
        return [forbidden(f"{path}.ephemeralContainers", "ephemeral containers not allowed in pod template")]
    return []


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
    errs += no_ephemeral_containers(spec, f"{path}.spec")
    if spec.get("restartPolicy") and spec.get("restartPolicy") != "Always":
        errs.append(not_supported(f"{path}.spec.restartPolicy", spec.get("restartPolicy"), ("Always",)))
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(invalid(f"{path}.spec.activeDeadlineSeconds", spec["activeDeadlineSeconds"],
                            "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def validate_pod_template(obj: dict[str, Any]) -> list[FieldError]:
    """ValidatePodTemplate: a pod's name, and its template as every pod template is checked (no selector to
    match, and any restartPolicy: a PodTemplate is a stored template, not a controller's)."""
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    template = _dict(obj.get("template"))
    meta = _dict(template.get("metadata"))
    errs += validate_labels(meta.get("labels"), "template.metadata.labels")
    errs += validate_annotations(meta.get("annotations"), "template.metadata.annotations")
    spec = _dict(template.get("spec"))
    errs += validate_pod_spec(spec, "template.spec")
    errs += no_ephemeral_containers(spec, "template.spec")
    return errs


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


# -- namespaces, nodes, config maps, endpoints -----------------------------------------------------------------


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


# -- secrets (ValidateSecret, ValidateSecretUpdate) ----------------------------------------------------------

MAX_SECRET_SIZE = 1024 * 1024
SERVICE_ACCOUNT_NAME_KEY = "kubernetes.io/service-account.name"
# The keys each well-known type requires (core.DockerConfigJSONKey, TLSCertKey, ...).
_DOCKER_CONFIG_KEYS = {"kubernetes.io/dockercfg": ".dockercfg", "kubernetes.io/dockerconfigjson": ".dockerconfigjson"}


def _decoded(value: Any) -> bytes:
    """A data value's bytes (decoding has already refused bad base64)."""
    try:
        return base64.b64decode(value) if isinstance(value, str) else b""
    except ValueError:
        return b""


def _go_json_error(raw: bytes) -> str | None:
    """Why Go's json.Unmarshal into a map[string]interface{} fails on RAW, in its words (the common cases)."""
    text = raw.decode(errors="replace")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return "unexpected end of JSON input"
        char = text[exc.pos]
        where = "looking for beginning of value" if exc.pos == len(text) - len(text.lstrip()) else \
            "after top-level value" if exc.msg == "Extra data" else "looking for beginning of object key string"
        return f"invalid character {char!r} {where}"
    if not isinstance(value, dict) and value is not None:
        kind = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
        return f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
    return None


def validate_secret(obj: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    data = _dict(obj.get("data"))
    size = 0
    for key, value in data.items():
        errs.extend(invalid(f"data[{key}]", key, msg) for msg in is_config_map_key(key))
        size += len(_decoded(value))
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    secret_type = obj.get("type") or "Opaque"
    if secret_type == "kubernetes.io/service-account-token":
        # Only the account's name: its uid and token are a controller's to add.
        if not _dict(_dict(obj.get("metadata")).get("annotations")).get(SERVICE_ACCOUNT_NAME_KEY):
            errs.append(required(f"metadata.annotations[{SERVICE_ACCOUNT_NAME_KEY}]"))
    elif secret_type in _DOCKER_CONFIG_KEYS:
        key = _DOCKER_CONFIG_KEYS[secret_type]
        if key not in data:
            errs.append(required(f"data[{key}]"))
        else:
            problem = _go_json_error(_decoded(data[key]))
            if problem:
                errs.append(invalid(f"data[{key}]", "<secret contents redacted>", problem))
    elif secret_type == "kubernetes.io/basic-auth":
        # Either may be empty, but one of them must be there.
        if "username" not in data and "password" not in data:
            errs += [required("data[username]"), required("data[password]")]
    elif secret_type == "kubernetes.io/ssh-auth":
        if not _decoded(data.get("ssh-privatekey")):
            errs.append(required("data[ssh-privatekey]"))
    elif secret_type == "kubernetes.io/tls":
        errs += [required(f"data[{key}]") for key in ("tls.crt", "tls.key") if key not in data]
    return errs


def validate_secret_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    if (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
        errs.append(immutable("type", new.get("type")))
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        if (new.get("data") or {}) != (old.get("data") or {}):
            errs.append(forbidden("data", "field is immutable when `immutable` is set"))
    return errs + validate_secret(new)


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
