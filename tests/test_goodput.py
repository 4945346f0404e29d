"""--goodput-latency-ms: each level's goodput in the reports and in compare (real result objects, no server),
and end to end against the real server's M/D/1 model, whose requests each take about 10 ms."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest
from results import client, level, run, window

from loadgen.cli import main
from loadgen.compare import compare_runs, comparison_lines
from loadgen.report.console import ConsoleReport
from loadgen.report.csv_report import GOODPUT_COLUMN, write_csv
from loadgen.report.html_report import render_html
from loadgen.report.junit import write_junit
from loadgen.result import RunResult

BOUND = {"goodput-latency-ms": 50}


def measured(value: float, throughput: float, goodput: float | None, spread: float = 0.01):
    """A level whose windows wander by ±`spread` around its throughput and goodput."""
    stats = client(int(3 * throughput), 0, 3.0, throughput, 20_000.0, goodput=goodput)
    scales = (1 - spread, 1.0, 1 + spread)
    windows = [window(i, i + 1, int(throughput), throughput * scale, 20_000.0, percentiles=dict(stats.percentile_latency_us),
                      goodput_infer_per_s=None if goodput is None else goodput * scale) for i, scale in enumerate(scales)]  # fmt: skip
    return level(value, client_stats=stats, level_windows=windows)


def console(result: RunResult) -> str:
    stream = io.StringIO()
    report = ConsoleReport(stream)
    report.run_started(result.config)
    for each in result.levels:
        report.level_finished(each, result)
    report.run_finished(result)
    return stream.getvalue()


# --- the reports, from the result model -----------------------------------------------------------


def test_console_shows_goodput_per_level_only_with_the_bound():
    with_goodput = run(measured(1, 100.0, 92.5), measured(2, 180.0, 61.25), options=BOUND)
    out = console(with_goodput)
    assert "  Goodput: successful requests within 50 msec\n" in out
    assert "    Throughput: 100 infer/sec\n    Goodput: 92.5 infer/sec (latency within 50 msec)\n" in out
    assert "    Goodput: 61.25 infer/sec (latency within 50 msec)\n" in out
    assert "Concurrency: 1, throughput: 100 infer/sec, goodput: 92.5 infer/sec, latency 20000 usec" in out
    without = console(run(measured(1, 100.0, None), measured(2, 180.0, None)))
    assert "oodput" not in without


def test_csv_has_a_goodput_column_only_with_the_bound(tmp_path):
    write_csv(tmp_path / "with.csv", run(measured(1, 100.0, 92.5), measured(2, 180.0, 0.0), options={**BOUND, "sla": ["goodput>50"]}))
    header, *rows = list(csv.reader((tmp_path / "with.csv").open()))
    assert header[-2:] == [GOODPUT_COLUMN, "SLA"]  # after perf_analyzer's columns, before loadgen's SLA
    assert [row[header.index(GOODPUT_COLUMN)] for row in rows] == ["92.5", "0"]
    write_csv(tmp_path / "without.csv", run(measured(1, 100.0, None)))
    plain = list(csv.reader((tmp_path / "without.csv").open()))[0]
    assert GOODPUT_COLUMN not in plain and plain == header[:-2]  # perf_analyzer's shape


def test_html_and_junit_show_goodput(tmp_path):
    result = run(measured(1, 100.0, 92.5), options=BOUND)
    render_html(result, [], tmp_path / "with.html")
    page = (tmp_path / "with.html").read_text()
    assert "<th>Goodput ≤ 50 ms (infer/s)</th>" in page and "<td>92.5</td>" in page
    render_html(run(measured(1, 100.0, None)), [], tmp_path / "without.html")
    assert "Goodput" not in (tmp_path / "without.html").read_text()
    write_junit(tmp_path / "junit.xml", result)
    (case,) = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    assert case.find("system-out").text.startswith("throughput 100.0 infer/s, goodput 92.5 infer/s, latency avg")


def test_summary_json_records_the_bound_and_each_levels_and_windows_goodput():
    data = run(measured(1, 100.0, 92.5), options=BOUND).to_dict()
    assert data["config"]["goodput_latency_ms"] == 50
    (recorded,) = data["levels"]
    assert recorded["client"]["goodput_infer_per_s"] == 92.5
    assert [w["goodput_infer_per_s"] for w in recorded["windows"]] == [pytest.approx(92.5 * s) for s in (0.99, 1.0, 1.01)]
    assert RunResult.from_dict(json.loads(json.dumps(data))).to_dict() == data
    plain = run(measured(1, 100.0, None)).to_dict()
    assert plain["config"]["goodput_latency_ms"] is None and plain["levels"][0]["client"]["goodput_infer_per_s"] is None


# --- compare --------------------------------------------------------------------------------------


def test_compare_judges_goodput_like_throughput():
    base = run(measured(1, 100.0, 95.0), options=BOUND)
    cand = run(measured(1, 100.0, 60.0), options=BOUND)  # as fast on the whole, but far fewer requests within 50 ms
    comparison = compare_runs(base, cand, 5.0)
    deltas = comparison.levels[0].deltas
    assert [d.figure for d in deltas][:3] == ["throughput", "goodput", "avg latency"]
    goodput = deltas[1]
    assert goodput.higher_is_better and goodput.tested and goodput.change_pct == pytest.approx(-100 * 35 / 95)
    assert [d.figure for _, d in comparison.regressions] == ["goodput"] and comparison.notes == ()
    line = next(line for line in comparison_lines(comparison) if "goodput" in line)
    assert line.split()[:7] == ["Concurrency", "1", "goodput", "95.0", "infer/s", "60.0", "infer/s"]
    assert line.endswith("REGRESSION")
    assert compare_runs(cand, base, 5.0).regressions == []  # the other way round it improved


@pytest.mark.parametrize("base_bound, cand_bound, note", [
    (50, 100, "goodput: not compared: the baseline counted it within 50 ms, the candidate within 100 ms"),
    (50, None, "goodput: not compared: only the baseline run measured it (--goodput-latency-ms)"),
    (None, 50, "goodput: not compared: only the candidate run measured it (--goodput-latency-ms)"),
])  # fmt: skip
def test_compare_leaves_out_goodputs_of_different_bounds_and_says_why(base_bound, cand_bound, note):
    def of(bound):
        return run(measured(1, 100.0, 95.0 if bound else None), options={"goodput-latency-ms": bound} if bound else {})

    comparison = compare_runs(of(base_bound), of(cand_bound), 5.0)
    assert "goodput" not in [d.figure for d in comparison.levels[0].deltas]
    assert comparison.notes == (note,)
    assert f"Note: {note}." in comparison_lines(comparison)


# --- end to end, against the real server ----------------------------------------------------------

FAST = ["-p", "500", "-r", "3", "-s", "50"]


def loadgen(args, capsys):
    code = main(["run", *args])
    return code, capsys.readouterr()


def test_a_bound_above_every_latency_gives_goodput_equal_to_throughput(queueing_triton, tmp_path, capsys):
    report = tmp_path / "report"
    code, out = loadgen(["-u", queueing_triton.http, "-m", "fixed-service", "--concurrency-range", "1:2", *FAST,
                         "--goodput-latency-ms", "60000", "--sla", "goodput>1", "--report-dir", str(report)], capsys)  # fmt: skip
    assert code == 0, out.err
    data = json.loads((report / "summary.json").read_text())
    assert data["config"]["goodput_latency_ms"] == 60000 and data["sla_passed"] is True
    for each in data["levels"]:
        assert each["client"]["goodput_infer_per_s"] == each["client"]["throughput_infer_per_s"] > 0
        assert all(w["goodput_infer_per_s"] == w["throughput_infer_per_s"] for w in each["windows"])
        assert each["sla"][0]["passed"] and each["sla"][0]["value"] == each["client"]["goodput_infer_per_s"]
    assert out.out.count("    Goodput: ") == 2 and out.out.count("(latency within 60000 msec)") == 2
    header, *rows = list(csv.reader((report / "results.csv").open()))
    column = header.index(GOODPUT_COLUMN)
    assert [row[column] for row in rows] == [row[header.index("Inferences/Second")] for row in rows]
    assert "Goodput ≤ 60000 ms (infer/s)" in (report / "report.html").read_text()


def test_a_bound_below_every_latency_gives_no_goodput_and_its_sla_fails_the_run(queueing_triton, tmp_path, capsys):
    # Open loop: latency runs from each request's intended send time, and no request takes under 1 µs.
    report = tmp_path / "report"
    code, out = loadgen(["-u", queueing_triton.http, "-m", "fixed-service", "--request-rate-range", "40", *FAST,
                         "--goodput-latency-ms", "0.001", "--sla", "goodput>0", "--report-dir", str(report)], capsys)  # fmt: skip
    assert code == 1, out.err
    data = json.loads((report / "summary.json").read_text())
    (measured_level,) = data["levels"]
    assert measured_level["client"]["throughput_infer_per_s"] > 0 and measured_level["client"]["goodput_infer_per_s"] == 0.0
    (verdict,) = measured_level["sla"]
    assert (verdict["value"], verdict["passed"], verdict["reason"]) == (0.0, False, "goodput = 0, needs > 0")
    assert data["sla_passed"] is False and "SLA goodput>0: FAIL (goodput = 0, needs > 0" in out.out


def test_goodput_counts_only_the_requests_within_the_bound(queueing_triton, tmp_path, capsys):
    # One request at a time takes about 10 ms, within 15 ms; two at a time, the second waits for the first (~20 ms).
    report = tmp_path / "report"
    code, out = loadgen(["-u", queueing_triton.http, "-m", "fixed-service", "--concurrency-range", "1:2", *FAST,
                         "--goodput-latency-ms", "15", "--sla", "goodput>=20", "--report-dir", str(report)], capsys)  # fmt: skip
    assert code == 1, out.err
    one, two = json.loads((report / "summary.json").read_text())["levels"]
    assert one["client"]["goodput_infer_per_s"] > 0.5 * one["client"]["throughput_infer_per_s"]
    assert two["client"]["goodput_infer_per_s"] < 0.5 * two["client"]["throughput_infer_per_s"]
    assert [each["sla"][0]["passed"] for each in (one, two)] == [True, False]


def test_a_goodput_sla_without_the_bound_is_refused_before_any_load(tmp_path, capsys):
    code, out = loadgen(["-u", "127.0.0.1:1", "-m", "m", "--sla", "goodput>100", "--report-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and out.out == ""
    assert out.err == ("loadgen: error: --sla goodput needs --goodput-latency-ms: add the latency a request must stay "
                       "within to count as goodput, e.g. --goodput-latency-ms 100\n")
