"""Every report of a run spread over workers (--workers): the per-worker figures, overloaded and lost
workers, incomplete levels; and a single-process run's reports without any of it. No server needed:
the results are built by hand."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

from loadgen.options import build_config
from loadgen.measurement import CountCheck, LevelResult, WindowFigures
from loadgen.merge import WorkerFigures
from loadgen.report.console import ConsoleReport
from loadgen.report.html_report import render_html
from loadgen.report.junit import write_junit
from loadgen.report.workers_csv import WorkersCsvReport
from loadgen.result import SCHEMA_VERSION, RunResult
from loadgen.server_stats import ModelTree, ServerFigures
from loadgen.sla import Verdict
from loadgen.stats import ClientStats, ErrorKind, OpenLoopStats

LOST = "worker 2 (node-b, pid 4003) was lost: the actor died unexpectedly"
PERCENTILES = {50: 9_800.0, 90: 11_000.0, 95: 12_000.0, 99: 15_000.0}


def worker(index: int, *, late: float = 0.0, cpu: float = 30.0, lost: str | None = None, open_loop: bool = False):
    return WorkerFigures(
        worker=index, host="node-a" if index < 2 else "node-b", pid=4001 + index, share=2, request_count=300 + index,
        error_count=index, throughput_infer_per_s=100.0 + index,
        schedule_lag_us={"p50": 120.0, "p99": 2_345.6, "max": 9_000.0} if open_loop else {},
        late_fraction=late, cpu_pct=cpu, lost=lost,
    )  # fmt: skip


# One fine worker, one using a whole core (overloaded), one lost mid-level.
def workers(open_loop: bool = False) -> tuple[WorkerFigures, ...]:
    return (
        worker(0, open_loop=open_loop),
        worker(1, late=0.05, cpu=95.0, open_loop=open_loop),
        worker(2, lost="the actor died unexpectedly", open_loop=open_loop),
    )


def level(value: float, label: str = "Concurrency", **fields) -> LevelResult:
    start_ns = int(value * 10e9)
    client = ClientStats(
        request_count=909, error_count=3, duration_s=3.0, throughput_infer_per_s=303.0, avg_latency_us=10_000.0,
        std_latency_us=800.0, percentile_latency_us=PERCENTILES, avg_send_us=60.0, avg_recv_us=40.0,
        avg_response_wait_us=9_900.0, error_kinds=(ErrorKind("HTTP 500", 3, {"HTTP 500: boom": 3}),),
        error_latency_us={"avg": 900.0, "p50": 800.0, "p90": 1_500.0, "p99": 2_000.0, "max": 2_100.0},
    )  # fmt: skip
    server = ServerFigures("pipeline", "1", 909, 909, 909, 0, 9_000.0, 100.0, 200.0, 8_000.0, 100.0)
    open_loop = None
    if label == "Request Rate":
        open_loop = OpenLoopStats(value, value, 909, 20, 0, {"p50": 120.0, "p99": 2_345.6, "max": 9_000.0}, 9_000.0,
                                  PERCENTILES)
    return LevelResult(
        label=label, value=value, stable=True,
        windows=tuple(WindowFigures(start_ns + i * 10**9, start_ns + (i + 1) * 10**9, 1.0, 303, 303.0, 10_000.0, 10_000.0, PERCENTILES)
                      for i in range(3)),
        client=client, server=server, count_check=CountCheck(909, 909, 12, 3), open_loop=open_loop, **fields,
    )  # fmt: skip


def run(*levels: LevelResult, **options) -> RunResult:
    config = build_config({"model-name": "pipeline", **{name.replace("_", "-"): v for name, v in options.items()}})
    return RunResult(
        config=config, model=ModelTree("pipeline", "1"), server_metadata={"name": "triton"}, model_configs={},
        levels=levels, started_at="2026-11-22T10:00:00+00:00", finished_at="2026-11-22T10:01:00+00:00",
        started_ns=0, environment={"hostname": "driver"},
    )  # fmt: skip


def spread_run(**options) -> RunResult:
    """Two levels from three workers: the first complete, the second lost a worker."""
    fine = (worker(0), worker(1), worker(2))
    return run(level(2, workers=fine), level(4, workers=workers(), incomplete=LOST),
               workers=3, concurrency_range="2:4:2", **options)


def single_run() -> RunResult:
    return run(level(2), level(4), concurrency_range="2:4:2")


def console(result: RunResult) -> str:
    stream = io.StringIO()
    report = ConsoleReport(stream)
    report.run_started(result.config)
    for measured in result.levels:
        report.level_finished(measured, result)
    report.run_finished(result)
    return stream.getvalue()


def test_console_has_a_row_per_worker_and_flags_overloaded_and_lost():
    out = console(spread_run())
    assert "  Load from 3 workers on Ray (local)\n" in out
    assert out.count("  Workers: \n") == 2
    table = out.split("Request concurrency: 4\n")[1].split("  Workers: \n")[1].splitlines()
    header, rows = table[0], table[1:4]
    assert header.split() == ["Worker", "Host", "Share", "Requests", "Errors", "Throughput", "infer/sec", "Lag", "p99",
                              "usec", "Late", "%", "CPU", "%"]  # fmt: skip
    assert [row.split()[:6] for row in rows] == [["0", "node-a", "2", "300", "0", "100"],
                                                 ["1", "node-a", "2", "301", "1", "101"],
                                                 ["2", "node-b", "2", "302", "2", "102"]]  # fmt: skip
    assert rows[0].split()[6:] == ["-", "-", "30.0"]  # closed loop: no lag, no lateness; fine: no flag
    assert rows[1].endswith("95.0  OVERLOADED")
    assert rows[2].endswith("30.0  LOST: the actor died unexpectedly")
    assert len({len(header), *(len(row.rstrip()) for row in rows[:2])}) <= 2  # fixed width up to the flag column
    assert header.index("CPU %") + len("CPU %") == rows[0].index("30.0") + len("30.0")  # right-aligned figures
    assert "    OVERLOADED: its CPU at 90% of one core or more, or its p99 send lag over 10 ms" in out


def test_console_marks_the_incomplete_level_and_the_summary():
    out = console(spread_run())
    assert f"Request concurrency: 4\n  Incomplete: {LOST}\n  Client: \n" in out
    assert "Request concurrency: 2\n  Client: \n" in out
    closing = out.split("Inferences/Second vs. Client Average Batch Latency\n")[1].splitlines()
    assert closing[0].startswith("Concurrency: 2,") and "INCOMPLETE" not in closing[0]
    assert closing[1].endswith(f", INCOMPLETE: {LOST}")


def test_console_open_loop_lag_and_a_masked_ray_address():
    result = run(level(100, "Request Rate", workers=workers(open_loop=True)), workers=3,
                 request_rate_range="100", ray_address="ray://admin:hunter2@head:10001")  # fmt: skip
    out = console(result)
    assert "  Load from 3 workers on Ray (ray://***@head:10001)\n" in out and "hunter2" not in out
    rows = out.split("  Workers: \n")[1].splitlines()[1:4]
    assert rows[0].split()[6:9] == ["2345", "0.00%", "30.0"]
    assert rows[1].split()[6:9] == ["2345", "5.00%", "95.0"]


def test_single_process_console_has_no_worker_parts():
    single = single_run()
    out = console(single)
    for part in ("Workers", "Ray", "Incomplete", "INCOMPLETE", "OVERLOADED", "LOST"):
        assert part not in out
    # Workers only add their table: the rest of the output stays as a single process prints it.
    spread = console(replace(single, levels=tuple(replace(lv, workers=(worker(0), worker(1))) for lv in single.levels)))
    assert re.sub(r"  Workers: \n(    .*\n)+\n", "", spread) == out


def test_summary_json_carries_workers_and_incomplete():
    data = spread_run().to_dict()
    assert data["schema_version"] == SCHEMA_VERSION == 14
    assert data["config"]["workers"] == 3 and data["config"]["ray_address"] is None
    complete, incomplete = data["levels"]
    assert complete["incomplete"] is None and incomplete["incomplete"] == LOST
    assert [w["worker"] for w in incomplete["workers"]] == [0, 1, 2]
    assert incomplete["workers"][1] == {
        "worker": 1, "host": "node-a", "pid": 4002, "share": 2, "request_count": 301, "error_count": 1,
        "throughput_infer_per_s": 101.0, "schedule_lag_us": {}, "late_fraction": 0.05, "cpu_pct": 95.0,
        "overloaded": True, "lost": None,
    }  # fmt: skip
    assert [(w["overloaded"], w["lost"]) for w in incomplete["workers"]] == [
        (False, None), (True, None), (False, "the actor died unexpectedly")]

    for single in single_run().to_dict()["levels"]:
        assert single["workers"] == [] and single["incomplete"] is None


def test_workers_csv_has_a_row_per_level_and_worker(tmp_path):
    path = tmp_path / "workers.csv"
    WorkersCsvReport(path).run_finished(spread_run())
    rows = list(csv.DictReader(path.open(newline="")))
    assert [(r["label"], r["value"], r["worker"]) for r in rows] == [
        ("Concurrency", "2", "0"), ("Concurrency", "2", "1"), ("Concurrency", "2", "2"),
        ("Concurrency", "4", "0"), ("Concurrency", "4", "1"), ("Concurrency", "4", "2")]  # fmt: skip
    overloaded, lost = rows[4], rows[5]
    assert overloaded["host"] == "node-a" and overloaded["pid"] == "4002" and overloaded["share"] == "2"
    assert (overloaded["request_count"], overloaded["error_count"]) == ("301", "1")
    assert float(overloaded["throughput_infer_per_s"]) == 101.0 and float(overloaded["cpu_pct"]) == 95.0
    assert float(overloaded["late_fraction"]) == 0.05
    assert (overloaded["overloaded"], overloaded["lost"]) == ("true", "")
    assert (lost["overloaded"], lost["lost"]) == ("false", "the actor died unexpectedly")
    assert overloaded["schedule_lag_p99_us"] == "" == overloaded["schedule_lag_max_us"]  # closed loop
    assert not list(tmp_path.glob("*.tmp"))


def test_workers_csv_open_loop_lag(tmp_path):
    path = tmp_path / "workers.csv"
    WorkersCsvReport(path).run_finished(run(level(100, "Request Rate", workers=workers(open_loop=True)), workers=3,
                                            request_rate_range="100"))  # fmt: skip
    first = next(csv.DictReader(path.open(newline="")))
    assert (first["label"], first["value"]) == ("Request Rate", "100")
    lag = [float(first[f"schedule_lag_{key}_us"]) for key in ("p50", "p99", "max")]
    assert lag == [120.0, 2_345.6, 9_000.0]


def test_single_process_writes_no_workers_csv(tmp_path):
    report = WorkersCsvReport(tmp_path / "workers.csv")
    single = single_run()
    report.level_finished(single.levels[0], single)
    report.run_finished(single)
    assert list(tmp_path.iterdir()) == []


def junit_cases(tmp_path, result: RunResult) -> list[tuple[str, str, str | None, str | None]]:
    path = tmp_path / "junit.xml"
    write_junit(path, result)
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert int(suite.get("failures")) == sum(case.find("failure") is not None for case in suite.iter("testcase"))
    cases = []
    for case in suite.iter("testcase"):
        failure = case.find("failure")
        cases.append((case.get("classname"), case.get("name"), *((failure.get("message"), failure.get("type"))
                                                                  if failure is not None else (None, None))))
    return cases


def test_junit_fails_an_incomplete_level(tmp_path):
    assert junit_cases(tmp_path, spread_run()) == [
        ("pipeline.Concurrency 2", "level completed", None, None),
        ("pipeline.Concurrency 4", "level completed", LOST, "Incomplete"),
    ]
    # With SLAs, the incomplete level still fails, beside its verdicts.
    passed = (Verdict("p99_ms<50", 15.0, True, ""),)
    with_sla = run(level(2, workers=workers(), sla=passed), level(4, workers=workers(), sla=passed, incomplete=LOST),
                   workers=3, concurrency_range="2:4:2", sla=["p99_ms<50"])  # fmt: skip
    assert junit_cases(tmp_path, with_sla) == [
        ("pipeline.Concurrency 2", "p99_ms<50", None, None),
        ("pipeline.Concurrency 4", "level completed", LOST, "Incomplete"),
        ("pipeline.Concurrency 4", "p99_ms<50", None, None),
    ]
    assert all(failure is None for _, _, failure, _ in junit_cases(tmp_path, single_run()))


def html(tmp_path, result: RunResult) -> str:
    path = tmp_path / "report.html"
    render_html(result, [], path)
    return path.read_text()


def section(page: str, heading: str) -> str:
    return page.split(f"<h2>{heading}</h2>")[1].split("<h2>")[0]


def test_html_has_a_workers_section_with_flagged_rows(tmp_path):
    page = html(tmp_path, spread_run())
    workers_html = section(page, "Workers")
    assert workers_html.count("<summary>") == 2
    assert f"<summary>Concurrency 4 (incomplete: {LOST})</summary>" in workers_html
    last = workers_html.split("<summary>")[2]
    rows = re.findall(r"<tr(?: class=\"(\w+)\")?>(.*?)</tr>", last.split("<tbody>")[1])
    assert [css for css, _ in rows] == ["", "warn", "warn"]  # the overloaded and the lost worker
    assert "⚠ overloaded" in rows[1][1] and "✗ lost: the actor died unexpectedly" in rows[2][1]
    assert "node-b" in rows[2][1] and "4003" in rows[2][1]
    # The levels table marks the incomplete level; the verdict counts it.
    levels_html = section(page, "Levels")
    assert "<th class=\"t\">Incomplete</th>" in levels_html and f"⚠ {LOST}" in levels_html
    assert "1 incomplete" in page and 'class="verdict warn"' in page


def test_single_process_html_has_no_worker_parts(tmp_path):
    page = html(tmp_path, single_run())
    assert "<h2>Workers</h2>" not in page and "Incomplete" not in page and "incomplete" not in page


def test_a_worker_falling_behind_is_overloaded_but_jitter_is_not():
    """Lateness alone is the VM's wake-up jitter (1-3% over 1 ms here at any rate); a p99 lag over
    10 ms means the worker is falling behind its schedule."""
    jitter = worker(0, late=0.05, open_loop=True)  # p99 lag 2.3 ms
    behind = replace(jitter, schedule_lag_us={"p50": 4_000.0, "p99": 25_000.0, "max": 40_000.0})
    assert not jitter.overloaded
    assert behind.overloaded
    assert worker(1, cpu=90.0).overloaded
