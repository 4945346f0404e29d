"""tune.png: every measured candidate's throughput within the bounds against its p99, with the
Pareto front, in the style of the run reports' charts (loadgen.report.plots).

`plot_data` is what the chart shows, a pure function of the tune's result; `tune_chart` draws it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from loadgen.errors import UsageError
from loadgen.report.base import Plot
from loadgen.report.plots import DPI, new_figure
from loadgen.sla import parse_sla
from loadgen.tune_result import MEASURED, CandidateResult, TuneResult
from loadgen.tune_search import pareto_front

NAME = "tune"  # plots/tune.png
TITLE = "Throughput within the bounds against p99, per candidate"
NOTE_WIDTH = 110  # characters per line of the note under the chart


@dataclass(frozen=True)
class TunePoint:
    index: int  # the candidate's
    throughput_infer_per_s: float  # within the bounds: the mean of its measurements
    p99_ms: float  # at the level that gave it


@dataclass(frozen=True)
class TunePlotData:
    points: tuple[TunePoint, ...]  # the measured candidates, in the order measured
    front: tuple[int, ...]  # the candidate indices on the Pareto front, by throughput
    left_out: tuple[CandidateResult, ...]  # met no level, failed to load or run: listed in a note
    default: int | None  # candidate index of the default configuration, when plotted
    best: int | None  # and of the best
    sla_p99_ms: float | None  # the tightest upper bound on p99_ms among the SLAs


def sla_p99_ms(bounds: Mapping[str, Any]) -> float | None:
    """The lowest threshold of the `p99_ms<X` and `p99_ms<=X` SLAs in tune.json's bounds, or None.
    Expressions that no longer parse are not drawn (the page lists them as given)."""
    thresholds = []
    for expression in bounds.get("sla") or ():
        try:
            sla = parse_sla(expression)
        except UsageError:
            continue
        if sla.metric == "p99_ms" and sla.op in ("<", "<="):
            thresholds.append(sla.threshold)
    return min(thresholds, default=None)


def plot_data(result: TuneResult) -> TunePlotData:
    points, left_out = [], []
    for candidate in result.candidates:
        throughput, p99_ms = candidate.mean_throughput_infer_per_s, candidate.p99_ms
        if candidate.outcome == MEASURED and throughput is not None and p99_ms is not None:
            points.append(TunePoint(candidate.index, throughput, p99_ms))
        else:
            left_out.append(candidate)
    front = pareto_front([(point.throughput_infer_per_s, point.p99_ms) for point in points])
    plotted = {point.index for point in points}
    default = result.default.index if result.default is not None else None
    return TunePlotData(
        points=tuple(points),
        front=tuple(points[i].index for i in front),
        left_out=tuple(left_out),
        default=default if default in plotted else None,
        best=result.best if result.best in plotted else None,
        sla_p99_ms=sla_p99_ms(result.options.get("bounds") or {}),
    )


def _note(left_out: tuple[CandidateResult, ...]) -> str:
    if not left_out:
        return ""
    listed = ", ".join(f"[{candidate.index}] {candidate.outcome}" for candidate in left_out)
    return "\n" + textwrap.fill(f"Not plotted: {listed}", NOTE_WIDTH)


def tune_chart(result: TuneResult) -> Figure | None:
    """The chart, or None when no candidate has a throughput within the bounds."""
    data = plot_data(result)
    if not data.points:
        return None
    by_index = {point.index: point for point in data.points}
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([p.throughput_infer_per_s for p in data.points], [p.p99_ms for p in data.points], "o", color="C0",
            label="candidate")  # fmt: skip
    front = [by_index[index] for index in data.front]
    # The lowest p99 reachable for a throughput up to each front point's: constant back to the previous one.
    ax.step([p.throughput_infer_per_s for p in front], [p.p99_ms for p in front], "-o", where="pre", color="C3",
            label="Pareto front")  # fmt: skip
    marks = (("default configuration", data.default, "s", "black"), ("best", data.best, "*", "C2"))
    for label, index, marker, color in marks:
        if index is not None:
            point = by_index[index]
            ax.plot([point.throughput_infer_per_s], [point.p99_ms], marker, markersize=16, markerfacecolor="none",
                    markeredgecolor=color, markeredgewidth=2, label=label)  # fmt: skip
    for point in data.points:
        tag = str(point.index) + "".join(f" {name}" for name, index in (("default", data.default), ("best", data.best))
                                         if index == point.index)  # fmt: skip
        ax.annotate(tag, (point.throughput_infer_per_s, point.p99_ms), textcoords="offset points", xytext=(6, 5),
                    fontsize=8)  # fmt: skip
    if data.sla_p99_ms is not None:
        ax.axhline(data.sla_p99_ms, color="grey", linestyle="--", linewidth=1, label=f"SLA p99 {data.sla_p99_ms:g} ms")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    # A model name is text, never mathtext: a "$" in it must not break the drawing.
    ax.set_title(f"{result.ensemble}: throughput within the bounds against p99, per candidate", parse_math=False)
    ax.set_xlabel("throughput within the bounds (infer/s, the mean of its measurements)" + _note(data.left_out))
    ax.set_ylabel("p99 at that level (ms)")
    # From 0, with room for the labels right of and above the points.
    top = max([p.p99_ms for p in data.points] + [data.sla_p99_ms or 0.0])
    ax.set_xlim(0, 1.08 * max(p.throughput_infer_per_s for p in data.points))
    ax.set_ylim(0, 1.1 * top)
    ax.grid(alpha=0.3)
    return fig


def render_tune_plot(result: TuneResult, out_dir: Path) -> Plot | None:
    """Write out_dir/tune.png and return it; None (and no file) when there is nothing to plot."""
    path = Path(out_dir) / f"{NAME}.png"
    figure = tune_chart(result)
    if figure is None:
        path.unlink(missing_ok=True)  # re-rendering (loadgen report) must not keep a stale chart
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return Plot(name=NAME, title=TITLE, path=path)
