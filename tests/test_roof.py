"""The machine's roof: CPU figures measured and cached, GPU datasheet lookups, overrides, roofline arithmetic."""

import json
from pathlib import Path

import pytest

from loadgen.errors import RoofUnknown, UsageError
from loadgen.roof import (
    CACHE_FILE,
    Roof,
    attainable,
    cpu_roof,
    gpu_roof,
    gpu_spec,
    resolve_roof,
    ridge_point,
    server_gpu_name,
    server_gpus,
    share_of_roof,
)

DATA = Path(__file__).parent / "data" / "roof"
H100_PAGE = (DATA / "metrics_h100_server.txt").read_text()
H100_HOST = json.loads((DATA / "nvml_h100_host.json").read_text())
H100_MEMORY = 81559 * 1024 * 1024

# A measurement small enough to run in a few milliseconds, so that a second one would show in its figures.
TINY = {"gemm_size": 64, "gemm_runs": 2, "copy_bytes": 1 << 20, "copy_runs": 2}


def test_roofline_arithmetic():
    assert ridge_point(100e9, 20e9) == 5.0
    assert attainable(100e9, 20e9, 1.0) == 20e9  # memory-bound below the ridge point
    assert attainable(100e9, 20e9, 5.0) == 100e9
    assert attainable(100e9, 20e9, 50.0) == 100e9  # compute-bound above it
    assert share_of_roof(25e9, 50e9) == 0.5
    assert share_of_roof(1e9, 0.0) == 0.0
    roof = Roof("CPU: test, 1 thread", 100e9, 20e9, "--peak-tflops", "--peak-bandwidth-gbs")
    assert roof.ridge_intensity == 5.0
    assert roof.attainable_flops_per_s(2.0) == 40e9
    assert roof.share(10e9, 2.0) == 0.25


def test_cache_miss_then_hit(tmp_path):
    first = cpu_roof(1, cache_dir=tmp_path, **TINY)
    path = tmp_path / CACHE_FILE
    assert path.exists()
    assert f"cached {path}" in first.flops_source and f"cached {path}" in first.bandwidth_source
    assert first.flops_source.startswith("measured: ONNX Runtime ") and "MatMul 64x64 fp32, 1 thread, best of 2" in first.flops_source
    assert first.bandwidth_source.startswith("measured: numpy copy of 1 MiB, 1 thread, bytes read + written")
    assert first.device.startswith("CPU: ") and first.device.endswith(", 1 thread")
    second = cpu_roof(1, cache_dir=tmp_path, **TINY)
    # Measured once: timings of two measurements never agree to the last bit.
    assert second == first
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) == 1
    # Another thread count is another machine configuration: measured and cached beside the first.
    two = cpu_roof(2, cache_dir=tmp_path, **TINY)
    assert two.device.endswith(", 2 threads") and two != first
    assert len(json.loads(path.read_text())["entries"]) == 2


@pytest.mark.parametrize("content", ["{not json", '{"entries": []}', '{"entries": {"x": 1}}', "[1, 2]"])
def test_corrupt_cache_is_measured_again(tmp_path, content):
    path = tmp_path / CACHE_FILE
    path.write_text(content)
    roof = cpu_roof(1, cache_dir=tmp_path, **TINY)
    assert roof.peak_flops_per_s > 0 and roof.bandwidth_bytes_per_s > 0
    entries = json.loads(path.read_text())["entries"]
    assert [entry["peak_flops_per_s"] for entry in entries.values() if isinstance(entry, dict)] == [roof.peak_flops_per_s]


def test_stale_entry_is_measured_again(tmp_path):
    roof = cpu_roof(1, cache_dir=tmp_path, **TINY)
    path = tmp_path / CACHE_FILE
    data = json.loads(path.read_text())
    (key,) = data["entries"]
    data["entries"][key]["bandwidth_bytes_per_s"] = "fast"  # written by a broken or older loadgen
    path.write_text(json.dumps(data))
    again = cpu_roof(1, cache_dir=tmp_path, **TINY)
    assert again.bandwidth_bytes_per_s != roof.bandwidth_bytes_per_s
    assert json.loads(path.read_text())["entries"][key]["bandwidth_bytes_per_s"] == again.bandwidth_bytes_per_s


def test_measured_figures_are_plausible(tmp_path):
    """The real benchmark (~1 s): ONNX Runtime's GEMM and a DRAM copy, through resolve_roof."""
    roof = resolve_roof(threads=1, local=True, cache_dir=tmp_path)
    assert roof.peak_flops_per_s > 1e9  # 1 GFLOP/s
    assert roof.bandwidth_bytes_per_s > 100e6  # 100 MB/s
    assert "MatMul 1024x1024 fp32, 1 thread, best of 10 runs after a warm-up" in roof.flops_source
    assert "numpy copy of 256 MiB, 1 thread" in roof.bandwidth_source
    assert resolve_roof(threads=1, local=True, cache_dir=tmp_path) == roof  # cached


