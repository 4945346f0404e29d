"""report.html's Roofline section: each computing model's cost, direct timing and roof, and per level
where its compute under load stands (loadgen.roofline), from the run's result alone."""

from __future__ import annotations

from html import escape

from loadgen.report.html_page import MISSING, WARN, num, percent, table
from loadgen.result import RunResult
from loadgen.roofline import BATCH_STATS, ModelRoofline, level_figures

ABOUT = (
    "<p>Achieved FLOP/s is a model's FLOPs per inference (1 multiply-accumulate = 2 FLOPs; batch size 1) over its "
    "compute-infer time per inference under load, batch sizes accounted for: from Triton's batch statistics, each "
    "execution's time over the inferences it ran (or, where the server gives none, the per-request counters, exact "
    "only when every execution had the same batch size). The share of the roof is that over the roof at the model's "
    "arithmetic intensity (FLOPs per byte of weights and activations moved): the bandwidth slope below the ridge, the "
    "compute peak above it. The serving overhead is the compute-infer time per inference beyond the model's own time "
    "alone in ONNX Runtime with the server's thread settings, at the batch sizes the level ran (each weighted by its "
    "executions): Triton's and the backend's part of it. Where a level's batches are not known or not all timed, it "
    "is set against batch size 1, marked, and then also holds batching's gain. A CPU's roof is measured here; a "
    "GPU's is its datasheet peak, which real models reach a fraction of.</p>"
)


def roofline_section(result: RunResult) -> str:
    roofline = result.roofline
    if roofline is None:
        return ""
    html = "<h2>Roofline</h2>" + ABOUT
    if roofline.unknown:
        html += (f"<p>FLOPs unknown (no ONNX file in the repository read): {escape(', '.join(roofline.unknown))}; "
                 "give them with --model-flops NAME=GFLOPS.</p>")  # fmt: skip
    html += "<h3>Models</h3>" + table(
        ["Model", "GFLOPs/inference", "Parameters", "MiB moved/inference", "Intensity (FLOPs/byte)",
         "Alone in ONNX Runtime (ms/inference)", "Alone at the batch sizes the server ran", "Threads", "FLOPs from",
         "Direct timing"],
        [_model_row(model) for model in roofline.models], text_columns=(0, 6, 7, 8, 9))  # fmt: skip
    html += "<h3>Roof</h3>" + _roofs(roofline.models)
    rows = []
    for level in result.levels:
        for figures in level_figures(roofline, level):
            model, compute, direct_us = figures.model, figures.compute, figures.direct_per_inference_us
            if direct_us is None:
                alone = MISSING
            elif figures.batch_matched or compute.avg_batch_size == 1:
                alone = num(direct_us / 1e3, 3)
            else:  # batches above 1 set against batch size 1: the overhead then holds batching's gain
                alone = f"{WARN}{num(direct_us / 1e3, 3)} (batch size 1)"
            rows.append([
                f"{level.label} {level.value:g}", model.name, num(compute.avg_batch_size, 2),
                num(compute.compute_infer_us / 1e3, 3), alone,
                num(figures.serving_overhead_us / 1e3, 3) if figures.serving_overhead_us is not None else MISSING,
                num(model.flops / 1e9, 3), num(model.intensity, 1), num(figures.achieved_flops_per_s / 1e9, 1),
                percent(figures.share_of_roof),
                compute.source if compute.source == BATCH_STATS else WARN + compute.source,
            ])  # fmt: skip
    html += "<h3>Per level</h3>" + table(
        ["Level", "Model", "Avg batch", "Compute infer (ms/inference)", "Alone in ONNX Runtime, same batches (ms/inference)",
         "Serving overhead (ms/inference)", "GFLOPs/inference", "Intensity (FLOPs/byte)", "Achieved GFLOP/s",
         "Share of roof", "Compute time from"], rows, text_columns=(0, 1, 4, 10))  # fmt: skip
    return html


def _model_row(model: ModelRoofline) -> list[str]:
    direct = model.direct
    threads = (f"intra-op {direct.intra_op_threads or 'default'}, inter-op {direct.inter_op_threads or 'default'} "
               f"({direct.threads_source})") if direct else MISSING  # fmt: skip
    timing = (f"{direct.iterations} runs, median {direct.median_ms:.3f} ms, CoV {direct.cov_percent:.1f} %; {direct.source}"
              if direct else "not timed: no ONNX file, or the server is on another machine")  # fmt: skip
    return [model.name, num(model.flops / 1e9, 3), num(model.params, 0),
            num(model.bytes / 2**20, 1) if model.bytes is not None else MISSING, num(model.intensity, 1),
            num(direct.per_inference_us / 1e3, 3) if direct else MISSING, _batched(model), threads, model.flops_source,
            timing]  # fmt: skip


def _batched(model: ModelRoofline) -> str:
    """Each other batch size's direct time per inference: "2: 5.120 ms, 4: 5.010 ms"."""
    return ", ".join(f"{timing.batch_size}: {timing.per_inference_us / 1e3:.3f} ms" for timing in model.direct_batches) or MISSING


def _roofs(models: tuple[ModelRoofline, ...]) -> str:
    """Each distinct roof with its sources, and the models whose roof is unknown with how to give it."""
    roofs = {model.roof.device: model.roof for model in models if model.roof is not None}
    rows = [[roof.device, num(roof.peak_flops_per_s / 1e9, 1), num(roof.bandwidth_bytes_per_s / 1e9, 1),
             num(roof.ridge_intensity, 2), roof.flops_source, roof.bandwidth_source] for roof in roofs.values()]  # fmt: skip
    html = table(["Device", "Peak GFLOP/s", "Bandwidth GB/s", "Ridge (FLOPs/byte)", "Peak from", "Bandwidth from"], rows,
                 text_columns=(0, 4, 5)) if rows else ""  # fmt: skip
    notes = sorted({f"{model.name}: {model.roof_note}" for model in models if model.roof is None and model.roof_note})
    return html + "".join(f"<p>{WARN}{escape(note)}</p>" for note in notes)
