"""Field errors as upstream words them (k8s.io/apimachinery/pkg/util/validation/field/errors.go).

    invalid("spec.ports[0].port", 70000, "must be between 1 and 65535, inclusive")
        -> FieldError("FieldValueInvalid", "spec.ports[0].port", "Invalid value: 70000: must be between ...")

Also the readers every kind's rules use on decoded JSON (`_dict`, `_list`, `_as_str`, `_int`): a field of the
wrong shape reads as empty, so one bad field yields its own error instead of a crash in the next rule. They
are private to this package; the rest of the apiserver imports only what `__init__` exports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One cause of a 422: `type` is the StatusCause reason (upstream's field.ErrorType)."""

    type: str
    field: str
    message: str


# -- field errors (field/errors.go) ----------------------------------------------------------------------------


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


# -- reading decoded JSON --------------------------------------------------------------------------------------


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
