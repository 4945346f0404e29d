"""Workers' window digests, merged: the figures client_stats gives on the pooled samples. No server."""

import dataclasses
import pickle
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.histogram import LatencyHistogram
from loadgen.merge import (
    PooledWindow,
    WindowDigest,
    digest,
    pooled_client_stats,
    pooled_open_loop_stats,
    worker_figures,
)
from loadgen.samples import SampleRecorder, WindowSamples
from loadgen.stats import (
    CURVE_PERCENTILES,
    LATE_NS,
    REPORTED_PERCENTILES,
    client_stats,
    good_count,
    open_loop_stats,
)
from loadgen.outcome import InferOutcome, grpc_status, http_status, timeout

PRECISION = LatencyHistogram.of(np.zeros(1, np.int64)).relative_error
WINDOW_NS = 5 * 10**9  # the driver's windows
MESSAGES = [
    http_status(503, "busy"),
    timeout(100),
    grpc_status("UNAVAILABLE", "gone"),
    *(http_status(500, f"boom {i}") for i in range(5)),
]


def raw_window(rng, latency_ns, start_ns, open_loop=False) -> WindowSamples:
    """A worker's window on its own clock (off the driver's by a little), with errors and sums."""
    n, error_count = latency_ns.size, int(rng.integers(0, 4))
    lag_ns = rng.integers(0, 3 * LATE_NS, n + error_count) if open_loop else np.empty(0, np.int64)
    return WindowSamples(
        start_ns=start_ns,
        end_ns=start_ns + WINDOW_NS + int(rng.integers(-10**7, 10**7)),
        latency_ns=latency_ns,
        send_ns=rng.integers(0, 50_000, n),
        recv_ns=rng.integers(0, 20_000, n),
        error_latency_ns=rng.lognormal(14, 1, error_count).astype(np.int64),
        errors=Counter(MESSAGES[i] for i in rng.integers(0, len(MESSAGES), error_count)),
        sent_latency_ns=np.maximum(latency_ns - lag_ns[:n], 0) if open_loop else np.empty(0, np.int64),
        lag_ns=lag_ns,
        held_back=int(rng.integers(0, 3)) if open_loop else 0,
    )


def spread(rng, samples, workers, windows, open_loop=False):
    """Deal `samples` at random over the workers active in each window.

    Returns the raw windows as [window][worker] (None where idle) and the pooled windows.
    """
    active = rng.random((windows, workers)) > 0.2
    active[0, 0] = True
    slots = np.flatnonzero(active)
    where = rng.integers(0, slots.size, samples.size)
    offsets = rng.integers(0, 10**12, workers)  # every worker has its own monotonic clock
    raw = [[None] * workers for _ in range(windows)]
    for i, slot in enumerate(slots):
        k, w = divmod(int(slot), workers)
        raw[k][w] = raw_window(rng, samples[where == i], int(offsets[w]) + k * WINDOW_NS, open_loop)
    pooled = [
        PooledWindow(k * WINDOW_NS, (k + 1) * WINDOW_NS, tuple(None if r is None else digest(r, 4, 0.5) for r in row))
        for k, row in enumerate(raw)
    ]
    return raw, pooled


def in_order(raw):
    """The raw windows in the order their digests merge: window by window, worker by worker."""
    return [r for row in raw for r in row if r is not None]


def of_worker(raw, worker):
    return [row[worker] for row in raw if row[worker] is not None]


def assert_within_precision(estimate, exact):
    assert abs(estimate - exact) <= PRECISION * abs(exact) * (1 + 1e-12) + 1e-12, (estimate, exact)


def assert_like_pooled_samples(pooled, exact):
    assert (pooled.request_count, pooled.error_count) == (exact.request_count, exact.error_count)
    assert [(k.kind, k.count, list(k.messages.items())) for k in pooled.error_kinds] == [
        (k.kind, k.count, list(k.messages.items())) for k in exact.error_kinds
    ]
    assert pooled.avg_latency_us == pytest.approx(exact.avg_latency_us, rel=1e-12)
    assert pooled.std_latency_us == pytest.approx(exact.std_latency_us, rel=1e-9, abs=1e-9)
    assert pooled.avg_send_us == pytest.approx(exact.avg_send_us, rel=1e-12)
    assert pooled.avg_recv_us == pytest.approx(exact.avg_recv_us, rel=1e-12)
    assert pooled.avg_response_wait_us == pytest.approx(exact.avg_response_wait_us, rel=1e-9, abs=1e-6)
    assert list(pooled.percentile_latency_us) == list(exact.percentile_latency_us)
    for p, value in exact.percentile_latency_us.items():
        assert_within_precision(pooled.percentile_latency_us[p], value)
    assert [p for p, _ in pooled.latency_curve_us] == [p for p, _ in exact.latency_curve_us]
    for (_, estimate), (_, value) in zip(pooled.latency_curve_us, exact.latency_curve_us):
        assert_within_precision(estimate, value)
    assert list(pooled.error_latency_us) == list(exact.error_latency_us)
    for key, value in exact.error_latency_us.items():
        if key == "avg":
            assert pooled.error_latency_us[key] == pytest.approx(value, rel=1e-12)
        else:
            assert_within_precision(pooled.error_latency_us[key], value)


