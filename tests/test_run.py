"""loadgen run against the real Triton server: sweeps, breakdowns, reports and errors."""

from __future__ import annotations

import base64
import csv
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from conftest import NESTED_REPOSITORY, triton_pids

import loadgen.server as server_module
from loadgen.cli import main
from loadgen.inputs import sample_photographs
from loadgen.server import EmbeddedServer

ENSEMBLE = "centernet-ensemble"
COMPOSING = {"image-preprocess", "centernet", "centernet-postprocess"}
# Short windows and a loose stability bound: these tests check the mechanics, not the figures.
FAST = ["-p", "1000", "-r", "5", "-s", "50"]
PA_COLUMNS = [
    "Concurrency", "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue",
    "Server Compute Input", "Server Compute Infer", "Server Compute Output", "Client Recv",
    "p50 latency", "p90 latency", "p95 latency", "p99 latency",
]


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def summary(report_dir: Path) -> dict:
    return json.loads((report_dir / "summary.json").read_text())


def assert_counts_agree(level: dict) -> None:
    check = level["count_check"]
    assert level["client"]["request_count"] > 0
    assert abs(check["server_success"] - check["client_success"]) <= check["tolerance"]
    assert not check["mismatch"]


def test_http_sweep_of_the_ensemble(triton, tmp_path, capsys):
    pa_csv = tmp_path / "pa" / "out.csv"
    code, out, err = run(
        ["run", "-u", triton.http, "-m", ENSEMBLE, "--concurrency-range", "1:2", *FAST,
         "--report-dir", str(tmp_path / "report"), "-f", str(pa_csv), "--verbose-csv"],
        capsys,
    )
    assert code == 0, err
    data = summary(tmp_path / "report")
    assert [level["value"] for level in data["levels"]] == [1, 2]
    for level in data["levels"]:
        client, server = level["client"], level["server"]
        assert client["error_count"] == 0
        assert client["throughput_infer_per_s"] > 0
        # Not client > server: Triton closes an ensemble's success time after the response has left,
        # so at concurrency 1 the server's average can exceed the client's by a little.
        assert client["avg_latency_us"] > 0 and server["avg_request_latency_us"] > 0
        assert_counts_agree(level)
        composing = {c["name"]: c for c in server["composing"]}
        assert set(composing) == COMPOSING
        for model in composing.values():
            assert model["success_count"] > 0 and model["compute_infer_us"] > 0
        # An ensemble's compute and queue are its composing models', summed along the pipeline.
        assert server["compute_us"] == pytest.approx(sum(c["compute_us"] for c in composing.values()))
        assert server["queue_us"] == pytest.approx(sum(c["queue_us"] for c in composing.values()))
        # centernet does the real work: it dominates the pipeline's compute.
        assert composing["centernet"]["compute_infer_us"] > composing["centernet-postprocess"]["compute_infer_us"]
    assert data["config"]["model_name"] == ENSEMBLE
    assert data["server"]["version"]

    assert "Request concurrency: 1" in out and "Request concurrency: 2" in out
    assert "  Composing models: " in out
    for name in COMPOSING:
        assert f"  {name}, version: 1" in out
    assert "Avg HTTP time:" in out
    assert "Inferences/Second vs. Client Average Batch Latency" in out
    assert "Concurrency: 2, throughput:" in out

    for path in [pa_csv, tmp_path / "report" / "results.csv"]:
        rows = list(csv.reader(path.open()))
        assert rows[0] == PA_COLUMNS + ["Avg latency", "request/response", "response wait"]
        assert [row[0] for row in rows[1:]] == ["1", "2"]
        assert float(rows[1][1]) == pytest.approx(data["levels"][0]["client"]["throughput_infer_per_s"], rel=1e-5)
        for name in COMPOSING:
            # perf_analyzer's composing CSV: the short header, its share of the throughput, no client times.
            model_rows = list(csv.reader((path.parent / f"{name}_v1.{path.name}").open()))
            assert model_rows[0] == PA_COLUMNS[:9] and len(model_rows) == 3
            for level, model_row in zip(data["levels"], model_rows[1:]):
                model = next(c for c in level["server"]["composing"] if c["name"] == name)
                share = model["success_count"] / level["server"]["success_count"]
                assert float(model_row[1]) == pytest.approx(share * level["client"]["throughput_infer_per_s"], rel=1e-5)
                assert model_row[2] == model_row[8] == "0"
                assert int(model_row[3]) == int(model["overhead_us"])
                assert int(model_row[4]) == int(model["queue_us"])


def test_grpc_run(triton, tmp_path, capsys):
    code, out, err = run(
        ["run", "-u", triton.grpc, "-i", "grpc", "-m", ENSEMBLE, *FAST, "--report-dir", str(tmp_path)], capsys
    )
    assert code == 0, err
    (level,) = summary(tmp_path)["levels"]
    assert level["client"]["error_count"] == 0
    assert_counts_agree(level)
    assert {c["name"] for c in level["server"]["composing"]} == COMPOSING
    assert "Avg gRPC time:" in out


