"""metadata.managedFields: who owns which fields, and how a non-apply write (create, update, patch) changes it.

The semantics of upstream's field manager (k8s.io/apiserver .../managedfields): one entry per manager,
operation (Apply or Update) and subresource; an Update takes the fields it added or changed from everyone
else and keeps the ones it took before; fields the write removed are no longer anybody's; an entry left with
no fields goes. A client that leaves managedFields out or sends [] keeps the stored ones (so clients that do not
know them cannot wipe them); one that sends [{}] strips them; any other list it sends replaces them (kubectl's
client-side to server-side apply migration writes them so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from control.apiserver import errors
from control.apiserver.apply import fieldset
from control.apiserver.apply.fieldset import FieldPath
from control.apiserver.apply.schema import atomic_maps, schema_for

APPLY, UPDATE = "Apply", "Update"
MAX_MANAGER_LENGTH = 128
# upstream's capManagersManager: beyond this many Update entries the oldest merge into one
MAX_UPDATE_MANAGERS = 10
ANCIENT = "ancient-changes"

# Never anyone's: what the server sets, and apiVersion/kind (upstream's stripMetaManager).
_SERVER_METADATA = {"name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
                    "managedFields", "resourceVersion"}


@dataclass
class Entry:
    manager: str
    operation: str
    api_version: str
    time: str | None = None
    subresource: str = ""
    fields: set[FieldPath] = field(default_factory=set)

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def encoded(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = fieldset.encode(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


@dataclass(frozen=True)
class Scope:
    """Which fields a write to (a subresource of) a kind may own: its main resource does not own status when
    status is a subresource, /status owns only status, /scale only spec.replicas and a pod's /ephemeralcontainers
    only spec.ephemeralContainers (upstream's ResetFields)."""

    kind: str
    api_version: str
    status_subresource: bool
    subresource: str = ""

    def owns(self, path: FieldPath) -> bool:
        if not path:
            return False
        top = str(path[0][1])
        if top == "metadata" and len(path) > 1 and path[1][1] in _SERVER_METADATA:
            return False
        if self.subresource == "status":
            return top == "status"
        if self.subresource == "scale":
            return path == (("f", "spec"), ("f", "replicas"))
        if self.subresource == "ephemeralcontainers":
            return path[:2] == (("f", "spec"), ("f", "ephemeralContainers"))
        return not (self.status_subresource and top == "status")

    def leaves(self, obj: dict[str, Any], *, strict: bool = False) -> dict[FieldPath, Any]:
        keys = schema_for(self.kind, self.api_version).list_type
        try:
            found = fieldset.leaves_of(obj, keys, strict=strict, atomic=atomic_maps(self.kind, self.api_version))
        except ValueError as exc:
            raise errors.bad_request(f"{self.kind}: {exc}") from None
        return {path: value for path, value in found.items() if self.owns(path)}


def now_rfc3339(clock: Callable[[], float] = time.time) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def _invalid(obj: dict[str, Any], index: int, name: str, message: str, value: Any = None) -> errors.APIError:
    meta = obj.get("metadata") or {}
    shown = f"Invalid value: {value!r}: " if value is not None else ""
    return errors.invalid("", str(obj.get("kind", "")), str(meta.get("name", "")), [{
        "reason": "FieldValueInvalid", "field": f"metadata.managedFields[{index}].{name}",
        "message": f"{shown}{message}"}])


def decode(obj: dict[str, Any]) -> list[Entry] | None:
    """obj's managedFields as entries; None when it has none to say (absent, null or [])."""
    raw = (obj.get("metadata") or {}).get("managedFields")
    if not raw:
        return None
    if not isinstance(raw, list):
        raise errors.bad_request("metadata.managedFields: must be a list of ManagedFieldsEntry")
    entries: list[Entry] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _invalid(obj, index, "", "must be a ManagedFieldsEntry")
        if not item:
            continue  # [{}]: the way to strip them
        operation = item.get("operation")
        if operation not in (APPLY, UPDATE):
            raise _invalid(obj, index, "operation", "must be `Apply` or `Update`", operation)
        if item.get("fieldsType", "FieldsV1") != "FieldsV1":
            raise _invalid(obj, index, "fieldsType", "must be `FieldsV1`", item.get("fieldsType"))
        manager = item.get("manager") or ""
        if not isinstance(manager, str) or len(manager) > MAX_MANAGER_LENGTH:
            raise _invalid(obj, index, "manager", f"must be a string of at most {MAX_MANAGER_LENGTH} characters")
        try:
            fields = fieldset.decode(item.get("fieldsV1") or {}, f"metadata.managedFields[{index}].fieldsV1")
        except ValueError:
            # upstream's UpdateNoErrors: field sets that cannot be read are dropped, never stored or refused
            obj["metadata"].pop("managedFields", None)
            return None
        entries.append(Entry(manager, operation, str(item.get("apiVersion") or ""), item.get("time"),
                             str(item.get("subresource") or ""), fields))
    return entries


def _sort_key(entry: Entry) -> tuple[str, str, str, str, str]:
    # upstream's sortEncodedManagedFields: operation, time, manager, apiVersion, subresource
    return (entry.operation, entry.time or "", entry.manager, entry.api_version, entry.subresource)


def _capped(entries: list[Entry]) -> list[Entry]:
    """At most MAX_UPDATE_MANAGERS Update entries: the oldest merge into "ancient-changes", which takes the time
    of the newest of them (so many controllers writing one object do not grow it without bound)."""
    updates = sorted((e for e in entries if e.operation == UPDATE), key=lambda e: e.time or "")
    if len(updates) <= MAX_UPDATE_MANAGERS:
        return entries
    oldest = updates[:len(updates) - MAX_UPDATE_MANAGERS + 1]
    oldest += [e for e in updates if e.manager == ANCIENT and all(e is not o for o in oldest)]  # one bucket
    bucket = Entry(ANCIENT, UPDATE, oldest[-1].api_version, oldest[-1].time,
                   fields=set().union(*(e.fields for e in oldest)))
    return [e for e in entries if all(e is not o for o in oldest)] + [bucket]


def store(obj: dict[str, Any], entries: Iterable[Entry]) -> None:
    """Write the entries that own something into obj's metadata, in upstream's order (none: no key)."""
    kept = sorted(_capped([e for e in entries if e.fields]), key=_sort_key)
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = [e.encoded() for e in kept]
    else:
        meta.pop("managedFields", None)


def compare(old: dict[FieldPath, Any], new: dict[FieldPath, Any]) -> tuple[set[FieldPath], set[FieldPath]]:
    """(added or modified, removed) between two objects' leaves."""
    changed = {path for path, value in new.items() if path not in old or old[path] != value}
    return changed, set(old) - set(new)


def record_update(new: dict[str, Any], old: dict[str, Any] | None, manager: str, scope: Scope,
                  clock: Callable[[], float] = time.time) -> None:
    """Record in new's managedFields that `manager` wrote new over old (None for a create), as an Update."""
    changed, removed = compare(scope.leaves(old) if old is not None else {}, scope.leaves(new))
    sent = None if scope.subresource and old is not None else (new.get("metadata") or {}).get("managedFields")
    if old is not None and not sent and not changed and not removed:
        # the common no-op (a controller writing what is there): what is stored stays, untouched
        _restore(new, old)
        return
    entries = None if scope.subresource and old is not None else decode(new)
    if entries is None and old is not None:
        entries = decode(old)  # subresource writes and clients that say nothing keep what is stored
    entries = entries or []
    me = Entry(manager, UPDATE, scope.api_version, subresource=scope.subresource)
    mine = next((e for e in entries if e.identity == me.identity), None)
    for entry in entries:
        if entry is not mine:
            entry.fields -= changed | removed
    if mine is None:
        mine = me
        entries.append(mine)
    mine.fields = (mine.fields - removed) | changed
    if changed:
        mine.time = now_rfc3339(clock)
        mine.api_version = scope.api_version
    store(new, entries)


def _restore(new: dict[str, Any], old: dict[str, Any]) -> None:
    stored = (old.get("metadata") or {}).get("managedFields")
    meta = new.setdefault("metadata", {})
    if stored:
        meta["managedFields"] = stored
    else:
        meta.pop("managedFields", None)


def manager_from_user_agent(user_agent: str) -> str:
    """Upstream's default manager for writes that name none: the User-Agent's product (before the first /)."""
    return user_agent.split("/", 1)[0][:MAX_MANAGER_LENGTH]
