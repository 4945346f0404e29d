"""report.html, opened in headless Chromium: offline, escaped, complete, for GPU, CPU-only and metric-less runs."""

from __future__ import annotations

import copy
import html
import json
from pathlib import Path

from browser import open_page
from matplotlib.figure import Figure

from loadgen.report.base import Plot
from loadgen.report.html_report import render_html

HOSTILE = "<script>alert(1)</script>"
GPUS = ["GPU-1111aaaa-0000-0000-0000-000000000000", "GPU-2222bbbb-0000-0000-0000-000000000000"]
HEADINGS = ["Levels", "Plots", "Latency breakdown (µs)", "Server figures per model (µs)", "Server metrics",
            "Configuration", "Environment", "Server", "Model configurations"]


def server(name: str, scale: float, composing: list[dict] = ()) -> dict:
    """A SERVER entry; an ensemble's queue and compute are its composing models' sums, as loadgen reports them."""
    queue, inputs, infer, outputs = 40 * scale, 300 * scale, 2500 * scale, 90 * scale
    if composing:
        queue, inputs, infer, outputs = (sum(c[key] for c in composing) for key in
                                         ("queue_us", "compute_input_us", "compute_infer_us", "compute_output_us"))
    return {"name": name, "version": "1", "inference_count": 600, "execution_count": 420, "success_count": 600,
            "fail_count": 0, "avg_request_latency_us": queue + inputs + infer + outputs + 120, "queue_us": queue,
            "compute_input_us": inputs, "compute_infer_us": infer, "compute_output_us": outputs,
            "compute_us": inputs + infer + outputs, "overhead_us": 120.0, "composing": list(composing)}


def level(value: int, throughput: float, stable: bool = True, errors: dict | None = None) -> dict:
    latency = value * 1e6 / throughput
    error_count = sum((errors or {}).values())
    error_rate = error_count / (3 * throughput + error_count)
    tree = server("pipeline", 1, [server("preprocess", 0.2), server("inner-ensemble", 1, [
        server("detector", 1.5), server("postprocess", 0.1)])])
    return {
        "label": "Concurrency", "value": value, "stable": stable, "start_s": 10.0 * value, "end_s": 10.0 * value + 3,
        "windows": [{"start_s": 10.0 * value + i, "end_s": 10.0 * value + i + 1, "duration_s": 1.0,
                     "request_count": int(throughput), "throughput_infer_per_s": throughput, "latency_us": latency}
                    for i in range(3)],
        "client": {"request_count": int(3 * throughput), "error_count": error_count,
                   "error_rate": error_rate, "duration_s": 3.0,
                   "throughput_infer_per_s": throughput, "avg_latency_us": latency, "std_latency_us": latency / 10,
                   "percentile_latency_us": {"p50": latency * 0.98, "p90": latency * 1.1, "p95": latency * 1.2,
                                             "p99": latency * 1.5},
                   "avg_send_us": 60.0, "avg_recv_us": 45.0, "avg_response_wait_us": latency - 105},
        "error_rate": error_rate,
        "errors": {"count": error_count, "rate": error_rate, "per_s": error_count / 3.0,
                   "latency_us": {"avg": 900.0, "p50": 800.0, "p90": 1500.0, "p99": 2000.0, "max": 2100.0} if errors else None,
                   "kinds": [{"kind": "HTTP 500", "count": error_count, "rate": error_rate, "per_s": error_count / 3.0,
                              "messages": errors}] if errors else []},
        "latency_curve_us": [[p, latency * (0.8 + p / 200)] for p in (0, 50, 90, 99, 99.9, 100)],
        "breakdown_us": {"client_send": 60.0, "network": 210.0, "server_queue": tree["queue_us"],
                         "server_compute_input": tree["compute_input_us"],
                         "server_compute_infer": tree["compute_infer_us"],
                         "server_compute_output": tree["compute_output_us"], "client_recv": 45.0},
        "server": tree,
        "count_check": {"client_success": int(3 * throughput), "server_success": int(3 * throughput) + 1,
                        "tolerance": 2 * value, "mismatch": False},
        "metrics": {
            "scrape_count": 3,
            "gpus": [{"uuid": uuid, "avg_utilization": 0.35 * value + 0.1 * i, "avg_power_w": 180.0 + 40 * value,
                      "max_memory_used_bytes": (6 + i) * 2**30, "total_memory_bytes": 80 * 2**30,
                      "energy_j": 600.0 * value} for i, uuid in enumerate(GPUS)],
            "energy_per_inference_j": 0.41 * value,
            "avg_cpu_utilization": 0.45 * value, "max_cpu_memory_used_bytes": 3 * 2**30,
            "cpu_memory_total_bytes": 16 * 2**30,
            "models": [{"name": name, "version": "1", "success": int(3 * throughput),
                        "failure": {"BACKEND": 0, "OTHER": 0}, "max_pending": value,
                        "statistics_success": int(3 * throughput), "tolerance": 2 * value, "mismatch": False}
                       for name in ("pipeline", "preprocess", "detector", "postprocess")],
        },
    }


