"""A run's result, and summary.json as its dict form (docs/summary.md).

`RunResult.to_dict()` is summary.json; `RunResult.from_dict()` reads a current-version dict back into
the same typed objects (loadgen.summary_versions brings older files up to the current version first).
Derived figures (error rates, mismatches, breakdowns, `stalled`, `sla_passed`, ...) are properties of
the model: written into the dict for readers of the JSON, never read back from it. The model keeps
times in ns on the run's monotonic clock with `started_ns` as origin; the dict, in seconds since then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loadgen import __version__
from loadgen.capacity import CapacityPlan
from loadgen.config import RunConfig
from loadgen.options import config_from_record
from loadgen.histogram import LatencyHistogram
from loadgen.measurement import CountCheck, DrainFigures, LevelResult, SequenceFigures, WindowFigures
from loadgen.merge import WorkerFigures
from loadgen.metrics import (
    CPU_MEMORY_USED,
    CPU_UTILIZATION,
    GPU_MEMORY_USED,
    GPU_POWER,
    GPU_UTILIZATION,
    GpuFigures,
    MetricsFigures,
    ModelMetrics,
    Scrape,
    gpu_uuids,
)
from loadgen.roof import Roof
from loadgen.roofline import DirectFigures, ModelAtLevel, ModelRoofline, Roofline, level_figures
from loadgen.server_stats import BatchCompute, ModelTree, ServerFigures
from loadgen.sla import Verdict
from loadgen.stats import ClientStats, ErrorKind, OpenLoopStats
from loadgen.stream_stats import StreamedRequest, StreamStats
from loadgen.tail import LevelTracing, StageDistribution, TailAttribution, TailBands, TailShare
from loadgen.timeline import RequestTimeline, TimelineSpan

SCHEMA_VERSION = 14

# RunResult.status: a run's state when its report was written.
RUNNING, COMPLETE, INTERRUPTED, FAILED = "running", "complete", "interrupted", "failed"


@dataclass(frozen=True)
class RunResult:
    config: RunConfig
    model: ModelTree
    server_metadata: dict[str, Any]
    model_configs: dict[str, dict[str, Any]]  # the model's and its composing models', by name
    levels: tuple[LevelResult, ...]
    started_at: str
    finished_at: str | None
    started_ns: int  # monotonic clock, the origin of every time in the report
    stop_reason: str | None = None
    status: str = COMPLETE
    warnings: tuple[str, ...] = ()
    environment: dict[str, Any] | None = field(default_factory=dict)  # None: not recorded (summary.json version 1)
    metrics_series: tuple[Scrape, ...] | None = None  # None without --collect-metrics
    capacity: CapacityPlan | None = None
    loadgen_version: str = __version__  # the loadgen that measured the run
    upgraded_from: int | None = None  # read from an older summary.json: the version it was written in
    # Several models at once: each model's run (its config, model and levels) on the run's clock; the
    # top level then has no levels of its own. Empty for one model.
    mix: tuple[RunResult, ...] = ()
    # Its composing models' cost, direct timing and roof (loadgen.roofline); None: no model's FLOPs
    # known, --no-roofline, or a run that did not complete.
    roofline: Roofline | None = None

    @property
    def parts(self) -> tuple[RunResult, ...]:
        """What the reports show one by one: each model of a mix, or the run itself."""
        return self.mix or (self,)

    @property
    def sla_passed(self) -> bool:
        """Every bound met: with --binary-search, some level met them all; else every level met every
        SLA and, with --require-stable, was stable."""
        if self.mix:
            return all(part.sla_passed for part in self.mix)
        gates = self.config.gates
        if gates.binary_search:
            return self.capacity is not None
        if gates.require_stable and self.unstable_levels:
            return False
        return all(verdict.passed for level in self.levels for verdict in level.sla)

    @property
    def unstable_levels(self) -> list[LevelResult]:
        return [level for level in self.levels if not level.stable]

    def level_at(self, t_ns: int) -> int | None:
        """The index of the level being measured at `t_ns`, None between levels. To the µs, as summary.json
        times them, so that a run read back from it places every scrape where the run did."""
        if self.mix:  # a mix's models measured their levels together: the first model's times are every model's
            return self.mix[0].level_at(t_ns)
        t_s = self.seconds(t_ns)
        for index, level in enumerate(self.levels):
            if not level.windows:
                continue
            start_s, end_s = self.seconds(level.windows[0].start_ns), self.seconds(level.windows[-1].end_ns)
            if start_s is not None and end_s is not None and start_s <= t_s <= end_s:  # type: ignore[operator]
                return index
        return None

    def seconds(self, t_ns: int | None) -> float | None:
        """`t_ns` as summary.json gives it: seconds since the run started, to the µs; None when not recorded."""
        return None if t_ns is None else round((t_ns - self.started_ns) / 1e9, 6)

    def span_s(self, level: LevelResult) -> tuple[float | None, float | None]:
        """When the level's reported windows began and ended, in seconds since the run started."""
        reported = level.reported_windows
        if not reported:
            return None, None
        return self.seconds(reported[0].start_ns), self.seconds(reported[-1].end_ns)

    def to_dict(self) -> dict[str, Any]:
        """summary.json."""
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        if self.upgraded_from is not None:
            data["upgraded_from"] = self.upgraded_from
        return data | {
            "loadgen_version": self.loadgen_version,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,  # running (written after each level), complete, interrupted or failed
            "stop_reason": self.stop_reason,
            "warnings": list(self.warnings),
            "config": self.config.to_dict(),
            "environment": self.environment,
            "server": self.server_metadata,
            "model": _tree_dict(self.model),
            "model_configs": self.model_configs,
            "levels": [_level_dict(self, level) for level in self.levels],
            "metrics_series": _series_dict(self),
            "sla": [sla.expression for sla in self.config.gates.slas],
            "sla_passed": self.sla_passed,
            "capacity": _record(self.capacity) if self.capacity is not None else None,
            "roofline": _roofline_dict(self),
            "mix": [_part_dict(part) for part in self.mix] if self.mix else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """The run a current-version summary dict records; times on a clock that starts at 0 with the run."""
        series = data["metrics_series"]
        return cls(
            config=config_from_record(data["config"]),
            model=_tree(data["model"]),
            server_metadata=data["server"],
            model_configs=data["model_configs"],
            levels=tuple(_level(level) for level in data["levels"]),
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            started_ns=0,
            stop_reason=data["stop_reason"],
            status=data["status"],
            warnings=tuple(data["warnings"]),
            environment=data["environment"],
            metrics_series=_scrapes(series) if series is not None else None,
            capacity=_fields(CapacityPlan, data["capacity"]) if data["capacity"] is not None else None,
            loadgen_version=data["loadgen_version"],
            upgraded_from=data.get("upgraded_from"),
            mix=tuple(_part(data, part) for part in data["mix"] or ()),
            roofline=_roofline(data["roofline"]) if data["roofline"] is not None else None,
        )


def _part_dict(part: RunResult) -> dict[str, Any]:
    """One model of a mix in summary.json: what is its own (the run's status, clock, server and
    metrics are the top level's)."""
    whole = part.to_dict()
    return {key: whole[key] for key in PART_KEYS}


# The keys of a mix's model: the rest of a model's run is the top level's.
PART_KEYS = ("config", "model", "model_configs", "levels", "sla", "sla_passed", "capacity", "roofline")


def _part(top: dict[str, Any], part: dict[str, Any]) -> RunResult:
    """A model of a mix, read back with what it shares from the top level."""
    return RunResult.from_dict({**top, **{key: part[key] for key in PART_KEYS}, "warnings": [], "mix": None})


# --- helpers: dataclasses to JSON-ready dicts and back ------------------------------------------


def _plain(value: Any) -> Any:
    """Tuples as lists, inside dicts too: what JSON reads back, so a dict equals its own JSON."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _record(obj: Any, **derived: Any) -> dict[str, Any]:
    """A flat dataclass's fields, in order, then its derived figures."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)} | derived


def _fields(cls: type, data: dict[str, Any], **given: Any) -> Any:
    """`cls` from the dict's entries for its fields (derived entries are left), `given` ones built by the caller."""
    return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name not in given}, **given)


