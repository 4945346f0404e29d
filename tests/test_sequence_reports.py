"""A sequence model's figures in every report (issue 18): one short run of the running-sum model against
the real embedded Triton, read through the console, results.csv, report.html and its plots, compare and
an SLA; then the same reports of results that lack sequences, which must keep their shape."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from loadgen.compare import SEQUENCE_NOISE_NOTE, SEQUENCES, compare_runs
from loadgen.measurement import SequenceFigures
from loadgen.report.console import summary_lines
from loadgen.report.csv_report import BASE_COLUMNS, SEQUENCE_COLUMNS, header, row
from loadgen.report.render import load_summary
from loadgen.sla import evaluate, parse_sla

from results import level, run

MODEL = "running-sum"
PERF_ANALYZER_COLUMNS = ["Concurrency", *BASE_COLUMNS, "p50 latency", "p90 latency", "p95 latency", "p99 latency"]


def _loadgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def sequence_run(sequence_triton, tmp_path_factory):
    """One closed-loop sweep of the sequence model, concurrency 1 and 2, with a sequences_per_s SLA: its
    report folder, console output and summary.json."""
    report = tmp_path_factory.mktemp("sequence_reports") / "report"
    process = _loadgen("run", "-u", sequence_triton.http, "-m", MODEL, "--concurrency-range", "1:2", "-p", "500",
                       "-r", "3", "-s", "50", "--sequence-length", "6", "--sequence-id-range", "1:10", "--seed", "1",
                       "--sla", "sequences_per_s>1", "--report-dir", str(report))  # fmt: skip
    assert process.returncode == 0, process.stderr
    summary = json.loads((report / "summary.json").read_text())
    assert [lv["value"] for lv in summary["levels"]] == [1, 2]
    assert all(lv["sequences"]["completed"] > 0 for lv in summary["levels"])
    return report, process.stdout, summary


def test_console_shows_each_levels_sequences(sequence_run):
    _, stdout, summary = sequence_run
    for lv in summary["levels"]:
        figures = lv["sequences"]
        # perf_analyzer's line, where it prints it (between the request count and the throughput), then loadgen's
        assert (f"    Request count: {lv['client']['request_count']}\n"
                f"    Sequence count: {figures['completed']} ({figures['completed_per_s']:.6g} seq/sec)\n"
                f"    Throughput: {lv['client']['throughput_infer_per_s']:.6g} infer/sec\n"
                f"    Sequences failed: {figures['failed']}, cut short at the level's end: {figures['cut_short']}\n") in stdout
    table = stdout[stdout.index("Inferences/Second vs. Client"):]
    for lv in summary["levels"]:
        line = next(line for line in table.splitlines() if line.startswith(f"Concurrency: {lv['value']},"))
        assert f", sequences: {lv['sequences']['completed_per_s']:.6g} completed/sec" in line


def test_csv_keeps_perf_analyzers_columns_then_the_sequences(sequence_run):
    report, _, summary = sequence_run
    rows = list(csv.reader((report / "results.csv").open(newline="")))
    assert rows[0] == [*PERF_ANALYZER_COLUMNS, *SEQUENCE_COLUMNS, "SLA"]
    for cells, lv in zip(rows[1:], summary["levels"], strict=True):
        figures = lv["sequences"]
        assert float(cells[0]) == lv["value"]
        assert float(cells[1]) == pytest.approx(lv["client"]["throughput_infer_per_s"], rel=1e-5)
        sequence_cells = dict(zip(SEQUENCE_COLUMNS, cells[len(PERF_ANALYZER_COLUMNS):]))
        assert float(sequence_cells["Sequences/Second"]) == pytest.approx(figures["completed_per_s"], rel=1e-5)
        assert [int(sequence_cells[c]) for c in SEQUENCE_COLUMNS[1:]] == [figures["completed"], figures["failed"],
                                                                           figures["cut_short"]]  # fmt: skip
        assert cells[-1] == "pass"


def test_html_and_plots_show_the_sequences(sequence_run):
    report, _, summary = sequence_run
    html = (report / "report.html").read_text()
    levels_table = html[html.index("<h2>Levels</h2>"):html.index("</table>", html.index("<h2>Levels</h2>"))]
    for heading in ("Sequences/s", "Sequences completed", "Sequences failed", "Sequences cut short"):
        assert f"<th>{heading}</th>" in levels_table
    for lv in summary["levels"]:
        assert f"<td>{lv['sequences']['completed_per_s']:,.1f}</td>" in levels_table
        assert f"<td>{lv['sequences']['completed']:,}</td>" in levels_table
    assert (report / "plots" / "sequence_throughput.png").stat().st_size > 0
    assert "Sequences per second" in html


def test_sla_judges_sequences_per_second(sequence_run):
    report, stdout, summary = sequence_run
    for lv in summary["levels"]:
        [verdict] = lv["sla"]
        assert verdict["passed"] and verdict["value"] == lv["sequences"]["completed_per_s"]
    assert "SLA sequences_per_s>1: PASS (sequences_per_s = " in stdout
    measured = load_summary(report).levels[0]
    [verdict] = evaluate([parse_sla("sequences_per_s>=1e9")], measured)
    assert not verdict.passed and verdict.reason.startswith("sequences_per_s = ") and verdict.reason.endswith("needs >= 1000000000")


def test_compare_sets_sequences_per_second_level_by_level(sequence_run, tmp_path):
    report, _, summary = sequence_run
    same = _loadgen("compare", str(report), str(report), "--max-regression", "5%")
    assert same.returncode == 0, same.stdout + same.stderr
    for lv in summary["levels"]:
        shown = f"{lv['sequences']['completed_per_s']:,.1f} seq/s"
        assert any(line.startswith(f"Concurrency {lv['value']}") and f"{SEQUENCES} " in line and line.count(shown) == 2
                   for line in same.stdout.splitlines())  # fmt: skip
    assert f"Note: {SEQUENCE_NOISE_NOTE}." in same.stdout
    # The candidate completed half the sequences per second at every level, the rest unchanged.
    candidate = tmp_path / "candidate"
    shutil.copytree(report, candidate)
    halved = json.loads((candidate / "summary.json").read_text())
    for lv in halved["levels"]:
        lv["sequences"]["completed_per_s"] /= 2
    (candidate / "summary.json").write_text(json.dumps(halved))
    worse = _loadgen("compare", str(report), str(candidate), "--max-regression", "5%")
    assert worse.returncode == 1, worse.stdout + worse.stderr
    regressed = [line for line in worse.stdout.splitlines() if "REGRESSION (limit only)" in line]
    assert len(regressed) == 2 and all(f"{SEQUENCES} " in line and "-50.0%" in line for line in regressed)


# -- results without sequences keep their shape --------------------------------------------------


def _sequence_level(value: float, completed_per_s: float):
    return level(value, sequences=SequenceFigures(int(3 * completed_per_s), completed_per_s, 1, 2))


def test_a_level_without_sequences_fails_the_sla_saying_why():
    [verdict] = evaluate([parse_sla("sequences_per_s>1")], level(1))
    assert not verdict.passed and verdict.value is None and "drove no sequences" in verdict.reason
    [verdict] = evaluate([parse_sla("sequences_per_s>1")], _sequence_level(1, 0.5))
    assert not verdict.passed and verdict.value == 0.5


def test_without_sequences_csv_and_console_keep_their_shape():
    plain = run(level(1), level(2))
    assert header("Concurrency", plain.config) == PERF_ANALYZER_COLUMNS
    assert len(row(plain.levels[0], plain.config)) == len(PERF_ANALYZER_COLUMNS)
    assert not any("seq" in line for line in summary_lines(plain))
    driven = run(_sequence_level(1, 40.0))
    assert ", sequences: 40 completed/sec" in summary_lines(driven)[1]


def test_compare_notes_when_one_run_drove_no_sequences():
    plain, driven = run(level(1)), run(_sequence_level(1, 40.0))
    comparison = compare_runs(plain, driven, 5.0)
    assert SEQUENCES not in [delta.figure for delta in comparison.levels[0].deltas]
    assert "sequences/s: not compared: only the candidate run drove sequences (a sequence model)" in comparison.notes
    slower = compare_runs(driven, run(_sequence_level(1, 30.0)), 5.0)
    [delta] = [delta for delta in slower.levels[0].deltas if delta.figure == SEQUENCES]
    assert delta.change_pct == pytest.approx(-25.0) and delta.regression and not delta.tested
