"""The store's exception tree (drawn in the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from control.store._types import KeyValue


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class KeyExistsError(StoreError):
    """create() found the key already present."""

    def __init__(self, key: str, current: KeyValue | None = None) -> None:
        super().__init__(f"key {key!r} already exists: read it and update it with its mod revision instead")
        self.key = key
        self.current = current


class KeyNotFoundError(StoreError):
    """update() or delete() found no such key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found: create it first")
        self.key = key


class ConflictError(StoreError):
    """A compare-and-swap failed: the key's mod revision is not the one expected.

    `current` is the key as it is now, so a caller can retry from it without another read.
    """

    def __init__(self, key: str, expected_mod_revision: int, current: KeyValue) -> None:
        super().__init__(
            f"key {key!r} was modified: expected mod revision {expected_mod_revision}, "
            f"it is at {current.mod_revision}; re-read it and retry"
        )
        self.key = key
        self.expected_mod_revision = expected_mod_revision
        self.current = current

    @property
    def current_mod_revision(self) -> int:
        return self.current.mod_revision


class CompactedError(StoreError):
    """A read or watch asked for history below the compacted revision (the apiserver's 410 Expired)."""

    def __init__(self, requested: int, compacted: int | None) -> None:
        kept = f" (the oldest kept is {compacted})" if compacted is not None else ""
        super().__init__(f"revision {requested} has been compacted{kept}: list again from the current revision")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StoreError):
    """A read asked for a revision the store has not reached yet."""

    def __init__(self, requested: int, current: int | None) -> None:
        at = f" (the store is at {current})" if current is not None else ""
        super().__init__(f"revision {requested} is in the future{at}: retry later")
        self.requested = requested
        self.current = current


class ValueTooLargeError(StoreError):
    """A write bigger than the backend takes (etcd's --max-request-bytes, 1.5 MiB by default)."""

    def __init__(self, key: str, size: int, limit: int | None) -> None:
        most = f" (at most {limit})" if limit is not None else ""
        super().__init__(f"value for {key!r} is too large: {size} bytes{most}")
        self.key = key
        self.size = size
        self.limit = limit


class StoreUnavailable(StoreError):
    """The backend cannot be reached or has been closed."""