def _percentiles_dict(values: dict[int, Any]) -> dict[str, Any]:
    return {f"p{p}": v for p, v in values.items()}


def _percentiles(data: dict[str, Any]) -> dict[int, Any]:
    return {int(key.removeprefix("p")): v for key, v in data.items()}


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e9)


# --- one level ---------------------------------------------------------------------------------


def _window_dict(result: RunResult, window: WindowFigures) -> dict[str, Any]:
    percentiles = window.percentile_latency_us
    return {
        "start_s": result.seconds(window.start_ns),
        "end_s": result.seconds(window.end_ns),
        "duration_s": window.duration_s,
        "request_count": window.request_count,
        "throughput_infer_per_s": window.throughput_infer_per_s,
        "goodput_infer_per_s": window.goodput_infer_per_s,
        "latency_us": window.latency_us,
        "avg_latency_us": window.avg_latency_us,
        "percentile_latency_us": _percentiles_dict(percentiles) if percentiles is not None else None,
        "error_count": window.error_count,
        "outstanding": window.outstanding,
        "oldest_outstanding_s": round(window.oldest_outstanding_s, 6) if window.oldest_outstanding_s is not None else None,
        "stalled": window.stalled,
    }


def _window(data: dict[str, Any]) -> WindowFigures:
    percentiles = data["percentile_latency_us"]
    return _fields(
        WindowFigures, data, start_ns=_ns(data["start_s"]), end_ns=_ns(data["end_s"]),
        percentile_latency_us=_percentiles(percentiles) if percentiles is not None else None,
    )  # fmt: skip


