"""Storage with etcd's semantics: revisions, compare-and-swap, watch, compaction.

Two backends behind one interface, `Store` (asyncio):

- `SQLiteStore`: the embedded default, one SQLite file in WAL mode (kine's design: a log table
  whose row id is the revision).
- `EtcdStore`: a real etcd v3 server, through the `aetcd` client (`EtcdServer` runs one of our own).

    store = await open_store("sqlite:///var/lib/kubesim/state.db")   # or "etcd://127.0.0.1:2379"
    store = await open_store("etcds://127.0.0.1:2379", tls=EtcdTLS(ca_file, cert_file, key_file))
    rev = await store.create("/registry/pods/default/web", b"{...}")
    kv = await store.get("/registry/pods/default/web")
    await store.update(kv.key, b"{...}", expected_mod_revision=kv.mod_revision)
    items, more, at = await store.range("/registry/pods/", limit=500)
    async with await store.watch("/registry/pods/", start_revision=at + 1) as events:
        async for event in events: ...

Exceptions (`StoreError` is the root; `ValueError` for arguments that can never be right):

    StoreError
    ├── KeyExistsError        create() of a present key                      (apiserver: 409 AlreadyExists)
    ├── KeyNotFoundError      update()/delete() of an absent key             (404 NotFound)
    ├── ConflictError         CAS failed; .current is the key as it is now   (409 Conflict)
    ├── CompactedError        read/watch below the compacted revision        (410 Expired)
    ├── FutureRevisionError   read at a revision not reached yet             (504 / retry)
    ├── ValueTooLargeError    value over the limit (etcd's 1.5 MiB)          (413)
    └── StoreUnavailable      backend unreachable or store closed            (503)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from control.store._errors import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    StoreError,
    StoreUnavailable,
    ValueTooLargeError,
)
from control.store._etcd import EtcdStore, EtcdTLS, EtcdWatch
from control.store._etcd_server import EtcdServer, etcd_healthy, free_port
from control.store._sqlite import SQLiteStore, SQLiteWatch
from control.store._types import (
    DEFAULT_COMPACT_INTERVAL,
    DEFAULT_COMPACT_KEEP,
    Event,
    EventType,
    KeyValue,
    RangeResult,
    Store,
    Watch,
)

__all__ = [
    "DEFAULT_COMPACT_INTERVAL",
    "DEFAULT_COMPACT_KEEP",
    "CompactedError",
    "ConflictError",
    "EtcdServer",
    "EtcdStore",
    "EtcdTLS",
    "EtcdWatch",
    "Event",
    "EventType",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "RangeResult",
    "SQLiteStore",
    "SQLiteWatch",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "ValueTooLargeError",
    "Watch",
    "etcd_healthy",
    "free_port",
    "open_store",
]


async def open_store(
    url: str,
    *,
    compact_interval: float | None = DEFAULT_COMPACT_INTERVAL,
    compact_keep: int = DEFAULT_COMPACT_KEEP,
    tls: EtcdTLS | None = None,
) -> Store:
    """Open a store by URL: `sqlite:///abs/path.db`, `sqlite:relative.db`, or a plain path for SQLite;
    `etcd://HOST:PORT[/key-prefix]` (or `http://HOST:PORT`) for etcd in plain text, `etcds://HOST:PORT`
    (or `https://`) for etcd over TLS with the client certificate of TLS, which it requires."""
    parts = urlsplit(url)
    if parts.scheme in ("etcd", "http", "etcds", "https"):
        secure = parts.scheme in ("etcds", "https")
        if not parts.hostname:
            raise ValueError(f"{url!r}: an etcd URL needs a host, like etcds://127.0.0.1:2379")
        if secure and tls is None:
            raise ValueError(f"{url!r}: etcd over TLS needs a CA and a client certificate "
                             "(--etcd-cafile, --etcd-certfile, --etcd-keyfile)")
        if not secure and tls is not None:
            raise ValueError(f"{url!r}: TLS files were given for a plain-text etcd URL; use etcds://")
        return await EtcdStore.open(
            parts.hostname,
            parts.port or 2379,
            key_prefix=parts.path.rstrip("/") if parts.path not in ("", "/") else "",
            compact_interval=compact_interval,
            compact_keep=compact_keep,
            tls=tls,
        )
    if parts.scheme == "sqlite":
        path = url[len("sqlite://"):] if url.startswith("sqlite://") else url[len("sqlite:"):]
    elif parts.scheme == "":
        path = url
    else:
        raise ValueError(f"{url!r}: unknown store scheme {parts.scheme!r}; use sqlite:, etcd:// or etcds://")
    if not path:
        raise ValueError(f"{url!r}: a SQLite store needs a file path")
    return await SQLiteStore.open(path, compact_interval=compact_interval, compact_keep=compact_keep)
