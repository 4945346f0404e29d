"""The report's PNG charts, from result objects built here: no server."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from results import captured_tracing, client, level, run, scrapes, server, window
from results import tree as model_tree

from loadgen.metrics import CPU_MEMORY_USED, CPU_UTILIZATION, GPU_MEMORY_USED, GPU_POWER, GPU_UTILIZATION
from loadgen.report import plots
from loadgen.report.plots import render_plots
from loadgen.result import RunResult
from loadgen.server_stats import ModelTree
from loadgen.tail import LevelTracing

ALL = ["throughput_latency", "latency_breakdown", "composing_breakdown", "latency_distribution", "resources"]
GPU_UUIDS = ["GPU-5f3e2a1b-9c8d-4e7f-a6b5-c4d3e2f1a0b9", "GPU-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"]


def level_server(load, ensemble):
    if not ensemble:
        return server("detector", 300 * load, 150, 6000, 200, 120, success_count=3000)
    inner = server("postprocess-ensemble", overhead_us=60, success_count=3000, composing=[
        server("detector", 250 * load, 150, 6000, 200, 80, success_count=3000),
        server("nms", 40 * load, 20, 900, 30, 40, success_count=3000),
    ])  # fmt: skip
    return server("centernet-ensemble", overhead_us=150, success_count=3000,
                  composing=[server("preprocess", 50 * load, 100, 1200, 80, 50, success_count=3000), inner])  # fmt: skip


def measured(index, value, ensemble, stable=True):
    load = value / 2
    start = 5.0 + 20.0 * index
    avg_us = 8100 + 1500 * load
    percentiles = [*range(100), 99.5, 99.9, 99.99, 100]
    curve = [(p, avg_us * (0.6 + 0.4 * p / 100) * (1 + 0.3 * np.log10(1 / (1.00001 - p / 100)))) for p in percentiles]
    stats = client(1080, 0, 9.0, 1000 * value / (avg_us / 1000), avg_us, std_latency_us=900.0, avg_send_us=90.0,
                   avg_recv_us=60.0, percentiles={p: curve[p][1] for p in (50, 90, 95, 99)}, curve=curve)  # fmt: skip
    # Five windows of 3 s; the last three are the reported ones.
    return level(value, client_stats=stats, server_figures=level_server(load, ensemble), stable=stable,
                 level_windows=[window(start + 3 * w, start + 3 * (w + 1), 360, 120.0 * value, avg_us) for w in range(5)])


def metrics_series(levels, gpus, scrapes_count=None):
    """One scrape a second over the run, with a gap (nulls) in the middle."""
    end = levels[-1].windows[-1].end_ns / 1e9 + 3 if levels else 10.0
    t = np.arange(scrapes_count) * (end / scrapes_count) if scrapes_count else np.arange(0.0, end, 1.0)
    busy = np.zeros(len(t), dtype=bool)
    for lv in levels:
        busy |= (t >= lv.windows[0].start_ns / 1e9) & (t < lv.windows[-1].end_ns / 1e9)

    def column(values):
        values = [float(v) for v in values]
        values[len(values) // 2] = None
        return values

    columns = {
        (CPU_UTILIZATION, ()): column(np.where(busy, 0.85, 0.05)),
        (CPU_MEMORY_USED, ()): column(np.full(len(t), 6.2e9) + busy * 4e8),
    }
    for g, uuid in enumerate(GPU_UUIDS[:gpus]):
        labels = (("gpu_uuid", uuid),)
        columns[(GPU_UTILIZATION, labels)] = column(np.where(busy, 0.6 + 0.1 * g, 0.0))
        columns[(GPU_POWER, labels)] = column(np.where(busy, 250.0, 60.0) + 10 * g)
        columns[(GPU_MEMORY_USED, labels)] = column(np.full(len(t), 9.5e9 + 1e9 * g))
    return scrapes(t.tolist(), columns)


def summary(levels=3, ensemble=True, gpus=2, series=True, scrapes_count=None) -> RunResult:
    values = [2**i for i in range(levels)]
    level_list = [measured(i, v, ensemble, stable=i != levels - 1) for i, v in enumerate(values)]
    model = model_tree(level_server(1, ensemble)) if ensemble else ModelTree("detector", "1")
    return run(*level_list, model=model, loadgen_version="0.1.0", started_at="2026-11-22T10:00:00+00:00",
               finished_at="2026-11-22T10:01:00+00:00",
               metrics_series=metrics_series(level_list, gpus, scrapes_count) if series else None)  # fmt: skip


def check_pngs(result, names, out_dir):
    assert [p.name for p in result] == names
    assert sorted(f.stem for f in out_dir.iterdir()) == sorted(names)
    for plot in result:
        assert plot.path == out_dir / f"{plot.name}.png" and plot.title
        with Image.open(plot.path) as image:
            assert image.format == "PNG"
            assert image.width == 900 and image.height >= 500
            image.verify()


def test_ensemble_with_gpus_draws_every_chart(tmp_path):
    out = tmp_path / "report"
    result = render_plots(summary(), out)
    check_pngs(result, ALL, out)
    with Image.open(out / "throughput_latency.png") as image:
        assert image.size == (900, 500)


def test_plain_model_has_no_composing_chart(tmp_path):
    result = render_plots(summary(ensemble=False), tmp_path)
    check_pngs(result, [n for n in ALL if n != "composing_breakdown"], tmp_path)


def test_composing_chart_walks_into_nested_ensembles():
    figure = plots.composing_breakdown(summary())
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert titles == ["preprocess v1", "detector v1", "nms v1"]


def test_without_series_there_is_no_resources_chart(tmp_path):
    result = render_plots(summary(series=False), tmp_path)
    check_pngs(result, [n for n in ALL if n != "resources"], tmp_path)


def test_series_without_scrapes_has_no_resources_chart(tmp_path):
    data = replace(summary(), metrics_series=())
    assert "resources" not in [p.name for p in render_plots(data, tmp_path)]


def test_resources_panels_per_gpu():
    figure = plots.resources(summary(gpus=2))
    assert [ax.get_ylabel() for ax in figure.axes] == [
        "GPU utilization (%)", "GPU power (W)", "GPU memory used (GiB)", "CPU utilization (%)", "CPU memory used (GiB)"]
    assert len(figure.axes[0].get_lines()) == 2  # a line per GPU
    assert "no GPU" not in figure.get_suptitle()


def test_resources_without_gpus_says_so(tmp_path):
    figure = plots.resources(summary(gpus=0))
    assert [ax.get_ylabel() for ax in figure.axes] == ["CPU utilization (%)", "CPU memory used (GiB)"]
    assert "server exposes no GPU metrics" in figure.get_suptitle()
    check_pngs(render_plots(summary(gpus=0), tmp_path), ALL, tmp_path)


def test_rerendering_removes_charts_no_longer_drawn(tmp_path):
    render_plots(summary(), tmp_path)
    result = render_plots(summary(ensemble=False, series=False), tmp_path)
    check_pngs(result, ["throughput_latency", "latency_breakdown", "latency_distribution"], tmp_path)


def test_zero_levels_draws_nothing(tmp_path):
    assert render_plots(summary(levels=0, series=False), tmp_path / "a") == []
    assert render_plots(summary(levels=0), tmp_path / "b") == []


def test_nulls_where_the_model_allows_them(tmp_path):
    """What a level without a success, a scrape without a series or an upgraded summary leaves unrecorded."""
    data = summary()
    first, second, third = data.levels
    first = replace(first, client=replace(first.client, latency_curve_us=(),
                                          percentile_latency_us={50: first.client.percentile_latency_us[50]}))
    second = replace(second, client=replace(second.client, latency_curve_us=None),  # summary.json version 1
                     windows=tuple(replace(w, start_ns=None, end_ns=None) for w in second.windows))
    series = [replace_values(scrape, CPU_UTILIZATION) for scrape in data.metrics_series]
    check_pngs(render_plots(replace(data, levels=(first, second, third), metrics_series=tuple(series)), tmp_path), ALL, tmp_path)


def replace_values(scrape, without: str):
    """The scrape without the series of metric `without`."""
    return type(scrape)(scrape.t_ns, {key: value for key, value in scrape.values.items() if key[0] != without})


def test_a_long_run_draws_every_chart(tmp_path):
    check_pngs(render_plots(summary(levels=10, scrapes_count=3600), tmp_path), ALL, tmp_path)


@pytest.mark.parametrize("label, tag", [("Concurrency", "c=4"), ("Request Rate", "rr=4")])
def test_level_tags(label, tag):
    assert plots._level_tag(level(4, label)) == tag


def traced(data: RunResult, *tracings) -> RunResult:
    return replace(data, levels=tuple(replace(each, tracing=tracing) for each, tracing in zip(data.levels, tracings, strict=True)))


def test_traced_levels_get_a_per_stage_percentile_chart(tmp_path):
    whole, few = captured_tracing(), captured_tracing(count=10)  # the stalling ensemble's real traces
    data = traced(summary(), whole, few, whole)
    check_pngs(render_plots(data, tmp_path), [*ALL[:4], "stage_percentiles", ALL[4]], tmp_path)
    figure = plots.stage_percentiles(data)
    panels = figure.axes
    assert [ax.get_title(loc="left") for ax in panels] == ["stalling-ensemble", "first", "middle", "last"]
    assert [label.get_text() for label in panels[-1].get_xticklabels()] == ["1\n20 traces", "2\n10 traces (few)", "4\n20 traces"]
    # A bar per part and level, each drawn as its p99, p90 and p50 over each other: the ensemble has
    # its total and scheduling, a step its four stages and total.
    assert len(panels[0].patches) == 2 * 3 * 3 and len(panels[2].patches) == 5 * 3 * 3
    infer = [next(s for s in tracing.stages if (s.model, s.part) == ("middle", "compute_infer")) for tracing in (whole, few, whole)]
    first_bar = 2 * 3 * 3  # middle's parts: queue, compute_input, then compute_infer's p99, p90 and p50 bars
    for offset, key in enumerate(("p99_us", "p90_us", "p50_us")):
        bars = panels[2].patches[first_bar + 3 * offset: first_bar + 3 * offset + 3]
        assert [bar.get_height() for bar in bars] == pytest.approx([getattr(stage, key) / 1000 for stage in infer])
    assert panels[0].get_yscale() == "log"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["queue", "compute input", "compute infer", "compute output", "scheduling (ensemble)", "total",
                      "p99 (lightest)", "p90", "p50 (darkest)"]


def test_levels_without_traces_have_no_stage_chart(tmp_path):
    empty = LevelTracing(read=0, traces=0, stages=(), tail=None, slowest=None)  # tracing on, nothing traced
    assert plots.stage_percentiles(traced(summary(), empty, empty, empty)) is None
    assert plots.stage_percentiles(summary()) is None  # tracing off
    # Only the traced levels are on its axis.
    figure = plots.stage_percentiles(traced(summary(), None, captured_tracing(), None))
    assert [label.get_text() for label in figure.axes[-1].get_xticklabels()] == ["2\n20 traces"]
