"""perf_analyzer's CSV (-f), plus one CSV per composing model beside it, in perf_analyzer's own form; for a
mix of models, each model's as results.MODEL.csv."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from loadgen.config import RunConfig
from loadgen.listener import RunListener
from loadgen.measurement import LevelResult, SequenceFigures
from loadgen.metrics import MetricsFigures
from loadgen.report.base import (
    drove_sequences,
    part_path,
    stream_goodput_bounds,
    stream_percentile_keys,
    write_atomic,
)
from loadgen.result import RunResult
from loadgen.server_stats import ServerFigures
from loadgen.stats import REPORTED_PERCENTILES
from loadgen.stream_stats import StreamStats

BASE_COLUMNS = [
    "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue",
    "Server Compute Input", "Server Compute Infer", "Server Compute Output", "Client Recv",
]  # fmt: skip
METRICS_COLUMNS = ["Avg GPU Utilization", "Avg GPU Power Usage", "Max GPU Memory Usage", "Total GPU Memory"]
GOODPUT_COLUMN = "Goodput Inferences/Second"  # with --goodput-latency-ms only, so perf_analyzer's shape stays without it
# A streamed run's (--streaming) own columns, after perf_analyzer's; units in the names, as perf_analyzer has none for these.
STREAM_COUNT_COLUMNS = ["Responses/Request", "Output Tokens", "Output Tokens/s"]
# With --goodput-ttft-ms or --goodput-itl-ms: the requests meeting every --goodput-*-ms bound, per second.
STREAM_GOODPUT_COLUMN = "Streaming Goodput Inferences/Second"
# A sequence model's (sequence_batching) own columns, after perf_analyzer's: completed sequences per second and
# the level's counts (summary.json's `sequences`).
SEQUENCE_COLUMNS = ["Sequences/Second", "Sequences Completed", "Sequences Failed", "Sequences Cut Short"]


def _percentiles(percentile: int | None) -> list[int]:
    return sorted(set(REPORTED_PERCENTILES) | ({percentile} if percentile is not None else set()))


def header(label: str, config: RunConfig, sequences: bool = False) -> list[str]:
    """perf_analyzer's columns: with --percentile its pN joins the others and the average leaves the verbose ones;
    `sequences`: the run drove a sequence model, whose figures follow them."""
    percentile = config.windows.percentile
    columns = [label, *BASE_COLUMNS, *(f"p{p} latency" for p in _percentiles(percentile))]
    if config.outputs.verbose_csv:
        columns += (["Avg latency"] if percentile is None else []) + ["request/response", "response wait"]
        if config.outputs.collect_metrics:
            columns += METRICS_COLUMNS
    if config.gates.goodput_latency_ms is not None:  # loadgen's own, after all of perf_analyzer's
        columns.append(GOODPUT_COLUMN)
    if config.target.streaming:
        columns += stream_columns(percentile)
        if stream_goodput_bounds(config.gates):
            columns.append(STREAM_GOODPUT_COLUMN)
    if sequences:
        columns += SEQUENCE_COLUMNS
    if config.gates.slas:
        columns.append("SLA")
    return columns


def stream_columns(percentile: int | None) -> list[str]:
    """A streamed run's figures: TTFT and ITL in µs (the average, p50, p90, p99 and --percentile's), responses and tokens."""
    keys = ["avg", *stream_percentile_keys(percentile)]
    return [*(f"TTFT {key} (us)" for key in keys), *(f"ITL {key} (us)" for key in keys), *STREAM_COUNT_COLUMNS]


def stream_cells(stream: StreamStats | None, percentile: int | None) -> list:
    """stream_columns' cells; empty where not measured (no request had two responses, no token output, no success)."""
    keys = ["avg", *stream_percentile_keys(percentile)]
    if stream is None or not stream.request_count:
        return [""] * (2 * len(keys) + len(STREAM_COUNT_COLUMNS))
    itl = stream.itl_us
    return [
        *(int(stream.ttft_us[key]) for key in keys),
        *((int(itl[key]) for key in keys) if itl is not None else [""] * len(keys)),
        f"{stream.responses_per_request:g}",
        stream.output_tokens if stream.output_tokens is not None else "",
        f"{stream.tokens_per_s:g}" if stream.tokens_per_s is not None else "",
    ]


