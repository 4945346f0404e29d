"""Results as plain data: summary.json's schema (docs/summary.md), also what SLAs are evaluated on."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from loadgen import __version__
from loadgen.measurement import LevelResult
from loadgen.merge import WorkerFigures
from loadgen.metrics import (
    CPU_MEMORY_USED,
    CPU_UTILIZATION,
    GPU_MEMORY_USED,
    GPU_POWER,
    GPU_UTILIZATION,
    MetricsFigures,
    gpu_uuids,
)
from loadgen.server_stats import ModelTree, ServerFigures
from loadgen.stats import ClientStats, ErrorKind

if TYPE_CHECKING:
    from loadgen.sweep import RunResult

SCHEMA_VERSION = 6


def _seconds(t_ns: int, origin_ns: int) -> float:
    return round((t_ns - origin_ns) / 1e9, 6)


def server_dict(figures: ServerFigures) -> dict[str, Any]:
    data = {f.name: getattr(figures, f.name) for f in dataclasses.fields(figures) if f.name != "composing"}
    data["compute_us"] = figures.compute_us
    data["overhead_us"] = figures.overhead_us
    data["composing"] = [server_dict(child) for child in figures.composing]
    return data


def metrics_dict(metrics: MetricsFigures | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    data = dataclasses.asdict(metrics)
    data["models"] = [{**dataclasses.asdict(m), "mismatch": m.mismatch} for m in metrics.models]
    return data


def open_loop_dict(level: LevelResult) -> dict[str, Any] | None:
    stats = level.open_loop
    if stats is None:
        return None
    data = dataclasses.asdict(stats)
    data["sent_percentile_latency_us"] = {f"p{p}": v for p, v in stats.sent_percentile_latency_us.items()}
    data["late_fraction"] = stats.late_fraction
    data["cannot_keep_up"] = stats.cannot_keep_up
    return data


def errors_dict(client: ClientStats) -> dict[str, Any]:
    """A level's failed requests: how many, how often, how long they took, and of which kinds."""
    return failures_dict(client.request_count, client.error_count, client.duration_s, client.error_latency_us or None,
                         client.error_kinds)  # fmt: skip


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


def worker_dict(worker: WorkerFigures) -> dict[str, Any]:
    return {**dataclasses.asdict(worker), "overloaded": worker.overloaded}


def level_dict(level: LevelResult, origin_ns: int) -> dict[str, Any]:
    client = dataclasses.asdict(level.client)
    client["percentile_latency_us"] = {f"p{p}": v for p, v in level.client.percentile_latency_us.items()}
    client["error_rate"] = level.client.error_rate
    for moved in ("error_kinds", "error_latency_us"):  # in the level's "errors"
        del client[moved]
    curve = client.pop("latency_curve_us")
    merged = level.reported_windows
    return {
        "label": level.label,
        "value": level.value,
        "stable": level.stable,
        "incomplete": level.incomplete,
        "start_s": _seconds(merged[0].start_ns, origin_ns) if merged else None,
        "end_s": _seconds(merged[-1].end_ns, origin_ns) if merged else None,
        "windows": [
            {
                "start_s": _seconds(w.start_ns, origin_ns),
                "end_s": _seconds(w.end_ns, origin_ns),
                "duration_s": w.duration_s,
                "request_count": w.request_count,
                "throughput_infer_per_s": w.throughput_infer_per_s,
                "latency_us": w.latency_us,
                # null, not 0, in a window without a success
                "avg_latency_us": w.avg_latency_us if w.request_count else None,
                "percentile_latency_us": {f"p{p}": v for p, v in w.percentile_latency_us.items()} if w.request_count else None,
                "error_count": w.error_count,
                "outstanding": w.outstanding,
                "oldest_outstanding_s": round(w.oldest_outstanding_s, 6),
                "stalled": w.stalled,
            }
            for w in level.windows
        ],
        "client": client,
        "error_rate": level.client.error_rate,
        "errors": errors_dict(level.client),
        "latency_curve_us": [list(point) for point in curve],
        "latency_histogram": level.latency_histogram.to_dict() if level.latency_histogram and level.latency_histogram.count else None,
        "breakdown_us": level.breakdown_us,
        "server": server_dict(level.server),
        "count_check": {**dataclasses.asdict(level.count_check), "mismatch": level.count_check.mismatch},
        "metrics": metrics_dict(level.metrics),
        "open_loop": open_loop_dict(level),
        "sla": [verdict.to_dict() for verdict in level.sla],
        "workers": [worker_dict(worker) for worker in level.workers],
        "drain": dataclasses.asdict(level.drain) if level.drain is not None else None,
    }


def series_dict(result: RunResult) -> dict[str, Any] | None:
    """The run's scrapes as columns: time, the level each fell in, CPU and per-GPU readings (null where absent)."""
    series = result.metrics_series
    if series is None:
        return None

    def column(name: str, **labels: str) -> list[float | None]:
        key = (name, tuple(sorted(labels.items())))
        return [s.values.get(key) for s in series]

    return {
        "interval_ms": result.config.outputs.metrics_interval_ms,
        "t_s": [_seconds(s.t_ns, result.started_ns) for s in series],
        "level": [result.level_at(s.t_ns) for s in series],
        "cpu_utilization": column(CPU_UTILIZATION),
        "cpu_memory_used_bytes": column(CPU_MEMORY_USED),
        "gpus": {
            uuid: {
                "utilization": column(GPU_UTILIZATION, gpu_uuid=uuid),
                "power_w": column(GPU_POWER, gpu_uuid=uuid),
                "memory_used_bytes": column(GPU_MEMORY_USED, gpu_uuid=uuid),
            }
            for uuid in gpu_uuids(series)
        },
    }


def tree_dict(tree: ModelTree) -> dict[str, Any]:
    return {"name": tree.name, "version": tree.version, "composing": [tree_dict(child) for child in tree.composing]}


def summary(result: RunResult) -> dict[str, Any]:
    origin_ns = result.started_ns
    return {
        "schema_version": SCHEMA_VERSION,
        "loadgen_version": __version__,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "status": result.status,  # running (written after each level), complete, interrupted or failed
        "stop_reason": result.stop_reason,
        "warnings": list(result.warnings),
        "config": result.config.to_dict(),
        "environment": result.environment,
        "server": result.server_metadata,
        "model": tree_dict(result.model),
        "model_configs": result.model_configs,
        "levels": [level_dict(level, origin_ns) for level in result.levels],
        "metrics_series": series_dict(result),
        "sla": [sla.expression for sla in result.config.gates.slas],
        "sla_passed": result.sla_passed,
        "capacity": dataclasses.asdict(result.capacity) if result.capacity is not None else None,
    }


