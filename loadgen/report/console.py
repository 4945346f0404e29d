"""perf_analyzer's console report, so its users can read ours without relearning. For a mix of models,
each model's settings, levels and closing table under its name, and the server's metrics once a level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from loadgen.capacity import CapacityPlan
from loadgen.config import Gates, RunConfig
from loadgen.listener import RunListener
from loadgen.measurement import LevelResult, drain_text, outstanding_text
from loadgen.merge import OVERLOADED_CPU_PCT, OVERLOADED_LAG_US, WorkerFigures
from loadgen.metrics import MetricsFigures
from loadgen.redact import redact_url
from loadgen.report.base import model_name, part_of, stream_goodput_bounds, stream_percentile_keys
from loadgen.result import RunResult
from loadgen.roofline import level_figures
from loadgen.server_stats import ServerFigures
from loadgen.sla import describe
from loadgen.tail import LevelTracing, tail_line
from loadgen.stats import (
    LATE_NS,
    REPORTED_PERCENTILES,
    ClientStats,
    OpenLoopStats,
)
from loadgen.stream_stats import StreamStats
from loadgen.windows import COUNT_WINDOWS


def _num(value: float) -> str:
    """C++ iostream's default formatting (6 significant digits), as perf_analyzer prints rates."""
    return f"{value:.6g}"


def _us(value: float) -> str:
    return f"{int(value)} usec"


def settings_lines(config: RunConfig, mix: Sequence[RunConfig] = ()) -> list[str]:
    """perf_analyzer 2.51's settings header; for a `mix`, each model's own settings under its name and load."""
    policy = config.windows
    latency = "average latency" if policy.percentile is None else f"p{policy.percentile} latency"
    lines = ["*** Measurement Settings ***"]
    if not mix:
        lines.append(f"  Batch size: {config.inputs.batch_size}")
    lines.append("  Service Kind: TRITON")
    if not mix and config.load.schedule_file is not None and not config.load.replay_loop:
        lines.append("  Measuring the whole replay, played once: no stabilization")
    else:
        lines += [f'  Using "{policy.mode}" mode for stabilization', f"  Stabilizing using {latency} and throughput"]
    if policy.mode == COUNT_WINDOWS:
        lines.append(f"  Minimum number of samples in each window: {policy.request_count}")
    else:
        lines.append(f"  Measurement window: {policy.interval_ms} msec")
    if not mix:
        lines += _model_settings(config)
    for each in mix:
        lines.append(f"  Model: {each.target.model_name} ({_load_text(each)}, {each.target.protocol})")
        lines += ["  " + line for line in [f"  Batch size: {each.inputs.batch_size}", *_model_settings(each)]]
    load = config.load
    if load.workers is not None:
        where = redact_url(load.ray_address) if load.ray_address is not None else "local"
        lines.append(f"  Load from {load.workers} worker{'s' if load.workers != 1 else ''} on Ray ({where})")
    lines.append("  Using asynchronous calls for inference")
    return lines


def _load_text(config: RunConfig) -> str:
    """A model's load in a mix: "request rate 10:50:10", "concurrency 4", "request intervals from FILE",
    "replay of FILE at speed 2, looped"."""
    load = config.load
    if load.request_intervals is not None:
        return f"request intervals from {load.request_intervals}"
    if load.schedule_file is not None:
        return _replay_text(config)
    shown = load.load_range
    values = f"{shown.start:g}" if shown.end == shown.start else str(shown)
    return f"{'request rate' if load.request_rate_range is not None else 'concurrency'} {values}"


def _replay_text(config: RunConfig) -> str:
    load = config.load
    return f"replay of {load.schedule_file} at speed {load.replay_speed:g}{', looped' if load.replay_loop else ', once'}"


