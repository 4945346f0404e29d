"""The client side of one HTTP/2 connection (RFC 9113) without sockets: bytes in, events and bytes
to send out. It does what gRPC calls need (unary, and one bidirectional stream) and no more.

Use: `initiate()` once the socket is open (the preface and our SETTINGS), then `start(stream)` for
each request, `receive(data)` with whatever the socket read (split anywhere), `cancel(stream)`
when its caller gives up, `connection_lost(reason)` when the socket closes. Each returns the
events it caused (`SettingsReceived`, `StreamEnded`, `ConnectionTerminated`); after each call,
`data_to_send()` holds the bytes to write. Nothing here raises for what the server sends: a
protocol violation is a stream error (that stream is reset and ends with a `StreamError`) or a
connection error (GOAWAY sent, every stream ends with one, `ConnectionTerminated`), and no input
causes more than linear work.

- Streams: client stream ids 1, 3, 5, ...; a stream over the server's MAX_CONCURRENT_STREAMS
  waits in a queue. Each request is one HEADERS frame (CONTINUATION if the block is larger than
  the server's MAX_FRAME_SIZE) and its payload in DATA frames, as the peer's windows allow
  (INITIAL_WINDOW_SIZE and WINDOW_UPDATE); ours are opened wide and topped up as data arrives.
  SETTINGS and PING are acknowledged. The connection takes no new streams after a GOAWAY (sent
  or received) or once stream ids run out.
- A duplex stream (a bidirectional gRPC call) has a header block of its own and a body that
  stays open: `send(stream, data)` adds to it as the caller goes, `end_body(stream)` ends it
  (END_STREAM); its DATA is read into `stream.data` as it comes, for the caller to take.
- Responses: the HEADERS block (1xx interim blocks skipped), DATA, and an optional trailers
  block. HPACK decoding is the `hpack` package's (Huffman codes, the dynamic table); requests use
  static-table and literal representations only, so the encoder keeps no state and a request's
  header block is built once. Every received block is decoded, even one for a stream that is
  gone or over our SETTINGS_MAX_HEADER_LIST_SIZE (which fails only its own stream), so that the
  dynamic table stays in step with the server's.
- Stream errors: RST_STREAM from the server (`Failure.RESET`; REFUSED_STREAM says the server
  never processed it), a stream above a GOAWAY's last stream id or not started before the
  connection closed (`Failure.GOAWAY`; likewise unprocessed), a malformed response
  (`Failure.MALFORMED`) or a header list over our limit (`Failure.TOO_LARGE`), both of which we
  reset. `StreamError.retryable` marks the unprocessed ones, which the caller may send again.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from enum import Enum
from time import perf_counter_ns
from typing import Any, Callable, Iterable

from hpack import Decoder as _HpackDecoder
from hpack.exceptions import HPACKError as _HpackError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1  # DATA, HEADERS
ACK = 0x1  # SETTINGS, PING
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
FRAME_HEAD = struct.Struct(">IBI")  # length << 8 | type, flags, stream id
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")
_GOAWAY_HEAD = struct.Struct(">II")

# HTTP/2 error codes (RFC 9113 section 7)
ERROR_NAMES = (
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
    "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
)  # fmt: skip
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0, 1, 3, 6, 7, 8, 9
ENHANCE_YOUR_CALM = 11

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
MAX_FRAME = 2**24 - 1  # ours: the largest allowed, so fewer frames to parse
MIN_FRAME = 16384
MAX_HEADER_LIST_SIZE = 64 * 1024  # ours (SETTINGS_MAX_HEADER_LIST_SIZE): names, values and 32 bytes a field
# A compressed block this large is over the limit whatever it holds (a sane encoder never makes a
# field longer than it is); past it the connection fails rather than decode without bound.
_MAX_BLOCK = 4 * MAX_HEADER_LIST_SIZE
_REFILL_AT = 2**30  # received bytes after which a window is topped up again
_LAST_STREAM_ID = 2**31 - 1
_S_HEADER_TABLE_SIZE, _S_ENABLE_PUSH, _S_MAX_CONCURRENT_STREAMS, _S_INITIAL_WINDOW_SIZE, _S_MAX_FRAME_SIZE, _S_MAX_HEADER_LIST_SIZE = range(1, 7)
_OUR_SETTINGS = ((_S_ENABLE_PUSH, 0), (_S_INITIAL_WINDOW_SIZE, MAX_WINDOW), (_S_MAX_FRAME_SIZE, MAX_FRAME),
                 (_S_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_SIZE))  # fmt: skip
_CACHED_BLOCKS = 64
_BLOCK_FLAGS = END_HEADERS | PADDED | PRIORITY_FLAG


def error_name(code: int) -> str:
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else f"error 0x{code:x}"


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return FRAME_HEAD.pack(len(payload) << 8 | ftype, flags, sid) + payload


# -- HPACK encoding (stateless) ---------------------------------------------------------------

# Static-table names (RFC 7541 appendix A) that requests use.
_STATIC_NAMES = {b":authority": 1, b":path": 4, b"content-type": 31, b"user-agent": 58}


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) whose first byte carries `first` above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing: no state on either side. The name by its
    static-table index where it has one; strings as they are (no Huffman)."""
    index = _STATIC_NAMES.get(name)
    head = _hpack_int(index, 4, 0x00) if index else b"\x00" + _hpack_int(len(name), 7, 0x00) + name
    return head + _hpack_int(len(value), 7, 0x00) + value


