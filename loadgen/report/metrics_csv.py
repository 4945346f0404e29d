"""metrics.csv: every scrape of the server's metrics, one row each, one column per series."""

from __future__ import annotations

import csv
from pathlib import Path

from loadgen.metrics import series_name
from loadgen.report.base import ReportWriter
from loadgen.sweep import RunResult


def write_metrics_csv(path: Path, result: RunResult) -> None:
    series = result.metrics_series or ()
    keys = sorted({key for scrape in series for key in scrape.values})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["time_s", "level", *(series_name(key) for key in keys)])
        for scrape in series:
            index = result.level_at(scrape.t_ns)
            level = f"{result.levels[index].label} {result.levels[index].value:g}" if index is not None else ""
            values = [scrape.values.get(key, "") for key in keys]
            out.writerow([f"{(scrape.t_ns - result.started_ns) / 1e9:.3f}", level, *values])


class MetricsCsvReport(ReportWriter):
    """Written only when metrics were collected."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def finish(self, result: RunResult) -> None:
        if result.metrics_series is not None:
            write_metrics_csv(self.path, result)
