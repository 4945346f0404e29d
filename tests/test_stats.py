"""Percentiles and client figures: pure arithmetic, no server."""

from collections import Counter

import numpy as np
import pytest

from loadgen.outcome import (
    OTHER_MESSAGES,
    FailureKind,
    InferOutcome,
    RequestError,
    connection,
    grpc_status,
    http_status,
    protocol,
    timeout,
)
from loadgen.samples import MAX_DISTINCT_ERRORS, SampleRecorder, WindowSamples
from loadgen.stats import (
    MESSAGES_PER_KIND,
    client_stats,
    error_kinds,
    good_count,
    open_loop_stats,
    percentile_index,
    percentile_of_sorted,
)


def window(latencies_us, duration_s=1.0, start_s=0.0, errors=()):
    latency = np.array([int(v * 1000) for v in latencies_us], dtype=np.int64)
    return WindowSamples(
        start_ns=int(start_s * 1e9),
        end_ns=int((start_s + duration_s) * 1e9),
        latency_ns=latency,
        send_ns=np.full(latency.size, 10_000, dtype=np.int64),
        recv_ns=np.full(latency.size, 5_000, dtype=np.int64),
        error_latency_ns=np.full(len(errors), 1_000, dtype=np.int64),
        errors=Counter(errors),
    )


def test_percentile_rank_is_perf_analyzers():
    # index round(p/100 * (n-1)), halves up: for 1..100, p50 is index 50 (49.5 rounds up).
    values = np.arange(1, 101, dtype=float)
    assert percentile_index(100, 50) == 50
    assert percentile_of_sorted(values, 50) == 51
    assert percentile_of_sorted(values, 90) == 90  # 89.1 rounds down
    assert percentile_of_sorted(values, 99) == 99  # 98.01
    assert percentile_of_sorted(np.array([7.0]), 99) == 7.0


def test_percentile_of_no_samples_is_an_error():
    with pytest.raises(ValueError):
        percentile_index(0, 50)


def test_client_stats_merges_windows():
    stats = client_stats([window([100, 200], 1.0), window([300, 400], 1.0, start_s=1.0)], batch_size=2)
    assert stats.request_count == 4
    assert stats.duration_s == pytest.approx(2.0)
    assert stats.throughput_infer_per_s == pytest.approx(4 * 2 / 2.0)
    assert stats.avg_latency_us == pytest.approx(250)
    assert stats.std_latency_us == pytest.approx(np.std([100, 200, 300, 400], ddof=1))
    assert stats.percentile_latency_us[50] == 300  # index round(1.5) = 2 of [100, 200, 300, 400]
    assert stats.avg_send_us == pytest.approx(10)
    assert stats.avg_recv_us == pytest.approx(5)
    assert stats.avg_response_wait_us == pytest.approx(235)


def test_client_stats_counts_errors_apart_from_latency():
    bad = http_status(400, "bad")
    stats = client_stats([window([100], errors=[bad, bad, timeout(100)])], batch_size=1)
    assert stats.request_count == 1
    assert stats.error_count == 3
    assert stats.error_rate == pytest.approx(0.75)
    assert [(k.kind, k.code, k.count, k.messages) for k in stats.error_kinds] == [
        ("HTTP 400", 400, 2, {"HTTP 400: bad": 2}),
        ("timeout", None, 1, {"timeout: no response within 100 ms": 1}),
    ]
    assert stats.avg_latency_us == 100
    assert stats.error_latency_us == {"avg": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0, "max": 1.0}


