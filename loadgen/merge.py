"""Merging the windows of many workers exactly: counts and throughputs summed, latencies from
merged histograms (loadgen.histogram), so a run spread over workers reports like one process."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from loadgen.histogram import LatencyHistogram
from loadgen.samples import RequestLines, StreamExample, WindowSamples
from loadgen.schedule.sequences import SequenceTally
from loadgen.stats import (
    LATE_NS,
    AtPercentile,
    ClientStats,
    OpenLoopStats,
    curve_us,
    error_kinds,
    good_count,
    lag_summary_us,
    per_second,
    percentiles_us,
    summary_us,
)
from loadgen.stream_stats import StreamStats, build_stream_stats

# A worker using this share of one core over a level is itself the bottleneck.
OVERLOADED_CPU_PCT = 90.0
# A worker whose p99 send lag is over this is falling behind its schedule, not jittering: on a busy
# VM, 1-3% of sends leave over 1 ms late at any rate (bench/workers.py), so lateness alone says little.
OVERLOADED_LAG_US = 10_000.0


@dataclass(frozen=True)
class WorkerFigures:
    """One worker's part of a level, for the per-worker table that shows an overloaded worker."""

    worker: int  # index, from 0
    host: str
    pid: int
    share: float  # its concurrency or request rate; 0 when the level had nothing for it
    request_count: int  # successes over the reported windows
    error_count: int
    throughput_infer_per_s: float
    schedule_lag_us: dict[str, float]  # p50, p99, max of open-loop send lag; {} in closed loop
    late_fraction: float  # open-loop requests sent over 1 ms late; 0.0 in closed loop
    cpu_pct: float  # its process's CPU time over the reported windows, in % of one core
    lost: str | None = None  # why the worker was lost during the level, None if it was not

    @property
    def overloaded(self) -> bool:
        return self.cpu_pct >= OVERLOADED_CPU_PCT or self.schedule_lag_us.get("p99", 0.0) > OVERLOADED_LAG_US


@dataclass(frozen=True)
class WindowDigest:
    """One worker's window reduced to what merges exactly: histograms, sums and counts. It is what
    a worker sends the driver at each window boundary. Times in ns, on the worker's monotonic clock."""

    start_ns: int
    end_ns: int
    latency: LatencyHistogram  # successes; from the intended send time in open loop
    send_sum_ns: int
    recv_sum_ns: int
    error_latency: LatencyHistogram
    errors: Counter  # count per distinct message, as in WindowSamples
    sent_latency: LatencyHistogram  # open loop: successes from the actual send; empty in closed loop
    lag: LatencyHistogram  # open loop: send lag of each request sent in the window
    late_count: int  # of those, sent over LATE_NS late (from the raw lags)
    held_back: int
    peak_in_flight: int
    cpu_s: float  # the worker process's CPU time over the window
    outstanding: int = 0  # requests in flight at the window's end
    oldest_outstanding_ns: int = 0  # how long the oldest of them had been out then
    good_count: int = 0  # successes within --goodput-latency-ms (from the raw latencies); 0 without it
    # --profile-export-file: every request of the window, its times already on the worker's wall clock
    requests: RequestLines | None = None
    # Streamed requests (as in WindowSamples): the successes' times to first response, every gap
    # between responses, the responses and tokens, those meeting the goodput bounds, the examples kept.
    ttft: LatencyHistogram = field(default_factory=lambda: LatencyHistogram.of(np.empty(0, np.int64)))
    itl: LatencyHistogram = field(default_factory=lambda: LatencyHistogram.of(np.empty(0, np.int64)))
    response_count: int = 0
    token_count: int = 0
    stream_good_count: int = 0
    stream_examples: tuple[StreamExample, ...] = ()
    # A sequence model's load: the sequences completed in the window, and the failed and cut short so far.
    sequences: SequenceTally | None = None

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def digest(window: WindowSamples, peak_in_flight: int, cpu_s: float, goodput_latency_ms: float | None = None,
           sequences: SequenceTally | None = None) -> WindowDigest:  # fmt: skip
    """A worker's window as it sends it: its peak of requests in flight and CPU seconds added, and with
    `goodput_latency_ms` its successes within it, counted from the raw latencies (a histogram's bucket
    may straddle the bound); a sequence load's `sequences` as they are."""
    return WindowDigest(
        start_ns=window.start_ns,
        end_ns=window.end_ns,
        latency=LatencyHistogram.of(window.latency_ns),
        send_sum_ns=int(window.send_ns.sum()),
        recv_sum_ns=int(window.recv_ns.sum()),
        error_latency=LatencyHistogram.of(window.error_latency_ns),
        errors=Counter(window.errors),
        sent_latency=LatencyHistogram.of(window.sent_latency_ns),
        lag=LatencyHistogram.of(np.maximum(window.lag_ns, 0)),  # the histogram takes no negatives
        late_count=int(np.count_nonzero(window.lag_ns > LATE_NS)),
        held_back=window.held_back,
        peak_in_flight=peak_in_flight,
        cpu_s=cpu_s,
        outstanding=window.outstanding,
        oldest_outstanding_ns=window.oldest_outstanding_ns,
        good_count=good_count(window.latency_ns, goodput_latency_ms) if goodput_latency_ms is not None else 0,
        requests=window.requests,
        ttft=LatencyHistogram.of(window.ttft_ns),
        itl=LatencyHistogram.of(window.itl_ns),
        response_count=window.response_count,
        token_count=window.token_count,
        stream_good_count=window.stream_good_count,
        stream_examples=window.stream_examples,
        sequences=sequences,
    )


