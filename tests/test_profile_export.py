"""--profile-export-file: perf_analyzer's profile export, streamed window by window.

The writer over the real engine and measure_level (an in-process transport), then whole runs
against the real embedded server; every file is checked against the shape of perf_analyzer's
own export (tests/data/perf_analyzer, captured from perf_analyzer 2.51.0).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadgen.engine import LoadEngine
from loadgen.errors import LoadgenError
from loadgen.load import LocalLoad
from loadgen.measurement import measure_level
from loadgen.options import build_config
from loadgen.outcome import InferOutcome, http_status
from loadgen.profile_export import ProfileExport, epoch_offset_ns, request_formatter
from loadgen.samples import SampleRecorder, WindowRequests
from loadgen.schedule import ConcurrencySchedule, RateSchedule
from loadgen.server_stats import ModelTree, parse_statistics
from loadgen.transport.base import Transport
from loadgen.windows import WindowPolicy
from test_engine import FakeTransport

PERF_ANALYZER = Path(__file__).resolve().parent / "data" / "perf_analyzer"
SAMPLES = [PERF_ANALYZER / "profile_export_concurrency.json", PERF_ANALYZER / "profile_export_request_rate.json"]
LOADGEN_KEYS = ["intended_timestamp", "error"]  # loadgen's own, after perf_analyzer's


def assert_reads_as_perf_analyzer(export: dict) -> None:
    """Every key perf_analyzer writes, with the same JSON type, at every level of the document;
    loadgen adds only its two request keys."""
    for sample in (json.loads(path.read_text()) for path in SAMPLES):
        assert list(export) == list(sample)  # the same keys, in the same order
        assert {key: type(export[key]) for key in ("version", "service_kind", "endpoint")} == {
            key: type(sample[key]) for key in ("version", "service_kind", "endpoint")
        }
        theirs = sample["experiments"][0]
        request_keys = list(theirs["requests"][0])
        for ours in export["experiments"]:
            assert list(ours) == list(theirs)
            assert list(ours["experiment"]) == list(theirs["experiment"])
            assert all(type(b) is int for b in ours["window_boundaries"])
            for request in ours["requests"]:
                assert list(request) == request_keys + LOADGEN_KEYS
                for key in request_keys:
                    assert type(request[key]) is type(theirs["requests"][0][key]), key
                assert type(request["timestamp"]) is int
                assert all(type(t) is int for t in request["response_timestamps"])
    assert export["service_kind"] == "triton" and export["endpoint"] == ""


def experiment_value_types(export: dict) -> list[tuple[str, type]]:
    return [(e["experiment"]["mode"], type(e["experiment"]["value"])) for e in export["experiments"]]


def test_the_real_samples_are_perf_analyzers_shape():
    concurrency, rate = (json.loads(path.read_text()) for path in SAMPLES)
    assert experiment_value_types(concurrency) == [("concurrency", int), ("concurrency", int)]
    assert experiment_value_types(rate) == [("request_rate", float)]
    for sample in (concurrency, rate):
        for experiment in sample["experiments"]:
            boundaries = experiment["window_boundaries"]
            assert boundaries == sorted(boundaries) and len(boundaries) >= 4  # three windows at least
            # ns since the epoch, like time.time_ns() (the sample was taken in 2026)
            assert 1.7e18 < boundaries[0] < 1.9e18


# --- a request, and the recorder that keeps them ----------------------------------------------


def test_a_request_as_its_json_object():
    closed = json.loads(request_formatter(1_000)(None, 5, 9, None))
    assert closed == {"timestamp": 1_005, "request_inputs": {}, "response_timestamps": [1_009], "response_outputs": [],
                      "intended_timestamp": None, "error": None}  # fmt: skip
    failed = json.loads(request_formatter(1_000)(3, 5, 9, http_status(500, "boom")))
    assert (failed["timestamp"], failed["intended_timestamp"], failed["response_timestamps"]) == (1_005, 1_003, [1_009])
    assert failed["error"] == "HTTP 500"  # the kind, as summary.json's errors name it


def test_the_recorder_keeps_each_windows_requests_once_and_only_when_asked():
    assert SampleRecorder(0).close_window(10).requests is None
    recorder = SampleRecorder(0, request_format=request_formatter(0))
    recorder.record(None, 1, 2, InferOutcome(0, 0))
    recorder.record(None, 3, 4, InferOutcome(0, 0, http_status(503)))
    first = recorder.close_window(10)
    assert first.requests.count == 2
    assert [r["error"] for r in json.loads("[" + first.requests.take() + "]")] == [None, "HTTP 503"]
    assert first.requests.take() == ""  # handed over once
    assert recorder.close_window(20).requests.count == 0


def test_the_wall_clock_offset():
    offset = epoch_offset_ns()
    assert abs(time.monotonic_ns() + offset - time.time_ns()) < 10**7


# --- the writer, over the real engine ---------------------------------------------------------


class Answers(FakeTransport):
    """Answers each request after `delay_s`; every `fail_every`th with HTTP 500; none with `answers=False`."""

    def __init__(self, delay_s: float = 0.002, fail_every: int = 0, answers: bool = True) -> None:
        self.delay_s, self.fail_every, self.answers = delay_s, fail_every, answers
        self.calls = 0

    async def infer(self, prepared) -> InferOutcome:
        self.calls += 1
        if not self.answers:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay_s)
        if self.fail_every and self.calls % self.fail_every == 0:
            return InferOutcome(0, 0, http_status(500, "injected"))
        return InferOutcome(1_000, 1_000)


def measure(export: ProfileExport, transport: Transport, schedules, on_window=None, fail_after_levels: int | None = None):
    """The levels of `schedules` measured with their requests going to `export`, as a sweep drives it.
    With `fail_after_levels`, the run fails in the next level's second window, as a dead server would."""
    statistics = parse_statistics({"model_stats": [{"name": "m", "version": "1"}]})
    policy = WindowPolicy(interval_ms=150, max_trials=3)

    async def snapshot(boundary_ns):
        return statistics

    async def scenario():
        engine = LoadEngine(transport, [object()])
        engine.drain_s = 0.2
        load = LocalLoad(engine, export_requests=True)
        levels = []
        windows_told = 0

        def failing(schedule, requests):
            nonlocal windows_told
            export.window_requests(schedule, requests)
            windows_told += 1
            if windows_told == 2:
                raise LoadgenError("the server at 127.0.0.1:1 stopped answering")

        export.run_started(build_config({}))
        try:
            for index, schedule in enumerate(schedules):
                export.level_started(schedule, load)
                on_requests = failing if index == fail_after_levels else export.window_requests
                level = await measure_level(load, schedule, policy, snapshot, ModelTree("m", "1"), 1, on_window, None, on_requests)
                levels.append(level)
                export.level_finished(level, None)
        finally:
            export.run_finished(None)
        return levels, engine.completed

    return asyncio.run(scenario())


