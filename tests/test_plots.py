"""The report's PNG charts, from summary dicts built here (schema 2): no server."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from loadgen.report import plots
from loadgen.report.plots import render_plots

ALL = ["throughput_latency", "latency_breakdown", "composing_breakdown", "latency_distribution", "resources"]
GPU_UUIDS = ["GPU-5f3e2a1b-9c8d-4e7f-a6b5-c4d3e2f1a0b9", "GPU-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"]


def server(name, queue, c_in, c_inf, c_out, overhead, composing=()):
    """SERVER figures in µs; an ensemble's queue and compute are its composing models' sums."""
    if composing:
        queue, c_in, c_inf, c_out = (sum(c[k] for c in composing) for k in ("queue_us", "compute_input_us", "compute_infer_us", "compute_output_us"))
    compute = c_in + c_inf + c_out
    return {"name": name, "version": "1", "inference_count": 3000, "execution_count": 1500, "success_count": 3000,
            "fail_count": 0, "avg_request_latency_us": queue + compute + overhead, "queue_us": queue,
            "compute_input_us": c_in, "compute_infer_us": c_inf, "compute_output_us": c_out, "compute_us": compute,
            "overhead_us": overhead, "composing": list(composing)}


def level_server(load, ensemble):
    if not ensemble:
        return server("detector", 300 * load, 150, 6000, 200, 120)
    inner = server("postprocess-ensemble", 0, 0, 0, 0, 60, [
        server("detector", 250 * load, 150, 6000, 200, 80),
        server("nms", 40 * load, 20, 900, 30, 40),
    ])
    return server("centernet-ensemble", 0, 0, 0, 0, 150, [server("preprocess", 50 * load, 100, 1200, 80, 50), inner])


def level(index, value, ensemble, stable=True):
    load = value / 2
    start = 5.0 + 20.0 * index
    avg_us = 8100 + 1500 * load  # the breakdown's parts add up to it
    percentiles = [*range(100), 99.5, 99.9, 99.99, 100]
    curve = [[p, avg_us * (0.6 + 0.4 * p / 100) * (1 + 0.3 * np.log10(1 / (1.00001 - p / 100)))] for p in percentiles]
    windows = [{"start_s": start + 3 * w, "end_s": start + 3 * (w + 1), "duration_s": 3.0, "request_count": 360,
                "throughput_infer_per_s": 120.0 * value, "latency_us": avg_us} for w in range(5)]
    return {
        "label": "Concurrency", "value": value, "stable": stable,
        "start_s": windows[2]["start_s"], "end_s": windows[-1]["end_s"], "windows": windows,
        "client": {"request_count": 1080, "error_count": 0, "error_rate": 0.0, "duration_s": 9.0,
                   "throughput_infer_per_s": 1000 * value / (avg_us / 1000), "avg_latency_us": avg_us,
                   "std_latency_us": 900.0, "percentile_latency_us": {"p50": curve[50][1], "p90": curve[90][1],
                                                                      "p95": curve[95][1], "p99": curve[99][1]},
                   "avg_send_us": 90.0, "avg_recv_us": 60.0, "avg_response_wait_us": avg_us - 150},
        "latency_curve_us": curve,
        "breakdown_us": {"client_send": 90.0, "network": 400.0, "server_queue": 1500 * load, "server_compute_input": 250.0,
                         "server_compute_infer": 7000.0, "server_compute_output": 300.0, "client_recv": 60.0},
        "server": level_server(load, ensemble),
        "count_check": {"client_success": 1080, "server_success": 1080, "tolerance": 0, "mismatch": False},
        "metrics": None,
    }


def metrics_series(levels, gpus, scrapes=None):
    """One scrape a second over the run, with a gap (nulls) in the middle."""
    end = levels[-1]["end_s"] + 3 if levels else 10.0
    t = np.arange(scrapes) * (end / scrapes) if scrapes else np.arange(0.0, end, 1.0)
    busy = np.zeros(len(t), dtype=bool)
    index = [None] * len(t)
    for i, lv in enumerate(levels):
        inside = (t >= lv["windows"][0]["start_s"]) & (t < lv["end_s"])
        busy |= inside
        for j in np.flatnonzero(inside):
            index[j] = i

    def column(values):
        values = [float(v) for v in values]
        values[len(values) // 2] = None
        return values

    return {
        "interval_ms": 1000, "t_s": t.tolist(), "level": index,
        "cpu_utilization": column(np.where(busy, 0.85, 0.05)),
        "cpu_memory_used_bytes": column(np.full(len(t), 6.2e9) + busy * 4e8),
        "gpus": {uuid: {"utilization": column(np.where(busy, 0.6 + 0.1 * g, 0.0)),
                        "power_w": column(np.where(busy, 250.0, 60.0) + 10 * g),
                        "memory_used_bytes": column(np.full(len(t), 9.5e9 + 1e9 * g))}
                 for g, uuid in enumerate(GPU_UUIDS[:gpus])},
    }


def summary(levels=3, ensemble=True, gpus=2, series=True, scrapes=None):
    values = [2**i for i in range(levels)]
    level_list = [level(i, v, ensemble, stable=i != levels - 1) for i, v in enumerate(values)]
    composing = [] if not ensemble else [
        {"name": "preprocess", "version": "1", "composing": []},
        {"name": "postprocess-ensemble", "version": "1", "composing": [
            {"name": "detector", "version": "1", "composing": []}, {"name": "nms", "version": "1", "composing": []}]}]
    return {
        "schema_version": 3, "loadgen_version": "0.1.0", "stop_reason": None, "warnings": [],
        "started_at": "2026-11-22T10:00:00+00:00", "finished_at": "2026-11-22T10:01:00+00:00",
        "model": {"name": "centernet-ensemble" if ensemble else "detector", "version": "1", "composing": composing},
        "levels": level_list,
        "metrics_series": metrics_series(level_list, gpus, scrapes) if series else None,
    }


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
    data = summary()
    data["metrics_series"] = {"interval_ms": 1000, "t_s": [], "level": [], "cpu_utilization": [],
                              "cpu_memory_used_bytes": [], "gpus": {}}
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


def test_nulls_where_the_schema_allows_them(tmp_path):
    data = summary()
    first, second, _ = data["levels"]
    first["latency_curve_us"] = []
    first["client"]["percentile_latency_us"]["p99"] = None
    second["breakdown_us"]["network"] = None
    second["server"]["composing"][0]["queue_us"] = None
    second["start_s"] = second["end_s"] = None
    data["metrics_series"]["cpu_utilization"] = [None] * len(data["metrics_series"]["t_s"])
    check_pngs(render_plots(data, tmp_path), ALL, tmp_path)


def test_a_long_run_draws_every_chart(tmp_path):
    check_pngs(render_plots(summary(levels=10, scrapes=3600), tmp_path), ALL, tmp_path)


@pytest.mark.parametrize("label, tag", [("Concurrency", "c=4"), ("Request Rate", "rr=4")])
def test_level_tags(label, tag):
    assert plots._level_tag({"label": label, "value": 4}) == tag
