"""Structural schemas (apiextensions.k8s.io/v1 openAPIV3Schema) applied to custom resources, as upstream's
apiextensions-apiserver does, in its words:

    problems(schema)              -> what makes a schema non-structural (the CRD is refused with them)
    prune(schema, obj)            -> removes the fields the schema does not specify; returns their paths
    apply_defaults(schema, obj)   -> fills in `default:` values (and drops nulls a field may not have)
    validate(schema, obj)         -> FieldErrors with upstream's paths and messages (422 causes)

The Kubernetes extensions are honoured: x-kubernetes-preserve-unknown-fields (no pruning below, any value
where no type is given), x-kubernetes-int-or-string, x-kubernetes-embedded-resource (apiVersion, kind and
metadata of an object inside the object) and x-kubernetes-list-type set / map (uniqueness).

Why not a JSON Schema library: the structural subset is small, and what matters here is upstream's field
paths and messages (kube-openapi's validate package, converted by apiextensions' ConvertErrors), which a
general library words differently.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from control.apiserver.validation import FieldError, go_value

Schema = dict[str, Any]

# ObjectMeta's fields: an embedded resource's metadata (and the root's) keep only these when pruned.
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
    "managedFields"})
_TYPES = ("object", "array", "string", "integer", "number", "boolean")
_VALUE_VALIDATIONS = ("allOf", "anyOf", "oneOf", "not")
# Keys a schema node may carry (OpenAPI v3's JSONSchemaProps as upstream's v1 CRD takes them).
_ALLOWED = frozenset({
    "type", "format", "title", "description", "default", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf",
    "enum", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
    "additionalProperties", "nullable", "example", "externalDocs",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type", "x-kubernetes-validations"})


def _fe(kind: str, path: str, message: str) -> FieldError:
    return FieldError(kind, path, message)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(value: Any) -> str:
    """The JSON type of a value as kube-openapi names it in type errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _preserves(schema: Schema) -> bool:
    return schema.get("x-kubernetes-preserve-unknown-fields") is True


# -- structural check (the CRD's schema) -------------------------------------------------------------------------


def problems(schema: Any, path: str) -> list[FieldError]:
    """Why `schema` (at `path`, e.g. spec.versions[0].schema.openAPIV3Schema) is not structural, or []:
    every node has a type (unless int-or-string or preserving unknown fields), no $ref, properties and
    additionalProperties not together, arrays have items, the root is an object, metadata is restricted."""
    if not isinstance(schema, dict):
        return [_fe("FieldValueRequired", path, "Required value: schemas are required")]
    found = list(_node_problems(schema, path, root=True))
    if schema.get("type") not in ("object", None) or (schema.get("type") is None and not _preserves(schema)):
        found.append(_fe("FieldValueInvalid", _child(path, "type"),
                         f"Invalid value: {go_value(schema.get('type', ''))}: must be object at the root"))
    meta = (schema.get("properties") or {}).get("metadata")
    if isinstance(meta, dict):
        extra = sorted(set(meta) - {"type", "properties", "description"})
        if extra or set(meta.get("properties") or {}) - {"name", "generateName"}:
            found.append(_fe("FieldValueForbidden", f"{path}.properties[metadata]",
                             "Forbidden: must not specify anything other than name and generateName, but metadata "
                             "is implicitly specified"))
    return found


