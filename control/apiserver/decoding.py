"""Type checking of request bodies against the built-in types (schema.py), as Go's JSON decoding does
it for kube-apiserver: a value of the wrong JSON type, or an integer outside its Go type's range (int32
or int64), is a 400 with upstream's wording, before any defaulting or validation sees the object. null
is accepted anywhere (Go decodes it as the zero value).

Upstream's decoder (sigs.k8s.io/json, encoding/json's literalStore) answers `replicas: 2147483648` with
`json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32`
in a 400 BadRequest; so does this module, for every int32/int64 field of the schema."""

from __future__ import annotations

import json
from typing import Any

import yaml

from control.apiserver.schema import INTEGER_RANGES, KINDS, TYPES, field_type

_GO_NAMES = {"string": "string", "int32": "int32", "int64": "int64", "number": "float64", "boolean": "bool",
             "IntOrString": "intstr.IntOrString", "Quantity": "resource.Quantity", "Time": "v1.Time",
             "MicroTime": "v1.MicroTime"}


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


def _json_value(value: Any) -> str:
    """What Go's UnmarshalTypeError names: "number 1.5" for a number (its literal), else the JSON kind."""
    kind = _json_kind(value)
    return f"number {json.dumps(value)}" if kind == "number" else kind


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind == "object":
        return True
    if kind == "string" or kind in ("Time", "MicroTime"):
        return isinstance(value, str)
    if kind in INTEGER_RANGES:
        low, high = INTEGER_RANGES[kind]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("IntOrString", "Quantity"):
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    return True


def _go_type(type_name: str) -> str:
    """How Go prints a schema type: "apps.v1.DeploymentSpec" is v1.DeploymentSpec."""
    return ".".join(type_name.rsplit(".", 2)[-2:])


def _go_item(item: str) -> str:
    return _GO_NAMES.get(item) or _go_type(item)


def _mismatch(value: str, struct: str, field: str, go_type: str) -> str:
    """Go's UnmarshalTypeError: the struct holding the field, the field's full path of JSON keys from the root
    (no list indexes or map keys), and the Go type the value could not become."""
    return f"cannot unmarshal {value} into Go struct field {struct}.{field} of type {go_type}"


def _walk(type_name: str, value: Any, field: str, parent: str) -> str | None:
    """The first type error in value, decoded as type_name at field (a dotted path) of the struct parent."""
    if not isinstance(value, dict):
        return _mismatch(_json_value(value), parent, field, _go_type(type_name))
    table = TYPES[type_name]
    package = type_name.rsplit(".", 1)[0]
    struct = type_name.rsplit(".", 1)[-1]
    for key, item in value.items():
        spec = table.get(key)
        if spec is None or item is None:
            continue  # unknown fields are the strict-decoding check's business
        where = f"{field}.{key}" if field else key
        ftype = field_type(spec, package)
        elements: list[Any]
        if ftype.container == "array":
            if not isinstance(item, list):
                return _mismatch(_json_value(item), struct, where, f"[]{_go_item(ftype.item)}")
            elements = list(item)
        elif ftype.container == "map":
            if not isinstance(item, dict):
                return _mismatch(_json_value(item), struct, where, f"map[string]{_go_item(ftype.item)}")
            elements = list(item.values())
        else:
            elements = [item]
        for element in elements:
            if element is None:
                continue
            if ftype.is_scalar:
                if not _scalar_ok(ftype.item, element):
                    return _mismatch(_json_value(element), struct, where, _GO_NAMES.get(ftype.item, ftype.item))
            else:
                problem = _walk(ftype.item, element, where, struct)
                if problem:
                    return problem
    return None