def _model_settings(config: RunConfig) -> list[str]:
    """The settings that are a model's own: its load's limits, its goodput, streaming and SLAs."""
    load, gates = config.load, config.gates
    limit = load.load_range.end or load.load_range.start
    lines = []
    if load.request_intervals is not None:
        lines.append(f"  Using request intervals from {load.request_intervals}")
    elif load.schedule_file is not None:
        lines.append(f"  Using a {_replay_text(config)}")
    elif load.open_loop:
        lines += [
            f"  Latency limit: {gates.latency_threshold_ms or 0:g} msec",
            f"  Request Rate limit: {_num(limit)} requests per seconds",
            f"  Using {'uniform' if load.request_distribution == 'constant' else 'poisson'} distribution on request generation",
        ]
    elif load.concurrency_range.end != 1:  # perf_analyzer shows the limits only for a sweep
        lines += [
            f"  Latency limit: {gates.latency_threshold_ms or 0:g} msec",
            f"  Concurrency limit: {limit:g} concurrent requests",
        ]
    if load.max_inflight is not None and load.open_loop:
        lines.append(f"  At most {load.max_inflight} requests in flight (--max-inflight)")
    if gates.binary_search:
        lines.append("  Using binary search")
    if gates.goodput_latency_ms is not None:
        lines.append(f"  Goodput: successful requests within {gates.goodput_latency_ms:g} msec")
    if config.target.streaming:
        lines.append("  Streaming: every response timed")
    if stream_goodput_bounds(gates):
        lines.append(f"  Streaming goodput: successful requests with {stream_goodput_text(gates)}")
    lines += [f"  SLA: {sla.expression}" for sla in gates.slas]
    return lines


def _server_block(figures: ServerFigures, depth: int) -> list[str]:
    """A model's server figures, then its composing models one level deeper (perf_analyzer's layout)."""
    indent = " " * (2 * depth)
    if figures.composing:
        parts = f"overhead {_us(figures.overhead_us)} + queue {_us(figures.queue_us)} + compute {_us(figures.compute_us)}"
    else:
        parts = (
            f"overhead {_us(figures.overhead_us)} + queue {_us(figures.queue_us)} + "
            f"compute input {_us(figures.compute_input_us)} + compute infer {_us(figures.compute_infer_us)} + "
            f"compute output {_us(figures.compute_output_us)}"
        )
    lines = [
        f"{indent}  Inference count: {figures.inference_count}",
        f"{indent}  Execution count: {figures.execution_count}",
        f"{indent}  Successful request count: {figures.success_count}",
        f"{indent}  Avg request latency: {_us(figures.avg_request_latency_us)} ({parts})",
        "",
    ]
    if figures.composing:
        lines.append(f"{indent}Composing models: ")
        for child in sorted(figures.composing, key=lambda f: (f.name, f.version)):
            lines.append(f"{indent}{child.name}, version: {child.version}")
            lines += _server_block(child, depth + 1)
    return lines


def _gpu_lines(title: str, metrics: MetricsFigures, attribute: str, unit: str) -> list[str]:
    lines = [f"    {title}:"]
    for gpu in metrics.gpus:
        value = getattr(gpu, attribute)
        if value is None:
            continue
        if unit == "%":
            lines.append(f"      {gpu.uuid} : {_num(value * 100)}%")
        elif unit == "bytes":
            lines.append(f"      {gpu.uuid} : {int(value)} bytes")
        else:
            lines.append(f"      {gpu.uuid} : {_num(value)} {unit}")
    return lines


def metrics_lines(metrics: MetricsFigures | None) -> list[str]:
    """perf_analyzer's "Server Prometheus Metrics" block, then what it leaves out: CPU, energy, pending, failures."""
    lines = ["  Server Prometheus Metrics: "]
    if metrics is None:
        return lines + [NO_METRICS]
    return lines + _gpu_block(metrics) + _energy_lines(metrics) + _cpu_lines(metrics) + _pending_lines(metrics)


NO_METRICS = "    No metrics: no scrape succeeded during this level (see the warning)"


def server_metrics_lines(metrics: MetricsFigures | None) -> list[str]:
    """A mix's level: the server's own figures once (GPUs, CPU), the same interval for every model."""
    lines = ["  Server Prometheus Metrics (all models): "]
    if metrics is None:
        return lines + [NO_METRICS]
    return lines + _gpu_block(metrics) + _cpu_lines(metrics)


