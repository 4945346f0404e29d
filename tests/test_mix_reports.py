"""Every report of a mix of models (issue 17): the console, the CSVs, report.html, JUnit, compare and
`loadgen report` show each model, from one real mix run against the embedded server."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from browser import open_page
from conftest import ROOT

from loadgen.compare import compare
from loadgen.errors import UsageError
from loadgen.report.console import ConsoleReport
from loadgen.report.render import load_summary

ECHO = ROOT / "tests" / "model_repos" / "echo"
MODELS = ("ident", "echo_bytes")


def loadgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory):
    """Two models at two levels each, with metrics, an SLA on ident and JUnit: the report folder and its run."""
    folder = tmp_path_factory.mktemp("mix_reports")
    scenario = folder / "two.yaml"
    scenario.write_text("measurement-interval: 500\nmax-trials: 4\nstability-percentage: 50\nmodels:\n"
                        "  - {model-name: ident, request-rate-range: '50:100:50', sla: [error_rate<0.5]}\n"
                        "  - {model-name: echo_bytes, request-rate-range: '20:40:20'}\n")  # fmt: skip
    report, junit = folder / "report", folder / "junit.xml"
    run = loadgen("run", "--config", str(scenario), "--model-repository", str(ECHO), "--collect-metrics",
                  "--metrics-interval", "250", "--junit", str(junit), "--report-dir", str(report))  # fmt: skip
    assert run.returncode == 0, run.stderr
    return report, junit, run.stdout


def test_the_console_names_each_model_and_prints_the_servers_metrics_once_a_level(mix_run):
    _, _, out = mix_run
    assert "  Model: ident (request rate 50:100:50, http)\n" in out
    assert "  Model: echo_bytes (request rate 20:40:20, http)\n" in out
    blocks = out.split("\nModel: ")  # the levels' blocks, model by model, then the closing tables
    assert out.count("\nModel: ident\nRequest Rate: ") == 2 and out.count("\nModel: echo_bytes\nRequest Rate: ") == 2
    assert out.count("Server Prometheus Metrics (all models)") == 2  # once per level, not per model
    assert out.count("  Model Prometheus Metrics: ") == 4
    assert [block.split("\n")[:2] for block in blocks[1:5]] == [
        ["ident", "Request Rate: 50 inference requests per seconds"], ["echo_bytes", "Request Rate: 20 inference requests per seconds"],
        ["ident", "Request Rate: 100 inference requests per seconds"], ["echo_bytes", "Request Rate: 40 inference requests per seconds"]]
    closing = out[out.index("Model: ident\nInferences/Second"):]
    assert "Model: echo_bytes\nInferences/Second vs. Client Average Batch Latency\nRequest Rate: 20, " in closing
    assert "SLA: met" in closing.split("Model: echo_bytes")[0]  # ident's verdict, under its name


def test_the_console_re_reads_a_mix_model_by_model(mix_run):
    report, _, _ = mix_run
    result = load_summary(report)
    text = io.StringIO()
    console = ConsoleReport(text, mix=[part.config for part in result.mix])
    console.run_started(result.config)
    for index in range(2):
        for part in result.mix:
            console.level_finished(part.levels[index], result)
    console.run_finished(result)
    out = text.getvalue()
    for part in result.mix:
        for level in part.levels:
            assert f"Throughput: {level.client.throughput_infer_per_s:.6g} infer/sec" in out
    assert out.count("Server Prometheus Metrics (all models)") == 2


def test_each_model_has_its_results_csv_and_there_is_no_empty_one(mix_run):
    report, _, _ = mix_run
    assert not (report / "results.csv").exists()
    result = load_summary(report)
    for part in result.mix:
        rows = list(csv.reader((report / f"results.{part.config.target.model_name}.csv").open()))
        assert rows[0][:2] == ["Request Rate", "Inferences/Second"]
        assert (rows[0][-1] == "SLA") == bool(part.config.gates.slas)
        assert [row[0] for row in rows[1:]] == [f"{level.value:g}" for level in part.levels]
        assert [row[1] for row in rows[1:]] == [f"{level.client.throughput_infer_per_s:g}" for level in part.levels]
    metrics = list(csv.reader((report / "metrics.csv").open()))
    labels = {row[1] for row in metrics[1:]} - {""}
    assert "ident Request Rate 50; echo_bytes Request Rate 20" in labels
    assert "ident Request Rate 100; echo_bytes Request Rate 40" in labels


def test_report_html_has_each_models_sections_and_plots(mix_run):
    report, _, _ = mix_run
    result = load_summary(report)
    html = (report / "report.html").read_text()
    for name in MODELS:
        assert f"<h2>Model: {name}</h2>" in html
        assert {"latency_breakdown.png", "throughput_latency.png"} <= {p.name for p in (report / "plots" / name).iterdir()}
    assert not list((report / "plots").glob("*.png"))  # a mix's plots are each model's
    assert html.count("<h2>Server metrics</h2>") == 1
    page = open_page(report / "report.html")
    assert not page.errors, page.errors
    text = page.dom["text"]
    assert "ident: 2 levels measured" in text and "echo_bytes: 2 levels measured" in text
    for part in result.mix:
        for level in part.levels:
            assert f"{level.client.throughput_infer_per_s:,.1f}" in text
    assert "level 2 (ident Request Rate 100, echo_bytes Request Rate 40)" in text
    assert page.dom["images"] == page.dom["loaded_images"] >= 4


def test_junit_has_a_suite_per_model(mix_run):
    _, junit, _ = mix_run
    root = ET.parse(junit).getroot()
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert list(suites) == ["loadgen: ident", "loadgen: echo_bytes"]
    ident_cases = [(case.get("classname"), case.get("name")) for case in suites["loadgen: ident"].findall("testcase")]
    assert ident_cases == [("ident.Request Rate 50", "error_rate<0.5"), ("ident.Request Rate 100", "error_rate<0.5")]
    assert [case.get("name") for case in suites["loadgen: echo_bytes"].findall("testcase")] == ["level completed"] * 2
    assert root.get("tests") == "4" and root.get("failures") == "0"


def worse(summary: dict, model: str) -> dict:
    """The summary with `model`'s throughput 30% lower and its latencies 30% higher, window by window."""
    data = copy.deepcopy(summary)
    (part,) = [part for part in data["mix"] if part["config"]["model_name"] == model]
    for level in part["levels"]:
        for figures in (level["client"], *level["windows"]):
            figures["throughput_infer_per_s"] *= 0.7
            figures["avg_latency_us"] *= 1.3
            figures["percentile_latency_us"] = {p: v * 1.3 for p, v in figures["percentile_latency_us"].items()}
    return data