def failures_dict(
    request_count: int, error_count: int, duration_s: float, latency_us: dict[str, float] | None, kinds: Sequence[ErrorKind]
) -> dict[str, Any]:
    """ERRORS from plain figures (also from an older summary's error messages): rates of all requests and per second."""
    total = request_count + error_count

    def rates(count: int) -> dict[str, float]:
        return {"rate": count / total if total else 0.0, "per_s": count / duration_s if duration_s > 0 else 0.0}

    return {
        "count": error_count,
        **rates(error_count),
        "latency_us": latency_us,
        "kinds": [{"kind": k.kind, "code": k.code, "count": k.count, **rates(k.count), "messages": k.messages} for k in kinds],
    }


def _client_dict(client: ClientStats) -> dict[str, Any]:
    apart = ("error_kinds", "error_latency_us", "latency_curve_us")  # in the level's "errors" and "latency_curve_us"
    data = {f.name: getattr(client, f.name) for f in dataclasses.fields(client) if f.name not in apart}
    data["percentile_latency_us"] = _percentiles_dict(client.percentile_latency_us)
    return data | {"error_rate": client.error_rate}


def _client(level: dict[str, Any]) -> ClientStats:
    errors, curve = level["errors"], level["latency_curve_us"]
    return _fields(
        ClientStats, level["client"],
        percentile_latency_us=_percentiles(level["client"]["percentile_latency_us"]),
        error_kinds=tuple(_fields(ErrorKind, kind) for kind in errors["kinds"]),
        error_latency_us=errors["latency_us"] or {},
        latency_curve_us=tuple(tuple(point) for point in curve) if curve is not None else None,
    )  # fmt: skip


def _server_dict(figures: ServerFigures) -> dict[str, Any]:
    data = {f.name: getattr(figures, f.name) for f in dataclasses.fields(figures) if f.name not in ("composing", "batches")}
    batches = figures.batches
    return data | {"compute_us": figures.compute_us, "overhead_us": figures.overhead_us,
                   "batches": [_record(batch) for batch in batches] if batches is not None else None,
                   "composing": [_server_dict(child) for child in figures.composing]}  # fmt: skip


