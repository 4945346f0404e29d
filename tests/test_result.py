"""The result model and summary.json: a run's `to_dict()` is what the folder holds, and `from_dict()` reads
it back into the same typed objects (a real sweep, and any result hypothesis builds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from results import (
    captured_tracing,
    client,
    errors,
    gpu,
    histogram,
    level,
    metrics,
    model_metrics,
    open_loop,
    run,
    server,
    verdict,
    worker,
)

from loadgen.options import build_config, config_from_record
from loadgen.errors import UsageError
from loadgen.histogram import LatencyHistogram
from loadgen.measurement import CountCheck, DrainFigures, WindowFigures
from loadgen.metrics import CPU_MEMORY_USED, CPU_UTILIZATION, GPU_POWER, GPU_UTILIZATION, Scrape
from loadgen.report.html_report import render_html
from loadgen.report.junit import write_junit
from loadgen.report.render import load_summary
from loadgen.result import SCHEMA_VERSION, RunResult
from loadgen.runner import run as run_sweep
from loadgen.tail import LevelTracing, StageDistribution, TailAttribution, TailBands, TailShare
from loadgen.stream_stats import StreamedRequest, StreamStats
from loadgen.timeline import RequestTimeline, TimelineSpan


def same_after_reading_back(result: RunResult) -> dict:
    """The run's summary dict, checked to be what a RunResult read from it (or from its JSON) writes again."""
    data = result.to_dict()
    assert RunResult.from_dict(data).to_dict() == data
    text = json.dumps(data, indent=2)
    assert json.loads(text) == data  # JSON-ready: no tuple, no NaN
    assert json.dumps(RunResult.from_dict(json.loads(text)).to_dict(), indent=2) == text
    return data


@pytest.fixture(scope="module")
def sweep(nested_triton, tmp_path_factory) -> tuple[RunResult, Path]:
    """A real sweep, in this process: closed loop with metrics, SLAs and a percentile."""
    report = tmp_path_factory.mktemp("sweep") / "report"
    config = build_config({
        "url": nested_triton.http, "model-name": "nested-outer", "concurrency-range": "1:2", "measurement-interval": 500,
        "max-trials": 3, "percentile": 90, "sla": ["p99_ms<60000", "nested-inner.queue_ms<0"],
        "collect-metrics": True, "metrics-url": nested_triton.metrics_url, "metrics-interval": 100,
        "goodput-latency-ms": 60_000, "report-dir": str(report),
    })  # fmt: skip
    return run_sweep(config), report


def test_a_real_run_is_its_summary_json_and_reads_back_the_same(sweep, tmp_path):
    result, report = sweep
    data = same_after_reading_back(result)
    assert json.loads((report / "summary.json").read_text()) == data
    assert data["schema_version"] == SCHEMA_VERSION and "upgraded_from" not in data
    assert data["metrics_series"]["t_s"] and {0, 1} <= set(data["metrics_series"]["level"])
    assert [verdict["passed"] for lv in data["levels"] for verdict in lv["sla"]] == [True, False, True, False]
    assert data["config"]["goodput_latency_ms"] == 60_000
    for lv in data["levels"]:  # every success is within a minute
        assert lv["client"]["goodput_infer_per_s"] == lv["client"]["throughput_infer_per_s"] > 0
        assert all(w["goodput_infer_per_s"] == w["throughput_infer_per_s"] for w in lv["windows"])

    read = load_summary(report)
    assert read.started_ns == 0 and read.upgraded_from is None
    assert [read.span_s(lv) for lv in read.levels] == [result.span_s(lv) for lv in result.levels]
    assert [read.level_at(s.t_ns) for s in read.metrics_series] == [result.level_at(s.t_ns) for s in result.metrics_series]
    assert read.sla_passed is result.sla_passed is False
    # The reports a run writes are the ones `loadgen report` redraws from its summary.json.
    for name, model in (("run", result), ("read", read)):
        render_html(model, [], tmp_path / f"{name}.html")
        write_junit(tmp_path / f"{name}.xml", model)
    assert (tmp_path / "run.html").read_text() == (tmp_path / "read.html").read_text()
    assert (tmp_path / "run.xml").read_text() == (tmp_path / "read.xml").read_text()


def test_a_levels_traces_read_back_with_the_timeline_of_its_slowest_request():
    """A real capture of the stalling ensemble: its figures and its slowest request's spans survive summary.json."""
    tracing = captured_tracing()
    data = same_after_reading_back(run(level(1, tracing=tracing)))
    slowest = data["levels"][0]["tracing"]["slowest"]
    assert slowest["request_id"] == "req-18"
    assert len(slowest["spans"]) == 1 + 1 + 3 * 5  # the frontend, the ensemble, its 3 steps and their 4 stages each
    assert slowest["spans"][0] == {"model": None, "part": "frontend", "depth": 0, "start_us": 0.0,
                                   "end_us": slowest["server_us"]}
    assert RunResult.from_dict(json.loads(json.dumps(data))).levels[0].tracing == tracing


