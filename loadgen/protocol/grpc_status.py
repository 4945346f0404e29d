"""gRPC over HTTP/2 (gRPC's PROTOCOL-HTTP2 doc), without sockets: status codes and their names,
what an HTTP/2 error code or an HTTP status means as a gRPC status, the `grpc-timeout` value, and
what a finished stream (loadgen.protocol.h2) came to: an outcome error or the response message.

Errors carry the status grpc would name: a reset stream maps its HTTP/2 error code (gRPC's
table), a non-200 HTTP status likewise; a lost connection, or one that went away before the
server processed the request, is a connection error (UNAVAILABLE); bytes that break HTTP/2 or
gRPC's framing are a protocol error.
"""

from __future__ import annotations

import math
import struct
from urllib.parse import unquote_to_bytes

from loadgen.outcome import RequestError, connection, grpc_status, protocol
from loadgen.protocol.h2 import Failure, Stream, StreamError

CODES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
DEADLINE_EXCEEDED = CODES.index("DEADLINE_EXCEEDED")
# RST_STREAM's HTTP/2 error code -> gRPC status (REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM,
# INADEQUATE_SECURITY; every other code is INTERNAL)
RST_TO_GRPC = {7: "UNAVAILABLE", 8: "CANCELLED", 11: "RESOURCE_EXHAUSTED", 12: "PERMISSION_DENIED"}
# a response's HTTP status -> gRPC status (every other non-200 status is UNKNOWN)
HTTP_TO_GRPC = {400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
                429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}  # fmt: skip
_PREFIX = struct.Struct(">BI")  # a gRPC message's: the compressed flag, the length
# what a stream error becomes: (the outcome's constructor, the gRPC status it names)
_FAILURES = {
    Failure.GOAWAY: (connection, "UNAVAILABLE"),
    Failure.LOST: (connection, "UNAVAILABLE"),
    Failure.PROTOCOL: (protocol, "INTERNAL"),
    Failure.MALFORMED: (protocol, "INTERNAL"),
    Failure.TOO_LARGE: (protocol, "RESOURCE_EXHAUSTED"),  # grpc's own status for metadata over its limit
}


def grpc_timeout(timeout_ms: float) -> bytes:
    """The `grpc-timeout` value for a deadline: at most 8 digits, in the finest unit that holds it,
    rounded up (TimeoutValue TimeoutUnit, units n u m S M H)."""
    if not timeout_ms > 0:
        raise ValueError("a deadline must be above 0 ms")
    for unit, per_ms in ((b"n", 1e6), (b"u", 1e3), (b"m", 1.0), (b"S", 1e-3), (b"M", 1e-3 / 60), (b"H", 1e-3 / 3600)):
        value = math.ceil(timeout_ms * per_ms - 1e-9)
        if value < 10**8:
            return b"%d%s" % (value, unit)
    return b"99999999H"  # 11,000 years: no deadline in practice


def stream_failure(error: StreamError) -> RequestError:
    """An HTTP/2 stream error as the outcome's error."""
    if error.failure is Failure.RESET:
        return grpc_status(RST_TO_GRPC.get(error.code, "INTERNAL"), error.message)
    make, code = _FAILURES[error.failure]
    return make(error.message, code)


def _header(headers: list | None, name: bytes) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def outcome_error(stream: Stream, deadline_error: RequestError | None = None) -> RequestError | None:
    """The gRPC error a finished stream carries, or None for a good response; a call that the
    server ended at its grpc-timeout is `deadline_error`, a timeout as the client's own."""
    if stream.error is not None:
        return stream_failure(stream.error)
    headers = stream.headers
    if headers is None:
        return protocol("the stream ended without response headers", "INTERNAL")
    status = _header(headers, b":status")
    if status != b"200":
        code = HTTP_TO_GRPC.get(int(status) if status and status.isdigit() and len(status) == 3 else 0, "UNKNOWN")
        return grpc_status(code, f"the server answered HTTP {(status or b'?').decode(errors='replace')}")
    content_type = _header(headers, b"content-type") or b""
    if not content_type.startswith(b"application/grpc"):
        return protocol(f"the server answered with content-type {content_type.decode(errors='replace')!r}, not gRPC", "UNKNOWN")
    trailers = stream.trailers if stream.trailers is not None else headers
    status_value = _header(trailers, b"grpc-status")
    if status_value != b"0":
        if status_value is None:
            return protocol("the response has no grpc-status", "INTERNAL")
        number = int(status_value) if status_value.isdigit() and len(status_value) <= 3 else -1
        if number == DEADLINE_EXCEEDED and deadline_error is not None:
            return deadline_error
        code = CODES[number] if 0 < number < len(CODES) else "UNKNOWN"
        message = unquote_to_bytes(_header(trailers, b"grpc-message") or b"").decode("utf-8", errors="replace")
        return grpc_status(code, message)
    return None


def response_message(data: bytes | bytearray | None) -> memoryview:
    """The one gRPC message in a response's DATA: its 5-byte prefix checked and stripped."""
    if data is None or len(data) < 5:
        raise ValueError("no message in the response")
    compressed, length = _PREFIX.unpack_from(data)
    if compressed != 0:
        raise ValueError("a compressed message (compression was never offered)")
    if len(data) != 5 + length:
        raise ValueError(f"a message of {len(data) - 5} bytes where its prefix says {length}")
    return memoryview(data)[5:]
