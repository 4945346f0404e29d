"""metrics.csv: every scrape of the server's metrics, one row each, one column per series (one file for a mix
of models too: the server is theirs together)."""

from __future__ import annotations

from pathlib import Path

from loadgen.listener import RunListener
from loadgen.measurement import LevelResult
from loadgen.metrics import series_name
from loadgen.report.base import model_name, write_atomic
from loadgen.report.csv_report import csv_text
from loadgen.result import RunResult


def write_metrics_csv(path: Path, result: RunResult) -> None:
    series = result.metrics_series or ()
    keys = sorted({key for scrape in series for key in scrape.values})
    rows = [["time_s", "level", *(series_name(key) for key in keys)]]
    for scrape in series:
        level = level_text(result, scrape.t_ns)
        values = [scrape.values.get(key, "") for key in keys]
        rows.append([f"{(scrape.t_ns - result.started_ns) / 1e9:.3f}", level, *values])
    write_atomic(path, csv_text(rows))


def level_text(result: RunResult, t_ns: int) -> str:
    """The level measured at `t_ns`, "" between levels: "Request Rate 100"; for a mix, each model's
    ("ident Request Rate 100; echo Concurrency 2"), whose levels step together."""
    parts = result.parts
    index = parts[0].level_at(t_ns)
    if index is None:
        return ""
    texts = [f"{part.levels[index].label} {part.levels[index].value:g}" for part in parts if index < len(part.levels)]
    if not result.mix:
        return texts[0]
    return "; ".join(f"{model_name(part)} {text}" for part, text in zip(parts, texts))


class MetricsCsvReport(RunListener):
    """Written only when metrics were collected."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        self.run_finished(so_far)

    def run_finished(self, result: RunResult) -> None:
        if result.metrics_series is not None:
            write_metrics_csv(self.path, result)