@pytest.mark.parametrize(
    "error, label, shown",
    [
        (http_status(500, "Failed to process the request(s) for model 'flaky'"), "HTTP 500",
         "HTTP 500: Failed to process the request(s) for model 'flaky'"),
        (http_status(503), "HTTP 503", "HTTP 503"),
        (grpc_status("INTERNAL", "the server reset the stream (INTERNAL_ERROR)"), "gRPC INTERNAL",
         "gRPC INTERNAL: the server reset the stream (INTERNAL_ERROR)"),
        (connection("cannot connect to 127.0.0.1:1: Connection refused", "UNAVAILABLE"), "connection error",
         "connection error: cannot connect to 127.0.0.1:1: Connection refused"),
        (timeout(100), "timeout", "timeout: no response within 100 ms"),
        (protocol("bad response: malformed chunk", None), "protocol error", "protocol error: bad response: malformed chunk"),
        (http_status(502, "two\nlines"), "HTTP 502", "HTTP 502: two lines"),
    ],
)  # fmt: skip
def test_an_error_is_labelled_by_its_kind_not_its_text(error, label, shown):
    assert error.label == label and str(error) == shown


def test_error_kinds_keep_the_first_distinct_messages_and_sort_by_count():
    errors = Counter({http_status(500, "a"): 1, timeout(9): 5, http_status(500, "b"): 2, http_status(500, "c"): 1,
                      http_status(500, "d"): 3})  # fmt: skip
    kinds = error_kinds(errors)
    assert [(k.kind, k.code, k.count) for k in kinds] == [("HTTP 500", 500, 7), ("timeout", None, 5)]
    assert list(kinds[0].messages) == ["HTTP 500: a", "HTTP 500: b", "HTTP 500: c"][:MESSAGES_PER_KIND]


def test_a_message_that_looks_like_another_kind_stays_its_own_kind():
    """The text is never parsed: a server message that starts like a kind's label does not change the kind."""
    sneaky = grpc_status("UNKNOWN", "timeout: HTTP 503: whatever")
    (kind,) = error_kinds(Counter({sneaky: 2}))
    assert (kind.kind, kind.code, kind.count) == ("gRPC UNKNOWN", "UNKNOWN", 2)


def test_recorder_bounds_the_distinct_messages_of_a_window():
    recorder = SampleRecorder(0)
    for i in range(MAX_DISTINCT_ERRORS + 50):
        recorder.record(None, 0, 1_000, InferOutcome(0, 0, http_status(500, f"request {i} failed")))
    errors = recorder.close_window(10).errors
    assert len(errors) == MAX_DISTINCT_ERRORS + 1
    assert errors[RequestError(FailureKind.HTTP_STATUS, 500, OTHER_MESSAGES)] == 50
    assert sum(errors.values()) == MAX_DISTINCT_ERRORS + 50


def test_client_stats_of_an_empty_window():
    stats = client_stats([window([])], batch_size=1, percentiles=[95])
    assert stats.request_count == 0
    assert stats.throughput_infer_per_s == 0
    assert stats.percentile_latency_us[95] == 0


def test_latency_used_for_stability():
    stats = client_stats([window([100, 200, 300, 400])], batch_size=1, percentiles=[75])
    assert stats.latency_us(None) == stats.avg_latency_us
    assert stats.latency_us(75) == 300  # round(2.25) = 2


def test_recorder_splits_windows_and_fires_count_target():
    recorder = SampleRecorder(now_ns=0, count_target=2)
    recorder.record(None, 0, 1_000, InferOutcome(10, 20))
    assert not recorder.window_full.is_set()
    recorder.record(None, 0, 3_000, InferOutcome(10, 20, error=http_status(500, "boom")))
    assert recorder.window_full.is_set()
    first = recorder.close_window(now_ns=5_000)
    assert (first.start_ns, first.end_ns) == (0, 5_000)
    assert first.latency_ns.tolist() == [1_000]
    assert first.error_latency_ns.tolist() == [3_000]
    assert first.errors == Counter({http_status(500, "boom"): 1})
    assert not recorder.window_full.is_set()
    second = recorder.close_window(now_ns=9_000)
    assert second.start_ns == 5_000 and second.success_count == 0


