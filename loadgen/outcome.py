"""What one request came to: its timings and, when it failed, a typed error.

Reports group failures by their kind, read from `RequestError.kind`, never from the text. The
text each kind is shown and stored under (`label`: "HTTP 503", "gRPC UNAVAILABLE", "timeout",
"unanswered", "connection error", "protocol error", "output mismatch") is summary.json's, so
gates and older summaries keep their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# The message kept in place of a window's further distinct messages (samples.MAX_DISTINCT_ERRORS).
OTHER_MESSAGES = "(other messages)"


class FailureKind(Enum):
    HTTP_STATUS = "http_status"  # the server answered with an HTTP error status; code: the status
    GRPC_STATUS = "grpc_status"  # the server answered with a gRPC error status; code: its name
    TIMEOUT = "timeout"  # no answer within the request deadline (ours, or the server's grpc-timeout)
    UNANSWERED = "unanswered"  # still out when its level's drain ran out, and abandoned
    CONNECTION = "connection"  # no connection, or it broke before the response was complete
    PROTOCOL = "protocol"  # the server's bytes broke the protocol (HTTP/1.1, HTTP/2, gRPC framing)
    OUTPUT_MISMATCH = "output_mismatch"  # an answer that differs from its validation_data (loadgen.validation)


_LABELS = {
    FailureKind.TIMEOUT: "timeout",
    FailureKind.UNANSWERED: "unanswered",
    FailureKind.CONNECTION: "connection error",
    FailureKind.PROTOCOL: "protocol error",
    FailureKind.OUTPUT_MISMATCH: "output mismatch",
}


@dataclass(frozen=True, slots=True)
class RequestError:
    """Why a request failed: its kind, a code where the kind has one (an HTTP status, a gRPC status
    name such as "UNAVAILABLE"), and the message (the server's own, on one line)."""

    kind: FailureKind
    code: int | str | None
    message: str

    @property
    def label(self) -> str:
        """The kind as reports and summary.json name it: "HTTP 503", "gRPC UNAVAILABLE", "timeout", ..."""
        if self.kind is FailureKind.HTTP_STATUS:
            return f"HTTP {self.code}"
        if self.kind is FailureKind.GRPC_STATUS:
            return f"gRPC {self.code}"
        return _LABELS[self.kind]

    def __str__(self) -> str:
        return f"{self.label}: {self.message}" if self.message else self.label

    def others(self) -> RequestError:
        """The error that counts this kind's messages beyond a window's distinct ones."""
        return RequestError(self.kind, self.code, OTHER_MESSAGES)


def http_status(status: int, message: str = "") -> RequestError:
    return RequestError(FailureKind.HTTP_STATUS, status, " ".join(message.split()))


def grpc_status(code: str, message: str = "") -> RequestError:
    return RequestError(FailureKind.GRPC_STATUS, code, " ".join(message.split()))


def timeout(request_timeout_ms: float) -> RequestError:
    return RequestError(FailureKind.TIMEOUT, None, f"no response within {request_timeout_ms:g} ms")


def unanswered(drain_s: float) -> RequestError:
    return RequestError(FailureKind.UNANSWERED, None, f"no response {drain_s:g} s after the level's load stopped")


def connection(message: str, code: str | None = None) -> RequestError:
    """`code`: what gRPC names the failure (UNAVAILABLE), for a gRPC request; None over HTTP."""
    return RequestError(FailureKind.CONNECTION, code, " ".join(message.split()))


def protocol(message: str, code: str | None = None) -> RequestError:
    return RequestError(FailureKind.PROTOCOL, code, " ".join(message.split()))


def output_mismatch(message: str) -> RequestError:
    """`message` names the output and what differs (the first differing element, by its index)."""
    return RequestError(FailureKind.OUTPUT_MISMATCH, None, " ".join(message.split()))


@dataclass(frozen=True, slots=True)
class InferOutcome:
    """What one request cost on the wire. Durations in ns; `error` is None on success.

    send_ns: from the start of the request until its last byte was handed to the socket
    (gRPC: request marshalling). recv_ns: from the first byte of the response until it was
    fully read and parsed (gRPC: response unmarshalling). The rest of the request's time is
    response wait. check_ns: checking the response against its validation_data, after it was
    read; not part of the request's latency (the engine takes it off, as perf_analyzer
    validates after its timestamps).
    """

    send_ns: int
    recv_ns: int
    error: RequestError | None = None
    check_ns: int = 0


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """What one streamed request (`Transport.stream`: a decoupled model's responses) cost, and when
    each of its responses came.

    send_ns, recv_ns and error as InferOutcome's (recv_ns: parsing every response). response_ns:
    the monotonic_ns at which each response that carried outputs was read, in order; an empty
    final response that only carries the final flag is not one. tokens: the element count of the
    prepared token output in each of those responses (empty without one). A stream that fails
    part way keeps the responses read before the failure.
    """

    send_ns: int
    recv_ns: int
    response_ns: tuple[int, ...]
    tokens: tuple[int, ...] = ()
    error: RequestError | None = None
    # Not a field: streamed responses are not checked against validation_data, and the engine takes a
    # response's checking off its end for either kind of outcome.
    check_ns = 0
