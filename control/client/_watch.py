"""Watch streams: newline-delimited JSON events over one long HTTP response."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from control.client._errors import ApiConnectionError, ApiError, ProtocolError, error_from_status

EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})

# An EndpointSlice or a big ConfigMap is well under this; a line that grows past it is a broken stream,
# and buffering it would only exhaust memory.
DEFAULT_MAX_LINE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event (metav1.WatchEvent): ADDED, MODIFIED, DELETED, BOOKMARK or ERROR, and its object.

    For ERROR the object is a Status; `error()` turns it into the matching `ApiError` (410 -> `Gone`).
    """

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        meta = self.object.get("metadata")
        return str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""

    def error(self) -> ApiError | None:
        return error_from_status(self.object) if self.type == "ERROR" else None


class LineSplitter:
    """Splits a byte stream into lines, whatever the chunking: a line may span many chunks, a chunk many lines.

    aiohttp's own readline() refuses lines over its 128 KiB buffer mark, which a large object exceeds, so we
    keep our own buffer and only scan bytes not scanned before (no quadratic rescans of a growing line).
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        lines: list[bytes] = []
        start = 0
        pos = self._scanned
        while (nl := self._buf.find(b"\n", pos)) >= 0:
            line = bytes(self._buf[start:nl]).strip()
            if line:
                lines.append(line)
            start = pos = nl + 1
        if start:
            del self._buf[:start]
        self._scanned = len(self._buf)
        if len(self._buf) > self._max_line:
            size = len(self._buf)
            self._buf.clear()
            self._scanned = 0
            raise ProtocolError(f"watch stream line exceeds {self._max_line} bytes ({size} buffered without a newline)")
        return lines

    def finish(self) -> bytes:
        """What is left after the stream ended: a last line without its newline, or b""."""
        tail = bytes(self._buf).strip()
        self._buf.clear()
        self._scanned = 0
        return tail


def parse_event(line: bytes) -> WatchEvent:
    try:
        decoded = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"watch stream sent a line that is not JSON: {line[:200]!r}") from exc
    if not isinstance(decoded, dict):
        raise ProtocolError(f"watch stream sent JSON that is not an event object: {line[:200]!r}")
    kind = decoded.get("type")
    obj = decoded.get("object")
    if kind not in EVENT_TYPES or not isinstance(obj, dict):
        raise ProtocolError(f"watch stream sent an event without a known type and an object: {line[:200]!r}")
    return WatchEvent(str(kind), obj)


class WatchStream:
    """An open watch: use as `async with client.watch(...) as events: async for event in events: ...`.

    Iterating without `async with` works too; the response is closed when the stream ends or fails, and
    `close()` closes it early. A broken connection raises `ApiConnectionError`; the server ending the
    watch (its timeoutSeconds) simply ends the iteration.
    """

    def __init__(
        self,
        opener: Callable[[], Awaitable[aiohttp.ClientResponse]],
        *,
        describe: str,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        self._opener = opener
        self._describe = describe
        self._splitter = LineSplitter(max_line)
        self._pending: deque[bytes] = deque()
        self._response: aiohttp.ClientResponse | None = None
        self._ended = False

    async def open(self) -> None:
        if self._response is None and not self._ended:
            self._response = await self._opener()

    async def __aenter__(self) -> WatchStream:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._ended = True
        if self._response is not None:
            # close(), not release(): an unfinished watch response can't go back into the connection pool.
            self._response.close()
            self._response = None

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            await self.open()
            assert self._response is not None
            try:
                chunk = await self._response.content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.close()
                raise ApiConnectionError(f"watch {self._describe} broke: {exc or type(exc).__name__}") from exc
            if chunk:
                try:
                    self._pending.extend(self._splitter.feed(chunk))
                except ProtocolError:
                    self.close()
                    raise
                continue
            tail = self._splitter.finish()
            self.close()
            if tail:
                try:
                    return parse_event(tail)
                except ProtocolError as exc:
                    # The server went away in the middle of writing an event.
                    raise ApiConnectionError(f"watch {self._describe} ended in the middle of an event") from exc
        try:
            return parse_event(self._pending.popleft())
        except ProtocolError:
            self.close()
            raise
