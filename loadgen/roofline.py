"""A run's roofline: where each composing model's compute under load stands against the machine's roof.

What the run recorded is kept (summary.json's `roofline`): per composing model its cost per inference
(FLOPs, parameters, bytes, and where the FLOPs came from), its direct ONNX Runtime timing and the roof
of the threads it may use. The per-level figures are derived from those and from each level's server
statistics (ServerFigures.batches, Triton's batch_stats), so `loadgen report` redraws them from
summary.json alone. loadgen.roofline_run gathers the inputs after a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loadgen.measurement import LevelResult
from loadgen.roof import Roof, intensity, share_of_roof
from loadgen.server_stats import BatchCompute, ServerFigures

# Where a level's compute time per inference came from (ComputePerInference.source).
BATCH_STATS = "batch_stats"
REQUEST_COUNTERS = "per-request counters"


@dataclass(frozen=True)
class DirectFigures:
    """The model timed alone in ONNX Runtime (loadgen.direct_timing), with the server's thread settings."""

    batch_size: int
    intra_op_threads: int | None  # None: ONNX Runtime's default
    inter_op_threads: int | None
    threads_source: str
    iterations: int
    mean_ms: float  # per call of batch_size inferences
    median_ms: float
    cov_percent: float
    source: str  # "measured after the sweep", or the cache file it was read from

    @property
    def per_inference_us(self) -> float:
        return self.mean_ms * 1e3 / self.batch_size


@dataclass(frozen=True)
class ModelRoofline:
    """One composing model's cost per inference (batch size 1), direct timing and roof."""

    name: str
    flops: float  # 1 multiply-accumulate = 2 FLOPs
    flops_source: str  # the ONNX file, its builder, or --model-flops
    params: int | None  # None: not known (--model-flops)
    bytes: int | None  # weights read plus activations read and written; None: not known (--model-flops)
    direct: DirectFigures | None  # None: not timed (no ONNX file, or a server on another machine)
    roof: Roof | None  # None: unknown, `roof_note` says why and how to give it
    roof_note: str | None = None
    # The model alone at each other batch size the server ran it at (above 1, smallest first): a level's
    # compute is set against the same batches. Empty: none ran, or the graph has no batch dimension.
    direct_batches: tuple[DirectFigures, ...] = ()

    def direct_at(self, batch_size: int) -> DirectFigures | None:
        """The model's direct timing at `batch_size`; None when not timed at it."""
        timings = (self.direct, *self.direct_batches) if self.direct is not None else self.direct_batches
        return next((timing for timing in timings if timing.batch_size == batch_size), None)

    @property
    def intensity(self) -> float | None:
        """FLOPs per byte; None without the bytes."""
        return intensity(self.flops, self.bytes) if self.bytes else None

    @property
    def attainable_flops_per_s(self) -> float | None:
        """The roof above the model: at its intensity, or the compute peak when its bytes are unknown."""
        if self.roof is None:
            return None
        intensity = self.intensity
        return self.roof.peak_flops_per_s if intensity is None else self.roof.attainable_flops_per_s(intensity)


@dataclass(frozen=True)
class Roofline:
    """The composing models whose FLOPs are known, and the names of those whose are not."""

    models: tuple[ModelRoofline, ...]
    unknown: tuple[str, ...] = ()

    def model(self, name: str) -> ModelRoofline | None:
        return next((model for model in self.models if model.name == name), None)


