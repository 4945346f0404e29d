"""workers.csv: with --workers, each worker's part of each level, one row per level and worker; for a mix
of models, each model's as workers.MODEL.csv."""

from __future__ import annotations

from pathlib import Path

from loadgen.listener import RunListener
from loadgen.measurement import LevelResult
from loadgen.report.base import part_path, write_atomic
from loadgen.report.csv_report import csv_text
from loadgen.result import RunResult

HEADER = [
    "label", "value", "worker", "host", "pid", "share", "request_count", "error_count", "throughput_infer_per_s",
    "schedule_lag_p50_us", "schedule_lag_p99_us", "schedule_lag_max_us", "late_fraction", "cpu_pct", "overloaded",
    "lost",
]  # fmt: skip


def write_workers_csv(path: Path, result: RunResult) -> None:
    rows = [HEADER]
    for level in result.levels:
        for w in level.workers:
            lag = [w.schedule_lag_us.get(key, "") for key in ("p50", "p99", "max")]  # empty in closed loop
            rows.append([
                level.label, f"{level.value:g}", w.worker, w.host, w.pid, f"{w.share:g}", w.request_count,
                w.error_count, w.throughput_infer_per_s, *lag, w.late_fraction, w.cpu_pct,
                "true" if w.overloaded else "false", w.lost or "",
            ])  # fmt: skip
    write_atomic(path, csv_text(rows))


class WorkersCsvReport(RunListener):
    """Written only when the load came from workers (--workers)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        self.run_finished(so_far)

    def run_finished(self, result: RunResult) -> None:
        for part in result.parts:
            if any(level.workers for level in part.levels):
                write_workers_csv(part_path(self.path, part) if result.mix else self.path, part)
