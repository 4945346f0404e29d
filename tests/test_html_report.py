"""report.html, opened in headless Chromium: offline, escaped, complete, for GPU, CPU-only and metric-less runs."""

from __future__ import annotations

import html
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from browser import open_page
from matplotlib.figure import Figure
from results import (
    captured_tracing,
    client,
    errors,
    gpu,
    level,
    metrics,
    model_metrics,
    recorded,
    run,
    scrapes,
    server,
    verdict,
    windows,
)

from loadgen.measurement import CountCheck
from loadgen.metrics import CPU_MEMORY_USED, CPU_UTILIZATION, GPU_MEMORY_USED, GPU_POWER, GPU_UTILIZATION
from loadgen.report.base import Plot
from loadgen.report.html_report import render_html
from loadgen.result import RunResult
from loadgen.report.waterfall import AXIS, BARS_WIDTH, BARS_X, HEAD, ROW, WIDTH, tick_step_us
from loadgen.server_stats import ServerFigures
from loadgen.tail import LevelTracing

HOSTILE = "<script>alert(1)</script>"
GPUS = ["GPU-1111aaaa-0000-0000-0000-000000000000", "GPU-2222bbbb-0000-0000-0000-000000000000"]
HEADINGS = ["Levels", "Plots", "Latency breakdown (µs)", "Server figures per model (µs)", "Server metrics",
            "Configuration", "Environment", "Server", "Model configurations"]
OPTIONS = {"model-name": "pipeline", "url": "localhost:8000", "concurrency-range": "1:2:1", "header": ["Authorization: Bearer x"],
           "measurement-interval": 1000, "max-trials": 5, "latency-threshold": 40.0, "collect-metrics": True}


def pipeline(scale: float = 1) -> ServerFigures:
    """A nested ensemble's figures; an ensemble's queue and compute are its composing models' sums."""
    return server("pipeline", composing=[server("preprocess", 8 * scale, 60 * scale, 500 * scale, 18 * scale),
                                         server("inner-ensemble", composing=[
                                             server("detector", 60 * scale, 450 * scale, 3750 * scale, 135 * scale),
                                             server("postprocess", 4 * scale, 30 * scale, 250 * scale, 9 * scale)])])


def measured(value: int, throughput: float, stable: bool = True, messages: dict[str, int] | None = None):
    latency = value * 1e6 / throughput
    successes = int(3 * throughput)
    error_count = sum((messages or {}).values())
    stats = client(successes, error_count, 3.0, throughput, latency, std_latency_us=latency / 10,
                   percentiles={50: latency * 0.98, 90: latency * 1.1, 95: latency * 1.2, 99: latency * 1.5},
                   error_kinds=[errors("HTTP 500", messages, 500)] if messages else [],
                   error_latency_us={"avg": 900.0, "p50": 800.0, "p90": 1500.0, "p99": 2000.0, "max": 2100.0} if messages else None,
                   curve=[(p, latency * (0.8 + p / 200)) for p in (0, 50, 90, 99, 99.9, 100)])  # fmt: skip
    tree = replace(pipeline(), success_count=successes)
    figures = metrics(
        [gpu(uuid, 0.35 * value + 0.1 * i, 180.0 + 40 * value, (6 + i) * 2**30, 80 * 2**30, 600.0 * value)
         for i, uuid in enumerate(GPUS)],
        [model_metrics(name, successes, tolerance=2 * value, max_pending=value)
         for name in ("pipeline", "preprocess", "detector", "postprocess")],
        energy_per_inference_j=0.41 * value, cpu_utilization=0.45 * value,
    )  # fmt: skip
    return level(value, client_stats=stats, server_figures=tree, stable=stable,
                 level_windows=windows(10.0 * value, 3, 1.0, int(throughput), throughput, latency),
                 count_check=CountCheck(successes, successes + 1, 2 * value, error_count), metrics=figures)  # fmt: skip


