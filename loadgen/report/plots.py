"""The report folder's PNG charts, drawn from a run's result.

Figures are built with matplotlib's object API (no pyplot), so rendering keeps no global state
and needs no display. Each chart has one function that returns its Figure, or None when the
run has nothing to show for it; render_plots saves the ones that exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from loadgen.histogram import LatencyHistogram
from loadgen.measurement import LevelResult
from loadgen.report.base import Plot
from loadgen.result import RunResult, series_columns
from loadgen.roofline import level_figures
from loadgen.server_stats import ServerFigures
from loadgen.stats import CURVE_PERCENTILES

DPI = 100
SIZE = (9.0, 5.0)  # inches: 900 x 500 px at DPI
GIB = 2**30

# (breakdown key or ServerFigures attribute, legend label, colour): server parts keep their colour in both breakdowns.
BREAKDOWN_PARTS = (
    ("client_send", "client send", "tab:blue"),
    ("network", "network", "tab:gray"),
    ("server_queue", "server queue", "tab:orange"),
    ("server_compute_input", "compute input", "tab:olive"),
    ("server_compute_infer", "compute infer", "tab:green"),
    ("server_compute_output", "compute output", "tab:cyan"),
    ("client_recv", "client recv", "tab:purple"),
)
COMPOSING_PARTS = (
    ("queue_us", "queue", "tab:orange"),
    ("compute_input_us", "compute input", "tab:olive"),
    ("compute_infer_us", "compute infer", "tab:green"),
    ("compute_output_us", "compute output", "tab:cyan"),
    ("overhead_us", "overhead", "tab:brown"),
)
TAIL_PERCENTILES = (0, 50, 90, 99, 99.9, 99.99, 99.999)
# A traced model's parts (loadgen.tail's distributions), in their colours above where they have one.
STAGE_PARTS = (
    ("queue", "queue", "tab:orange"),
    ("compute_input", "compute input", "tab:olive"),
    ("compute_infer", "compute infer", "tab:green"),
    ("compute_output", "compute output", "tab:cyan"),
    ("scheduling", "scheduling (ensemble)", "tab:brown"),
    ("total", "total", "tab:blue"),
)
# Each part's bar: its p99, p90 and p50, drawn over each other, lighter (mixed with white) the higher.
STAGE_PERCENTILES = (("p99_us", "p99 (lightest)", 0.7), ("p90_us", "p90", 0.4), ("p50_us", "p50 (darkest)", 0.0))


def render_plots(result: RunResult, out_dir: Path) -> list[Plot]:
    """Write the run's charts as PNGs into out_dir and return those drawn, in display order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    measured = bool(result.levels)  # none when interrupted before its first level
    plots = []
    for name, title, draw in CHARTS:
        path = out_dir / f"{name}.png"
        figure = draw(result) if measured else None
        if figure is None:
            path.unlink(missing_ok=True)  # re-rendering (loadgen report) must not keep a stale chart
            continue
        figure.savefig(path, dpi=DPI)
        plots.append(Plot(name=name, title=title, path=path))
    return plots


# --- helpers -------------------------------------------------------------------------------


def new_figure(height: float = SIZE[1]) -> Figure:
    """A chart's figure, full width at DPI (tune.png's too)."""
    # Constrained layout is the tight layout that also makes room for outside legends.
    return Figure(figsize=(SIZE[0], height), dpi=DPI, layout="constrained")


def _floats(values: Iterable) -> np.ndarray:
    """None (not measured) becomes NaN, which matplotlib leaves as a gap."""
    return np.array(list(values), dtype=float)


def _value_text(level: LevelResult) -> str:
    value = level.value
    return f"{value:g}" if isinstance(value, float) else str(value)  # 100.0 shows as 100


def _level_tag(level: LevelResult) -> str:
    """A short point label such as "c=4" ("Concurrency") or "rr=200" ("Request Rate")."""
    initials = "".join(word[0] for word in (level.label or "level").split()).lower()
    return f"{initials}={_value_text(level)}"


def _stacked_bars(ax, levels: Sequence[LevelResult], parts: list[tuple[str, str, np.ndarray]]) -> None:
    """One bar per level (evenly spaced, whatever the values), a segment per part; a null part adds nothing."""
    x = np.arange(len(levels))
    bottom = np.zeros(len(levels))
    for label, color, values in parts:
        heights = np.nan_to_num(values)
        ax.bar(x, heights, bottom=bottom, width=0.7, label=label, color=color)
        bottom += heights
    ax.set_xticks(x, [_value_text(level) for level in levels])


