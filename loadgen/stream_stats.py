"""A level's streaming figures (--streaming): time to first response, the gaps between responses,
responses and tokens per request, goodput on those bounds, and a few requests' response timelines.

Computed from the level's merged windows: here from this process's samples (exact percentiles),
in loadgen.merge from the workers' histograms. Every figure is over the successful streamed
requests; a stream that failed is one of the level's errors, its responses before the failure not
counted. A request's times run from its start: the intended send in open loop, else the actual one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from loadgen.histogram import LatencyHistogram
from loadgen.samples import StreamExample, WindowSamples
from loadgen.stats import AtPercentile, per_second, percentile_of_sorted, summary_us

# The level's latency percentiles whose nearest kept request is an example, before the slowest and the first.
EXAMPLE_PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class StreamedRequest:
    """One request's responses, for the HTML response timeline."""

    latency_us: float  # to its final response, from its start (intended send in open loop)
    response_offsets_us: tuple[float, ...]  # each response that carried outputs, from the request's start


@dataclass(frozen=True)
class StreamStats:
    """A level's streamed requests. Distributions are dicts with "avg", "p50", "p90", "p99", "max"
    (and "pN" for --percentile N), in µs; 0s when no request had a response."""

    request_count: int  # successful streamed requests over the level's windows
    response_count: int  # responses that carried outputs (an empty final-flag-only response is not one)
    responses_per_request: float
    ttft_us: dict[str, float]  # from each request's start to its first response
    itl_us: dict[str, float] | None  # every gap between consecutive responses of a request; None if no request had 2 responses
    output_tokens: int | None  # None without a token output
    tokens_per_s: float | None  # output tokens per second of window time; None without a token output
    ttft_histogram: LatencyHistogram  # ns, exact-mergeable (--workers, compare)
    itl_histogram: LatencyHistogram | None
    examples: tuple[StreamedRequest, ...]  # up to 5: nearest the p50, p90, p99 latency, the slowest, the first
    goodput_infer_per_s: float | None = None  # requests/s meeting every --goodput-*-ms bound; None without one


def distribution_us(count: int, total_ns: int, at_us: AtPercentile, percentiles: Sequence[int] = ()) -> dict[str, float]:
    """avg, p50, p90, p99, max and the `percentiles` asked for, in µs; 0s without values."""
    keys = ("avg", "p50", "p90", "p99", "max", *(f"p{p}" for p in percentiles))
    if not count:
        return dict.fromkeys(keys, 0.0)
    return summary_us(count, total_ns / 1e3, at_us) | {f"p{p}": at_us(p) for p in percentiles}


def pick_examples(candidates: Sequence[StreamExample], latency_us: dict[int, float]) -> tuple[StreamedRequest, ...]:
    """The examples among the requests the windows kept (the level's first one first): the one
    nearest each of the level's EXAMPLE_PERCENTILES latencies, the slowest, the first; each once."""
    if not candidates:
        return ()
    nearest = [min(candidates, key=lambda c: abs(c[0] / 1e3 - latency_us[p])) for p in EXAMPLE_PERCENTILES]
    chosen = dict.fromkeys([*nearest, max(candidates, key=lambda c: c[0]), candidates[0]])
    return tuple(StreamedRequest(latency_ns / 1e3, tuple(t / 1e3 for t in offsets_ns)) for latency_ns, offsets_ns in chosen)


def build_stream_stats(
    *,
    request_count: int,
    response_count: int,
    ttft: LatencyHistogram,
    ttft_at_us: AtPercentile,
    itl: LatencyHistogram,
    itl_at_us: AtPercentile,
    output_tokens: int | None,
    tokens_per_s: float | None,
    candidates: Sequence[StreamExample],
    latency_us: dict[int, float],
    goodput_infer_per_s: float | None,
    percentiles: Sequence[int] = (),
) -> StreamStats:
    """The figures from a level's pooled parts, whichever way they were gathered. `at_us` gives a
    distribution's value at a percentile; `latency_us`, the level's latency percentiles (for the examples)."""
    return StreamStats(
        request_count=request_count,
        response_count=response_count,
        responses_per_request=response_count / request_count if request_count else 0.0,
        ttft_us=distribution_us(ttft.count, ttft.total, ttft_at_us, percentiles),
        itl_us=distribution_us(itl.count, itl.total, itl_at_us, percentiles) if itl.count else None,
        output_tokens=output_tokens,
        tokens_per_s=tokens_per_s,
        ttft_histogram=ttft,
        itl_histogram=itl if itl.count else None,
        examples=pick_examples(candidates, latency_us),
        goodput_infer_per_s=goodput_infer_per_s,
    )


def _sorted_us(values_ns: np.ndarray) -> AtPercentile:
    return partial(percentile_of_sorted, np.sort(values_ns) / 1e3)


def _joined(parts: Iterable[np.ndarray]) -> np.ndarray:
    parts = list(parts)
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def stream_stats(
    windows: Sequence[WindowSamples],
    batch_size: int,
    latency_us: dict[int, float],
    percentiles: Sequence[int] = (),
    counts_tokens: bool = False,
    goodput: bool = False,
) -> StreamStats:
    """The streaming figures of this process's windows, percentiles exact from the samples. Tokens
    only with `counts_tokens` (a token output); goodput only with `goodput` (a bound given: the
    windows then counted the requests meeting it), in batch items per second as the throughput."""
    ttft_ns, itl_ns = _joined(w.ttft_ns for w in windows), _joined(w.itl_ns for w in windows)
    duration_s = sum(w.duration_s for w in windows)
    tokens = sum(w.token_count for w in windows)
    good = sum(w.stream_good_count for w in windows)
    return build_stream_stats(
        request_count=sum(w.success_count for w in windows),
        response_count=sum(w.response_count for w in windows),
        ttft=LatencyHistogram.of(ttft_ns),
        ttft_at_us=_sorted_us(ttft_ns),
        itl=LatencyHistogram.of(itl_ns),
        itl_at_us=_sorted_us(itl_ns),
        output_tokens=tokens if counts_tokens else None,
        tokens_per_s=per_second(tokens, duration_s) if counts_tokens else None,
        candidates=[example for w in windows for example in w.stream_examples],
        latency_us=latency_us,
        goodput_infer_per_s=per_second(good * batch_size, duration_s) if goodput else None,
        percentiles=percentiles,
    )
