"""Faults injected into the real server: failing and slow models, a server killed mid-sweep, signals.

Failed requests are data; a dead server or a signal ends the run with its finished levels on
disk, the right exit code, one line on stderr, and no process left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAULTS_REPOSITORY, NESTED_REPOSITORY, triton_pids

from loadgen.cli import main
from loadgen.server import EmbeddedServer

FAST = ["-p", "1000", "-r", "5", "-s", "50"]


def summary(report_dir: Path) -> dict:
    return json.loads((report_dir / "summary.json").read_text())


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_model_failing_a_fraction_of_requests(faults_triton, protocol, tmp_path, capsys):
    url = faults_triton.http if protocol == "http" else faults_triton.grpc
    code = main(["run", "-u", url, "-i", protocol, "-m", "flaky", "--concurrency-range", "2", *FAST,
                 "--report-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    (level,) = summary(tmp_path)["levels"]
    assert level["error_rate"] == pytest.approx(0.2, abs=0.02)  # the model fails 1 request in 5
    assert level["client"]["error_rate"] == level["error_rate"]
    (kind,) = level["errors"]["kinds"]
    assert kind["kind"].startswith("HTTP " if protocol == "http" else "gRPC ")
    assert kind["count"] == level["errors"]["count"] == level["client"]["error_count"]
    assert all("injected failure" in message for message in kind["messages"])
    assert 1 <= len(kind["messages"]) <= 3  # the first few distinct messages (each names its request)
    assert level["errors"]["latency_us"]["p50"] > 0
    # Latency percentiles are the successes'; the server agrees on how many there were.
    assert level["client"]["request_count"] == pytest.approx(4 * kind["count"], rel=0.1)
    assert not level["count_check"]["mismatch"]
    assert f"error rate {level['error_rate']:.2%}" in out
    assert "injected failure" in out


def test_a_model_slower_than_the_request_timeout(faults_triton, tmp_path, capsys):
    code = main(["run", "-u", faults_triton.http, "-m", "slow", "--request-timeout", "100", "-p", "1000", "-r", "3",
                 "--report-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    (level,) = summary(tmp_path)["levels"]
    assert level["error_rate"] == 1.0
    assert level["client"]["request_count"] == 0
    (kind,) = level["errors"]["kinds"]
    assert kind["kind"] == "timeout"
    assert list(kind["messages"]) == ["timeout: no response within 100 ms"]
    latency = level["errors"]["latency_us"]
    assert 100_000 <= latency["p50"] < 150_000  # each failed at its timeout, not at the model's 250 ms
    assert summary(tmp_path)["config"]["request_timeout_ms"] == 100
    assert re.search(r"Errors: (\d+) \(error rate 100\.00%, [\d.]+/sec\): timeout \1\n", out), out


@pytest.mark.parametrize(
    ("protocol", "timeout_ms", "levels", "mode"),
    [("http", 2000, "2:3", "time_windows"), ("grpc", 2000, "2:3", "time_windows"),
     pytest.param("http", 0, "2", "time_windows", marks=pytest.mark.slow),  # 12 s each without a deadline
     pytest.param("grpc", 0, "2", "time_windows", marks=pytest.mark.slow), ("grpc", 2000, "2", "count_windows")],
    ids=["http-deadline", "grpc-deadline", "http-no-deadline", "grpc-no-deadline", "grpc-count-windows"],
)  # fmt: skip
def test_a_model_that_stops_answering_ends_each_level_in_bounded_time(faults_triton, protocol, timeout_ms, levels, mode,
                                                                       tmp_path, capsys):  # fmt: skip
    """Each instance answers 39 requests, then never again, while the server stays live and ready."""
    url = faults_triton.http if protocol == "http" else faults_triton.grpc
    windows, interval_s = 3, 0.5
    started = time.monotonic()
    code = main(["run", "-u", url, "-i", protocol, "-m", "stops-answering", "--concurrency-range", levels,
                 "-p", str(int(interval_s * 1000)), "-r", str(windows), "--request-timeout", str(timeout_ms),
                 "--measurement-mode", mode, "--measurement-request-count", "50", "--report-dir", str(tmp_path)])  # fmt: skip
    took_s = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = summary(tmp_path)
    assert data["status"] == "complete" and len(data["levels"]) == len(levels.split(":"))
    # A count window waits at most max(-p, 1 s) for a completion; the drain the deadline, or 10 s without one.
    window_s = interval_s if mode == "time_windows" else 1.0
    bound_s = windows * window_s + (timeout_ms / 1e3 if timeout_ms else 0) + 10
    assert took_s < len(data["levels"]) * bound_s + 5, f"{took_s:.1f} s for {len(data['levels'])} level(s)"
    kind = "timeout" if timeout_ms else "unanswered"
    for level in data["levels"]:
        assert level["end_s"] - level["start_s"] <= windows * window_s + 1
        drain = level["drain"]
        assert drain["duration_s"] <= (timeout_ms / 1e3 + 0.25 if timeout_ms else 10) + 0.5
        assert drain["unanswered"] == (0 if timeout_ms else level["value"])
        kinds = {each["kind"]: each["count"] for each in level["errors"]["kinds"]}
        assert set(kinds) == {kind} and kinds[kind] >= drain["errors"] >= 1
        assert level["error_rate"] > 0 and not level["stable"]
        assert level["windows"][-1]["request_count"] == 0  # hung by then, whether it answered its 78 in this run or before
        stalled = [window for window in level["windows"] if window["stalled"]]
        assert all(window["outstanding"] >= 1 and window["oldest_outstanding_s"] > 0 for window in stalled)
        # Count windows end when no request succeeded for a second, so a timeout may land in each of them.
        assert stalled or mode == "count_windows"
    if mode == "time_windows":
        stalled_line = re.compile(r": window \d/3 \d+ requests? outstanding for \d+\.\d s, none completed$", re.M)
        assert stalled_line.search(captured.err), captured.err
    assert "0.0 infer/s, latency 0 us\n" not in captured.err
    if not timeout_ms:
        assert re.search(r"of which \d never answered \(outstanding for up to \d+\.\d s\)", captured.out), captured.out
    assert "Requests left without an answer" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "results.csv").read_text().count("\n") == len(data["levels"]) + 1


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "loadgen", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _wait_for_levels(process: subprocess.Popen, count: int) -> list[str]:
    """Reads the progress lines on stderr until `count` levels have finished."""
    lines = []
    for line in process.stderr:
        lines.append(line)
        if sum(" after " in seen for seen in lines) >= count:
            return lines
    raise AssertionError(f"loadgen ended before {count} levels: {''.join(lines)}")


def _repository_copy(source: Path, tmp_path: Path) -> Path:
    """The repository under a path of this test's own, so its server's processes can be told apart."""
    copy = tmp_path / "repository"
    shutil.copytree(source, copy)
    return copy


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("loadgen: ")]


@pytest.mark.parametrize("fault", [signal.SIGKILL, pytest.param(signal.SIGSTOP, marks=pytest.mark.slow)], ids=["killed", "hung"])
def test_a_server_killed_or_hung_mid_sweep(fault, tmp_path):
    repository = _repository_copy(NESTED_REPOSITORY, tmp_path)
    server = EmbeddedServer(repository, tmp_path / "server.log")
    endpoints = server.start()
    report = tmp_path / "report"
    try:
        process = _start(["run", "-u", endpoints.http, "-m", "nested-outer", "--concurrency-range", "1:50",
                          "-p", "500", "-r", "3", "-s", "100", "--report-dir", str(report)])  # fmt: skip
        try:
            _wait_for_levels(process, 2)
            finished = summary(report)  # written as each level finished, while the run goes on
            assert finished["status"] == "running" and len(finished["levels"]) >= 2
            os.kill(server.pid, fault)
            killed = time.monotonic()
            out, err = process.communicate(timeout=60)
            detected_s = time.monotonic() - killed
        finally:
            process.kill()
    finally:
        os.kill(server.pid, signal.SIGKILL)  # a stopped server would not heed stop()'s SIGTERM
        server.stop()
    assert process.returncode == 3
    assert detected_s < 10, f"the dead server was noticed after {detected_s:.1f} s"
    (line,) = _error_lines(err)
    assert line.startswith(f"loadgen: error: the server at {endpoints.http} stopped answering"), err
    assert "finished level(s) kept" in line
    data = summary(report)
    assert data["status"] == "failed" and "stopped answering" in data["stop_reason"]
    assert len(data["levels"]) >= 2
    assert (report / "results.csv").read_text().count("\n") == len(data["levels"]) + 1
    assert (report / "report.html").exists()
    assert "Traceback" not in err


def test_the_embedded_server_killed_mid_sweep(tmp_path):
    repository = _repository_copy(NESTED_REPOSITORY, tmp_path)
    report = tmp_path / "report"
    process = _start(["run", "--model-repository", str(repository), "-m", "nested-outer", "--concurrency-range", "1:50",
                      "-p", "500", "-r", "3", "-s", "100", "--report-dir", str(report)])  # fmt: skip
    try:
        _wait_for_levels(process, 1)
        (triton,) = [pid for pid in triton_pids(repository) if b"tritonserver" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(triton, signal.SIGKILL)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 3
    (line,) = _error_lines(err)
    assert line.startswith("loadgen: error: the embedded Triton server was killed by SIGKILL during concurrency "), err
    assert summary(report)["levels"]
    assert not triton_pids(repository), "the killed server's backend stubs were left behind"


@pytest.mark.parametrize("stop", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_stops_the_run_and_its_embedded_server(stop, tmp_path):
    repository = _repository_copy(FAULTS_REPOSITORY, tmp_path)
    report = tmp_path / "report"
    # A slow model at a long timeout: the signal comes while requests are in flight, and they are abandoned.
    process = _start(["run", "--model-repository", str(repository), "-m", "slow", "--concurrency-range", "1:4",
                      "--request-timeout", "60000", "-p", "600", "-r", "3", "-s", "100", "--report-dir", str(report)])  # fmt: skip
    try:
        _wait_for_levels(process, 1)
        process.send_signal(stop)
        signalled = time.monotonic()
        out, err = process.communicate(timeout=60)
        stopped_s = time.monotonic() - signalled
    finally:
        process.kill()
    assert process.returncode == 130
    assert _error_lines(err) == [f"loadgen: interrupted by {stop.name}"]
    data = summary(report)
    assert data["status"] == "interrupted" and data["stop_reason"] == f"interrupted by {stop.name}"
    assert [level["value"] for level in data["levels"]][:1] == [1]
    assert (report / "report.html").exists()
    assert stopped_s < 30, f"loadgen took {stopped_s:.1f} s to stop"
    assert not triton_pids(repository), "the run left Triton processes behind"


def test_a_killed_loadgen_loses_no_finished_level(nested_triton, tmp_path):
    report = tmp_path / "report"
    process = _start(["run", "-u", nested_triton.http, "-m", "nested-outer", "--concurrency-range", "1:50",
                      "-p", "300", "-r", "3", "-s", "100", "--report-dir", str(report)])  # fmt: skip
    try:
        _wait_for_levels(process, 2)
        process.kill()  # SIGKILL: no handler runs, nothing is written after this
        process.wait()
    finally:
        process.kill()
    data = summary(report)
    assert data["status"] == "running"
    assert [level["value"] for level in data["levels"]][:2] == [1, 2]
    assert not list(report.glob("*.tmp")), "a half-written file was left behind"
