"""Type checking of request bodies against the built-in types (schema.py), as Go's JSON decoding does
it for kube-apiserver: a value of the wrong JSON type is a 400 with upstream's wording, before any
defaulting or validation sees the object. null is accepted anywhere (Go decodes it as the zero value)."""

from __future__ import annotations

from typing import Any

from control.apiserver.schema import KINDS, TYPES, field_type

_GO_NAMES = {"string": "string", "integer": "int32", "number": "float64", "boolean": "bool", "IntOrString":
             "intstr.IntOrString", "Quantity": "resource.Quantity", "Time": "v1.Time", "MicroTime": "v1.MicroTime"}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind == "object":
        return True
    if kind == "string" or kind in ("Time", "MicroTime"):
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("IntOrString", "Quantity"):
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    return True


def _walk(type_name: str, value: Any, path: str) -> str | None:
    if not isinstance(value, dict):
        return f"cannot unmarshal {_json_kind(value)} into Go struct field {path or 'object'} of type " \
               f"{type_name.rsplit('.', 1)[-1]}"
    table = TYPES[type_name]
    package = type_name.rsplit(".", 1)[0]
    for key, item in value.items():
        spec = table.get(key)
        if spec is None or item is None:
            continue  # unknown fields are the strict-decoding check's business
        where = f"{path}.{key}" if path else key
        ftype = field_type(spec, package)
        items: list[tuple[str, Any]]
        if ftype.container == "array":
            if not isinstance(item, list):
                return f"cannot unmarshal {_json_kind(item)} into Go struct field {where} of type []" \
                       f"{_GO_NAMES.get(ftype.item, ftype.item.rsplit('.', 1)[-1])}"
            items = [(f"{where}[{i}]", element) for i, element in enumerate(item)]
        elif ftype.container == "map":
            if not isinstance(item, dict):
                return f"cannot unmarshal {_json_kind(item)} into Go struct field {where} of type map[string]" \
                       f"{_GO_NAMES.get(ftype.item, ftype.item.rsplit('.', 1)[-1])}"
            items = [(f"{where}[{k}]", element) for k, element in item.items()]
        else:
            items = [(where, item)]
        for at, element in items:
            if element is None:
                continue
            if ftype.is_scalar:
                if not _scalar_ok(ftype.item, element):
                    return f"cannot unmarshal {_json_kind(element)} into Go struct field {at} of type " \
                           f"{_GO_NAMES.get(ftype.item, ftype.item)}"
            else:
                problem = _walk(ftype.item, element, at)
                if problem:
                    return problem
    return None


def type_error(kind: str, obj: dict[str, Any]) -> str | None:
    """The first wrong-typed value in obj, in Go's words, or None. Kinds not in the schema pass."""
    known = KINDS.get(kind)
    if known is None:
        return None
    problem = _walk(known.type_name, obj, "")
    if problem is None:
        return None
    version = f"{known.group}/{known.version}" if known.group else known.version
    return f'{kind} in version "{version}" cannot be handled as a {kind}: json: {problem}'