def summary() -> dict:
    """A realistic two-level run of a nested ensemble on two GPUs, with a hostile error message."""
    unstable = level(2, 125.5, stable=False, errors={f"model failed: {HOSTILE}": 3})
    unstable["count_check"].update(server_success=420, mismatch=True)  # someone else's traffic
    unstable["metrics"]["models"][2].update(failure={"BACKEND": 2, "OTHER": 0}, statistics_success=300, mismatch=True)
    return {
        "schema_version": 3, "loadgen_version": "0.1.0",
        "started_at": "2026-11-22T10:00:00+00:00", "finished_at": "2026-11-22T10:01:05+00:00",
        "stop_reason": "latency 47.3 ms exceeded 40 ms",
        "warnings": ["metrics scrape 3 of 20 timed out"],
        "config": {"model_name": "pipeline", "batch_size": 1, "url": "localhost:8000", "protocol": "http",
                   "concurrency_range": "1:2:1", "shapes": {}, "input_data": None, "headers": ["Authorization"],
                   "windows": {"interval_ms": 1000, "max_trials": 5}, "latency_threshold_ms": 40.0},
        "environment": {"hostname": "bench-01", "platform": "Linux-6.1-x86_64", "python": "3.11.7", "cpu_count": 2,
                        "memory_total_bytes": 16 * 2**30},
        "server": {"name": "triton", "version": "2.51.0", "extensions": ["classification", "statistics"]},
        "model": {"name": "pipeline", "version": "1", "composing": [
            {"name": "preprocess", "version": "1", "composing": []},
            {"name": "inner-ensemble", "version": "1", "composing": [
                {"name": "detector", "version": "1", "composing": []},
                {"name": "postprocess", "version": "1", "composing": []}]}]},
        "model_configs": {"pipeline": {"name": "pipeline", "platform": "ensemble", "max_batch_size": 8},
                          "detector": {"name": "detector", "backend": "onnxruntime",
                                       "dynamic_batching": {"max_queue_delay_microseconds": 100}}},
        "levels": [level(1, 93.456), unstable],
        "metrics_series": {"interval_ms": 1000, "t_s": [10.0, 11.0], "level": [0, 0], "cpu_utilization": [0.4, 0.5],
                           "cpu_memory_used_bytes": [3 * 2**30, 3 * 2**30],
                           "gpus": {uuid: {"utilization": [0.3, 0.4], "power_w": [200.0, 220.0],
                                           "memory_used_bytes": [6 * 2**30, 6 * 2**30]} for uuid in GPUS}},
    }


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


