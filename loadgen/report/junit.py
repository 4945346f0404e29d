"""JUnit XML from a run's result, so CI systems (GitLab, Jenkins, GitHub) show a run as tests.

One test suite for the model (for a mix of models, one per model, named for it); a test case per level and SLA verdict, failing with the verdict's reason,
and a `level completed` case per level when the run defined no SLA or the level is incomplete (a
worker was lost), failing with the reason it is. With --require-stable, a `level stable` case per
level fails when the level never stabilized; without it, a verdict on such a level says so in its
<system-out>. A run that failed adds a `run` case in error. Each level's case carries its key
figures in <system-out>.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loadgen.listener import RunListener
from loadgen.measurement import LevelResult
from loadgen.report.base import model_name, write_atomic
from loadgen.result import RunResult

# XML 1.0 cannot hold most control characters, even escaped; server error messages may contain them.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
NOT_MEASURED = "n/a"
UNSTABLE = "the level never stabilized: its figures did not settle within the measurement windows"


class JunitReport(RunListener):
    """--junit FILE.xml."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def run_finished(self, result: RunResult) -> None:
        write_junit(self.path, result)


def write_junit(path: Path, result: RunResult) -> None:
    """Write the run's JUnit XML at `path`, atomically (a CI job never reads half a file)."""
    root = ET.Element("testsuites", name="loadgen")
    suites = [_suite(part, result.stop_reason) for part in result.parts]  # a failed mix fails each model's suite
    root.extend(suites)
    for count in ("tests", "failures", "errors"):
        root.set(count, str(sum(int(suite.get(count)) for suite in suites)))  # type: ignore[arg-type]
    root.set("time", suites[0].get("time"))  # type: ignore[arg-type]  # the models ran at once
    ET.indent(root)
    write_atomic(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n")


def _text(value: Any) -> str:
    return NOT_XML.sub("\ufffd", str(value))


def _suite(result: RunResult, stop_reason: str | None) -> ET.Element:
    """One model's suite; `stop_reason` is the run's (a mix's models share it)."""
    model = model_name(result) or "model"
    cases = [case for level in result.levels for case in _level_cases(model, level, result.config.gates.require_stable)]
    stop_reason = stop_reason or ""
    if stop_reason.startswith("failed:"):
        cases.append(_run_error(model, stop_reason))

    suite = ET.Element("testsuite", {
        "name": _text(f"loadgen: {model}"),
        "tests": str(len(cases)),
        "failures": str(sum(case.find("failure") is not None for case in cases)),
        "errors": str(sum(case.find("error") is not None for case in cases)),
        "skipped": "0",
        "time": _seconds(_duration_s(result, cases)),
    })
    if result.started_at:
        # JUnit's timestamp has no zone; summary.json's times are UTC.
        started = datetime.fromisoformat(result.started_at).astimezone(timezone.utc)
        suite.set("timestamp", started.strftime("%Y-%m-%dT%H:%M:%S"))
    hostname = (result.environment or {}).get("hostname")
    if hostname:
        suite.set("hostname", _text(hostname))
    if result.config.gates.slas:
        properties = ET.SubElement(suite, "properties")
        for sla in result.config.gates.slas:
            ET.SubElement(properties, "property", name="sla", value=_text(sla.expression))
    suite.extend(cases)
    return suite


def _duration_s(result: RunResult, cases: list[ET.Element]) -> float:
    """The run's wall time when it finished, else the measured time of its levels."""
    if result.started_at and result.finished_at:
        return (datetime.fromisoformat(result.finished_at) - datetime.fromisoformat(result.started_at)).total_seconds()
    return sum(float(case.get("time", 0)) for case in cases)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _level_cases(model: str, level: LevelResult, require_stable: bool) -> list[ET.Element]:
    unstable = UNSTABLE if not level.stable else ""
    cases = []
    if level.incomplete or not level.sla:
        case = _case(model, level, "level completed")
        if level.incomplete:
            _fail(case, level.incomplete, "Incomplete")
        cases.append(case)
    if require_stable:
        case = _case(model, level, "level stable")
        if unstable:
            _fail(case, unstable, "Unstable")
        cases.append(case)
    for verdict in level.sla:
        case = _case(model, level, _text(verdict.expression))
        if not verdict.passed:
            _fail(case, verdict.reason + (f" ({unstable})" if unstable else ""), "SLA")
        elif unstable:  # passed, but on figures that did not settle: say so where CI shows the case
            case.find("system-out").text = f"WARNING: {unstable}. " + case.find("system-out").text
        cases.append(case)
    return cases


def _fail(case: ET.Element, reason: str, kind: str) -> None:
    failure = ET.Element("failure", message=_text(reason), type=kind)
    failure.text = _text(reason)
    case.insert(0, failure)  # JUnit's order: failure before system-out


def _case(model: str, level: LevelResult, name: str) -> ET.Element:
    case = ET.Element("testcase", classname=_text(f"{model}.{level.label} {level.value:g}"), name=name,
                      time=_seconds(level.client.duration_s))
    ET.SubElement(case, "system-out").text = _figures(level)
    return case


def _figures(level: LevelResult) -> str:
    """The level's key figures, one line for people reading the CI job."""
    client = level.client
    percentiles = client.percentile_latency_us

    def ms(us: float | None) -> str:
        return NOT_MEASURED if us is None else f"{us / 1000:.2f} ms"

    goodput = f"goodput {client.goodput_infer_per_s:.1f} infer/s, " if client.goodput_infer_per_s is not None else ""
    figures = (f"throughput {client.throughput_infer_per_s:.1f} infer/s, {goodput}"
               f"latency avg {ms(client.avg_latency_us)}, p50 {ms(percentiles.get(50))}, p99 {ms(percentiles.get(99))}, "
               f"error rate {client.error_rate * 100:.2f} %, stable {'yes' if level.stable else 'no'}")
    stream = level.streaming
    if stream is None or not stream.request_count:
        return figures
    itl = stream.itl_us or {}
    tokens = f", {stream.tokens_per_s:.1f} tokens/s" if stream.tokens_per_s is not None else ""
    return (f"{figures}; streamed: TTFT p50 {ms(stream.ttft_us['p50'])}, p99 {ms(stream.ttft_us['p99'])}, "
            f"ITL p50 {ms(itl.get('p50'))}, p99 {ms(itl.get('p99'))}, {stream.responses_per_request:.1f} responses/request{tokens}")


def _run_error(model: str, stop_reason: str) -> ET.Element:
    case = ET.Element("testcase", classname=_text(model), name="run", time=_seconds(0.0))
    error = ET.SubElement(case, "error", message=_text(stop_reason), type="RunFailed")
    error.text = _text(stop_reason)
    return case