def series(gpus: list[str] = GPUS):
    columns = {(CPU_UTILIZATION, ()): [0.4, 0.5], (CPU_MEMORY_USED, ()): [3 * 2**30, 3 * 2**30]}
    for uuid in gpus:
        labels = (("gpu_uuid", uuid),)
        columns |= {(GPU_UTILIZATION, labels): [0.3, 0.4], (GPU_POWER, labels): [200.0, 220.0],
                    (GPU_MEMORY_USED, labels): [6 * 2**30, 6 * 2**30]}  # fmt: skip
    return scrapes([10.0, 11.0], columns)


def summary(**changes) -> RunResult:
    """A realistic two-level run of a nested ensemble on two GPUs, with a hostile error message."""
    unstable = measured(2, 125.5, stable=False, messages={f"model failed: {HOSTILE}": 3})
    unstable = replace(unstable, count_check=replace(unstable.count_check, server_success=420))  # someone else's traffic
    detector = replace(unstable.metrics.models[2], failure={"BACKEND": 2, "OTHER": 0}, statistics_success=300)
    unstable = replace(unstable, metrics=replace(unstable.metrics, models=(*unstable.metrics.models[:2], detector,
                                                                           *unstable.metrics.models[3:])))  # fmt: skip
    return replace(run(
        measured(1, 93.456), unstable, options=OPTIONS, loadgen_version="0.1.0",
        started_at="2026-11-22T10:00:00+00:00", finished_at="2026-11-22T10:01:05+00:00",
        stop_reason="latency 47.3 ms exceeded 40 ms", warnings=("metrics scrape 3 of 20 timed out",),
        environment={"hostname": "bench-01", "platform": "Linux-6.1-x86_64", "python": "3.11.7", "cpu_count": 2,
                     "memory_total_bytes": 16 * 2**30},
        server_metadata={"name": "triton", "version": "2.51.0", "extensions": ["classification", "statistics"]},
        model_configs={"pipeline": {"name": "pipeline", "platform": "ensemble", "max_batch_size": 8},
                       "detector": {"name": "detector", "backend": "onnxruntime",
                                    "dynamic_batching": {"max_queue_delay_microseconds": 100}}},
        metrics_series=series(),
    ), **changes)  # fmt: skip


def with_levels(result: RunResult, *levels) -> RunResult:
    return replace(result, levels=tuple(levels))


def plots(folder: Path) -> list[Plot]:
    made = []
    for name, title in [("throughput", "Throughput vs concurrency"), ("latency", "Latency <percentiles> & breakdown")]:
        figure = Figure(figsize=(6, 3))  # no pyplot: no GUI backend, no global state
        axes = figure.add_subplot()
        axes.plot([1, 2], [93.5, 125.5], marker="o")
        axes.set_title(title)
        figure.savefig(folder / f"{name}.png", dpi=80)
        made.append(Plot(name, title, folder / f"{name}.png"))
    return made


def render_and_open(data: RunResult, tmp_path: Path, with_plots: bool = False):
    path = tmp_path / "report.html"
    render_html(data, plots(tmp_path) if with_plots else [], path)
    page = open_page(path)
    assert not page.errors, page.errors
    assert not page.dialogs, page.dialogs
    # The page fetched nothing but itself and its inline images.
    assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
    return path.read_text(), page


def test_report_is_self_contained_complete_and_escaped(tmp_path):
    source, page = render_and_open(summary(), tmp_path, with_plots=True)
    dom, text = page.dom, page.dom["text"]

    assert "pipeline" in dom["title"] and "2026-11-22" in dom["title"]
    assert dom["headings"] == HEADINGS
    assert dom["images"] == 2 and dom["loaded_images"] == 2
    assert "Throughput vs concurrency" in text and "Latency <percentiles> & breakdown" in text
    # levels, errors, breakdown, one per-model table per level, metrics (levels, GPUs, models), config, env, server
    assert dom["tables"] == 11
    assert not list(tmp_path.glob("*.tmp")), "the atomic write left its temporary file"

    # The hostile message is shown as text, never run: no script element at all, no dialog.
    assert f"model failed: {HOSTILE}" in text
    assert dom["scripts"] == 0 and "<script>" not in source
    assert "default-src 'none'" in source

    # Verdict: stop reason, warnings and the unstable level.
    assert ("Stopped: latency 47.3 ms exceeded 40 ms. 2 levels measured, 1 unstable, "
            "1 with a count cross-check mismatch") in text
    assert "mismatch (376 vs 420)" in text  # levels table, client vs server successes
    assert "BACKEND 2" in text  # the detector's failure delta, beside its statistics-API mismatch
    assert "metrics scrape 3 of 20 timed out" in text
    # Figures formatted: throughput 1 decimal, ms 2 decimals, bytes in GiB.
    assert "93.5" in text and "125.5" in text and "10.70" in text  # 1e6 / 93.456 µs = 10.70 ms
    assert "80.00 GiB" in text and "16.00 GiB" in text
    # Nested ensembles are indented under their parent, in pipeline order.
    names = ["pipeline v1", "\u2003↳ preprocess v1", "\u2003↳ inner-ensemble v1", "\u2003\u2003↳ detector v1",
             "\u2003\u2003↳ postprocess v1"]
    positions = [text.index(name) for name in names]
    assert positions == sorted(positions)
    assert all(uuid in text for uuid in GPUS)
    assert "The server exposes no GPU metrics" not in text
    assert '"max_queue_delay_microseconds": 100' in html.unescape(source)  # model configs, folded in <details>