def test_json_input_data_reaches_the_model(triton, tmp_path, capsys):
    photo = sample_photographs()[0].read_bytes()
    good = tmp_path / "photo.json"
    # perf_analyzer's b64 for a BYTES input is the serialized tensor: a 4-byte length, then the bytes.
    serialized = len(photo).to_bytes(4, "little") + photo
    good.write_text(json.dumps({"data": [{"IMAGE": {"b64": base64.b64encode(serialized).decode()}}]}))
    code, _, err = run(["run", "-u", triton.http, "-m", ENSEMBLE, "--input-data", str(good), *FAST,
                        "--report-dir", str(tmp_path / "good")], capsys)
    assert code == 0, err
    (level,) = summary(tmp_path / "good")["levels"]
    assert level["client"]["error_count"] == 0 and level["client"]["request_count"] > 0

    # Bytes that are no image: the preprocessing model rejects every request, and loadgen counts it.
    bad = tmp_path / "text.json"
    bad.write_text(json.dumps({"data": [{"IMAGE": {"content": ["not an image"], "shape": [1]}}]}))
    code, out, err = run(["run", "-u", triton.http, "-m", ENSEMBLE, "--input-data", str(bad), "-p", "500", "-r", "3",
                          "--report-dir", str(tmp_path / "bad")], capsys)
    assert code == 0, err
    (level,) = summary(tmp_path / "bad")["levels"]
    assert level["client"]["request_count"] == 0
    assert level["client"]["error_count"] > 0
    assert level["error_rate"] == 1.0
    (kind,) = level["errors"]["kinds"]
    assert kind["kind"] == "HTTP 500" and kind["count"] == level["errors"]["count"]  # Triton: a backend error is a 500
    assert any("not a decodable image" in message for message in kind["messages"])
    assert not level["stable"]


def test_count_cross_check_flags_other_traffic(triton, tmp_path, capsys):
    stop = threading.Event()
    photo = sample_photographs()[0].read_bytes()

    def other_traffic():
        client = triton_http.InferenceServerClient(triton.http)
        tensor = triton_http.InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[photo]], dtype=np.object_))
        while not stop.is_set():
            client.infer(ENSEMBLE, [tensor])

    threads = [threading.Thread(target=other_traffic) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        code, out, err = run(["run", "-u", triton.http, "-m", ENSEMBLE, "-p", "1000", "-r", "3",
                              "--report-dir", str(tmp_path)], capsys)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert code == 0, err
    (level,) = summary(tmp_path)["levels"]
    check = level["count_check"]
    assert check["mismatch"]
    assert check["server_success"] > check["client_success"] + check["tolerance"]
    assert "other traffic reached the model" in out


def test_nested_ensemble_breakdown(nested_triton, tmp_path, capsys):
    code, out, err = run(["run", "-u", nested_triton.http, "-m", "nested-outer", *FAST, "--report-dir", str(tmp_path)], capsys)
    assert code == 0, err
    (level,) = summary(tmp_path)["levels"]
    assert_counts_agree(level)
    outer = level["server"]
    inner = next(c for c in outer["composing"] if c["name"] == "nested-inner")
    assert inner["composing"], "the inner ensemble's own composing models are found"
    for model in [inner, *inner["composing"]]:
        assert model["success_count"] > 0
        assert f"  {model['name']}, version: " in out
    leaves = [c for c in outer["composing"] if not c["composing"]] + inner["composing"]
    assert outer["compute_us"] == pytest.approx(sum(c["compute_us"] for c in leaves))


def test_run_without_url_starts_and_stops_the_embedded_server(tmp_path, capsys):
    before = triton_pids(NESTED_REPOSITORY)
    code, out, err = run(["run", "--model-repository", str(NESTED_REPOSITORY), "-m", "nested-outer",
                          "-p", "500", "-r", "3", "-s", "100", "--collect-metrics", "--report-dir", str(tmp_path)], capsys)
    assert code == 0, err
    (level,) = summary(tmp_path)["levels"]
    assert level["client"]["request_count"] > 0
    assert level["metrics"]["avg_cpu_utilization"] > 0  # scraped from the embedded server's own metrics port
    assert "Started HTTPService" in (tmp_path / "server.log").read_text()
    assert triton_pids(NESTED_REPOSITORY) <= before, "the run left Triton processes behind"


def _start_serve(tmp_path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "serve", "--model-repository", str(NESTED_REPOSITORY), "--log-file", str(tmp_path / "t.log")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = [process.stdout.readline() for _ in range(4)]
    assert lines[0].startswith("HTTP:    http://127.0.0.1:"), lines
    return process, lines[0].split("http://")[1].strip()


def _wait_gone(pids: set[int], timeout_s: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pids & triton_pids(NESTED_REPOSITORY):
        time.sleep(0.5)
    return pids & triton_pids(NESTED_REPOSITORY)


def test_a_port_taken_before_triton_binds_it_is_chosen_again(tmp_path, monkeypatch):
    """Between choosing a free port and Triton binding it, another process may take it: the start tries new ones."""
    choose, taken = server_module.free_ports, []

    def taken_once(count):
        ports = choose(count)
        if not taken:  # someone else binds the first HTTP port chosen
            squatter = socket.socket()
            squatter.bind(("127.0.0.1", ports[0]))
            squatter.listen()
            taken.append(squatter)
        return ports

    monkeypatch.setattr(server_module, "free_ports", taken_once)
    repository = tmp_path / "repository"
    repository.mkdir()  # an empty repository: Triton starts with no model, in a second
    server = EmbeddedServer(repository, tmp_path / "server.log")
    try:
        endpoints = server.start()
        assert endpoints.http != f"127.0.0.1:{taken[0].getsockname()[1]}"
        assert "already in use" in (tmp_path / "server.log").read_text()  # the first try met the squatter
    finally:
        server.stop()
        taken[0].close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_serve_until_a_signal(tmp_path, stop):
    before = triton_pids(NESTED_REPOSITORY)
    process, url = _start_serve(tmp_path)
    try:
        assert triton_http.InferenceServerClient(url).is_model_ready("nested-outer")
    finally:
        process.send_signal(stop)
        process.wait(timeout=60)
    assert process.returncode == 0
    assert triton_pids(NESTED_REPOSITORY) <= before, "serve left Triton processes behind"


def test_killed_loadgen_takes_its_server_with_it(tmp_path):
    before = triton_pids(NESTED_REPOSITORY)
    process, _ = _start_serve(tmp_path)
    ours = triton_pids(NESTED_REPOSITORY) - before
    assert ours, "the server's processes are found"
    process.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal stops Triton
    process.wait()
    assert not _wait_gone(ours), "a killed loadgen left Triton processes behind"


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["run", "--concurrency-range", "4:1"], 2, "ends before it starts"),
        (["run", "-b", "0"], 2, "batch size"),
        (["run", "--bogus"], 2, "unrecognized arguments"),
        (["run", "-u", "127.0.0.1:9"], 2, "-m/--model-name is required"),
        (["run", "-u", "127.0.0.1:9", "-m", "x", "-p", "500"], 3, "127.0.0.1:9"),
    ],
)
def test_bad_input_gets_one_line(args, code, message, tmp_path, capsys):
    result, out, err = run([*args, "--report-dir", str(tmp_path)], capsys)
    assert result == code
    assert message in err
    assert err.count("\n") == 1 and err.startswith("loadgen: error: ")


