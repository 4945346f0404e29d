"""Client-side arithmetic: percentiles and the figures of one or more merged windows."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from loadgen.outcome import RequestError
from loadgen.samples import WindowSamples

REPORTED_PERCENTILES = (50, 90, 95, 99)
# Distinct messages reported per error kind: the first ones seen.
MESSAGES_PER_KIND = 3
# Points of the latency distribution kept for plots: every percent, then the tail.
CURVE_PERCENTILES = (*range(100), 99.5, 99.9, 99.99, 100)


def percentile_index(count: int, percentile: float) -> int:
    """perf_analyzer's rank: round(p/100 * (n-1)), halves rounded up."""
    if count <= 0:
        raise ValueError("no samples")
    return int(math.floor(percentile / 100.0 * (count - 1) + 0.5))


def percentile_of_sorted(sorted_values: np.ndarray, percentile: float) -> float:
    return float(sorted_values[percentile_index(sorted_values.size, percentile)])


# The figures below are computed alike from sorted samples and from merged histograms
# (loadgen.merge): `at_us` gives the latency at a percentile, and is only called with samples.
AtPercentile = Callable[[float], float]


def per_second(count: float, duration_s: float) -> float:
    """A count per second of window time; 0 without any time."""
    return count / duration_s if duration_s > 0 else 0.0


def good_count(latency_ns: np.ndarray, goodput_latency_ms: float) -> int:
    """How many of these latencies are within the goodput bound: at most `goodput_latency_ms`."""
    return int(np.count_nonzero(latency_ns <= goodput_latency_ms * 1e6))


def percentiles_us(count: int, at_us: AtPercentile, percentiles: Sequence[int] = ()) -> dict[int, float]:
    """The reported percentiles and `percentiles`, in order; 0s without samples."""
    return {p: at_us(p) if count else 0.0 for p in sorted(set(REPORTED_PERCENTILES) | set(percentiles))}


def curve_us(count: int, at_us: AtPercentile) -> tuple[tuple[float, float], ...]:
    """(percentile, latency) at CURVE_PERCENTILES; empty without samples."""
    return tuple((p, at_us(p)) for p in CURVE_PERCENTILES) if count else ()


def summary_us(count: int, total_us: float, at_us: AtPercentile) -> dict[str, float]:
    """avg, p50, p90, p99 and max, from the sum and the latency at a percentile ({} without samples)."""
    if not count:
        return {}
    return {"avg": total_us / count, **{f"p{p}": at_us(p) for p in (50, 90, 99)}, "max": at_us(100)}


def lag_summary_us(count: int, at_us: AtPercentile) -> dict[str, float]:
    """p50, p99 and max of open-loop send lag; 0s without requests sent."""
    return {key: at_us(p) if count else 0.0 for key, p in (("p50", 50), ("p99", 99), ("max", 100))}


@dataclass(frozen=True)
class ErrorKind:
    """The failed requests of one kind, by its label (`HTTP 503`, `gRPC UNAVAILABLE`, `timeout`,
    `unanswered`, `connection error`, `protocol error`) and code (503, "UNAVAILABLE", or None)."""

    kind: str
    count: int
    messages: dict[str, int]  # the first MESSAGES_PER_KIND distinct messages, with their counts
    code: int | str | None = None


def group_errors(counted: Iterable[tuple[str, int | str | None, str, int]]) -> tuple[ErrorKind, ...]:
    """(label, code, message, count) grouped by label, most frequent first, each with its first
    MESSAGES_PER_KIND messages (in the order given)."""
    counts: Counter = Counter()
    codes: dict[str, int | str | None] = {}
    messages: dict[str, dict[str, int]] = {}
    for label, code, message, count in counted:
        counts[label] += count
        codes.setdefault(label, code)
        shown = messages.setdefault(label, {})
        if len(shown) < MESSAGES_PER_KIND:
            shown[message] = shown.get(message, 0) + count
    return tuple(ErrorKind(label, count, messages[label], codes[label]) for label, count in counts.most_common())


def error_kinds(errors: Counter[RequestError]) -> tuple[ErrorKind, ...]:
    """Errors by kind, most frequent first; `errors` counts RequestErrors in order of first appearance."""
    return group_errors((error.label, error.code, str(error), count) for error, count in errors.items())


def latency_summary_us(latency_ns: np.ndarray) -> dict[str, float]:
    """avg, p50, p90, p99 and max of some latencies, in µs ({} without any)."""
    ordered = np.sort(latency_ns) / 1e3
    return summary_us(ordered.size, float(ordered.sum()), partial(percentile_of_sorted, ordered))


@dataclass(frozen=True)
class ClientStats:
    """What the client saw over some windows. Latencies are of successful requests only; failed
    requests' latencies are apart, in `error_latency_us`."""

    request_count: int
    error_count: int
    duration_s: float
    throughput_infer_per_s: float
    avg_latency_us: float
    std_latency_us: float
    percentile_latency_us: dict[int, float]
    avg_send_us: float
    avg_recv_us: float
    avg_response_wait_us: float
    error_kinds: tuple[ErrorKind, ...] = ()
    error_latency_us: dict[str, float] = field(default_factory=dict)  # avg, p50, p90, p99, max
    # (percentile, latency), empty without successes; None: not recorded (summary.json version 1)
    latency_curve_us: tuple[tuple[float, float], ...] | None = ()
    # Like throughput, of the successes within --goodput-latency-ms only; None without it (or before summary.json version 7)
    goodput_infer_per_s: float | None = None

    def share(self, count: int) -> float:
        """`count` requests as a share of all of them, successes and failures: 0..1, 0 without any."""
        total = self.request_count + self.error_count
        return count / total if total else 0.0

    @property
    def error_rate(self) -> float:
        return self.share(self.error_count)

    def latency_us(self, percentile: int | None) -> float:
        """The latency used for stability and thresholds: the average, or a chosen percentile."""
        return self.avg_latency_us if percentile is None else self.percentile_latency_us[percentile]