def _server(data: dict[str, Any]) -> ServerFigures:
    batches = data["batches"]
    return _fields(ServerFigures, data, composing=tuple(_server(child) for child in data["composing"]),
                   batches=tuple(_fields(BatchCompute, batch) for batch in batches) if batches is not None else None)


def _metrics_dict(metrics: MetricsFigures) -> dict[str, Any]:
    return _record(metrics) | {
        "gpus": [_record(gpu) for gpu in metrics.gpus],
        "models": [_record(model, mismatch=model.mismatch) for model in metrics.models],
    }


def _metrics(data: dict[str, Any]) -> MetricsFigures:
    return _fields(
        MetricsFigures, data, gpus=tuple(_fields(GpuFigures, gpu) for gpu in data["gpus"]),
        models=tuple(_fields(ModelMetrics, model) for model in data["models"]),
    )  # fmt: skip


def _open_loop_dict(stats: OpenLoopStats) -> dict[str, Any]:
    return _record(stats) | {
        "sent_percentile_latency_us": _percentiles_dict(stats.sent_percentile_latency_us),
        "late_fraction": stats.late_fraction,
        "cannot_keep_up": stats.cannot_keep_up,
    }


def _open_loop(data: dict[str, Any]) -> OpenLoopStats:
    return _fields(OpenLoopStats, data, sent_percentile_latency_us=_percentiles(data["sent_percentile_latency_us"]))


def _level_dict(result: RunResult, level: LevelResult) -> dict[str, Any]:
    client = level.client
    start_s, end_s = result.span_s(level)
    histogram = level.latency_histogram
    curve = client.latency_curve_us
    return {
        "label": level.label,
        "value": level.value,
        "stable": level.stable,
        "merged_windows": level.merged_windows,
        "incomplete": level.incomplete,
        "start_s": start_s,
        "end_s": end_s,
        "windows": [_window_dict(result, window) for window in level.windows],
        "client": _client_dict(client),
        "error_rate": client.error_rate,
        "errors": failures_dict(client.request_count, client.error_count, client.duration_s, client.error_latency_us or None,
                                client.error_kinds),  # fmt: skip
        "latency_curve_us": [list(point) for point in curve] if curve is not None else None,
        "latency_histogram": histogram.to_dict() if histogram is not None and histogram.count else None,
        "breakdown_us": level.breakdown_us,
        "server": _server_dict(level.server),
        "count_check": _record(level.count_check, mismatch=level.count_check.mismatch),
        "metrics": _metrics_dict(level.metrics) if level.metrics is not None else None,
        "open_loop": _open_loop_dict(level.open_loop) if level.open_loop is not None else None,
        "sla": [verdict.to_dict() for verdict in level.sla],
        "workers": [_record(worker, overloaded=worker.overloaded) for worker in level.workers],
        "drain": _record(level.drain) if level.drain is not None else None,
        "tracing": _tracing_dict(level.tracing) if level.tracing is not None else None,
        "tail_attribution": _tail_attribution_dict(level.tracing),
        "streaming": _streaming_dict(level.streaming) if level.streaming is not None else None,
        "sequences": _record(level.sequences) if level.sequences is not None else None,
    }


def _level(data: dict[str, Any]) -> LevelResult:
    histogram, metrics, open_loop, drain = (data[key] for key in ("latency_histogram", "metrics", "open_loop", "drain"))
    return _fields(
        LevelResult, data,
        windows=tuple(_window(window) for window in data["windows"]),
        client=_client(data),
        server=_server(data["server"]),
        count_check=_fields(CountCheck, data["count_check"]),
        metrics=_metrics(metrics) if metrics is not None else None,
        open_loop=_open_loop(open_loop) if open_loop is not None else None,
        latency_histogram=LatencyHistogram.from_dict(histogram) if histogram is not None else None,
        sla=tuple(_fields(Verdict, verdict) for verdict in data["sla"]),
        workers=tuple(_fields(WorkerFigures, worker) for worker in data["workers"]),
        drain=_fields(DrainFigures, drain) if drain is not None else None,
        tracing=_tracing(data["tracing"], data["tail_attribution"]) if data["tracing"] is not None else None,
        streaming=_streaming(data["streaming"]) if data["streaming"] is not None else None,
        sequences=_fields(SequenceFigures, data["sequences"]) if data["sequences"] is not None else None,
    )  # fmt: skip


