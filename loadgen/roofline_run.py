"""After a sweep, what its roofline needs (loadgen.roofline): each computing model's cost from its ONNX
file (or --model-flops), the model timed alone in ONNX Runtime with the server's thread settings,
and the roof of those threads (loadgen.roof). It runs once the load has stopped, so the direct
timing and the roof measurement have the machine to themselves; both are cached per machine, as CI
runs the same ensemble many times.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx

from loadgen.config import RunConfig
from loadgen.direct_timing import (
    DirectTiming,
    OrtThreads,
    threads_from_model_dir,
    time_model,
)
from loadgen.errors import RoofUnknown, UsageError
from loadgen.machine_cache import (
    default_cache_dir,
    machine_key,
    read_entries,
    write_entries,
)
from loadgen.model_cost import (
    DynamicShapeError,
    OnnxModelError,
    input_shapes,
    load_onnx,
    model_cost,
)
from loadgen.result import RunResult
from loadgen.roof import (
    Roof,
    ServerGpu,
    nvml_devices,
    resolve_roof,
    server_gpu_name,
)
from loadgen.roofline import (
    DirectFigures,
    ModelRoofline,
    Roofline,
    computing_models,
    ran_batch_sizes,
)
from loadgen.shared_memory import server_is_local

# Short: the model's figures settle within a second at a few ms a call, and a run waits for it (once per
# batch size the server ran, the first time).
DIRECT_WARMUP_MS = 200.0
DIRECT_DURATION_S = 1.0
DIRECT_CACHE_FILE = "direct-timing.json"
# A model that writes its ONNX on first load (the shipped centernet) ships this builder, with a
# build_from_parameters(config parameters) -> ModelProto.
BUILDER = "build_onnx.py"


def with_roofline(result: RunResult, cache_dir: Path | None = None) -> RunResult:
    """A complete run's `result` with its roofline (each model of a mix its own; none with --no-roofline),
    and warnings for what could not be known."""
    if result.mix:
        notes: list[str] = []
        parts = []
        for part in result.mix:
            roofline, part_notes = gather_roofline(part, cache_dir)
            parts.append(replace(part, roofline=roofline))
            notes += part_notes
        return replace(result, mix=tuple(parts), warnings=(*result.warnings, *notes))
    roofline, notes = gather_roofline(result, cache_dir)
    return replace(result, roofline=roofline, warnings=(*result.warnings, *notes))


def gather_roofline(result: RunResult, cache_dir: Path | None = None) -> tuple[Roofline | None, list[str]]:
    """The roofline inputs of one model's run, and warnings; None when no computing model's FLOPs are known."""
    config = result.config
    if config.outputs.no_roofline or not result.levels:
        return None, []
    computing = {figures.name: figures.version for figures in computing_models(result.levels[0].server)}
    notes = [f"--model-flops {name}: {result.model.name} has no computing model of that name ({', '.join(computing)}): "
             "ignored" for name in config.outputs.model_flops if name not in computing]  # fmt: skip
    local = config.target.url is None or server_is_local(config.target.url)
    roofs: dict[tuple[int, bool], tuple[Roof | None, str | None]] = {}
    models, unknown = [], []
    for name, version in computing.items():
        try:
            model = _model_roofline(config, name, version, result.model_configs.get(name) or {}, local, roofs, cache_dir,
                                    ran_batch_sizes(result.levels, name))  # fmt: skip
        except DynamicShapeError as exc:  # the run's requests fix them, and its own --shape is another model's
            notes.append(f"roofline: {name} left out: its input {exc.input_name} has dimensions [{exc.dims}] that only "
                         f"its requests fix; give its FLOPs per inference with --model-flops {name}=GFLOPS")  # fmt: skip
            model = None
        except UsageError as exc:  # an ONNX file that cannot be read or counted: that model only
            notes.append(f"roofline: {name} left out: {exc} (for the roofline, give its FLOPs with --model-flops {name}=GFLOPS)")
            model = None
        if model is None:
            unknown.append(name)
        else:
            models.append(model)
    if not models:
        return None, notes
    notes += sorted({note for roof, note in roofs.values() if note is not None})
    return Roofline(tuple(models), tuple(unknown)), notes


def _model_roofline(config: RunConfig, name: str, version: str, model_config: dict[str, Any], local: bool,
                    roofs: dict[tuple[int, bool], tuple[Roof | None, str | None]], cache_dir: Path | None,
                    batch_sizes: Sequence[int] = ()) -> ModelRoofline | None:  # fmt: skip
    """One computing model's cost, direct timing (this machine's server only) and roof; None without its FLOPs."""
    repository = config.target.model_repository
    model_dir = Path(repository) / name if repository is not None else None
    found = _onnx(model_dir, version, model_config) if model_dir is not None else None
    given_gflops = config.outputs.model_flops.get(name)
    if found is None and given_gflops is None:
        return None
    cost = None
    if found is not None:
        try:
            cost = model_cost(found[0], batch_size=1)
        except UsageError:  # e.g. dimensions only requests fix: --model-flops stands in for the count
            if given_gflops is None:
                raise
    threads = threads_from_model_dir(model_dir) if model_dir is not None and model_dir.is_dir() else None
    on_gpu = any(group.get("kind") == "KIND_GPU" for group in model_config.get("instance_group") or ())
    direct, direct_batches = None, ()
    if cost is not None and local and threads is not None and not on_gpu:  # direct timing is on the CPU only
        direct = cached_direct_timing(found[0], threads, cache_dir)
        direct_batches = _batched_timings(found[0], threads, batch_sizes, cache_dir)
    roof_threads = (threads.intra_op if threads is not None else None) or os.cpu_count() or 1
    key = (roof_threads, on_gpu)
    if key not in roofs:
        roofs[key] = _roof(config, roof_threads, local, on_gpu, cache_dir)
    roof, note = roofs[key]
    return ModelRoofline(
        name=name,
        flops=given_gflops * 1e9 if given_gflops is not None else float(cost.flops),
        flops_source="--model-flops" if given_gflops is not None else found[1],
        params=cost.params if cost is not None else None,
        bytes=cost.bytes if cost is not None else None,
        direct=direct,
        roof=roof,
        roof_note=note,
        direct_batches=direct_batches,
    )


def _batched_timings(model: onnx.ModelProto, threads: OrtThreads, batch_sizes: Sequence[int],
                     cache_dir: Path | None) -> tuple[DirectFigures, ...]:  # fmt: skip
    """The model alone at each batch size above 1 the server ran it at, so that a level's compute is set
    against the same batches; none when its graph has no batch dimension to vary."""
    if not any(size > 1 for size in batch_sizes):
        return ()
    try:
        input_shapes(model, batch_size=2)
    except OnnxModelError:  # no dynamic first dimension (Triton batches a model whose ONNX does not)
        return ()
    return tuple(cached_direct_timing(model, threads, cache_dir, size) for size in sorted(set(batch_sizes)) if size > 1)


def _roof(config: RunConfig, threads: int, local: bool, on_gpu: bool, cache_dir: Path | None) -> tuple[Roof | None, str | None]:
    """The roof for `threads` (or of the GPU a model's instances run on), or None and what to pass to give it."""
    outputs = config.outputs
    given = outputs.peak_tflops is not None and outputs.peak_bandwidth_gbs is not None
    try:
        gpu_name = _local_gpu_name(local) if on_gpu and not given else None
        return resolve_roof(threads=threads, local=local, peak_tflops=outputs.peak_tflops,
                            peak_bandwidth_gbs=outputs.peak_bandwidth_gbs, gpu_name=gpu_name, cache_dir=cache_dir), None  # fmt: skip
    except UsageError as exc:
        return None, f"roofline: the roof is unknown, so no share of it: {exc}"


def _local_gpu_name(local: bool) -> str:
    """The kind of GPU of this host, for a model whose instances run on a GPU."""
    if not local:
        raise RoofUnknown("the model runs on the server's GPU, which is not on this host: pass --peak-tflops and --peak-bandwidth-gbs")
    gpus = tuple(ServerGpu(device["uuid"], device["name"], device["memory_total_bytes"]) for device in nvml_devices())
    name = server_gpu_name(gpus)
    if name is None:
        raise RoofUnknown("the model runs on a GPU and NVML finds none here: pass --peak-tflops and --peak-bandwidth-gbs")
    return name


def _onnx(model_dir: Path, version: str, model_config: dict[str, Any]) -> tuple[onnx.ModelProto, str] | None:
    """The model's ONNX graph and where it came from: `<dir>/<version>/<default_model_filename or model.onnx>`,
    else what the model's builder makes (a read-only repository keeps the shipped centernet's in memory)."""
    filename = model_config.get("default_model_filename") or ""
    path = model_dir / version / (filename if filename.endswith(".onnx") else "model.onnx")
    if path.is_file():
        return load_onnx(path), f"ONNX {path}"
    builder_path = model_dir / BUILDER
    if not builder_path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"loadgen_builder_{model_dir.name}", builder_path)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    if not hasattr(builder, "build_from_parameters"):
        return None
    parameters = {key: value.get("string_value", "") for key, value in (model_config.get("parameters") or {}).items()}
    return builder.build_from_parameters(parameters), f"built in memory by {builder_path} ({path} not found)"


