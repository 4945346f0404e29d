"""perf_analyzer's CSV (-f), plus one CSV per composing model beside it."""

from __future__ import annotations

import csv
from pathlib import Path

from loadgen.measurement import LevelResult
from loadgen.report.base import ReportWriter
from loadgen.server_stats import ServerFigures
from loadgen.stats import REPORTED_PERCENTILES
from loadgen.sweep import RunResult

SERVER_COLUMNS = ["Server Queue", "Server Compute Input", "Server Compute Infer", "Server Compute Output"]
VERBOSE_COLUMNS = ["Avg latency", "request/response", "response wait"]


def header(label: str, verbose: bool) -> list[str]:
    columns = [label, "Inferences/Second", "Client Send", "Network+Server Send/Recv", *SERVER_COLUMNS, "Client Recv"]
    columns += [f"p{p} latency" for p in REPORTED_PERCENTILES]
    return columns + (VERBOSE_COLUMNS if verbose else [])


def _server_cells(server: ServerFigures) -> list[int]:
    return [int(server.queue_us), int(server.compute_input_us), int(server.compute_infer_us), int(server.compute_output_us)]


def row(level: LevelResult, server: ServerFigures, verbose: bool) -> list:
    """One level's row. `server` is the top model's figures, or a composing model's for its own CSV."""
    client = level.client
    network_us = max(0.0, client.avg_latency_us - client.avg_send_us - client.avg_recv_us - server.queue_us - server.compute_us)
    cells = [
        f"{level.value:g}",
        f"{client.throughput_infer_per_s:g}",
        int(client.avg_send_us),
        int(network_us),
        *_server_cells(server),
        int(client.avg_recv_us),
        *(int(client.percentile_latency_us[p]) for p in REPORTED_PERCENTILES),
    ]
    if verbose:
        cells += [int(client.avg_latency_us), int(client.avg_send_us + client.avg_recv_us), int(client.avg_response_wait_us)]
    return cells


def composing_path(path: Path, model: str, version: str) -> Path:
    """Where a composing model's CSV goes: beside the main one, named as perf_analyzer names it."""
    return path.with_name(f"{model}_v{version}.{path.name}")


def write_csv(path: Path, result: RunResult, verbose: bool) -> None:
    """Write the run's CSV at `path` and its composing models' beside it."""
    label = result.levels[0].label if result.levels else "Concurrency"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(header(label, verbose))
        for level in result.levels:
            out.writerow(row(level, level.server, verbose))
    per_level = [{(f.name, f.version): f for f in level.server.walk()} for level in result.levels]
    for key in per_level[0] if per_level else {}:
        model_path = composing_path(path, *key)
        with open(model_path, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(header(label, verbose))
            for level, figures in zip(result.levels, per_level):
                out.writerow(row(level, figures[key], verbose))


class CsvReport(ReportWriter):
    def __init__(self, path: Path, verbose: bool) -> None:
        self.path = Path(path)
        self.verbose = verbose

    def finish(self, result: RunResult) -> None:
        write_csv(self.path, result, self.verbose)
