"""The report folder's pictures: plots and report.html, rendered from summary.json alone so they can be redone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadgen.errors import UsageError
from loadgen.report.base import ReportWriter
from loadgen.report.html_report import render_html
from loadgen.report.plots import render_plots
from loadgen.schema import summary
from loadgen.summary_versions import upgrade
from loadgen.sweep import RunResult

SUMMARY = "summary.json"
HTML = "report.html"
PLOTS_DIR = "plots"


def load_summary(run_dir: Path) -> dict[str, Any]:
    """A run folder's summary.json in the current schema, upgraded from the version it was written in."""
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
    return upgrade(data, str(path))


def render_report(data: dict[str, Any], run_dir: Path) -> Path:
    """Draw the plots and write report.html into `run_dir`; returns the HTML's path."""
    plots = render_plots(data, Path(run_dir) / PLOTS_DIR)
    path = Path(run_dir) / HTML
    render_html(data, plots, path)
    return path


class HtmlReport(ReportWriter):
    """Plots and report.html in the run's folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def finish(self, result: RunResult) -> None:
        render_report(summary(result), self.run_dir)
