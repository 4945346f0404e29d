"""Real result objects for the report tests: RunResult, LevelResult and what they hold, with plausible
defaults, so that a test states only the figures it is about. Times are in seconds since the run
started (the model's ns on a clock that starts at 0 with the run)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.config import RunConfig
from loadgen.options import build_config, config_from_record
from loadgen.histogram import LatencyHistogram
from loadgen.measurement import CountCheck, DrainFigures, LevelResult, WindowFigures
from loadgen.merge import WorkerFigures
from loadgen.metrics import GpuFigures, MetricsFigures, ModelMetrics, Scrape
from loadgen.result import RunResult
from loadgen.server_stats import ModelTree, ServerFigures
from loadgen.sla import Verdict
from loadgen.stats import ClientStats, ErrorKind, OpenLoopStats, percentile_of_sorted
from loadgen.tail import LevelTracing, join, level_tracing
from loadgen.traces import ModelTrace, TraceReader

PERCENTILES = (50, 90, 95, 99)
TRACES = Path(__file__).parent / "data" / "traces"


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


def client(
    request_count: int = 300, error_count: int = 0, duration_s: float = 3.0, throughput: float | None = None,
    avg_latency_us: float = 20_000.0, percentiles: dict[int, float] | None = None, *, std_latency_us: float = 1_000.0,
    avg_send_us: float = 60.0, avg_recv_us: float = 45.0, error_kinds: Sequence[ErrorKind] = (),
    error_latency_us: dict[str, float] | None = None, curve: Sequence[tuple[float, float]] | None = (),
    goodput: float | None = None,
) -> ClientStats:
    """A level's client figures; the throughput defaults to the successes per second, the percentiles to
    ones around the average."""
    return ClientStats(
        request_count=request_count, error_count=error_count, duration_s=duration_s,
        throughput_infer_per_s=request_count / duration_s if throughput is None else throughput,
        avg_latency_us=avg_latency_us, std_latency_us=std_latency_us,
        percentile_latency_us=dict(percentiles) if percentiles is not None else
        {p: avg_latency_us * (0.5 + p / 100) for p in PERCENTILES},
        avg_send_us=avg_send_us, avg_recv_us=avg_recv_us,
        avg_response_wait_us=max(0.0, avg_latency_us - avg_send_us - avg_recv_us),
        error_kinds=tuple(error_kinds), error_latency_us=dict(error_latency_us or {}),
        latency_curve_us=tuple(tuple(point) for point in curve) if curve is not None else None,
        goodput_infer_per_s=goodput,
    )  # fmt: skip


def errors(kind: str, messages: dict[str, int], code: int | str | None = None) -> ErrorKind:
    """One kind of error, its count the messages' sum."""
    return ErrorKind(kind, sum(messages.values()), dict(messages), code)


def window(
    start_s: float | None, end_s: float | None, request_count: int, throughput: float, latency_us: float,
    avg_latency_us: float | None = None, percentiles: dict[int, float | None] | None = None, **fields: Any,
) -> WindowFigures:
    """A window; its average latency defaults to `latency_us` (the figure stability is judged on)."""
    return WindowFigures(
        start_ns=ns(start_s) if start_s is not None else None, end_ns=ns(end_s) if end_s is not None else None,
        duration_s=(end_s - start_s) if start_s is not None and end_s is not None else 1.0,
        request_count=request_count, throughput_infer_per_s=throughput, latency_us=latency_us,
        avg_latency_us=latency_us if avg_latency_us is None else avg_latency_us, percentile_latency_us=percentiles,
        **fields,
    )  # fmt: skip


def windows(start_s: float, count: int, length_s: float, request_count: int, throughput: float, latency_us: float,
            **fields: Any) -> tuple[WindowFigures, ...]:
    """`count` back-to-back windows alike."""
    return tuple(window(start_s + i * length_s, start_s + (i + 1) * length_s, request_count, throughput, latency_us,
                        **fields) for i in range(count))  # fmt: skip