def test_cpu_only_metrics_and_no_metrics(tmp_path):
    cpu_only = summary(metrics_series=series(gpus=[]))
    cpu_only = with_levels(cpu_only, *(replace(each, metrics=replace(each.metrics, gpus=(), energy_per_inference_j=None))
                                       for each in cpu_only.levels))  # fmt: skip
    (tmp_path / "cpu").mkdir()
    _, page = render_and_open(cpu_only, tmp_path / "cpu")
    text = page.dom["text"]
    assert "The server exposes no GPU metrics." in text
    assert "GPU-" not in text and "Power (W)" not in text
    assert "45.0 %" in text  # CPU utilization still shown

    no_metrics = with_levels(replace(cpu_only, metrics_series=None), *(replace(each, metrics=None) for each in cpu_only.levels))
    (tmp_path / "none").mkdir()
    _, page = render_and_open(no_metrics, tmp_path / "none")
    text = page.dom["text"]
    assert "Metrics were not collected: the run did not use --collect-metrics." in text
    assert "exposes no GPU metrics" not in text and "Scrapes" not in text


def test_interrupted_run_with_no_level(tmp_path):
    data = summary(stop_reason="interrupted", warnings=(), levels=(), metrics_series=None, finished_at=None)
    _, page = render_and_open(data, tmp_path)
    text = page.dom["text"]
    assert "Stopped: interrupted. 0 levels measured, 0 unstable." in text
    assert "No level was measured." in text


def test_report_of_a_real_run(metrics_run):
    """A real sweep with --collect-metrics: its report.html opens clean and shows every level."""
    report, _ = metrics_run
    data = json.loads((report / "summary.json").read_text())
    page = open_page(report / "report.html")
    assert not page.errors, page.errors
    assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
    assert page.dom["images"] == 6 and page.dom["loaded_images"] == page.dom["images"]
    text = page.dom["text"]
    assert [each["value"] for each in data["levels"]] == [1, 2]
    for each in data["levels"]:
        assert f"{each['client']['throughput_infer_per_s']:,.1f}" in text
    assert "centernet-postprocess v" in text
    assert "The server exposes no GPU metrics" in text
    assert "Metrics were not collected" not in text