@dataclass(frozen=True)
class PooledWindow:
    """One measurement window across workers. Its bounds are the boundaries the driver set, on the
    driver's monotonic clock; each worker's digest is on its own clock."""

    start_ns: int
    end_ns: int
    digests: tuple[WindowDigest | None, ...]  # by worker; None when it had nothing to do, or was lost

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def outstanding(self) -> int:
        return sum(d.outstanding for d in self.digests if d is not None)

    @property
    def oldest_outstanding_ns(self) -> int:
        return max((d.oldest_outstanding_ns for d in self.digests if d is not None), default=0)


def _digests(windows: Sequence[PooledWindow]) -> list[WindowDigest]:
    """All digests, window by window and worker by worker: the order errors are merged in."""
    return [d for w in windows for d in w.digests if d is not None]


def _of_worker(windows: Sequence[PooledWindow], worker: int) -> list[WindowDigest]:
    return [w.digests[worker] for w in windows if worker < len(w.digests) and w.digests[worker] is not None]


def _summed_rate(windows: Sequence[PooledWindow], count: Callable[[WindowDigest], int]) -> float:
    """Each worker's count per second of its own window time, summed over workers."""
    workers = max((len(w.digests) for w in windows), default=0)
    per_worker = (_of_worker(windows, i) for i in range(workers))
    return sum(per_second(sum(map(count, ds)), sum(d.duration_s for d in ds)) for ds in per_worker)


def _at_us(histogram: LatencyHistogram) -> AtPercentile:
    return lambda p: histogram.percentile(p) / 1e3


def pooled_latency_histogram(windows: Sequence[PooledWindow]) -> LatencyHistogram:
    """The successes' latencies of every worker's digests, merged."""
    return LatencyHistogram.merged(d.latency for d in _digests(windows))


def pooled_client_stats(
    windows: Sequence[PooledWindow],
    batch_size: int,
    percentiles: Sequence[int] = (),
    drain: PooledWindow | None = None,
    goodput_latency_ms: float | None = None,
) -> ClientStats:
    """stats.client_stats over all workers' digests: counts, throughputs and goodputs summed, latencies
    from the merged histograms (percentiles within LatencyHistogram.relative_error of the pooled samples');
    the failures of a `drain` join the errors, as there. The digests' good counts are within
    `goodput_latency_ms`, the bound the workers were given."""
    digests = _digests(windows)
    failing = digests + (_digests([drain]) if drain is not None else [])
    latency = pooled_latency_histogram(windows)
    error_latency = LatencyHistogram.merged(d.error_latency for d in failing)
    errors: Counter = Counter()
    for d in failing:
        errors.update(d.errors)
    count = latency.count
    avg_latency_us = latency.mean / 1e3
    avg_send_us = sum(d.send_sum_ns for d in digests) / count / 1e3 if count else 0.0
    avg_recv_us = sum(d.recv_sum_ns for d in digests) / count / 1e3 if count else 0.0
    return ClientStats(
        request_count=count,
        error_count=error_latency.count,
        duration_s=sum(w.duration_s for w in windows),
        throughput_infer_per_s=_summed_rate(windows, lambda d: d.latency.count * batch_size),
        avg_latency_us=avg_latency_us,
        std_latency_us=latency.std / 1e3,
        percentile_latency_us=percentiles_us(count, _at_us(latency), percentiles),
        avg_send_us=avg_send_us,
        avg_recv_us=avg_recv_us,
        avg_response_wait_us=max(0.0, avg_latency_us - avg_send_us - avg_recv_us),
        error_kinds=error_kinds(errors),
        error_latency_us=summary_us(error_latency.count, error_latency.total / 1e3, _at_us(error_latency)),
        latency_curve_us=curve_us(count, _at_us(latency)),
        goodput_infer_per_s=None if goodput_latency_ms is None else _summed_rate(windows, lambda d: d.good_count * batch_size),
    )


