"""Streamed requests' figures without a server: the recorder on made-up StreamOutcomes, the level's
StreamStats from its windows, the goodput rule, the examples, and the workers' digests merged exactly."""

from __future__ import annotations

import json
import pickle
from collections import Counter

import numpy as np
import pytest

from loadgen.histogram import LatencyHistogram
from loadgen.merge import PooledWindow, digest, pooled_stream_stats
from loadgen.outcome import StreamOutcome, http_status, timeout
from loadgen.profile_export import request_formatter
from loadgen.samples import SAMPLED_EXAMPLES, SampleRecorder, StreamGoodput
from loadgen.stats import client_stats, percentile_index
from loadgen.stream_stats import StreamedRequest, pick_examples, stream_stats

PRECISION = LatencyHistogram.of(np.zeros(1, np.int64)).relative_error
MS = 1_000_000


def streamed(start_ns: int, offsets_ms: list[float], tokens: tuple[int, ...] = (), error=None) -> StreamOutcome:
    """A stream whose responses came `offsets_ms` after `start_ns`."""
    return StreamOutcome(1_000, 2_000, tuple(start_ns + round(ms * MS) for ms in offsets_ms), tokens, error)


def test_a_stream_is_timed_from_its_start_response_by_response():
    recorder = SampleRecorder(0)
    # Closed loop: from the actual send at 100 ms; the final (empty) response came 2 ms after the last.
    recorder.record_stream(None, 100 * MS, 132 * MS, streamed(100 * MS, [10, 15, 25, 30], (2, 2, 2, 1)))
    # Open loop: from the intended send at 200 ms, though it left at 205 ms.
    recorder.record_send(200 * MS, 205 * MS)
    recorder.record_stream(200 * MS, 205 * MS, 260 * MS, streamed(200 * MS, [40, 60], (3, 3)))
    window = recorder.close_window(10**9)
    assert window.latency_ns.tolist() == [32 * MS, 60 * MS]
    assert window.sent_latency_ns.tolist() == [55 * MS]
    assert window.ttft_ns.tolist() == [10 * MS, 40 * MS]
    assert window.itl_ns.tolist() == [5 * MS, 10 * MS, 5 * MS, 20 * MS]
    assert (window.response_count, window.token_count, window.stream_good_count) == (6, 13, 0)
    # Both kept as examples, the first one first; offsets from each request's start.
    assert window.stream_examples == ((32 * MS, (10 * MS, 15 * MS, 25 * MS, 30 * MS)), (60 * MS, (40 * MS, 60 * MS)))


def test_a_failed_stream_is_an_error_and_its_responses_are_not_figures():
    recorder = SampleRecorder(0)
    recorder.record_stream(None, 0, 90 * MS, streamed(0, [10, 20], (1, 1), timeout(90)))
    recorder.record_stream(None, 0, 30 * MS, streamed(0, [10, 15, 20], (1, 1, 1), http_status(400, "boom")))
    window = recorder.close_window(10**9)
    assert window.success_count == 0 and window.error_latency_ns.tolist() == [90 * MS, 30 * MS]
    assert window.errors == Counter({timeout(90): 1, http_status(400, "boom"): 1})
    assert window.ttft_ns.size == window.itl_ns.size == window.response_count == window.token_count == 0
    assert window.stream_examples == ()


def test_a_success_without_a_response_has_no_first_response():
    recorder = SampleRecorder(0, stream_goodput=StreamGoodput(ttft_ms=100))
    recorder.record_stream(None, 0, 5 * MS, streamed(0, []))
    window = recorder.close_window(10**9)
    assert window.success_count == 1 and window.ttft_ns.size == 0 and window.response_count == 0
    assert window.stream_good_count == 0  # no first response: the TTFT bound is missed
    stats = stream_stats([window], 1, client_stats([window], 1).percentile_latency_us)
    assert (stats.request_count, stats.response_count, stats.responses_per_request) == (1, 0, 0.0)
    assert set(stats.ttft_us.values()) == {0.0} and stats.itl_us is None and stats.itl_histogram is None


def test_goodput_bounds_every_gap_not_the_average():
    rule = StreamGoodput(latency_ms=100, ttft_ms=20, itl_ms=10)
    assert rule.good(100 * MS, 20 * MS, 10 * MS)  # each bound is inclusive, as --goodput-latency-ms
    assert not rule.good(100 * MS + 1, 20 * MS, 0)
    assert not rule.good(50 * MS, 20 * MS + 1, 0)
    assert not rule.good(50 * MS, None, 0)
    assert rule.good(50 * MS, 5 * MS, 0)  # one response: no gap to bound
    recorder = SampleRecorder(0, stream_goodput=rule)
    # Gaps 2, 2, 2, 14 ms: an average of 5 ms, within the bound, but one stall of 14 ms is not.
    recorder.record_stream(None, 0, 40 * MS, streamed(0, [10, 12, 14, 16, 30]))
    recorder.record_stream(None, 0, 40 * MS, streamed(0, [10, 18, 26, 34]))
    assert recorder.close_window(10**9).stream_good_count == 1
    # Without a bound nothing is judged; a bound not given does not count.
    unbounded = SampleRecorder(0)
    unbounded.record_stream(None, 0, 40 * MS, streamed(0, [10]))
    assert unbounded.close_window(10**9).stream_good_count == 0
    assert StreamGoodput(ttft_ms=20).good(10**12, 20 * MS, 10**12)


