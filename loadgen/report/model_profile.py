"""`loadgen profile-model`'s output: one model's cost, direct timing and roof, as JSON or a table.

Figures are per inference (one batch item), so that achieved FLOP/s = flops x throughput
(inferences/s): a run at batch size B counts the graph at B and divides by B.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadgen.direct_timing import LATENCY_KEYS, DirectTiming
from loadgen.model_cost import ModelCost, counting_notes
from loadgen.roof import Roof


def _whole(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def profile_json(cost: ModelCost, timing: DirectTiming | None, cov_warn_percent: float, roof: Roof | None = None) -> dict[str, Any]:
    """Everything `--json` prints. `timing` None: counted only (--no-timing); `roof` with the timing only."""
    per = cost.batch_size
    data: dict[str, Any] = {
        "batch_size": per,
        "flops": _whole(cost.flops_per_inference),
        "params": cost.params,
        "bytes": _whole(cost.bytes_per_inference),
        "weight_bytes": _whole(cost.weight_bytes / per),
        "activation_bytes": _whole(cost.activation_bytes / per),
        "intensity": cost.intensity,
        "layers": [
            {"name": layer.name, "op_type": layer.op_type, "flops": _whole(layer.flops / per), "params": layer.params,
             "bytes": _whole(layer.bytes / per), "intensity": layer.intensity}
            for layer in cost.layers
        ],
        "uncounted_ops": list(cost.uncounted_ops),
        "counted": counting_notes(cost.op_types),
    }
    if timing is None:
        return data
    data.update(
        latency_ms=timing.latency_ms,
        throughput=timing.throughput_per_s,
        threads={"intra_op": timing.threads.intra_op, "inter_op": timing.threads.inter_op, "source": timing.threads.source},
        warmup_ms=timing.warmup_ms,
        iterations=timing.iterations,
        wall_s=timing.wall_s,
        cov_percent=timing.cov_percent,
        cov_warn_percent=cov_warn_percent,
        stable=timing.stable(cov_warn_percent),
    )
    if roof is not None:
        achieved = cost.flops_per_inference * timing.throughput_per_s
        data["roof"] = {
            "device": roof.device, "peak_flops_per_s": roof.peak_flops_per_s, "bandwidth_bytes_per_s": roof.bandwidth_bytes_per_s,
            "sources": {"flops": roof.flops_source, "bandwidth": roof.bandwidth_source},
            "ridge_intensity": roof.ridge_intensity, "attainable_flops_per_s": roof.attainable_flops_per_s(cost.intensity),
        }  # fmt: skip
        data["achieved_flops_per_s"] = achieved
        data["share_of_roof"] = roof.share(achieved, cost.intensity)
    return data


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def unstable_line(cov: float, cov_warn_percent: float) -> str:
    return (f"WARNING: latency is unstable, with coefficient of variation = {cov:.2f}% (above --cov-warn {cov_warn_percent:g}%): "
            "other work on the machine or too few runs; a quiet machine or a longer --duration may improve the stability")  # fmt: skip


def profile_lines(path: str, data: dict[str, Any]) -> list[str]:
    """The readable table of `profile_json`'s figures."""
    rows = [(row["name"], row["op_type"], f"{row['flops']:,.0f}", f"{row['params']:,}", f"{row['bytes']:,.0f}",
             f"{row['intensity']:.2f}") for row in data["layers"]]  # fmt: skip
    header = ("layer", "op", "FLOPs", "params", "bytes", "FLOP/B")
    total = ("total", "", f"{data['flops']:,.0f}", f"{data['params']:,}", f"{data['bytes']:,.0f}", f"{data['intensity']:.2f}")
    widths = [max(len(str(row[i])) for row in (header, total, *rows)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(width) if i < 2 else str(cell).rjust(width) for i, (cell, width) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * width for width in widths)
    out = [f"{path}: batch size {data['batch_size']}, figures per inference", "", line(header), rule, *map(line, rows), rule, line(total), ""]
    out.append(f"FLOPs {_si(data['flops'], 'FLOP')}, params {data['params']:,}, bytes {_si(data['bytes'], 'B')} "
               f"(weights {_si(data['weight_bytes'], 'B')}, activations {_si(data['activation_bytes'], 'B')}), "
               f"intensity {data['intensity']:.2f} FLOP/B")  # fmt: skip
    if data["uncounted_ops"]:
        out.append(f"Uncounted (0 FLOPs): {', '.join(data['uncounted_ops'])}")
    if "latency_ms" in data:
        latency = data["latency_ms"]
        threads = data["threads"]
        shown = ", ".join(f"{kind} {threads[key] if threads[key] is not None else 'default'}"
                          for kind, key in (("intra-op", "intra_op"), ("inter-op", "inter_op")))  # fmt: skip
        out += ["", "Direct ONNX Runtime timing (CPU):",
                f"  threads: {shown}, from {threads['source']}",
                f"  warm-up {data['warmup_ms']:g} ms, {data['iterations']} iterations in {data['wall_s']:.2f} s",
                "  latency ms: " + ", ".join(f"{key} {latency[key]:.3f}" for key in LATENCY_KEYS),
                f"  throughput: {data['throughput']:.1f} infer/s, coefficient of variation {data['cov_percent']:.2f}%"]  # fmt: skip
        if not data["stable"]:
            out.append(unstable_line(data["cov_percent"], data["cov_warn_percent"]))
    if "roof" in data:
        roof = data["roof"]
        share = data["share_of_roof"]
        out += ["", f"Roof ({roof['device']}):",
                f"  peak {_si(roof['peak_flops_per_s'], 'FLOP/s')}: {roof['sources']['flops']}",
                f"  bandwidth {_si(roof['bandwidth_bytes_per_s'], 'B/s')}: {roof['sources']['bandwidth']}",
                (f"  achieved {_si(data['achieved_flops_per_s'], 'FLOP/s')} (FLOPs x throughput) = {share * 100:.1f}% of the "
                 f"{_si(roof['attainable_flops_per_s'], 'FLOP/s')} attainable at {data['intensity']:.2f} FLOP/B "
                 f"(ridge {roof['ridge_intensity']:.2f} FLOP/B)")]  # fmt: skip
    out += ["", "Counted (1 multiply-accumulate = 2 FLOPs):", *(f"  {note}" for note in data["counted"])]
    return out