def _stack_legend(target, ax, **kwargs) -> None:
    """A legend listing the parts top to bottom as they stack, so it reads like the bars."""
    handles, labels = ax.get_legend_handles_labels()
    target.legend(handles[::-1], labels[::-1], **kwargs)


# --- charts --------------------------------------------------------------------------------


def throughput_latency(result: RunResult) -> Figure | None:
    levels = result.levels
    clients = [level.client for level in levels]
    throughput = _floats(c.throughput_infer_per_s for c in clients)
    if not np.isfinite(throughput).any():
        return None
    # Average labels go below-right and p99 labels above-left, so a level's two labels never
    # collide where the curves run close together.
    average_us = _floats(c.avg_latency_us for c in clients)
    p99_us = _floats(c.percentile_latency_us.get(99) for c in clients)
    series = (
        ("average latency", average_us, "C0", {"xytext": (5, -4), "ha": "left", "va": "top"}),
        ("p99 latency", p99_us, "C3", {"xytext": (-5, 4), "ha": "right", "va": "bottom"}),
    )
    unstable = np.array([not level.stable for level in levels])
    fig = new_figure()
    ax = fig.add_subplot()
    for name, latency_us, color, label_style in series:
        latency = latency_us / 1000
        ax.plot(throughput, latency, "-o", color=color, label=name)
        # Unstable levels redrawn hollow over their filled marker.
        ax.plot(throughput[unstable], latency[unstable], "o", color=color, markerfacecolor="white")
        for level, x, y in zip(levels, throughput, latency):
            if np.isfinite(x) and np.isfinite(y):
                ax.annotate(_level_tag(level), (x, y), textcoords="offset points", fontsize=8, color=color, **label_style)
    handles, _ = ax.get_legend_handles_labels()
    if unstable.any():
        handles.append(Line2D([], [], ls="", marker="o", color="grey", markerfacecolor="white", label="unstable level"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Throughput vs latency, per level")
    ax.set_xlabel("throughput (infer/s)")
    ax.set_ylabel("latency (ms)")
    # Keep 0 in view, with room below it and above the top for the point labels.
    ax.margins(x=0.06, y=0.1)
    ax.set_ylim(-0.06 * ax.get_ylim()[1], None)
    ax.grid(alpha=0.3)
    return fig


def sequence_throughput(result: RunResult) -> Figure | None:
    """A sequence model's completed sequences per second, a bar per level, its failed and cut-short counts above it."""
    levels = [level for level in result.levels if level.sequences is not None]
    if not levels:
        return None
    fig = new_figure()
    ax = fig.add_subplot()
    x = np.arange(len(levels))
    bars = ax.bar(x, [level.sequences.completed_per_s for level in levels], width=0.6, color="C0")
    # The counts a rate hides: sequences that failed or that the level's end cut short.
    ax.bar_label(bars, [f"{level.sequences.failed} failed, {level.sequences.cut_short} cut short" for level in levels],
                 fontsize=8, padding=3)  # fmt: skip
    ax.set_xticks(x, [_value_text(level) for level in levels])
    ax.set_title("Sequences completed per second, per level")
    ax.set_xlabel(levels[0].label or "level")
    ax.set_ylabel("sequences/s")
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)
    return fig


def latency_breakdown(result: RunResult) -> Figure | None:
    levels = result.levels
    breakdowns = [level.breakdown_us for level in levels]
    parts = [
        (label, color, _floats(breakdown.get(key) for breakdown in breakdowns) / 1000)
        for key, label, color in BREAKDOWN_PARTS
    ]
    if not any(np.isfinite(values).any() for _, _, values in parts):
        return None
    fig = new_figure()
    ax = fig.add_subplot()
    _stacked_bars(ax, levels, parts)
    _stack_legend(ax, ax, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Average latency breakdown per request")
    ax.set_xlabel(levels[0].label or "level")
    ax.set_ylabel("latency (ms)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _leaves(server: ServerFigures) -> Iterable[ServerFigures]:
    """A server tree's composing models that run steps themselves, depth first.

    A nested ensemble's queue and compute are the sums of its own composing models, so
    drawing it as well would count them twice.
    """
    for child in server.composing:
        if child.composing:
            yield from _leaves(child)
        else:
            yield child


def composing_breakdown(result: RunResult) -> Figure | None:
    levels = result.levels
    per_level = [{(m.name, m.version): m for m in _leaves(level.server)} for level in levels]
    models = list(dict.fromkeys(key for found in per_level for key in found))  # first-seen order, no repeats
    if not models:
        return None
    # One full-width row per model, sharing both axes: every level's tick fits, and the models
    # compare at a glance.
    fig = new_figure(height=max(SIZE[1], 1.2 + 1.8 * len(models)))
    axes = fig.subplots(len(models), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (name, version) in zip(axes, models):
        figures = [found.get((name, version)) for found in per_level]  # None: not measured at that level
        parts = [(label, color, _floats(getattr(f, key, None) for f in figures) / 1000) for key, label, color in COMPOSING_PARTS]
        _stacked_bars(ax, levels, parts)
        ax.set_title(f"{name} v{version}" if version else name, loc="left", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    _stack_legend(fig, axes[0], loc="outside right upper")
    fig.suptitle("Composing models: average server time per request")
    axes[-1].set_xlabel(levels[0].label or "level")
    fig.supylabel("latency (ms)", fontsize=10)
    return fig


def roofline_chart(result: RunResult) -> Figure | None:
    """Each computing model at each level on the roofline: intensity against achieved FLOP/s, both log,
    under the roof (bandwidth slope, compute ceiling) of its threads; a hollow marker for it timed alone."""
    roofline = result.roofline
    if roofline is None:
        return None
    per_level = [(level, level_figures(roofline, level)) for level in result.levels]
    placed = [model for model in roofline.models if model.intensity is not None
              and any(figures.model is model for _, found in per_level for figures in found)]  # fmt: skip
    if not placed:
        return None
    fig = new_figure()
    ax = fig.add_subplot()
    roofs = list({model.roof.device: model.roof for model in placed if model.roof is not None}.values())
    intensities = [model.intensity for model in placed] + [roof.ridge_intensity for roof in roofs]
    x = np.geomspace(min(intensities) / 10, max(intensities) * 10, 200)
    for index, roof in enumerate(roofs):
        ax.plot(x, np.minimum(roof.peak_flops_per_s, x * roof.bandwidth_bytes_per_s) / 1e9, color="black",
                linestyle=("-", "--", ":", "-.")[index % 4], linewidth=1.2,
                label=f"roof: {roof.device} ({roof.peak_flops_per_s / 1e9:,.1f} GFLOP/s, "
                      f"{roof.bandwidth_bytes_per_s / 1e9:,.1f} GB/s)")  # fmt: skip
    for index, model in enumerate(placed):
        color = f"C{index}"
        points = [(level, figures) for level, found in per_level for figures in found if figures.model is model]
        ax.plot([model.intensity] * len(points), [f.achieved_flops_per_s / 1e9 for _, f in points], "o", color=color,
                label=f"{model.name} under load")
        for order, (level, figures) in enumerate(points):  # a model's levels share its x: labels alternate sides
            ax.annotate(_level_tag(level), (model.intensity, figures.achieved_flops_per_s / 1e9), textcoords="offset points",
                        xytext=(6, 0) if order % 2 == 0 else (-6, 0), ha="left" if order % 2 == 0 else "right",
                        fontsize=8, color=color, va="center")  # fmt: skip
        if model.direct is not None:
            direct_flops_per_s = model.flops / (model.direct.per_inference_us / 1e6)
            ax.plot([model.intensity], [direct_flops_per_s / 1e9], "o", color=color, markerfacecolor="white",
                    label=f"{model.name} alone in ONNX Runtime")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs/byte, log scale)")
    ax.set_ylabel("GFLOP/s (log scale)")
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.set_title("Roofline: each computing model per level (hollow: the model alone in ONNX Runtime)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def latency_distribution(result: RunResult) -> Figure | None:
    curves = []
    for level in result.levels:
        points = _floats(level.client.latency_curve_us or []).reshape(-1, 2)
        points = points[points[:, 0] < 100]  # p100 sits at infinity on a tail axis
        if len(points):
            curves.append((level, points))
    if not curves:
        return None
    fig = new_figure()
    ax = fig.add_subplot()
    _percentile_curves(ax, curves)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Latency by percentile, per level")
    ax.set_ylabel("latency (ms, log scale)")
    return fig


def _percentile_curves(ax, curves: list[tuple[LevelResult, np.ndarray]]) -> None:
    """Each level's (percentile, µs) points as a line on HdrHistogram's tail axis, in ms on a log scale."""
    # Sequential colours: the load order stays visible and neighbouring levels distinct.
    colors = colormaps["viridis"](np.linspace(0, 0.9, len(curves)))
    for (level, points), color in zip(curves, colors):
        label = _level_tag(level) + ("" if level.stable else " (unstable)")
        ax.plot(_tail(points[:, 0]), points[:, 1] / 1000, color=color, label=label)
    # HdrHistogram's axis: 1/(1-p) spreads 90, 99, 99.9... evenly on a log scale.
    top = max(points[:, 0].max() for _, points in curves)
    ticks = [p for p in TAIL_PERCENTILES if p <= top]
    ax.set_xscale("log")
    ax.set_xticks(_tail(ticks), [f"{p:g}" for p in ticks])
    ax.minorticks_off()
    ax.set_xlim(1, _tail(top))
    # Log latency too: a sweep's low levels stay readable under a saturated level's tail.
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.LogFormatter())
    ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))
    ax.set_xlabel("percentile (%)")
    ax.grid(alpha=0.3)


def _histogram_curve(histogram: LatencyHistogram | None) -> np.ndarray | None:
    """(percentile, µs) points of a histogram (ns) below p100, which sits at infinity on a tail axis; None when empty."""
    if histogram is None or not histogram.count:
        return None
    return np.array([(p, histogram.percentile(p) / 1e3) for p in CURVE_PERCENTILES if p < 100], dtype=float)


def stream_distribution(result: RunResult) -> Figure | None:
    """Per streamed level, its time to first response and its inter-response latency by percentile, from their histograms."""
    panels = []
    for title, histogram_of in (("Time to first response (TTFT)", lambda s: s.ttft_histogram),
                                ("Inter-response latency (ITL)", lambda s: s.itl_histogram)):  # fmt: skip
        curves = [(level, curve) for level in result.levels if level.streaming is not None
                  and (curve := _histogram_curve(histogram_of(level.streaming))) is not None]  # fmt: skip
        panels.append((title, curves))
    if not any(curves for _, curves in panels):
        return None
    fig = new_figure(height=SIZE[1] * 1.6)
    axes = fig.subplots(2, 1, squeeze=False)[:, 0]
    for ax, (title, curves) in zip(axes, panels):
        ax.set_title(title, loc="left", fontsize=10)
        if not curves:  # no request of any level had two responses
            ax.text(0.5, 0.5, "not measured: no request had two responses", transform=ax.transAxes, ha="center",
                    va="center", color="grey")
            ax.set_axis_off()
            continue
        _percentile_curves(ax, curves)
        ax.set_ylabel("ms, log scale")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.suptitle("Streaming: time to first response and between responses, by percentile, per level")
    return fig


def _lighter(color: str, white: float) -> tuple[float, float, float]:
    return tuple(channel + (1 - channel) * white for channel in to_rgb(color))  # type: ignore[return-value]


def stage_percentiles(result: RunResult) -> Figure | None:
    """Per model of the trace tree, a panel: per traced level, a bar per part, its p50, p90 and p99."""
    traced = [level for level in result.levels if level.tracing is not None]
    per_level = [{(stage.model, stage.part): stage for stage in level.tracing.stages} for level in traced]
    models = list(dict.fromkeys(model for found in per_level for model, _ in found))  # trace-tree order
    if not models:
        return None
    fig = new_figure(height=max(SIZE[1], 1.2 + 1.8 * len(models)))
    axes = fig.subplots(len(models), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    x = np.arange(len(traced))
    shown: set[str] = set()  # the parts drawn, for the legend
    for ax, model in zip(axes, models):
        parts = [part for part in STAGE_PARTS if any((model, part[0]) in found for found in per_level)]
        width = 0.8 / len(parts)
        for index, (part, _, color) in enumerate(parts):
            stages = [found.get((model, part)) for found in per_level]  # None: no such trace at that level
            for key, _, white in STAGE_PERCENTILES:
                ms = _floats(getattr(stage, key, None) for stage in stages) / 1000
                ax.bar(x - 0.4 + width * (index + 0.5), ms, width=width, color=_lighter(color, white))
            shown.add(part)
        ax.set_title(model, loc="left", fontsize=10)
        ax.set_yscale("log", nonpositive="clip")
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=color, label=label) for part, label, color in STAGE_PARTS if part in shown]
    handles += [Patch(color=_lighter("black", white), label=name) for _, name, white in STAGE_PERCENTILES]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9)
    ticks = [f"{_value_text(level)}\n{level.tracing.traces} traces{' (few)' if level.tracing.few else ''}" for level in traced]
    axes[-1].set_xticks(x, ticks)
    axes[-1].set_xlabel(traced[0].label or "level")
    fig.supylabel("latency (ms, log scale)", fontsize=10)
    fig.suptitle("Per-stage latency from traces, per model")
    return fig