@pytest.mark.parametrize(
    ("nvml_name", "row", "fp32_tflops", "bandwidth_gbs"),
    [
        ("Tesla T4", "T4", 8.1, 320),
        ("Tesla V100-SXM2-32GB", "V100 SXM2", 15.7, 900),
        ("Tesla V100-PCIE-16GB", "V100 PCIe", 14, 900),
        ("Tesla V100S-PCIE-32GB", "V100S PCIe", 16.4, 1134),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", 19.5, 2039),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB SXM", 19.5, 1555),
        ("A100-SXM4-40GB", "A100 40GB SXM", 19.5, 1555),  # drivers before R470 left out "NVIDIA"
        ("NVIDIA A100-PCIE-40GB", "A100 40GB PCIe", 19.5, 1555),
        ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe", 19.5, 1935),
        ("NVIDIA A10", "A10", 31.2, 600),
        ("NVIDIA A30", "A30", 10.3, 933),
        ("NVIDIA A40", "A40", 37.4, 696),
        ("NVIDIA L4", "L4", 30.3, 300),
        ("NVIDIA L40", "L40", 90.5, 864),
        ("NVIDIA L40S", "L40S", 91.6, 864),
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 67, 3350),
        ("NVIDIA H100 PCIe", "H100 PCIe", 51, 2000),
        ("NVIDIA H100 NVL", "H100 NVL", 60, 3900),
        ("NVIDIA H200", "H200 SXM", 67, 4800),
        ("NVIDIA H200 NVL", "H200 NVL", 60, 4800),
        ("NVIDIA B200", "B200", 75, 8000),
        ("NVIDIA RTX A6000", "RTX A6000", 38.7, 768),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 91.1, 960),
    ],
)
def test_gpu_lookup_by_nvml_name(nvml_name, row, fp32_tflops, bandwidth_gbs):
    assert gpu_spec(nvml_name).name == row
    roof = gpu_roof(nvml_name)
    assert roof.device == f"GPU: {nvml_name} (fp32)"
    assert roof.peak_flops_per_s == pytest.approx(fp32_tflops * 1e12)
    assert roof.bandwidth_bytes_per_s == pytest.approx(bandwidth_gbs * 1e9)
    assert roof.flops_source.startswith("datasheet: ") and "dense (without sparsity)" in roof.flops_source
    assert roof.bandwidth_source.startswith("datasheet: ")


def test_gpu_precisions():
    a100 = "NVIDIA A100-SXM4-80GB"
    assert gpu_roof(a100, "tf32").peak_flops_per_s == pytest.approx(156e12)
    assert gpu_roof(a100, "fp16").peak_flops_per_s == pytest.approx(312e12)
    assert gpu_roof(a100, "bf16").peak_flops_per_s == pytest.approx(312e12)
    int8 = gpu_roof(a100, "int8")
    assert int8.peak_flops_per_s == pytest.approx(624e12) and "624 TOPS" in int8.flops_source
    # The H100's datasheet prints 1,979 TFLOPS FP16 with sparsity: the table holds the dense half.
    assert gpu_roof("NVIDIA H100 80GB HBM3", "fp16").peak_flops_per_s == pytest.approx(989.5e12)
    with pytest.raises(RoofUnknown, match="the T4 datasheet gives no tf32 peak: pass --peak-tflops and --peak-bandwidth-gbs"):
        gpu_roof("Tesla T4", "tf32")
    with pytest.raises(UsageError, match="unknown precision 'fp8'"):
        gpu_roof(a100, "fp8")


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA GeForce RTX 4090", "Quadro RTX 6000", "NVIDIA A100-SXM4-64GB", "NVIDIA GH200 480GB"])
def test_unknown_gpu(name):
    with pytest.raises(RoofUnknown, match="is not in loadgen's datasheet table: pass --peak-tflops and --peak-bandwidth-gbs") as caught:
        gpu_spec(name)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_metrics_page_gpus_named_from_nvml():
    gpus = server_gpus(H100_PAGE, H100_HOST)
    assert [(gpu.uuid, gpu.name, gpu.memory_total_bytes) for gpu in gpus] == [
        ("GPU-1c2f9a44-7d3e-e6b1-38a0-5c4b2f1e9d07", "NVIDIA H100 80GB HBM3", H100_MEMORY),
        ("GPU-8e0d3b71-a92c-4f15-b6e8-0f7a21c3d964", "NVIDIA H100 80GB HBM3", H100_MEMORY),
    ]
    name = server_gpu_name(gpus)
    assert name == "NVIDIA H100 80GB HBM3"
    assert resolve_roof(threads=1, local=True, gpu_name=name).peak_flops_per_s == pytest.approx(67e12)