# Map fields whose values are Go []byte: JSON carries them as standard base64, and Go's decoding of a
# value that is not is a 400 naming the offending byte (no "json:" prefix: base64's own error).
_BASE64_MAPS = {"Secret": ("data",), "ConfigMap": ("binaryData",)}
_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def base64_error(text: str) -> int | None:
    """Where Go's base64.StdEncoding.Decode fails on TEXT (its CorruptInputError offset), or None if TEXT
    decodes. Go skips CR and LF anywhere, requires padding, and allows nothing after it."""
    src = text.encode()
    si = 0
    while si < len(src):
        j = 0  # characters of the current quantum
        while j < 4:
            if si == len(src):
                if j == 0:
                    return None
                return si - j
            char = src[si]
            si += 1
            if char in _BASE64_ALPHABET:
                j += 1
                continue
            if char in b"\r\n":
                continue
            if char != ord("=") or j < 2:
                return si - 1
            if j == 2:  # "==" is due; the first "=" is consumed
                while si < len(src) and src[si] in b"\r\n":
                    si += 1
                if si == len(src):
                    return len(src)
                if src[si] != ord("="):
                    return si - 1
                si += 1
            while si < len(src) and src[si] in b"\r\n":
                si += 1
            return si if si < len(src) else None
    return None


def _base64_problem(kind: str, obj: dict[str, Any]) -> str | None:
    for field in _BASE64_MAPS.get(kind, ()):
        values = obj.get(field)
        for value in (values.values() if isinstance(values, dict) else ()):
            offset = base64_error(value) if isinstance(value, str) else None
            if offset is not None:
                return f"illegal base64 data at input byte {offset}"
    return None


def type_error(kind: str, obj: dict[str, Any]) -> str | None:
    """The first wrong-typed value in obj, in Go's words, or None. Kinds not in the schema pass."""
    known = KINDS.get(kind)
    if known is None:
        return None
    version = f"{known.group}/{known.version}" if known.group else known.version
    problem = _walk(known.type_name, obj, "", kind)
    if problem is None:
        problem = _base64_problem(kind, obj)
        return None if problem is None else f'{kind} in version "{version}" cannot be handled as a {kind}: {problem}'
    return f'{kind} in version "{version}" cannot be handled as a {kind}: json: {problem}'


# -- request bodies -------------------------------------------------------------------------------------------

MAX_DEPTH = 100
"""Deepest nesting of objects and arrays a body may have. The deepest built-in object is about 15 levels; Python's
own recursion (decoders, copies, merges) gives out near 1,000, so the limit sits well below that."""

MAX_YAML_ALIASES = 100
MAX_YAML_ALIAS_NODES = 10_000
"""A YAML document may use a few aliases, and they may add at most this many nodes once expanded: an alias bomb
(each anchor aliasing the previous one twice) is 400 bytes that expand to millions of nodes."""


class BodyError(ValueError):
    """A body that cannot be decoded; the message says why (the server answers 400 with it)."""


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and Go's decoder) does not.
    raise BodyError(f"invalid JSON constant {name}")


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise BodyError if value nests deeper than limit, walking iteratively (no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise BodyError(f"the body nests deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def decode_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise BodyError(f"the body nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not valid UTF-8: {exc.reason}") from None
    except BodyError:
        raise
    except ValueError as exc:
        raise BodyError(str(exc)[:200]) from None
    check_depth(value)
    return value


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and excessive aliasing while it composes, before anything is built."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise BodyError(f"the YAML document uses more than {MAX_YAML_ALIASES} aliases")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise BodyError(f"the body nests deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(distinct nodes, nodes once every alias is expanded) of a composed document, without expanding it."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [root]
    while stack:  # post-order by an explicit stack: children's sizes first
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
    return len(order), sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def decode_yaml(raw: bytes) -> Any:
    loader = _BoundedLoader(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        distinct, expanded = _expanded_size(node)
        if expanded - distinct > MAX_YAML_ALIAS_NODES:
            raise BodyError(f"the YAML document's aliases expand to {expanded - distinct} more nodes (at most "
                            f"{MAX_YAML_ALIAS_NODES})")
        value = loader.construct_document(node)
    except RecursionError:
        raise BodyError(f"the body nests deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        raise BodyError(str(exc)[:200]) from None
    finally:
        loader.dispose()
    check_depth(value)
    return value
