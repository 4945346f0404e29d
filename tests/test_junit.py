"""junit.xml read back as a CI system would: counts, names, failure messages, escaping, JUnit's attributes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

from results import client, level as measured, recorded, run, server, verdict

from loadgen.report.junit import write_junit
from loadgen.result import RunResult
from loadgen.server_stats import ModelTree
from loadgen.sla import Verdict

HOSTILE = "<b>\"Tom\" & 'Jerry'</b>\x00\x1b]"


def level(label: str, value: float, verdicts: list[Verdict] = ()):
    """A level with the figures the JUnit file shows."""
    stats = client(300, 3, 3.25, 93.456, 20_500.0, {50: 20_000.0, 90: 24_000.0, 95: 27_000.0, 99: 31_200.0})
    return measured(value, label, client_stats=stats, server_figures=server("pipeline"), sla=tuple(verdicts))


def summary(levels: list, slas: list[str] = (), model: str = "pipeline", stop_reason: str | None = None) -> RunResult:
    config = recorded({"model-name": "pipeline"}, slas=list(slas))  # any expression, as a summary may hold
    return run(*levels, config=config, model=ModelTree(model, "1"), started_at="2026-11-22T10:00:00+00:00",
               finished_at="2026-11-22T10:01:05+00:00", stop_reason=stop_reason, environment={"hostname": "bench-01"})


def written(tmp_path: Path, data: RunResult) -> ET.Element:
    path = tmp_path / "junit.xml"
    write_junit(path, data)
    assert path.read_text(encoding="utf-8").startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert not list(tmp_path.glob("*.tmp")), "the atomic write left its temporary file"
    root = ET.parse(path).getroot()  # raises on a malformed file
    check_junit_structure(root)
    return root


def check_junit_structure(root: ET.Element) -> None:
    """What JUnit readers rely on: counts on suites that match their cases, names and times on every case."""
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert suites and all(child.tag == "testsuite" for child in root)
    for suite in suites:
        assert {"name", "tests", "failures", "errors", "skipped", "time"} <= set(suite.attrib)
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(case.find("failure") is not None for case in cases)
        assert int(suite.get("errors")) == sum(case.find("error") is not None for case in cases)
        assert float(suite.get("time")) >= 0
        for case in cases:
            assert case.get("classname") and case.get("name")
            assert float(case.get("time")) >= 0
            for outcome in [*case.findall("failure"), *case.findall("error")]:
                assert outcome.get("message") is not None and outcome.get("type")
    for count in ("tests", "failures", "errors"):
        assert int(root.get(count)) == sum(int(suite.get(count)) for suite in suites)


def cases(root: ET.Element) -> list[tuple[str, str, str | None]]:
    """(classname, name, failure or error message) of every case."""
    result = []
    for case in root.iter("testcase"):
        outcome = case.find("failure") if case.find("failure") is not None else case.find("error")
        result.append((case.get("classname"), case.get("name"), None if outcome is None else outcome.get("message")))
    return result


def test_one_case_per_level_and_verdict(tmp_path):
    data = summary([
        level("Concurrency", 1, [verdict("p99_ms<50", 31.2), verdict("throughput>=100", 93.456,
                                                                     "throughput = 93.456, needs >= 100")]),
        level("Concurrency", 2, [verdict("p99_ms<50", 61.2, "p99_ms = 61.2, needs < 50"),
                                 verdict("throughput>=100", 125.5)]),
    ], slas=["p99_ms < 50", "throughput>=100"])
    root = written(tmp_path, data)
    suite = root.find("testsuite")
    assert suite.get("name") == "loadgen: pipeline"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    assert suite.get("time") == "65.000" and suite.get("timestamp") == "2026-11-22T10:00:00"
    assert suite.get("hostname") == "bench-01"
    assert [p.get("value") for p in suite.iter("property")] == ["p99_ms<50", "throughput>=100"]  # as parsed: no spaces
    assert cases(root) == [
        ("pipeline.Concurrency 1", "p99_ms<50", None),
        ("pipeline.Concurrency 1", "throughput>=100", "throughput = 93.456, needs >= 100"),
        ("pipeline.Concurrency 2", "p99_ms<50", "p99_ms = 61.2, needs < 50"),
        ("pipeline.Concurrency 2", "throughput>=100", None),
    ]
    first = suite.find("testcase")
    assert first.get("time") == "3.250"
    assert first.findtext("system-out") == ("throughput 93.5 infer/s, latency avg 20.50 ms, p50 20.00 ms, "
                                            "p99 31.20 ms, error rate 0.99 %, stable yes")
    failure = suite.findall("testcase")[1].find("failure")
    assert failure.get("type") == "SLA" and failure.text == "throughput = 93.456, needs >= 100"


def test_run_without_sla_lists_its_levels(tmp_path):
    rate = level("Request Rate", 120.5)
    rate = replace(rate, client=replace(rate.client, percentile_latency_us={}))  # none recorded
    root = written(tmp_path, summary([level("Concurrency", 1, []), rate]))
    assert cases(root) == [("pipeline.Concurrency 1", "level completed", None),
                           ("pipeline.Request Rate 120.5", "level completed", None)]
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    assert suite.find("properties") is None
    assert "latency avg 20.50 ms, p50 n/a, p99 n/a" in suite.findall("testcase")[1].findtext("system-out")


def test_failed_run_adds_an_error_case(tmp_path):
    data = summary([level("Concurrency", 1, [verdict("p99_ms<50", 31.2)])], slas=["p99_ms<50"],
                   stop_reason="failed: server closed the connection")
    root = written(tmp_path, replace(data, finished_at=None))
    assert cases(root)[-1] == ("pipeline", "run", "failed: server closed the connection")
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "1")
    assert suite.find("testcase[@name='run']/error").get("type") == "RunFailed"
    assert suite.get("time") == "3.250"  # no finish time: the measured levels' time


def test_stops_that_are_not_failures_add_no_case(tmp_path):
    for reason in ("interrupted", "latency 47.3 ms exceeded the 40 ms threshold", "SLA p99_ms<50 breached"):
        root = written(tmp_path, summary([level("Concurrency", 1, [])], stop_reason=reason))
        assert [name for _, name, _ in cases(root)] == ["level completed"]


def test_no_level_measured(tmp_path):
    root = written(tmp_path, summary([], stop_reason="failed: model not ready"))
    assert cases(root) == [("pipeline", "run", "failed: model not ready")]


def test_hostile_strings_are_escaped(tmp_path):
    reason = f"not measured: no model '{HOSTILE}' in this run"
    data = summary([level("Concurrency", 1, [verdict(f"{HOSTILE}.queue_ms<1", None, reason)])],
                   slas=[f"{HOSTILE}.queue_ms<1"], model=HOSTILE, stop_reason=f"failed: {HOSTILE}\nsecond line")
    root = written(tmp_path, data)
    readable = HOSTILE.replace("\x00", "\ufffd").replace("\x1b", "\ufffd")  # XML cannot hold these even escaped
    suite = root.find("testsuite")
    assert suite.get("name") == f"loadgen: {readable}"
    assert cases(root) == [(f"{readable}.Concurrency 1", f"{readable}.queue_ms<1", reason.replace(HOSTILE, readable)),
                           (readable, "run", f"failed: {readable}\nsecond line")]
    assert suite.find("properties/property").get("value") == f"{readable}.queue_ms<1"
    source = (tmp_path / "junit.xml").read_text(encoding="utf-8")
    assert "<b>" not in source and "&lt;b&gt;" in source and "&amp;" in source


def test_a_verdict_on_an_unstable_level_says_so_and_require_stable_fails_it(tmp_path):
    shaky = replace(level("Request Rate", 40, [verdict("p99_ms<150", 85.3, level_stable=False)]), stable=False)
    steady = level("Request Rate", 80, [verdict("p99_ms<150", 90.1)])
    data = summary([shaky, steady], ["p99_ms<150"])

    suite = written(tmp_path, data).find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")  # a warning, not a failure
    warned, clean = suite.findall("testcase")
    assert warned.find("system-out").text.startswith("WARNING: the level never stabilized")
    assert not clean.find("system-out").text.startswith("WARNING")

    (tmp_path / "required").mkdir()
    required = replace(data, config=recorded({"model-name": "pipeline"}, slas=["p99_ms<150"], require_stable=True))
    suite = written(tmp_path / "required", required).find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "1")
    failed = [case for case in suite.findall("testcase") if case.find("failure") is not None]
    assert [(case.get("classname"), case.get("name")) for case in failed] == [("pipeline.Request Rate 40", "level stable")]
    assert failed[0].find("failure").get("type") == "Unstable"
    assert "never stabilized" in failed[0].find("failure").get("message")
