"""gRPC transport: tritonclient.grpc.aio for the control calls, a lean HTTP/2 client for infer.

Control calls ask tritonclient for the response protos and convert them to the HTTP API's JSON
shape: proto field names, fields at their default values included, 64-bit integers as numbers
(protobuf's JSON mapping writes them as strings), model_config unwrapped from {"config": ...}.

Infer: `prepare` builds the ModelInferRequest once, marshals it once and frames it as a gRPC
message (5-byte prefix); `infer` sends those bytes as one HTTP/2 stream on a connection of our
own (an asyncio.Protocol, like the HTTP transport's) and unmarshals the ModelInferResponse.

Why not grpc.aio for infer: bench/grpc_cpu.py measured, on the centernet ensemble (80-170
req/s), 800-1200 µs of client CPU per request through grpc.aio on a busy machine (450-700 on a
quiet one), under uvloop or asyncio's loop, with GRPC_POLL_STRATEGY=poll or without channel
options; the sync stack with `.future()` or with worker threads was no better. It is no polling:
with up to 32 calls held in flight, idle, grpc.aio burns under 3 ms of CPU per second. It is the
cost of a request passing through a large machine (grpc's Python and Cython layers, its
EventEngine threads, its completion-queue poller thread, the handoff to the event loop), paid
cold after every wait: against a fake server answering in 10 ms, grpc.aio cost 513 µs per request
at concurrency 1 (89 req/s) and 236 at concurrency 8 (670 req/s). The client below is one read
and one write per request on the event loop's thread, like the HTTP transport: 280-380 µs per
request on the same busy machine, 0.7-0.95x perf_analyzer's gRPC client
(bench/vs_perf_analyzer.py --protocols grpc).

The HTTP/2 client (RFC 9113) does what a unary gRPC call needs and no more:
- One connection, multiplexed: every request is a stream (client stream ids 1, 3, 5, ...); a
  new connection after GOAWAY, stream-id exhaustion or a broken connection.
- Requests: the header block is built once per transport (static-table and literal HPACK
  representations only, so the encoder keeps no state) and each request is one HEADERS frame
  and the message in DATA frames; flow control is honoured both ways (the peer's windows and
  SETTINGS_INITIAL_WINDOW_SIZE / MAX_FRAME_SIZE / MAX_CONCURRENT_STREAMS; ours are opened wide
  and topped up), SETTINGS and PING are acknowledged.
- Responses: HPACK decoding by the `hpack` package (python-hyper: Huffman codes and the dynamic
  table); `:status`, `content-type`, `grpc-status` / `grpc-message` in the trailers or in a
  trailers-only response; one uncompressed message (we never offer compression).
- Errors are outcomes (loadgen.outcome), with the status grpc would name: a refused or lost
  connection is a connection error (code UNAVAILABLE), a reset stream maps its HTTP/2 error code
  to a gRPC status (the gRPC spec's table), a non-200 HTTP status likewise; bytes that break
  HTTP/2 or gRPC's framing are a protocol error.
- A cancelled infer resets its stream (RST_STREAM CANCEL) and leaves the connection usable.


Timing (perf_analyzer's gRPC meaning: marshalling and unmarshalling): send_ns is from the start
of the request until its frames were built, just before they are written to the socket (the
message was marshalled once, in `prepare`; a wait for flow-control window counts, when the peer's
windows are too small for the request); recv_ns is from the arrival of the response's first frame
until its last was read, plus unmarshalling the ModelInferResponse (not the wait for the event
loop to resume the request's task in between).
"""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from collections import deque
from time import perf_counter_ns
from typing import Any
from urllib.parse import unquote_to_bytes

import grpc
import tritonclient.grpc.aio as grpcclient
from google.protobuf import descriptor as _descriptor
from google.protobuf.json_format import MessageToDict
from hpack import Decoder as _HpackDecoder
from hpack.exceptions import HPACKError as _HpackError
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from loadgen.errors import ServerError, UsageError
from loadgen.redact import redact_url
from loadgen.outcome import InferOutcome, RequestError, connection, grpc_status, protocol, timeout
from loadgen.transport.base import (
    CONNECT_TIMEOUT_S,
    InputTensor,
    Transport,
    check_header,
    split_host_port,
    unknown_model_error,
    url_credentials,
)
from loadgen.transport.probe import check_port
from loadgen.transport.tls import TlsOptions, tls_failure