def render_and_open(data: dict, tmp_path: Path, with_plots: bool = False):
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
    cpu_only = summary()
    for each in cpu_only["levels"]:
        each["metrics"]["gpus"] = []
        each["metrics"]["energy_per_inference_j"] = None
    cpu_only["metrics_series"]["gpus"] = {}
    (tmp_path / "cpu").mkdir()
    _, page = render_and_open(cpu_only, tmp_path / "cpu")
    text = page.dom["text"]
    assert "The server exposes no GPU metrics." in text
    assert "GPU-" not in text and "Power (W)" not in text
    assert "45.0 %" in text  # CPU utilization still shown

    no_metrics = copy.deepcopy(cpu_only)
    no_metrics["metrics_series"] = None
    for each in no_metrics["levels"]:
        each["metrics"] = None
    (tmp_path / "none").mkdir()
    _, page = render_and_open(no_metrics, tmp_path / "none")
    text = page.dom["text"]
    assert "Metrics were not collected: the run did not use --collect-metrics." in text
    assert "exposes no GPU metrics" not in text and "Scrapes" not in text


def test_interrupted_run_with_no_level(tmp_path):
    data = summary()
    data.update(stop_reason="interrupted", warnings=[], levels=[], metrics_series=None, finished_at=None)
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
    assert page.dom["images"] == 5 and page.dom["loaded_images"] == page.dom["images"]
    text = page.dom["text"]
    assert [each["value"] for each in data["levels"]] == [1, 2]
    for each in data["levels"]:
        assert f"{each['client']['throughput_infer_per_s']:,.1f}" in text
    assert "centernet-postprocess v" in text
    assert "The server exposes no GPU metrics" in text
    assert "Metrics were not collected" not in text


def test_sla_verdicts(tmp_path):
    """One level meets its SLAs, the other breaches one (with a hostile expression and reason): shown, escaped, red."""
    data = summary()
    data["sla"] = ["p99_ms<50", f"{HOSTILE}.queue_ms<1"]
    passing, failing = data["levels"]
    passing["sla"] = [{"expression": "p99_ms<50", "value": 16.05, "passed": True, "reason": ""},
                      {"expression": f"{HOSTILE}.queue_ms<1", "value": 0.5, "passed": True, "reason": ""}]
    failing["sla"] = [{"expression": "p99_ms<50", "value": 23.9, "passed": True, "reason": ""},
                      {"expression": f"{HOSTILE}.queue_ms<1", "value": None, "passed": False,
                       "reason": f"not measured: no model '{HOSTILE}' in this run"}]
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

    met = copy.deepcopy(data)
    met["levels"][1]["sla"][1].update(value=0.4, passed=True, reason="")
    met.update(stop_reason=None, warnings=[])
    met["levels"][1].update(stable=True)
    met["levels"][1]["count_check"]["mismatch"] = False
    (tmp_path / "met").mkdir()
    source, page = render_and_open(met, tmp_path / "met")
    assert "SLA: all 2 levels met every SLA." in page.dom["text"]
    assert "never stabilized" not in page.dom["text"]
    assert '<div class="verdict">' in source

    required = copy.deepcopy(data)  # --require-stable: the unstable level fails the run even without a breach
    required["levels"][1]["sla"][1].update(value=0.4, passed=True, reason="")
    required["config"]["require_stable"] = True
    required.update(sla_passed=False)
    (tmp_path / "required").mkdir()
    source, page = render_and_open(required, tmp_path / "required")
    assert "1 level never stabilized: its verdicts rest on figures that did not settle (--require-stable: the run fails)." in page.dom["text"]
    assert '<div class="verdict fail">' in source


def test_runs_without_sla_show_no_sla_parts(tmp_path):
    old = summary()  # written before SLAs: no "sla" key anywhere
    without = summary()  # a run without --sla
    without["sla"] = []
    for each in without["levels"]:
        each["sla"] = []
    for name, data in (("old", old), ("without", without)):
        (tmp_path / name).mkdir()
        source, page = render_and_open(data, tmp_path / name)
        assert "SLA" not in page.dom["text"] and "verdict fail" not in source
        assert page.dom["tables"] == 11