def test_a_summary_missing_a_part_is_one_line(tmp_path):
    data = run(level(1)).to_dict()
    del data["levels"][0]["count_check"]
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(UsageError) as caught:
        load_summary(tmp_path)
    assert str(caught.value) == (f"{tmp_path / 'summary.json'} is not a whole summary of schema version {SCHEMA_VERSION} "
                                 "(it has no 'count_check'): was the run's folder edited?")  # fmt: skip


def test_a_config_is_read_back_as_recorded_without_its_files(tmp_path):
    """A run's options come back as summary.json recorded them: credentials masked, files that are gone kept by name."""
    intervals = tmp_path / "intervals.txt"
    intervals.write_text("1000\n2000\n")
    config = build_config({"url": "https://user:secret@host:8443", "model-name": "m", "request-intervals": str(intervals),
                           "header": ["Authorization: Bearer t0ken", "X-Team: perf"], "shape": ["INPUT:3,4"],
                           "sla": ["p99_ms<50"], "ssl-https-verify-peer": 0})  # fmt: skip
    intervals.unlink()
    recorded = config_from_record(config.to_dict())
    assert recorded.to_dict() == config.to_dict()
    assert recorded.load.request_intervals == intervals and recorded.inputs.shapes == {"INPUT": (3, 4)}
    assert [sla.expression for sla in recorded.gates.slas] == ["p99_ms<50"]
    assert recorded.target.url == "https://***@host:8443" and recorded.target.headers == {"Authorization": "***", "X-Team": "perf"}


# --- any result: hypothesis -----------------------------------------------------------------------

figures = st.floats(0, 1e9, allow_nan=False)
maybe = lambda strategy: st.none() | strategy  # noqa: E731
counts = st.integers(0, 10**6)
names = st.text("abcdefghij-_.", min_size=1, max_size=8)
percentiles = st.dictionaries(st.sampled_from([50, 85, 90, 95, 99]), figures, min_size=1, max_size=5)


@st.composite
def level_windows(draw, origin_ns: int) -> list[WindowFigures]:
    """Back-to-back windows at any ns; as upgraded summaries may have them, without times (version 1),
    errors and requests outstanding (before version 5) or some latencies."""
    timed, recorded = draw(st.booleans()), draw(st.booleans())
    start = origin_ns + draw(st.integers(0, 10**13))
    made = []
    for _ in range(draw(st.integers(1, 5))):
        end = start + draw(st.integers(1, 10**11))
        successes = draw(st.integers(0, 1000))
        made.append(WindowFigures(
            start if timed else None, end if timed else None, (end - start) / 1e9, successes, draw(figures), draw(figures),
            draw(maybe(figures)) if successes else None,
            draw(maybe(st.dictionaries(st.sampled_from([50, 90, 95, 99]), maybe(figures), min_size=1))) if successes else None,
            draw(counts) if recorded else None, draw(counts) if recorded else None, draw(figures) if recorded else None,
            draw(maybe(figures)),
        ))  # fmt: skip
        start = end
    return made


@st.composite
def servers(draw, depth: int = 0):
    composing = draw(st.lists(servers(depth + 1), max_size=2)) if depth < 2 else []
    return server(draw(names), *(draw(figures) for _ in range(5)), composing=composing, success_count=draw(counts))


parts = st.sampled_from(["queue", "compute_infer", "total", "scheduling", "client_network"])
spans = st.builds(TimelineSpan, maybe(names), st.sampled_from(["frontend", "total", "queue"]), st.integers(0, 3), figures,
                  figures)


@st.composite
def tracings(draw) -> LevelTracing:
    """A level's figures from traces, with or without a tail and a slowest request (any figures: only the shape is read)."""
    bands = st.builds(TailBands, st.sampled_from([90, 99, 99.9]), figures, figures, figures)
    shares = st.lists(st.builds(TailShare, maybe(names), parts, st.floats(0, 1), figures), max_size=2).map(tuple)
    return LevelTracing(
        draw(counts), draw(counts),
        tuple(draw(st.lists(st.builds(StageDistribution, names, parts, counts, figures, figures, figures, figures), max_size=3))),
        draw(maybe(st.builds(TailAttribution, bands, counts, counts, shares))),
        draw(maybe(st.builds(RequestTimeline, names, figures, maybe(figures), st.lists(spans, max_size=4).map(tuple)))),
    )  # fmt: skip


