"""The report folder's pictures: plots and report.html, rendered from the run's result alone, so that
`loadgen report` can redo them from summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from loadgen.errors import UsageError
from loadgen.listener import RunListener
from loadgen.report.html_report import render_html
from loadgen.report.plots import render_plots
from loadgen.result import RunResult
from loadgen.summary_versions import not_whole, upgrade

SUMMARY = "summary.json"
HTML = "report.html"
PLOTS_DIR = "plots"


def load_summary(run_dir: Path) -> RunResult:
    """The run a folder's summary.json records, upgraded from the version it was written in."""
    path = Path(run_dir) / SUMMARY
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{run_dir} has no {SUMMARY}: pass a report folder written by loadgen run") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (line {exc.lineno}): was the run's folder edited?") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text: was the run's folder edited?") from None
    current = upgrade(data, str(path))
    try:
        return RunResult.from_dict(current)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise not_whole(str(path), data["schema_version"], exc) from None


def render_report(result: RunResult, run_dir: Path) -> Path:
    """Draw the plots and write report.html into `run_dir`; returns the HTML's path."""
    plots = render_plots(result, Path(run_dir) / PLOTS_DIR)
    path = Path(run_dir) / HTML
    render_html(result, plots, path)
    return path


class HtmlReport(RunListener):
    """Plots and report.html in the run's folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def run_finished(self, result: RunResult) -> None:
        render_report(result, self.run_dir)