@dataclass(frozen=True)
class ComputePerInference:
    """A model's compute-infer time per inference over a level, batch sizes accounted for."""

    inferences: int
    executions: int
    compute_infer_us: float  # per inference
    source: str  # BATCH_STATS (exact) or REQUEST_COUNTERS (exact only when every execution had the same batch)

    @property
    def avg_batch_size(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0


def compute_per_inference(figures: ServerFigures) -> ComputePerInference | None:
    """`figures`' compute-infer time per inference; None when the model ran nothing.

    With batch statistics: the executions' whole time over the inferences they ran. Without, the
    per-request counters charge each request of a batch the whole execution, so their average per
    request, times the executions, over the inferences, is exact only when every batch was alike.
    """
    if figures.batches is not None:
        inferences = sum(batch.batch_size * batch.executions for batch in figures.batches)
        executions = sum(batch.executions for batch in figures.batches)
        if not inferences:
            return None
        return ComputePerInference(inferences, executions, sum(b.compute_infer_ns for b in figures.batches) / 1e3 / inferences,
                                   BATCH_STATS)  # fmt: skip
    if not figures.inference_count or not figures.execution_count:
        return None
    per_inference_us = figures.compute_infer_us * figures.execution_count / figures.inference_count
    return ComputePerInference(figures.inference_count, figures.execution_count, per_inference_us, REQUEST_COUNTERS)


def achieved_flops_per_s(flops: float, compute_infer_us: float) -> float:
    """FLOP/s while the model computes: its FLOPs per inference over its compute time per inference."""
    return flops / (compute_infer_us / 1e6) if compute_infer_us > 0 else 0.0


@dataclass(frozen=True)
class ModelAtLevel:
    """A composing model at one level: its compute under load against its roof and its direct timing."""

    model: ModelRoofline
    compute: ComputePerInference
    batches: tuple[BatchCompute, ...] | None = None  # the level's executions by batch size (Triton's batch_stats)

    @property
    def direct_per_inference_us(self) -> float | None:
        """The model alone in ONNX Runtime per inference, for the batches the level ran: each batch size's
        direct time weighted by its executions; at batch size 1 when the level's batches are not known
        or one was not timed (`batch_matched` False). None without a direct timing."""
        if self.batch_matched:
            total_us = sum(batch.executions * self.model.direct_at(batch.batch_size).mean_ms * 1e3 for batch in self.batches)
            return total_us / self.compute.inferences
        return self.model.direct.per_inference_us if self.model.direct is not None else None

    @property
    def batch_matched(self) -> bool:
        """Whether the direct time is for the level's own batches (every batch size it ran was timed)."""
        return bool(self.batches) and all(self.model.direct_at(batch.batch_size) is not None for batch in self.batches)

    @property
    def achieved_flops_per_s(self) -> float:
        return achieved_flops_per_s(self.model.flops, self.compute.compute_infer_us)

    @property
    def share_of_roof(self) -> float | None:
        """Achieved over the roof at the model's intensity; None with the roof unknown."""
        attainable = self.model.attainable_flops_per_s
        return share_of_roof(self.achieved_flops_per_s, attainable) if attainable is not None else None

    @property
    def serving_overhead_us(self) -> float | None:
        """Compute time per inference beyond the direct ONNX time for the same batches: Triton's and the backend's share."""
        direct_us = self.direct_per_inference_us
        return self.compute.compute_infer_us - direct_us if direct_us is not None else None


def computing_models(server: ServerFigures) -> list[ServerFigures]:
    """The models that compute: the model itself, or an ensemble's steps, nested ensembles opened."""
    return [figures for figures in server.walk() if not figures.composing] or [server]


def level_figures(roofline: Roofline, level: LevelResult) -> tuple[ModelAtLevel, ...]:
    """Each composing model with known FLOPs that computed during `level`, in the pipeline's order."""
    found = []
    for figures in computing_models(level.server):
        model, compute = roofline.model(figures.name), compute_per_inference(figures)
        if model is not None and compute is not None:
            found.append(ModelAtLevel(model, compute, figures.batches if compute.source == BATCH_STATS else None))
    return tuple(found)


def ran_batch_sizes(levels: Sequence[LevelResult], name: str) -> tuple[int, ...]:
    """The batch sizes the server ran `name` at over the levels (Triton's batch_stats), smallest first."""
    sizes = {batch.batch_size for level in levels for figures in computing_models(level.server)
             if figures.name == name for batch in figures.batches or ()}  # fmt: skip
    return tuple(sorted(sizes))