_CONTROL_TIMEOUT_S = 60.0
_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_INT64_TYPES = frozenset(
    {
        _descriptor.FieldDescriptor.TYPE_INT64,
        _descriptor.FieldDescriptor.TYPE_UINT64,
        _descriptor.FieldDescriptor.TYPE_SINT64,
        _descriptor.FieldDescriptor.TYPE_FIXED64,
        _descriptor.FieldDescriptor.TYPE_SFIXED64,
    }
)


def _fix_int64(value: Any, desc: _descriptor.Descriptor) -> Any:
    """Turns the JSON mapping's 64-bit integer strings back into numbers, guided by `desc`."""
    if not isinstance(value, dict):
        return value
    for key, item in value.items():
        field = desc.fields_by_name.get(key)
        if field is None:
            continue
        if field.type == _descriptor.FieldDescriptor.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                value_field = sub.fields_by_name["value"]
                if value_field.type == _descriptor.FieldDescriptor.TYPE_MESSAGE:
                    for k in item:
                        item[k] = _fix_int64(item[k], value_field.message_type)
                elif value_field.type in _INT64_TYPES:
                    for k in item:
                        item[k] = int(item[k])
            elif isinstance(item, list):
                value[key] = [_fix_int64(v, sub) for v in item]
            else:
                value[key] = _fix_int64(item, sub)
        elif field.type in _INT64_TYPES:
            value[key] = [int(v) for v in item] if isinstance(item, list) else int(item)
    return value


def to_http_json(message: Any) -> dict[str, Any]:
    """A response proto as the HTTP API would have written it."""
    as_dict = MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _fix_int64(as_dict, message.DESCRIPTOR)


def _status_name(exc: Exception) -> str:
    code = exc.code() if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else None
    if code is not None:
        return code.name
    status = exc.status() if hasattr(exc, "status") else None  # InferenceServerException
    return str(status or "").removeprefix("StatusCode.") or "UNKNOWN"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- HTTP/2 -------------------------------------------------------------------------------------

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = range(10)
_END_STREAM = 0x1  # DATA, HEADERS
_ACK = 0x1  # SETTINGS, PING
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20
_FRAME_HEAD = struct.Struct(">IBI")  # length << 8 | type, flags, stream id
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")

_MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65535
_OUR_MAX_FRAME = 2**24 - 1  # the largest allowed: fewer frames to parse
_REFILL_AT = 2**30  # received bytes after which a window is topped up again
_LAST_STREAM_ID = 2**31 - 1
_S_HEADER_TABLE_SIZE, _S_ENABLE_PUSH, _S_MAX_CONCURRENT_STREAMS, _S_INITIAL_WINDOW_SIZE, _S_MAX_FRAME_SIZE = 1, 2, 3, 4, 5

# HTTP/2 error codes (RFC 9113 section 7) and the gRPC status each maps to (gRPC's PROTOCOL-HTTP2 doc)
_H2_ERRORS = (
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
    "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
)  # fmt: skip
_RST_TO_GRPC = {7: "UNAVAILABLE", 8: "CANCELLED", 11: "RESOURCE_EXHAUSTED", 12: "PERMISSION_DENIED"}
_GRPC_CODES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
_DEADLINE_EXCEEDED = _GRPC_CODES.index("DEADLINE_EXCEEDED")
_HTTP_TO_GRPC = {400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
                 429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}  # fmt: skip


def _h2_error_name(code: int) -> str:
    return _H2_ERRORS[code] if 0 <= code < len(_H2_ERRORS) else f"error 0x{code:x}"


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return _FRAME_HEAD.pack(len(payload) << 8 | ftype, flags, sid) + payload


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


def _hpack_literal(name: bytes | int, value: bytes) -> bytes:
    """A literal header field without indexing: no state on either side. `name` is a
    static-table index or the name itself; strings are sent as they are (no Huffman)."""
    if isinstance(name, int):
        head = _hpack_int(name, 4, 0x00)
    else:
        head = b"\x00" + _hpack_int(len(name), 7, 0x00) + name
    return head + _hpack_int(len(value), 7, 0x00) + value


def grpc_timeout(timeout_ms: float) -> bytes:
    """The `grpc-timeout` value for a deadline: at most 8 digits, in the finest unit that holds it,
    rounded up (gRPC's PROTOCOL-HTTP2: TimeoutValue TimeoutUnit, units n u m S M H)."""
    if not timeout_ms > 0:
        raise ValueError("a deadline must be above 0 ms")
    for unit, per_ms in ((b"n", 1e6), (b"u", 1e3), (b"m", 1.0), (b"S", 1e-3), (b"M", 1e-3 / 60), (b"H", 1e-3 / 3600)):
        value = math.ceil(timeout_ms * per_ms - 1e-9)
        if value < 10**8:
            return b"%d%s" % (value, unit)
    return b"99999999H"  # 11,000 years: no deadline in practice