def model_metrics_lines(metrics: MetricsFigures | None) -> list[str]:
    """A mix's model at a level: its own figures in the metrics (energy per inference, pending, failures)."""
    if metrics is None:
        return []
    return ["  Model Prometheus Metrics: "] + _energy_lines(metrics) + _pending_lines(metrics)


def _gpu_block(metrics: MetricsFigures) -> list[str]:
    lines = _gpu_lines("Avg GPU Utilization", metrics, "avg_utilization", "%")
    lines += _gpu_lines("Avg GPU Power Usage", metrics, "avg_power_w", "watts")
    lines += _gpu_lines("Max GPU Memory Usage", metrics, "max_memory_used_bytes", "bytes")
    lines += _gpu_lines("Total GPU Memory", metrics, "total_memory_bytes", "bytes")
    if not metrics.gpus:
        lines.append("    GPU metrics: none, the server exposes no GPU metrics")
    return lines


def _energy_lines(metrics: MetricsFigures) -> list[str]:
    if metrics.energy_per_inference_j is None:
        return []
    return [f"    Energy per inference: {_num(metrics.energy_per_inference_j)} joules"]


def _cpu_lines(metrics: MetricsFigures) -> list[str]:
    lines = []
    if metrics.avg_cpu_utilization is not None:
        lines.append(f"    Avg CPU Utilization: {_num(metrics.avg_cpu_utilization * 100)}%")
    if metrics.max_cpu_memory_used_bytes is not None:
        lines.append(f"    Max CPU Memory Usage: {int(metrics.max_cpu_memory_used_bytes)} bytes")
    return lines


def _pending_lines(metrics: MetricsFigures) -> list[str]:
    lines = ["    Max pending requests: " + ", ".join(f"{m.name} {m.max_pending}" for m in metrics.models)]
    for model in metrics.models:
        failed = {reason: count for reason, count in model.failure.items() if count}
        if failed:
            lines.append(f"    Failed requests of {model.name}: " + ", ".join(f"{r} {c}" for r, c in failed.items()))
        if model.mismatch:
            lines.append(
                f"    Warning: the metrics counted {model.success} successful requests of {model.name} "
                f"and the statistics API {model.statistics_success}"
            )
    return lines


def _open_loop_lines(stats: OpenLoopStats) -> list[str]:
    """What perf_analyzer says about keeping the rate, then the lag and the latency from the actual send."""
    lines = [f"    Avg send request rate: {stats.achieved_rate_per_s:.2f} infer/sec"]
    if stats.cannot_keep_up:
        lines.append(
            "    [WARNING] loadgen was not able to keep up with the desired request rate. "
            f"{stats.late_fraction:.2%} of the requests were delayed. "
        )
    lag = stats.schedule_lag_us
    lines.append(
        f"    Schedule lag: p50 {_us(lag['p50'])}, p99 {_us(lag['p99'])}, max {_us(lag['max'])}; "
        f"{stats.late_count} of {stats.sent_count} requests sent over {LATE_NS // 1000} usec late"
    )
    if stats.held_back_count:
        lines.append(f"    Held back by --max-inflight: {stats.held_back_count} requests (their latency counts from when they were due)")
    sent = stats.sent_percentile_latency_us
    lines.append(
        f"    Latency from the actual send: avg {_us(stats.sent_avg_latency_us)}, "
        + ", ".join(f"p{p} {_us(v)}" for p, v in sent.items())
    )
    return lines


def _level_title(level: LevelResult) -> str:
    if level.label == "Request Rate":
        return f"Request Rate: {_num(level.value)} inference requests per seconds"
    return f"Request {level.label.lower()}: {_num(level.value)}"


