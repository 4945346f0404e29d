"""Replaying a recording against the real embedded Triton with `loadgen run --schedule-file`:
every request goes out at its recorded time and reaches the server, the level is the whole
recording, and a run's export, turned into a schedule file, replays its sends.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from loadgen.cli import main

MODEL = "add-one"  # nested_triton's: FP32 [B,4], answers in microseconds


def replayed(url: str, trace, tmp_path, *extra: str) -> tuple[dict, list[dict]]:
    """`loadgen run` replaying `trace` once, windows of 500 ms, with a per-request export: the level
    (summary.json's) and the export's requests."""
    report, export = tmp_path / "replayed", tmp_path / "replayed.json"
    assert main(["run", "-u", url, "-m", MODEL, "--schedule-file", str(trace), "-p", "500", "--profile-export-file",
                 str(export), "--report-dir", str(report), *extra]) == 0  # fmt: skip
    (level,) = json.loads((report / "summary.json").read_text())["levels"]
    (experiment,) = json.loads(export.read_text())["experiments"]
    return level, experiment["requests"]


def test_a_recording_is_sent_request_by_request_at_its_times(nested_triton, tmp_path):
    # 200 requests over 2 s, in bursts and lulls, each naming one of the 4 entries of the input data.
    rng = np.random.default_rng(17)
    offsets_ms = np.sort(np.concatenate([rng.uniform(0, 2000, 150), 700 + rng.uniform(0, 20, 50)]))
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"offset_ms": round(ms, 3), "input": i % 4, "batch_size": 2}) + "\n"
                             for i, ms in enumerate(offsets_ms)))  # fmt: skip
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"data": [{"INPUT0": [i, i, i, i]} for i in range(8)]}))  # -b 2: 4 requests
    level, lines = replayed(nested_triton.http, trace, tmp_path, "--input-data", str(data))

    # One level, the whole recording: about 2 s of 500 ms windows, every one merged; nothing left to drain.
    assert (level["label"], level["value"], level["stable"]) == ("Replay Speed", 1, True)
    assert len(level["windows"]) >= 4 and level["merged_windows"] == len(level["windows"])
    assert level["client"]["request_count"] == 200 and level["client"]["error_count"] == 0 and level["drain"]["in_flight"] == 0
    # The server saw exactly those: 200 requests of 2 items each (the file's batch size).
    assert level["server"]["success_count"] == 200 and level["server"]["inference_count"] == 400
    assert level["open_loop"]["target_rate_per_s"] == pytest.approx(199 / ((offsets_ms[-1] - offsets_ms[0]) / 1e3), rel=1e-5)
    # Each at its recorded time from the level's start: the intended times are the offsets, to the ns.
    intended_ns = np.sort([line["intended_timestamp"] for line in lines])
    offsets_ns = np.round(np.round(offsets_ms, 3) * 1e6).astype(np.int64)
    assert (intended_ns - intended_ns[0] == offsets_ns - offsets_ns[0]).all()
    # And sent then (timing loose: a noisy 2-core VM with Triton on it).
    lag_ms = np.array([line["timestamp"] - line["intended_timestamp"] for line in lines]) / 1e6
    assert lag_ms.min() >= 0 and np.median(lag_ms) < 5 and lag_ms.max() < 200


def test_a_runs_export_replays_its_sends(nested_triton, tmp_path, capsys):
    export = tmp_path / "export.json"
    run = ["run", "-u", nested_triton.http, "-m", MODEL, "--request-rate-range", "80", "--request-distribution", "poisson",
           "--seed", "3", "-b", "2", "-p", "500", "-r", "3", "-s", "100", "--profile-export-file", str(export),
           "--report-dir", str(tmp_path / "report")]  # fmt: skip
    assert main(run) == 0
    capsys.readouterr()
    assert main(["export-schedule", str(tmp_path / "report")]) == 0
    trace = tmp_path / "trace.jsonl"
    trace.write_text(capsys.readouterr().out)
    (experiment,) = json.loads(export.read_text())["experiments"]
    recorded_ns = np.sort([request["intended_timestamp"] for request in experiment["requests"]])
    assert main(["export-schedule", str(export)]) == 0  # the file itself: no model, no batch size
    assert json.loads(capsys.readouterr().out.split("\n")[1]) == {"offset_ms": (recorded_ns[1] - recorded_ns[0]) / 1e6}

    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(lines) == len(recorded_ns) > 60 and {(line["model"], line["batch_size"]) for line in lines} == {(MODEL, 2)}
    level, replayed_lines = replayed(nested_triton.http, trace, tmp_path)
    out, err = capsys.readouterr()
    # A replay played once is measured whole, window after window until it ends: not "until stable".
    assert "  Measuring the whole replay, played once: no stabilization" in out and "Stabilizing using" not in out
    progress = out + err
    assert "replay speed 1: window 1 " in progress and "window 1/" not in progress
    assert f"replay speed 1: replayed in {len(level['windows'])} windows" in progress

    assert level["client"]["request_count"] == level["server"]["success_count"] == len(recorded_ns)
    assert level["server"]["inference_count"] == 2 * len(recorded_ns)  # the file's batch size, 2
    replayed_ns = np.sort([line["intended_timestamp"] for line in replayed_lines])
    assert (replayed_ns - replayed_ns[0] == recorded_ns - recorded_ns[0]).all()  # the run's sends, to the ns