def test_sla_verdicts(tmp_path):
    """One level meets its SLAs, the other breaches one (with a hostile expression and reason): shown, escaped, red."""
    # The hostile expression is one no run takes: as read back from an edited summary.json.
    config = recorded(OPTIONS, slas=["p99_ms<50", f"{HOSTILE}.queue_ms<1"])
    passing, failing = summary().levels
    passing = replace(passing, sla=(verdict("p99_ms<50", 16.05), verdict(f"{HOSTILE}.queue_ms<1", 0.5)))
    failing = replace(failing, sla=(verdict("p99_ms<50", 23.9, level_stable=False),
                                    verdict(f"{HOSTILE}.queue_ms<1", None, f"not measured: no model '{HOSTILE}' in this run",
                                            level_stable=False)))  # fmt: skip
    data = summary(config=config, levels=(passing, failing))
    source, page = render_and_open(data, tmp_path)
    dom, text = page.dom, page.dom["text"]

    assert "SLA breached at 1 of 2 levels." in text
    assert '<div class="verdict fail">' in source  # red: a breach outweighs the warnings
    assert dom["headings"] == HEADINGS and dom["tables"] == 12  # the verdicts table joins the levels section
    assert dom["scripts"] == 0 and "<script>" not in source
    # The levels table's SLA column, and the breaching level's row flagged.
    levels_table = source[source.index("<h2>Levels</h2>"):source.index("<h3>SLA verdicts</h3>")]
    assert "<th>SLA</th>" in levels_table
    assert levels_table.count("<td>✓</td>") == 1 and levels_table.count("<td>✗</td>") == 1
    # One verdict row each, in level order; the failing one flagged, and so is the one passed on the unstable level.
    verdicts = source[source.index("<h3>SLA verdicts</h3>"):source.index("<h3>Errors</h3>")]
    assert verdicts.count("<tr") == 5 and verdicts.count('<tr class="warn">') == 2
    assert "Concurrency 1\tp99_ms<50\t16.05\t✓ PASS" in text
    assert "Concurrency 2\tp99_ms<50\t23.9\t⚠ PASS, on a level that never stabilized" in text
    assert (f"Concurrency 2\t{HOSTILE}.queue_ms<1\t—\t✗ FAIL, on a level that never stabilized\t"
            f"not measured: no model '{HOSTILE}' in this run") in text
    assert "1 level never stabilized: its verdicts rest on figures that did not settle." in text

    steady = replace(failing, stable=True, count_check=replace(failing.count_check, server_success=failing.count_check.client_success),
                     sla=(failing.sla[0], verdict(f"{HOSTILE}.queue_ms<1", 0.4)))  # fmt: skip
    met = replace(data, levels=(passing, steady), stop_reason=None, warnings=())
    (tmp_path / "met").mkdir()
    source, page = render_and_open(met, tmp_path / "met")
    assert "SLA: all 2 levels met every SLA." in page.dom["text"]
    assert "never stabilized" not in page.dom["text"]
    assert '<div class="verdict">' in source

    # --require-stable: the unstable level fails the run even without a breach
    required = replace(data, config=recorded(OPTIONS, slas=[sla.expression for sla in config.gates.slas], require_stable=True),
                       levels=(passing, replace(failing, sla=(failing.sla[0], verdict(f"{HOSTILE}.queue_ms<1", 0.4, level_stable=False)))))
    assert not required.sla_passed
    (tmp_path / "required").mkdir()
    source, page = render_and_open(required, tmp_path / "required")
    assert "1 level never stabilized: its verdicts rest on figures that did not settle (--require-stable: the run fails)." in page.dom["text"]
    assert '<div class="verdict fail">' in source


def test_runs_without_sla_show_no_sla_parts(tmp_path):
    old = summary(upgraded_from=2)  # read from a summary.json written before SLAs
    without = summary()  # a run without --sla
    for name, data in (("old", old), ("without", without)):
        (tmp_path / name).mkdir()
        source, page = render_and_open(data, tmp_path / name)
        assert "SLA" not in page.dom["text"] and "verdict fail" not in source
        assert page.dom["tables"] == 11


# --- traces: per-stage distributions, tail attribution, the slowest request's waterfall ---------

