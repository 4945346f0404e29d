"""tune.html: a tune's page, self-contained like report.html (loadgen.report.html_page's frame, CSP
and tables): the headline, the candidates ranked as on the console, tune.png, and how the search
went, candidate by candidate.

`render_tune_report` writes plots/tune.png and tune.html into the tune's folder; `loadgen tune`
calls it when the search ends and `loadgen report DIR` redoes it from tune.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from urllib.parse import quote

from loadgen import best_repository
from loadgen.report.base import Plot, write_atomic
from loadgen.report.html_page import (
    FAIL,
    MISSING,
    PASS,
    WARN,
    Link,
    model_configs,
    num,
    page,
    percent,
    plots_section,
    table,
    when,
)
from loadgen.report.render import HTML as RUN_HTML
from loadgen.report.render import PLOTS_DIR, SUMMARY
from loadgen.report.tune_plots import render_tune_plot
from loadgen.tune_result import COMPLETE, FAILED, LOAD_FAILED, MEASURED, RUN_FAILED, CandidateResult, TuneResult
from loadgen.tune_search import improves, ranking

HTML = "tune.html"
BEST_REPOSITORY = f"best/{best_repository.BEST_REPOSITORY}"  # written by loadgen.tuner when a candidate met the bounds
KEPT = PASS + " new best"
START = "start"


def render_tune_report(result: TuneResult, tune_dir: Path) -> Path:
    """Draw plots/tune.png and write tune.html into `tune_dir`; returns the page's path."""
    tune_dir = Path(tune_dir)
    plot = render_tune_plot(result, tune_dir / PLOTS_DIR)
    path = tune_dir / HTML
    render_tune_html(result, plot, path)
    return path


def kept(candidates: Sequence[CandidateResult], min_gain: float) -> list[bool]:
    """Per candidate, in the order measured, whether it became the current best: the first one
    (the start) does; each later one when it `improves` on the current best by the noise rule."""
    flags: list[bool] = []
    current: CandidateResult | None = None
    for candidate in candidates:
        became = current is None or improves(candidate, current, min_gain)
        if became:
            current = candidate
        flags.append(became)
    return flags


def render_tune_html(result: TuneResult, plot: Plot | None, path: Path) -> None:
    """Write the tune's page at `path`, atomically; links (candidates' runs, the best repository)
    are relative to its folder, and only to what is there."""
    folder = Path(path).parent
    body = [
        f"<h1>loadgen tune: {escape(result.ensemble)}</h1>",
        _header(result, folder),
        _ranked(result),
        plots_section([plot] if plot is not None else []),
        _steps(result, folder),
        _remeasured(result),
    ]
    if result.best is not None:
        body.append(model_configs(result.candidates[result.best].configs, f"The best configuration's models ([{result.best}])"))
    write_atomic(path, page(f"loadgen tune: {result.ensemble}, {when(result.started_at or None)}", body))


def _mark(result: TuneResult, index: int) -> str:
    return ", ".join(name for name, marked in (("best", index == result.best), ("default", index == 0)) if marked)


def _throughput(value: float | None) -> str:
    return num(value) + " infer/s" if value is not None else MISSING


def _header(result: TuneResult, folder: Path) -> str:
    started, finished = result.started_at or None, result.finished_at
    meta = f"Started {when(started)}, finished {when(finished)}"
    if started and finished:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        meta += f" ({seconds:,.0f} s)"
    meta += f" · {result.search} search · {len(result.candidates)} candidates · loadgen {result.loadgen_version}"
    bounds = result.options.get("bounds") or {}
    within = list(bounds.get("sla") or ())
    if bounds.get("latency_threshold_ms") is not None:
        within.append(f"latency ≤ {bounds['latency_threshold_ms']:g} ms (-l)")
    lines = [f"{result.status.capitalize()}" + (f": {result.stop_reason}." if result.stop_reason else "."),
             f"Within: {', '.join(within) or MISSING}."]  # fmt: skip
    default = result.default
    if result.best is None:
        lines.append("No candidate met the bounds.")
    else:
        best = result.candidates[result.best]
        line = (f"Best: [{best.index}] {_throughput(best.mean_throughput_infer_per_s)} within the bounds, "
                f"p99 {num(best.p99_ms)} ms")  # fmt: skip
        if default is not None and default.index != best.index:
            if default.mean_throughput_infer_per_s:
                gain = best.mean_throughput_infer_per_s / default.mean_throughput_infer_per_s
                line += f": {gain:.2f}x the default configuration's {_throughput(default.mean_throughput_infer_per_s)}"
            else:
                line += f"; the default configuration: {default.outcome}"
        elif default is not None:
            line += ": the default configuration is the best"
        lines.append(line + ".")
        lines.append(f"Best settings: {best.key}.")
        target = bounds.get("target_throughput")
        if target is not None:
            servers = [f"{candidate.servers_needed} with the {name}" for name, candidate in (("best", best), ("default", default))
                       if candidate is not None and candidate.servers_needed is not None]  # fmt: skip
            lines.append(f"Servers for {num(target)} infer/s with {bounds.get('headroom_pct') or 0:g}% headroom: "
                         f"{', '.join(servers) or MISSING}.")  # fmt: skip
    failed = result.best is None or result.status == FAILED
    css = "verdict fail" if failed else "verdict warn" if result.status != COMPLETE else "verdict"
    html = (f'<p class="meta">{escape(meta)}</p>'
            f'<div class="{css}">{"".join(f"<p>{escape(line)}</p>" for line in lines)}</div>')  # fmt: skip
    if result.best is not None:
        if (folder / BEST_REPOSITORY).is_dir():
            html += (f'<p>Ready to deploy: <a href="{BEST_REPOSITORY}/">{BEST_REPOSITORY}/</a>, the repository with the '
                     "best configuration written out; <code>loadgen run --model-repository</code> on it reproduces it.</p>")
        else:
            html += f"<p>{escape(BEST_REPOSITORY)}/ is not written: the tune did not complete.</p>"
    return html