def test_a_window_keeps_a_bounded_sample_of_examples_with_its_first_and_slowest():
    recorder = SampleRecorder(0)
    latencies_ms = [50 + (i * 37) % 101 for i in range(5_000)]
    latencies_ms[4321] = 900
    for i, latency_ms in enumerate(latencies_ms):
        recorder.record_stream(None, i * MS, (i + latency_ms) * MS, streamed(i * MS, [latency_ms / 2, latency_ms]))
    examples = recorder.close_window(10**12).stream_examples
    assert SAMPLED_EXAMPLES <= len(examples) <= SAMPLED_EXAMPLES + 2 and len({id(e) for e in examples}) == len(examples)
    assert examples[0] == (50 * MS, (25 * MS, 50 * MS))  # the first request
    assert examples[1] == (900 * MS, (450 * MS, 900 * MS))  # the slowest
    sampled = [latency_ns // MS for latency_ns, _ in examples[2:]]
    assert min(sampled) < 70 and max(sampled) > 130  # drawn from the whole range
    # The next window keeps its own.
    recorder.record_stream(None, 0, 7 * MS, streamed(0, [7]))
    assert recorder.close_window(2 * 10**12).stream_examples == ((7 * MS, (7 * MS,)),)


def test_examples_are_the_kept_requests_nearest_the_levels_percentiles_then_the_slowest_and_the_first():
    kept = [(30 * MS, (30 * MS,)), (10 * MS, (10 * MS,)), (21 * MS, (5 * MS, 21 * MS)), (95 * MS, (95 * MS,)),
            (49 * MS, (49 * MS,)), (120 * MS, (60 * MS, 120 * MS))]  # fmt: skip
    latency_us = {50: 20_000.0, 90: 50_000.0, 95: 80_000.0, 99: 100_000.0}
    assert pick_examples(kept, latency_us) == (
        StreamedRequest(21_000.0, (5_000.0, 21_000.0)),  # nearest p50
        StreamedRequest(49_000.0, (49_000.0,)),  # nearest p90
        StreamedRequest(95_000.0, (95_000.0,)),  # nearest p99
        StreamedRequest(120_000.0, (60_000.0, 120_000.0)),  # the slowest
        StreamedRequest(30_000.0, (30_000.0,)),  # the first
    )
    # Each request once: one request is all of them.
    assert pick_examples(kept[:1], latency_us) == (StreamedRequest(30_000.0, (30_000.0,)),)
    assert pick_examples([], latency_us) == ()


def _recorded_windows(rng, count: int, goodput: StreamGoodput | None = None, start_ns: int = 0) -> list:
    """`count` windows of streamed requests: a few responses each, some failing, some single."""
    recorder = SampleRecorder(start_ns, stream_goodput=goodput)
    windows = []
    for w in range(count):
        for i in range(int(rng.integers(50, 400))):
            start = start_ns + w * 5 * 10**9 + i * MS
            offsets = np.cumsum(rng.lognormal(1.5, 0.7, int(rng.integers(1, 20)))).tolist()
            tokens = tuple(int(t) for t in rng.integers(1, 4, len(offsets)))
            error = http_status(400, "boom") if rng.random() < 0.05 else None
            end = start + round((offsets[-1] + rng.random()) * MS)
            intended = start if rng.random() < 0.5 else None
            recorder.record_stream(intended, start + int(rng.integers(0, 1000)) if intended else start, end,
                                   streamed(start, offsets, tokens, error))  # fmt: skip
        windows.append(recorder.close_window(start_ns + (w + 1) * 5 * 10**9))
    return windows


def test_a_levels_figures_from_its_windows():
    rng = np.random.default_rng(3)
    goodput = StreamGoodput(ttft_ms=8, itl_ms=12)
    windows = _recorded_windows(rng, 3, goodput)
    latency_us = client_stats(windows, 1).percentile_latency_us
    stats = stream_stats(windows, 2, latency_us, percentiles=(95,), counts_tokens=True, goodput=True)
    ttft = np.concatenate([w.ttft_ns for w in windows]) / 1e3
    itl = np.sort(np.concatenate([w.itl_ns for w in windows])) / 1e3
    assert stats.request_count == sum(w.success_count for w in windows) == ttft.size
    assert stats.response_count == sum(w.response_count for w in windows) == ttft.size + itl.size
    assert stats.responses_per_request == pytest.approx(stats.response_count / stats.request_count)
    assert list(stats.ttft_us) == ["avg", "p50", "p90", "p99", "max", "p95"]
    assert stats.ttft_us["avg"] == pytest.approx(ttft.mean()) and stats.ttft_us["max"] == ttft.max()
    assert stats.itl_us["p50"] == itl[percentile_index(itl.size, 50)] and stats.itl_us["p95"] == itl[percentile_index(itl.size, 95)]
    assert stats.ttft_histogram.count == ttft.size and stats.itl_histogram.count == itl.size
    assert stats.output_tokens == sum(w.token_count for w in windows)
    assert stats.tokens_per_s == pytest.approx(stats.output_tokens / 15.0)
    good = sum(w.stream_good_count for w in windows)
    assert 0 < good < stats.request_count and stats.goodput_infer_per_s == pytest.approx(good * 2 / 15.0)
    assert 1 <= len(stats.examples) <= 5 and max(e.latency_us for e in stats.examples) == pytest.approx(
        max(float(w.latency_ns.max()) for w in windows) / 1e3)
    # Without a token output or a bound, those figures are not measured (None, not 0).
    plain = stream_stats(windows, 2, latency_us)
    assert (plain.output_tokens, plain.tokens_per_s, plain.goodput_infer_per_s) == (None, None, None)


def test_the_workers_digests_merge_into_the_figures_of_the_pooled_windows():
    rng = np.random.default_rng(11)
    goodput = StreamGoodput(latency_ms=40, ttft_ms=8)
    per_worker = [_recorded_windows(rng, 3, goodput, start_ns=w * 7) for w in range(3)]
    digests = [[pickle.loads(pickle.dumps(digest(window, 4, 0.5))) for window in windows] for windows in per_worker]
    pooled = [PooledWindow(i * 5 * 10**9, (i + 1) * 5 * 10**9, tuple(d[i] for d in digests)) for i in range(3)]
    flat = [window for i in range(3) for window in (per_worker[0][i], per_worker[1][i], per_worker[2][i])]
    latency_us = client_stats(flat, 1).percentile_latency_us
    exact = stream_stats(flat, 1, latency_us, (95,), counts_tokens=True, goodput=True)
    merged = pooled_stream_stats(pooled, 1, latency_us, (95,), counts_tokens=True, goodput=True)
    for figure in ("request_count", "response_count", "responses_per_request", "output_tokens"):
        assert getattr(merged, figure) == getattr(exact, figure), figure
    for name in ("ttft_us", "itl_us"):
        got, want = getattr(merged, name), getattr(exact, name)
        assert list(got) == list(want)
        assert got["avg"] == pytest.approx(want["avg"], rel=1e-12) and got["max"] == want["max"]
        for key in ("p50", "p90", "p95", "p99"):
            assert abs(got[key] - want[key]) <= want[key] * PRECISION, (name, key)
    for histogram in ("ttft_histogram", "itl_histogram"):
        got, want = getattr(merged, histogram), getattr(exact, histogram)
        assert (got.count, got.total, got.min, got.max) == (want.count, want.total, want.min, want.max)
        assert got.buckets.tolist() == want.buckets.tolist() and got.counts.tolist() == want.counts.tolist()
    # Rates summed over workers, each over its own window time (the same here to within ns).
    assert merged.tokens_per_s == pytest.approx(exact.tokens_per_s * 3, rel=1e-6)
    assert merged.goodput_infer_per_s == pytest.approx(exact.goodput_infer_per_s * 3, rel=1e-6)
    # The same requests kept, so the same examples: the first is the first worker's first.
    assert merged.examples == exact.examples
    assert merged.examples[-1] == StreamedRequest(*(lambda e: (e[0] / 1e3, tuple(t / 1e3 for t in e[1])))(
        per_worker[0][0].stream_examples[0]))


def test_the_profile_export_has_every_response_of_a_stream():
    recorder = SampleRecorder(0, request_format=request_formatter(1_000))
    recorder.record_stream(None, 100, 900, StreamOutcome(0, 0, (300, 500, 800)))
    recorder.record_stream(50, 100, 700, StreamOutcome(0, 0, (300, 400), error=timeout(1)))
    recorder.record_stream(None, 100, 200, StreamOutcome(0, 0, (), error=timeout(1)))
    lines = json.loads(f"[{recorder.close_window(10**9).requests.take()}]")
    assert [line["response_timestamps"] for line in lines] == [[1_300, 1_500, 1_800], [1_300, 1_400, 1_700], [1_200]]
    assert [line["error"] for line in lines] == [None, "timeout", "timeout"] and lines[1]["intended_timestamp"] == 1_050