def test_each_window_is_on_disk_when_it_closes(tmp_path):
    path = tmp_path / "export.json"
    export = ProfileExport(path)
    on_disk: list[int] = []

    def on_window(schedule, index, figures):  # told after the window's requests went to the export
        on_disk.append(path.read_text().count('"timestamp"'))

    before = time.time_ns()
    (level,), completed = measure(export, Answers(), [ConcurrencySchedule(2)], on_window)
    data = json.loads(path.read_text())
    assert_reads_as_perf_analyzer(data)
    (experiment,) = data["experiments"]
    assert experiment["experiment"] == {"mode": "concurrency", "value": 2}
    counts = [w.request_count + w.error_count for w in level.windows]
    # The file grew window by window, by each window's requests.
    assert on_disk == [sum(counts[: i + 1]) for i in range(len(counts))] and counts[0] > 0
    requests = experiment["requests"]
    assert len(requests) == sum(counts) < completed  # not those before the first window, nor the drain's
    boundaries = experiment["window_boundaries"]
    assert len(boundaries) == len(level.windows) + 1 and boundaries == sorted(boundaries)
    assert before <= boundaries[0] and boundaries[-1] <= time.time_ns()  # the wall clock
    offset = boundaries[0] - level.windows[0].start_ns
    assert [b - offset for b in boundaries] == [level.windows[0].start_ns] + [w.end_ns for w in level.windows]
    assert all(boundaries[0] <= r["response_timestamps"][0] <= boundaries[-1] for r in requests)
    assert all(r["timestamp"] < r["response_timestamps"][0] and r["intended_timestamp"] is None for r in requests)


def test_open_loop_requests_and_failures(tmp_path):
    path = tmp_path / "export.json"
    (level,), _ = measure(ProfileExport(path), Answers(fail_every=4), [RateSchedule(200, "constant")])
    data = json.loads(path.read_text())
    assert_reads_as_perf_analyzer(data)
    (experiment,) = data["experiments"]
    assert experiment["experiment"] == {"mode": "request_rate", "value": 200.0}
    requests = experiment["requests"]
    errors = [r for r in requests if r["error"] is not None]
    assert len(errors) == sum(w.error_count for w in level.windows) > 0
    assert {r["error"] for r in errors} == {"HTTP 500"}
    assert len(requests) - len(errors) == sum(w.request_count for w in level.windows)
    # Sent when due, give or take the loop's jitter; due every 5 ms.
    assert all(abs(r["timestamp"] - r["intended_timestamp"]) < 10**8 for r in requests)
    intended = sorted(r["intended_timestamp"] for r in requests)
    assert min(b - a for a, b in zip(intended, intended[1:])) >= 4_900_000