@st.composite
def streams(draw) -> StreamStats:
    """A level's streaming figures (any figures: only the shape is read)."""
    keys = st.just(("avg", "p50", "p90", "p99", "max")) | st.just(("avg", "p50", "p90", "p99", "max", "p95"))
    distribution = keys.flatmap(lambda ks: st.fixed_dictionaries({key: figures for key in ks}))
    values = st.lists(st.integers(0, 10**9), max_size=30).map(lambda ns: LatencyHistogram.of(np.array(ns, np.int64)))
    examples = st.lists(st.builds(StreamedRequest, figures, st.lists(figures, max_size=4).map(tuple)), max_size=5).map(tuple)
    return StreamStats(draw(counts), draw(counts), draw(figures), draw(distribution), draw(maybe(distribution)),
                       draw(maybe(counts)), draw(maybe(figures)), draw(values), draw(maybe(values)), draw(examples),
                       draw(maybe(figures)))  # fmt: skip


@st.composite
def levels(draw, origin_ns: int):
    stats = client(
        draw(counts), draw(counts), draw(figures), draw(figures), draw(figures), draw(percentiles),
        std_latency_us=draw(figures), avg_send_us=draw(figures), avg_recv_us=draw(figures),
        error_kinds=draw(st.lists(st.builds(errors, names, st.dictionaries(names, st.integers(1, 100), min_size=1, max_size=3),
                                            maybe(st.integers(100, 599) | names)), max_size=2)),
        error_latency_us=draw(maybe(st.fixed_dictionaries({key: figures for key in ("avg", "p50", "p90", "p99", "max")}))),
        curve=draw(maybe(st.lists(st.tuples(st.sampled_from([0, 50, 99, 99.9, 100]), figures), max_size=5))),
        goodput=draw(maybe(figures)),
    )  # fmt: skip
    gpus = st.lists(st.builds(gpu, names, *(maybe(figures) for _ in range(5))), max_size=2)
    models = st.lists(st.builds(model_metrics, names, counts, counts, st.dictionaries(names, counts, max_size=2), counts, counts), max_size=2)
    return level(
        draw(st.integers(1, 512) | st.floats(0.5, 1e4, allow_nan=False)), draw(st.sampled_from(["Concurrency", "Request Rate"])),
        client_stats=stats, server_figures=draw(servers()), level_windows=draw(level_windows(origin_ns)),
        stable=draw(st.booleans()), count_check=CountCheck(draw(counts), draw(counts), draw(counts), draw(counts)),
        metrics=draw(maybe(st.builds(metrics, gpus, models, scrape_count=counts, energy_per_inference_j=maybe(figures),
                                     cpu_utilization=maybe(figures)))),
        open_loop=draw(maybe(st.builds(open_loop, figures, figures, counts, counts, st.fixed_dictionaries(
            {key: figures for key in ("p50", "p99", "max")}), percentiles))),
        latency_histogram=draw(maybe(st.lists(st.integers(0, 10**7), max_size=50).map(histogram))),
        sla=tuple(draw(st.lists(st.builds(verdict, names, maybe(figures), st.sampled_from(["", "too slow"]), st.booleans()),
                                max_size=2))),
        workers=tuple(draw(st.lists(st.builds(worker, st.integers(0, 8), cpu_pct=figures, late_fraction=st.floats(0, 1),
                                              lost=maybe(names)), max_size=2))),
        drain=draw(maybe(st.builds(DrainFigures, counts, figures, figures, counts, counts, counts, figures))),
        incomplete=draw(maybe(names)),
        tracing=draw(maybe(tracings())),
        streaming=draw(maybe(streams())),
    )  # fmt: skip


@st.composite
def results(draw):
    origin_ns = draw(st.integers(0, 10**15))
    measured = draw(st.lists(levels(origin_ns), max_size=3))
    series = None
    if draw(st.booleans()):
        gpu_labels = (("gpu_uuid", "GPU-1"),)
        keys = [(CPU_UTILIZATION, ()), (CPU_MEMORY_USED, ()), (GPU_UTILIZATION, gpu_labels), (GPU_POWER, gpu_labels)]
        times = sorted(draw(st.lists(st.integers(origin_ns, origin_ns + 10**13), max_size=6)))
        series = tuple(Scrape(t, {key: value for key in keys if (value := draw(maybe(figures))) is not None}) for t in times)
    return run(*measured, started_ns=origin_ns, status=draw(st.sampled_from(["running", "complete", "interrupted", "failed"])),
               stop_reason=draw(maybe(names)), warnings=tuple(draw(st.lists(names, max_size=2))),
               environment=draw(maybe(st.just({"hostname": "h"}))), metrics_series=series,
               upgraded_from=draw(maybe(st.integers(1, SCHEMA_VERSION - 1))),
               options={"collect-metrics": True} if series is not None else {})  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(results())
def test_any_result_reads_back_from_its_dict(result):
    data = same_after_reading_back(result)
    read = RunResult.from_dict(data)
    assert [read.span_s(lv) for lv in read.levels] == [result.span_s(lv) for lv in result.levels]
    assert [lv.tracing for lv in read.levels] == [lv.tracing for lv in result.levels]