def _tail(percentile):
    """Where a percentile (scalar or array) sits on the tail axis."""
    return 1 / (1 - np.asarray(percentile, dtype=float) / 100)


def resources(result: RunResult) -> Figure | None:
    series = result.metrics_series
    if not series:
        return None
    t = _floats(result.seconds(scrape.t_ns) for scrape in series)
    columns = series_columns(series)
    gpus = columns["gpus"]

    panels: list[tuple[str, list[tuple[str, np.ndarray]]]] = []
    if gpus:
        names = [uuid[:12] for uuid in gpus]  # "GPU-" and 8 hex digits tell GPUs apart
        for key, ylabel, scale in (
            ("utilization", "GPU utilization (%)", 100),
            ("power_w", "GPU power (W)", 1),
            ("memory_used_bytes", "GPU memory used (GiB)", 1 / GIB),
        ):
            panels.append((ylabel, [(n, _floats(g[key]) * scale) for n, g in zip(names, gpus.values())]))
    panels.append(("CPU utilization (%)", [("CPU", _floats(columns["cpu_utilization"]) * 100)]))
    panels.append(("CPU memory used (GiB)", [("CPU", _floats(columns["cpu_memory_used_bytes"]) / GIB)]))

    fig = new_figure(height=max(SIZE[1], 1.2 + 1.7 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    spans = [(level, *result.span_s(level)) for level in result.levels]
    starts = [result.seconds(level.windows[0].start_ns) for level in result.levels if level.windows]
    for ax, (ylabel, lines) in zip(axes, panels):
        for name, values in lines:
            ax.plot(t, values, linewidth=1, label=name)
        measured = np.concatenate([values for _, values in lines])
        measured = measured[np.isfinite(measured)]
        if not measured.size:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="grey")
        # From 0, with headroom: a flat line must not hide under the top spine.
        ax.set_ylim(0, 105 if "%" in ylabel else 1.1 * measured.max(initial=0) or 1)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3)
        _mark_levels(ax, spans, starts)
    if gpus:
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    _label_levels(axes[0], spans)
    axes[-1].set_xlabel("time since run start (s)")
    title = "Server resources over the run (dashed: a level starts; shaded: its reported windows)"
    fig.suptitle(title if gpus else title + "\nNote: server exposes no GPU metrics")
    return fig


