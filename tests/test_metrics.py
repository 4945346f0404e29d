"""Parsing Triton's /metrics page and a level's figures from its scrapes (no server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadgen.metrics import (
    GPU_UTILIZATION,
    SUCCESS,
    Scrape,
    level_metrics,
    parse_metrics,
    series_name,
)
from loadgen.server_stats import ServerFigures

PAGE = (Path(__file__).parent / "data" / "metrics_two_gpus.txt").read_text()
GPU_A = "GPU-5b3b6a7e-2d1f-4c8e-9a3b-0c6f1e2d3a4b"
GPU_B = "GPU-9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
MODELS = ["centernet-ensemble", "image-preprocess", "centernet", "centernet-postprocess"]


def figures(name: str, success: int, inferences: int | None = None, composing=()) -> ServerFigures:
    return ServerFigures(name, "1", inferences or success, success, success, 0, 1000.0, 10.0, 1.0, 900.0, 1.0, tuple(composing))


ENSEMBLE = figures("centernet-ensemble", 100, composing=[figures(m, 100) for m in MODELS[1:]])


def shifted(page: str, changes: dict[str, float]) -> str:
    """The page with the series named in `changes` (exact series text) moved by the given amounts."""
    lines = []
    for line in page.splitlines():
        series, _, value = line.rpartition(" ")
        if series in changes:
            line = f"{series} {float(value) + changes[series]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_page_parses_into_the_series_loadgen_keeps():
    values = parse_metrics(PAGE)
    assert values[(GPU_UTILIZATION, (("gpu_uuid", GPU_A),))] == pytest.approx(0.72)
    assert values[("nv_cpu_utilization", ())] > 0
    # Duration counters and pinned memory are not kept: nothing reports them.
    assert not any(name.endswith("_duration_us") or name.startswith("nv_pinned") for name, _ in values)
    # A model on two GPUs has one series per GPU.
    centernet = [labels for name, labels in values if name == SUCCESS and ("model", "centernet") in labels]
    assert len(centernet) == 2


def test_other_models_series_can_be_left_out():
    values = parse_metrics(PAGE, models=["centernet"])
    assert {dict(labels)["model"] for name, labels in values if name == SUCCESS} == {"centernet"}
    assert (GPU_UTILIZATION, (("gpu_uuid", GPU_B),)) in values  # GPU series are not per model


def test_a_page_that_is_not_prometheus_text_is_refused():
    with pytest.raises(ValueError):
        parse_metrics('nv_cpu_utilization{model="x" 1\n')


def test_series_names_are_written_as_prometheus_writes_them():
    assert series_name(("nv_cpu_utilization", ())) == "nv_cpu_utilization"
    assert series_name((SUCCESS, (("model", "m"), ("version", "1")))) == 'nv_inference_request_success{model="m",version="1"}'


def two_gpu_level():
    success = 'nv_inference_request_success{model="centernet-ensemble",version="1"}'
    on_a = f'nv_inference_request_success{{gpu_uuid="{GPU_A}",model="centernet",version="1"}}'
    on_b = f'nv_inference_request_success{{gpu_uuid="{GPU_B}",model="centernet",version="1"}}'
    failed = 'nv_inference_request_failure{model="centernet-postprocess",reason="BACKEND",version="1"}'
    middle = shifted(PAGE, {f'nv_gpu_utilization{{gpu_uuid="{GPU_A}"}}': -0.2, f'nv_gpu_memory_used_bytes{{gpu_uuid="{GPU_B}"}}': 2**30})
    last = shifted(
        PAGE,
        {
            success: 100, on_a: 60, on_b: 40, failed: 3,
            f'nv_gpu_utilization{{gpu_uuid="{GPU_A}"}}': 0.1,
            f'nv_energy_consumption{{gpu_uuid="{GPU_A}"}}': 30.0,
            f'nv_energy_consumption{{gpu_uuid="{GPU_B}"}}': 10.0,
            'nv_inference_pending_request_count{model="image-preprocess",version="1"}': 7,
        },
    )  # fmt: skip
    scrapes = [Scrape(t, parse_metrics(page, MODELS)) for t, page in enumerate([PAGE, middle, last])]
    return level_metrics(scrapes, ENSEMBLE, tolerance=2)


def test_gpu_figures_per_gpu():
    metrics = two_gpu_level()
    a, b = metrics.gpus
    assert (a.uuid, b.uuid) == (GPU_A, GPU_B)
    assert a.avg_utilization == pytest.approx((0.72 + 0.52 + 0.82) / 3)
    assert b.avg_utilization == pytest.approx(0.35)
    assert a.avg_power_w == pytest.approx(182.311)
    assert b.max_memory_used_bytes == 2147483648 + 2**30
    assert a.total_memory_bytes == 16945512448
    assert (a.energy_j, b.energy_j) == (pytest.approx(30.0), pytest.approx(10.0))
    # Energy per inference: both GPUs' energy over the ensemble's inferences.
    assert metrics.energy_per_inference_j == pytest.approx(40.0 / 100)


def test_model_counters_are_summed_over_gpus_and_cross_checked():
    metrics = two_gpu_level()
    models = {m.name: m for m in metrics.models}
    assert list(models) == MODELS
    assert models["centernet"].success == 100  # 60 on one GPU + 40 on the other
    assert models["centernet-ensemble"].success == 100 and not models["centernet-ensemble"].mismatch
    assert models["image-preprocess"].success == 0 and models["image-preprocess"].mismatch  # the API counted 100
    assert models["centernet-postprocess"].failure["BACKEND"] == 3
    assert models["image-preprocess"].max_pending == 7


def test_cpu_figures_and_a_server_without_gpus():
    cpu_only = "\n".join(line for line in PAGE.splitlines() if "gpu" not in line.split("{")[0] and "energy" not in line) + "\n"
    cpu_only = re.sub(r'gpu_uuid="[^"]+",', "", cpu_only)  # the page a CPU-only server writes
    low = shifted(cpu_only, {"nv_cpu_utilization": -0.5, "nv_cpu_memory_used_bytes": -1000})
    scrapes = [Scrape(0, parse_metrics(cpu_only)), Scrape(1, parse_metrics(low))]
    metrics = level_metrics(scrapes, ENSEMBLE, tolerance=0)
    assert metrics.gpus == ()
    assert metrics.energy_per_inference_j is None
    cpu = parse_metrics(cpu_only)[("nv_cpu_utilization", ())]
    assert metrics.avg_cpu_utilization == pytest.approx(cpu - 0.25)
    assert metrics.max_cpu_memory_used_bytes == parse_metrics(cpu_only)[("nv_cpu_memory_used_bytes", ())]


def test_no_scrape_means_no_figures():
    assert level_metrics([], ENSEMBLE, tolerance=0) is None


def test_perf_analyzers_console_block_and_csv_cells_for_two_gpus():
    from loadgen.report.console import metrics_lines
    from loadgen.report.csv_report import gpu_cells

    metrics = two_gpu_level()
    lines = metrics_lines(metrics)
    at = lines.index("    Avg GPU Utilization:")
    assert lines[at : at + 3] == [
        "    Avg GPU Utilization:",
        f"      {GPU_A} : {(0.72 + 0.52 + 0.82) / 3 * 100:.6g}%",
        f"      {GPU_B} : 35%",
    ]
    assert f"      {GPU_B} : 97.052 watts" in lines
    assert f"      {GPU_A} : 16945512448 bytes" in lines
    assert "    Energy per inference: 0.4 joules" in lines
    assert not any("none, the server exposes no GPU metrics" in line for line in lines)
    utilization, power, memory, total = gpu_cells(metrics)
    assert utilization == f"{GPU_A}:{(0.72 + 0.52 + 0.82) / 3:g};{GPU_B}:0.35;"
    assert power == f"{GPU_A}:182.311;{GPU_B}:97.052;"
    assert memory == f"{GPU_A}:3221225472;{GPU_B}:{2147483648 + 2**30};"
    assert total == f"{GPU_A}:16945512448;{GPU_B}:16945512448;"


def test_cpu_zeros_before_tritons_first_poll_are_not_readings():
    before_poll = shifted(PAGE, {})
    for name in ("nv_cpu_utilization", "nv_cpu_memory_used_bytes"):
        before_poll = re.sub(rf"^{name} .*$", f"{name} 0", before_poll, flags=re.M)
    values = parse_metrics(before_poll)
    assert ("nv_cpu_utilization", ()) not in values and ("nv_cpu_memory_used_bytes", ()) not in values
    assert parse_metrics(PAGE)[("nv_cpu_memory_used_bytes", ())] > 0