def test_open_loop_latency_runs_from_the_intended_send():
    recorder = SampleRecorder(now_ns=0)
    recorder.record_send(intended_ns=1_000, sent_ns=1_500)
    recorder.record(1_000, 1_500, 4_000, InferOutcome(10, 20))
    recorder.record_send(intended_ns=2_000, sent_ns=2_000 + 3_000_000)  # 3 ms late
    recorder.record(2_000, 3_002_000, 3_010_000, InferOutcome(10, 20))
    recorder.held_back = 1
    window = recorder.close_window(now_ns=1_000_000_000)
    assert window.latency_ns.tolist() == [3_000, 3_008_000]  # from when each was due
    assert window.sent_latency_ns.tolist() == [2_500, 8_000]  # from when each left
    assert window.lag_ns.tolist() == [500, 3_000_000]
    stats = open_loop_stats([window], target_rate_per_s=2.0)
    assert stats.sent_count == 2 and stats.achieved_rate_per_s == 2.0
    assert stats.late_count == 1 and stats.late_fraction == 0.5 and stats.cannot_keep_up
    assert stats.held_back_count == 1
    assert stats.schedule_lag_us == {"p50": 3_000.0, "p99": 3_000.0, "max": 3_000.0}  # rank round(0.5) = 1
    assert stats.sent_avg_latency_us == 5.25


def test_closed_loop_windows_carry_no_open_loop_samples():
    recorder = SampleRecorder(now_ns=0)
    recorder.record(None, 0, 1_000, InferOutcome(10, 20))
    window = recorder.close_window(now_ns=10)
    assert window.sent_latency_ns.size == 0 and window.lag_ns.size == 0


def test_good_count_is_within_the_bound_inclusive():
    latency_ns = np.array([999_999, 1_000_000, 1_000_001, 5_000_000], np.int64)
    assert good_count(latency_ns, 1.0) == 2  # at most 1 ms: equal to the bound is within it
    assert good_count(latency_ns, 0.001) == 0
    assert good_count(latency_ns, 5.0) == 4
    assert good_count(np.empty(0, np.int64), 1.0) == 0


def test_goodput_counts_like_throughput_the_successes_within_the_bound():
    bad = http_status(500, "fast failure")
    windows = [window([100, 200], 1.0, errors=[bad]), window([300, 400], 3.0, start_s=1.0)]
    assert client_stats(windows, batch_size=2).goodput_infer_per_s is None  # no bound: not measured
    within_250us = client_stats(windows, batch_size=2, goodput_latency_ms=0.25)
    assert within_250us.goodput_infer_per_s == pytest.approx(2 * 2 / 4.0)  # 100 and 200 us, batch 2, over 4 s
    assert client_stats(windows, batch_size=2, goodput_latency_ms=0.2).goodput_infer_per_s == pytest.approx(2 * 2 / 4.0)
    assert client_stats(windows, batch_size=2, goodput_latency_ms=0.1999).goodput_infer_per_s == pytest.approx(1 * 2 / 4.0)
    everything = client_stats(windows, batch_size=2, goodput_latency_ms=1e9)
    assert everything.goodput_infer_per_s == everything.throughput_infer_per_s == pytest.approx(4 * 2 / 4.0)
    # The failure took 1 us: a failure is never goodput.
    assert client_stats(windows, batch_size=2, goodput_latency_ms=0.001).goodput_infer_per_s == 0.0
    assert client_stats([window([])], batch_size=1, goodput_latency_ms=1.0).goodput_infer_per_s == 0.0


def test_open_loop_goodput_runs_from_the_intended_send():
    recorder = SampleRecorder(now_ns=0)
    recorder.record(1_000, 1_000, 1_501_000, InferOutcome(10, 20))  # sent on time, 1.5 ms
    recorder.record(2_000, 3_002_000, 3_502_000, InferOutcome(10, 20))  # 0.5 ms from its send, 3.5 ms from when it was due
    window = recorder.close_window(now_ns=1_000_000_000)
    assert client_stats([window], batch_size=1, goodput_latency_ms=2.0).goodput_infer_per_s == 1.0
    assert client_stats([window], batch_size=1, goodput_latency_ms=4.0).goodput_infer_per_s == 2.0