def level_lines(
    level: LevelResult, protocol: str, percentile: int | None, goodput_latency_ms: float | None, stream_goodput: str | None = None
) -> list[str]:
    """A level's block; `stream_goodput` names the bounds of a streamed level's goodput (None: no --goodput-ttft/itl-ms)."""
    client, server = level.client, level.server
    lines = [_level_title(level)]
    if level.incomplete:
        lines.append(f"  Incomplete: {level.incomplete}")
    lines.append("  Client: ")
    lines.append(f"    Request count: {client.request_count}")
    sequences = level.sequences
    if sequences is not None:  # perf_analyzer's line and place, then what it does not count
        lines.append(f"    Sequence count: {sequences.completed} ({_num(sequences.completed_per_s)} seq/sec)")
    lines.append(f"    Throughput: {_num(client.throughput_infer_per_s)} infer/sec")
    if sequences is not None:
        lines.append(f"    Sequences failed: {sequences.failed}, cut short at the level's end: {sequences.cut_short}")
    if goodput_latency_ms is not None and client.goodput_infer_per_s is not None:
        lines.append(f"    Goodput: {_num(client.goodput_infer_per_s)} infer/sec (latency within {goodput_latency_ms:g} msec)")
    if level.open_loop is not None:
        lines += _open_loop_lines(level.open_loop)
    if client.error_count:
        lines += _error_lines(client)
    if percentile is None:  # perf_analyzer shows the average only when it stabilizes on it
        lines.append(f"    Avg latency: {_us(client.avg_latency_us)} (standard deviation {_us(client.std_latency_us)})")
    shown = sorted(set(REPORTED_PERCENTILES) | ({percentile} if percentile is not None else set()))
    lines += [f"    p{p} latency: {_us(client.percentile_latency_us[p])}" for p in shown]
    if protocol == "grpc":
        lines.append(
            f"    Avg gRPC time: {_us(client.avg_latency_us)} ((un)marshal request/response "
            f"{_us(client.avg_send_us + client.avg_recv_us)} + response wait {_us(client.avg_response_wait_us)})"
        )
    else:
        lines.append(
            f"    Avg HTTP time: {_us(client.avg_latency_us)} (send/recv {_us(client.avg_send_us + client.avg_recv_us)} "
            f"+ response wait {_us(client.avg_response_wait_us)})"
        )
    if level.streaming is not None:
        lines += stream_lines(level.streaming, percentile, stream_goodput)
    if level.tracing is not None:
        lines.append(f"    {tracing_line(level.tracing)}")
    for kind in client.error_kinds:
        lines += [f"  Error ({count}x): {message}" for message, count in kind.messages.items()]
    lines += [
        f"  Window {index}: {outstanding_text(window.outstanding, window.oldest_outstanding_s)}"
        for index, window in enumerate(level.windows, 1)
        if window.stalled
    ]
    drain = level.drain
    if drain is not None and drain.errors:
        lines.append("  " + drain_text(drain.in_flight, drain.duration_s, drain.answered, drain.errors, drain.unanswered, drain.unanswered_age_s))
    lines += [f"  SLA {describe(verdict)}" for verdict in level.sla]
    if not level.stable:
        lines.append(
            f"  Failed to obtain stable measurement within {len(level.windows)} measurement windows for "
            f"{level.label.lower()} {_num(level.value)}: these figures merge its last windows. "
            "Increase --measurement-interval or --max-trials."
        )
    lines.append("  Server: ")
    check = level.count_check
    if check.mismatch:
        lines.append(
            f"    Warning: the server counted {check.server_success} successful requests and the client "
            f"{check.client_success}: other traffic reached the model during the measurement"
        )
    lines += _server_block(server, depth=1)
    return lines


def stream_goodput_text(gates: Gates) -> str:
    """"latency within 50 msec, TTFT within 20 msec and ITL within 5 msec": the bounds a streamed request's goodput meets."""
    bounds = [f"{figure} within {ms:g} msec" for figure, ms in stream_goodput_bounds(gates)]
    return " and ".join(filter(None, [", ".join(bounds[:-1]), bounds[-1]]))


def _stream_figures(figures: dict[str, float], percentile: int | None) -> str:
    """"avg 40123 usec, p50 40100 usec, p90 ..., p99 ...": the average and the reported percentiles."""
    keys = ["avg", *stream_percentile_keys(percentile)]
    return ", ".join(f"{key} {_us(figures[key])}" for key in keys)