Span = tuple[LevelResult, float | None, float | None]  # a level and its reported windows' start and end (s)


def _mark_levels(ax, spans: list[Span], starts: list[float | None]) -> None:
    """Shade each level's reported span and draw a line where its first window began."""
    for _, start, end in spans:
        if start is not None and end is not None:
            ax.axvspan(start, end, color="C2", alpha=0.12, linewidth=0)
    # One collection for all the lines: axvline per level costs a tick update each.
    ax.vlines([s for s in starts if s is not None], 0, 1, transform=ax.get_xaxis_transform(), colors="grey",
              linestyles="--", linewidth=0.8)  # fmt: skip


def _label_levels(ax, spans: list[Span]) -> None:
    """Name the levels along the top edge, over their reported spans, clear of the data."""
    shown = [(level, start, end) for level, start, end in spans if start is not None and end is not None]
    top = ax.secondary_xaxis("top")
    top.set_xticks([(start + end) / 2 for _, start, end in shown], [_level_tag(level) for level, _, _ in shown])
    top.tick_params(labelsize=8, length=0)


CHARTS: tuple[tuple[str, str, Callable[[RunResult], Figure | None]], ...] = (
    ("throughput_latency", "Throughput vs latency", throughput_latency),
    ("sequence_throughput", "Sequences per second", sequence_throughput),
    ("latency_breakdown", "Latency breakdown", latency_breakdown),
    ("composing_breakdown", "Composing models breakdown", composing_breakdown),
    ("roofline", "Roofline", roofline_chart),
    ("latency_distribution", "Latency distribution", latency_distribution),
    ("stream_distribution", "Streaming: time to first response and inter-response latency", stream_distribution),
    ("stage_percentiles", "Per-stage latency percentiles (traces)", stage_percentiles),
    ("resources", "Server resources", resources),
)
