"""The roofline of a run: the arithmetic per level (batch sizes accounted for), summary.json's record of
it read back, the gathering of its inputs (ONNX files, the shipped centernet's builder, the direct
timing's cache, a remote server's unknown roof), and a real run of the shipped ensemble."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from results import level, run, server
from test_model_cost import centernet_builder

from loadgen.cli import main
from loadgen.direct_timing import OrtThreads
from loadgen.errors import UsageError
from loadgen.model_cost import model_cost
from loadgen.options import build_config
from loadgen.report.console import summary_lines
from loadgen.report.render import load_summary, render_report
from loadgen.result import RunResult
from loadgen.roof import Roof
from loadgen.roofline import (
    BATCH_STATS,
    REQUEST_COUNTERS,
    DirectFigures,
    ModelAtLevel,
    ModelRoofline,
    Roofline,
    compute_per_inference,
    level_figures,
    ran_batch_sizes,
)
from loadgen.roofline_run import _onnx, cached_direct_timing, gather_roofline
from loadgen.server_stats import (
    BatchCompute,
    ModelTree,
    ServerFigures,
    parse_statistics,
    server_figures,
)

ROOT = Path(__file__).resolve().parent.parent
CENTERNET = ROOT / "model_repository" / "centernet"
ROOF = Roof("CPU: test, 1 thread", 100e9, 10e9, "--peak-tflops", "--peak-bandwidth-gbs")  # ridge at 10 FLOPs/byte
DIRECT = DirectFigures(1, 1, 1, "config.pbtxt", 300, 5.0, 4.9, 2.0, "measured after the sweep")
# Executions per batch size as the shipped ensemble's detector ran them at concurrency 6 (GET .../stats).
MIXED_BATCHES = (BatchCompute(1, 414, 2_647_418_647), BatchCompute(2, 4, 59_875_070), BatchCompute(3, 129, 2_395_543_393),
                 BatchCompute(4, 2, 66_544_187))  # fmt: skip


def detector(batches: tuple[BatchCompute, ...] | None, compute_infer_us: float = 12_509.2) -> ServerFigures:
    figures = server("detector", compute_infer_us=compute_infer_us, success_count=817)
    return replace(figures, inference_count=817, execution_count=549, batches=batches)


def test_batch_statistics_give_the_time_per_inference_exactly():
    compute = compute_per_inference(detector(MIXED_BATCHES))
    whole_ns = 2_647_418_647 + 59_875_070 + 2_395_543_393 + 66_544_187
    assert compute.source == BATCH_STATS and (compute.inferences, compute.executions) == (817, 549)
    assert compute.compute_infer_us == pytest.approx(whole_ns / 817 / 1e3)  # 6.33 ms, not the request average's 12.5
    assert compute.avg_batch_size == pytest.approx(817 / 549)


def test_without_batch_statistics_the_request_counters_are_divided_by_the_average_batch():
    # Each request of a batch is charged the whole execution: the request average over the average batch.
    compute = compute_per_inference(detector(None))
    assert compute.source == REQUEST_COUNTERS
    assert compute.compute_infer_us == pytest.approx(12_509.2 * 549 / 817)
    # Exact when every execution ran the same batch: 100 executions of 2 requests, each charged 8 ms.
    pairs = replace(server("detector", compute_infer_us=8_000.0, success_count=200), inference_count=200, execution_count=100)
    assert compute_per_inference(pairs).compute_infer_us == pytest.approx(4_000.0)
    idle = replace(server("detector", success_count=0), inference_count=0, execution_count=0, batches=())
    assert compute_per_inference(idle) is None


def test_achieved_flops_share_of_the_roof_and_serving_overhead():
    compute = compute_per_inference(replace(detector(None), batches=(BatchCompute(1, 100, 600_000_000),)))  # 6 ms each
    above_ridge = ModelAtLevel(ModelRoofline("detector", 0.45e9, "ONNX", 54_100, 22_500_000, DIRECT, ROOF), compute)
    assert above_ridge.model.intensity == pytest.approx(20.0)
    assert above_ridge.achieved_flops_per_s == pytest.approx(75e9)
    assert above_ridge.share_of_roof == pytest.approx(0.75)  # of the 100 GFLOP/s ceiling
    assert above_ridge.serving_overhead_us == pytest.approx(1_000.0)
    below_ridge = replace(above_ridge, model=replace(above_ridge.model, bytes=225_000_000))  # 2 FLOPs/byte: 20 GFLOP/s roof
    assert below_ridge.model.attainable_flops_per_s == pytest.approx(20e9) and below_ridge.share_of_roof == pytest.approx(3.75)
    flops_only = replace(above_ridge, model=replace(above_ridge.model, bytes=None, params=None, direct=None))
    assert flops_only.model.intensity is None and flops_only.share_of_roof == pytest.approx(0.75)  # against the peak
    assert flops_only.serving_overhead_us is None
    unknown_roof = replace(above_ridge, model=replace(above_ridge.model, roof=None, roof_note="pass --peak-tflops"))
    assert unknown_roof.share_of_roof is None and unknown_roof.achieved_flops_per_s == pytest.approx(75e9)


def test_serving_overhead_is_set_against_the_same_batches_alone():
    """Each batch size's direct time weighted by the level's executions of it: the overhead is then the
    server's alone, not batching's gain as well."""
    timed = {size: replace(DIRECT, batch_size=size, mean_ms=mean_ms) for size, mean_ms in ((2, 9.0), (3, 12.0), (4, 14.0))}
    model = ModelRoofline("detector", 0.45e9, "ONNX", 54_100, 22_500_000, DIRECT, ROOF, direct_batches=tuple(timed.values()))
    figures = detector(MIXED_BATCHES)
    [at] = level_figures(Roofline((model,)), level(6, server_figures=figures))
    assert at.batch_matched and at.model.direct_at(3) == timed[3] and at.model.direct_at(5) is None
    # 414 runs of 1 at 5 ms, 4 of 2 at 9 ms, 129 of 3 at 12 ms, 2 of 4 at 14 ms, over 817 inferences.
    alone_us = (414 * 5.0 + 4 * 9.0 + 129 * 12.0 + 2 * 14.0) * 1e3 / 817
    assert at.direct_per_inference_us == pytest.approx(alone_us)
    assert at.serving_overhead_us == pytest.approx(at.compute.compute_infer_us - alone_us)
    # A batch size not timed: the whole level falls back to batch size 1, and says so.
    partly = replace(at, model=replace(model, direct_batches=(timed[2], timed[3])))
    assert not partly.batch_matched and partly.direct_per_inference_us == pytest.approx(5_000.0)
    assert ran_batch_sizes([level(6, server_figures=figures), level(1, server_figures=detector(None))], "detector") == (1, 2, 3, 4)


def test_snapshots_keep_the_batch_statistics_and_their_change():
    def stats(count: int, ns: int) -> dict:
        entry = {"name": "detector", "version": "1", "inference_count": 3 * count, "execution_count": count,
                 "inference_stats": {"success": {"count": 3 * count, "ns": 3 * ns}},
                 "batch_stats": [{"batch_size": 3, "compute_infer": {"count": str(count), "ns": str(ns)}}]}  # fmt: skip
        return {"model_stats": [entry]}

    figures = server_figures(ModelTree("detector", ""), parse_statistics(stats(10, 100_000)), parse_statistics(stats(30, 500_000)))
    assert figures.batches == (BatchCompute(3, 20, 400_000),)
    bare = {"model_stats": [{"name": "detector", "version": "1"}]}
    assert server_figures(ModelTree("detector", ""), parse_statistics(bare), parse_statistics(bare)).batches is None


def synthetic_run() -> RunResult:
    ensemble = server("ensemble", composing=[server("pre"), detector(MIXED_BATCHES)])
    roofline = Roofline((ModelRoofline("detector", 0.45e9, "ONNX model.onnx", 54_100, 22_500_000, DIRECT, ROOF),), ("pre",))
    return run(level(1, server_figures=ensemble), level(2, server_figures=ensemble), roofline=roofline)


def test_the_summary_records_the_inputs_and_derives_the_figures(tmp_path):
    result = synthetic_run()
    data = json.loads(json.dumps(result.to_dict()))
    read = RunResult.from_dict(data)
    assert read.roofline == result.roofline and read.to_dict() == data
    model = data["roofline"]["models"][0]
    assert model["intensity"] == pytest.approx(20.0) and model["roof"]["ridge_intensity"] == pytest.approx(10.0)
    assert model["direct"]["per_inference_us"] == pytest.approx(5_000.0)
    first = data["roofline"]["levels"][0]["models"][0]
    assert first["name"] == "detector" and first["compute_source"] == BATCH_STATS
    assert first["achieved_flops_per_s"] == pytest.approx(0.45e9 / (first["compute_infer_per_inference_us"] / 1e6))
    assert data["levels"][0]["server"]["composing"][1]["batches"][0] == {"batch_size": 1, "executions": 414,
                                                                         "compute_infer_ns": 2_647_418_647}
    # Derived figures are not read back: an edited one changes nothing.
    share = first["share_of_roof"]
    first["share_of_roof"] = 99.0
    assert RunResult.from_dict(data).to_dict()["roofline"]["levels"][0]["models"][0]["share_of_roof"] == share
    render_report(read, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Roofline</h2>" in html and "FLOPs unknown" in html and (tmp_path / "plots" / "roofline.png").is_file()
    assert any(line.startswith("Roofline: detector 0.450 GFLOPs/inference") for line in summary_lines(read))


def test_model_flops_and_peaks_are_options_and_bad_values_are_one_line(capsys):
    config = build_config({"model-flops": ["pre=0.5", "detector=1.25"], "peak-tflops": 2.0, "peak-bandwidth-gbs": 40})
    assert config.outputs.model_flops == {"pre": 0.5, "detector": 1.25} and config.to_dict()["peak_tflops"] == 2.0
    for bad in (["--model-flops", "detector"], ["--model-flops", "detector=-1"], ["--peak-tflops", "0"]):
        assert main(["run", "-u", "localhost:1", "-m", "x", *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and bad[0] in err


def test_the_shipped_centernet_builder_gives_the_model_in_memory(tmp_path):
    """A repository without model.onnx (read-only, never written): the model's own build_onnx.py makes it."""
    copy = tmp_path / "centernet"
    copy.mkdir()
    for name in ("config.pbtxt", "build_onnx.py"):
        shutil.copy(CENTERNET / name, copy / name)
    config = {"parameters": {"num_classes": {"string_value": "80"}, "input_size": {"string_value": "256"}}}
    built, source = _onnx(copy, "1", config)
    assert source.startswith(f"built in memory by {copy / 'build_onnx.py'}")
    assert model_cost(built).flops == model_cost(centernet_builder().build_model()).flops
    assert _onnx(tmp_path / "nothing", "1", {}) is None
    # The config's input_size reaches the builder: half the side, a quarter of the convolutions' work.
    smaller, _ = _onnx(copy, "1", {"parameters": {"input_size": {"string_value": "128"}}})
    convolutions = [model_cost(m).layers for m in (built, smaller)]
    assert [layer.flops // 4 for layer in convolutions[0] if layer.op_type == "Conv"] == [
        layer.flops for layer in convolutions[1] if layer.op_type == "Conv"]


