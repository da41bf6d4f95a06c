"""ControllerRevisions: the template history of DaemonSets and StatefulSets (pkg/controller/history and the
two controllers' getPatch), which `kubectl rollout history|undo` reads.

A revision's data is the strategic merge patch that puts the owner's pod template back,

    {"spec": {"template": {<the template>, "$patch": "replace"}}}

so `kubectl rollout undo` simply PATCHes it onto the owner. Revisions are named <owner>-<hash> (the hash of
that data and the owner's collisionCount), carry the template's labels plus controller-revision-hash (so
the owner's selector lists them), are controlled by the owner, and are numbered 1, 2, ...: going back to an
old template renumbers its revision as the newest, as upstream does.
"""

from __future__ import annotations

import json

from control.api.meta import name_of, namespace_of, uid_of
from control.client import CONTROLLER_REVISIONS, AlreadyExists, Client, NotFound
from control.controllers._base import OWNER_INDEX, Controller
from control.controllers._deployment import compute_hash
from control.controllers._util import JsonObject, controller_ref, deepcopy, make_controller_ref

REVISION_HASH = "controller-revision-hash"

__all__ = ["REVISION_HASH", "History", "revision_data", "template_of"]


def revision_data(owner: JsonObject) -> JsonObject:
    template = deepcopy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: JsonObject) -> JsonObject:
    """The pod template a revision restores."""
    template = deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def revision_number(revision: JsonObject) -> int:
    return int(revision.get("revision") or 0)


def _same_data(a: JsonObject, b: JsonObject) -> bool:
    return json.dumps(a.get("data"), sort_keys=True) == json.dumps(b.get("data"), sort_keys=True)


class History:
    """The revisions of one controller's owners, read from the shared informer and written through the API."""

    def __init__(self, controller: Controller, kind: str, api_version: str) -> None:
        self.controller = controller
        self.kind = kind
        self.api_version = api_version

    @property
    def client(self) -> Client:
        return self.controller.client

    def owned(self, owner: JsonObject) -> list[JsonObject]:
        """The owner's revisions, oldest first."""
        store = self.controller.informer(CONTROLLER_REVISIONS).store
        owned = [r for r in store.by_index(OWNER_INDEX, uid_of(owner))
                 if (controller_ref(r) or {}).get("uid") == uid_of(owner)]
        return sorted(owned, key=lambda r: (revision_number(r), name_of(r)))

    def new_revision(self, owner: JsonObject, number: int) -> JsonObject:
        data = revision_data(owner)
        collisions = int((owner.get("status") or {}).get("collisionCount") or 0)
        digest = compute_hash(data, collisions)
        labels = dict((((owner.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})
        labels[REVISION_HASH] = digest
        return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": f"{name_of(owner)}-{digest}", "namespace": namespace_of(owner),
                             "labels": labels,
                             "ownerReferences": [make_controller_ref(owner, self.api_version, self.kind)]},
                "data": data, "revision": number}

    async def current(self, owner: JsonObject, revisions: list[JsonObject]) -> JsonObject:
        """The revision of the owner's template now: an equal one renumbered as the newest, or a new one.
        Raises Collision when another object holds the name (the caller bumps status.collisionCount)."""
        newest = max((revision_number(r) for r in revisions), default=0)
        wanted = self.new_revision(owner, newest + 1)
        equal = [r for r in revisions if _same_data(r, wanted)]
        if equal:
            found = equal[-1]
            if revision_number(found) == newest:
                return found
            body = deepcopy(found)
            body["revision"] = newest + 1
            renumbered: JsonObject = await self.client.update(CONTROLLER_REVISIONS, body, namespace=namespace_of(owner))
            return renumbered
        try:
            return await self.client.create(CONTROLLER_REVISIONS, wanted, namespace=namespace_of(owner))
        except AlreadyExists:
            existing = await self.client.get(CONTROLLER_REVISIONS, name_of(wanted), namespace=namespace_of(owner))
            if (controller_ref(existing) or {}).get("uid") == uid_of(owner) and _same_data(existing, wanted):
                return existing  # our own, not yet in the cache
            raise Collision(name_of(wanted)) from None

    async def truncate(self, owner: JsonObject, revisions: list[JsonObject], live: set[str]) -> None:
        """Deletes the oldest revisions no pod runs, keeping spec.revisionHistoryLimit of them."""
        limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10) or 0)
        history = [r for r in revisions if name_of(r) not in live]
        for revision in history[:max(0, len(history) - limit)]:
            try:
                await self.client.delete(CONTROLLER_REVISIONS, name_of(revision), namespace=namespace_of(revision),
                                         preconditions={"uid": uid_of(revision)})
            except NotFound:
                continue


class Collision(Exception):
    """A revision name taken by an object with other data: hash again with a higher collisionCount."""

    def __init__(self, name: str) -> None:
        super().__init__(f"controller revision {name} exists with other data; bumping status.collisionCount")
        self.name = name