def stream_lines(stream: StreamStats, percentile: int | None, goodput: str | None) -> list[str]:
    """A streamed level's figures, under its request latency: time to first response, between responses, tokens."""
    if not stream.request_count:
        return ["    Streaming: no streamed request succeeded"]
    lines = [f"    Time to first response (TTFT): {_stream_figures(stream.ttft_us, percentile)}"]
    if stream.itl_us is not None:
        lines.append(f"    Inter-response latency (ITL): {_stream_figures(stream.itl_us, percentile)}")
    else:
        lines.append("    Inter-response latency (ITL): none, no request had two responses")
    lines.append(f"    Responses per request: {_num(stream.responses_per_request)} ({stream.response_count} responses)")
    if stream.tokens_per_s is not None:
        lines.append(f"    Output tokens: {stream.output_tokens} ({_num(stream.tokens_per_s)} tokens/sec)")
    if goodput is not None and stream.goodput_infer_per_s is not None:
        lines.append(f"    Streaming goodput: {_num(stream.goodput_infer_per_s)} infer/sec ({goodput})")
    return lines


def tracing_line(tracing: LevelTracing) -> str:
    """Where the level's tail comes from, from its traces: "Tail: p99 12.4 ms: 71% of the tail is queue
    in centernet (143 traced requests)"."""
    if tracing.tail is None:
        return f"Tail: no request succeeded, so no tail to split ({tracing.traces} traced requests)"
    return f"Tail: {tail_line(tracing.tail)} ({tracing.traces} traced requests)"


WORKER_COLUMNS = (
    "Worker", "Host", "Share", "Requests", "Errors", "Throughput infer/sec", "Lag p99 usec", "Late %", "CPU %", "",
)  # fmt: skip


def _worker_flag(worker: WorkerFigures) -> str:
    flags = (["OVERLOADED"] if worker.overloaded else []) + ([f"LOST: {worker.lost}"] if worker.lost else [])
    return "; ".join(flags)


def worker_lines(workers: tuple[WorkerFigures, ...]) -> list[str]:
    """Each worker's part of the level, in fixed-width columns, so an overloaded or lost worker stands out."""
    rows = [
        [
            str(w.worker),
            w.host,
            _num(w.share),
            str(w.request_count),
            str(w.error_count),
            _num(w.throughput_infer_per_s),
            str(int(w.schedule_lag_us["p99"])) if w.schedule_lag_us else "-",  # closed loop: nothing is scheduled
            f"{w.late_fraction:.2%}" if w.schedule_lag_us else "-",
            f"{w.cpu_pct:.1f}",
            _worker_flag(w),
        ]
        for w in workers
    ]
    widths = [max(len(text) for text in column) for column in zip(WORKER_COLUMNS, *rows)]
    left = {1, len(WORKER_COLUMNS) - 1}  # host and flag are text, the rest figures

    def line(cells) -> str:
        text = "  ".join(c.ljust(n) if i in left else c.rjust(n) for i, (c, n) in enumerate(zip(cells, widths)))
        return ("    " + text).rstrip()

    lines = ["  Workers: ", line(WORKER_COLUMNS), *(line(row) for row in rows)]
    if any(w.overloaded for w in workers):
        lines.append(
            f"    OVERLOADED: its CPU at {OVERLOADED_CPU_PCT:g}% of one core or more, or its p99 send lag over "
            f"{OVERLOADED_LAG_US / 1e3:g} ms: the worker, not the server, limits the load. Add workers on other cores or machines."
        )
    return lines + [""]  # set apart from the next level, as the server block is


def _error_lines(client: ClientStats) -> list[str]:
    """The error rate, the failed requests' own latency, and the count of each kind."""
    latency = client.error_latency_us
    kinds = ", ".join(f"{kind.kind} {kind.count}" for kind in client.error_kinds)
    per_s = client.error_count / client.duration_s if client.duration_s > 0 else 0.0
    lines = [f"    Errors: {client.error_count} (error rate {client.error_rate:.2%}, {_num(per_s)}/sec): {kinds}"]
    if latency:  # a summary.json before version 3 did not record it
        lines.append(f"    Error latency: avg {_us(latency['avg'])}, p50 {_us(latency['p50'])}, p99 {_us(latency['p99'])}, "
                     f"max {_us(latency['max'])}")
    return lines


