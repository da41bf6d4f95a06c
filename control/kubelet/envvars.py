"""A container's environment, as the kubelet computes it before starting it (upstream's
makeEnvironmentVariables in pkg/kubelet/kubelet_pods.go).

    env, warnings = await container_env(pod, container, fetch=..., pod_ip=..., host_ip=..., allocatable=...)

Order and precedence follow upstream: every envFrom source in turn (configMapRef / secretRef, each key
with the source's prefix; keys that are not valid variable names are skipped with a warning), then
`env` in order, a later name replacing an earlier one. `value` expands $(NAME) references to variables
defined before it or to service variables ($$ is a literal $); `valueFrom` reads a ConfigMap or
Secret key, a pod field (fieldRef) or a container resource (resourceFieldRef). Under all of them, the
service variables (FOO_SERVICE_HOST, FOO_PORT, ...) of the pod's namespace's Services (unless
enableServiceLinks is false) and of default/kubernetes, as upstream's kubelet sets them.

A missing ConfigMap, Secret or key that is not `optional` is a ContainerError with reason
CreateContainerConfigError and upstream's message (`configmap "x" not found`, `couldn't find key k in
ConfigMap ns/x`): the container is not started, and the kubelet tries again later.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from control.api.quantity import QuantityError, parse_quantity
from control.api.validators import is_env_var_name
from control.kubelet.workloads import ContainerError

__all__ = ["Fetch", "container_env", "expand", "expand_command", "service_env"]

CONFIG_ERROR = "CreateContainerConfigError"
# Services whose variables every pod gets, from the default namespace, enableServiceLinks or not.
MASTER_SERVICES = ("kubernetes",)

Fetch = Callable[[str, str], Awaitable["dict[str, Any] | None"]]
"""fetch(plural, name) -> the pod's namespace's "configmaps" or "secrets" object NAME, None if there is none."""

_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Upstream's expansion (third_party/forked/golang/expansion): $(NAME) becomes NAME's value when it is
    defined and stays as written when not; $$ escapes a $."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(replace, text)


def expand_command(container: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """A copy of CONTAINER with $(NAME) in command and args expanded from ENV (ExpandContainerCommandAndArgs)."""
    expanded = dict(container)
    for field in ("command", "args"):
        if isinstance(container.get(field), list):
            expanded[field] = [expand(str(arg), env) for arg in container[field]]
    return expanded


def _variable_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _service_variables(svc: dict[str, Any]) -> dict[str, str]:
    """envvars.FromServices for one Service: NAME_SERVICE_HOST, NAME_SERVICE_PORT[_PORTNAME], and the
    Docker link variables (NAME_PORT, NAME_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR])."""
    spec = svc.get("spec") or {}
    ip, ports = str(spec.get("clusterIP")), [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    prefix = _variable_name(str((svc.get("metadata") or {}).get("name", "")))
    found = {f"{prefix}_SERVICE_HOST": ip}
    if not ports:
        return found
    found[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
    for port in ports:
        if port.get("name"):
            found[f"{prefix}_SERVICE_PORT_{_variable_name(str(port['name']))}"] = str(port.get("port"))
    for i, port in enumerate(ports):
        protocol = str(port.get("protocol") or "TCP")
        url = f"{protocol.lower()}://{ip}:{port.get('port')}"
        if i == 0:
            found[f"{prefix}_PORT"] = url
        port_prefix = f"{prefix}_PORT_{port.get('port')}_{protocol.upper()}"
        found.update({port_prefix: url, f"{port_prefix}_PROTO": protocol.lower(),
                      f"{port_prefix}_PORT": str(port.get("port")), f"{port_prefix}_ADDR": ip})
    return found


def service_env(services: Iterable[dict[str, Any]], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """The variables of the Services a pod sees (getServiceEnvVarMap): those of its own namespace when
    enableServiceLinks, and always the default namespace's `kubernetes`; only Services with a cluster IP."""
    chosen: dict[str, dict[str, Any]] = {}
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        if spec.get("clusterIP") in (None, "", "None"):
            continue
        name = str(meta.get("name", ""))
        if meta.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif meta.get("namespace") == namespace and enable_service_links:
            chosen[name] = svc
    found: dict[str, str] = {}
    for svc in chosen.values():
        found.update(_service_variables(svc))
    return found


def _secret_value(encoded: Any) -> str:
    # Values are bytes; the process gets them unchanged (surrogateescape round-trips non-UTF-8 bytes).
    return os.fsdecode(base64.b64decode(encoded)) if isinstance(encoded, str) else ""


def _values(plural: str, obj: dict[str, Any]) -> dict[str, str]:
    if plural == "secrets":
        return {k: _secret_value(v) for k, v in (obj.get("data") or {}).items()}
    # A ConfigMap's binaryData is not offered to the environment (upstream reads data only).
    return {k: str(v) for k, v in (obj.get("data") or {}).items()}


_KIND = {"configmaps": ("configmap", "ConfigMap"), "secrets": ("secret", "Secret")}