def request_header_block(authority: bytes, path: bytes, https: bool, fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A POST request's header block: `:method POST`, the scheme, path and authority, then
    `fields` (lowercase names) in order."""
    block = [
        b"\x83",  # :method POST (static index 3)
        b"\x87" if https else b"\x86",  # :scheme https or http (static index 7 or 6)
        _hpack_literal(b":path", path),
        _hpack_literal(b":authority", authority),
    ]
    block += [_hpack_literal(name, value) for name, value in fields]
    return b"".join(block)


def _indexed_only(block: bytes) -> bool:
    """Whether an HPACK header block holds only indexed header fields (RFC 7541 6.1)."""
    i, n = 0, len(block)
    while i < n:
        byte = block[i]
        if byte < 0x80:
            return False
        i += 1
        if byte == 0xFF:  # the index goes on in 7-bit groups
            while i < n and block[i] & 0x80:
                i += 1
            i += 1
    return True


# -- events -----------------------------------------------------------------------------------


class Failure(Enum):
    RESET = "reset"  # the server reset the stream (RST_STREAM; `code` is its error code)
    GOAWAY = "goaway"  # above a GOAWAY's last stream id, or not started before the connection closed
    MALFORMED = "malformed"  # the response broke HTTP/2's message rules; we reset the stream
    TOO_LARGE = "too_large"  # a header list over our SETTINGS_MAX_HEADER_LIST_SIZE; we reset the stream
    PROTOCOL = "protocol"  # the server broke HTTP/2: we ended the connection (GOAWAY `code`)
    LOST = "lost"  # the connection closed before the response was complete


@dataclass(frozen=True, slots=True)
class StreamError:
    """Why a stream ended without a complete response. `code`: the HTTP/2 error code involved."""

    failure: Failure
    code: int
    message: str

    @property
    def retryable(self) -> bool:
        """The server never processed the request (RFC 9113 8.7), so it may be sent again."""
        return self.failure is Failure.GOAWAY or (self.failure is Failure.RESET and self.code == REFUSED_STREAM)


class SettingsReceived:
    """The server's SETTINGS arrived (the first is the server's preface: the connection is ready)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SettingsReceived()"