DISTRIBUTIONS = {
    "lognormal": lambda rng: rng.lognormal(15, 0.7, 20_000),
    "bimodal": lambda rng: np.concatenate([rng.normal(2e6, 1e5, 15_000), rng.normal(9e7, 5e6, 800)]).clip(0),
    "heavy-tail": lambda rng: rng.pareto(1.1, 20_000) * 1e5,
    "one": lambda rng: rng.lognormal(15, 1, 1),
    "two": lambda rng: rng.lognormal(15, 1, 2),
    "three": lambda rng: rng.lognormal(15, 1, 3),
    "below-2048": lambda rng: rng.integers(0, 2048, 3_000),
    "huge": lambda rng: rng.integers(2**50, 2**60, 3_000),
}


@pytest.mark.parametrize("workers", [2, 3, 8])
@pytest.mark.parametrize("windows", [1, 3])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_merged_digests_report_like_the_pooled_samples(distribution, windows, workers):
    rng = np.random.default_rng([windows, workers, len(distribution)])
    samples = DISTRIBUTIONS[distribution](rng).astype(np.int64)
    raw, pooled = spread(rng, samples, workers, windows)
    stats = pooled_client_stats(pooled, batch_size=4, percentiles=[75, 99.9])
    assert_like_pooled_samples(stats, client_stats(in_order(raw), batch_size=4, percentiles=[75, 99.9]))
    assert stats.request_count == samples.size
    assert stats.duration_s == pytest.approx(windows * WINDOW_NS / 1e9)  # the driver's clock
    # Throughputs summed: each worker's over its own window time.
    per_worker = [client_stats(of_worker(raw, w), batch_size=4).throughput_infer_per_s for w in range(workers)]
    assert stats.throughput_infer_per_s == pytest.approx(sum(per_worker), rel=1e-12)


def test_bounds_of_the_curve_are_exact():
    rng = np.random.default_rng(7)
    samples = rng.pareto(1.1, 10_000).astype(np.int64) * 1000 + 123_457
    raw, pooled = spread(rng, samples, 4, 2)
    curve = dict(pooled_client_stats(pooled, batch_size=1).latency_curve_us)
    assert curve[100] == samples.max() / 1e3 and curve[0] == samples.min() / 1e3
    assert list(curve) == list(CURVE_PERCENTILES)


@pytest.mark.parametrize("samples", [0, 1])
def test_no_samples_report_like_client_stats(samples):
    idle = [PooledWindow(0, WINDOW_NS, (None, None)), PooledWindow(WINDOW_NS, 2 * WINDOW_NS, (None, None))]
    empty = WindowSamples(0, WINDOW_NS, *(np.empty(0, np.int64),) * 4)
    windows = idle if not samples else [PooledWindow(0, WINDOW_NS, (digest(empty, 0, 0.0), None))]
    stats = pooled_client_stats(windows, batch_size=1, percentiles=[75])
    exact = client_stats([] if not samples else [empty], batch_size=1, percentiles=[75])
    assert stats == dataclasses.replace(exact, duration_s=stats.duration_s)
    assert stats.percentile_latency_us == {50: 0.0, 75: 0.0, 90: 0.0, 95: 0.0, 99: 0.0}
    assert stats.latency_curve_us == () and stats.error_latency_us == {} and stats.throughput_infer_per_s == 0


def test_only_errors():
    rng = np.random.default_rng(8)
    raw, pooled = spread(rng, np.empty(0, np.int64), 3, 2)
    stats = pooled_client_stats(pooled, batch_size=1)
    assert stats.request_count == 0 and stats.error_count > 0
    assert_like_pooled_samples(stats, client_stats(in_order(raw), batch_size=1))