def _streaming_dict(stream: StreamStats) -> dict[str, Any]:
    itl = stream.itl_histogram
    return _record(stream) | {
        "ttft_histogram": stream.ttft_histogram.to_dict(),
        "itl_histogram": itl.to_dict() if itl is not None else None,
        "examples": [_record(example) for example in stream.examples],
    }


def _streaming(data: dict[str, Any]) -> StreamStats:
    itl = data["itl_histogram"]
    return _fields(
        StreamStats, data,
        ttft_histogram=LatencyHistogram.from_dict(data["ttft_histogram"]),
        itl_histogram=LatencyHistogram.from_dict(itl) if itl is not None else None,
        examples=tuple(StreamedRequest(e["latency_us"], tuple(e["response_offsets_us"])) for e in data["examples"]),
    )  # fmt: skip


def _tracing_dict(tracing: LevelTracing) -> dict[str, Any]:
    tail = tracing.tail
    return {
        "read": tracing.read,
        "traces": tracing.traces,
        "tail": _record(tail.bands, tail_requests=tail.tail_requests, middle_requests=tail.middle_requests) if tail else None,
        "stages": [_record(stage) for stage in tracing.stages],
        "slowest": _timeline_dict(tracing.slowest) if tracing.slowest is not None else None,
    }


def _timeline_dict(timeline: RequestTimeline) -> dict[str, Any]:
    return _record(timeline) | {"spans": [_record(span) for span in timeline.spans]}


def _tail_attribution_dict(tracing: LevelTracing | None) -> list[dict[str, Any]] | None:
    """The tail's shares, biggest first: null without traces, empty when they show no tail."""
    if tracing is None:
        return None
    return [_record(share) for share in tracing.tail.shares] if tracing.tail is not None else []


def _tracing(data: dict[str, Any], shares: list[dict[str, Any]]) -> LevelTracing:
    tail, slowest = data["tail"], data["slowest"]
    return LevelTracing(
        read=data["read"], traces=data["traces"], stages=tuple(_fields(StageDistribution, stage) for stage in data["stages"]),
        tail=TailAttribution(_fields(TailBands, tail), tail["tail_requests"], tail["middle_requests"],
                             tuple(_fields(TailShare, share) for share in shares)) if tail is not None else None,
        slowest=_fields(RequestTimeline, slowest, spans=tuple(_fields(TimelineSpan, span) for span in slowest["spans"]))
        if slowest is not None else None,
    )  # fmt: skip


# --- the roofline ------------------------------------------------------------------------------


def _roofline_dict(result: RunResult) -> dict[str, Any] | None:
    """ROOFLINE: each model's recorded inputs, then every level's figures derived from them."""
    roofline = result.roofline
    if roofline is None:
        return None
    return {
        "models": [_model_roofline_dict(model) for model in roofline.models],
        "unknown": list(roofline.unknown),
        "levels": [{"label": level.label, "value": level.value,
                    "models": [_at_level_dict(figures) for figures in level_figures(roofline, level)]}
                   for level in result.levels],
    }  # fmt: skip


def _model_roofline_dict(model: ModelRoofline) -> dict[str, Any]:
    direct, roof = model.direct, model.roof
    data = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name not in ("direct", "roof", "direct_batches")}
    return data | {
        "intensity": model.intensity,
        "direct": _direct_dict(direct) if direct is not None else None,
        "direct_batches": [_direct_dict(timing) for timing in model.direct_batches],
        "roof": _record(roof, ridge_intensity=roof.ridge_intensity) if roof is not None else None,
        "attainable_flops_per_s": model.attainable_flops_per_s,
    }