def test_traces_show_the_stages_the_tail_and_a_waterfall_of_the_slowest_request(tmp_path):
    whole, few = captured_tracing(), captured_tracing(count=10, names={"middle": HOSTILE})
    first, second = summary().levels
    data = with_levels(summary(), replace(first, tracing=whole), replace(second, tracing=few))
    source, page = render_and_open(data, tmp_path)
    dom, text = page.dom, page.dom["text"]
    assert dom["headings"] == [*HEADINGS[:4], "Traces: where the time goes", *HEADINGS[4:]]
    assert dom["scripts"] == 0 and "<script>" not in source and not page.dialogs
    # Per traced level: its stage table and its tail's shares.
    assert dom["tables"] == 11 + 2 * 2
    assert "Concurrency 1: 20 traced requests (21 traces read)" in text
    assert "Concurrency 2: 10 traced requests (21 traces read)" in text
    assert "⚠ Fewer than 20 traced requests" in text and text.count("Fewer than 20 traced requests") == 1
    for stage in whole.stages:
        figures = "\t".join(f"{getattr(stage, key) / 1e3:,.3f}" for key in ("p50_us", "p90_us", "p99_us", "max_us"))
        assert f"{stage.model}\t{stage.part}\t{figures}\t20\n" in text
    infer = next(stage for stage in whole.stages if (stage.model, stage.part) == ("middle", "compute_infer"))
    assert f"middle\tcompute_infer\t{infer.p50_us / 1e3:,.3f}" in text and infer.p99_us > 45_000
    top = whole.tail.shares[0]
    assert f"{top.model}\t{top.part}\t{top.share * 100:.1f} %\t{top.extra_us / 1e3:,.3f}" in text
    assert f"p99 {whole.tail.bands.tail_from_us / 1e3:.1f} ms: " in text and f"of the tail is {top.part} in middle." in text
    # The hostile model name is text in the tables and in the waterfall, never markup.
    assert f"{HOSTILE}\tcompute_infer\t" in text and f"of the tail is {few.tail.shares[0].part} in {HOSTILE}" in text

    # One waterfall per level, drawn: a row and a bar per span, placed by its start and end on the axis.
    assert len(dom["svgs"]) == 2
    for svg, tracing in zip(dom["svgs"], (whole, few)):
        slowest = tracing.slowest
        # Drawn, and scaled down whole to the page's width.
        height = HEAD + ROW * len(slowest.spans) + AXIS
        assert svg["width"] > 500 and svg["height"] == pytest.approx(svg["width"] * height / WIDTH, abs=1)
        assert svg["texts"][0] == (f"client latency {slowest.latency_us / 1e3:,.3f} ms, in the server "
                                   f"{slowest.server_us / 1e3:,.3f} ms, outside it "
                                   f"{(slowest.latency_us - slowest.server_us) / 1e3:,.3f} ms")
        assert f"Request {slowest.request_id}." in text
        labels = [span.model if span.part == "total" else span.part for span in slowest.spans]
        assert svg["rows"] == ["frontend (receive → send end)", *labels[1:]]
        top_us = max(span.end_us for span in slowest.spans)
        step_us = tick_step_us(top_us)
        axis_us = math.ceil(top_us / step_us) * step_us
        assert f"{axis_us / 1e3:.0f}" in svg["texts"] and "ms since the server received the request" in svg["texts"]
        assert len(svg["bars"]) == len(slowest.spans)
        for bar, span in zip(svg["bars"], slowest.spans):
            assert bar["x"] == pytest.approx(BARS_X + span.start_us / axis_us * BARS_WIDTH, abs=0.06)
            assert bar["width"] == pytest.approx(max(1, (span.end_us - span.start_us) / axis_us * BARS_WIDTH), abs=0.06)
            assert bar["title"].endswith(f"({(span.end_us - span.start_us) / 1e3:,.3f} ms)")
    assert whole.slowest.request_id == "req-18" and few.slowest.request_id == "req-8"
    assert HOSTILE in dom["svgs"][1]["rows"] and all(HOSTILE not in row for row in dom["svgs"][0]["rows"])


def test_a_traced_level_without_a_timeline_or_a_success_says_so(tmp_path):
    tracing = captured_tracing()
    first, second = summary().levels
    upgraded = replace(tracing, slowest=None)  # read from a version 9 summary
    empty = LevelTracing(read=3, traces=0, stages=(), tail=None, slowest=None)  # no request of the level succeeded
    data = with_levels(summary(), replace(first, tracing=upgraded), replace(second, tracing=empty))
    source, page = render_and_open(data, tmp_path)
    text = page.dom["text"]
    assert "Not recorded: summary.json before version 10 kept no request's timeline." in text
    assert "No request succeeded: no percentile to split the traced requests at." in text
    assert "No traced request." in text and page.dom["svgs"] == []


def test_untraced_runs_have_no_traces_section(tmp_path):
    source, _ = render_and_open(summary(), tmp_path)
    assert "Traces" not in source and "<svg" not in source