def server(
    name: str, queue_us: float = 40.0, compute_input_us: float = 300.0, compute_infer_us: float = 2_500.0,
    compute_output_us: float = 90.0, overhead_us: float = 120.0, composing: Sequence[ServerFigures] = (),
    success_count: int = 300, version: str = "1",
) -> ServerFigures:
    """A model's server figures; an ensemble's queue and compute are its composing models' sums, as loadgen reports them."""
    if composing:
        queue_us, compute_input_us, compute_infer_us, compute_output_us = (
            sum(getattr(child, part) for child in composing)
            for part in ("queue_us", "compute_input_us", "compute_infer_us", "compute_output_us")
        )
    latency_us = queue_us + compute_input_us + compute_infer_us + compute_output_us + overhead_us
    return ServerFigures(name, version, success_count, success_count, success_count, 0, latency_us, queue_us,
                         compute_input_us, compute_infer_us, compute_output_us, tuple(composing))  # fmt: skip


def tree(figures: ServerFigures) -> ModelTree:
    """The model tree a level's server figures were measured on."""
    return ModelTree(figures.name, figures.version, tuple(tree(child) for child in figures.composing))


def gpu(uuid: str, utilization: float | None = 0.5, power_w: float | None = 200.0, memory_used_bytes: float | None = 6 * 2**30,
        memory_total_bytes: float | None = 80 * 2**30, energy_j: float | None = 600.0) -> GpuFigures:
    return GpuFigures(uuid, utilization, power_w, memory_used_bytes, memory_total_bytes, energy_j)


def model_metrics(name: str, success: int = 300, statistics_success: int | None = None, failure: dict[str, int] | None = None,
                  max_pending: int = 1, tolerance: int = 4) -> ModelMetrics:
    return ModelMetrics(name, "1", success, dict(failure or {"BACKEND": 0, "OTHER": 0}), max_pending,
                        success if statistics_success is None else statistics_success, tolerance)  # fmt: skip


def metrics(gpus: Sequence[GpuFigures] = (), models: Sequence[ModelMetrics] = (), *, scrape_count: int = 3,
            energy_per_inference_j: float | None = None, cpu_utilization: float | None = 0.45,
            cpu_memory_used_bytes: float | None = 3 * 2**30, cpu_memory_total_bytes: float | None = 16 * 2**30) -> MetricsFigures:
    return MetricsFigures(scrape_count, tuple(gpus), energy_per_inference_j, cpu_utilization, cpu_memory_used_bytes,
                          cpu_memory_total_bytes, tuple(models))  # fmt: skip


def open_loop(target_rate_per_s: float, achieved_rate_per_s: float, sent_count: int = 355, late_count: int = 2,
              lag_us: dict[str, float] | None = None, sent_percentiles: dict[int, float] | None = None,
              held_back_count: int = 0, sent_avg_latency_us: float = 9_000.0) -> OpenLoopStats:
    return OpenLoopStats(target_rate_per_s, achieved_rate_per_s, sent_count, late_count, held_back_count,
                         dict(lag_us or {"p50": 80.0, "p99": 1_450.0, "max": 3_000.0}), sent_avg_latency_us,
                         dict(sent_percentiles or {p: sent_avg_latency_us * (0.5 + p / 100) for p in PERCENTILES}))  # fmt: skip


def worker(index: int, *, share: float = 2, request_count: int = 300, error_count: int = 0, throughput: float = 100.0,
           lag_us: dict[str, float] | None = None, late_fraction: float = 0.0, cpu_pct: float = 30.0,
           host: str = "node-a", lost: str | None = None) -> WorkerFigures:
    return WorkerFigures(index, host, 4001 + index, share, request_count, error_count, throughput, dict(lag_us or {}),
                         late_fraction, cpu_pct, lost)  # fmt: skip


def verdict(expression: str, value: float | None, reason: str = "", level_stable: bool = True) -> Verdict:
    """A verdict: passed when there is no reason it failed."""
    return Verdict(expression, value, not reason, reason, level_stable)


def drain(in_flight: int = 0, errors: int = 0, unanswered: int = 0, *, duration_s: float = 0.01, bound_s: float = 10.0,
          answered: int = 0, unanswered_age_s: float = 0.0) -> DrainFigures:
    return DrainFigures(in_flight, duration_s, bound_s, answered, errors, unanswered, unanswered_age_s)


