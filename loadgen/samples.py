"""Per-request samples, gathered into the measurement window each request completes in."""

from __future__ import annotations

import asyncio
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from loadgen.outcome import InferOutcome, RequestError

# Distinct error messages kept per window; further ones are counted under their kind alone, so a
# server that puts request ids in its messages cannot grow the window without bound.
MAX_DISTINCT_ERRORS = 32

# One completed request as its line of --profile-export-file (loadgen.profile_export.request_formatter):
# (intended send or None in closed loop, actual send, end, error or None), monotonic ns → its JSON text.
RequestFormat = Callable[[int | None, int, int, RequestError | None], str]


class RequestLines:
    """A window's requests as profile-export JSON objects, comma-separated. Handed over once: `take`
    returns them and lets them go, so a window kept for its figures does not keep its requests too."""

    __slots__ = ("count", "_text")

    def __init__(self, lines: list[str]) -> None:
        self.count = len(lines)
        self._text = ",\n".join(lines)

    def take(self) -> str:
        text, self._text = self._text, ""
        return text


@dataclass(frozen=True)
class WindowRequests:
    """The requests that completed in one measurement window, for --profile-export-file: the window's
    bounds in ns since the Unix epoch, and its `count` requests as comma-separated JSON objects."""

    start_ns: int
    end_ns: int
    count: int
    json: str


@dataclass(frozen=True)
class WindowSamples:
    """Every request that completed between two window boundaries. Times in ns (monotonic clock).

    Successes are kept request by request (for percentiles); failures as their latencies and a
    count per distinct error (a RequestError: kind, code, message; at most MAX_DISTINCT_ERRORS, in
    order of first appearance). Latency runs from the intended send time in open
    loop; there `sent_latency_ns` also has it from the actual send, and `lag_ns` the delay of
    each request sent in the window. Both are empty in closed loop.
    """

    start_ns: int
    end_ns: int
    latency_ns: np.ndarray
    send_ns: np.ndarray
    recv_ns: np.ndarray
    error_latency_ns: np.ndarray
    errors: Counter = field(default_factory=Counter)
    sent_latency_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    lag_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    held_back: int = 0
    outstanding: int = 0  # requests in flight at the window's end
    oldest_outstanding_ns: int = 0  # how long the oldest of them had been out then; 0 with none
    requests: RequestLines | None = None  # with --profile-export-file: every request of the window

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def success_count(self) -> int:
        return int(self.latency_ns.size)

    @property
    def error_count(self) -> int:
        return int(self.error_latency_ns.size)


class SampleRecorder:
    """Collects outcomes on the engine's hot path; `close_window` hands them over as one window.

    Typed arrays keep each request to 8 bytes per figure, with no Python object per request,
    and an append costs tens of nanoseconds; numpy views them without a copy at window close. With `count_target` set, `window_full` fires once that many
    requests have completed in the current window (count-window mode). With `request_format`
    (--profile-export-file), each request is also kept as its export line, formatted as it completes
    so that no window boundary stalls the load to format a window's worth at once.
    """

    def __init__(self, now_ns: int, count_target: int | None = None, request_format: RequestFormat | None = None) -> None:
        self._count_target = count_target
        self._format = request_format
        self.window_full = asyncio.Event()
        self._open(now_ns)

    def _open(self, now_ns: int) -> None:
        self._start_ns = now_ns
        self._latency = array("q")
        self._send = array("q")
        self._recv = array("q")
        self._error_latency = array("q")
        self._errors: Counter = Counter()
        self._sent_latency = array("q")
        self._lag = array("q")
        self.held_back = 0  # open-loop requests that waited for a --max-inflight slot
        self._completed = 0
        self._lines: list[str] | None = [] if self._format is not None else None
        self.window_full.clear()

    @property
    def start_ns(self) -> int:
        return self._start_ns

    def record_send(self, intended_ns: int, sent_ns: int) -> None:
        """An open-loop request leaves, `sent_ns - intended_ns` after it was due."""
        self._lag.append(sent_ns - intended_ns)

    def record(self, intended_ns: int | None, sent_ns: int, end_ns: int, outcome: InferOutcome) -> None:
        start_ns = sent_ns if intended_ns is None else intended_ns
        if outcome.error is None:
            self._latency.append(end_ns - start_ns)
            self._send.append(outcome.send_ns)
            self._recv.append(outcome.recv_ns)
            if intended_ns is not None:
                self._sent_latency.append(end_ns - sent_ns)
        else:
            self._error_latency.append(end_ns - start_ns)
            errors, error = self._errors, outcome.error
            if error not in errors and len(errors) >= MAX_DISTINCT_ERRORS:
                error = error.others()
            errors[error] += 1
        if self._format is not None:
            self._lines.append(self._format(intended_ns, sent_ns, end_ns, outcome.error))
        self._completed += 1
        if self._completed == self._count_target:
            self.window_full.set()

    def close_window(self, now_ns: int, outstanding: int = 0, oldest_outstanding_ns: int = 0) -> WindowSamples:
        """The window so far, ending at `now_ns` with `outstanding` requests still in flight."""
        window = WindowSamples(
            start_ns=self._start_ns,
            end_ns=now_ns,
            latency_ns=np.frombuffer(self._latency, dtype=np.int64),
            send_ns=np.frombuffer(self._send, dtype=np.int64),
            recv_ns=np.frombuffer(self._recv, dtype=np.int64),
            error_latency_ns=np.frombuffer(self._error_latency, dtype=np.int64),
            errors=self._errors,
            sent_latency_ns=np.frombuffer(self._sent_latency, dtype=np.int64),
            lag_ns=np.frombuffer(self._lag, dtype=np.int64),
            held_back=self.held_back,
            outstanding=outstanding,
            oldest_outstanding_ns=oldest_outstanding_ns,
            requests=RequestLines(self._lines) if self._lines is not None else None,
        )
        self._open(now_ns)
        return window