def _node_problems(node: Schema, path: str, *, root: bool = False, in_value_validation: bool = False
                   ) -> Iterator[FieldError]:
    for key in sorted(set(node) - _ALLOWED):
        if key == "$ref":
            yield _fe("FieldValueForbidden", _child(path, "$ref"), "Forbidden: $ref is not supported")
        else:
            yield _fe("FieldValueForbidden", _child(path, key), f"Forbidden: {key} is not supported")
    kind = node.get("type")
    if kind is not None and kind not in _TYPES:
        yield _fe("FieldValueNotSupported", _child(path, "type"),
                  f"Unsupported value: {go_value(kind)}: supported values: " + ", ".join(f'"{t}"' for t in _TYPES))
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    if not in_value_validation and not kind and not int_or_string and not _preserves(node) and not root:
        yield _fe("FieldValueRequired", _child(path, "type"), "Required value: must not be empty for specified "
                  "object fields")
    if node.get("x-kubernetes-preserve-unknown-fields") is False:
        yield _fe("FieldValueInvalid", _child(path, "x-kubernetes-preserve-unknown-fields"),
                  "Invalid value: false: must be true or undefined")
    if "properties" in node and "additionalProperties" in node:
        yield _fe("FieldValueForbidden", _child(path, "additionalProperties"),
                  "Forbidden: additionalProperties and properties are mutual exclusive")
    if node.get("uniqueItems") is True:
        yield _fe("FieldValueForbidden", _child(path, "uniqueItems"), "Forbidden: uniqueItems cannot be set to true "
                  "since the runtime complexity becomes quadratic")
    if kind == "array" and not isinstance(node.get("items"), dict) and not in_value_validation:
        yield _fe("FieldValueRequired", _child(path, "items"), "Required value: must be specified")
    list_type = node.get("x-kubernetes-list-type")
    if list_type is not None:
        if list_type not in ("atomic", "set", "map"):
            yield _fe("FieldValueNotSupported", _child(path, "x-kubernetes-list-type"),
                      f'Unsupported value: {go_value(list_type)}: supported values: "atomic", "set", "map"')
        elif kind != "array":
            yield _fe("FieldValueInvalid", _child(path, "x-kubernetes-list-type"),
                      f"Invalid value: {go_value(list_type)}: must only be used if type == array")
        elif list_type == "map":
            keys = node.get("x-kubernetes-list-map-keys")
            if not isinstance(keys, list) or not keys:
                yield _fe("FieldValueRequired", _child(path, "x-kubernetes-list-map-keys"),
                          "Required value: must not be empty if x-kubernetes-list-type is map")
            elif (node.get("items") or {}).get("type") != "object":
                yield _fe("FieldValueInvalid", _child(path, "items.type"), "Invalid value: "
                          f"{go_value((node.get('items') or {}).get('type', ''))}: must be object if parent array's "
                          "x-kubernetes-list-type is map")
    if node.get("x-kubernetes-embedded-resource") is True and kind != "object":
        yield _fe("FieldValueInvalid", _child(path, "type"), f"Invalid value: {go_value(kind or '')}: must be object "
                  "if x-kubernetes-embedded-resource is true")
    if "pattern" in node:
        try:
            re.compile(str(node["pattern"]))
        except re.error as exc:
            yield _fe("FieldValueInvalid", _child(path, "pattern"),
                      f"Invalid value: {go_value(node['pattern'])}: must be a valid regular expression, but isn't: "
                      f"{exc}")
    for name, sub in sorted((node.get("properties") or {}).items()):
        if isinstance(sub, dict):
            yield from _node_problems(sub, f"{path}.properties[{name}]", in_value_validation=in_value_validation)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _node_problems(node[key], _child(path, key), in_value_validation=in_value_validation)
    for key in _VALUE_VALIDATIONS:
        subs = node.get(key)
        for i, sub in enumerate(subs if isinstance(subs, list) else [subs] if isinstance(subs, dict) else []):
            if isinstance(sub, dict):
                # Value validations may not describe types (the int-or-string pattern excepted: anyOf
                # [{type: integer}, {type: string}]), upstream's structural rule 4.
                for bad in ("default", "nullable", "description", "type", "additionalProperties"):
                    if bad in sub and not (bad == "type" and int_or_string):
                        yield _fe("FieldValueForbidden", f"{path}.{key}[{i}].{bad}",
                                  "Forbidden: must be undefined to be structural")
                yield from _node_problems(sub, f"{path}.{key}[{i}]", in_value_validation=True)


# -- pruning -----------------------------------------------------------------------------------------------------


def prune(schema: Schema, obj: dict[str, Any], *, root: bool = True) -> list[str]:
    """Remove from obj what the schema does not specify (upstream's structural pruning); returns the dotted
    paths removed, for fieldValidation's warnings or Strict refusal."""
    removed: list[str] = []
    _prune_object(schema, obj, "", removed, root=root)
    return removed


