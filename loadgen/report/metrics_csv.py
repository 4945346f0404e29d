"""metrics.csv: every scrape of the server's metrics, one row each, one column per series."""

from __future__ import annotations

from pathlib import Path

from loadgen.listener import RunListener
from loadgen.measurement import LevelResult
from loadgen.metrics import series_name
from loadgen.report.base import write_atomic
from loadgen.report.csv_report import csv_text
from loadgen.result import RunResult


def write_metrics_csv(path: Path, result: RunResult) -> None:
    series = result.metrics_series or ()
    keys = sorted({key for scrape in series for key in scrape.values})
    rows = [["time_s", "level", *(series_name(key) for key in keys)]]
    for scrape in series:
        index = result.level_at(scrape.t_ns)
        level = f"{result.levels[index].label} {result.levels[index].value:g}" if index is not None else ""
        values = [scrape.values.get(key, "") for key in keys]
        rows.append([f"{(scrape.t_ns - result.started_ns) / 1e9:.3f}", level, *values])
    write_atomic(path, csv_text(rows))


class MetricsCsvReport(RunListener):
    """Written only when metrics were collected."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        self.run_finished(so_far)

    def run_finished(self, result: RunResult) -> None:
        if result.metrics_series is not None:
            write_metrics_csv(self.path, result)