@pytest.mark.parametrize("workers", [2, 5])
def test_open_loop_figures_match_the_pooled_samples(workers):
    rng = np.random.default_rng(workers)
    raw, pooled = spread(rng, rng.lognormal(15, 0.7, 20_000).astype(np.int64), workers, 3, open_loop=True)
    stats = pooled_open_loop_stats(pooled, target_rate_per_s=1000.0)
    exact = open_loop_stats(in_order(raw), target_rate_per_s=1000.0)
    assert stats.target_rate_per_s == 1000.0
    assert (stats.sent_count, stats.late_count, stats.held_back_count) == (
        exact.sent_count,
        exact.late_count,
        exact.held_back_count,
    )
    per_worker = [open_loop_stats(of_worker(raw, w), 0.0).achieved_rate_per_s for w in range(workers)]
    assert stats.achieved_rate_per_s == pytest.approx(sum(per_worker), rel=1e-12)
    assert list(stats.schedule_lag_us) == ["p50", "p99", "max"]
    for key, value in exact.schedule_lag_us.items():
        assert_within_precision(stats.schedule_lag_us[key], value)
    assert stats.schedule_lag_us["max"] == exact.schedule_lag_us["max"]
    assert stats.sent_avg_latency_us == pytest.approx(exact.sent_avg_latency_us, rel=1e-12)
    assert list(stats.sent_percentile_latency_us) == list(REPORTED_PERCENTILES)
    for p, value in exact.sent_percentile_latency_us.items():
        assert_within_precision(stats.sent_percentile_latency_us[p], value)


def test_late_requests_are_counted_from_the_raw_lag():
    # LATE_NS and LATE_NS + 1 share a bucket: only the raw lags tell them apart.
    window = WindowSamples(0, 10, *(np.empty(0, np.int64),) * 4, lag_ns=np.array([LATE_NS, LATE_NS + 1, -3, 0]))
    d = digest(window, peak_in_flight=2, cpu_s=0.1)
    assert d.late_count == 1
    assert (d.lag.count, d.lag.min) == (4, 0)  # an early send counts as no lag
    windows = [PooledWindow(0, 10, (d,))]
    assert pooled_open_loop_stats(windows, 1.0).late_count == open_loop_stats([window], 1.0).late_count == 1


def test_digest_of_a_recorded_window_and_its_pickle():
    recorder = SampleRecorder(now_ns=1_000)
    rng = np.random.default_rng(9)
    for start, latency in zip(rng.integers(0, 10**9, 5_000).tolist(), rng.lognormal(14, 1, 5_000).astype(int).tolist()):
        recorder.record_send(start, start + 20)
        recorder.record(start, start + 20, start + latency, InferOutcome(300, 200))
    recorder.record(None, 0, 7_000, InferOutcome(0, 0, http_status(503, "busy")))
    recorder.held_back = 2
    window = recorder.close_window(now_ns=1_000 + WINDOW_NS)
    d = pickle.loads(pickle.dumps(digest(window, peak_in_flight=17, cpu_s=1.25)))
    assert isinstance(d, WindowDigest)
    assert (d.start_ns, d.end_ns, d.duration_s) == (1_000, 1_000 + WINDOW_NS, 5.0)
    assert (d.latency.count, d.sent_latency.count, d.lag.count, d.error_latency.count) == (5_000, 5_000, 5_000, 1)
    assert (d.send_sum_ns, d.recv_sum_ns) == (5_000 * 300, 5_000 * 200)
    assert (d.errors, d.held_back, d.peak_in_flight, d.cpu_s, d.late_count) == (Counter({http_status(503, "busy"): 1}), 2, 17, 1.25, 0)
    assert d.latency.total == int(window.latency_ns.sum())


def test_worker_figures_are_over_the_workers_own_windows():
    def raw(start_ns, duration_ns, latency_ns, lag_ns=(), errors=0):
        return WindowSamples(
            start_ns, start_ns + duration_ns, np.array(latency_ns), np.zeros(len(latency_ns), np.int64),
            np.zeros(len(latency_ns), np.int64), np.full(errors, 5_000), Counter({timeout(9): errors} if errors else {}),
            lag_ns=np.array(lag_ns, np.int64),
        )  # fmt: skip

    lags = [10_000, 20_000, 2 * LATE_NS, 30_000]
    windows = [
        PooledWindow(0, WINDOW_NS, (digest(raw(0, 4 * 10**9, [1_000, 2_000], errors=1), 3, 0.8), None)),
        PooledWindow(WINDOW_NS, 2 * WINDOW_NS, (
            digest(raw(4 * 10**9, 4 * 10**9, [3_000]), 3, 0.4),
            digest(raw(7, 2 * 10**9, [1_000] * 4, lags), 9, 1.9),
        )),
    ]  # fmt: skip
    first = worker_figures(windows, 0, "node-a", 101, share=2.0, batch_size=2)
    assert (first.worker, first.host, first.pid, first.share, first.lost) == (0, "node-a", 101, 2.0, None)
    assert (first.request_count, first.error_count) == (3, 1)
    assert first.throughput_infer_per_s == pytest.approx(3 * 2 / 8.0)
    assert first.schedule_lag_us == {} and first.late_fraction == 0.0
    assert first.cpu_pct == pytest.approx(100 * 1.2 / 8.0)
    second = worker_figures(windows, 1, "node-b", 202, share=2.0, batch_size=2, lost="actor died")
    assert (second.request_count, second.error_count, second.lost) == (4, 0, "actor died")
    assert second.throughput_infer_per_s == pytest.approx(4 * 2 / 2.0)  # only the window it took part in
    assert list(second.schedule_lag_us.values()) == [pytest.approx(30.0, rel=PRECISION), 2_000.0, 2_000.0]
    assert second.late_fraction == 0.25 and second.overloaded
    assert second.cpu_pct == pytest.approx(95.0)
    absent = worker_figures(windows, 5, "node-c", 303, share=0.0, batch_size=2)
    assert (absent.request_count, absent.throughput_infer_per_s, absent.cpu_pct, absent.schedule_lag_us) == (0, 0.0, 0.0, {})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.lists(st.integers(0, 10**12), max_size=12), min_size=1, max_size=5),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([(), (75,), (99.9, 1)]),
)
def test_any_split_reports_like_the_pooled_samples(latencies, percentiles):
    """latencies[window][worker]: whatever the split, the merged figures are the pooled samples'."""
    rng = np.random.default_rng(0)
    raw = [[raw_window(rng, np.array(ls, np.int64), k * WINDOW_NS) for ls in row] for k, row in enumerate(latencies)]
    pooled = [PooledWindow(k * WINDOW_NS, (k + 1) * WINDOW_NS, tuple(digest(r, 0, 0.0) for r in row)) for k, row in enumerate(raw)]
    exact = client_stats(in_order(raw), batch_size=1, percentiles=percentiles)
    assert_like_pooled_samples(pooled_client_stats(pooled, batch_size=1, percentiles=percentiles), exact)