def _prune_object(schema: Schema, obj: dict[str, Any], path: str, removed: list[str], *, root: bool = False) -> None:
    embedded = root or schema.get("x-kubernetes-embedded-resource") is True
    if _preserves(schema) and not schema.get("properties") and not root:
        # Everything is kept below x-kubernetes-preserve-unknown-fields, but an embedded object's metadata
        # is still ObjectMeta (upstream prunes it all the same).
        meta = obj.get("metadata")
        if embedded and isinstance(meta, dict):
            for field in [f for f in meta if f not in OBJECT_META_FIELDS]:
                del meta[field]
                removed.append(_child(_child(path, "metadata"), field))
        return
    properties: dict[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key in list(obj):
        value = obj[key]
        if embedded and key in ("apiVersion", "kind"):
            continue
        if embedded and key == "metadata" and isinstance(value, dict):
            for field in [f for f in value if f not in OBJECT_META_FIELDS]:
                del value[field]
                removed.append(_child(_child(path, "metadata"), field))
            continue
        sub = properties.get(key)
        if sub is None and isinstance(additional, dict):
            sub = additional
        if sub is None:
            if additional is True or _preserves(schema):
                continue
            del obj[key]
            removed.append(_child(path, key))
            continue
        _prune_value(sub, value, _child(path, key), removed)


def _prune_value(schema: Schema, value: Any, path: str, removed: list[str]) -> None:
    if isinstance(value, dict):
        _prune_object(schema, value, path, removed)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune_value(schema["items"], item, f"{path}[{i}]", removed)


# -- defaulting --------------------------------------------------------------------------------------------------


def apply_defaults(schema: Schema, obj: Any) -> None:
    """Fill in absent fields that have a `default:` (a copy of it), top down so that defaults inside a
    defaulted object apply too; a null where the field is not nullable becomes its default or is dropped
    (upstream prunes such nulls before defaulting)."""
    if isinstance(obj, dict):
        properties: dict[str, Any] = schema.get("properties") or {}
        for key, sub in properties.items():
            if not isinstance(sub, dict):
                continue
            if key in obj and obj[key] is None and not sub.get("nullable"):
                if "default" in sub:
                    obj[key] = copy.deepcopy(sub["default"])
                else:
                    del obj[key]
            elif key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
        additional = schema.get("additionalProperties")
        for key, value in obj.items():
            sub = properties.get(key, additional if isinstance(additional, dict) else None)
            if isinstance(sub, dict):
                apply_defaults(sub, value)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            apply_defaults(schema["items"], item)


# -- validation --------------------------------------------------------------------------------------------------


def validate(schema: Schema, obj: Any, path: str = "") -> list[FieldError]:
    """obj against schema: [] when valid, otherwise upstream's field errors (path, reason, message)."""
    found: list[FieldError] = []
    _validate(schema, obj, path, found, root=not path)
    return found


def _in_body(path: str) -> str:
    return f"{path or 'body'} in body"


def _type_ok(schema: Schema, value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string") is True:
        return isinstance(value, str) or _type_name(value) == "integer"
    kind = schema.get("type")
    if not kind:
        return True
    actual = _type_name(value)
    return actual == kind or (kind == "number" and actual == "integer")


def _validate(schema: Schema, value: Any, path: str, found: list[FieldError], *, root: bool = False) -> None:
    if value is None:
        if schema.get("nullable") or (not schema.get("type") and _preserves(schema)):
            return
        if schema.get("type") or schema.get("x-kubernetes-int-or-string"):
            expected = "string" if schema.get("x-kubernetes-int-or-string") else schema["type"]
            found.append(_fe("FieldValueTypeInvalid", path, f'Invalid value: "null": {_in_body(path)} must be of '
                             f'type {expected}: "null"'))
            return
    if not _type_ok(schema, value):
        expected = "integer,string" if schema.get("x-kubernetes-int-or-string") else schema["type"]
        actual = _type_name(value)
        found.append(_fe("FieldValueTypeInvalid", path, f'Invalid value: "{actual}": {_in_body(path)} must be of '
                         f'type {expected}: "{actual}"'))
        return
    before = len(found)
    _value_checks(schema, value, path, found)
    if isinstance(value, dict):
        _object_checks(schema, value, path, found, root=root)
    elif isinstance(value, list):
        _array_checks(schema, value, path, found)
    if len(found) == before:
        _combinators(schema, value, path, found)


def _value_checks(schema: Schema, value: Any, path: str, found: list[FieldError]) -> None:
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        allowed = ", ".join(go_value(v) for v in enum)
        found.append(_fe("FieldValueNotSupported", path, f"Unsupported value: {go_value(value)}: supported values: "
                         f"{allowed}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        _number_checks(schema, value, path, found)
    if isinstance(value, str):
        _string_checks(schema, value, path, found)


def _number_checks(schema: Schema, value: float, path: str, found: list[FieldError]) -> None:
    def bad(detail: str) -> None:
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {_in_body(path)} {detail}"))

    maximum, minimum = schema.get("maximum"), schema.get("minimum")
    if maximum is not None:
        if schema.get("exclusiveMaximum") and value >= maximum:
            bad(f"should be less than {go_value(maximum)}")
        elif value > maximum:
            bad(f"should be less than or equal to {go_value(maximum)}")
    if minimum is not None:
        if schema.get("exclusiveMinimum") and value <= minimum:
            bad(f"should be greater than {go_value(minimum)}")
        elif value < minimum:
            bad(f"should be greater than or equal to {go_value(minimum)}")
    multiple = schema.get("multipleOf")
    if multiple and (value / multiple) != int(value / multiple):
        bad(f"should be a multiple of {go_value(multiple)}")
    fmt = schema.get("format")
    if (fmt == "int32" and not -(2**31) <= value < 2**31) or (fmt == "int64" and not -(2**63) <= value < 2**63):
        bad(f"must be of type {fmt}: {go_value(value)}")


_FORMATS = {
    "date-time": lambda s: _parses_datetime(s),
    "date": lambda s: re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) is not None,
    "uuid": lambda s: re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
                                   s) is not None,
    "byte": lambda s: re.fullmatch(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", s) is not None,
}


def _parses_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _string_checks(schema: Schema, value: str, path: str, found: list[FieldError]) -> None:
    max_length, min_length = schema.get("maxLength"), schema.get("minLength")
    length = len(value)  # kube-openapi counts runes
    if max_length is not None and length > max_length:
        found.append(_fe("FieldValueTooLong", path, f"Too long: may not be longer than {max_length}"))
    if min_length is not None and length < min_length:
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {_in_body(path)} should be "
                         f"at least {min_length} chars long"))
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and re.search(pattern, value) is None:
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {_in_body(path)} should "
                         f"match '{pattern}'"))
    check = _FORMATS.get(str(schema.get("format")))
    if check is not None and not check(value):
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {_in_body(path)} must be of "
                         f"type {schema['format']}: {go_value(value)}"))