def summary_lines(result: RunResult) -> list[str]:
    """The closing table, the stop and the verdicts; for a mix, each model's table and verdicts under its name."""
    if not result.mix:
        return _table_lines(result) + _roofline_lines(result) + _stop_lines(result) + _verdict_lines(result)
    lines = []
    for part in result.mix:
        lines += [*([""] if lines else []), f"Model: {model_name(part)}", *_table_lines(part), *_roofline_lines(part),
                  *_verdict_lines(part)]  # fmt: skip
    return lines + _stop_lines(result)


def _roofline_lines(result: RunResult) -> list[str]:
    """Each computing model with known FLOPs: its cost and roof, then per level where it stands."""
    roofline = result.roofline
    if roofline is None:
        return []
    lines = []
    for model in roofline.models:
        direct = f", alone in ONNX Runtime {model.direct.per_inference_us / 1e3:.2f} ms" if model.direct else ""
        roof = (f"roof {model.roof.device}, {model.roof.peak_flops_per_s / 1e9:,.1f} GFLOP/s" if model.roof
                else "roof unknown: pass --peak-tflops and --peak-bandwidth-gbs")  # fmt: skip
        intensity = f", {model.intensity:.1f} FLOPs/byte" if model.intensity is not None else ""
        lines.append(f"Roofline: {model.name} {model.flops / 1e9:.3f} GFLOPs/inference{intensity}{direct}; {roof}")
        for level in result.levels:
            for figures in level_figures(roofline, level):
                if figures.model is not model:
                    continue
                share = f", {figures.share_of_roof:.1%} of the roof" if figures.share_of_roof is not None else ""
                overhead, alone_us = figures.serving_overhead_us, figures.direct_per_inference_us
                batches = "its batches" if figures.batch_matched else "batch 1"
                lines.append(f"  {level.label}: {_num(level.value)}, compute infer {figures.compute.compute_infer_us / 1e3:.2f} "
                             f"ms/inference (avg batch {figures.compute.avg_batch_size:.2f}), "
                             f"{figures.achieved_flops_per_s / 1e9:,.1f} GFLOP/s{share}"
                             + (f", alone at {batches} {alone_us / 1e3:.2f} ms, serving overhead {overhead / 1e3:.2f} ms"
                                if overhead is not None else ""))  # fmt: skip
    return lines


def _table_lines(result: RunResult) -> list[str]:
    percentile = result.config.windows.percentile
    name = "Average" if percentile is None else f"p{percentile}"
    lines = [f"Inferences/Second vs. Client {name} Batch Latency"]
    with_errors = any(level.client.error_count for level in result.levels)
    for level in result.levels:
        lines.append(
            f"{level.label}: {_num(level.value)}, throughput: {_num(level.client.throughput_infer_per_s)} infer/sec, "
            + (f"goodput: {_num(goodput)} infer/sec, " if (goodput := _goodput(level)) is not None else "")
            + f"latency {_us(level.client.latency_us(percentile))}"
            + (f", sequences: {_num(level.sequences.completed_per_s)} completed/sec" if level.sequences is not None else "")
            + (_stream_summary(level.streaming, percentile) if level.streaming is not None else "")
            + (f", error rate {level.client.error_rate:.2%}" if with_errors else "")
            + (f", INCOMPLETE: {level.incomplete}" if level.incomplete else "")
        )
    return lines


def _stop_lines(result: RunResult) -> list[str]:
    return [f"Stopped: {result.stop_reason}"] if result.stop_reason else []


def _verdict_lines(result: RunResult) -> list[str]:
    lines = gate_lines(result)
    if result.capacity is not None:
        lines += capacity_lines(result.capacity)
    elif result.config.gates.binary_search or result.config.gates.target_throughput is not None:
        lines.append("Capacity: no level met every bound")
    return lines


