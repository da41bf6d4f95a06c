"""Validation of policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy and BaselineAdminNetworkPolicy.

    validate_admin_network_policy(anp)  ->  [FieldError("FieldValueInvalid", "spec.priority",
                                             "Invalid value: 1001: spec.priority in body should be less than
                                              or equal to 1000")]

Upstream serves these kinds from CRDs (sig-network's network-policy-api, config/crd/standard, v0.1.x),
so its checks are the CRDs' OpenAPI schema and CEL rules, reported as kube-apiserver reports a custom
resource's: `Required value`, `Unsupported value: ...: supported values: ...`, `Too many: N: must have
at most M items`, and for the other keywords the schema validator's own sentence
(`<path> in body should be ...`). Two departures, both kinder than upstream and never looser:
- The BANP's CEL rule `self.metadata.name == 'default'` is reported on metadata.name (upstream puts it
  on the object's root, where it names no field).
- Label selectors get Kubernetes' own selector checks (operators, keys, values), which the CRD schema
  leaves out: a selector the agent could not parse would otherwise match nothing without a word.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from control.api.validators import is_dns1123_subdomain
from control.apiserver.validation.field import FieldError, _dict, _list, invalid, not_supported, required, too_many
from control.apiserver.validation.names import validate_label_selector, validate_object_meta

__all__ = ["validate_admin_network_policy", "validate_baseline_admin_network_policy"]

PROTOCOLS = ("TCP", "UDP", "SCTP")
ANP_ACTIONS = ("Allow", "Deny", "Pass")
BANP_ACTIONS = ("Allow", "Deny")
BANP_NAME = "default"
MAX_RULES = 100  # per direction, and peers and ports per rule
MAX_NETWORKS = 25
MAX_RULE_NAME = 100
MAX_CIDR = 43


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(value: Any, path: str, low: int, high: int) -> list[FieldError]:
    if value is None:
        return [required(path)]
    if not _is_int(value):
        return [invalid(path, value, f"{path} in body must be of type integer")]
    if value < low:
        return [invalid(path, value, f"{path} in body should be greater than or equal to {low}")]
    if value > high:
        return [invalid(path, value, f"{path} in body should be less than or equal to {high}")]
    return []


def _one_of(value: Any, path: str, fields: tuple[str, ...]) -> list[FieldError]:
    """minProperties: 1, maxProperties: 1 over FIELDS (unknown fields are refused by strict decoding)."""
    if not isinstance(value, dict):
        return [required(path)] if value is None else [invalid(path, value, f"{path} in body must be of type object")]
    present = [f for f in fields if value.get(f) is not None]
    if not present:
        return [invalid(path, value, f"{path} in body should have at least 1 properties")]
    if len(present) > 1:
        return [too_many(path, len(present), 1)]
    return []


def _list_size(value: Any, path: str, low: int, high: int) -> list[FieldError]:
    items = _list(value)
    if len(items) < low:
        return [invalid(path, value, f"{path} in body should have at least {low} items")]
    if len(items) > high:
        return [too_many(path, len(items), high)]
    return []


def _selector(value: Any, path: str) -> list[FieldError]:
    if value is None:
        return [required(path)]
    return validate_label_selector(value, path)


def _namespaced_pod(value: Any, path: str) -> list[FieldError]:
    value = _dict(value)
    return _selector(value.get("namespaceSelector"), f"{path}.namespaceSelector") + _selector(
        value.get("podSelector"), f"{path}.podSelector")


def _subject(value: Any, path: str) -> list[FieldError]:
    errs = _one_of(value, path, ("namespaces", "pods"))
    value = _dict(value)
    if value.get("namespaces") is not None:
        errs += _selector(value["namespaces"], f"{path}.namespaces")
    if value.get("pods") is not None:
        errs += _namespaced_pod(value["pods"], f"{path}.pods")
    return errs


def _networks(value: Any, path: str) -> list[FieldError]:
    errs = _list_size(value, path, 1, MAX_NETWORKS)
    seen: set[str] = set()
    for i, cidr in enumerate(_list(value)):
        where = f"{path}[{i}]"
        if not isinstance(cidr, str):
            errs.append(invalid(where, cidr, f"{where} in body must be of type string"))
            continue
        if len(cidr) > MAX_CIDR:
            errs.append(invalid(where, cidr, f"{where} in body should be at most {MAX_CIDR} chars long"))
        try:
            ipaddress.ip_network(cidr, strict=False)
            valid = "/" in cidr  # CEL's isCIDR wants a prefix length
        except ValueError:
            valid = False
        if not valid:
            errs.append(invalid(where, cidr, "Invalid CIDR format provided"))
        if cidr in seen:  # x-kubernetes-list-type: set
            errs.append(FieldError("FieldValueDuplicate", where, f'Duplicate value: "{cidr}"'))
        seen.add(cidr)
    return errs


def _peer(value: Any, path: str, egress: bool) -> list[FieldError]:
    fields = ("namespaces", "pods", "networks") if egress else ("namespaces", "pods")
    errs = _one_of(value, path, fields)
    value = _dict(value)
    if value.get("namespaces") is not None:
        errs += _selector(value["namespaces"], f"{path}.namespaces")
    if value.get("pods") is not None:
        errs += _namespaced_pod(value["pods"], f"{path}.pods")
    if egress and value.get("networks") is not None:
        errs += _networks(value["networks"], f"{path}.networks")
    return errs


def _protocol(value: dict[str, Any], path: str) -> list[FieldError]:
    protocol = value.get("protocol")  # defaulted to TCP
    return [] if protocol in PROTOCOLS else [not_supported(f"{path}.protocol", protocol, PROTOCOLS)]


def _port(value: Any, path: str) -> list[FieldError]:
    errs = _one_of(value, path, ("portNumber", "namedPort", "portRange"))
    value = _dict(value)
    if value.get("portNumber") is not None:
        number = _dict(value["portNumber"])
        errs += _protocol(number, f"{path}.portNumber") + _integer(number.get("port"), f"{path}.portNumber.port",
                                                                     1, 65535)
    if value.get("namedPort") is not None and not isinstance(value["namedPort"], str):
        errs.append(invalid(f"{path}.namedPort", value["namedPort"],
                            f"{path}.namedPort in body must be of type string"))
    if value.get("portRange") is not None:
        where = f"{path}.portRange"
        span = _dict(value["portRange"])
        errs += _protocol(span, where)
        start, end = span.get("start"), span.get("end")
        ends = _integer(start, f"{where}.start", 1, 65535) + _integer(end, f"{where}.end", 1, 65535)
        errs += ends
        if not ends and isinstance(start, int) and isinstance(end, int) and start >= end:
            # The API's documented contract ("Start value must be less than End"); the CRD has no rule for it,
            # but a range that is empty or backwards can only be a mistake.
            errs.append(invalid(f"{where}.end", end, f"must be greater than start ({start})"))
    return errs


def _rules(value: Any, path: str, actions: tuple[str, ...], egress: bool) -> list[FieldError]:
    if value is None:
        return []
    errs = _list_size(value, path, 0, MAX_RULES)
    peers_name = "to" if egress else "from"
    for i, rule in enumerate(_list(value)):
        where = f"{path}[{i}]"
        rule = _dict(rule)
        name = rule.get("name")
        if isinstance(name, str) and len(name) > MAX_RULE_NAME:
            errs.append(invalid(f"{where}.name", name, f"{where}.name in body should be at most {MAX_RULE_NAME} "
                                                       "chars long"))
        action = rule.get("action")
        if action is None:
            errs.append(required(f"{where}.action"))
        elif action not in actions:
            errs.append(not_supported(f"{where}.action", action, actions))
        peers = rule.get(peers_name)
        if peers is None:
            errs.append(required(f"{where}.{peers_name}"))
        else:
            errs += _list_size(peers, f"{where}.{peers_name}", 1, MAX_RULES)
            for j, peer in enumerate(_list(peers)):
                errs += _peer(peer, f"{where}.{peers_name}[{j}]", egress)
        ports = rule.get("ports")
        if ports is not None:
            errs += _list_size(ports, f"{where}.ports", 1, MAX_RULES)
            for j, port in enumerate(_list(ports)):
                errs += _port(port, f"{where}.ports[{j}]")
    return errs


def _spec(obj: dict[str, Any], actions: tuple[str, ...]) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs = _subject(spec.get("subject"), "spec.subject")
    errs += _rules(spec.get("ingress"), "spec.ingress", actions, False)
    errs += _rules(spec.get("egress"), "spec.egress", actions, True)
    return errs


def validate_admin_network_policy(obj: dict[str, Any]) -> list[FieldError]:
    """Errors of an AdminNetworkPolicy (already defaulted)."""
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    spec = obj.get("spec")
    if isinstance(spec, dict):
        errs += _integer(spec.get("priority"), "spec.priority", 0, 1000)
    return errs + _spec(obj, ANP_ACTIONS)


def validate_baseline_admin_network_policy(obj: dict[str, Any]) -> list[FieldError]:
    """Errors of a BaselineAdminNetworkPolicy (already defaulted): it is a singleton named `default`."""
    errs = validate_object_meta(obj, is_dns1123_subdomain)
    name = _dict(obj.get("metadata")).get("name")
    if name and name != BANP_NAME:
        errs.append(invalid("metadata.name", name, 'Only one baseline admin network policy with '
                                                   'metadata.name="default" can be created in the cluster'))
    return errs + _spec(obj, BANP_ACTIONS)
