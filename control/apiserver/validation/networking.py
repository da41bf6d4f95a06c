"""Validation of networking.k8s.io/v1 NetworkPolicy, in upstream's words, on defaulted JSON objects.

    validate_network_policy(np)  ->  [FieldError("FieldValueInvalid", "spec.ingress[0].from[0].ipBlock.except[0]",
                                      'Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`')]

Rules and messages follow pkg/apis/networking/validation/validation.go (ValidateNetworkPolicy,
ValidateNetworkPolicyUpdate), with k8s.io/apimachinery's ValidateLabelSelector for the selectors and
IsValidCIDRForLegacyField for ipBlock CIDRs (StrictIPCIDRValidation off, as it is by default).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from control.api.validators import is_dns1123_subdomain, is_label_value, is_valid_port_name, is_valid_port_num
from control.apiserver.validation.field import (
    FieldError,
    _dict,
    _list,
    forbidden,
    go_value,
    invalid,
    not_supported,
    required,
)
from control.apiserver.validation.names import validate_label_selector, validate_object_meta

__all__ = ["validate_network_policy", "validate_network_policy_update"]

PROTOCOLS = ("TCP", "UDP", "SCTP")  # upstream's order in the NotSupported message
POLICY_TYPES = ("Ingress", "Egress")
_CIDR_EXAMPLE = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def _selector(selector: Any, path: str, allow_invalid_values: bool) -> list[FieldError]:
    """ValidateLabelSelector: names.py's rules for labels, operators and keys, plus each In/NotIn value's
    label-value syntax unless the old object already had bad ones (AllowInvalidLabelValueInSelector)."""
    if selector is None:
        return []
    errs = validate_label_selector(selector, path)
    if not allow_invalid_values:
        for i, req in enumerate(_list(_dict(selector).get("matchExpressions"))):
            for j, value in enumerate(_list(_dict(req).get("values"))):
                text = value if isinstance(value, str) else ""
                errs.extend(invalid(f"{path}.matchExpressions[{i}].values[{j}]", value, msg)
                            for msg in is_label_value(text))
    return errs


def _port(port: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    number, end = port.get("port"), port.get("endPort")
    if number is None:
        if end is not None:
            errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    elif isinstance(number, int) and not isinstance(number, bool):
        errs.extend(invalid(f"{path}.port", number, msg) for msg in is_valid_port_num(number))
        if end is not None:
            if isinstance(end, int) and end < number:
                errs.append(invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
            errs.extend(invalid(f"{path}.endPort", end, msg) for msg in is_valid_port_num(end))
    else:
        if end is not None:
            errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
        name = number if isinstance(number, str) else ""
        errs.extend(invalid(f"{path}.port", number, msg) for msg in is_valid_port_name(name))
    return errs


def _parse_cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network of a CIDR as Go's ParseCIDR reads it: host bits may be set (they are masked off)."""
    if not isinstance(value, str) or not value.rpartition("/")[2].isdigit():
        return None  # Go takes only a prefix length after the slash, never a netmask
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _ip_block(block: dict[str, Any], path: str, allowed_cidrs: frozenset[str]) -> list[FieldError]:
    cidr = block.get("cidr")
    if not cidr:
        return [required(f"{path}.cidr")]
    # A CIDR the old object already held stays acceptable on update (upstream's AllowCIDRsEvenIfInvalid).
    network = _parse_cidr(cidr)
    if network is None:
        return [] if cidr in allowed_cidrs else [invalid(f"{path}.cidr", cidr, _CIDR_EXAMPLE)]
    errs: list[FieldError] = []
    for i, text in enumerate(_list(block.get("except"))):
        where = f"{path}.except[{i}]"
        excluded = _parse_cidr(text)
        if excluded is None:
            if text not in allowed_cidrs:
                errs.append(invalid(where, text, _CIDR_EXAMPLE))
            continue
        # Strictly inside: same family, within cidr, and a longer prefix.
        inside = excluded.version == network.version and excluded.network_address in network
        if not inside or excluded.prefixlen <= network.prefixlen:
            errs.append(invalid(where, text, "must be a strict subset of `cidr`"))
    return errs


def _peer(peer: dict[str, Any], path: str, allow_invalid_values: bool,
          allowed_cidrs: frozenset[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for field in ("podSelector", "namespaceSelector"):
        if peer.get(field) is not None:
            count += 1
            errs += _selector(peer[field], f"{path}.{field}", allow_invalid_values)
    block = peer.get("ipBlock")
    if block is not None:
        count += 1
        errs += _ip_block(_dict(block), f"{path}.ipBlock", allowed_cidrs)
    if count == 0:
        errs.append(required(path, "must specify a peer"))
    elif count > 1 and block is not None:
        errs.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def _spec(spec: dict[str, Any], allow_invalid_values: bool, allowed_cidrs: frozenset[str]) -> list[FieldError]:
    errs = _selector(_dict(spec.get("podSelector")), "spec.podSelector", allow_invalid_values)
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_list(spec.get(direction))):
            rule = _dict(rule)
            where = f"spec.{direction}[{i}]"
            for j, port in enumerate(_list(rule.get("ports"))):
                errs += _port(_dict(port), f"{where}.ports[{j}]")
            for j, peer in enumerate(_list(rule.get(peers))):
                errs += _peer(_dict(peer), f"{where}.{peers}[{j}]", allow_invalid_values, allowed_cidrs)
    types = _list(spec.get("policyTypes"))
    if len(types) > len(POLICY_TYPES):
        # Upstream passes the Go slice itself, which prints with its element type's name.
        shown = "[]networking.PolicyType{" + ", ".join(go_value(t) for t in types) + "}"
        errs.append(FieldError("FieldValueInvalid", "spec.policyTypes",
                               f"Invalid value: {shown}: may not specify more than two policyTypes"))
        return errs
    errs.extend(not_supported(f"spec.policyTypes[{i}]", value, POLICY_TYPES)
                for i, value in enumerate(types) if value not in POLICY_TYPES)
    return errs


def validate_network_policy(obj: dict[str, Any]) -> list[FieldError]:
    """Errors of a new NetworkPolicy (already defaulted)."""
    return validate_object_meta(obj, is_dns1123_subdomain) + _spec(_dict(obj.get("spec")), False, frozenset())


def _cidrs_of(spec: dict[str, Any]) -> frozenset[str]:
    found: list[str] = []
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for rule in _list(spec.get(direction)):
            for peer in _list(_dict(rule).get(peers)):
                block = _dict(_dict(peer).get("ipBlock"))
                found += [c for c in (block.get("cidr"), *_list(block.get("except"))) if isinstance(c, str)]
    return frozenset(found)


def validate_network_policy_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """Errors of an updated NetworkPolicy: the create rules, except that what the old object already held
    (bad selector values in spec.podSelector, bad CIDRs anywhere) is let through, so old objects stay editable."""
    old_spec = _dict(old.get("spec"))
    old_selector_bad = bool(_selector(_dict(old_spec.get("podSelector")), "spec.podSelector", False))
    return validate_object_meta(new, is_dns1123_subdomain) + _spec(_dict(new.get("spec")), old_selector_bad,
                                                                   _cidrs_of(old_spec))