def _direct_cache_key(model: onnx.ModelProto, threads: OrtThreads, batch_size: int) -> str:
    # Everything that changes the timing: the graph's bytes, the batch, the threads, the runtime, the machine.
    digest = hashlib.sha256(model.SerializeToString()).hexdigest()
    return (f"sha256 {digest}|batch {batch_size}|intra {threads.intra_op}|inter {threads.inter_op}|{machine_key()}"
            f"|warm-up {DIRECT_WARMUP_MS:g} ms|{DIRECT_DURATION_S:g} s")  # fmt: skip


def cached_direct_timing(model: onnx.ModelProto, threads: OrtThreads, cache_dir: Path | None = None,
                         batch_size: int = 1) -> DirectFigures:  # fmt: skip
    """The model timed alone at `batch_size`: from the cache when this machine timed the same graph at that
    batch with the same threads and runtime before, else timed now (DIRECT_WARMUP_MS, DIRECT_DURATION_S) and cached."""
    path = (cache_dir if cache_dir is not None else default_cache_dir()) / DIRECT_CACHE_FILE
    key = _direct_cache_key(model, threads, batch_size)
    entries = read_entries(path)
    entry = entries.get(key)
    if isinstance(entry, dict) and entry.get("latencies_ms") and isinstance(entry.get("measured_at"), str):
        timing = DirectTiming(batch_size, threads, DIRECT_WARMUP_MS, tuple(entry["latencies_ms"]), float(entry["wall_s"]))
        source = f"cached {path}, measured {entry['measured_at']}"
    else:
        timing = time_model(model, batch_size=batch_size, threads=threads, warmup_ms=DIRECT_WARMUP_MS, duration_s=DIRECT_DURATION_S)
        measured_at = datetime.now(UTC).isoformat(timespec="seconds")
        entries[key] = {"latencies_ms": list(timing.latencies_ms), "wall_s": timing.wall_s, "measured_at": measured_at}
        try:
            write_entries(path, entries)
            source = f"measured after the sweep {measured_at} (cached {path})"
        except OSError as error:  # a read-only home: the figures stand, timed again next run
            source = f"measured after the sweep {measured_at} (not cached: {error.strerror or error})"
    return DirectFigures(
        batch_size=timing.batch_size,
        intra_op_threads=threads.intra_op,
        inter_op_threads=threads.inter_op,
        threads_source=threads.source,
        iterations=timing.iterations,
        mean_ms=timing.mean_ms,
        median_ms=timing.latency_ms["median"],
        cov_percent=timing.cov_percent,
        source=source,
    )
