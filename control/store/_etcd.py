"""The etcd v3 backend, through the `aetcd` client.

Why aetcd: it is an asyncio-native etcd v3 client on grpc.aio that is maintained (1.0.0, 2026,
Python 3.10-3.14, current grpcio and protobuf), ships etcd's generated protobuf messages and stubs,
and multiplexes every watch of a client over one gRPC watch stream, as etcd's own Go client does.
The older `etcd3` is unmaintained and breaks on protobuf >= 4; `etcd3-py` (gRPC JSON gateway) last
released in 2019. aetcd's high-level range cannot yet pass limit or revision, so reads and
transactions send etcd's own RangeRequest / TxnRequest messages on the client's stubs; the client
still owns the channel, authentication and the shared watch stream.

Mapping to etcd: create is a txn comparing create_revision == 0, update and guarded delete compare
mod_revision == expected, each failing branch reads the key back so that the error carries its
current state. A `key_prefix` (etcd's "namespace") lets several clusters share one etcd.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aetcd  # type: ignore[import-untyped]
import aetcd.exceptions  # type: ignore[import-untyped]
import aetcd.rpc  # type: ignore[import-untyped]
import aetcd.watcher  # type: ignore[import-untyped]
import grpc  # type: ignore[import-untyped]

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
from control.store._types import (
    DEFAULT_COMPACT_INTERVAL,
    DEFAULT_COMPACT_KEEP,
    Event,
    EventType,
    KeyValue,
    RangeResult,
    Store,
    Watch,
    prefix_end,
)

rpc: Any = aetcd.rpc

#: etcd's own wording (server/mvcc/kvstore.go ErrCompacted / ErrFutureRev); the gRPC code alone
#: (OUT_OF_RANGE) does not tell the two apart.
_COMPACTED: Final = "required revision has been compacted"
_FUTURE: Final = "required revision is a future revision"
_TOO_LARGE: Final = "request is too large"  # ErrGRPCRequestTooLarge
_UNAVAILABLE_CODES: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


@dataclass(frozen=True)
class EtcdTLS:
    """A TLS connection to etcd with a client certificate (kube-apiserver's --etcd-cafile,
    --etcd-certfile, --etcd-keyfile): etcd's serving certificate is verified against CA_FILE."""

    ca_file: str
    cert_file: str
    key_file: str

    def credentials(self) -> Any:
        try:
            return grpc.ssl_channel_credentials(root_certificates=Path(self.ca_file).read_bytes(),
                                                private_key=Path(self.key_file).read_bytes(),
                                                certificate_chain=Path(self.cert_file).read_bytes())
        except OSError as err:
            raise StoreUnavailable(f"etcd TLS: cannot read {err.filename}: {err.strerror}") from err


