"""Per-request samples, gathered into the measurement window each request completes in."""

from __future__ import annotations

import asyncio
import random
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import sub

import numpy as np

from loadgen.outcome import InferOutcome, RequestError, StreamOutcome

# Distinct error messages kept per window; further ones are counted under their kind alone, so a
# server that puts request ids in its messages cannot grow the window without bound.
MAX_DISTINCT_ERRORS = 32
# Streamed requests whose responses a window keeps for the level's examples (StreamStats.examples):
# its first, its slowest and this many more drawn at random (a reservoir), so that the ones nearest the
# level's percentiles can be picked at its end while the window holds a few Python objects, not one per request.
SAMPLED_EXAMPLES = 32

# A streamed request kept as an example: its latency and each response's offset from its start, in ns.
StreamExample = tuple[int, tuple[int, ...]]

# One completed request as its line of --profile-export-file (loadgen.profile_export.request_formatter):
# (intended send or None in closed loop, actual send, end, error or None, a stream's responses), monotonic
# ns → its JSON text.
RequestFormat = Callable[[int | None, int, int, RequestError | None, tuple[int, ...]], str]


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
class StreamGoodput:
    """The bounds a successful streamed request must meet to count as goodput: every one given (None:
    not bounded). Its latency within `latency_ms`, its first response within `ttft_ms` (a request
    without a response misses it), and every gap between two consecutive responses within `itl_ms`
    (genai-perf bounds the request's average gap instead; a single stall is what a reader sees)."""

    latency_ms: float | None = None
    ttft_ms: float | None = None
    itl_ms: float | None = None

    def good(self, latency_ns: int, ttft_ns: int | None, max_itl_ns: int) -> bool:
        """Whether a request with this latency, time to first response (None: no response) and
        longest gap between responses (0 below two) meets every bound."""
        if self.latency_ms is not None and latency_ns > self.latency_ms * 1e6:
            return False
        if self.ttft_ms is not None and (ttft_ns is None or ttft_ns > self.ttft_ms * 1e6):
            return False
        return self.itl_ms is None or max_itl_ns <= self.itl_ms * 1e6


@dataclass(frozen=True)
class WindowSamples:
    """Every request that completed between two window boundaries. Times in ns (monotonic clock).

    Successes are kept request by request (for percentiles); failures as their latencies and a
    count per distinct error (a RequestError: kind, code, message; at most MAX_DISTINCT_ERRORS, in
    order of first appearance). Latency runs from the intended send time in open
    loop; there `sent_latency_ns` also has it from the actual send, and `lag_ns` the delay of
    each request sent in the window. Both are empty in closed loop.

    Streamed requests (SampleRecorder.record_stream) add, over the successes: `ttft_ns`, each one's
    time from its start to its first response (those with a response); `itl_ns`, every gap between
    two consecutive responses of a request; the responses and tokens counted; those meeting every
    goodput bound; and a few requests as examples (the window's first, its slowest, a sample).
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
    ttft_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    itl_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    response_count: int = 0  # responses that carried outputs
    token_count: int = 0  # the token output's elements over those responses
    stream_good_count: int = 0  # requests meeting every StreamGoodput bound; 0 without one
    stream_examples: tuple[StreamExample, ...] = ()  # the window's first streamed request first

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
    so that no window boundary stalls the load to format a window's worth at once. With
    `stream_goodput`, each successful streamed request is judged against its bounds as it completes.
    """

    def __init__(
        self, now_ns: int, count_target: int | None = None, request_format: RequestFormat | None = None,
        stream_goodput: StreamGoodput | None = None,
    ) -> None:
        self._count_target = count_target
        self._format = request_format
        self._stream_goodput = stream_goodput
        self._random = random.Random(0).random  # which requests are kept as examples: the same every run
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
        self._ttft = array("q")
        self._itl = array("q")
        self._responses = 0
        self._tokens = 0
        self._stream_good = 0
        self._streamed = 0  # successful streamed requests, for the examples' reservoir
        self._first: StreamExample | None = None
        self._slowest: StreamExample | None = None
        self._sampled: list[StreamExample] = []
        self.window_full.clear()

    @property
    def start_ns(self) -> int:
        return self._start_ns

    def record_send(self, intended_ns: int, sent_ns: int) -> None:
        """An open-loop request leaves, `sent_ns - intended_ns` after it was due."""
        self._lag.append(sent_ns - intended_ns)

    def record(
        self, intended_ns: int | None, sent_ns: int, end_ns: int, outcome: InferOutcome | StreamOutcome, response_ns: tuple[int, ...] = ()
    ) -> None:
        """A completed request; `response_ns`, a stream's responses, only for its --profile-export-file line."""
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
            self._lines.append(self._format(intended_ns, sent_ns, end_ns, outcome.error, response_ns))
        self._completed += 1
        if self._completed == self._count_target:
            self.window_full.set()

    def record_stream(self, intended_ns: int | None, sent_ns: int, end_ns: int, outcome: StreamOutcome) -> None:
        """A streamed request: as `record`, and for a success its responses' times from its start
        (the intended send in open loop): the first, the gaps between them, the tokens. A failed
        stream is a failure like any other: its responses before the failure are not figures (its
        --profile-export-file line has them)."""
        if outcome.error is None:
            self._add_stream(sent_ns if intended_ns is None else intended_ns, end_ns, outcome)
        self.record(intended_ns, sent_ns, end_ns, outcome, outcome.response_ns)

    def _add_stream(self, start_ns: int, end_ns: int, outcome: StreamOutcome) -> None:
        latency_ns = end_ns - start_ns
        responses = outcome.response_ns
        ttft_ns, max_itl_ns = None, 0
        if responses:
            ttft_ns = responses[0] - start_ns
            self._ttft.append(ttft_ns)
            if len(responses) > 1:
                gaps = list(map(sub, responses[1:], responses))
                self._itl.extend(gaps)
                max_itl_ns = max(gaps)
            self._responses += len(responses)
            if outcome.tokens:
                self._tokens += sum(outcome.tokens)
        goodput = self._stream_goodput
        if goodput is not None and goodput.good(latency_ns, ttft_ns, max_itl_ns):
            self._stream_good += 1
        # The examples: the first and the slowest, and a uniform sample (Vitter's algorithm R); a
        # request's offsets are built only when it is kept.
        self._streamed = streamed = self._streamed + 1
        slowest = streamed == 1 or latency_ns > self._slowest[0]
        slot = streamed - 1 if streamed <= SAMPLED_EXAMPLES else int(self._random() * streamed)
        if not slowest and slot >= SAMPLED_EXAMPLES:
            return
        example = (latency_ns, tuple(t - start_ns for t in responses))
        if streamed == 1:
            self._first = example
        if slowest:
            self._slowest = example
        if streamed <= SAMPLED_EXAMPLES:
            self._sampled.append(example)
        elif slot < SAMPLED_EXAMPLES:
            self._sampled[slot] = example

    def _examples(self) -> tuple[StreamExample, ...]:
        """The requests kept as examples, each once (by identity: two requests may look the same)."""
        kept = (self._first, self._slowest, *self._sampled)
        return tuple({id(example): example for example in kept if example is not None}.values())

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
            ttft_ns=np.frombuffer(self._ttft, dtype=np.int64),
            itl_ns=np.frombuffer(self._itl, dtype=np.int64),
            response_count=self._responses,
            token_count=self._tokens,
            stream_good_count=self._stream_good,
            stream_examples=self._examples(),
        )
        self._open(now_ns)
        return window
