"""SLA verdicts, exit codes, JUnit and the binary search, against the real server and its M/D/1 model."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from loadgen.cli import main

FAST = ["-p", "1000", "-r", "4", "-s", "50"]


def run(args, capsys):
    code = main(args)
    return code, capsys.readouterr()


def test_met_slas_exit_0_and_a_breach_exits_1_with_junit(queueing_triton, tmp_path, capsys):
    base = ["run", "-u", queueing_triton.http, "-m", "fixed-service", "--concurrency-range", "1:2", *FAST]
    code, out = run([*base, "--sla", "p99_ms<1000", "--sla", "error_rate<0.01", "--report-dir", str(tmp_path / "ok"),
                     "--junit", str(tmp_path / "ok.xml")], capsys)  # fmt: skip
    assert code == 0, out.err
    assert out.out.count("  SLA p99_ms<1000: PASS (p99_ms = ") == 2 and "SLA: met" in out.out

    # One service takes about 10 ms: a bound of 5 ms on it fails at every level.
    code, out = run([*base, "--sla", "p99_ms<1000", "--sla", "fixed-service.compute_infer_ms<5",
                     "--report-dir", str(tmp_path / "bad"), "--junit", str(tmp_path / "bad.xml")], capsys)  # fmt: skip
    assert code == 1, out.err
    assert "SLA: BREACHED" in out.out
    data = json.loads((tmp_path / "bad" / "summary.json").read_text())
    assert data["sla_passed"] is False and data["sla"] == ["p99_ms<1000", "fixed-service.compute_infer_ms<5"]
    for level in data["levels"]:
        passed, failed = level["sla"]
        assert passed["passed"] and not failed["passed"]
        assert failed["value"] == pytest.approx(level["server"]["compute_infer_us"] / 1e3)
    suite = ET.parse(tmp_path / "bad.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    failures = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert {case.get("name") for case in failures} == {"fixed-service.compute_infer_ms<5"}
    rows = (tmp_path / "bad" / "results.csv").read_text().splitlines()
    assert rows[0].endswith(",SLA") and all("fail: fixed-service.compute_infer_ms<5" in row for row in rows[1:])
    ok_suite = ET.parse(tmp_path / "ok.xml").getroot().find("testsuite")
    assert (ok_suite.get("tests"), ok_suite.get("failures")) == ("4", "0")


def test_a_verdict_on_a_level_that_never_stabilized_says_so_and_require_stable_fails_it(queueing_triton, tmp_path, capsys):
    # A spread of 0.001% between windows: no level can stabilize.
    base = ["run", "-u", queueing_triton.http, "-m", "fixed-service", "--concurrency-range", "1", "-p", "300", "-r", "3",
            "-s", "0.001", "--sla", "p99_ms<1000"]  # fmt: skip
    code, out = run([*base, "--report-dir", str(tmp_path / "warned"), "--junit", str(tmp_path / "warned.xml")], capsys)
    assert code == 0, out.err
    assert "SLA p99_ms<1000: PASS (p99_ms = " in out.out and ", on a level that never stabilized)" in out.out
    assert ("SLA: met, but a level never stabilized (concurrency 1): its figures may not hold; "
            "--require-stable fails such a run") in out.out
    data = json.loads((tmp_path / "warned" / "summary.json").read_text())
    (level,) = data["levels"]
    assert not level["stable"] and level["sla"][0]["level_stable"] is False and data["sla_passed"] is True
    (case,) = ET.parse(tmp_path / "warned.xml").getroot().iter("testcase")
    assert case.find("failure") is None and case.find("system-out").text.startswith("WARNING: the level never stabilized")
    assert "never stabilized: its verdicts rest on figures that did not settle." in (tmp_path / "warned" / "report.html").read_text()

    code, out = run([*base, "--require-stable", "--report-dir", str(tmp_path / "failed"), "--junit", str(tmp_path / "failed.xml")], capsys)
    assert code == 1, out.err
    assert "SLA: BREACHED: concurrency 1 never stabilized (--require-stable)" in out.out
    data = json.loads((tmp_path / "failed" / "summary.json").read_text())
    assert data["sla_passed"] is False and data["config"]["require_stable"] is True
    suite = ET.parse(tmp_path / "failed.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None] == ["level stable"]

    # Without any SLA, --require-stable still gates on stability.
    code, out = run([*base[:-2], "--require-stable", "--report-dir", str(tmp_path / "bare")], capsys)
    assert code == 1 and "Stability: BREACHED: concurrency 1 never stabilized (--require-stable)" in out.out


def test_a_mistyped_sla_is_one_line_before_anything_starts(tmp_path, capsys):
    code, out = run(["run", "--sla", "p99<50", "--report-dir", str(tmp_path)], capsys)
    assert code == 2 and "unknown metric" in out.err and out.err.count("\n") == 1
    assert not (tmp_path / "server.log").exists()  # the embedded server was never started


@pytest.mark.slow  # 19 s; --binary-search with nothing within the bound stays in the default run
def test_binary_search_finds_the_highest_concurrency_within_the_bound(queueing_triton, tmp_path, capsys):
    # Closed loop on one server busy ~10.7 ms per request: latency is about concurrency x 10.7 ms
    # (4: ~43 ms, 5: ~54 ms), so a 48 ms bound admits 4 and not 5, with 5 ms to spare either way.
    code, out = run(["run", "-u", queueing_triton.http, "-m", "fixed-service", "--concurrency-range", "1:16",
                     "--binary-search", "-l", "48", "--target-throughput", "500", "--headroom", "20%", *FAST,
                     "--report-dir", str(tmp_path)], capsys)  # fmt: skip
    assert code == 0, out.err
    data = json.loads((tmp_path / "summary.json").read_text())
    values = [level["value"] for level in data["levels"]]
    assert values == sorted(values) and {1, 16, 8, 4, 5} <= set(values) and len(values) <= 7
    passing = [level for level in data["levels"] if level["stable"] and level["client"]["avg_latency_us"] <= 48_000]
    assert max(level["value"] for level in passing) == 4  # the search's answer
    # The capacity is the most throughput within the bound. One instance serves ~93/s at every
    # concurrency, so which passing level gave the most is the noise's to decide.
    capacity = data["capacity"]
    best = max(passing, key=lambda level: level["client"]["throughput_infer_per_s"])
    assert capacity["level_value"] == best["value"]
    assert capacity["throughput_infer_per_s"] == best["client"]["throughput_infer_per_s"] == pytest.approx(95, rel=0.15)
    assert capacity["replicas"] == -(-500 // (capacity["throughput_infer_per_s"] * 0.8))
    assert (f"Capacity: {capacity['throughput_infer_per_s']:.6g} infer/sec per server within every bound, "
            f"at concurrency {best['value']:g}") in out.out
    assert f"needs {capacity['replicas']} servers" in out.out
    assert f"needs {capacity['replicas']} servers." in (tmp_path / "report.html").read_text()


def test_binary_search_with_nothing_within_the_bound_exits_1(queueing_triton, tmp_path, capsys):
    code, out = run(["run", "-u", queueing_triton.http, "-m", "fixed-service", "--concurrency-range", "1:8",
                     "--binary-search", "-l", "2", *FAST, "--report-dir", str(tmp_path)], capsys)  # fmt: skip
    assert code == 1
    data = json.loads((tmp_path / "summary.json").read_text())
    assert [level["value"] for level in data["levels"]] == [1] and data["capacity"] is None
    assert data["stop_reason"].startswith("no level meets the bounds: latency")
    assert "Capacity: no level met every bound" in out.out
