"""PATCH bodies, as kube-apiserver applies them: pure functions from (object, body) to a new object.

Three patch types, chosen by the request's Content-Type (parameters such as `; charset=utf-8` ignored):

- `application/merge-patch+json`: RFC 7386 JSON merge patch.
- `application/json-patch+json`: RFC 6902 JSON patch (add, remove, replace, move, copy, test).
- `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch, the one `kubectl apply`
  (client-side), `edit`, `label`, `annotate`, `scale` and `patch` send; the semantics of
  k8s.io/apimachinery/pkg/util/strategicpatch (StrategicMergeMapPatch): lists merged by their patch
  merge key, `$patch: replace|delete|merge`, `$deleteFromPrimitiveList/<f>`, `$setElementOrder/<f>`,
  `$retainKeys`, `null` deleting a key.

    new = apply_patch(obj, body, "application/strategic-merge-patch+json", "Deployment")

The merge keys and strategies of the built-in kinds are in `BUILTIN_PATCH_META` (kind -> field path ->
(strategy, merge key)), derived from the patch tags of schema.py's types; `PatchMeta` is the seam through
which another source (a custom resource's schema) can supply them instead.

Exceptions (all are `control.apiserver.errors.APIError`, so `.status()` is the Status body to send):

    PatchError                   .status_code / .code, .reason, .message
    ├── UnsupportedPatchType     415 UnsupportedMediaType   Content-Type is none of the three above
    ├── MalformedPatch           400 BadRequest             body is not JSON, or not the shape its type needs,
    │                                                       or a directive / merge key is wrong
    ├── PatchTooLarge            413 RequestEntityTooLarge  a JSON patch of more than 10,000 operations
    └── PatchNotApplicable       422 Invalid                a JSON patch operation that does not apply to this
                                                            object (missing path, failed test, bad index), or
                                                            a strategic patch with a list of lists

Where upstream answers a broken strategic patch with a bare Go error (a 500 with reason "", e.g. "does not
contain declared merge key"), we answer 400: the request is at fault, and the apiserver never 5xxs.

The strategic merge patch follows current upstream (apimachinery 0.29 and later), checked against the real
code through `kubectl patch --local`, including its list order with items only the server has. Where it
differs, it is because upstream works on typed objects and we on JSON:

- upstream decodes its result into the Go type, which drops unknown fields and leaves out empty ones
  (`omitempty`); we return the JSON as merged, so `$patch: delete` on a map leaves `{}` (as upstream's own
  merge does), a list emptied by deletions stays `[]`, and keys no schema knows stay (validation's job);
- nulls and directives inside values that have nothing to merge with (new list items, items of a
  `$patch: replace` list, atomic lists) are applied to nothing here; upstream stores some verbatim and its
  typed decode turns them into zero values (a `$patch: delete` item inside a new container becomes an
  env var);
- `$patch: merge` is accepted in maps and lists (upstream refuses it);
- merge keys come from BUILTIN_PATCH_META (or the `meta` seam), not from OpenAPI: a kind missing from the
  table merges only ObjectMeta's lists and replaces every other list. Custom resources, which upstream
  refuses strategic patches for (415), are the caller's to refuse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple, Protocol

from control.api.jsoncopy import json_copy
from control.apiserver import schema
from control.apiserver.errors import APIError

__all__ = [
    "BUILTIN_PATCH_META",
    "JSON_PATCH",
    "MAX_JSON_PATCH_OPERATIONS",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "SUPPORTED_PATCH_TYPES",
    "BuiltinPatchMeta",
    "ListPatchInfo",
    "MalformedPatch",
    "PatchError",
    "PatchMeta",
    "PatchNotApplicable",
    "PatchTooLarge",
    "UnsupportedPatchType",
    "apply_patch",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
SUPPORTED_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

# kube-apiserver's maxJSONPatchOperations (endpoints/handlers/patch.go).
MAX_JSON_PATCH_OPERATIONS = 10000


# -- errors -----------------------------------------------------------------------------------------


class PatchError(APIError):
    """A patch the server will not apply; `.status()` is the Kubernetes Status body to answer with."""

    status_code = 400
    default_reason = "BadRequest"

    def __init__(self, message: str) -> None:
        super().__init__(self.status_code, self.default_reason, message)


class UnsupportedPatchType(PatchError):
    status_code = 415
    default_reason = "UnsupportedMediaType"


class MalformedPatch(PatchError):
    status_code = 400
    default_reason = "BadRequest"


class PatchTooLarge(PatchError):
    status_code = 413
    default_reason = "RequestEntityTooLarge"


class PatchNotApplicable(PatchError):
    status_code = 422
    default_reason = "Invalid"


# -- patch metadata ---------------------------------------------------------------------------------

Path = tuple[str, ...]
"""Field names from the object's root; list items add nothing (containers' ports: ("spec", "containers", "ports"))."""


class ListPatchInfo(NamedTuple):
    """A field's x-kubernetes-patch-strategy and x-kubernetes-patch-merge-key.

    strategy is upstream's tag: "merge", "replace", "retainKeys" or "merge,retainKeys". merge_key is None
    for a merged list of scalars (finalizers) and for fields that are not lists.
    """

    strategy: str
    merge_key: str | None = None


class PatchMeta(Protocol):
    """Where the strategic merge patch learns how to merge a field.

    list_info is asked about every field that is a list (or a map) both in the object and in the patch;
    None means no strategy: lists are replaced whole (atomic), maps are merged key by key.
    """

    def list_info(self, kind: str, path: Path) -> ListPatchInfo | None: ...


def _annotated_fields(type_name: str, prefix: Path = (),
                      seen: frozenset[str] = frozenset()) -> dict[Path, ListPatchInfo]:
    """Every field reachable from `type_name` that carries a patch tag in schema.py, by its path from there.

    The tags are transcribed once, on the types as upstream's struct tags carry them; OpenAPI's
    x-kubernetes-patch-* extensions come from the same place, so kubectl's patches and ours agree.
    """
    found: dict[Path, ListPatchInfo] = {}
    if type_name in seen:  # no built-in type contains itself today; a recursive one must not loop here
        return found
    package = type_name.rsplit(".", 1)[0]
    for name, spec in schema.TYPES[type_name].items():
        ftype = schema.field_type(spec, package)
        path = (*prefix, name)
        if ftype.strategy is not None:
            found[path] = ListPatchInfo(ftype.strategy, ftype.merge_key)
        if not ftype.is_scalar:
            found.update(_annotated_fields(ftype.item, path, seen | {type_name}))
    return found


BUILTIN_PATCH_META: Mapping[str, Mapping[Path, ListPatchInfo]] = {
    kind: _annotated_fields(known.type_name) for kind, known in schema.KINDS.items()}
"""Derived from schema.py. Lists without a tag are atomic (Node taints, Service externalIPs, EndpointSlice
endpoints, a Pod's tolerations and containerStatuses); Service ports merge on "port" alone although their
list-map keys are port+protocol, as upstream's strategic patch does (kubernetes#39188)."""
_ANY_KIND = _annotated_fields("meta.v1.ObjectMeta", ("metadata",))


class BuiltinPatchMeta:
    """PatchMeta from a table; the default is BUILTIN_PATCH_META. Unknown kinds get ObjectMeta's rules."""

    def __init__(self, table: Mapping[str, Mapping[Path, ListPatchInfo]] = BUILTIN_PATCH_META) -> None:
        self._table = table

    def list_info(self, kind: str, path: Path) -> ListPatchInfo | None:
        return self._table.get(kind, _ANY_KIND).get(path)


_DEFAULT_META = BuiltinPatchMeta()


# -- entry point ------------------------------------------------------------------------------------


def apply_patch(original: Mapping[str, Any], patch_body: bytes, content_type: str, kind: str, *,
                meta: PatchMeta | None = None) -> dict[str, Any]:
    """Apply a PATCH body to `original` and return the patched object, a new one; `original` is untouched.

    kind is the object's kind ("Deployment"); it selects the strategic merge patch's merge keys.
    Raises a PatchError subclass (see the module docstring) for anything the server must refuse.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in SUPPORTED_PATCH_TYPES:
        raise UnsupportedPatchType("the body of the request was in an unknown format - accepted media types "
                                   f"include: {', '.join(SUPPORTED_PATCH_TYPES)}")
    patch = _decode(patch_body, media_type)
    try:
        if media_type == JSON_PATCH:
            return _apply_json_patch(json_copy(dict(original)), patch)
        if not isinstance(patch, dict):
            raise MalformedPatch(f"a {_PATCH_NAMES[media_type]} must be a JSON object, not {_json_type(patch)}")
        if media_type == MERGE_PATCH:
            return _merge_patch_object(json_copy(dict(original)), patch)
        return _StrategicMerge(kind, meta or _DEFAULT_META).merge_map(json_copy(dict(original)), patch, ())
    except RecursionError:
        # The JSON decoder accepts nesting deeper than the recursive merges can follow.
        raise MalformedPatch("the patch is nested too deeply") from None


_PATCH_NAMES = {
    JSON_PATCH: "JSON patch",
    MERGE_PATCH: "JSON merge patch",
    STRATEGIC_MERGE_PATCH: "strategic merge patch",
}


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and Go's decoder) does not.
    raise ValueError(f"invalid JSON constant {name}")


def _decode(body: bytes, media_type: str) -> Any:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise MalformedPatch(f"error decoding {_PATCH_NAMES[media_type]}: body is not UTF-8: {e.reason}") from None
    except ValueError as e:
        raise MalformedPatch(f"error decoding {_PATCH_NAMES[media_type]}: invalid JSON: {e}") from None
    except RecursionError:
        raise MalformedPatch(f"error decoding {_PATCH_NAMES[media_type]}: nested too deeply") from None


# -- JSON helpers -----------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), but booleans are not numbers (Python's True == 1 is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _hkey(value: Any) -> tuple[str, Any]:
    """A hashable key with _json_equal's notion of equality, for indexing list items by value."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z", None)
    return ("j", json.dumps(value, sort_keys=True))


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 200 else text[:197] + "..."


# -- RFC 7386 JSON merge patch ----------------------------------------------------------------------


def _merge_patch_object(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            target[key] = _merge_patch_object(current if isinstance(current, dict) else {}, value)
        else:
            # Arrays are replaced whole, nulls inside them kept (RFC 7386 section 2).
            target[key] = value
    return target


# -- RFC 6902 JSON patch ----------------------------------------------------------------------------

_OPS = {"add", "remove", "replace", "move", "copy", "test"}
# Array indices as upstream's evanphx/json-patch v4 reads them (strconv.Atoi, negative indices allowed),
# a superset of RFC 6901's, so that every patch a real apiserver takes is taken here too.
_INDEX = re.compile(r"[+-]?[0-9]+")


class _Op(NamedTuple):
    op: str
    path: list[str]
    raw_path: str
    source: list[str]
    raw_from: str
    value: Any


def _pointer(text: Any, what: str, n: int) -> list[str]:
    if not isinstance(text, str):
        raise MalformedPatch(f"JSON patch operation {n}: {what!r} must be a string, not {_json_type(text)}")
    if text == "":
        return []
    if not text.startswith("/"):
        raise MalformedPatch(f"JSON patch operation {n}: {what} {text!r} is not a JSON pointer (must start with '/')")
    tokens = text[1:].split("/")
    for token in tokens:
        if re.search(r"~(?![01])", token):
            raise MalformedPatch(f"JSON patch operation {n}: {what} {text!r} has an invalid escape ('~' must be "
                                 "followed by '0' or '1')")
    # RFC 6901 section 4: '~1' first, then '~0', so that '~01' means '~1'.
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _decode_ops(patch: Any) -> list[_Op]:
    if not isinstance(patch, list):
        raise MalformedPatch(f"a JSON patch must be a JSON array of operations, not {_json_type(patch)}")
    if len(patch) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchTooLarge(f"Request entity too large: The allowed maximum operations in a JSON patch is "
                            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(patch)}")
    ops: list[_Op] = []
    for n, raw in enumerate(patch):
        if not isinstance(raw, dict):
            raise MalformedPatch(f"JSON patch operation {n} must be an object, not {_json_type(raw)}")
        op = raw.get("op")
        if op not in _OPS:
            raise MalformedPatch(f"JSON patch operation {n}: unknown op {_show(op)}; want one of "
                                 "add, remove, replace, move, copy, test")
        if "path" not in raw:
            raise MalformedPatch(f"JSON patch operation {n} ({op}) has no 'path'")
        path = _pointer(raw["path"], "path", n)
        source: list[str] = []
        if op in ("move", "copy"):
            if "from" not in raw:
                raise MalformedPatch(f"JSON patch operation {n} ({op}) has no 'from'")
            source = _pointer(raw["from"], "from", n)
        if op in ("add", "replace", "test") and "value" not in raw:
            raise MalformedPatch(f"JSON patch operation {n} ({op}) has no 'value'")
        ops.append(_Op(op, path, raw["path"], source, raw.get("from", ""), raw.get("value")))
    return ops


def _index(token: str, size: int, *, adding: bool) -> int | None:
    """The list position a token names, or None if it names none. adding: the end (size, or '-') too."""
    if adding and token == "-":
        return size
    if not _INDEX.fullmatch(token):
        return None
    index = int(token)
    limit = size + 1 if adding else size
    if index < 0:
        index += limit
    return index if 0 <= index < limit else None


def _resolve(doc: Any, tokens: list[str]) -> tuple[bool, Any]:
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                return False, None
            node = node[token]
        elif isinstance(node, list):
            index = _index(token, len(node), adding=False)
            if index is None:
                return False, None
            node = node[index]
        else:
            return False, None
    return True, node


def _not_applicable(op: str, raw_path: str, what: str = "doc is missing path") -> PatchNotApplicable:
    # Wording of evanphx/json-patch, which kube-apiserver uses.
    return PatchNotApplicable(f'{op} operation does not apply: {what}: "{raw_path}": missing value')


def _container(doc: Any, op: str, path: list[str], raw_path: str) -> Any:
    found, parent = _resolve(doc, path[:-1])
    if not found or not isinstance(parent, (dict, list)):
        raise _not_applicable(op, raw_path)
    return parent


def _add(doc: Any, path: list[str], raw_path: str, value: Any, op: str) -> Any:
    if not path:
        return value
    parent = _container(doc, op, path, raw_path)
    token = path[-1]
    if isinstance(parent, dict):
        parent[token] = value
    else:
        index = _index(token, len(parent), adding=True)
        if index is None:
            raise PatchNotApplicable(f"error in {op} for path: '{raw_path}': Unable to access invalid index: {token}")
        parent.insert(index, value)
    return doc


def _remove(doc: Any, path: list[str], raw_path: str, op: str) -> Any:
    """Remove the value at path and return it."""
    if not path:
        raise PatchNotApplicable(f"{op} operation does not apply: cannot remove the whole document")
    parent = _container(doc, op, path, raw_path)
    token = path[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise _not_applicable(op, raw_path)
        return parent.pop(token)
    index = _index(token, len(parent), adding=False)
    if index is None:
        raise PatchNotApplicable(f"error in {op} for path: '{raw_path}': Unable to access invalid index: {token}")
    return parent.pop(index)


def _apply_json_patch(doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    result: Any = doc
    for op in _decode_ops(patch):
        if op.op == "add":
            result = _add(result, op.path, op.raw_path, op.value, "add")
        elif op.op == "remove":
            _remove(result, op.path, op.raw_path, "remove")
        elif op.op == "replace":
            found, _ = _resolve(result, op.path)
            if not found:
                raise _not_applicable("replace", op.raw_path, "doc is missing key")
            if op.path:
                _remove(result, op.path, op.raw_path, "replace")
            result = _add(result, op.path, op.raw_path, op.value, "replace")
        elif op.op == "move":
            if op.path[:len(op.source)] == op.source and len(op.path) > len(op.source):
                # RFC 6902 section 4.4: a value cannot be moved into one of its own children.
                raise PatchNotApplicable(f'move operation does not apply: "from" {op.raw_from!r} is a prefix of '
                                         f'"path" {op.raw_path!r}')
            found, value = _resolve(result, op.source)
            if not found:
                raise _not_applicable("move", op.raw_from, "doc is missing from path")
            if op.source:
                _remove(result, op.source, op.raw_from, "move")
            result = _add(result, op.path, op.raw_path, value, "move")
        elif op.op == "copy":
            found, value = _resolve(result, op.source)
            if not found:
                raise _not_applicable("copy", op.raw_from, "doc is missing from path")
            result = _add(result, op.path, op.raw_path, json_copy(value), "copy")
        else:  # test
            found, value = _resolve(result, op.path)
            if not found:
                raise _not_applicable("test", op.raw_path)
            if not _json_equal(value, op.value):
                raise PatchNotApplicable(f"testing value {op.raw_path} failed: test failed")
    if not isinstance(result, dict):
        raise PatchNotApplicable(f"the patched document is {_json_type(result)}, not an object")
    return result


# -- strategic merge patch --------------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList"
_SET_ORDER = "$setElementOrder"

# mergepatch's error texts (k8s.io/apimachinery/pkg/util/mergepatch/errors.go).
_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
_BAD_SET_ORDER = "invalid patch format of setElementOrder list"
_NO_LIST_OF_LISTS = "lists of lists are not supported"


def _strategy(info: ListPatchInfo | None) -> tuple[str, str | None]:
    """(strategy without retainKeys, merge key): upstream's extractRetainKeysPatchStrategy.

    retainKeys only tells the client to send a $retainKeys directive; the server honours the directive
    wherever it appears, so here it reduces to the other strategy (or the default merge).
    """
    if info is None:
        return "", None
    parts = [p for p in info.strategy.split(",") if p and p != "retainKeys"]
    return (parts[0] if parts else ""), info.merge_key


def _directive_key(key: str, prefix: str, error: str) -> str:
    # upstream's extractKey: "$setElementOrder/containers" -> "containers".
    head, sep, field = key.partition("/")
    if head != prefix or not sep or not field:
        raise MalformedPatch(error)
    return field


KeyFn = Callable[[Any], Hashable]
"""How list items are identified when merging and ordering."""


class _StrategicMerge:
    """StrategicMergeMapPatch over JSON trees; `original` arguments are ours to mutate (a copy)."""

    def __init__(self, kind: str, meta: PatchMeta) -> None:
        self.kind = kind
        self.meta = meta

    def info(self, path: Path) -> tuple[str, str | None]:
        return _strategy(self.meta.list_info(self.kind, path))

    # maps

    def merge_map(self, original: dict[str, Any], patch: dict[str, Any], path: Path) -> dict[str, Any]:
        """upstream's mergeMap."""
        patch = dict(patch)
        if _DIRECTIVE in patch:
            directive = patch.pop(_DIRECTIVE)
            if directive == "replace":
                # The map becomes the patch; directives nested in it still apply (to nothing).
                return self.merge_map({}, patch, path)
            if directive == "delete":
                return {}
            if directive != "merge":
                raise MalformedPatch(f"unknown patch type: {_show(directive)} in map: {_show(patch)}")
            # "$patch: merge" is the default made explicit: upstream rejects it in maps, kustomize (and
            # the strategic-merge-patch design doc) accept it, and there is no harm in doing so.
        self.apply_retain_keys(original, patch)
        self.apply_set_element_order(original, patch, path)
        deletions: list[tuple[str, Any]] = []
        for key, value in patch.items():
            if key.startswith(_DELETE_PRIMITIVE):
                deletions.append((_directive_key(key, _DELETE_PRIMITIVE, _BAD_PRIMITIVE_LIST), value))
                continue
            if value is None:
                original.pop(key, None)
                continue
            child = (*path, key)
            current = original.get(key)
            if isinstance(current, dict) and isinstance(value, dict):
                strategy, _ = self.info(child)
                original[key] = self.fresh(value, child) if strategy == "replace" else \
                    self.merge_map(current, value, child)
            elif isinstance(current, list) and isinstance(value, list):
                original[key] = self.merge_list_field(current, value, child)
            elif _has_directive(value):
                # A new value (the field is missing, or of another type) that is a map with a `$patch`:
                # upstream's removeDirectives (apimachinery 0.29 on; 0.27 stored it verbatim) drops it, so
                # `$patch: replace` or `delete` on a field the object lacks leaves it lacking.
                original.pop(key, None)
            else:
                # Different types (or scalars): the patch's value wins.
                original[key] = self.fresh(value, child)
        for key, value in deletions:
            self.delete_from_primitive_list(original, key, value)
        return original

    def apply_retain_keys(self, original: dict[str, Any], patch: dict[str, Any]) -> None:
        """upstream's applyRetainKeysDirective: keep only the listed keys of the original."""
        if _RETAIN_KEYS not in patch:
            return
        retain = patch.pop(_RETAIN_KEYS)
        if not isinstance(retain, list):
            raise MalformedPatch(_BAD_RETAIN_KEYS)
        keep = {k for k in retain if isinstance(k, str)}
        for key, value in patch.items():
            if value is None or key.startswith((_DELETE_PRIMITIVE, _SET_ORDER)):
                continue
            if key not in keep:
                # Every field the patch sets must be one it retains.
                raise MalformedPatch(_BAD_RETAIN_KEYS)
        for key in [k for k in original if k not in keep]:
            del original[key]

    def apply_set_element_order(self, original: dict[str, Any], patch: dict[str, Any], path: Path) -> None:
        """upstream's mergePatchIntoOriginal: merge each list that has a $setElementOrder, then order it."""
        for key in [k for k in patch if k.startswith(_SET_ORDER)]:
            order = patch.pop(key)
            field = _directive_key(key, _SET_ORDER, _BAD_SET_ORDER)
            if not isinstance(order, list):
                raise MalformedPatch(_BAD_SET_ORDER)
            child = (*path, field)
            _, merge_key = self.info(child)
            current = original.get(field)
            incoming = patch.get(field)
            if current is not None and not isinstance(current, list):
                raise MalformedPatch(f"{_BAD_SET_ORDER}: {'.'.join(child)} is not a list")
            if incoming is not None and not isinstance(incoming, list):
                raise MalformedPatch(f"{_BAD_SET_ORDER}: the patch's {field} is not a list")
            if current is None and incoming is None:
                continue
            if incoming is not None:
                self.check_order(incoming, order, merge_key)
            if incoming is None:
                merged = current
            elif current is None:
                merged = self.fresh(incoming, child)
            else:
                merged = self.merge_list_field(current, incoming, child)
            assert isinstance(merged, list)
            patch.pop(field, None)
            key_of = self.key_function(merge_key)
            wanted = {key_of(item) for item in order}
            in_order = [item for item in merged if key_of(item) in wanted]
            server_only = [item for item in merged if key_of(item) not in wanted]
            server_order = current or []
            if current and incoming and merge_key and self.info(child)[0] == "merge":
                server_order = _live_list_after_merge(current, incoming, merge_key)
            original[field] = _normalize(in_order, server_only, order, server_order, key_of)

    def check_order(self, patch_list: list[Any], order: list[Any], merge_key: str | None) -> None:
        """upstream's validatePatchWithSetOrderList: the patch's items must appear in the order's order."""
        if not patch_list or not order:
            return
        key_of = self.key_function(merge_key)
        items = [item for item in patch_list if not (isinstance(item, dict) and _DIRECTIVE in item)]
        if merge_key:
            for item in [*items, *order]:
                if not isinstance(item, dict):
                    raise MalformedPatch(f"{_BAD_SET_ORDER}: expected a map, but received {_json_type(item)}")
                if merge_key not in item:
                    raise MalformedPatch(f"map: {_show(item)} does not contain declared merge key: {merge_key}")
        position = 0
        for item in items:
            want = key_of(item)
            while position < len(order) and key_of(order[position]) != want:
                position += 1
            if position == len(order):
                raise MalformedPatch(f"the order in patch list {_show(patch_list)} doesn't match $setElementOrder "
                                     f"list {_show(order)}")
            position += 1

    def delete_from_primitive_list(self, original: dict[str, Any], field: str, values: Any) -> None:
        """upstream's deleteFromSlice, for a $deleteFromPrimitiveList/<field> parallel list."""
        if not isinstance(values, list) or any(isinstance(v, (dict, list)) for v in values):
            raise MalformedPatch(_BAD_PRIMITIVE_LIST)
        current = original.get(field)
        # Nothing to delete from: upstream (before kubernetes#105146) would store the deletion list as
        # the field's value; deleting from nothing leaves nothing.
        if isinstance(current, list):
            doomed = {_hkey(v) for v in values}
            original[field] = [v for v in current if _hkey(v) not in doomed]

    # lists

    def merge_list_field(self, current: list[Any], incoming: list[Any], path: Path) -> list[Any]:
        """upstream's mergeSliceHandler: merge by key if the field says so, else replace."""
        strategy, merge_key = self.info(path)
        if strategy == "merge":
            return self.merge_slice(current, incoming, path, merge_key)
        return self.fresh_list(incoming, path)

    def merge_slice(self, original: list[Any], patch: list[Any], path: Path, merge_key: str | None) -> list[Any]:
        """upstream's mergeSlice."""
        if not original and not patch:
            return original
        key_of = self.key_function(merge_key)
        if not self.element_kind([*original, *patch], merge_key):
            # Scalars: the union, each value once.
            merged: list[Any] = []
            seen: set[Hashable] = set()
            for value in [*original, *patch]:
                if _hkey(value) not in seen:
                    seen.add(_hkey(value))
                    merged.append(value)
            server_order = original
        else:
            assert merge_key is not None
            original, patch = self.special_elements(original, patch, merge_key, path)
            merged = self.merge_items(original, patch, merge_key, path)
            server_order = original
        in_patch = {key_of(item) for item in patch}
        patch_items = [item for item in merged if key_of(item) in in_patch]
        server_only = [item for item in merged if key_of(item) not in in_patch]
        return _normalize(patch_items, server_only, patch, server_order, key_of)

    def special_elements(self, original: list[Any], patch: list[Any], merge_key: str,
                         path: Path) -> tuple[list[Any], list[Any]]:
        """upstream's mergeSliceWithSpecialElements: apply `$patch: delete` items and `$patch: replace`."""
        plain: list[Any] = []
        replace = False
        for item in patch:
            if _DIRECTIVE not in item:
                plain.append(item)
                continue
            directive = item[_DIRECTIVE]
            if directive == "delete":
                if merge_key not in item:
                    raise MalformedPatch(f"map: {_show(item)} does not contain declared merge key: {merge_key}")
                doomed = _hkey(item[merge_key])
                original = [o for o in original if not (merge_key in o and _hkey(o[merge_key]) == doomed)]
            elif directive == "replace":
                # Upstream: any item carrying `$patch: replace` turns the list into the other items.
                replace = True
            elif directive == "merge":
                # Merging is what a merge list does anyway; upstream refuses ("merging lists cannot yet
                # be specified in the patch"), we take the item without its directive.
                rest = {k: v for k, v in item.items() if k != _DIRECTIVE}
                if rest:
                    plain.append(rest)
            else:
                raise MalformedPatch(f"unknown patch type: {_show(directive)} in map: {_show(item)}")
        if replace:
            return [self.fresh(item, path) for item in plain], []
        return original, plain

    def merge_items(self, original: list[Any], patch: list[Any], merge_key: str, path: Path) -> list[Any]:
        """upstream's mergeSliceWithoutSpecialElements: merge items with the same key, append the rest."""
        merged = list(original)
        position: dict[Hashable, int] = {}
        for i, item in enumerate(merged):
            if merge_key in item:
                position.setdefault(_hkey(item[merge_key]), i)
        for item in patch:
            if merge_key not in item:
                raise MalformedPatch(f"map: {_show(item)} does not contain declared merge key: {merge_key}")
            key = _hkey(item[merge_key])
            if key in position:
                at = position[key]
                merged[at] = self.merge_map(merged[at], item, path)
            else:
                position[key] = len(merged)
                merged.append(self.fresh(item, path))
        return merged

    def element_kind(self, items: list[Any], merge_key: str | None) -> bool:
        """True if the items are maps (and may be merged by merge_key), False if scalars; else an error."""
        maps = scalars = False
        for item in items:
            if isinstance(item, list):
                raise PatchNotApplicable(_NO_LIST_OF_LISTS)
            if isinstance(item, dict):
                maps = True
            else:
                scalars = True
        if maps and scalars:
            raise MalformedPatch(f"list element types are not identical: {_show(items)}")
        if maps and not merge_key:
            raise MalformedPatch("cannot merge lists without merge key for type map")
        if scalars and merge_key:
            raise MalformedPatch(f"expected a list of maps with merge key {merge_key!r}, but received scalars")
        return maps

    @staticmethod
    def key_function(merge_key: str | None) -> KeyFn:
        """How list items are identified: by their merge key's value, or (scalars) by themselves."""
        if merge_key is None:
            return _hkey

        def by_key(item: Any) -> Hashable:
            if isinstance(item, dict) and merge_key in item:
                return _hkey(item[merge_key])
            return ("?", id(item))

        return by_key

    # values with nothing to merge into

    def fresh(self, value: Any, path: Path) -> Any:
        """A patch value for a field the original lacks (or that is replaced): its directives and nulls
        are applied to nothing. Upstream (discardNullValuesFromPatch, removeDirectives) drops the nulls and
        the maps and list items that carry `$patch`, and leaves other `$`-keys for decoding into the typed
        object to drop; we keep untyped JSON, so we apply the directives to nothing here, which strips them."""
        if isinstance(value, dict):
            return self.merge_map({}, value, path)
        if isinstance(value, list):
            return self.fresh_list(value, path)
        return value

    def fresh_list(self, items: list[Any], path: Path) -> list[Any]:
        # removeDirectives: items with a `$patch` (delete from nothing, replace, merge) go; duplicates are
        # kept for validation to report.
        return [self.fresh(i, path) for i in items if not _has_directive(i)]


def _has_directive(value: Any) -> bool:
    return isinstance(value, dict) and _DIRECTIVE in value


def _live_list_after_merge(live: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    """The live list as upstream's mergePatchIntoOriginal sees it when it orders a merged list.

    Upstream orders server-only items by their place in the live list, but reads that list through a Go
    slice that the merge before it wrote into: deleteMatchingEntries shifts the remaining items left in
    the same backing array, and mergeSliceWithoutSpecialElements appends new items into the slots that
    freed, up to the live list's length. Upstream's own expected results depend on this (patch_test.go,
    "add map and delete map from merging list" with and without conflict), so we replay it: deletions
    shift in place, appends fill freed slots, and whatever no longer fits is not seen.
    """
    key_of = _StrategicMerge.key_function(merge_key)
    slots = list(live)
    length = len(slots)
    plain: list[Any] = []
    replace = False
    for item in patch:
        directive = item.get(_DIRECTIVE) if isinstance(item, dict) else None
        if directive == "delete" and isinstance(item, dict) and merge_key in item:
            doomed = _hkey(item[merge_key])
            while True:
                at = next((i for i in range(length) if key_of(slots[i]) == doomed), None)
                if at is None:
                    break
                slots[at:length - 1] = slots[at + 1:length]
                length -= 1
        elif directive == "replace":
            replace = True
        elif directive is None or directive == "merge":
            plain.append(item)
    if replace:
        return slots
    for item in plain:
        if length == len(slots):
            break  # the next append reallocates: the live list's slots see no more of it
        key = key_of(item)
        if all(key_of(slots[i]) != key for i in range(length)):
            slots[length] = item
            length += 1
    return slots


def _normalize(patch_items: list[Any], server_only: list[Any], patch_order: list[Any], server_order: list[Any],
               key_of: KeyFn) -> list[Any]:
    """upstream's normalizeElementOrder + mergeSortedSlice.

    Items the patch names keep the patch's (or $setElementOrder's) order; items only the server has keep
    the server's order; the two are interleaved by the server's order where both are known there, and
    an item new to the server goes before the server-only items that follow it (so a container added
    by `kubectl patch` without $setElementOrder comes first, as on a real cluster).
    """
    def positions(items: list[Any]) -> dict[Hashable, int]:
        found: dict[Hashable, int] = {}
        for i, item in enumerate(items):
            found.setdefault(key_of(item), i)
        return found

    in_patch = positions(patch_order)
    in_server = positions(server_order)
    right = sorted(patch_items, key=lambda item: in_patch.get(key_of(item), len(patch_order)))
    left = sorted(server_only, key=lambda item: in_server.get(key_of(item), len(server_order)))
    merged: list[Any] = []
    i = j = 0
    while i < len(left) and j < len(right):
        li = in_server.get(key_of(left[i]))
        ri = in_server.get(key_of(right[j]))
        if li is not None and ri is not None and li < ri:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    merged.extend(left[i:])
    merged.extend(right[j:])
    return merged