def client_stats(
    windows: Sequence[WindowSamples],
    batch_size: int,
    percentiles: Sequence[int] = (),
    drain: WindowSamples | None = None,
    goodput_latency_ms: float | None = None,
) -> ClientStats:
    """Merge windows and summarize them. Throughput counts batch items per second of window time;
    goodput, with `goodput_latency_ms`, those of the successes whose latency is within it.

    The failures of `drain` (the requests in flight when the last window closed, and those sent
    until the load stopped) join the errors: a request that timed out or was never answered after
    the windows must not vanish. Its successes are not counted, as perf_analyzer counts none.
    """
    latency = np.concatenate([w.latency_ns for w in windows]) if windows else np.empty(0, np.int64)
    failing = [*windows, drain] if drain is not None else windows
    error_latency = np.concatenate([w.error_latency_ns for w in failing]) if failing else np.empty(0, np.int64)
    send = np.concatenate([w.send_ns for w in windows]) if windows else np.empty(0, np.int64)
    recv = np.concatenate([w.recv_ns for w in windows]) if windows else np.empty(0, np.int64)
    duration_s = sum(w.duration_s for w in windows)
    errors: Counter = Counter()
    for w in failing:
        errors.update(w.errors)
    count = int(latency.size)
    latency_us = latency / 1e3
    at_us = partial(percentile_of_sorted, np.sort(latency_us))
    if count:
        avg_latency_us = float(latency_us.mean())
        avg_send_us = float(send.mean() / 1e3)
        avg_recv_us = float(recv.mean() / 1e3)
        std_latency_us = float(latency_us.std(ddof=1)) if count > 1 else 0.0  # sample std, as perf_analyzer
    else:
        avg_latency_us = std_latency_us = avg_send_us = avg_recv_us = 0.0
    good = None if goodput_latency_ms is None else good_count(latency, goodput_latency_ms)
    return ClientStats(
        request_count=count,
        error_count=sum(errors.values()),
        duration_s=duration_s,
        throughput_infer_per_s=per_second(count * batch_size, duration_s),
        avg_latency_us=avg_latency_us,
        std_latency_us=std_latency_us,
        percentile_latency_us=percentiles_us(count, at_us, percentiles),
        avg_send_us=avg_send_us,
        avg_recv_us=avg_recv_us,
        avg_response_wait_us=max(0.0, avg_latency_us - avg_send_us - avg_recv_us),
        error_kinds=error_kinds(errors),
        error_latency_us=latency_summary_us(error_latency),
        latency_curve_us=curve_us(count, at_us),
        goodput_infer_per_s=None if good is None else per_second(good * batch_size, duration_s),
    )


# An open-loop request sent more than this after its intended time counts as late.
LATE_NS = 1_000_000
# perf_analyzer warns when more than this share of requests was late.
LATE_WARNING_FRACTION = 0.01


@dataclass(frozen=True)
class OpenLoopStats:
    """How well an open-loop schedule was kept, and latency from the actual send beside the honest one."""

    target_rate_per_s: float
    achieved_rate_per_s: float  # requests sent per second of window time
    sent_count: int
    late_count: int  # sent more than LATE_NS after their intended time
    held_back_count: int  # waited for a --max-inflight slot
    schedule_lag_us: dict[str, float]  # p50, p99, max
    sent_avg_latency_us: float
    sent_percentile_latency_us: dict[int, float]

    @property
    def late_fraction(self) -> float:
        return self.late_count / self.sent_count if self.sent_count else 0.0

    @property
    def cannot_keep_up(self) -> bool:
        return self.late_fraction > LATE_WARNING_FRACTION


def open_loop_stats(windows: Sequence[WindowSamples], target_rate_per_s: float) -> OpenLoopStats:
    lag = np.sort(np.concatenate([w.lag_ns for w in windows])) / 1e3
    sent_latency = np.sort(np.concatenate([w.sent_latency_ns for w in windows])) / 1e3
    duration_s = sum(w.duration_s for w in windows)
    return OpenLoopStats(
        target_rate_per_s=target_rate_per_s,
        achieved_rate_per_s=per_second(lag.size, duration_s),
        sent_count=int(lag.size),
        late_count=int(np.count_nonzero(lag > LATE_NS / 1e3)),
        held_back_count=sum(w.held_back for w in windows),
        schedule_lag_us=lag_summary_us(lag.size, partial(percentile_of_sorted, lag)),
        sent_avg_latency_us=float(sent_latency.mean()) if sent_latency.size else 0.0,
        sent_percentile_latency_us=percentiles_us(sent_latency.size, partial(percentile_of_sorted, sent_latency)),
    )
