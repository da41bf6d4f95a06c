"""SPDY/3.1 as Kubernetes speaks it: the framing under kubectl's exec, attach, cp and port-forward
(k8s.io/apimachinery's httpstream/spdy, over moby/spdystream), on one upgraded HTTP connection.

Frames (draft-mbelshe-httpbis-spdy-00, SPDY/3.1): a control frame is 0x8003 (control bit, version 3),
a 16-bit type, 8 flag bits and a 24-bit length; a data frame is a 31-bit stream id, flags and length.

    SYN_STREAM 1    a stream opened, with its headers (Kubernetes names streams by `streamType`)
    SYN_REPLY  2    the stream accepted (kubectl waits for it before it writes)
    RST_STREAM 3    a stream refused or cancelled          SETTINGS      4   e.g. the initial window
    PING       6    echoed by the side that did not send it GOAWAY       7   the connection is ending
    HEADERS    8    more headers on a stream                WINDOW_UPDATE 9   flow control credit

Header blocks are compressed with zlib against SPDY/3's dictionary, one compression context per
direction for the whole connection, each block ending on a sync flush.

Flow control: every stream and (3.1) the session start with a 64 KiB window. This side grants credit
(WINDOW_UPDATE) as its reader consumes data, and honours the peer's windows once the peer shows it
keeps them (sends a WINDOW_UPDATE or an initial window SETTING). spdystream, the Go side of every
Kubernetes client and server, neither sends nor reads WINDOW_UPDATE: blocking on a window it never
opens would stall every session after 64 KiB, so against it only TCP's own backpressure applies
(a full stream buffer stops this side reading the connection, as spdystream's unbuffered channels do).

    SpdyError              a byte stream that is not SPDY/3 (bad version, truncated frame, bad headers)
    StreamReset(status)    the peer reset a stream this side is using
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("spdy")

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
#: RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR = 1, 2, 3, 5, 6
#: GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR = 0, 1
SETTINGS_INITIAL_WINDOW_SIZE = 7
DEFAULT_WINDOW = 64 * 1024
MAX_FRAME_DATA = 16 * 1024  # what one DATA frame carries at most from this side (the format allows 2^24 - 1)
#: bytes read from the peer and not yet consumed by a stream's reader before this side stops reading
STREAM_BUFFER = 1024 * 1024

#: its words, in order (the spec lists them; "200 OK" is the one with a space in it)
_words = [
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
]
_tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
         "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
         "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
         "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
         "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
#: SPDY/3's header compression dictionary (spec section 2.6.10.1): length-prefixed words, then a tail
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _words) + _tail.encode()


class SpdyError(Exception):
    """Bytes that are not a SPDY/3 frame."""


class StreamReset(ConnectionError):
    def __init__(self, stream_id: int, status: int) -> None:
        super().__init__(f"stream {stream_id} was reset by the peer (status {status})")
        self.status = status


Headers = dict[str, str]


@dataclass
class Frame:
    """One frame. TYPE is 0 for DATA. Fields a type does not use keep their defaults."""

    type: int
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""                      # DATA
    headers: Headers = field(default_factory=dict)  # SYN_STREAM, SYN_REPLY, HEADERS
    associated: int = 0                    # SYN_STREAM
    priority: int = 0                      # SYN_STREAM, 0 (highest) .. 7
    status: int = 0                        # RST_STREAM, GOAWAY
    value: int = 0                         # PING id, WINDOW_UPDATE delta, GOAWAY last good stream id
    settings: dict[int, int] = field(default_factory=dict)  # SETTINGS: id -> value

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: a count, then each length-prefixed name and value (names lower
    case, as the spec and Go's reader require; several values of a name joined by NUL)."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    try:
        (count,), offset, headers = struct.unpack_from(">I", block), 4, {}
        for _ in range(count):
            parts = []
            for _ in range(2):
                (length,) = struct.unpack_from(">I", block, offset)
                if offset + 4 + length > len(block):
                    raise SpdyError("a header name or value runs past its block")
                parts.append(block[offset + 4:offset + 4 + length].decode())
                offset += 4 + length
            name, value = parts
            if name != name.lower() or not name:
                raise SpdyError(f"header name {name!r} is not lower case (SPDY/3 requires it)")
            headers[name] = value
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpdyError(f"a malformed header block: {exc}") from None
    return headers


class Codec:
    """Frames to bytes and back, with the connection's two header compression contexts (one per
    direction), so one Codec serves one connection."""

    def __init__(self) -> None:
        self._compress = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)
        self._decompress = zlib.decompressobj(zdict=DICTIONARY)

    def _headers_out(self, headers: Headers) -> bytes:
        return self._compress.compress(encode_header_block(headers)) + self._compress.flush(zlib.Z_SYNC_FLUSH)

    def _headers_in(self, data: bytes) -> Headers:
        try:
            return decode_header_block(self._decompress.decompress(data))
        except zlib.error as exc:
            raise SpdyError(f"a header block that does not decompress: {exc}") from None

    def encode(self, frame: Frame) -> bytes:
        if frame.type == 0:
            if len(frame.data) >= 1 << 24:
                raise SpdyError(f"a DATA frame carries at most 2^24 - 1 bytes, not {len(frame.data)}")
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF, frame.flags << 24 | len(frame.data)) + frame.data
        t = frame.type
        if t == SYN_STREAM:
            body = struct.pack(">IIBB", frame.stream_id, frame.associated, (frame.priority & 7) << 5, 0) + \
                self._headers_out(frame.headers)
        elif t in (SYN_REPLY, HEADERS):
            body = struct.pack(">I", frame.stream_id) + self._headers_out(frame.headers)
        elif t == RST_STREAM:
            body = struct.pack(">II", frame.stream_id, frame.status)
        elif t == SETTINGS:
            body = struct.pack(">I", len(frame.settings)) + b"".join(
                struct.pack(">II", key & 0xFFFFFF, value) for key, value in frame.settings.items())
        elif t == PING:
            body = struct.pack(">I", frame.value)
        elif t == GOAWAY:
            body = struct.pack(">II", frame.value, frame.status)
        elif t == WINDOW_UPDATE:
            body = struct.pack(">II", frame.stream_id, frame.value & 0x7FFFFFFF)
        else:
            raise SpdyError(f"frame type {t} is not one of SPDY/3's")
        return struct.pack(">HHI", 0x8000 | VERSION, t, frame.flags << 24 | len(body)) + body

    def decode(self, head: bytes, body: bytes) -> Frame | None:
        """The frame of an 8-byte HEAD and its BODY (head's length); None for a control frame type that
        SPDY/3 leaves for extensions (ignored, as the spec says)."""
        first, second = struct.unpack(">II", head)
        flags = second >> 24
        if not first & 0x80000000:
            return Frame(0, stream_id=first & 0x7FFFFFFF, flags=flags, data=body)
        version, t = first >> 16 & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"SPDY version {version}: only 3 is spoken")
        try:
            if t == SYN_STREAM:
                sid, assoc, prio, _ = struct.unpack_from(">IIBB", body)
                return Frame(t, sid & 0x7FFFFFFF, flags, associated=assoc & 0x7FFFFFFF, priority=prio >> 5,
                             headers=self._headers_in(body[10:]))
            if t in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", body)
                return Frame(t, sid & 0x7FFFFFFF, flags, headers=self._headers_in(body[4:]))
            if t == RST_STREAM:
                sid, status = struct.unpack(">II", body)
                return Frame(t, sid & 0x7FFFFFFF, flags, status=status)
            if t == SETTINGS:
                (count,) = struct.unpack_from(">I", body)
                pairs = struct.unpack_from(f">{2 * count}I", body, 4)
                settings = {pairs[i] & 0xFFFFFF: pairs[i + 1] for i in range(0, len(pairs), 2)}
                return Frame(t, flags=flags, settings=settings)
            if t == PING:
                return Frame(t, flags=flags, value=struct.unpack(">I", body)[0])
            if t == GOAWAY:
                last, status = struct.unpack(">II", body)
                return Frame(t, flags=flags, value=last & 0x7FFFFFFF, status=status)
            if t == WINDOW_UPDATE:
                sid, delta = struct.unpack(">II", body)
                return Frame(t, sid & 0x7FFFFFFF, flags, value=delta & 0x7FFFFFFF)
        except struct.error as exc:
            raise SpdyError(f"a truncated control frame of type {t}: {exc}") from None
        return None


class Stream:
    """One stream of a Connection: read() until b"" (the peer's FIN or reset), write(), close() for this
    side's FIN, reset() to abandon it."""

    def __init__(self, connection: Connection, stream_id: int, headers: Headers, window: int) -> None:
        self.connection = connection
        self.id = stream_id
        self.headers = headers
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.buffered = 0
        self.remote_closed = False
        self.local_closed = False
        self.reset_status: int | None = None
        self.send_window = window
        self._unacknowledged = 0  # consumed since the last WINDOW_UPDATE this side sent
        self.replied = asyncio.Event()

    # -- what the connection feeds in
    def _received(self, data: bytes, fin: bool) -> None:
        if data and not self.remote_closed:
            self.buffered += len(data)
            self._chunks.put_nowait(data)
        if fin:
            self._remote_end()

    def _remote_end(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._chunks.put_nowait(b"")

    # -- the user's side
    async def read(self) -> bytes:
        """The next chunk the peer sent, b"" once it finished (or reset) the stream."""
        if self.remote_closed and self._chunks.empty():
            return b""
        chunk = await self._chunks.get()
        if not chunk:
            self._chunks.put_nowait(b"")  # every later read sees the end too
            return b""
        self.buffered -= len(chunk)
        self._unacknowledged += len(chunk)
        await self.connection._consumed(self, len(chunk))
        return chunk

    async def reply(self, headers: Headers | None = None) -> None:
        """Accept a stream the peer opened (SYN_REPLY)."""
        await self.connection.send(Frame(SYN_REPLY, self.id, headers=headers or {}))

    async def write(self, data: bytes, *, fin: bool = False) -> None:
        if self.reset_status is not None:
            raise StreamReset(self.id, self.reset_status)
        if self.local_closed:
            raise ConnectionError(f"stream {self.id} is closed for writing")
        view = memoryview(data)
        while True:
            size = await self.connection._credit(self, min(len(view), MAX_FRAME_DATA))
            last = size == len(view)
            await self.connection.send(Frame(0, self.id, FLAG_FIN if fin and last else 0, data=bytes(view[:size])))
            view = view[size:]
            if last:
                break
        if fin:
            self.local_closed = True
            self.connection._maybe_forget(self)

    async def close(self) -> None:
        """This side's end of the stream (an empty DATA frame with FIN); the peer may go on writing."""
        if not self.local_closed and self.reset_status is None and not self.connection.closed:
            with contextlib.suppress(ConnectionError):
                await self.write(b"", fin=True)
        self.local_closed = True

    async def reset(self, status: int = CANCEL) -> None:
        if self.reset_status is None:
            self.reset_status = status
            self._remote_end()
            self.local_closed = True
            with contextlib.suppress(ConnectionError):
                await self.connection.send(Frame(RST_STREAM, self.id, status=status))
            self.connection._maybe_forget(self)


Writer = Callable[[bytes], Awaitable[None]]


class Connection:
    """A SPDY/3.1 session over READER and WRITE (an async function writing bytes). The server side opens
    even-numbered streams, the client odd. run() reads frames until the peer goes away; streams the peer
    opens come out of accept()."""

    def __init__(self, reader: asyncio.StreamReader, write: Writer, *, server: bool) -> None:
        self.reader = reader
        self._write = write
        self.codec = Codec()
        self.streams: dict[int, Stream] = {}
        self._incoming: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._next_id = 2 if server else 1
        self._send_lock = asyncio.Lock()
        self.closed = False
        self.going_away = False
        self.peer_flow_control = False
        self.initial_window = DEFAULT_WINDOW
        self.session_window = DEFAULT_WINDOW
        self._session_unacknowledged = 0
        self._window_opened = asyncio.Event()
        self._room = asyncio.Event()  # set whenever stream buffers drained: reading may go on
        self._room.set()
        self._last_remote = 0

    async def send(self, frame: Frame) -> None:
        if self.closed:
            raise ConnectionError("the SPDY connection is closed")
        async with self._send_lock:  # header compression is stateful: frames go out in encoding order
            await self._write(self.codec.encode(frame))

    async def open_stream(self, headers: Headers, *, fin: bool = False) -> Stream:
        """A new stream to the peer (SYN_STREAM); its `replied` event is set by the peer's SYN_REPLY."""
        stream = Stream(self, self._next_id, headers, self.initial_window)
        self._next_id += 2
        self.streams[stream.id] = stream
        await self.send(Frame(SYN_STREAM, stream.id, FLAG_FIN if fin else 0, headers=headers))
        if fin:
            stream.local_closed = True
        return stream

    async def accept(self) -> Stream | None:
        """The next stream the peer opened, or None once the connection ended."""
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)
        return stream

    async def run(self) -> None:
        """Read and dispatch frames until the peer closes the connection (or breaks the protocol)."""
        try:
            while True:
                await self._room.wait()
                try:
                    head = await self.reader.readexactly(8)
                    length = int.from_bytes(head[5:8], "big")
                    body = await self.reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    return
                frame = self.codec.decode(head, body)
                if frame is not None:
                    await self._dispatch(frame)
                if frame is not None and frame.type == GOAWAY:
                    self.going_away = True
        except SpdyError as exc:
            log.info("closing a SPDY connection: %s", exc)
            with contextlib.suppress(ConnectionError):
                await self.send(Frame(GOAWAY, value=self._last_remote, status=GOAWAY_PROTOCOL_ERROR))
        finally:
            self._ended()

    def _ended(self) -> None:
        self.closed = True
        for stream in list(self.streams.values()):
            stream._remote_end()
        self._incoming.put_nowait(None)
        self._window_opened.set()

    async def _dispatch(self, frame: Frame) -> None:
        t, stream = frame.type, self.streams.get(frame.stream_id)
        if t == 0:
            if stream is None:
                return  # data for a stream already gone: dropped, as spdystream does
            self.session_window -= len(frame.data)
            stream._received(frame.data, frame.fin)
            if stream.buffered > STREAM_BUFFER:
                self._room.clear()
            self._maybe_forget(stream)
        elif t == SYN_STREAM:
            if frame.stream_id % 2 == self._next_id % 2 or frame.stream_id <= self._last_remote:
                await self.send(Frame(RST_STREAM, frame.stream_id, status=PROTOCOL_ERROR))
                return
            self._last_remote = frame.stream_id
            if self.going_away:
                await self.send(Frame(RST_STREAM, frame.stream_id, status=REFUSED_STREAM))
                return
            stream = Stream(self, frame.stream_id, frame.headers, self.initial_window)
            self.streams[stream.id] = stream
            if frame.fin:
                stream._remote_end()
            if frame.flags & FLAG_UNIDIRECTIONAL:
                stream.local_closed = True
            self._incoming.put_nowait(stream)
        elif t == SYN_REPLY:
            if stream is not None:
                stream.replied.set()
                if frame.fin:
                    stream._remote_end()
        elif t == HEADERS:
            if stream is not None:
                stream.headers.update(frame.headers)
                if frame.fin:
                    stream._remote_end()
        elif t == RST_STREAM:
            if stream is not None:
                stream.reset_status = frame.status
                stream.local_closed = True
                stream._remote_end()
                stream.replied.set()
                self.streams.pop(stream.id, None)
                self._window_opened.set()
        elif t == SETTINGS:
            if SETTINGS_INITIAL_WINDOW_SIZE in frame.settings:
                new = frame.settings[SETTINGS_INITIAL_WINDOW_SIZE]
                for s in self.streams.values():  # the spec: open streams' windows move by the difference
                    s.send_window += new - self.initial_window
                self.initial_window, self.peer_flow_control = new, True
                self._window_opened.set()
        elif t == PING:
            if frame.value % 2 != self._next_id % 2:  # the peer's ping: echoed
                await self.send(frame)
        elif t == WINDOW_UPDATE:
            self.peer_flow_control = True
            if frame.stream_id == 0:
                self.session_window += frame.value
            elif stream is not None:
                stream.send_window += frame.value
            self._window_opened.set()
        elif t == GOAWAY:
            self.going_away = True

    async def _credit(self, stream: Stream, wanted: int) -> int:
        """How much of WANTED bytes STREAM may send now: all of it against a peer that keeps no windows,
        else what both its window and the session's allow (waiting for credit when they are shut)."""
        if not self.peer_flow_control or wanted == 0:
            return wanted
        while min(stream.send_window, self.session_window) <= 0:
            if self.closed or stream.reset_status is not None:
                raise ConnectionError(f"stream {stream.id} ended while waiting for flow control credit")
            self._window_opened.clear()
            await self._window_opened.wait()
        size = min(wanted, stream.send_window, self.session_window)
        stream.send_window -= size
        self.session_window -= size
        return size

    async def _consumed(self, stream: Stream, size: int) -> None:
        """Credit back what a reader consumed, in WINDOW_UPDATEs of at least half a window."""
        self._session_unacknowledged += size
        if not self._room.is_set() and all(s.buffered <= STREAM_BUFFER for s in self.streams.values()):
            self._room.set()
        updates = []
        if stream._unacknowledged >= DEFAULT_WINDOW // 2 and not stream.remote_closed:
            updates.append(Frame(WINDOW_UPDATE, stream.id, value=stream._unacknowledged))
            stream._unacknowledged = 0
        if self._session_unacknowledged >= DEFAULT_WINDOW // 2:
            updates.append(Frame(WINDOW_UPDATE, 0, value=self._session_unacknowledged))
            self._session_unacknowledged = 0
        for update in updates:
            with contextlib.suppress(ConnectionError):
                await self.send(update)

    def _maybe_forget(self, stream: Stream) -> None:
        if stream.remote_closed and stream.local_closed and stream._chunks.empty():
            self.streams.pop(stream.id, None)

    async def goaway(self, status: int = GOAWAY_OK) -> None:
        """Tell the peer no new streams are taken (this side ends the connection next)."""
        self.going_away = True
        with contextlib.suppress(ConnectionError):
            await self.send(Frame(GOAWAY, value=self._last_remote, status=status))

    def close(self) -> None:
        """Stop sending: every later send fails. The caller closes the transport."""
        self.closed = True
        self._window_opened.set()
