"""Metrics collection, the report folder, loadgen report and loadgen compare, against the real server."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from loadgen.cli import main
from loadgen.server import free_port

ENSEMBLE = "centernet-ensemble"
MODELS = {ENSEMBLE, "image-preprocess", "centernet", "centernet-postprocess"}
FAST = ["-p", "1000", "-r", "5", "-s", "50"]


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cpu_metrics_are_scraped_per_level(metrics_run):
    report, _ = metrics_run
    data = json.loads((report / "summary.json").read_text())
    assert data["schema_version"] == 14 and data["warnings"] == []
    for level in data["levels"]:
        metrics = level["metrics"]
        # 3 windows of 1 s at 4 scrapes a second, plus the boundaries.
        assert metrics["scrape_count"] >= 8
        assert metrics["gpus"] == [] and metrics["energy_per_inference_j"] is None  # CPU only: none, not zeros
        assert 0 < metrics["avg_cpu_utilization"] <= 1
        assert metrics["max_cpu_memory_used_bytes"] > 0
        models = {m["name"]: m for m in metrics["models"]}
        assert set(models) == MODELS
        for model in models.values():
            # The success counters agree with the statistics API over the same windows.
            assert model["success"] > 0 and not model["mismatch"], model
            assert set(model["failure"]) == {"BACKEND", "CANCELED", "OTHER", "REJECTED"}
            assert sum(model["failure"].values()) == 0
    series = data["metrics_series"]
    assert series["interval_ms"] == 250 and series["gpus"] == {}
    assert len(series["t_s"]) == len(series["level"]) == len(series["cpu_utilization"]) >= 16
    assert series["t_s"] == sorted(series["t_s"])
    assert {0, 1} <= set(series["level"])
    for t, index in zip(series["t_s"], series["level"]):
        if index is not None:
            assert data["levels"][index]["windows"][0]["start_s"] <= t <= data["levels"][index]["end_s"]


def test_console_and_csv_carry_perf_analyzers_metrics_fields(metrics_run):
    report, out = metrics_run
    assert out.count("  Server Prometheus Metrics: \n    Avg GPU Utilization:\n    Avg GPU Power Usage:\n"
                     "    Max GPU Memory Usage:\n    Total GPU Memory:\n") == 2  # fmt: skip
    assert out.count("    GPU metrics: none, the server exposes no GPU metrics") == 2
    assert "    Avg CPU Utilization: " in out
    rows = list(csv.reader((report / "results.csv").open()))
    assert rows[0][-4:] == ["Avg GPU Utilization", "Avg GPU Power Usage", "Max GPU Memory Usage", "Total GPU Memory"]
    assert all(row[-4:] == ["", "", "", ""] for row in rows[1:])
    series = list(csv.reader((report / "metrics.csv").open()))
    assert series[0][:2] == ["time_s", "level"] and "nv_cpu_utilization" in series[0]
    assert 'nv_inference_request_success{model="centernet",version="1"}' in series[0]
    assert {row[1] for row in series[1:]} >= {"Concurrency 1", "Concurrency 2"}


def test_the_folder_has_the_plots(metrics_run):
    report, _ = metrics_run
    names = {p.name for p in (report / "plots").iterdir()}
    assert names == {"throughput_latency.png", "latency_breakdown.png", "composing_breakdown.png", "roofline.png",
                     "latency_distribution.png", "resources.png"}  # fmt: skip
    for path in (report / "plots").iterdir():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 400
    assert (report / "report.html").stat().st_size > 10_000


def test_report_re_renders_from_the_summary(metrics_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(metrics_run[0], copy)
    shutil.rmtree(copy / "plots")
    (copy / "report.html").unlink()
    code, out, err = run(["report", str(copy)], capsys)
    assert code == 0, err
    assert out.strip() == f"Report: {copy / 'report.html'}"
    assert (copy / "report.html").exists() and len(list((copy / "plots").iterdir())) == 6


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "has no summary.json"),
        (lambda d: (d / "summary.json").write_text("{"), "is not valid JSON"),
        (lambda d: (d / "summary.json").write_text('{"schema_version": 1}'), "schema version 1"),
    ],
)
def test_report_of_a_folder_that_is_not_a_run_is_one_line(setup, message, tmp_path, capsys):
    setup(tmp_path)
    code, _, err = run(["report", str(tmp_path)], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_compare_gates_on_regressions(metrics_run, tmp_path, capsys):
    report = metrics_run[0]
    code, out, _ = run(["compare", str(report), str(report)], capsys)
    assert code == 0 and out.splitlines()[-1] == "Result: no regression beyond 5%"

    slower = tmp_path / "slower"
    slower.mkdir()
    data = json.loads((report / "summary.json").read_text())
    level = data["levels"][1]  # its throughput a fifth, window by window: far beyond any noise of a short run
    for figures in (level["client"], *level["windows"]):
        figures["throughput_infer_per_s"] *= 0.2
    (slower / "summary.json").write_text(json.dumps(data))
    code, out, _ = run(["compare", str(report), str(slower)], capsys)
    assert code == 1
    assert "REGRESSION" in out and "-80.0%" in out and out.splitlines()[-1] == "Result: 1 regression beyond 5%"
    code, out, _ = run(["compare", str(report), str(slower), "--max-regression", "90%"], capsys)
    assert code == 0

    code, _, err = run(["compare", str(report), str(slower), "--max-regression", "lots"], capsys)
    assert code == 2 and "--max-regression" in err and err.count("\n") == 1


def test_an_unreachable_metrics_url_is_a_warning(triton, tmp_path, capsys):
    nowhere = f"127.0.0.1:{free_port()}/metrics"
    code, out, err = run(["run", "-u", triton.http, "-m", ENSEMBLE, *FAST, "--collect-metrics", "--metrics-url", nowhere,
                          "--report-dir", str(tmp_path)], capsys)  # fmt: skip
    assert code == 0, err
    assert err.count(f"warning: cannot read metrics from http://{nowhere}") == 1
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["levels"][0]["metrics"] is None and data["levels"][0]["client"]["request_count"] > 0
    assert data["warnings"][0].startswith("cannot read metrics")
    assert "    No metrics: no scrape succeeded during this level" in out


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_live_metrics_are_exported_while_the_run_lasts(triton, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "run", "-u", triton.http, "-m", ENSEMBLE, "--concurrency-range", "2",
         "-p", "1000", "-r", "6", "-s", "0.001", "--export-metrics-port", str(port), "--report-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline, seen = time.monotonic() + 60, {}
        while time.monotonic() < deadline and process.poll() is None:
            try:
                seen = _scrape(port)
            except OSError:
                seen = {}
            if seen.get(f"loadgen_requests_total{sorted({'model': ENSEMBLE, 'outcome': 'success'}.items())}", 0) > 0:
                break
            time.sleep(0.2)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    labels = {"model": ENSEMBLE}
    assert seen[f"loadgen_requests_total{sorted({**labels, 'outcome': 'success'}.items())}"] > 0
    assert seen[f"loadgen_requests_total{sorted({**labels, 'outcome': 'error'}.items())}"] == 0
    assert seen[f"loadgen_request_latency_seconds_count{sorted(labels.items())}"] > 0
    assert seen[f"loadgen_level{sorted({**labels, 'schedule': 'concurrency'}.items())}"] == 2
    assert 0 <= seen[f"loadgen_in_flight_requests{sorted(labels.items())}"] <= 2
    with pytest.raises(OSError):  # the port is closed once the run is over
        _scrape(port)


def test_a_taken_export_port_is_one_line(triton, tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(["run", "-u", triton.http, "-m", ENSEMBLE, "--export-metrics-port", str(port),
                            "--report-dir", str(tmp_path)], capsys)  # fmt: skip
    assert code == 2 and f"port {port}" in err and err.count("\n") == 1
