"""`loadgen profile-model` end to end: the shipped centernet counted and timed in ONNX Runtime with
the thread settings of its config.pbtxt, as JSON and as a table; bad input one line, exit 2."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_model_cost import CENTERNET, centernet_builder

from loadgen.cli import main

ROOT = Path(__file__).resolve().parent.parent
CENTERNET_FLOPS = 454_197_248  # worked out layer by layer in test_model_cost
CENTERNET_PARAMS = 54_100


def profile(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "profile-model", *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def centernet_dir(tmp_path_factory) -> Path:
    """A Triton model directory as the shipped one, its ONNX built by its own builder (the repository's
    1/model.onnx exists only once a server has loaded the model)."""
    model_dir = tmp_path_factory.mktemp("repo") / "centernet"
    (model_dir / "1").mkdir(parents=True)
    shutil.copy(CENTERNET / "config.pbtxt", model_dir / "config.pbtxt")
    centernet_builder().write(str(model_dir / "1" / "model.onnx"))
    return model_dir


def test_json_has_every_figure_and_the_config_threads(centernet_dir):
    done = profile(str(centernet_dir / "1" / "model.onnx"), "--json", "--warmup", "100", "--duration", "1")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["flops"] == CENTERNET_FLOPS and data["params"] == CENTERNET_PARAMS and data["batch_size"] == 1
    assert data["bytes"] == data["weight_bytes"] + data["activation_bytes"] > 0
    assert data["intensity"] == pytest.approx(data["flops"] / data["bytes"])
    assert set(data["latency_ms"]) == {"min", "mean", "median", "p90", "p95", "p99", "max"}
    assert 0 < data["latency_ms"]["min"] <= data["latency_ms"]["median"] <= data["latency_ms"]["max"]
    assert data["throughput"] == pytest.approx(data["iterations"] / data["wall_s"])
    assert data["iterations"] >= 10 and data["wall_s"] >= 1.0 and data["warmup_ms"] == 100
    assert len(data["layers"]) == 20
    assert set(data["layers"][0]) == {"name", "op_type", "flops", "params", "bytes", "intensity"}
    assert sum(layer["flops"] for layer in data["layers"]) == data["flops"]
    # One intra-op and one inter-op thread, as the server's model.py runs it, read from its config.pbtxt.
    assert data["threads"]["intra_op"] == 1 and data["threads"]["inter_op"] == 1
    assert "config.pbtxt" in data["threads"]["source"] and "intra_op_num_threads" in data["threads"]["source"]
    assert data["stable"] == (data["cov_percent"] <= 5.0) and data["cov_warn_percent"] == 5.0
    assert data["uncounted_ops"] == [] and any(note.startswith("Conv:") for note in data["counted"])
    roof = data["roof"]
    assert roof["device"].startswith("CPU") and roof["peak_flops_per_s"] > 0 and roof["bandwidth_bytes_per_s"] > 0
    assert set(roof["sources"]) == {"flops", "bandwidth"}
    assert data["achieved_flops_per_s"] == pytest.approx(data["flops"] * data["throughput"])
    assert data["share_of_roof"] == pytest.approx(data["achieved_flops_per_s"] / roof["attainable_flops_per_s"])


def test_table_batch_size_and_the_stability_warning(centernet_dir):
    # A coefficient of variation is never 0 on a real machine: --cov-warn 0 makes the warning fire.
    done = profile(str(centernet_dir / "1" / "model.onnx"), "-b", "2", "--intra-op-threads", "2", "--warmup", "0",
                   "--iterations", "3", "--duration", "0", "--cov-warn", "0%")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("batch size 2, figures per inference")
    total = next(line for line in lines if line.startswith("total"))
    assert f"{CENTERNET_FLOPS:,}" in total and f"{CENTERNET_PARAMS:,}" in total  # per inference at any batch size
    assert any(line.strip().startswith("threads: intra-op 2, inter-op 1, from --intra-op-threads") for line in lines)
    assert "  warm-up 0 ms, 3 iterations in" in done.stdout
    assert any(line.startswith("WARNING: latency is unstable, with coefficient of variation") for line in lines)
    assert "Counted (1 multiply-accumulate = 2 FLOPs):" in lines


def test_no_timing_counts_only(centernet_dir):
    done = profile(str(centernet_dir / "1" / "model.onnx"), "--no-timing", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["flops"] == CENTERNET_FLOPS and "latency_ms" not in data and "roof" not in data


def test_peaks_given_override_the_measured_roof(centernet_dir):
    done = profile(str(centernet_dir / "1" / "model.onnx"), "--json", "--warmup", "0", "--duration", "0.2",
                   "--peak-tflops", "2", "--peak-bandwidth-gbs", "50")  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    roof = data["roof"]
    assert (roof["peak_flops_per_s"], roof["bandwidth_bytes_per_s"]) == (2e12, 50e9)
    assert roof["sources"] == {"flops": "--peak-tflops", "bandwidth": "--peak-bandwidth-gbs"}
    achieved = data["flops"] * data["throughput"]
    assert data["share_of_roof"] == pytest.approx(achieved / min(2e12, data["intensity"] * 50e9))


@pytest.mark.parametrize("args, message", [
    (["missing.onnx"], "no such file"),
    ([str(ROOT / "README.md")], "is not an ONNX model"),
    (["MODEL", "--shape", "input:3,256"], "does not fit the input's shape [N,3,256,256]"),
    (["MODEL", "--shape", "image:3,256,256"], "not an input of the model: its inputs are input"),
    (["MODEL", "--shape", "input:3xx"], "is not NAME:d1,d2"),
    (["MODEL", "-b", "0"], "-b must be at least 1"),
    (["MODEL", "--cov-warn", "lots"], "--cov-warn 'lots' is not a percentage"),
    (["MODEL", "--peak-tflops", "0"], "--peak-tflops must be above 0"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(centernet_dir, capsys, args, message):
    args = [str(centernet_dir / "1" / "model.onnx") if arg == "MODEL" else arg for arg in args]
    assert main(["profile-model", *args, "--no-timing"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("loadgen: error: ") and message in err