def pooled_open_loop_stats(windows: Sequence[PooledWindow], target_rate_per_s: float) -> OpenLoopStats:
    """stats.open_loop_stats over all workers' digests; the achieved rate is the workers' summed."""
    digests = _digests(windows)
    lag = LatencyHistogram.merged(d.lag for d in digests)
    sent_latency = LatencyHistogram.merged(d.sent_latency for d in digests)
    return OpenLoopStats(
        target_rate_per_s=target_rate_per_s,
        achieved_rate_per_s=_summed_rate(windows, lambda d: d.lag.count),
        sent_count=lag.count,
        late_count=sum(d.late_count for d in digests),
        held_back_count=sum(d.held_back for d in digests),
        schedule_lag_us=lag_summary_us(lag.count, _at_us(lag)),
        sent_avg_latency_us=sent_latency.mean / 1e3,
        sent_percentile_latency_us=percentiles_us(sent_latency.count, _at_us(sent_latency)),
    )


def pooled_stream_stats(
    windows: Sequence[PooledWindow],
    batch_size: int,
    latency_us: dict[int, float],
    percentiles: Sequence[int] = (),
    counts_tokens: bool = False,
    goodput: bool = False,
) -> StreamStats:
    """stream_stats.stream_stats over all workers' digests: counts summed, rates summed over workers
    as the throughput, distributions from the merged histograms."""
    digests = _digests(windows)
    ttft = LatencyHistogram.merged(d.ttft for d in digests)
    itl = LatencyHistogram.merged(d.itl for d in digests)
    return build_stream_stats(
        request_count=sum(d.latency.count for d in digests),
        response_count=sum(d.response_count for d in digests),
        ttft=ttft,
        ttft_at_us=_at_us(ttft),
        itl=itl,
        itl_at_us=_at_us(itl),
        output_tokens=sum(d.token_count for d in digests) if counts_tokens else None,
        tokens_per_s=_summed_rate(windows, lambda d: d.token_count) if counts_tokens else None,
        candidates=[example for d in digests for example in d.stream_examples],
        latency_us=latency_us,
        goodput_infer_per_s=_summed_rate(windows, lambda d: d.stream_good_count * batch_size) if goodput else None,
        percentiles=percentiles,
    )


def worker_figures(
    windows: Sequence[PooledWindow], worker: int, host: str, pid: int, share: float, batch_size: int, lost: str | None = None
) -> WorkerFigures:
    """One worker's part of `windows`, over its own window time."""
    digests = _of_worker(windows, worker)
    duration_s = sum(d.duration_s for d in digests)
    request_count = sum(d.latency.count for d in digests)
    lag = LatencyHistogram.merged(d.lag for d in digests)
    return WorkerFigures(
        worker=worker,
        host=host,
        pid=pid,
        share=share,
        request_count=request_count,
        error_count=sum(d.error_latency.count for d in digests),
        throughput_infer_per_s=per_second(request_count * batch_size, duration_s),
        schedule_lag_us=lag_summary_us(lag.count, _at_us(lag)) if lag.count else {},
        late_fraction=sum(d.late_count for d in digests) / lag.count if lag.count else 0.0,
        cpu_pct=100 * per_second(sum(d.cpu_s for d in digests), duration_s),
        lost=lost,
    )


def pooled_sequence_tally(windows: Sequence[PooledWindow], drain: PooledWindow | None) -> SequenceTally:
    """The workers' sequences: those completed in each worker's part of `windows`, summed (a
    sequence never spans two workers); the failed and cut short, each worker's level totals from its
    drain (without one, a level cut short: from its last window)."""
    last = (drain or windows[-1]).digests
    tallies = [d.sequences for w in windows for d in w.digests if d is not None and d.sequences is not None]
    finals = [d.sequences for d in last if d is not None and d.sequences is not None]
    return SequenceTally(sum(t.completed for t in tallies), sum(t.failed for t in finals), sum(t.cut_short for t in finals))