def test_compare_goes_model_by_model(mix_run, tmp_path):
    report, _, _ = mix_run
    same = loadgen("compare", str(report), str(report))
    assert same.returncode == 0, same.stderr
    assert "Model ident:" in same.stdout and "Model echo_bytes:" in same.stdout
    assert same.stdout.rstrip().endswith("Result: no model regressed (2 compared)")

    candidate = tmp_path / "worse"
    candidate.mkdir()
    summary = json.loads((report / "summary.json").read_text())
    (candidate / "summary.json").write_text(json.dumps(worse(summary, "echo_bytes")))
    regressed = loadgen("compare", str(report), str(candidate))
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    assert "Result: echo_bytes regressed" in regressed.stdout

    alone = copy.deepcopy(summary)
    alone["mix"] = [part for part in alone["mix"] if part["config"]["model_name"] == "ident"]
    (candidate / "summary.json").write_text(json.dumps(alone))
    one_less = compare(load_summary(report), load_summary(candidate), 5.0)
    assert [name for name, _ in one_less.models] == ["ident"]
    assert one_less.only == ("Model echo_bytes: only in the baseline run, not compared.",)


def test_a_mix_against_one_model_is_one_line_and_exit_2(mix_run, metrics_run):
    report, _, _ = mix_run
    single, _ = metrics_run
    refused = loadgen("compare", str(report), str(single))
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "several models at once" in refused.stderr
    with pytest.raises(UsageError, match="the candidate run measured several models"):
        compare(load_summary(single), load_summary(report), 5.0)


def test_loadgen_report_re_renders_a_mix_folder(mix_run, tmp_path):
    report, _, _ = mix_run
    again = tmp_path / "again"
    shutil.copytree(report, again)
    shutil.rmtree(again / "plots")
    (again / "report.html").unlink()
    rendered = loadgen("report", str(again))
    assert rendered.returncode == 0, rendered.stderr
    html = (again / "report.html").read_text()
    assert all(f"<h2>Model: {name}</h2>" in html for name in MODELS)
    assert all((again / "plots" / name / "throughput_latency.png").exists() for name in MODELS)