def test_a_run_that_fails_mid_level_leaves_whole_json_with_the_levels_that_ran(tmp_path):
    path = tmp_path / "export.json"
    with pytest.raises(LoadgenError, match="stopped answering"):
        measure(ProfileExport(path), Answers(), [ConcurrencySchedule(1), ConcurrencySchedule(2)], fail_after_levels=1)
    data = json.loads(path.read_text())
    assert_reads_as_perf_analyzer(data)
    first, cut_short = data["experiments"]
    assert len(first["window_boundaries"]) == 4 and first["requests"]
    assert cut_short["experiment"]["value"] == 2
    assert len(cut_short["window_boundaries"]) == 3 and cut_short["requests"]  # the two windows it closed


def test_a_level_with_no_request_completed(tmp_path):
    path = tmp_path / "export.json"
    (level,), _ = measure(ProfileExport(path), Answers(answers=False), [ConcurrencySchedule(2)])
    data = json.loads(path.read_text())
    assert_reads_as_perf_analyzer(data)
    (experiment,) = data["experiments"]
    assert experiment["requests"] == []
    assert len(experiment["window_boundaries"]) == len(level.windows) + 1 == 4
    assert level.drain.unanswered == 2  # abandoned after the last window: not the export's


def test_a_run_stopped_before_any_level_or_window(tmp_path):
    path = tmp_path / "export.json"
    export = ProfileExport(path)
    export.run_started(build_config({}))
    export.run_finished(None)
    assert json.loads(path.read_text())["experiments"] == []
    export = ProfileExport(path)
    export.run_started(build_config({}))
    export.level_started(ConcurrencySchedule(1), None)
    export.run_finished(None)
    (experiment,) = json.loads(path.read_text())["experiments"]
    assert experiment["requests"] == [] and experiment["window_boundaries"] == []


def test_a_mixs_levels_wait_in_spools_and_none_is_left_when_the_run_fails_mid_level(tmp_path):
    path = tmp_path / "export.json"
    export = ProfileExport(path, ["a", "b"])
    line = request_formatter(0)
    open_fds = set(os.listdir("/proc/self/fd"))

    def level(windows: int, *counts: int) -> tuple[ConcurrencySchedule, ConcurrencySchedule]:
        a, b = ConcurrencySchedule(1), ConcurrencySchedule(1)  # equal, yet each its model's
        export.level_started(a, None)
        export.level_started(b, None)
        for start_ns in range(100, 100 + 10 * windows, 10):
            for schedule, count in zip((a, b), counts):
                requests = ",\n".join(line(None, start_ns + 1, start_ns + 2, None) for _ in range(count))
                export.window_requests(schedule, WindowRequests(start_ns, start_ns + 10, count, requests))
        return a, b

    export.run_started(build_config({}))
    level(2, 1, 2)
    assert len(set(os.listdir("/proc/self/fd")) - open_fds) == 3  # the export and a spool per model
    export.level_finished(None, None)
    export.level_finished(None, None)
    assert len(set(os.listdir("/proc/self/fd")) - open_fds) == 1  # the spools closed with the level
    a, _ = level(1, 3, 0)
    export.window_requests(a, WindowRequests(110, 120, 1, line(None, 111, 112, None)))  # b never closed it: the run failed
    export.run_finished(None)
    assert set(os.listdir("/proc/self/fd")) == open_fds
    assert [item.name for item in tmp_path.iterdir()] == ["export.json"]
    experiments = json.loads(path.read_text())["experiments"]
    assert [(e["model"], len(e["requests"]), e["window_boundaries"]) for e in experiments] == [
        ("a", 2, [100, 110, 120]), ("b", 4, [100, 110, 120]), ("a", 4, [100, 110, 120]), ("b", 0, [100, 110])]  # fmt: skip
    assert list(experiments[0]) == ["experiment", "model", "requests", "window_boundaries"]


def test_a_file_that_cannot_be_written_is_one_line():
    export = ProfileExport(Path("/dev/full"))
    export.run_started(build_config({}))
    export.level_started(ConcurrencySchedule(1), None)
    with pytest.raises(LoadgenError) as caught:
        export.window_requests(ConcurrencySchedule(1), WindowRequests(1, 2, 1, request_formatter(0)(None, 1, 2, None)))
    assert str(caught.value) == "cannot write --profile-export-file /dev/full: No space left on device"
    with pytest.raises(LoadgenError):
        export.run_finished(None)