def _request_header_block(
    authority: str, path: str, metadata: tuple[tuple[str, str], ...], https: bool, timeout_ms: float | None = None
) -> bytes:
    block = [
        b"\x83",  # :method POST (static index 3)
        b"\x87" if https else b"\x86",  # :scheme https or http (static index 7 or 6)
        _hpack_literal(4, path.encode()),  # :path
        _hpack_literal(1, authority.encode()),  # :authority
    ]
    if timeout_ms:  # the server gives up on the call at its deadline too, and drops the work
        block.append(_hpack_literal(b"grpc-timeout", grpc_timeout(timeout_ms)))
    block += [
        _hpack_literal(31, b"application/grpc"),  # content-type
        _hpack_literal(b"te", b"trailers"),
    ]
    if not any(name == "user-agent" for name, _ in metadata):
        block.append(_hpack_literal(58, b"loadgen-grpc"))  # user-agent (static index 58)
    for name, value in metadata:
        raw = value.encode("utf-8")
        if name.endswith("-bin"):  # binary metadata travels base64-encoded
            raw = base64.b64encode(raw).rstrip(b"=")
        block.append(_hpack_literal(name.encode("latin-1"), raw))
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


class _ConnectionGone(Exception):
    """No connection could be opened (its text is the gRPC error's details)."""


class _Stream:
    """One request/response exchange on a connection."""

    __slots__ = ("sid", "waiter", "payload", "window", "headers", "trailers", "data", "error",
                 "t_first", "t_sent", "t_done", "received")  # fmt: skip

    def __init__(self, waiter: asyncio.Future, payload: bytes) -> None:
        self.sid = 0  # assigned when its HEADERS go out
        self.waiter = waiter
        self.payload: memoryview | bytes | None = payload  # what is still to be sent
        self.window = 0
        self.headers: list | None = None
        self.trailers: list | None = None
        self.data: bytes | bytearray | None = None
        self.error: RequestError | None = None
        self.t_first = 0
        self.t_sent = 0
        self.t_done = 0
        self.received = 0  # DATA bytes since this stream's window was last topped up