def histogram(latency_us: Sequence[float]) -> LatencyHistogram:
    return LatencyHistogram.of([round(us * 1e3) for us in latency_us])


def level(
    value: float, label: str = "Concurrency", *, client_stats: ClientStats | None = None,
    server_figures: ServerFigures | None = None, level_windows: Sequence[WindowFigures] | None = None,
    stable: bool = True, count_check: CountCheck | None = None, **fields: Any,
) -> LevelResult:
    """A level; by default three 1 s windows from `10 * value` s, figures that agree with each other."""
    stats = client_stats or client()
    figures = server_figures or server("model", success_count=stats.request_count)
    if level_windows is None:
        per_window = stats.request_count // 3
        level_windows = windows(10.0 * value, 3, 1.0, per_window, stats.throughput_infer_per_s, stats.avg_latency_us,
                                percentiles=dict(stats.percentile_latency_us), goodput_infer_per_s=stats.goodput_infer_per_s)  # fmt: skip
    check = count_check or CountCheck(stats.request_count, figures.success_count, 4, stats.error_count)
    return LevelResult(label=label, value=value, stable=stable, windows=tuple(level_windows), client=stats,
                       server=figures, count_check=check, **fields)  # fmt: skip


def scrapes(t_s: Sequence[float], columns: dict[tuple[str, tuple[tuple[str, str], ...]], Sequence[float | None]]) -> tuple[Scrape, ...]:
    """Scrapes at `t_s`, each with the series of `columns` that have a value there."""
    return tuple(Scrape(ns(t), {key: values[i] for key, values in columns.items() if values[i] is not None})
                 for i, t in enumerate(t_s))  # fmt: skip


def recorded(options: dict[str, Any], **entries: Any) -> RunConfig:
    """The config of `options` (long flag names) as summary.json records it, with `entries` changed
    unchecked (as in a summary read back): e.g. an SLA expression no run would take."""
    return config_from_record(build_config(options).to_dict() | entries)


def run(*levels: LevelResult, model: ModelTree | None = None, started_at: str = "2026-11-22T10:00:00+00:00",
        finished_at: str | None = "2026-11-22T10:01:00+00:00", options: dict[str, Any] | None = None,
        config: RunConfig | None = None, started_ns: int = 0, **fields: Any) -> RunResult:
    """A run of `levels`: its config from `options` (long flag names, as in a config file) unless given,
    its model the first level's tree."""
    name = model.name if model else levels[0].server.name if levels else "model"
    config = config or build_config({"model-name": name, **(options or {})})
    return RunResult(
        config=config, model=model or (tree(levels[0].server) if levels else ModelTree(config.target.model_name, "1")),
        server_metadata=fields.pop("server_metadata", {"name": "triton", "version": "2.51.0"}),
        model_configs=fields.pop("model_configs", {}), levels=tuple(levels), started_at=started_at,
        finished_at=finished_at, started_ns=started_ns, **{"environment": {"hostname": "bench-01"}, **fields},
    )  # fmt: skip


def _renamed(node: ModelTrace, names: dict[str, str]) -> ModelTrace:
    children = tuple(_renamed(child, names) for child in node.children)
    return replace(node, model=names.get(node.model, node.model), children=children)


def captured_tracing(directory: str = "stalling", count: int | None = None, names: dict[str, str] | None = None) -> LevelTracing:
    """A level's figures from a real capture (tests/data/traces; `stalling`: 20 traced requests, 21
    traces), joined to its client's first `count` requests, its models renamed by `names`."""
    reader = TraceReader(TRACES / directory / "trace.json")
    traces = [replace(trace, root=_renamed(trace.root, names or {})) for trace in reader.poll() + reader.finish()]
    latencies = dict(list(json.loads((TRACES / directory / "client.json").read_text()).items())[:count])
    ordered = np.sort(np.array(list(latencies.values())))
    return level_tracing(join(latencies, traces), len(traces), lambda p: percentile_of_sorted(ordered, p), 99)