def test_the_direct_timing_is_cached_per_graph_and_threads(tmp_path):
    model = centernet_builder().build_model()
    threads = OrtThreads(1, 1, "test")
    measured = cached_direct_timing(model, threads, tmp_path)
    cached = cached_direct_timing(model, threads, tmp_path)
    assert measured.source.startswith("measured after the sweep") and cached.source.startswith(f"cached {tmp_path}")
    assert cached.mean_ms == measured.mean_ms and cached.iterations == measured.iterations > 10


def test_the_roofline_section_appears_for_the_shipped_ensemble(metrics_run, tmp_path):
    report, out = metrics_run
    data = json.loads((report / "summary.json").read_text())
    roofline = data["roofline"]
    (centernet,) = roofline["models"]
    assert centernet["name"] == "centernet" and centernet["flops_source"].startswith("ONNX ")
    assert centernet["flops"] == model_cost(centernet_builder().build_model()).flops
    assert centernet["direct"]["intra_op_threads"] == 1 and centernet["roof"]["device"].endswith("1 thread")
    assert centernet["direct"]["source"].startswith("measured after the sweep")  # the fixture's own cache was empty
    assert set(roofline["unknown"]) == {"image-preprocess", "centernet-postprocess"}
    for each in roofline["levels"]:
        (figures,) = each["models"]
        assert figures["compute_source"] == BATCH_STATS and figures["achieved_flops_per_s"] > 0
        assert 0 < figures["share_of_roof"] <= 1.5
        assert figures["direct_batch_matched"]  # timed alone at every batch size the server ran
    ran = {batch["batch_size"] for level in data["levels"] for model in level["server"]["composing"]
           if model["name"] == "centernet" for batch in model["batches"]}  # fmt: skip
    assert [timing["batch_size"] for timing in centernet["direct_batches"]] == sorted(ran - {1})
    assert load_summary(report).to_dict() == data
    assert "<h2>Roofline</h2>" in (report / "report.html").read_text()
    with Image.open(report / "plots" / "roofline.png") as image:
        assert image.format == "PNG" and image.width > 400
    assert "Roofline: centernet 0.454 GFLOPs/inference" in out