def test_metrics_page_without_dcgm_still_shows_gpus():
    """Without DCGM the nv_gpu_* families are missing, but a model on a GPU labels its counters with the uuid."""
    page = "\n".join(line for line in H100_PAGE.splitlines() if "nv_gpu_" not in line and "nv_energy" not in line)
    gpus = server_gpus(page, H100_HOST)
    assert [gpu.name for gpu in gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert all(gpu.memory_total_bytes is None for gpu in gpus)


def test_remote_gpus_cannot_be_named():
    # This host's NVML knows other GPUs (or none): the page's uuids cannot be named.
    other_host = [{"index": 0, "name": "NVIDIA L4", "uuid": "GPU-00000000-1111-2222-3333-444444444444", "memory_total_bytes": 24152899584}]
    for devices in ([], other_host):
        gpus = server_gpus(H100_PAGE, devices)
        assert [gpu.name for gpu in gpus] == [None, None]
        with pytest.raises(RoofUnknown, match="Triton's metrics name GPUs by uuid only: pass --peak-tflops and --peak-bandwidth-gbs"):
            server_gpu_name(gpus)


def test_cpu_only_and_mixed_servers():
    cpu_page = "\n".join(line for line in H100_PAGE.splitlines() if "gpu_uuid" not in line)
    assert server_gpus(cpu_page, H100_HOST) == ()
    assert server_gpu_name(()) is None
    mixed = [dict(H100_HOST[0]), dict(H100_HOST[1], name="NVIDIA H100 PCIe")]
    with pytest.raises(RoofUnknown, match=r"GPUs of different kinds \(NVIDIA H100 80GB HBM3, NVIDIA H100 PCIe\)"):
        server_gpu_name(server_gpus(H100_PAGE, mixed))


def test_overrides_win_each_figure_separately(tmp_path):
    both = resolve_roof(threads=2, local=False, peak_tflops=1.5, peak_bandwidth_gbs=40)
    assert (both.peak_flops_per_s, both.bandwidth_bytes_per_s) == (1.5e12, 40e9)
    assert (both.flops_source, both.bandwidth_source) == ("--peak-tflops", "--peak-bandwidth-gbs")
    assert both.device == "CPU: remote server, 2 threads"

    gpu = resolve_roof(threads=1, local=False, gpu_name="NVIDIA L4", peak_tflops=100)
    assert gpu.peak_flops_per_s == 100e12 and gpu.flops_source == "--peak-tflops"
    assert gpu.bandwidth_bytes_per_s == 300e9 and gpu.bandwidth_source.startswith("datasheet: NVIDIA L4 datasheet")
    gpu = resolve_roof(threads=1, local=False, gpu_name="NVIDIA L4", precision="fp16", peak_bandwidth_gbs=250)
    assert gpu.peak_flops_per_s == pytest.approx(121e12) and gpu.bandwidth_source == "--peak-bandwidth-gbs"
    assert gpu.device == "GPU: NVIDIA L4 (fp16)"
    # An unknown GPU is no error when both figures are given.
    assert resolve_roof(threads=1, local=True, gpu_name="NVIDIA A10G", peak_tflops=31, peak_bandwidth_gbs=600).peak_flops_per_s == 31e12

    # A local CPU: the flag's figure, and the measured (cached) one for the other.
    (tmp_path / CACHE_FILE).write_text("{}")
    cpu = resolve_roof(threads=1, local=True, peak_bandwidth_gbs=12.5, cache_dir=tmp_path)
    assert cpu.bandwidth_bytes_per_s == 12.5e9 and cpu.bandwidth_source == "--peak-bandwidth-gbs"
    assert cpu.flops_source.startswith("measured: ONNX Runtime") and cpu.peak_flops_per_s > 1e9


def test_remote_cpu_without_overrides_raises():
    for kwargs in ({}, {"peak_tflops": 1.0}, {"peak_bandwidth_gbs": 20.0}):
        with pytest.raises(RoofUnknown, match="remote CPU server cannot be measured from this host: pass --peak-tflops and --peak-bandwidth-gbs"):
            resolve_roof(threads=1, local=False, **kwargs)


def test_bad_arguments():
    with pytest.raises(UsageError, match="--peak-tflops must be a positive number, not 0"):
        resolve_roof(threads=1, local=False, peak_tflops=0, peak_bandwidth_gbs=10)
    with pytest.raises(UsageError, match="--peak-bandwidth-gbs must be a positive number, not -1"):
        resolve_roof(threads=1, local=False, peak_tflops=1, peak_bandwidth_gbs=-1)
    with pytest.raises(UsageError, match="threads must be at least 1"):
        resolve_roof(threads=0, local=False, peak_tflops=1, peak_bandwidth_gbs=1)
    with pytest.raises(RoofUnknown, match="measured for fp32 only, not int8: pass --peak-tflops"):
        resolve_roof(threads=1, local=True, precision="int8")
    with pytest.raises(RoofUnknown, match="not in loadgen's datasheet table"):
        resolve_roof(threads=1, local=True, gpu_name="NVIDIA A10G", peak_tflops=31)