def _outcome(candidate: CandidateResult) -> str:
    """Empty for a measured candidate; else the outcome, flagged, with Triton's or the run's message."""
    if candidate.outcome == MEASURED:
        return ""
    flag = FAIL + " " if candidate.outcome in (LOAD_FAILED, RUN_FAILED) else WARN
    return flag + candidate.outcome + (f": {candidate.message}" if candidate.message else "")


def _ranked(result: TuneResult) -> str:
    """As the console's ranked table: every candidate, best first, its settings per stage."""
    html = "<h2>Candidates, best first</h2>"
    if not result.candidates:
        return html + "<p>No candidate was measured.</p>"
    models = [model for model, _ in result.candidates[0].settings]
    head = ["", "#", *models, "Throughput within the bounds (infer/s)", "Runs", "Level", "p99 (ms)", "CPU", "GPU",
            "Servers", "Outcome"]  # fmt: skip
    rows = []
    for index in ranking(result.candidates):
        candidate = result.candidates[index]
        settings = dict(candidate.settings)
        rows.append([
            _mark(result, index), index, *(settings[model].describe() if model in settings else MISSING for model in models),
            num(candidate.mean_throughput_infer_per_s), 1 + len(candidate.remeasured_infer_per_s),
            None if candidate.level_value is None else f"{candidate.level_value:g}", num(candidate.p99_ms),
            percent(candidate.cpu_utilization, 0), percent(candidate.gpu_utilization, 0), candidate.servers_needed,
            _outcome(candidate),
        ])  # fmt: skip
    text = (0, *range(2, 2 + len(models)), len(head) - 1)
    return (html + "<p>Ranked on the throughput within the bounds, the mean of each candidate's measurements (Runs); "
            "then the candidates that met no level, then those that failed. The level is the concurrency or request "
            "rate that gave the throughput; CPU and GPU are the server's utilization there.</p>"
            + table(head, rows, text_columns=text))


def _run_link(candidate: CandidateResult, folder: Path) -> Link | None:
    """Its run's report.html when rendered (loadgen report), else its summary.json; None when it has neither."""
    if candidate.run_dir is None:
        return None
    for name in (RUN_HTML, SUMMARY):
        if (folder / candidate.run_dir / name).is_file():
            return Link(f"{candidate.run_dir}/{name}", quote(f"{candidate.run_dir}/{name}"))
    return None


def _steps(result: TuneResult, folder: Path) -> str:
    min_gain = result.options["min_gain_pct"] / 100
    flags = kept(result.candidates, min_gain)
    rows = []
    for candidate, became in zip(result.candidates, flags):
        rows.append([
            candidate.index, candidate.reason, candidate.key, _outcome(candidate) or candidate.outcome,
            num(candidate.throughput_infer_per_s), percent(candidate.spread), num(candidate.p99_ms),
            (START if candidate.index == 0 else KEPT) if became else "", _run_link(candidate, folder),
        ])  # fmt: skip
    head = ["#", "Why it was tried", "Settings", "Outcome", "Throughput (infer/s)", "Spread", "p99 (ms)", "Kept", "Run"]
    return ("<h2>How the search went</h2>"
            f"<p>Every candidate in the order measured, with why the {escape(result.search)} search tried it. A candidate "
            "is kept (it becomes the current best) when its first throughput within the bounds beats the current best's "
            f"by more than the larger of --min-gain ({result.options['min_gain_pct']:g}%) and the two measurements' "
            "window-to-window spreads; one that failed or met no level counts as 0. The guided search builds its next "
            "changes on the current best. The best is named later, on the mean after the leaders are measured again, "
            "so it need not be the last one kept.</p>"
            + (table(head, rows, text_columns=(1, 2, 3, 8)) if rows else "<p>No candidate was measured.</p>"))  # fmt: skip


def _remeasured(result: TuneResult) -> str:
    again = [candidate for candidate in result.candidates if candidate.remeasured_infer_per_s]
    if not again:
        return ""
    rows = [[candidate.index, num(candidate.throughput_infer_per_s),
             ", ".join(num(value) for value in candidate.remeasured_infer_per_s),
             num(candidate.mean_throughput_infer_per_s)] for candidate in again]  # fmt: skip
    return ("<h3>The leaders, measured again</h3><p>Drift between early and late candidates can be larger than the gains "
            "searched for, so the leaders were measured again at their level, in ABBA order, and the best is named on "
            "the mean.</p>"
            + table(["#", "First (infer/s)", "Again (infer/s)", "Mean (infer/s)"], rows, text_columns=()))