@pytest.mark.parametrize("workers", [1, 3, 8])
@pytest.mark.parametrize("distribution", ["lognormal", "bimodal", "heavy-tail"])
def test_goodput_merges_exactly(distribution, workers):
    """Each worker counts its good requests from its raw latencies; the level's goodput sums each worker's
    over its own window time, as throughput does, and is exactly the pooled samples' when one worker sends all."""
    rng = np.random.default_rng([workers, len(distribution), 7])
    samples = DISTRIBUTIONS[distribution](rng).astype(np.int64)
    bound_ms = float(np.median(samples)) / 1e6
    raw, _ = spread(rng, samples, workers, 3)
    pooled = [
        PooledWindow(k * WINDOW_NS, (k + 1) * WINDOW_NS, tuple(None if r is None else digest(r, 4, 0.5, bound_ms) for r in row))
        for k, row in enumerate(raw)
    ]
    stats = pooled_client_stats(pooled, batch_size=4, goodput_latency_ms=bound_ms)
    assert sum(d.good_count for w in pooled for d in w.digests if d is not None) == good_count(samples, bound_ms)
    per_worker = [client_stats(of_worker(raw, w), batch_size=4, goodput_latency_ms=bound_ms).goodput_infer_per_s
                  for w in range(workers)]  # fmt: skip
    assert stats.goodput_infer_per_s == pytest.approx(sum(per_worker), rel=1e-12)
    if workers == 1:
        exact = client_stats(in_order(raw), batch_size=4, goodput_latency_ms=bound_ms)
        assert stats.goodput_infer_per_s == pytest.approx(exact.goodput_infer_per_s, rel=1e-12)
    assert stats.goodput_infer_per_s < stats.throughput_infer_per_s
    huge = [PooledWindow(w.start_ns, w.end_ns, tuple(None if r is None else digest(r, 4, 0.5, 1e12) for r in row))
            for w, row in zip(pooled, raw)]  # fmt: skip
    everything = pooled_client_stats(huge, batch_size=4, goodput_latency_ms=1e12)
    assert everything.goodput_infer_per_s == everything.throughput_infer_per_s
    assert pooled_client_stats(pooled, batch_size=4).goodput_infer_per_s is None  # no bound: not measured


def test_good_requests_are_counted_from_the_raw_latencies():
    # 1_000_000 and 1_000_400 ns share a histogram bucket: only the raw latencies tell them apart at a bound between.
    window = WindowSamples(0, 10**9, np.array([1_000_000, 1_000_400, 3_000_000]), *(np.zeros(3, np.int64),) * 2, np.empty(0, np.int64))
    d = digest(window, peak_in_flight=1, cpu_s=0.1, goodput_latency_ms=1.0002)
    assert d.latency.counts.tolist() == [2, 1]  # the bucket spans the bound
    assert d.good_count == 1 and digest(window, 1, 0.1).good_count == 0
    assert pickle.loads(pickle.dumps(d)).good_count == 1
    stats = pooled_client_stats([PooledWindow(0, 10**9, (d,))], batch_size=1, goodput_latency_ms=1.0002)
    assert stats.goodput_infer_per_s == client_stats([window], 1, goodput_latency_ms=1.0002).goodput_infer_per_s == 1.0
