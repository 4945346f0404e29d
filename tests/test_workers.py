"""--workers: the load from worker processes on a local Ray cluster, against the embedded server.

One run starts its own Ray (as a user's run does) and its own server on the echo models, so
that the whole path is checked once: splitting, coordinated windows, merging, and cleanup. The
others join the session's Ray cluster (--ray-address; starting Ray takes ~8 s) and run against
the session's echo server (-u).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ECHO_REPOSITORY

pytest.importorskip("ray")


@pytest.fixture
def loadgen():
    """Start `loadgen run` on the echo models; a run still going when its test ends is killed."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "loadgen", "run", "-m", "ident", *args]
        started.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return started[-1]

    yield start
    for run in started:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)  # its handler stops the server and Ray
            run.communicate(timeout=60)


def error_lines(stderr: str) -> list[str]:
    """What loadgen itself says on stderr, beside its progress lines."""
    return [line for line in stderr.splitlines() if line.startswith("loadgen: ")]


def ray_left_behind(run_pid: int) -> list[str]:
    """Ray processes of the session that run started (their command lines name the driver's pid)."""
    found = subprocess.run(["pgrep", "-af", f"session_[0-9_-]+_{run_pid}"], capture_output=True, text=True)
    return found.stdout.splitlines()


def on_the_cluster(server, cluster) -> list[str]:
    return ["-u", server.http, "--workers", "2", "--ray-address", cluster.address]


def no_workers_left(cluster, wait_s: float = 10.0) -> bool:
    """Whether the run's workers are gone from the cluster: killed actors' processes exit a moment after."""
    deadline = time.monotonic() + wait_s
    while cluster.workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not cluster.workers()