class _H2Connection(asyncio.Protocol):
    """One HTTP/2 connection carrying unary gRPC calls as concurrent streams."""

    def __init__(self, header_block: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.ready = loop.create_future()  # the server's first SETTINGS came
        self.header_block = header_block
        self.decoder = _HpackDecoder()
        # Header blocks made only of indexed fields leave the HPACK table as it is, so the same
        # bytes decode the same way until a block that isn't one arrives: in steady state a
        # server sends the same few such blocks again and again (b"\x88\xc0\xbf", b"\xbe").
        self.decoded: dict[bytes, list] = {}
        self.buf = bytearray()
        self.streams: dict[int, _Stream] = {}
        self.queued: deque[_Stream] = deque()  # waiting for MAX_CONCURRENT_STREAMS to allow them
        self.blocked: deque[_Stream] = deque()  # waiting for flow-control window
        self.next_sid = 1
        self.send_window = _DEFAULT_WINDOW
        self.peer_initial_window = _DEFAULT_WINDOW
        self.peer_max_frame = 16384
        self.peer_max_streams = _LAST_STREAM_ID
        self.received = 0  # DATA bytes since the connection window was last topped up
        self.continuation: tuple[int, int, bytearray] | None = None  # (sid, flags, header block so far)
        self.closed = False  # no new streams (GOAWAY, closing, lost)
        self.lost = False

    @property
    def usable(self) -> bool:
        return not self.closed and self.next_sid <= _LAST_STREAM_ID

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        settings = b"".join(
            _SETTING.pack(k, v)
            for k, v in ((_S_ENABLE_PUSH, 0), (_S_INITIAL_WINDOW_SIZE, _MAX_WINDOW), (_S_MAX_FRAME_SIZE, _OUR_MAX_FRAME))
        )
        transport.write(
            _PREFACE
            + _frame(_SETTINGS, 0, 0, settings)
            + _frame(_WINDOW_UPDATE, 0, 0, _U32.pack(_MAX_WINDOW - _DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.lost = True
        reason = _one_line(str(exc)) if exc is not None else ""
        if not self.ready.done():
            self.ready.set_exception(
                _ConnectionGone(f"the connection closed before the server's HTTP/2 settings came{': ' + reason if reason else ''}: is it a gRPC port?")
            )
            self.ready.exception()  # retrieved, whoever waits
        self._fail_all(connection(f"connection to the server lost{': ' + reason if reason else ''}", "UNAVAILABLE"))

    def eof_received(self) -> bool:
        return False  # close; connection_lost fails what is in flight

    def data_received(self, data: bytes) -> None:
        now = perf_counter_ns()
        buf = self.buf
        if buf:
            buf += data
            data = buf
        size = len(data)
        pos = 0
        unpack = _FRAME_HEAD.unpack_from
        while size - pos >= 9:
            head, flags, sid = unpack(data, pos)
            length = head >> 8
            end = pos + 9 + length
            if end > size:
                break
            ftype = head & 0xFF
            payload = data[pos + 9 : end]
            pos = end
            sid &= 0x7FFFFFFF
            if self.continuation is not None and ftype != _CONTINUATION:
                self._connection_error(1, "a frame inside a header block")
            elif ftype == _DATA:
                self._on_data(sid, flags, payload)
            elif ftype == _HEADERS or ftype == _CONTINUATION:
                self._on_headers(ftype, sid, flags, payload, now)
            elif ftype == _SETTINGS:
                self._on_settings(flags, payload)
            elif ftype == _WINDOW_UPDATE:
                self._on_window_update(sid, payload)
            elif ftype == _PING:
                if not flags & _ACK and len(payload) == 8:
                    self.transport.write(_frame(_PING, _ACK, 0, payload))
            elif ftype == _RST_STREAM:
                self._on_rst_stream(sid, payload)
            elif ftype == _GOAWAY:
                self._on_goaway(payload)
            elif ftype == _PUSH_PROMISE:
                self._connection_error(1, "PUSH_PROMISE although push is disabled")
            # PRIORITY and unknown frame types are ignored
            if self.lost:
                return
        if pos == size:
            if buf:
                buf.clear()
        elif data is buf:
            del buf[:pos]
        else:
            buf += data[pos:]

    # -- frames -----------------------------------------------------------------------------

    def _on_data(self, sid: int, flags: int, payload: bytes) -> None:
        length = len(payload)
        self.received += length
        if self.received >= _REFILL_AT:
            self.transport.write(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(self.received)))
            self.received = 0
        stream = self.streams.get(sid)
        if stream is None:  # reset or cancelled by us: its bytes still counted for the connection
            return
        if flags & _PADDED:
            if not payload or payload[0] >= length:
                self._connection_error(1, "bad DATA padding")
                return
            payload = payload[1 : length - payload[0]]
        stream.received += length
        if stream.received >= _REFILL_AT and not flags & _END_STREAM:
            self.transport.write(_frame(_WINDOW_UPDATE, 0, sid, _U32.pack(stream.received)))
            stream.received = 0
        if stream.data is None:
            stream.data = payload
        elif isinstance(stream.data, bytearray):
            stream.data += payload
        else:
            stream.data = bytearray(stream.data) + payload
        if flags & _END_STREAM:
            self._finish(stream)

    def _on_headers(self, ftype: int, sid: int, flags: int, payload: bytes, now: int) -> None:
        if ftype == _CONTINUATION:
            if self.continuation is None or self.continuation[0] != sid:
                self._connection_error(1, "unexpected CONTINUATION")
                return
            self.continuation[2].extend(payload)
            sid, flags, block = self.continuation[0], self.continuation[1] | (flags & _END_HEADERS), self.continuation[2]
        else:
            if self.continuation is not None:
                self._connection_error(1, "HEADERS inside a header block")
                return
            start, end = 0, len(payload)
            if flags & _PADDED:
                if not payload or payload[0] >= end:
                    self._connection_error(1, "bad HEADERS padding")
                    return
                start, end = 1, end - payload[0]
            if flags & _PRIORITY_FLAG:
                start += 5
            block = payload[start:end]
        if not flags & _END_HEADERS:
            self.continuation = (sid, flags & _END_STREAM, bytearray(block))
            return
        self.continuation = None
        block = bytes(block)
        headers = self.decoded.get(block)
        if headers is None:
            try:
                headers = self.decoder.decode(block, raw=True)  # every block, to keep the table in step
            except _HpackError as exc:
                self._connection_error(9, f"HPACK: {exc}")
                return
            if _indexed_only(block):
                if len(self.decoded) < 64:
                    self.decoded[block] = headers
            else:  # the dynamic table may have changed: the cached blocks may mean something else now
                self.decoded.clear()
        stream = self.streams.get(sid)
        if stream is None:
            return
        if stream.headers is None:
            stream.headers = headers
            stream.t_first = now
        else:
            stream.trailers = headers
        if flags & _END_STREAM:
            self._finish(stream)

    def _on_settings(self, flags: int, payload: bytes) -> None:
        if flags & _ACK:
            return
        if len(payload) % 6:
            self._connection_error(6, "SETTINGS of a bad length")
            return
        for i in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, i)
            if key == _S_INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    self._connection_error(3, "INITIAL_WINDOW_SIZE too large")
                    return
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.window += delta
            elif key == _S_MAX_FRAME_SIZE:
                self.peer_max_frame = max(16384, min(value, _OUR_MAX_FRAME))
            elif key == _S_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
        self.transport.write(_frame(_SETTINGS, _ACK, 0))
        if not self.ready.done():
            self.ready.set_result(None)
        self._unblock()
        self._start_queued()

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            self._connection_error(6, "WINDOW_UPDATE of a bad length")
            return
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if sid == 0:
            self.send_window += increment
            if self.send_window > _MAX_WINDOW:
                self._connection_error(3, "connection window overflow")
                return
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return
            stream.window += increment
        self._unblock()

    def _on_rst_stream(self, sid: int, payload: bytes) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        code = _U32.unpack(payload[:4])[0] if len(payload) >= 4 else 2
        status = _RST_TO_GRPC.get(code, "INTERNAL")
        stream.error = grpc_status(status, f"the server reset the stream ({_h2_error_name(code)})")
        self._finish(stream, reset_by_peer=True)

    def _on_goaway(self, payload: bytes) -> None:
        self.closed = True
        if len(payload) < 8:
            self._connection_error(6, "GOAWAY of a bad length")
            return
        last_sid, code = struct.unpack_from(">II", payload)
        last_sid &= 0x7FFFFFFF
        debug = _one_line(bytes(payload[8:]).decode("utf-8", errors="replace"))
        reason = f"the server closed the connection (GOAWAY {_h2_error_name(code)}{': ' + debug if debug else ''})"
        for stream in [s for s in self.streams.values() if s.sid > last_sid]:
            stream.error = connection(reason, "UNAVAILABLE")
            self._finish(stream, reset_by_peer=True)
        self._fail_queued(connection(reason, "UNAVAILABLE"))
        if not self.streams:
            self.transport.close()

    def _connection_error(self, code: int, what: str) -> None:
        """A protocol violation by the server: GOAWAY, close, fail everything in flight."""
        if self.lost:
            return
        self.transport.write(_frame(_GOAWAY, 0, 0, struct.pack(">II", max(self.next_sid - 2, 0), code)))
        self.closed = self.lost = True
        self.transport.close()
        self._fail_all(protocol(f"bad HTTP/2 from the server: {what}", "INTERNAL"))

    # -- streams ----------------------------------------------------------------------------

    def start(self, stream: _Stream) -> None:
        """Opens `stream` now, or queues it while the server's concurrent-stream limit is reached."""
        if self.closed:  # lost or going away since the caller picked it: a rare race
            stream.error = connection("the connection closed as the request started", "UNAVAILABLE")
            stream.waiter.set_result(None)
            return
        if len(self.streams) >= self.peer_max_streams:
            self.queued.append(stream)
            return
        sid = self.next_sid
        self.next_sid = sid + 2
        if self.next_sid > _LAST_STREAM_ID:
            self.closed = True  # the next request opens a new connection
        stream.sid = sid
        stream.window = self.peer_initial_window
        self.streams[sid] = stream
        block = self.header_block
        max_frame = self.peer_max_frame
        if len(block) <= max_frame:
            frames = [_FRAME_HEAD.pack(len(block) << 8 | _HEADERS, _END_HEADERS, sid), block]
        else:
            frames = [_FRAME_HEAD.pack(max_frame << 8 | _HEADERS, 0, sid), block[:max_frame]]
            for i in range(max_frame, len(block), max_frame):
                piece = block[i : i + max_frame]
                last = i + max_frame >= len(block)
                frames += [_FRAME_HEAD.pack(len(piece) << 8 | _CONTINUATION, _END_HEADERS if last else 0, sid), piece]
        self._send_data(stream, frames)

    def _send_data(self, stream: _Stream, frames: list) -> None:
        """Writes `frames` and as much of the stream's payload as the windows allow."""
        payload = stream.payload
        n = min(len(payload), self.send_window, stream.window)
        sid = stream.sid
        if n > 0:
            last = n == len(payload)
            max_frame = self.peer_max_frame
            if last and n <= max_frame:
                frames += [_FRAME_HEAD.pack(n << 8 | _DATA, _END_STREAM, sid), payload]
            else:
                view = memoryview(payload)
                for i in range(0, n, max_frame):
                    piece = view[i : min(i + max_frame, n)]
                    end = last and i + max_frame >= n
                    frames += [_FRAME_HEAD.pack(len(piece) << 8 | _DATA, _END_STREAM if end else 0, sid), piece]
            self.send_window -= n
            stream.window -= n
            stream.payload = None if last else memoryview(payload)[n:]
        if stream.payload is None:
            stream.t_sent = perf_counter_ns()  # built: what remains is the socket's (and grpc's) part
        elif stream not in self.blocked:
            self.blocked.append(stream)
        if frames:
            self.transport.write(b"".join(frames))

    def _unblock(self) -> None:
        blocked = self.blocked
        for _ in range(len(blocked)):
            if self.send_window <= 0:
                return
            stream = blocked.popleft()
            if stream.payload is not None and self.streams.get(stream.sid) is stream:
                self._send_data(stream, [])

    def _start_queued(self) -> None:
        while self.queued and len(self.streams) < self.peer_max_streams:
            if self.closed:
                self._fail_queued(connection("the connection was closing before the request could start", "UNAVAILABLE"))
                return
            self.start(self.queued.popleft())

    def _finish(self, stream: _Stream, reset_by_peer: bool = False) -> None:
        """The response is complete (or failed): wake its caller and release the stream."""
        stream.t_done = perf_counter_ns()
        del self.streams[stream.sid]
        if stream.payload is not None:  # answered before the request was all sent
            stream.payload = None
            if not reset_by_peer:
                self.transport.write(_frame(_RST_STREAM, 0, stream.sid, _U32.pack(0)))  # NO_ERROR
        waiter = stream.waiter
        if not waiter.done():
            waiter.set_result(None)
        if self.queued:
            self._start_queued()
        if self.closed and not self.streams and not self.lost:
            self.transport.close()

    def cancel(self, stream: _Stream) -> None:
        """The caller gave up on `stream` (its task was cancelled): reset it, keep the connection."""
        if stream.sid == 0:
            try:
                self.queued.remove(stream)
            except ValueError:
                pass
            return
        if self.streams.pop(stream.sid, None) is None:
            return
        stream.payload = None
        if not self.lost:
            self.transport.write(_frame(_RST_STREAM, 0, stream.sid, _U32.pack(8)))  # CANCEL
            if self.queued:
                self._start_queued()
            if self.closed and not self.streams:
                self.transport.close()

    def _fail_queued(self, error: RequestError) -> None:
        while self.queued:
            stream = self.queued.popleft()
            stream.error = error
            if not stream.waiter.done():
                stream.waiter.set_result(None)

    def _fail_all(self, error: RequestError) -> None:
        streams, self.streams = self.streams, {}
        self.blocked.clear()
        for stream in streams.values():
            stream.error = stream.error or error
            if not stream.waiter.done():
                stream.waiter.set_result(None)
        self._fail_queued(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.lost:
            self.transport.close()


def _header(headers: list | None, name: bytes) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def _outcome_error(stream: _Stream, deadline_error: RequestError | None = None) -> RequestError | None:
    """The gRPC error the finished stream carries, or None for a good response; a call that
    the server ended at its grpc-timeout is `deadline_error`, a timeout as the client's own."""
    if stream.error is not None:
        return stream.error
    headers = stream.headers
    if headers is None:
        return protocol("the stream ended without response headers", "INTERNAL")
    status = _header(headers, b":status")
    if status != b"200":
        code = _HTTP_TO_GRPC.get(int(status) if status and status.isdigit() else 0, "UNKNOWN")
        return grpc_status(code, f"the server answered HTTP {(status or b'?').decode(errors='replace')}")
    content_type = _header(headers, b"content-type") or b""
    if not content_type.startswith(b"application/grpc"):
        return protocol(f"the server answered with content-type {content_type.decode(errors='replace')!r}, not gRPC", "UNKNOWN")
    trailers = stream.trailers if stream.trailers is not None else headers
    status_value = _header(trailers, b"grpc-status")
    if status_value != b"0":
        if status_value is None:
            return protocol("the response has no grpc-status", "INTERNAL")
        number = int(status_value) if status_value.isdigit() else -1
        if number == _DEADLINE_EXCEEDED and deadline_error is not None:
            return deadline_error
        code = _GRPC_CODES[number] if 0 < number < len(_GRPC_CODES) else "UNKNOWN"
        message = unquote_to_bytes(_header(trailers, b"grpc-message") or b"").decode("utf-8", errors="replace")
        return grpc_status(code, message)
    return None


def _message(data: bytes | bytearray | None) -> bytes | memoryview:
    """The one gRPC message in a response's DATA: its 5-byte prefix checked and stripped."""
    if data is None or len(data) < 5:
        raise ValueError("no message in the response")
    if data[0] != 0:
        raise ValueError("a compressed message (compression was never offered)")
    length = int.from_bytes(data[1:5], "big")
    if len(data) != 5 + length:
        raise ValueError(f"a message of {len(data) - 5} bytes where its prefix says {length}")
    return memoryview(data)[5:]


class _Prepared:
    """A request built once: the marshalled ModelInferRequest as a gRPC message (5-byte prefix)."""

    __slots__ = ("framed",)

    def __init__(self, raw: bytes) -> None:
        self.framed = b"\x00" + len(raw).to_bytes(4, "big") + raw


class GrpcTransport(Transport):
    """Triton over gRPC. Connections are opened on first use, inside the running event loop."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        tls: TlsOptions | None = None,
        request_timeout_ms: float | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.url = redact_url(url)  # as messages show it
        self._connect_timeout_s = connect_timeout_s
        # The server's DEADLINE_EXCEEDED at the grpc-timeout sent is a timeout, as the engine's own is.
        self._deadline_error = timeout(request_timeout_ms) if request_timeout_ms else None
        if url_credentials(url) is not None:
            raise UsageError("gRPC takes no user:password@ in -u: send credentials as metadata, e.g. -H 'authorization: Bearer TOKEN'")
        self._tls = tls
        # Built once: a connection pays for its handshake, and a request for nothing but encryption.
        self._ssl = tls.context("h2") if tls is not None else None
        self._headers = {str(k).strip().lower(): str(v).strip() for k, v in (headers or {}).items()}
        for name, value in self._headers.items():
            check_header(name, value)
        self._metadata = tuple(self._headers.items())
        self._client = None
        self._address = host, port = split_host_port(url, 8001)
        self._target = authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._header_block = _request_header_block(authority, _INFER_METHOD, self._metadata, tls is not None, request_timeout_ms)
        self._conn: _H2Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future | None = None
        self._closed = False

    def _get_client(self):
        if self._client is None:
            tls = self._tls
            credentials = {} if tls is None else {
                "ssl": True, "root_certificates": tls.ca_file, "private_key": tls.key_file, "certificate_chain": tls.cert_file,
            }  # fmt: skip
            self._client = grpcclient.InferenceServerClient(self._target, **credentials)
        return self._client

    # -- control calls ----------------------------------------------------------------------

    async def _control(self, what: str, method: str, *args: str, model: str = "", version: str = ""):
        """Calls tritonclient's `method` for its response proto; failures as typed one-line errors."""
        client = self._get_client()
        try:
            return await getattr(client, method)(*args, headers=self._headers, client_timeout=_CONTROL_TIMEOUT_S)
        except (InferenceServerException, grpc.RpcError) as exc:
            status = _status_name(exc)
            message = _one_line(exc.message() if hasattr(exc, "message") else exc.details())
            if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and "model" not in message.lower():
                if self._tls is not None:
                    message = tls_failure(message, "grpc") or message
                else:  # a clearer error when nothing, or not gRPC, answers there (the probe speaks plain HTTP)
                    await check_port("grpc", *self._address, self.url)
                raise ServerError(f"cannot reach Triton over gRPC{' with TLS' if self._tls else ''} at {self.url}: {message}") from None
            unknown = None
            if status in ("NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE"):
                unknown = unknown_model_error(message, model, version, self.url)
            if unknown is not None:
                raise unknown from None
            raise ServerError(f"{what} failed at {self.url}: gRPC {status}: {message}") from None

    async def server_metadata(self) -> dict[str, Any]:
        return to_http_json(await self._control("server metadata", "get_server_metadata"))

    async def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        response = await self._control("model metadata", "get_model_metadata", model, str(version), model=model, version=version)
        return to_http_json(response)

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        response = await self._control("model config", "get_model_config", model, str(version), model=model, version=version)
        return to_http_json(response.config)

    async def model_statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        response = await self._control(
            "model statistics", "get_inference_statistics", model, str(version), model=model, version=version
        )
        return to_http_json(response)

    async def server_live(self, timeout_s: float) -> str | None:
        try:
            live = await self._get_client().is_server_live(headers=self._headers, client_timeout=timeout_s)
        except (InferenceServerException, grpc.RpcError) as exc:
            return f"gRPC {_status_name(exc)}: {_one_line(exc.message() if hasattr(exc, 'message') else exc.details())}"
        return None if live else "it reports that it is not live"

    # -- the hot path -----------------------------------------------------------------------

    def prepare(self, model: str, version: str, inputs: list[InputTensor], outputs: list[str]) -> _Prepared:
        request = service_pb2.ModelInferRequest(model_name=model, model_version=str(version or ""))
        for tensor in inputs:
            entry = request.inputs.add()
            entry.name = tensor.name
            entry.datatype = tensor.datatype
            entry.shape.extend(int(d) for d in tensor.shape)
            request.raw_input_contents.append(tensor.data)
        for name in outputs:
            request.outputs.add().name = name
        return _Prepared(request.SerializeToString())

    async def _open(self) -> _H2Connection:
        """A new connection, once the server's SETTINGS have come (as grpc waits for them: a
        server's MAX_CONCURRENT_STREAMS must be known before the first burst of streams)."""
        loop = self._loop
        host, port = self._address
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _H2Connection(self._header_block, loop), host, port, ssl=self._ssl, server_hostname=host if self._ssl else None
                ),
                self._connect_timeout_s,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            reason = _one_line(str(exc)) or f"no connection within {self._connect_timeout_s:g} s"
            if self._ssl is not None:
                reason = tls_failure(reason, "grpc") or reason
            raise _ConnectionGone(f"cannot connect to {self.url}: {reason}") from None
        if self._ssl is not None and transport.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            conn.close()
            raise _ConnectionGone(f"{self.url} did not agree to HTTP/2 over TLS (ALPN h2): is it a gRPC port?")
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), self._connect_timeout_s)
        except asyncio.TimeoutError:
            conn.close()
            raise _ConnectionGone(f"no HTTP/2 settings from {self.url} within {self._connect_timeout_s:g} s: is it a gRPC port?") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _opened(self, task: asyncio.Task) -> None:
        self._connecting = None
        if task.cancelled() or task.exception() is not None:  # exception() marks it retrieved
            return
        conn = task.result()
        if self._closed:
            conn.close()
        else:
            self._conn = conn

    async def _connection(self) -> _H2Connection:
        """The open connection, or a new one. The connecting is a task of its own that every
        request arriving meanwhile waits for: a caller cancelled meanwhile doesn't cancel it."""
        if self._closed:
            raise _ConnectionGone("the transport was closed")
        task = self._connecting
        if task is None:
            self._loop = asyncio.get_running_loop()
            task = self._connecting = self._loop.create_task(self._open())
            task.add_done_callback(self._opened)
        try:
            conn = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and self._closed:  # close() gave up on it, not our caller
                raise _ConnectionGone("the transport was closed") from None
            raise
        if self._closed:
            raise _ConnectionGone("the transport was closed")
        return conn

    async def infer(self, prepared: _Prepared) -> InferOutcome:
        t0 = perf_counter_ns()
        conn = self._conn
        if conn is None or not conn.usable:
            try:
                conn = await self._connection()
            except _ConnectionGone as exc:
                return InferOutcome(0, 0, connection(str(exc), "UNAVAILABLE"))
        stream = _Stream(self._loop.create_future(), prepared.framed)
        conn.start(stream)
        try:
            await stream.waiter
        except asyncio.CancelledError:
            conn.cancel(stream)
            raise
        t_sent = stream.t_sent or stream.t_first or stream.t_done
        send_ns = max(t_sent - t0, 0)
        # reading (first frame to END_STREAM) plus unmarshalling, without the wait for this task's turn
        read_ns = stream.t_done - stream.t_first if stream.t_first else 0
        error = _outcome_error(stream, self._deadline_error)
        if error is not None:
            return InferOutcome(send_ns, read_ns, error)
        t1 = perf_counter_ns()
        try:
            _parse_response(_message(stream.data))
        except Exception as exc:  # noqa: BLE001 - a malformed response is an outcome, not a crash
            return InferOutcome(send_ns, read_ns + perf_counter_ns() - t1, protocol(f"bad response: {exc}", "INTERNAL"))
        return InferOutcome(send_ns, read_ns + perf_counter_ns() - t1)

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()


_parse_response = service_pb2.ModelInferResponse.FromString
