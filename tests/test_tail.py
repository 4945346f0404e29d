"""loadgen.tail: per-stage distributions and tail attribution, on a real capture of the stalling
ensemble (tests/data/traces/stalling) and on synthetic trees with a known slow part."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.stats import percentile_of_sorted
from loadgen.tail import (
    StageDistribution,
    TailAttribution,
    TailBands,
    TailShare,
    TracedRequest,
    attribute_tail,
    join,
    level_tracing,
    request_parts_us,
    stage_distributions,
    stage_samples_us,
    tail_bands,
    tail_line,
)
from loadgen.timeline import TimelineSpan, request_timeline
from loadgen.traces import STAGES, ModelTrace, RequestTrace, TraceReader

TRACES = Path(__file__).parent / "data" / "traces"


def captured(directory: str) -> tuple[list[RequestTrace], dict[str, float]]:
    reader = TraceReader(TRACES / directory / "trace.json")
    return reader.poll() + reader.finish(), json.loads((TRACES / directory / "client.json").read_text())


def bands_of(latencies_us, percentile: float = 99.0) -> TailBands:
    ordered = np.sort(np.asarray(latencies_us, dtype=np.float64))
    return tail_bands(lambda p: percentile_of_sorted(ordered, p), percentile)


def shares_of(attribution: TailAttribution) -> dict:
    return {(share.model, share.part): share.share for share in attribution.shares}


@pytest.mark.parametrize("percentile", [99, 90])
def test_the_stalling_step_is_named_first_on_a_real_capture(percentile):
    traces, latencies = captured("stalling")
    requests = join(latencies, traces)
    assert len(requests) == len(latencies) == 20
    attribution = attribute_tail(requests, bands_of(list(latencies.values()), percentile))
    assert attribution.tail_requests >= 1 and attribution.middle_requests >= 1
    first = attribution.shares[0]
    assert first.model == "middle" and first.part in ("queue", "compute_infer")
    # The stalled request's own sleep, and the wait of the one behind it.
    assert sum(share.share for share in attribution.shares if share.model == "middle") > 0.9
    assert sum(shares_of(attribution).values()) == pytest.approx(1.0)
    assert all(share.share < 0.05 for share in attribution.shares if share.model in ("first", "last"))
    assert " of the tail is " in tail_line(attribution) and tail_line(attribution).endswith(f"{first.part} in middle")


def test_distributions_of_a_real_capture():
    traces, _ = captured("stalling")
    distributions = {(d.model, d.part): d for d in stage_distributions(stage_samples_us(traces))}
    models = list(dict.fromkeys(model for model, _ in distributions))
    assert models == ["stalling-ensemble", "first", "middle", "last"]
    assert set(part for model, part in distributions if model == "stalling-ensemble") == {"total", "scheduling"}
    assert all(d.traces == len(traces) == 21 for d in distributions.values())
    # Two of the 21 requests stalled 50 ms in middle's compute (and the first one loaded the stub).
    infer = distributions[("middle", "compute_infer")]
    assert infer.p50_us < 2_000 and 45_000 < infer.p99_us <= infer.max_us < 60_000
    for d in distributions.values():
        assert 0 <= d.p50_us <= d.p90_us <= d.p99_us <= d.max_us


def test_nested_ensembles_each_get_their_scheduling():
    traces, _ = captured("nested")
    samples = stage_samples_us(traces)
    assert [key for key in samples if key[1] == "scheduling"] == [("nested-outer", "scheduling"), ("nested-inner", "scheduling")]
    assert ("add-one", "scheduling") not in samples and ("nested-inner", "queue") not in samples


# Synthetic requests: an ensemble "ens" of steps a, b, c run one after the other, each with the
# stage times given (µs), `gap_us` of ensemble scheduling before, between and after the steps,
# `frontend_us` of HTTP receive and send each side, and `network_us` outside the server.
STEP = {"queue": 50, "compute_input": 10, "compute_infer": 500, "compute_output": 20}


def synthetic(request_id: str, slower: dict | None = None, gap_us: float = 30, network_us: float = 300,
              frontend_us: float = 20) -> TracedRequest:
    slower = slower or {}
    next_id = iter(range(1, 100))
    ensemble_id = next(next_id)
    clock = 0.0

    def at(us: float) -> int:
        return round(us * 1e3)

    stamps = {"HTTP_RECV_START": at(clock)}
    clock += frontend_us
    stamps["REQUEST_START"] = at(clock)
    steps = []
    for name in ("a", "b", "c"):
        clock += gap_us + slower.get(("ens", "scheduling"), 0) / 4  # 4 gaps
        step = {"REQUEST_START": at(clock)}
        for stamp, part in (("QUEUE_START", None), ("COMPUTE_START", "queue"), ("COMPUTE_INPUT_END", "compute_input"),
                            ("COMPUTE_OUTPUT_START", "compute_infer"), ("COMPUTE_END", "compute_output")):
            if part:
                clock += STEP[part] + slower.get((name, part), 0)
            step[stamp] = at(clock)
        clock += 1
        step["REQUEST_END"] = at(clock)
        steps.append(ModelTrace(next(next_id), name, "1", step))
    clock += gap_us + slower.get(("ens", "scheduling"), 0) / 4
    stamps["REQUEST_END"] = at(clock)
    clock += frontend_us
    stamps["HTTP_SEND_END"] = at(clock)
    root = ModelTrace(ensemble_id, "ens", "1", stamps, tuple(steps))
    latency_us = clock + network_us + slower.get((None, "client_network"), 0)
    return TracedRequest(latency_us, RequestTrace(request_id, root))


def level(slow_part, extra_us: float = 20_000, count: int = 200, slow_every: int = 20) -> list[TracedRequest]:
    """`count` requests, every `slow_every`-th with `extra_us` more in `slow_part`, and a little
    jitter elsewhere so that percentiles split the requests."""
    requests = []
    for n in range(count):
        slower = {("a", "compute_infer"): n % 7, ("c", "queue"): n % 5}
        if n % slow_every == slow_every - 1:
            slower[slow_part] = slower.get(slow_part, 0) + extra_us
        requests.append(synthetic(f"r{n}", slower))
    return requests


@pytest.mark.parametrize("slow_part", [("b", "compute_infer"), ("a", "queue"), ("c", "compute_output"),
                                       ("b", "compute_input"), ("ens", "scheduling"), (None, "client_network")])
def test_the_part_made_slow_in_the_tail_is_named_first(slow_part):
    requests = level(slow_part)
    attribution = attribute_tail(requests, bands_of([r.latency_us for r in requests], 99))
    assert 1 <= attribution.tail_requests <= 10  # slow requests only
    first = attribution.shares[0]
    assert (first.model, first.part) == slow_part
    assert first.share > 0.99 and first.extra_us == pytest.approx(20_000, rel=1e-3)
    assert sum(shares_of(attribution).values()) == pytest.approx(1.0)
    assert [s.share for s in attribution.shares] == sorted((s.share for s in attribution.shares), reverse=True)


def test_request_parts_follow_the_definitions():
    request = synthetic("r", gap_us=30, network_us=300, frontend_us=20)
    parts = request_parts_us(request)
    assert parts[("b", "compute_infer")] == pytest.approx(500)
    assert parts[("ens", "scheduling")] == pytest.approx(4 * 30)
    # The server time runs from the receive to the send end: the frontend is not outside the server.
    assert parts[(None, "client_network")] == pytest.approx(300)
    assert ("ens", "queue") not in parts and ("ens", "total") not in parts


def test_a_part_faster_in_the_tail_counts_as_zero():
    middle = [synthetic(f"m{n}", {("a", "queue"): 5_000}) for n in range(10)]
    tail = [synthetic("t", {("b", "compute_infer"): 10_000})]
    requests = middle + tail
    attribution = attribute_tail(requests, TailBands(99, tail[0].latency_us, middle[0].latency_us, middle[0].latency_us))
    assert shares_of(attribution) == {("b", "compute_infer"): 1.0}  # a's queue, 5 ms less in the tail, is not there


def test_no_extra_time_gives_no_shares():
    requests = [synthetic(f"r{n}") for n in range(10)]
    attribution = attribute_tail(requests, bands_of([r.latency_us for r in requests]))
    assert attribution.tail_requests == attribution.middle_requests == 10  # all equal: all in both
    assert attribution.shares == ()
    assert tail_line(attribution).endswith("no tail attribution (10 traced requests in the tail, 10 around the median)")


def test_no_traced_request_in_the_tail_gives_no_shares():
    requests = [synthetic(f"r{n}") for n in range(10)]
    attribution = attribute_tail(requests, TailBands(99, 1e9, 0, 1e9))
    assert (attribution.tail_requests, attribution.middle_requests, attribution.shares) == (0, 10, ())


def test_a_model_in_two_steps_adds_up():
    step = {"REQUEST_START": 0, "QUEUE_START": 0, "COMPUTE_START": 4000, "REQUEST_END": 5000}
    root = ModelTrace(1, "ens", "1", {"REQUEST_START": 0, "REQUEST_END": 20000},
                      (ModelTrace(2, "same", "1", step), ModelTrace(3, "same", "1", {k: v + 10000 for k, v in step.items()})))
    parts = request_parts_us(TracedRequest(25.0, RequestTrace("r", root)))
    assert parts[("same", "queue")] == 8.0 and parts[("ens", "scheduling")] == 10.0
    assert parts[(None, "client_network")] == 5.0  # no frontend timestamps: the server time is the model's total


def test_join_keeps_the_traces_the_client_knows():
    known, unknown, anonymous = synthetic("a").trace, synthetic("b").trace, synthetic("").trace
    joined = join({"a": 12.5, "c": 1.0}, [known, unknown, anonymous])
    assert joined == [TracedRequest(12.5, known)]


def test_distributions_use_perf_analyzers_percentile_rank():
    requests = [synthetic(f"r{n}", {("b", "queue"): n}) for n in range(100)]  # b's queue: 50..149 µs
    samples = stage_samples_us([r.trace for r in requests])
    assert samples[("b", "queue")] == pytest.approx(np.arange(50, 150))
    distributions = stage_distributions(samples)
    queue = next(d for d in distributions if (d.model, d.part) == ("b", "queue"))
    # Rank round(p/100 * 99): p50 -> 50 (rounded up), p90 -> 89, p99 -> 98.
    assert queue == StageDistribution("b", "queue", 100, 100.0, 139.0, 148.0, 149.0)
    assert [(d.model, d.part) for d in distributions][:3] == [("ens", "total"), ("ens", "scheduling"), ("a", "queue")]


def test_the_console_line():
    bands = TailBands(99, 12_400, 5_000, 6_000)
    share = TailShare("centernet", "queue", 0.71, 3000.0)
    assert tail_line(TailAttribution(bands, 3, 20, (share,))) == "p99 12.4 ms: 71% of the tail is queue in centernet"
    network = TailShare(None, "client_network", 0.5, 10.0)
    assert tail_line(TailAttribution(TailBands(99.9, 800, 1, 2), 3, 20, (network,))) == \
        "p99.9 0.8 ms: 50% of the tail is client_network"
    scheduling = TailShare("centernet-ensemble", "scheduling", 1.0, 10.0)
    assert tail_line(TailAttribution(bands, 1, 1, (scheduling,))).endswith("100% of the tail is scheduling in centernet-ensemble")


def test_tail_bands_take_the_levels_percentiles():
    asked = []
    bands = tail_bands(lambda p: asked.append(p) or p * 10, 99.9)
    assert bands == TailBands(99.9, 999.0, 400.0, 600.0) and asked == [99.9, 40.0, 60.0]


slowdowns = st.dictionaries(
    st.sampled_from([("a", "queue"), ("b", "compute_infer"), ("c", "compute_output"), ("ens", "scheduling"),
                     (None, "client_network")]),
    st.floats(0, 50_000), max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(slowdowns, min_size=1, max_size=30), st.sampled_from([50, 90, 99, 100]))
def test_shares_are_a_sorted_split_of_one(per_request, percentile):
    requests = [synthetic(f"r{n}", slower) for n, slower in enumerate(per_request)]
    attribution = attribute_tail(requests, bands_of([r.latency_us for r in requests], percentile))
    shares = [share.share for share in attribution.shares]
    assert all(0 < share <= 1 for share in shares)
    assert shares == sorted(shares, reverse=True)
    assert not shares or sum(shares) == pytest.approx(1.0)


# --- the slowest traced request's timeline -----------------------------------------------------


def test_a_timeline_lays_out_every_model_and_stage_from_the_receive():
    request = synthetic("r", gap_us=30, network_us=300, frontend_us=20)
    timeline = request_timeline(request.trace, request.latency_us)
    assert (timeline.request_id, timeline.latency_us, timeline.server_us) == ("r", pytest.approx(2203), pytest.approx(1903))
    expected = [(None, "frontend", 0, 0, 1903), ("ens", "total", 0, 20, 1883)]
    for index, name in enumerate("abc"):  # each step: 30 µs after the previous one, 581 µs long
        start = 50 + 611 * index
        expected.append((name, "total", 1, start, start + 581))
        edges = np.cumsum([start, *(STEP[part] for part in STAGES)])
        expected += [(name, part, 1, begin, end) for part, begin, end in zip(STAGES, edges, edges[1:])]
    assert [(s.model, s.part, s.depth) for s in timeline.spans] == [e[:3] for e in expected]
    assert [(s.start_us, s.end_us) for s in timeline.spans] == [pytest.approx(e[3:]) for e in expected]


def test_a_timeline_without_frontend_starts_at_the_earliest_timestamp_and_leaves_out_broken_parts():
    # The step's queue ends before it starts (COMPUTE_START < QUEUE_START): left out, as in the distributions.
    step = {"REQUEST_START": 6_000, "QUEUE_START": 7_000, "COMPUTE_START": 6_500, "COMPUTE_INPUT_END": 8_000,
            "REQUEST_END": 9_000}
    root = ModelTrace(1, "ens", "1", {"REQUEST_START": 5_000, "REQUEST_END": 10_000}, (ModelTrace(2, "step", "1", step),))
    timeline = request_timeline(RequestTrace("r", root), 12.0)
    assert timeline.spans == (TimelineSpan("ens", "total", 0, 0.0, 5.0), TimelineSpan("step", "total", 1, 1.0, 4.0),
                              TimelineSpan("step", "compute_input", 1, 1.5, 3.0))
    assert timeline.server_us == 5.0  # the top-level model's total


def test_a_grpc_timeline_starts_when_the_request_came_not_when_the_wait_began():
    traces, latencies = captured("nested-grpc")
    request = join(latencies, traces)[0]
    timeline = request_timeline(request.trace, request.latency_us)
    stamps = request.trace.root.timestamps_ns
    assert stamps["GRPC_WAITREAD_START"] < stamps["GRPC_WAITREAD_END"]
    frontend = timeline.spans[0]
    assert (frontend.model, frontend.part, frontend.start_us) == (None, "frontend", 0.0)
    assert frontend.end_us == pytest.approx(timeline.server_us) and timeline.server_us == request.trace.server_ns / 1e3
    assert all(0 <= span.start_us <= span.end_us for span in timeline.spans)


def test_nested_ensembles_are_laid_out_depth_first_with_their_depth():
    traces, latencies = captured("nested")
    request = join(latencies, traces)[0]
    timeline = request_timeline(request.trace, request.latency_us)
    models = [(span.model, span.depth) for span in timeline.spans if span.part == "total"]
    assert [model for model, _ in models] == [node.model for node in request.trace.root.walk()]
    depths = dict(models)
    assert depths["nested-outer"] == 0 and depths["nested-inner"] == 1 and max(depths.values()) == 2
    # A model's stages follow it, at its depth.
    for before, span in zip(timeline.spans, timeline.spans[1:]):
        if span.part in STAGES:
            assert span.model == before.model and span.depth == before.depth


def test_the_level_keeps_the_slowest_joined_request():
    traces, latencies = captured("stalling")
    requests = join(latencies, traces)
    tracing = level_tracing(requests, len(traces), lambda p: percentile_of_sorted(np.sort(list(latencies.values())), p), 99)
    slowest = max(latencies, key=latencies.get)
    assert slowest == tracing.slowest.request_id == "req-18"
    assert tracing.slowest == request_timeline(next(r.trace for r in requests if r.trace.request_id == slowest),
                                               latencies[slowest])
    assert tracing.slowest.latency_us == max(latencies.values()) > tracing.slowest.server_us
    # req-18 waited in middle's queue behind a stalled request: its waterfall shows where.
    spans = {(span.model, span.part): span for span in tracing.slowest.spans}
    queue = spans[("middle", "queue")]
    assert queue.end_us - queue.start_us > 45_000
    frontend = spans[(None, "frontend")]
    assert all(frontend.start_us <= span.start_us for span in tracing.slowest.spans)
    assert level_tracing([], len(traces), None, 99).slowest is None  # no traced request, no timeline
