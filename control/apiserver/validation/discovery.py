"""Validation of discovery.k8s.io/v1 EndpointSlices (pkg/apis/discovery/validation/validation.go).

    validate_endpoint_slice(s)  -> [FieldError("FieldValueInvalid", "endpoints[0].addresses[0]",
                                    'Invalid value: "10.0.0.300": must be a valid IPv4 address')]
"""

from __future__ import annotations

from typing import Any

from control.api.validators import is_dns1123_label, is_dns1123_subdomain, is_label_value
from control.apiserver.validation.core import _endpoint_port_errors
from control.apiserver.validation.field import (
    FieldError,
    _as_str,
    _dict,
    _list,
    duplicate,
    immutable,
    invalid,
    not_supported,
    required,
    too_many,
)
from control.apiserver.validation.names import _is_ip, validate_object_meta

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_SLICE_ENDPOINTS = 1000
MAX_SLICE_ADDRESSES = 100
MAX_SLICE_PORTS = 20000
MAX_HINT_ZONES = 8


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
        if endpoint.get("hints") is not None:
            errs += _hints_errors(_dict(endpoint.get("hints")), f"endpoints[{e}].hints")
    ports = _list(obj.get("ports"))
    if len(ports) > MAX_SLICE_PORTS:
        errs.append(too_many("ports", len(ports), MAX_SLICE_PORTS))
    names: set[str] = set()
    for p, port in enumerate(ports):
        errs += _endpoint_port_errors(_dict(port), f"ports[{p}]", names, optional=True)
    return errs


def _hints_errors(hints: dict[str, Any], where: str) -> list[FieldError]:
    """Zone hints (validateHints): at most 8 zones, each named once, each a label value."""
    zones = _list(hints.get("forZones"))
    if len(zones) > MAX_HINT_ZONES:
        return [too_many(f"{where}.forZones", len(zones), MAX_HINT_ZONES)]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, zone in enumerate(zones):
        path, name = f"{where}.forZones[{i}].name", _as_str(_dict(zone).get("name"))
        if name in seen:
            errs.append(duplicate(path, name))
        seen.add(name)
        errs.extend(invalid(path, name, msg) for msg in is_label_value(name))
    return errs


def validate_endpoint_slice_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_endpoint_slice(new)
    if new.get("addressType") != old.get("addressType"):
        errs.append(immutable("addressType", new.get("addressType")))
    return errs