class _TLSClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client on a TLS channel: aetcd 1.0 opens only insecure channels. This is its connect()
    with grpc's secure channel instead; the stubs and the shared watcher are made as aetcd makes them.
    (Username/password authentication is not used with client certificates.)"""

    def __init__(self, *, tls: EtcdTLS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = tls.credentials()

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        target = f"{self._host}:{self._port}"
        self.channel = rpc.secure_channel(target, self._credentials, options=list(self._options.items()))
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout,
                                              metadata=self.metadata)
        self._connected.set()


class EtcdWatch(Watch):
    def __init__(self, store: EtcdStore, raw: Any, start_revision: int) -> None:
        self._store = store
        self._raw = raw
        self._iterator: Any = raw.__aiter__()
        self._start = start_revision
        self._closed = False
        self._waiting = False

    async def __anext__(self) -> Event:
        if self._closed and not self._waiting:
            raise StopAsyncIteration
        self._waiting = True
        try:
            raw = await self._iterator.__anext__()
        except aetcd.exceptions.RevisionCompactedError as err:
            raise CompactedError(self._start, int(err.compacted_revision)) from err
        except aetcd.exceptions.ClientError as err:
            raise StoreUnavailable(f"etcd watch at {self._store.endpoint} failed: {err}") from err
        except grpc.RpcError as err:
            raise self._store._translate(err) from err
        finally:
            self._waiting = False
        return self._store._event(raw)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._store._watches.discard(self)
        with contextlib.suppress(aetcd.exceptions.ClientError, grpc.RpcError):
            await self._raw.cancel()
        if not self._waiting:
            await self._iterator.aclose()
        # Otherwise the consumer inside the iterator receives aetcd's end-of-watch and finishes it:
        # an async generator cannot be closed while another task is running it.


class EtcdStore(Store):
    """The store in an etcd v3 server. Open with `await EtcdStore.open(host, port)`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        key_prefix: str = "",
        timeout: float = 10.0,
        compact_interval: float | None = DEFAULT_COMPACT_INTERVAL,
        compact_keep: int = DEFAULT_COMPACT_KEEP,
        tls: EtcdTLS | None = None,
    ) -> None:
        super().__init__(compact_interval=compact_interval, compact_keep=compact_keep)
        self.endpoint = f"{host}:{port}"
        self._prefix = key_prefix
        self._timeout = timeout
        # etcd's Go client and the kube-apiserver lift gRPC's 4 MiB receive limit too: an
        # unpaginated list of a big collection is one Range response.
        options = {"grpc.max_receive_message_length": -1}
        if tls is None:
            self._client: Any = aetcd.Client(host=host, port=port, timeout=timeout, options=options)
        else:
            self._client = _TLSClient(host=host, port=port, timeout=timeout, options=options, tls=tls)
        self._watches: set[EtcdWatch] = set()
        self._closed = False

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        key_prefix: str = "",
        timeout: float = 10.0,
        compact_interval: float | None = DEFAULT_COMPACT_INTERVAL,
        compact_keep: int = DEFAULT_COMPACT_KEEP,
        tls: EtcdTLS | None = None,
    ) -> EtcdStore:
        """Connect and check that etcd answers (StoreUnavailable if it does not).

        key_prefix is put in front of every key in etcd and taken off again in every answer.
        Compaction in etcd is global: with a shared etcd, let one store compact (the others
        compact_interval=None).
        """
        store = cls(host, port, key_prefix=key_prefix, timeout=timeout,
                    compact_interval=compact_interval, compact_keep=compact_keep, tls=tls)
        try:
            await store._client.connect()
            await store.current_revision()
        except BaseException:
            await store._client.close()
            raise
        store._start_compactor()
        return store

    # -- plumbing --
    def _b(self, key: str) -> bytes:
        return (self._prefix + key).encode()

    def _key(self, raw: bytes) -> str:
        return raw.decode()[len(self._prefix):]

    def _kv(self, raw: Any) -> KeyValue:
        return KeyValue(self._key(raw.key), bytes(raw.value), int(raw.create_revision),
                        int(raw.mod_revision), int(raw.version))

    def _event(self, raw: Any) -> Event:
        prev = self._kv(raw.prev_kv) if raw.prev_kv is not None and raw.prev_kv.key else None
        if raw.kind == "DELETE":
            return Event(EventType.DELETE, KeyValue(self._key(raw.kv.key), b"", 0, int(raw.kv.mod_revision), 0),
                         prev)
        return Event(EventType.PUT, self._kv(raw.kv), prev)

    def _range_bounds(self, prefix: str) -> tuple[bytes, bytes]:
        full = self._prefix + prefix
        end = prefix_end(full)
        # etcd: key "\0" with range_end "\0" means every key.
        return (full.encode() or b"\0"), (end.encode() if end is not None else b"\0")

    def _translate(self, err: Any, requested: int = 0, key: str = "", size: int = 0) -> StoreError:
        details = str(err.details() or "") if hasattr(err, "details") else str(err)
        code = err.code() if hasattr(err, "code") else None
        if _COMPACTED in details:
            return CompactedError(requested, None)
        if _FUTURE in details:
            return FutureRevisionError(requested, None)
        if _TOO_LARGE in details:
            return ValueTooLargeError(key, size, None)
        if code in _UNAVAILABLE_CODES:
            return StoreUnavailable(f"etcd at {self.endpoint} is unavailable: {details}")
        return StoreError(f"etcd at {self.endpoint}: {getattr(code, 'name', code)}: {details}")

    async def _rpc(self, method: str, request: Any, *, requested: int = 0, key: str = "", size: int = 0) -> Any:
        if self._closed:
            raise StoreUnavailable(f"the store at etcd {self.endpoint} is closed")
        stub = self._client.kvstub
        if stub is None:
            raise StoreUnavailable(f"the store at etcd {self.endpoint} is not connected")
        try:
            return await getattr(stub, method)(request, timeout=self._timeout, metadata=self._client.metadata)
        except grpc.RpcError as err:
            raise self._translate(err, requested, key, size) from err

    def _compare(self, key: bytes, target: str, value: int) -> Any:
        compare = rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=getattr(rpc.Compare, target))
        if target == "CREATE":
            compare.create_revision = value
        else:
            compare.mod_revision = value
        return compare

    async def _txn(self, key: bytes, compare: Any, success: Any, size: int = 0) -> tuple[bool, Any]:
        """Runs success if compare holds; otherwise reads the key back. Returns (succeeded, response)."""
        request = rpc.TxnRequest(
            compare=[compare],
            success=[success],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
        )
        response = await self._rpc("Txn", request, key=self._key(key), size=size)
        return bool(response.succeeded), response

    def _current_from_failure(self, response: Any) -> KeyValue | None:
        kvs = response.responses[0].response_range.kvs
        return self._kv(kvs[0]) if kvs else None

    # -- reads --
    async def get(self, key: str) -> KeyValue | None:
        response = await self._rpc("Range", rpc.RangeRequest(key=self._b(key)))
        return self._kv(response.kvs[0]) if response.kvs else None

    async def current_revision(self) -> int:
        # Any range answers with the store's revision in its header; a one-key one is the cheapest.
        response = await self._rpc("Range", rpc.RangeRequest(key=b"\0", count_only=True))
        return int(response.header.revision)

    async def range(
        self, prefix: str, *, limit: int = 0, start_after: str | None = None, revision: int = 0
    ) -> RangeResult:
        if limit < 0 or revision < 0:
            raise ValueError(f"limit and revision must be >= 0, not {limit} and {revision}")
        start, end = self._range_bounds(prefix)
        if start_after is not None:
            # The smallest key after start_after.
            start = max(start, self._b(start_after) + b"\0")
        request = rpc.RangeRequest(key=start, range_end=end, limit=limit, revision=revision)
        try:
            response = await self._rpc("Range", request, requested=revision)
        except FutureRevisionError:
            raise FutureRevisionError(revision, await self.current_revision()) from None
        items = [self._kv(kv) for kv in response.kvs]
        return RangeResult(items, bool(response.more), revision or int(response.header.revision))

    # -- writes --
    async def create(self, key: str, value: bytes) -> int:
        k = self._b(key)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))
        ok, response = await self._txn(k, self._compare(k, "CREATE", 0), put, len(k) + len(value))
        if not ok:
            raise KeyExistsError(key, self._current_from_failure(response))
        return int(response.header.revision)

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> int:
        if expected_mod_revision <= 0:
            # mod_revision == 0 holds for an absent key: the txn would create it.
            raise ValueError(f"expected_mod_revision must be >= 1, not {expected_mod_revision}")
        k = self._b(key)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))
        ok, response = await self._txn(k, self._compare(k, "MOD", expected_mod_revision), put, len(k) + len(value))
        if not ok:
            current = self._current_from_failure(response)
            if current is None:
                raise KeyNotFoundError(key)
            raise ConflictError(key, expected_mod_revision, current)
        return int(response.header.revision)

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> int:
        k = self._b(key)
        if expected_mod_revision is None:
            response = await self._rpc("DeleteRange", rpc.DeleteRangeRequest(key=k))
            if response.deleted == 0:
                raise KeyNotFoundError(key)
            return int(response.header.revision)
        if expected_mod_revision <= 0:
            raise ValueError(f"expected_mod_revision must be >= 1, not {expected_mod_revision}")
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k))
        ok, response = await self._txn(k, self._compare(k, "MOD", expected_mod_revision), op)
        if not ok:
            current = self._current_from_failure(response)
            if current is None:
                raise KeyNotFoundError(key)
            raise ConflictError(key, expected_mod_revision, current)
        return int(response.header.revision)

    # -- history --
    async def watch(self, prefix: str, *, start_revision: int = 0) -> EtcdWatch:
        if start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, not {start_revision}")
        if self._closed:
            raise StoreUnavailable(f"the store at etcd {self.endpoint} is closed")
        start, end = self._range_bounds(prefix)
        try:
            raw = await self._client.watch(
                start, range_end=end, start_revision=start_revision or None, prev_kv=True
            )
        except aetcd.exceptions.RevisionCompactedError as err:
            raise CompactedError(start_revision, int(err.compacted_revision)) from err
        except (aetcd.exceptions.ClientError, grpc.RpcError) as err:
            raise StoreUnavailable(f"etcd at {self.endpoint}: cannot watch {prefix!r}: {err}") from err
        watch = EtcdWatch(self, raw, start_revision)
        self._watches.add(watch)
        return watch

    async def compact(self, revision: int) -> None:
        try:
            await self._rpc("Compact", rpc.CompactionRequest(revision=revision), requested=revision)
        except FutureRevisionError:
            raise FutureRevisionError(revision, await self.current_revision()) from None

    async def _close_backend(self) -> None:
        if self._closed:
            return
        for watch in list(self._watches):
            await watch.close()
        self._closed = True
        await self._client.close()