def test_the_option_is_recorded_in_the_configuration():
    config = build_config({"profile-export-file": "runs/export.json"})
    assert config.outputs.profile_export_file == Path("runs/export.json")
    assert config.to_dict()["profile_export_file"] == "runs/export.json"
    assert build_config({}).to_dict()["profile_export_file"] is None


# --- whole runs against the real server -------------------------------------------------------


def loadgen_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "run", *args], capture_output=True, text=True, timeout=300)


def assert_matches_summary(data: dict, summary: dict) -> None:
    """One experiment per level, each with every request of the level's windows, inside them."""
    assert_reads_as_perf_analyzer(data)
    experiments, levels = data["experiments"], summary["levels"]
    assert len(experiments) == len(levels)
    mode = "request_rate" if summary["config"]["request_rate_range"] else "concurrency"
    for experiment, level in zip(experiments, levels):
        assert experiment["experiment"] == {"mode": mode, "value": level["value"]}
        windows = level["windows"]
        requests = experiment["requests"]
        assert len(requests) == sum(w["request_count"] + w["error_count"] for w in windows)
        assert sum(r["error"] is not None for r in requests) == sum(w["error_count"] for w in windows)
        boundaries = experiment["window_boundaries"]
        assert len(boundaries) == len(windows) + 1
        # Window lengths as summary.json has them, to its µs.
        assert [round((b - a) / 1e9, 6) for a, b in zip(boundaries, boundaries[1:])] == pytest.approx(
            [w["duration_s"] for w in windows], abs=2e-6
        )
        assert all(boundaries[0] <= r["response_timestamps"][0] <= boundaries[-1] for r in requests)


def test_the_export_of_a_closed_loop_run(nested_triton, tmp_path):
    path = tmp_path / "export.json"
    before = time.time_ns()
    run = loadgen_run("-u", nested_triton.http, "-m", "nested-outer", "--concurrency-range", "1:2", "-p", "500", "-r", "4",
                      "--report-dir", str(tmp_path / "report"), "--profile-export-file", str(path))  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(path.read_text())
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert_matches_summary(data, summary)
    assert [e["experiment"] for e in data["experiments"]] == [{"mode": "concurrency", "value": 1}, {"mode": "concurrency", "value": 2}]
    assert summary["config"]["profile_export_file"] == str(path)
    assert all(r["intended_timestamp"] is None and r["error"] is None for e in data["experiments"] for r in e["requests"])
    stamps = [r["timestamp"] for e in data["experiments"] for r in e["requests"]]
    assert before < min(stamps) and max(stamps) < time.time_ns()  # ns since the epoch, as perf_analyzer's


def test_the_export_of_an_open_loop_run_with_failures(faults_triton, tmp_path):
    path = tmp_path / "export.json"
    run = loadgen_run("-u", faults_triton.grpc, "-i", "grpc", "-m", "flaky", "--request-rate-range", "100", "-p", "1000",
                      "-r", "4", "-s", "50", "--report-dir", str(tmp_path / "report"), "--profile-export-file", str(path))  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(path.read_text())
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert_matches_summary(data, summary)
    (experiment,) = data["experiments"]
    assert experiment["experiment"] == {"mode": "request_rate", "value": 100.0}
    requests = experiment["requests"]
    failed = [r for r in requests if r["error"] is not None]
    assert {r["error"] for r in failed} == {kind["kind"] for kind in summary["levels"][0]["errors"]["kinds"]}
    assert len(failed) / len(requests) == pytest.approx(0.2, abs=0.03)  # flaky fails 1 request in 5
    assert all(abs(r["timestamp"] - r["intended_timestamp"]) < 10**8 for r in requests)


def test_an_interrupted_run_leaves_a_whole_export(nested_triton, tmp_path):
    path = tmp_path / "export.json"
    command = [sys.executable, "-m", "loadgen", "run", "-u", nested_triton.http, "-m", "nested-outer", "--concurrency-range",
               "1", "-p", "300", "-r", "100", "-s", "0.001", "--report-dir", str(tmp_path / "report"),
               "--profile-export-file", str(path)]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not path.exists() or path.read_text().count('"timestamp"') == 0):
            time.sleep(0.1)  # the first window's requests are on disk while the level goes on
        assert path.read_text().count('"timestamp"') > 0
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    data = json.loads(path.read_text())
    assert_reads_as_perf_analyzer(data)
    (experiment,) = data["experiments"]
    assert experiment["requests"] and len(experiment["window_boundaries"]) >= 2
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["status"] == "interrupted"