def test_a_sweep_from_two_workers_merges_into_one_report(loadgen, tmp_path):
    run = loadgen("--model-repository", str(ECHO_REPOSITORY), "--workers", "2", "--concurrency-range", "1:3", "-p", "1000", "-r", "6", "-s", "50",
                  "--goodput-latency-ms", "60000", "--report-dir", str(tmp_path))  # fmt: skip
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["workers"] == 2
    levels = summary["levels"]
    assert [level["value"] for level in levels] == [1, 2, 3]
    for level in levels:
        workers = level["workers"]
        assert [w["worker"] for w in workers] == [0, 1]
        assert sum(w["share"] for w in workers) == level["value"]  # the concurrency, split
        # Counts and throughputs summed; the server's own count agrees with the merged one.
        assert sum(w["request_count"] for w in workers) == level["client"]["request_count"]
        assert sum(w["throughput_infer_per_s"] for w in workers) == pytest.approx(level["client"]["throughput_infer_per_s"])
        # Each worker counted its requests within the bound: every one of them, here.
        assert level["client"]["goodput_infer_per_s"] == level["client"]["throughput_infer_per_s"]
        assert not level["count_check"]["mismatch"], level["count_check"]
        assert level["incomplete"] is None
        assert len({w["pid"] for w in workers}) == 2 and os.getpid() not in {w["pid"] for w in workers}
    # Concurrency 1 over two workers: one of them idles.
    assert [w["request_count"] > 0 for w in levels[0]["workers"]] == [True, False]
    assert "Workers:" in out and "Request concurrency: 3" in out
    rows = (tmp_path / "workers.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3
    assert not ray_left_behind(run.pid)


def test_an_open_loop_rate_is_split_and_kept(loadgen, echo_triton, ray_cluster, tmp_path):
    run = loadgen("-u", echo_triton.grpc, "--workers", "2", "--ray-address", ray_cluster.address, "-i", "grpc", "--request-rate-range", "400", "--request-distribution", "poisson",
                  "--seed", "3", "-p", "1500", "-r", "6", "-s", "50", "--goodput-latency-ms", "0.001",
                  "--report-dir", str(tmp_path))  # fmt: skip
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    (level,) = json.loads((tmp_path / "summary.json").read_text())["levels"]
    assert [w["share"] for w in level["workers"]] == [200, 200]
    assert level["open_loop"]["achieved_rate_per_s"] == pytest.approx(400, rel=0.1)
    assert level["client"]["goodput_infer_per_s"] == 0.0  # no request within 1 µs of when it was due
    for worker in level["workers"]:
        assert worker["request_count"] > 0
        assert set(worker["schedule_lag_us"]) == {"p50", "p99", "max"}
    assert not level["count_check"]["mismatch"], level["count_check"]
    assert no_workers_left(ray_cluster)


def test_the_profile_export_of_two_workers_is_one_file(loadgen, echo_triton, ray_cluster, tmp_path):
    path = tmp_path / "export.json"
    run = loadgen(*on_the_cluster(echo_triton, ray_cluster), "--concurrency-range", "2:4:2", "-p", "1000", "-r", "4", "-s", "50",
                  "--report-dir", str(tmp_path / "report"), "--profile-export-file", str(path))  # fmt: skip
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    data = json.loads(path.read_text())
    levels = json.loads((tmp_path / "report" / "summary.json").read_text())["levels"]
    assert [e["experiment"] for e in data["experiments"]] == [{"mode": "concurrency", "value": v} for v in (2, 4)]
    for experiment, level in zip(data["experiments"], levels, strict=True):
        windows = level["windows"]
        # Every request of every window, from both workers (each worker's digests count its own).
        assert len(experiment["requests"]) == sum(w["request_count"] + w["error_count"] for w in windows) > 0
        boundaries = experiment["window_boundaries"]
        assert len(boundaries) == len(windows) + 1 and boundaries == sorted(boundaries)
        # A worker closes its window within the round trip after the driver's boundary: on the same wall clock,
        # its requests end after the first boundary and at most that late after the last.
        ends = [r["response_timestamps"][0] for r in experiment["requests"]]
        assert boundaries[0] <= min(ends) and max(ends) <= boundaries[-1] + 10**9


def test_a_worker_that_dies_mid_level_is_reported_and_the_level_marked_incomplete(loadgen, echo_triton, ray_cluster, tmp_path):
    run = loadgen(*on_the_cluster(echo_triton, ray_cluster), "--concurrency-range", "2", "-p", "3000", "-r", "10", "-s", "1",
                  "--report-dir", str(tmp_path))  # fmt: skip
    deadline = time.monotonic() + 120
    while len(ray_cluster.workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    victim = min(ray_cluster.workers())
    time.sleep(5)  # into the level's windows
    os.kill(victim, signal.SIGKILL)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 3, err
    (line,) = error_lines(err)
    assert line.startswith("loadgen: error: worker 0 (") or line.startswith("loadgen: error: worker 1 ("), err
    assert f"pid {victim}) was lost" in line and "during concurrency 2" in line, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    (level,) = summary["levels"]
    assert level["incomplete"] and "was lost" in level["incomplete"]
    assert not level["stable"]
    lost = [w for w in level["workers"] if w["lost"]]
    assert [w["pid"] for w in lost] == [victim]
    survivor = next(w for w in level["workers"] if not w["lost"])
    assert survivor["request_count"] > 0  # what the other worker measured is kept
    assert "Incomplete" in out or "incomplete" in out
    assert no_workers_left(ray_cluster)


def test_workers_need_ray_installed(tmp_path, monkeypatch, capsys):
    from loadgen.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    code = main(["run", "--model-repository", str(ECHO_REPOSITORY), "-m", "ident", "--workers", "2", "--report-dir", str(tmp_path)])
    assert code == 2
    assert "pip install 'loadgen[ray]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--ray-address", "auto"], "add --workers N"),
        (["--workers", "2", "--ray-address", "nowhere"], "is not a Ray address"),
        (["--workers", "2", "--export-metrics-port", "9999"], "does not apply to --workers"),
    ],
)
def test_bad_worker_flags_get_one_line(args, message, tmp_path, capsys):
    from loadgen.cli import main

    code = main(["run", "--model-repository", str(ECHO_REPOSITORY), "-m", "ident", *args, "--report-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_an_unreachable_ray_cluster_is_one_line(loadgen, echo_triton, tmp_path):
    run = loadgen("-u", echo_triton.http, "--workers", "2", "--ray-address", "127.0.0.1:1", "--report-dir", str(tmp_path))
    out, err = run.communicate(timeout=60)
    assert run.returncode == 3, err
    (line,) = error_lines(err)
    assert "Ray cluster" in line and "Traceback" not in err, err


def test_ray_that_does_not_start_in_time_is_a_server_error(monkeypatch):
    from loadgen.errors import ServerError
    from loadgen.options import build_config
    from loadgen.workers import pool

    def timed_out(**_):
        raise Exception("The current node timed out during startup.")  # what Ray raises, a bare Exception

    monkeypatch.setattr(pool.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(pool.ray, "init", timed_out)
    with pytest.raises(ServerError, match=r"cannot reach a Ray cluster at this machine \(The current node timed out"):
        pool._connect(build_config({"workers": 2}).load)