def test_a_remote_server_without_its_peaks_has_achieved_flops_and_no_roof(metrics_run, tmp_path):
    """The same run's figures, as if its server were on another machine: FLOPs from the repository copy,
    no direct timing (this machine is not the server's), the roof unknown with the flags to give it."""
    result = load_summary(metrics_run[0])
    remote = replace(result, config=replace(result.config, target=replace(result.config.target, url="192.0.2.1:8000")))
    roofline, notes = gather_roofline(remote, tmp_path)
    (centernet,) = roofline.models
    assert centernet.direct is None and centernet.roof is None
    assert any("--peak-tflops and --peak-bandwidth-gbs" in note for note in notes)
    assert all(figures.achieved_flops_per_s > 0 and figures.share_of_roof is None
               for each in remote.levels for figures in level_figures(roofline, each))  # fmt: skip
    # The peaks given, and the FLOPs of a model without an ONNX file (and of one the ensemble does not have).
    outputs = replace(remote.config.outputs, peak_tflops=1.0, peak_bandwidth_gbs=50.0,
                      model_flops={"image-preprocess": 0.01, "resnet": 4.0})  # fmt: skip
    roofline, notes = gather_roofline(replace(remote, config=replace(remote.config, outputs=outputs)), tmp_path)
    assert [note.split(":")[0] for note in notes] == ["--model-flops resnet"]
    preprocess, centernet = roofline.models
    assert centernet.roof.flops_source == "--peak-tflops" and centernet.roof.peak_flops_per_s == 1e12
    assert (preprocess.name, preprocess.flops, preprocess.flops_source) == ("image-preprocess", 1e7, "--model-flops")
    assert preprocess.intensity is None and preprocess.attainable_flops_per_s == 1e12  # its share is of the peak
    assert roofline.unknown == ("centernet-postprocess",)
    with pytest.raises(UsageError):
        build_config({"peak-bandwidth-gbs": -3})