def gpu_cells(metrics: MetricsFigures | None) -> list[str]:
    """`uuid:value;` per GPU, as perf_analyzer writes them; empty cells when the server exposes no GPU metrics."""
    gpus = metrics.gpus if metrics is not None else ()

    def cell(attribute: str, integer: bool) -> str:
        values = [(g.uuid, getattr(g, attribute)) for g in gpus if getattr(g, attribute) is not None]
        return "".join(f"{uuid}:{int(v) if integer else f'{v:g}'};" for uuid, v in values)

    return [
        cell("avg_utilization", False),
        cell("avg_power_w", False),
        cell("max_memory_used_bytes", True),
        cell("total_memory_bytes", True),
    ]


def sequence_cells(figures: SequenceFigures | None) -> list:
    """SEQUENCE_COLUMNS' cells; empty for a level without sequence figures."""
    if figures is None:
        return [""] * len(SEQUENCE_COLUMNS)
    return [f"{figures.completed_per_s:g}", figures.completed, figures.failed, figures.cut_short]


def row(level: LevelResult, config: RunConfig, sequences: bool = False) -> list:
    client = level.client
    breakdown = level.breakdown_us
    cells = [
        f"{level.value:g}",
        f"{client.throughput_infer_per_s:g}",
        *(int(us) for us in breakdown.values()),  # in the columns' order, client send to client recv
        *(int(client.percentile_latency_us[p]) for p in _percentiles(config.windows.percentile)),
    ]
    if config.outputs.verbose_csv:
        if config.windows.percentile is None:
            cells.append(int(client.avg_latency_us))
        cells += [int(client.avg_send_us + client.avg_recv_us), int(client.avg_response_wait_us)]
        if config.outputs.collect_metrics:
            cells += gpu_cells(level.metrics)
    if config.gates.goodput_latency_ms is not None:
        goodput = client.goodput_infer_per_s
        cells.append(f"{goodput:g}" if goodput is not None else "")
    if config.target.streaming:
        stream = level.streaming
        cells += stream_cells(stream, config.windows.percentile)
        if stream_goodput_bounds(config.gates):
            goodput = stream.goodput_infer_per_s if stream is not None else None
            cells.append(f"{goodput:g}" if goodput is not None else "")
    if sequences:
        cells += sequence_cells(level.sequences)
    if config.gates.slas:
        failed = [f"{v.expression} ({v.reason})" for v in level.sla if not v.passed]
        cells.append("fail: " + "; ".join(failed) if failed else "pass")
    return cells


def composing_row(level: LevelResult, model: ServerFigures) -> list:
    """A composing model's row, as perf_analyzer writes it: its share of the throughput, its overhead in the
    network column, its own queue and compute, and no client times."""
    share = model.success_count / level.server.success_count if level.server.success_count else 0.0
    return [
        f"{level.value:g}",
        f"{share * level.client.throughput_infer_per_s:g}",
        0,
        int(model.overhead_us),
        int(model.queue_us),
        int(model.compute_input_us),
        int(model.compute_infer_us),
        int(model.compute_output_us),
        0,
    ]


def composing_path(path: Path, model: str, version: str) -> Path:
    """Where a composing model's CSV goes: beside the main one, named as perf_analyzer names it."""
    return path.with_name(f"{model}_v{version}.{path.name}")


def write_csv(path: Path, result: RunResult) -> None:
    """Write the run's CSV at `path` and its composing models' beside it."""
    label = result.levels[0].label if result.levels else "Concurrency"
    config, sequences = result.config, drove_sequences(result)
    write_atomic(path, csv_text([header(label, config, sequences), *(row(level, config, sequences) for level in result.levels)]))
    per_level = [{(f.name, f.version): f for f in level.server.walk()} for level in result.levels]
    for key in per_level[0] if per_level else {}:
        rows = [composing_row(level, figures[key]) for level, figures in zip(result.levels, per_level)]
        write_atomic(composing_path(path, *key), csv_text([[label, *BASE_COLUMNS], *rows]))


def csv_text(rows) -> str:
    """Rows as CSV text, with the csv module's CRLF line ends."""
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue()


def write_csvs(path: Path, result: RunResult) -> None:
    """The run's CSV at `path`; for a mix, each model's beside it instead (results.MODEL.csv), with its composing models'."""
    if not result.mix:
        write_csv(path, result)
    for part in result.mix:
        write_csv(part_path(path, part), part)


class CsvReport(RunListener):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        write_csvs(self.path, so_far)

    def run_finished(self, result: RunResult) -> None:
        write_csvs(self.path, result)
