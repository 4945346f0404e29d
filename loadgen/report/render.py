"""The report folder's pictures: plots and report.html, rendered from the run's result alone, so that
`loadgen report` can redo them from summary.json; and reading a tune's tune.json back, for tune.html
(loadgen.report.tune_html)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadgen.errors import UsageError
from loadgen.listener import RunListener
from loadgen.report.base import file_safe, model_name
from loadgen.report.html_report import render_html
from loadgen.report.plots import render_plots
from loadgen.result import RunResult
from loadgen.summary_versions import not_whole, upgrade
from loadgen.tune_result import TuneResult

SUMMARY = "summary.json"
HTML = "report.html"
PLOTS_DIR = "plots"


def _read_json(path: Path, missing: str, whose: str) -> Any:
    """A report folder's JSON file; UsageError with `missing` when it is not there."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(missing) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (line {exc.lineno}): was the {whose} folder edited?") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text: was the {whose} folder edited?") from None


def load_summary(run_dir: Path) -> RunResult:
    """The run a folder's summary.json records, upgraded from the version it was written in."""
    path = Path(run_dir) / SUMMARY
    data = _read_json(path, f"{run_dir} has no {SUMMARY}: pass a report folder written by loadgen run", "run's")
    current = upgrade(data, str(path))
    try:
        return RunResult.from_dict(current)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise not_whole(str(path), data["schema_version"], exc) from None


def load_tune(path: Path) -> TuneResult:
    """The tune a tune.json at `path` records (`loadgen report` on a tune's folder)."""
    data = _read_json(Path(path), f"there is no {path}: pass the report folder of a loadgen tune", "tune's")
    try:
        return TuneResult.from_dict(data)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UsageError(f"{path} is not a whole tune.json ({type(exc).__name__}: {exc}): was the tune's folder edited?") from None


def render_report(result: RunResult, run_dir: Path) -> Path:
    """Draw the plots and write report.html into `run_dir`; returns the HTML's path. A mix's models'
    plots go in plots/MODEL/."""
    plots_dir = Path(run_dir) / PLOTS_DIR
    if result.mix:
        mix_plots = [render_plots(part, plots_dir / file_safe(model_name(part))) for part in result.mix]
        plots = []
    else:
        mix_plots, plots = [], render_plots(result, plots_dir)
    path = Path(run_dir) / HTML
    render_html(result, plots, path, mix_plots)
    return path


class HtmlReport(RunListener):
    """Plots and report.html in the run's folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def run_finished(self, result: RunResult) -> None:
        render_report(result, self.run_dir)