def _object_checks(schema: Schema, value: dict[str, Any], path: str, found: list[FieldError], *,
                   root: bool) -> None:
    for name in schema.get("required") or []:
        if name not in value:
            found.append(_fe("FieldValueRequired", _child(path, name), "Required value"))
    count = len(value)
    if schema.get("maxProperties") is not None and count > schema["maxProperties"]:
        found.append(_fe("FieldValueTooMany", path, f"Too many: {count}: must have at most {schema['maxProperties']} "
                         "items"))
    if schema.get("minProperties") is not None and count < schema["minProperties"]:
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {count}: {_in_body(path)} should have at least "
                         f"{schema['minProperties']} properties"))
    if schema.get("x-kubernetes-embedded-resource") is True and not root:
        for field in ("apiVersion", "kind"):
            if not value.get(field):
                found.append(_fe("FieldValueRequired", _child(path, field), "Required value: must not be empty"))
    properties: dict[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if root and key in ("apiVersion", "kind", "metadata"):
            continue
        sub = properties.get(key, additional if isinstance(additional, dict) else None)
        if isinstance(sub, dict):
            _validate(sub, item, _child(path, key), found)


def _list_key(item: Any, keys: list[str]) -> Any:
    if not isinstance(item, dict):
        return None
    return tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)


def _go_map(item: dict[str, Any], keys: list[str]) -> str:
    return "map[string]interface {}{" + ", ".join(f"{json.dumps(k)}:{go_value(item.get(k))}" for k in keys) + "}"


def _array_checks(schema: Schema, value: list[Any], path: str, found: list[FieldError]) -> None:
    count = len(value)
    if schema.get("maxItems") is not None and count > schema["maxItems"]:
        found.append(_fe("FieldValueTooMany", path, f"Too many: {count}: must have at most {schema['maxItems']} items"))
    if schema.get("minItems") is not None and count < schema["minItems"]:
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {count}: {_in_body(path)} should have at least "
                         f"{schema['minItems']} items"))
    list_type = schema.get("x-kubernetes-list-type")
    seen: set[Any] = set()
    for i, item in enumerate(value):
        if list_type == "set" or schema.get("uniqueItems") is True:
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                found.append(_fe("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {go_value(item)}"))
            seen.add(key)
        elif list_type == "map":
            keys = [str(k) for k in schema.get("x-kubernetes-list-map-keys") or []]
            mkey = _list_key(item, keys)
            if mkey is not None and mkey in seen:
                found.append(_fe("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {_go_map(item, keys)}"))
            seen.add(mkey)
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(items, item, f"{path}[{i}]", found)


def _combinators(schema: Schema, value: Any, path: str, found: list[FieldError]) -> None:
    def passes(sub: Any) -> bool:
        return isinstance(sub, dict) and not validate(sub, value, path or "body")

    for sub in schema.get("allOf") or []:
        if isinstance(sub, dict):
            before = len(found)
            _validate(sub, value, path, found)
            if len(found) > before:
                return
    any_of = schema.get("anyOf")
    if isinstance(any_of, list) and any_of and not any(passes(s) for s in any_of):
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {_in_body(path)} must "
                         "validate at least one schema (anyOf)"))
    one_of = schema.get("oneOf")
    if isinstance(one_of, list) and one_of and sum(passes(s) for s in one_of) != 1:
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {_in_body(path)} must "
                         "validate one and only one schema (oneOf)"))
    if isinstance(schema.get("not"), dict) and passes(schema["not"]):
        found.append(_fe("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {_in_body(path)} must not "
                         "validate the schema (not)"))


__all__ = ["OBJECT_META_FIELDS", "apply_defaults", "problems", "prune", "validate"]