@dataclass(slots=True)
class StreamEnded:
    """A stream is over: its response is complete (`stream.error` None) or it failed."""

    stream: Stream


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The connection takes no new streams: the server sent GOAWAY (`by_peer`; streams at or
    below its last stream id go on), we ended it for a protocol error, or it was lost."""

    error: StreamError
    by_peer: bool


class Stream:
    """One request/response exchange. `token` is the caller's own (e.g. the future to wake). The
    request's body is `payload` and then `tail` (a few bytes of its own: a traced request's id digits).
    A duplex stream (`block`: its own request header block) keeps its body open for `send` until
    `end_body`; the caller takes its DATA from `data` as it comes."""

    __slots__ = ("sid", "token", "payload", "tail", "window", "headers", "trailers", "data", "error",
                 "t_first", "t_sent", "t_done", "received", "block", "duplex")  # fmt: skip

    def __init__(self, payload: bytes | memoryview, token: Any = None, tail: bytes = b"", block: bytes | None = None) -> None:
        self.sid = 0  # assigned when its HEADERS go out
        self.token = token
        self.payload: memoryview | bytes | None = payload  # what is still to be sent
        self.tail = tail  # sent after payload; joined to it only when the body goes out in pieces
        self.block = block  # its own request header block (None: the connection's)
        self.duplex = block is not None  # its body is open: no END_STREAM until end_body
        self.window = 0
        self.headers: list | None = None  # the response's (final) header list, as (name, value) bytes
        self.trailers: list | None = None
        self.data: bytes | bytearray | None = None
        self.error: StreamError | None = None
        self.t_first = 0  # clock: the response's HEADERS arrived (the read that brought them)
        self.t_sent = 0  # clock: the last of the request was framed
        self.t_done = 0  # clock: the stream ended
        self.received = 0  # DATA bytes since this stream's window was last topped up


# -- the connection ---------------------------------------------------------------------------


class H2Connection:
    """The client side of one HTTP/2 connection carrying POST requests with `header_block`.

    `clock` (ns) stamps streams: t_first, t_sent and t_done."""

    def __init__(self, header_block: bytes, clock: Callable[[], int] = perf_counter_ns) -> None:
        self.header_block = header_block
        # A request's HEADERS frame and the head of its DATA frame, packed at once (the common case)
        self.open_frames = struct.Struct(f">IBI{len(header_block)}sIBI")
        self.clock = clock
        self.decoder = _HpackDecoder()
        self.decoder.max_header_list_size = 2**62  # our limit is checked per stream, after decoding the whole block
        # Header blocks made only of indexed fields leave the HPACK table as it is, so the same
        # bytes decode the same way until a block that isn't one arrives: in steady state a
        # server sends the same few such blocks again and again (b"\x88\xc0\xbf", b"\xbe").
        # Each: (header list, its size, whether it is plain: within our limit, no 1xx :status).
        self.decoded: dict[bytes, tuple[list, int, bool]] = {}
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.events: list = []
        self.streams: dict[int, Stream] = {}
        self.queued: deque[Stream] = deque()  # waiting for MAX_CONCURRENT_STREAMS to allow them
        self.blocked: deque[Stream] = deque()  # waiting for flow-control window
        self.next_sid = 1
        self.send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = MIN_FRAME
        self.peer_max_streams = _LAST_STREAM_ID
        self.received = 0  # DATA bytes since the connection window was last topped up
        self.continuation: tuple[int, int, bytearray] | None = None  # (sid, END_STREAM flag, header block so far)
        self.preface_seen = False  # the server's first frame header, a SETTINGS frame's
        self.goaway_last_sid = _LAST_STREAM_ID
        self.closed = False  # no new streams (GOAWAY, stream ids used up, a connection error, lost)
        self.failed = False  # a connection error or lost: nothing more is read or sent

    @property
    def usable(self) -> bool:
        """Whether a new stream may start here."""
        return not self.closed

    def data_to_send(self) -> bytes:
        out = self.out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def initiate(self) -> None:
        """The connection preface: the magic, our SETTINGS, our connection window opened wide."""
        settings = b"".join(_SETTING.pack(k, v) for k, v in _OUR_SETTINGS)
        self.out += [PREFACE, frame(SETTINGS, 0, 0, settings), frame(WINDOW_UPDATE, 0, 0, _U32.pack(MAX_WINDOW - DEFAULT_WINDOW))]

    # -- input ------------------------------------------------------------------------------

    def receive(self, data: bytes) -> list:
        """Takes bytes read from the socket; returns the events they caused."""
        events = self.events = []
        if self.failed:
            return events
        now = self.clock()
        buf = self.buf
        if buf:
            buf += data
            data = buf
        size = len(data)
        if not self.preface_seen and size >= 9:  # the server's preface is a SETTINGS frame
            if data[3] != SETTINGS:
                self._connection_error(PROTOCOL_ERROR, f"the first frame is not SETTINGS but {bytes(data[:9])!r}")
                return events
            self.preface_seen = True
        pos = 0
        unpack = FRAME_HEAD.unpack_from
        decoded, streams = self.decoded, self.streams
        while size - pos >= 9:
            head, flags, sid = unpack(data, pos)
            ftype = head & 0xFF
            end = pos + 9 + (head >> 8)
            if end > size:
                break
            payload = data[pos + 9 : end]
            pos = end
            sid &= 0x7FFFFFFF
            if self.continuation is not None and ftype != CONTINUATION:
                self._connection_error(PROTOCOL_ERROR, "a frame inside a header block")
            elif ftype == DATA:
                self._on_data(sid, flags, payload)
            elif ftype == HEADERS or ftype == CONTINUATION:
                # The common case, kept short: a plain block decoded before (fully indexed, so
                # cached), in one frame, as a stream's response headers or its trailers.
                cached = decoded.get(bytes(payload)) if ftype == HEADERS and flags & _BLOCK_FLAGS == END_HEADERS else None
                stream = streams.get(sid) if cached is not None and cached[2] else None
                if stream is None:
                    self._on_headers(ftype, sid, flags, payload, now)
                elif stream.headers is None and not flags & END_STREAM:
                    stream.headers = cached[0]
                    stream.t_first = now
                elif stream.headers is not None and flags & END_STREAM:
                    stream.trailers = cached[0]
                    self._finish(stream)
                else:  # a response with no DATA and no trailers, or trailers without END_STREAM
                    self._on_headers(ftype, sid, flags, payload, now)
            elif ftype == SETTINGS:
                self._on_settings(sid, flags, payload)
            elif ftype == WINDOW_UPDATE:
                self._on_window_update(sid, payload)
            elif ftype == PING:
                self._on_ping(sid, flags, payload)
            elif ftype == RST_STREAM:
                self._on_rst_stream(sid, payload)
            elif ftype == GOAWAY:
                self._on_goaway(sid, payload)
            elif ftype == PUSH_PROMISE:
                self._connection_error(PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled")
            # PRIORITY (deprecated by RFC 9113) and unknown frame types are ignored
            if self.failed:
                return events
        if pos == size:
            if buf:
                buf.clear()
        elif data is buf:
            del buf[:pos]
        else:
            buf += data[pos:]
        return events

    def connection_lost(self, reason: str = "") -> list:
        """The socket closed: every stream still open fails."""
        events = self.events = []
        if not self.failed:
            self.closed = self.failed = True
            error = StreamError(Failure.LOST, NO_ERROR, f"connection to the server lost{': ' + reason if reason else ''}")
            self._fail_all(error)
            events.append(ConnectionTerminated(error, by_peer=False))
        return events

    # -- frames -----------------------------------------------------------------------------

    def _idle(self, sid: int) -> bool:
        """Whether `sid` names a stream that was never opened (by us: the server opens none)."""
        return sid == 0 or sid >= self.next_sid or not sid & 1

    def _on_data(self, sid: int, flags: int, payload: bytes) -> None:
        length = len(payload)
        self.received += length
        if self.received >= _REFILL_AT:
            self.out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.received)))
            self.received = 0
        stream = self.streams.get(sid)
        if stream is None:
            if self._idle(sid):
                self._connection_error(PROTOCOL_ERROR, f"DATA on stream {sid}, which was never opened")
            return  # reset or cancelled by us: its bytes still counted for the connection
        if flags & PADDED:
            if not payload or payload[0] >= length:
                self._connection_error(PROTOCOL_ERROR, "bad DATA padding")
                return
            payload = payload[1 : length - payload[0]]
        if stream.headers is None:
            self._malformed(stream, "DATA before the response headers", flags & END_STREAM)
            return
        stream.received += length
        if stream.received >= _REFILL_AT and not flags & END_STREAM:
            self.out.append(frame(WINDOW_UPDATE, 0, sid, _U32.pack(stream.received)))
            stream.received = 0
        if stream.data is None:
            stream.data = payload
        elif isinstance(stream.data, bytearray):
            stream.data += payload
        else:
            stream.data = bytearray(stream.data) + payload
        if flags & END_STREAM:
            self._finish(stream)

    def _on_headers(self, ftype: int, sid: int, flags: int, payload: bytes, now: int) -> None:
        if ftype == CONTINUATION:
            if self.continuation is None or self.continuation[0] != sid:
                self._connection_error(PROTOCOL_ERROR, "CONTINUATION outside a header block")
                return
            block = self.continuation[2]
            block += payload
            flags = self.continuation[1] | (flags & END_HEADERS)
        else:
            start = 0
            end = length = len(payload)
            if flags & PADDED:
                if not payload or payload[0] >= end:
                    self._connection_error(PROTOCOL_ERROR, "bad HEADERS padding")
                    return
                start, end = 1, end - payload[0]
            if flags & PRIORITY_FLAG:
                start += 5
                if start > end:
                    self._connection_error(FRAME_SIZE_ERROR, "HEADERS too short for its priority fields")
                    return
            block = payload if start == 0 and end == length else payload[start:end]
        if len(block) > _MAX_BLOCK:
            self._connection_error(ENHANCE_YOUR_CALM, f"a header block over {_MAX_BLOCK} bytes")
            return
        if not flags & END_HEADERS:
            if ftype != CONTINUATION:
                self.continuation = (sid, flags & END_STREAM, bytearray(block))
            return
        self.continuation = None
        block = bytes(block)
        cached = self.decoded.get(block)
        if cached is None:
            try:
                headers = self.decoder.decode(block, raw=True)  # every block, to keep the table in step
            except _HpackError as exc:
                self._connection_error(COMPRESSION_ERROR, f"HPACK: {exc}")
                return
            size = 32 * len(headers)
            for name, value in headers:
                size += len(name) + len(value)
            if _indexed_only(block):
                if len(self.decoded) < _CACHED_BLOCKS:
                    interim = bool(headers) and headers[0][0] == b":status" and headers[0][1][:1] == b"1"
                    self.decoded[block] = (headers, size, size <= MAX_HEADER_LIST_SIZE and not interim)
            elif self.decoded:  # the dynamic table may have changed: the cached blocks may mean something else now
                self.decoded.clear()
        else:
            headers, size, _ = cached
        stream = self.streams.get(sid)
        if stream is None:
            if self._idle(sid):
                self._connection_error(PROTOCOL_ERROR, f"HEADERS on stream {sid}, which was never opened")
            return
        end_stream = flags & END_STREAM
        if size > MAX_HEADER_LIST_SIZE:
            what = "response headers" if stream.headers is None else "trailers"
            message = f"the server's {what} are over our header-list limit ({size} > {MAX_HEADER_LIST_SIZE} bytes)"
            self._stream_error(stream, Failure.TOO_LARGE, CANCEL, message, end_stream)
            return
        if stream.headers is None:
            status = headers[0][1] if headers and headers[0][0] == b":status" else b"?"
            if status[0] == 49:  # "1": an interim response (RFC 9113 8.1); the final one follows
                if end_stream or status == b"101":
                    what = "ending the stream" if end_stream else "that HTTP/2 forbids"
                    self._malformed(stream, f"an interim response (:status {status.decode(errors='replace')}) {what}", end_stream)
                return
            stream.headers = headers
            stream.t_first = now
        elif end_stream:
            stream.trailers = headers
        else:
            self._malformed(stream, "trailers without END_STREAM")
            return
        if end_stream:
            self._finish(stream)

    def _on_settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid:
            self._connection_error(PROTOCOL_ERROR, "SETTINGS on a stream")
            return
        if flags & ACK:
            if payload:
                self._connection_error(FRAME_SIZE_ERROR, "a SETTINGS acknowledgement with a payload")
            return
        if len(payload) % 6:
            self._connection_error(FRAME_SIZE_ERROR, "SETTINGS of a bad length")
            return
        for i in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, i)
            if key == _S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    self._connection_error(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1")
                    return
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.window += delta
                    if stream.window > MAX_WINDOW:
                        self._connection_error(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE overflowed a stream's window")
                        return
            elif key == _S_MAX_FRAME_SIZE:
                if not MIN_FRAME <= value <= MAX_FRAME:
                    self._connection_error(PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value} outside 2^14..2^24-1")
                    return
                self.peer_max_frame = value
            elif key == _S_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
            elif key == _S_ENABLE_PUSH and value != 0:
                self._connection_error(PROTOCOL_ERROR, f"ENABLE_PUSH {value} from a server")
                return
        self.out.append(frame(SETTINGS, ACK, 0))
        self.events.append(SettingsReceived())
        self._unblock()
        self._start_queued()

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            self._connection_error(FRAME_SIZE_ERROR, "WINDOW_UPDATE of a bad length")
            return
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if sid == 0:
            if increment == 0:
                self._connection_error(PROTOCOL_ERROR, "a connection WINDOW_UPDATE of 0")
                return
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                self._connection_error(FLOW_CONTROL_ERROR, "connection window overflow")
                return
        else:
            stream = self.streams.get(sid)
            if stream is None:
                if self._idle(sid):
                    self._connection_error(PROTOCOL_ERROR, f"WINDOW_UPDATE on stream {sid}, which was never opened")
                return
            if increment == 0:
                self._malformed(stream, "a stream WINDOW_UPDATE of 0")
                return
            stream.window += increment
            if stream.window > MAX_WINDOW:
                self._stream_error(stream, Failure.MALFORMED, FLOW_CONTROL_ERROR, "bad HTTP/2 from the server: stream window overflow")
                return
        self._unblock()

    def _on_ping(self, sid: int, flags: int, payload: bytes) -> None:
        if sid:
            self._connection_error(PROTOCOL_ERROR, "PING on a stream")
        elif len(payload) != 8:
            self._connection_error(FRAME_SIZE_ERROR, "PING of a bad length")
        elif not flags & ACK:
            self.out.append(frame(PING, ACK, 0, payload))

    def _on_rst_stream(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            self._connection_error(FRAME_SIZE_ERROR, "RST_STREAM of a bad length")
            return
        stream = self.streams.get(sid)
        if stream is None:
            if self._idle(sid):
                self._connection_error(PROTOCOL_ERROR, f"RST_STREAM on stream {sid}, which was never opened")
            return
        code = _U32.unpack(payload)[0]
        self._finish(stream, StreamError(Failure.RESET, code, f"the server reset the stream ({error_name(code)})"))

    def _on_goaway(self, sid: int, payload: bytes) -> None:
        if sid:
            self._connection_error(PROTOCOL_ERROR, "GOAWAY on a stream")
            return
        if len(payload) < 8:
            self._connection_error(FRAME_SIZE_ERROR, "GOAWAY of a bad length")
            return
        last_sid, code = _GOAWAY_HEAD.unpack_from(payload)
        last_sid &= 0x7FFFFFFF
        self.closed = True
        self.goaway_last_sid = last_sid = min(last_sid, self.goaway_last_sid)  # may only go down
        debug = bytes(payload[8:]).decode("utf-8", errors="replace")
        error = StreamError(Failure.GOAWAY, code, f"the server closed the connection (GOAWAY {error_name(code)}{': ' + debug if debug else ''})")
        self._fail_queued(error)
        for stream in [s for s in self.streams.values() if s.sid > last_sid]:
            self._finish(stream, error)
        self.events.append(ConnectionTerminated(error, by_peer=True))

    def _connection_error(self, code: int, what: str) -> None:
        """A protocol violation by the server: GOAWAY (we accepted no stream of its own), and
        every stream fails; the caller closes the socket."""
        if self.failed:
            return
        self.out.append(frame(GOAWAY, 0, 0, _GOAWAY_HEAD.pack(0, code)))
        self.closed = self.failed = True
        self.continuation = None
        error = StreamError(Failure.PROTOCOL, code, f"bad HTTP/2 from the server: {what}")
        self._fail_all(error)
        self.events.append(ConnectionTerminated(error, by_peer=False))

    def _stream_error(self, stream: Stream, failure: Failure, code: int, what: str, ended_by_peer: bool = False) -> None:
        """A stream error (RFC 9113 5.4.2): that stream alone is reset and fails."""
        rst = None if ended_by_peer and stream.payload is None and not stream.duplex else code
        self._finish(stream, StreamError(failure, code, what), rst)

    def _malformed(self, stream: Stream, what: str, ended_by_peer: int = 0) -> None:
        """A response that breaks HTTP/2's message rules (RFC 9113 8.1.1): a stream error."""
        self._stream_error(stream, Failure.MALFORMED, PROTOCOL_ERROR, f"bad HTTP/2 response from the server: {what}", bool(ended_by_peer))

    # -- streams ----------------------------------------------------------------------------

    def start(self, stream: Stream) -> list | tuple:
        """Opens `stream` now, or queues it while the server's concurrent-stream limit is reached."""
        if self.closed:  # going away or lost since the caller picked it
            stream.t_done = self.clock()
            stream.duplex = False
            stream.error = StreamError(Failure.GOAWAY, NO_ERROR, "the connection closed as the request started")
            return [StreamEnded(stream)]
        if len(self.streams) >= self.peer_max_streams:
            self.queued.append(stream)
        else:
            self._open(stream)  # (which ends no stream)
        return ()

    def _open(self, stream: Stream) -> None:
        sid = self.next_sid
        self.next_sid = sid + 2
        if self.next_sid > _LAST_STREAM_ID:
            self.closed = True  # the next request opens a new connection
        stream.sid = sid
        stream.window = window = self.peer_initial_window
        self.streams[sid] = stream
        block = self.header_block
        max_frame = self.peer_max_frame
        out = self.out
        payload, tail = stream.payload, stream.tail
        n = len(payload) + len(tail)
        if stream.block is not None:
            block = stream.block
        elif n <= window and n <= self.send_window and n <= max_frame and len(block) <= max_frame:
            # The common case, kept short: the header block and the whole body, a frame each.
            out += (self.open_frames.pack(len(block) << 8 | HEADERS, END_HEADERS, sid, block, n << 8 | DATA, END_STREAM, sid),
                    payload, tail)  # fmt: skip
            self.send_window -= n
            stream.window = window - n
            stream.payload = None
            stream.t_sent = self.clock()  # built: what remains is the socket's part
            return
        if len(block) <= max_frame:
            out += [FRAME_HEAD.pack(len(block) << 8 | HEADERS, END_HEADERS, sid), block]
        else:
            out += [FRAME_HEAD.pack(max_frame << 8 | HEADERS, 0, sid), block[:max_frame]]
            for i in range(max_frame, len(block), max_frame):
                piece = block[i : i + max_frame]
                last = i + max_frame >= len(block)
                out += [FRAME_HEAD.pack(len(piece) << 8 | CONTINUATION, END_HEADERS if last else 0, sid), piece]
        if tail:  # framed in pieces as the windows allow: one body
            stream.payload, stream.tail = b"".join((payload, tail)), b""
        if n or not stream.duplex:
            self._send_data(stream)
        else:  # a duplex stream opened before its first message
            stream.payload = None
            stream.t_sent = self.clock()

    def _send_data(self, stream: Stream) -> None:
        """Frames as much of the stream's payload as the windows allow."""
        payload = stream.payload
        n = min(len(payload), self.send_window, stream.window)
        if n > 0 or not payload:  # (an empty body: a duplex stream's ended before its first message)
            sid = stream.sid
            last = n == len(payload)
            max_frame = self.peer_max_frame
            end_stream = 0 if stream.duplex else END_STREAM
            if last and n <= max_frame:
                self.out += [FRAME_HEAD.pack(n << 8 | DATA, end_stream, sid), payload]
            else:
                view = memoryview(payload)
                for i in range(0, n, max_frame):
                    piece = view[i : min(i + max_frame, n)]
                    end = last and i + max_frame >= n
                    self.out += [FRAME_HEAD.pack(len(piece) << 8 | DATA, end_stream if end else 0, sid), piece]
            self.send_window -= n
            stream.window -= n
            stream.payload = None if last else memoryview(payload)[n:]
        if stream.payload is None:
            stream.t_sent = self.clock()  # built: what remains is the socket's part
        else:  # (never blocked already: _unblock takes a stream off before sending more of it)
            self.blocked.append(stream)

    def _unblock(self) -> None:
        blocked = self.blocked
        for _ in range(len(blocked)):
            if self.send_window <= 0:
                return
            stream = blocked.popleft()
            if stream.payload is not None and self.streams.get(stream.sid) is stream:
                self._send_data(stream)

    def _start_queued(self) -> None:
        while self.queued and len(self.streams) < self.peer_max_streams:
            if self.closed:
                self._fail_queued(StreamError(Failure.GOAWAY, NO_ERROR, "the connection was closing before the request could start"))
                return
            self._open(self.queued.popleft())

    def _finish(self, stream: Stream, error: StreamError | None = None, rst: int | None = None) -> None:
        """The stream is over: complete, or failed with `error`. `rst`: the RST_STREAM code with
        which we end a stream still open on either side (None: the server ended it)."""
        stream.t_done = self.clock()
        stream.error = error
        del self.streams[stream.sid]
        if stream.payload is not None or stream.duplex:  # answered (or failed) before the request was all sent
            stream.payload = None
            stream.duplex = False
            if rst is None and error is None:
                rst = NO_ERROR  # a complete response: stop sending the rest
        if rst is not None:
            self.out.append(frame(RST_STREAM, 0, stream.sid, _U32.pack(rst)))
        self.events.append(StreamEnded(stream))
        if self.queued:
            self._start_queued()

    def cancel(self, stream: Stream) -> list:
        """The caller gave up on `stream`: reset it, keep the connection."""
        events = self.events = []
        if stream.sid == 0:
            try:
                self.queued.remove(stream)
            except ValueError:
                pass
        elif self.streams.pop(stream.sid, None) is not None:
            stream.payload = None
            stream.duplex = False
            if not self.failed:
                self.out.append(frame(RST_STREAM, 0, stream.sid, _U32.pack(CANCEL)))
                if self.queued:
                    self._start_queued()
        return events

    def send(self, stream: Stream, data: bytes | memoryview, tail: bytes = b"") -> None:
        """More of a duplex stream's body (`data`, then `tail`): framed now as the windows allow,
        the rest when they open. Nothing once its body is closed (end_body, or the stream is over:
        its end is an event already)."""
        if not stream.duplex:
            return
        if stream.payload is not None:  # not started yet (queued), or waiting for window: after what waits
            stream.payload = b"".join((stream.payload, data, tail))
            return
        n = len(data) + len(tail)
        if n <= stream.window and n <= self.send_window and n <= self.peer_max_frame:
            # The common case, kept short: one DATA frame, the pieces as they are.
            self.out += (FRAME_HEAD.pack(n << 8 | DATA, 0, stream.sid), data, tail)
            self.send_window -= n
            stream.window -= n
        else:
            stream.payload = b"".join((data, tail))
            self._send_data(stream)

    def end_body(self, stream: Stream) -> None:
        """Ends a duplex stream's body (END_STREAM after what is still to be sent): the server
        answers what it has and then ends the stream. Nothing for a stream that is over."""
        if not stream.duplex:
            return
        stream.duplex = False
        if stream.payload is None:  # all sent: an empty DATA frame carries the end
            self.out.append(frame(DATA, END_STREAM, stream.sid))
        # else the last of the payload carries END_STREAM (not started yet, or waiting for window)

    def _fail_queued(self, error: StreamError) -> None:
        while self.queued:
            stream = self.queued.popleft()
            stream.t_done = self.clock()
            stream.error = error
            stream.duplex = False
            self.events.append(StreamEnded(stream))

    def _fail_all(self, error: StreamError) -> None:
        streams, self.streams = self.streams, {}
        self.blocked.clear()
        now = self.clock()
        for stream in streams.values():
            stream.payload = None
            stream.duplex = False
            stream.t_done = now
            stream.error = error
            self.events.append(StreamEnded(stream))
        self._fail_queued(error)