def test_unknown_model_is_a_usage_error(triton, tmp_path, capsys):
    code, _, err = run(["run", "-u", triton.http, "-m", "no-such-model", "--report-dir", str(tmp_path)], capsys)
    assert code == 2
    assert "no-such-model" in err and err.count("\n") == 1


def test_interrupted_run_keeps_finished_levels(nested_triton, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "run", "-u", nested_triton.http, "-m", "nested-outer",
         "--concurrency-range", "1:50", "-p", "300", "-r", "3", "-s", "100", "--report-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in process.stderr:  # progress, one line per window and per level
            if line.startswith("concurrency 2:") and "after" in line:
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    data = summary(tmp_path)
    assert data["stop_reason"] == "interrupted by SIGINT" and data["status"] == "interrupted"
    assert [level["value"] for level in data["levels"]][:2] == [1, 2]
    assert "Stopped: interrupted by SIGINT" in out
    assert "loadgen: interrupted by SIGINT" in err
    assert f"Report: {tmp_path}" in err


def test_count_windows_percentile_and_config_file(nested_triton, tmp_path, capsys):
    config = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
    code, out, err = run(["run", "--config", str(config), "-u", nested_triton.http, "-m", "nested-outer",
                          "--concurrency-range", "3", "--measurement-mode", "count_windows",
                          "--measurement-request-count", "40", "--percentile", "95", "--report-dir", str(tmp_path)], capsys)
    assert code == 0, err
    data = summary(tmp_path)
    assert data["config"]["concurrency_range"] == "3:3:1"  # the flag overrides the file's 1:2
    assert data["config"]["windows"]["max_trials"] == 5  # from the file
    (level,) = data["levels"]
    assert level["value"] == 3
    assert all(window["request_count"] >= 40 for window in level["windows"])
    assert level["client"]["percentile_latency_us"]["p95"] > 0
    assert '  Using "count_windows" mode for stabilization' in out
    assert "  Minimum number of samples in each window: 40" in out
    assert "  Stabilizing using p95 latency and throughput" in out
    assert "    Avg latency:" not in out  # perf_analyzer drops it when stabilizing on a percentile
    assert "Inferences/Second vs. Client p95 Batch Latency" in out