def _goodput(level: LevelResult) -> float | None:
    """The level's goodput, as the goodput SLA judges it: a streamed level's meets every bound, --goodput-ttft/itl-ms too."""
    stream = level.streaming
    if stream is not None and stream.goodput_infer_per_s is not None:
        return stream.goodput_infer_per_s
    return level.client.goodput_infer_per_s


def _stream_summary(stream: StreamStats, percentile: int | None) -> str:
    """The closing table's streaming figures, of the kind its latency is: the average, or --percentile's."""
    if not stream.request_count:
        return ""
    key = "avg" if percentile is None else f"p{percentile}"
    text = f", TTFT {_us(stream.ttft_us[key])}"
    if stream.itl_us is not None:
        text += f", ITL {_us(stream.itl_us[key])}"
    if stream.tokens_per_s is not None:
        text += f", {_num(stream.tokens_per_s)} tokens/sec"
    return text


def gate_lines(result: RunResult) -> list[str]:
    """The run's verdict: its SLAs, and whether it rests on levels that never stabilized."""
    gates, unstable = result.config.gates, result.unstable_levels
    names = ", ".join(f"{level.label.lower()} {_num(level.value)}" for level in unstable)
    if gates.binary_search:  # a search measures unstable levels on purpose, and bounds exclude them
        return ["SLA: " + ("met" if result.sla_passed else "BREACHED")] if gates.slas else []
    if gates.require_stable and unstable:
        what = "SLA" if gates.slas else "Stability"
        return [f"{what}: BREACHED: {names} never stabilized (--require-stable)"]
    if not gates.slas:
        return []
    verdict = "met" if result.sla_passed else "BREACHED"
    if unstable:
        count = len(unstable)
        verdict += (f", but {'a level' if count == 1 else f'{count} levels'} never stabilized ({names}): "
                    "its figures may not hold; --require-stable fails such a run")
    return [f"SLA: {verdict}"]


def capacity_lines(plan: CapacityPlan) -> list[str]:
    lines = [
        f"Capacity: {_num(plan.throughput_infer_per_s)} infer/sec per server within every bound, "
        f"at {plan.level_label.lower()} {_num(plan.level_value)}"
    ]
    if plan.replicas is not None:
        lines.append(
            f"  {_num(plan.target_throughput_infer_per_s)} infer/sec with {plan.headroom_pct:g}% headroom needs "
            f"{plan.replicas} server{'s' if plan.replicas != 1 else ''}"
        )
    return lines


class ConsoleReport(RunListener):
    """Prints the settings, each level as it is measured, and the closing table. `mix`: the models of a
    mix (the run's start hears of the first one's config only)."""

    def __init__(self, stream: TextIO, protocol: str = "http", mix: Sequence[RunConfig] = ()) -> None:
        self._stream = stream
        self._protocol = protocol
        self._mix = tuple(mix)
        self._config: RunConfig | None = None

    def _print(self, lines: list[str]) -> None:
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()

    def run_started(self, config: RunConfig) -> None:
        self._protocol = config.target.protocol
        self._config = config
        self._print(settings_lines(config, self._mix) + [""])

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        # A mix's models each have their own protocol, percentile and goodput.
        index, part = part_of(level, so_far) if so_far.mix else (0, so_far)
        config = part.config if so_far.mix or self._config is None else self._config
        gates, collect_metrics = config.gates, config.outputs.collect_metrics
        protocol = config.target.protocol if so_far.mix else self._protocol
        lines = [f"Model: {model_name(part)}"] if so_far.mix else []
        lines += level_lines(level, protocol, config.windows.percentile, gates.goodput_latency_ms,
                             stream_goodput_text(gates) if stream_goodput_bounds(gates) else None)  # fmt: skip
        if collect_metrics:  # perf_analyzer prints it right after the server block, no blank line after
            lines += model_metrics_lines(level.metrics) if so_far.mix else metrics_lines(level.metrics)
        if level.workers:
            lines += worker_lines(level.workers)
        if collect_metrics and so_far.mix and index == len(so_far.mix) - 1:  # the level's last model: once for all of them
            lines += ["", *server_metrics_lines(level.metrics)]
        self._print(lines)

    def run_finished(self, result: RunResult) -> None:
        self._print(summary_lines(result))
