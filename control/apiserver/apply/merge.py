"""Server-side apply: merge an applied configuration into the live object, remove what the applier stopped
setting, detect conflicts with other managers (structured-merge-diff's Updater.Apply).

    merged = apply(live, config, manager="kubectl", force=False, scope=Scope(...))

- Merge: maps key by key; associative lists item by item (by their keys); sets by value; atomic lists and
  scalars replaced. A null in the configuration removes the field (and the applier still owns it).
- Removal: fields the manager applied last time and no longer sends are removed, unless another manager owns
  them too; an item someone else still owns a part of stays, with only that part.
- Conflicts: a field the applier would change that another manager owns is a 409 naming each field and its
  manager, in upstream's words; with force the applier takes those fields from them. A field set to the value it
  has is shared, not a conflict.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

from control.apiserver import errors
from control.apiserver.apply import fieldset, lastapplied
from control.apiserver.apply.fieldset import ITEM, FieldPath, ListKeys, item_key, list_type, path_text
from control.apiserver.apply.managed import APPLY, UPDATE, Entry, Scope, compare, decode, now_rfc3339, store
from control.apiserver.apply.schema import AtomicMaps, atomic_maps, schema_for


def _print_manager(entry: Entry) -> str:
    # upstream's printManager (fieldmanager/internal/conflict.go); the identity it prints has no time
    text = json.dumps(entry.manager)
    if entry.subresource:
        text += f" with subresource {json.dumps(entry.subresource)}"
    if entry.operation == UPDATE:
        text += f" using {entry.api_version}"
    return text


def conflict_error(conflicts: list[tuple[Entry, FieldPath]]) -> errors.APIError:
    """409 as upstream's NewConflictError: one cause per field, the message grouped by manager."""
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {_print_manager(e)}",
               "field": path_text(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {_print_manager(entry)}: {path_text(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(_print_manager(entry), []).append(path_text(path))
        lines = []
        for manager in sorted(by_manager):
            lines.append(f"conflicts with {manager}:")
            lines.extend(f"- {p}" for p in by_manager[manager])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return errors.APIError(409, "Conflict", message, {"causes": causes})


def check_config(config: Any, scope: Scope, name: str) -> dict[str, Any]:
    """The applied configuration's own checks (upstream's applyPatcher and structuredmerge.Apply)."""
    if not isinstance(config, dict):
        raise errors.bad_request("error decoding YAML: the applied configuration must be an object")
    if config.get("apiVersion") != scope.api_version:
        raise errors.bad_request("Incorrect version specified in apply patch. Specified patch version: "
                                 f"{config.get('apiVersion') or ''}, expected: {scope.api_version}")
    if config.get("kind") != scope.kind:
        raise errors.bad_request(f"the kind in the applied configuration ({config.get('kind') or ''}) does not match "
                                 f"the expected kind ({scope.kind})")
    meta = config.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise errors.bad_request("metadata.name: Required value: the applied configuration must name its object")
    if meta["name"] != name:
        raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                 f"({name})")
    if meta.get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")
    return config


def apply(live: dict[str, Any] | None, config: dict[str, Any], *, manager: str, force: bool, scope: Scope,
          clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """The object after `manager` applies `config` to `live` (None: it does not exist yet), managedFields
    included; raises the 409 conflict unless force."""
    keys = schema_for(scope.kind, scope.api_version).list_type
    base = copy.deepcopy(live) if live is not None else {}
    entries = decode(base) or []
    base.get("metadata", {}).pop("managedFields", None)
    applied = scope.leaves(config, strict=True)
    me = Entry(manager, APPLY, scope.api_version, subresource=scope.subresource)
    mine = next((e for e in entries if e.identity == me.identity), None)
    others = [e for e in entries if e is not mine]

    merged: dict[str, Any] = _merge(base, config, (), keys, atomic_maps(scope.kind, scope.api_version))
    if mine is not None:
        owned_by_others = set().union(*(e.fields for e in others))
        _remove(merged, mine.fields - set(applied) - owned_by_others, set(applied) | owned_by_others, keys)

    changed, removed = compare(scope.leaves(base), scope.leaves(merged))
    conflicts = [(e, p) for e in others for p in sorted(e.fields & changed, key=path_text)]
    if conflicts and not force:
        allowed = lastapplied.allowed_conflicts(live, manager, scope)
        remaining = [(e, p) for e, p in conflicts if p not in allowed]
        if remaining:
            raise conflict_error(remaining)
    for entry in others:
        entry.fields -= changed | removed
    if mine is None:
        mine = me
        entries.append(mine)
    if mine.fields != set(applied) or changed or removed or mine.time is None:
        mine.time = now_rfc3339(clock)
    mine.fields, mine.api_version = set(applied), scope.api_version
    store(merged, entries)
    lastapplied.sync(merged, config, manager)
    return merged


def _merge(live: Any, config: Any, schema_path: tuple[str, ...], keys: ListKeys,
           atomic: AtomicMaps | None = None) -> Any:
    if isinstance(config, dict) and isinstance(live, dict) and (atomic is None or not atomic(schema_path)):
        out = dict(live)
        for name, value in config.items():
            if value is None:
                out.pop(name, None)
            elif name in live:
                out[name] = _merge(live[name], value, (*schema_path, name), keys, atomic)
            else:
                out[name] = copy.deepcopy(value)
        return out
    if isinstance(config, list) and isinstance(live, list):
        kind = list_type(keys, schema_path)
        if kind.kind == "set":
            return [*live, *(copy.deepcopy(v) for v in config if v not in live)]
        if kind.kind == "map":
            return _merge_associative(live, config, kind, schema_path, keys, atomic)
    return copy.deepcopy(config)


def _merge_associative(live: list[Any], config: list[Any], kind: Any, schema_path: tuple[str, ...],
                       keys: ListKeys, atomic: AtomicMaps | None) -> list[Any]:
    try:
        wanted = {item_key(item, kind, schema_path): item for item in config}
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from None
    if len(wanted) != len(config):
        raise errors.bad_request(f"{'.'.join(schema_path)}: duplicate entries for the keys "
                                 f"{', '.join(kind.keys)} in the applied configuration")
    out, seen = [], set()
    for item in live:
        try:
            key = item_key(item, kind, schema_path)
        except ValueError:
            out.append(item)  # a live item without its keys is left as it is
            continue
        seen.add(key)
        out.append(_merge(item, wanted[key], schema_path, keys, atomic) if key in wanted else item)
    out.extend(copy.deepcopy(item) for key, item in wanted.items() if key not in seen)
    return out


def _remove(obj: dict[str, Any], paths: set[FieldPath], keep: set[FieldPath], keys: ListKeys) -> None:
    """Remove each path from obj, deepest first. An item someone still owns a part of stays (with its keys);
    an item that goes, goes whole."""
    items = {p[:-1] for p in paths if p and p[-1] == ITEM}
    whole = {item for item in items if not any(k[:len(item)] == item for k in keep)}
    for path in sorted(paths, key=len, reverse=True):
        if path and path[-1] == ITEM:
            if path[:-1] in whole:
                _remove_one(obj, path[:-1], keys)
            continue
        if any(path[:len(item)] == item for item in whole) or _is_key(path):
            continue
        _remove_one(obj, path, keys)


def _is_key(path: FieldPath) -> bool:
    """Whether path is a key field of an associative item (kept while the item is)."""
    if len(path) < 2 or path[-2][0] != "k" or path[-1][0] != "f":
        return False
    return any(name == path[-1][1] for name, _ in path[-2][1])


def _remove_one(obj: dict[str, Any], path: FieldPath, keys: ListKeys) -> None:
    chain: list[tuple[Any, Any]] = []  # (container, selector) from the root down to the path's parent
    node: Any = obj
    schema_path: tuple[str, ...] = ()
    for element in path[:-1]:
        selector = _find(node, element, schema_path, keys)
        if selector is None:
            return
        chain.append((node, selector))
        node = node[selector]
        if element[0] == "f":
            schema_path = (*schema_path, element[1])
    last = _find(node, path[-1], schema_path, keys)
    if last is None:
        return
    del node[last]
    # maps the removal emptied go too (upstream decodes into types that omit them)
    for container, selector in reversed(chain):
        if container[selector] in ({}, []) and isinstance(container[selector], dict):
            del container[selector]
        else:
            break


def _find(node: Any, element: tuple[str, Any], schema_path: tuple[str, ...], keys: ListKeys) -> Any:
    kind, value = element
    if kind == "f":
        return value if isinstance(node, dict) and value in node else None
    if not isinstance(node, list):
        return None
    for index, item in enumerate(node):
        if kind == "v" and fieldset.hashable(item) == value:
            return index
        if kind == "k":
            try:
                if item_key(item, list_type(keys, schema_path), schema_path) == element:
                    return index
            except ValueError:
                continue
        if kind == "i" and index == value:
            return index
    return None