def _formatted_map(values: dict[str, Any]) -> str:
    """fieldpath.FormatMap: sorted key="value" lines (Go's %q quoting)."""
    def quoted(value: Any) -> str:
        text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{text}"'

    return "\n".join(f"{key}={quoted(values[key])}" for key in sorted(values))


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def pod_field(pod: dict[str, Any], path: str, *, pod_ip: str, host_ip: str) -> str:
    """The value of a fieldRef (podFieldSelectorRuntimeValue and fieldpath.ExtractFieldPathAsString)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip, "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        return _formatted_map(meta.get(path.split(".")[1]) or {})
    subscript = _SUBSCRIPT.match(path)
    if subscript:
        return str((meta.get(subscript.group(1)) or {}).get(subscript.group(2), ""))
    raise ContainerError(CONFIG_ERROR, f"unsupported fieldPath: {path}")


def resource_field(pod: dict[str, Any], container: dict[str, Any], ref: dict[str, Any],
                   allocatable: dict[str, str]) -> str:
    """The value of a resourceFieldRef: a limit (the node's allocatable when unset) or a request, in
    units of the divisor, rounded up (ExtractResourceValueByContainerNameAndNodeAllocatable)."""
    name = ref.get("containerName") or container.get("name")
    target = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == name), None)
    if target is None:
        raise ContainerError(CONFIG_ERROR, f"container {name} not found")
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or resource not in ("cpu", "memory", "ephemeral-storage"):
        raise ContainerError(CONFIG_ERROR, f"unsupported container resource : {ref.get('resource')}")
    resources = target.get("resources") or {}
    raw = (resources.get(kind) or {}).get(resource)
    if raw is None and kind == "limits":
        raw = allocatable.get(resource)
    try:
        amount = parse_quantity(raw if raw is not None else 0).value
        divisor = parse_quantity(ref.get("divisor") or 1).value
    except QuantityError as exc:
        raise ContainerError(CONFIG_ERROR, f"resourceFieldRef {ref.get('resource')}: {exc}") from None
    if divisor == 0:
        divisor = parse_quantity(1).value
    if resource == "cpu":
        # CPU goes through milli-units, as convertResourceCPUToString does: at least "1" for any limit.
        return str(math.ceil(math.ceil(amount * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(math.ceil(amount) / math.ceil(divisor)))


async def container_env(pod: dict[str, Any], container: dict[str, Any], *, fetch: Fetch, pod_ip: str,
                        host_ip: str, allocatable: dict[str, str], services: Iterable[dict[str, Any]] = (),
                        ) -> tuple[dict[str, str], list[str]]:
    """CONTAINER's environment and the warnings to record as events (skipped envFrom keys). SERVICES are
    the cluster's Services, for the service variables, which anything the container sets overrides.
    Raises ContainerError(CreateContainerConfigError) for what a non-optional reference cannot find."""
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
    from_services = service_env(services, namespace, links)
    fetched: dict[tuple[str, str], dict[str, Any] | None] = {}

    async def source(plural: str, name: str, optional: bool) -> dict[str, Any] | None:
        if (plural, name) not in fetched:
            fetched[(plural, name)] = await fetch(plural, name)
        obj = fetched[(plural, name)]
        if obj is None and not optional:
            raise ContainerError(CONFIG_ERROR, f'{_KIND[plural][0]} "{name}" not found')
        return obj

    env: dict[str, str] = {}
    warnings: list[str] = []
    for entry in container.get("envFrom") or []:
        for field, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = entry.get(field)
            if not isinstance(ref, dict):
                continue
            name = str(ref.get("name", ""))
            obj = await source(plural, name, ref.get("optional") is True)
            if obj is None:
                continue
            invalid = []
            for key, value in _values(plural, obj).items():
                full = f"{entry.get('prefix') or ''}{key}"
                if is_env_var_name(full):
                    invalid.append(full)
                    continue
                env[full] = value
            if invalid:
                word = "configMap" if plural == "configmaps" else "secret"
                warnings.append(f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {word} "
                                f"{namespace}/{name} were skipped since they are considered invalid environment "
                                "variable names.")
    for var in container.get("env") or []:
        name = var.get("name")
        if not name:
            continue
        value_from = var.get("valueFrom")
        if not isinstance(value_from, dict):
            env[name] = expand(str(var.get("value", "")), {**from_services, **env})
            continue
        if isinstance(value_from.get("fieldRef"), dict):
            env[name] = pod_field(pod, str(value_from["fieldRef"].get("fieldPath", "")), pod_ip=pod_ip,
                                  host_ip=host_ip)
        elif isinstance(value_from.get("resourceFieldRef"), dict):
            env[name] = resource_field(pod, container, value_from["resourceFieldRef"], allocatable)
        else:
            for field, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
                ref = value_from.get(field)
                if not isinstance(ref, dict):
                    continue
                optional = ref.get("optional") is True
                obj = await source(plural, str(ref.get("name", "")), optional)
                if obj is None:
                    break
                values, key = _values(plural, obj), str(ref.get("key", ""))
                if key in values:
                    env[name] = values[key]
                elif not optional:
                    raise ContainerError(CONFIG_ERROR, f"couldn't find key {key} in {_KIND[plural][1]} "
                                         f"{namespace}/{ref.get('name', '')}")
                break
    return {**from_services, **env}, warnings