def _direct_dict(direct: DirectFigures) -> dict[str, Any]:
    return _record(direct, per_inference_us=direct.per_inference_us)


def _at_level_dict(figures: ModelAtLevel) -> dict[str, Any]:
    compute = figures.compute
    return {
        "name": figures.model.name,
        "inferences": compute.inferences,
        "executions": compute.executions,
        "avg_batch_size": compute.avg_batch_size,
        "compute_infer_per_inference_us": compute.compute_infer_us,
        "compute_source": compute.source,
        "direct_per_inference_us": figures.direct_per_inference_us,
        "direct_batch_matched": figures.batch_matched,
        "serving_overhead_us": figures.serving_overhead_us,
        "achieved_flops_per_s": figures.achieved_flops_per_s,
        "share_of_roof": figures.share_of_roof,
    }


def _roofline(data: dict[str, Any]) -> Roofline:
    """The recorded inputs; the levels' figures are derived again."""
    models = tuple(
        _fields(ModelRoofline, model,
                direct=_fields(DirectFigures, model["direct"]) if model["direct"] is not None else None,
                direct_batches=tuple(_fields(DirectFigures, timing) for timing in model["direct_batches"]),
                roof=_fields(Roof, model["roof"]) if model["roof"] is not None else None)
        for model in data["models"]
    )  # fmt: skip
    return Roofline(models, tuple(data["unknown"]))


# --- the model tree and the metrics series -------------------------------------------------------


def _tree_dict(tree: ModelTree) -> dict[str, Any]:
    return {"name": tree.name, "version": tree.version, "composing": [_tree_dict(child) for child in tree.composing]}


def _tree(data: dict[str, Any]) -> ModelTree:
    return ModelTree(data["name"], data["version"], tuple(_tree(child) for child in data["composing"]))


# SERIES's columns of every GPU: (name in summary.json, metric).
GPU_COLUMNS = (("utilization", GPU_UTILIZATION), ("power_w", GPU_POWER), ("memory_used_bytes", GPU_MEMORY_USED))


def series_columns(series: Sequence[Scrape]) -> dict[str, Any]:
    """The scrapes' CPU and per-GPU readings as columns, one entry per scrape (None where it lacks the series)."""

    def column(name: str, **labels: str) -> list[float | None]:
        key = (name, tuple(sorted(labels.items())))
        return [s.values.get(key) for s in series]

    return {
        "cpu_utilization": column(CPU_UTILIZATION),
        "cpu_memory_used_bytes": column(CPU_MEMORY_USED),
        "gpus": {uuid: {name: column(metric, gpu_uuid=uuid) for name, metric in GPU_COLUMNS} for uuid in gpu_uuids(series)},
    }


def _series_dict(result: RunResult) -> dict[str, Any] | None:
    """SERIES: the run's scrapes as columns, with their time and the level each fell in."""
    series = result.metrics_series
    if series is None:
        return None
    return {
        "interval_ms": result.config.outputs.metrics_interval_ms,
        "t_s": [result.seconds(s.t_ns) for s in series],
        "level": [result.level_at(s.t_ns) for s in series],
        **series_columns(series),
    }


def _scrapes(data: dict[str, Any]) -> tuple[Scrape, ...]:
    """The scrapes SERIES keeps: its columns' series only (the others were not recorded)."""
    columns: list[tuple[tuple[str, tuple[tuple[str, str], ...]], list[float | None]]] = [
        ((CPU_UTILIZATION, ()), data["cpu_utilization"]),
        ((CPU_MEMORY_USED, ()), data["cpu_memory_used_bytes"]),
    ]
    for uuid, gpu in data["gpus"].items():
        columns += [((metric, (("gpu_uuid", uuid),)), gpu[name]) for name, metric in GPU_COLUMNS]
    return tuple(
        Scrape(_ns(t_s), {key: values[i] for key, values in columns if values[i] is not None})  # type: ignore[arg-type]
        for i, t_s in enumerate(data["t_s"])
    )
