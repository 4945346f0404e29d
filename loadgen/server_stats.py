"""Triton's statistics extension: snapshots, per-window deltas and perf_analyzer's breakdown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from loadgen.errors import ServerError

DURATION_KINDS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)


@dataclass(frozen=True)
class Duration:
    count: int = 0
    ns: int = 0

    def __sub__(self, other: Duration) -> Duration:
        return Duration(self.count - other.count, self.ns - other.ns)

    @property
    def avg_us(self) -> float:
        return self.ns / self.count / 1e3 if self.count else 0.0


@dataclass(frozen=True)
class ModelSnapshot:
    """One model version's cumulative counters (or, after subtraction, their change)."""

    name: str
    version: str
    inference_count: int
    execution_count: int
    durations: Mapping[str, Duration]
    # Triton's batch_stats: compute_infer per batch size, count = executions, ns = their whole time.
    # None: the server reported none. Per-request counters charge every request of a batch the whole
    # execution, so only these give the time per inference exactly.
    batch_compute_infer: Mapping[int, Duration] | None = None

    def __sub__(self, before: ModelSnapshot) -> ModelSnapshot:
        batches = None
        if self.batch_compute_infer is not None and before.batch_compute_infer is not None:
            batches = {size: now - before.batch_compute_infer.get(size, Duration()) for size, now in self.batch_compute_infer.items()}
        return replace(
            self,
            inference_count=self.inference_count - before.inference_count,
            execution_count=self.execution_count - before.execution_count,
            durations={k: self.durations[k] - before.durations[k] for k in DURATION_KINDS},
            batch_compute_infer=batches,
        )

    def __getitem__(self, kind: str) -> Duration:
        return self.durations[kind]


Snapshot = dict[tuple[str, str], ModelSnapshot]


def parse_statistics(document: Mapping[str, Any]) -> Snapshot:
    """`/v2/models/stats` → snapshots keyed by (name, version). Counters may arrive as strings."""
    snapshot: Snapshot = {}
    for entry in document.get("model_stats", []):
        stats = entry.get("inference_stats", {})
        durations = {
            kind: Duration(int(stats.get(kind, {}).get("count", 0)), int(stats.get(kind, {}).get("ns", 0)))
            for kind in DURATION_KINDS
        }
        batch_stats = entry.get("batch_stats")
        model = ModelSnapshot(
            name=entry["name"],
            version=str(entry.get("version", "")),
            inference_count=int(entry.get("inference_count", 0)),
            execution_count=int(entry.get("execution_count", 0)),
            durations=durations,
            batch_compute_infer=None if batch_stats is None else {
                int(batch["batch_size"]): Duration(int(batch.get("compute_infer", {}).get("count", 0)),
                                                   int(batch.get("compute_infer", {}).get("ns", 0)))
                for batch in batch_stats
            },
        )  # fmt: skip
        snapshot[(model.name, model.version)] = model
    return snapshot


def resolve_version(snapshot: Snapshot, name: str, version: str) -> str:
    """The loaded version a request for `version` ("" or "-1" = latest) is served by."""
    loaded = [v for (n, v) in snapshot if n == name]
    if not loaded:
        raise ServerError(f"the server reports no statistics for model {name!r}: is it loaded?")
    if version not in ("", "-1"):
        if version not in loaded:
            raise ServerError(f"model {name!r} has no loaded version {version} (loaded: {', '.join(sorted(loaded))})")
        return version
    return max(loaded, key=lambda v: int(v) if v.isdigit() else -1)


@dataclass(frozen=True)
class ModelTree:
    """A model and, for an ensemble, the models its steps call (recursively)."""

    name: str
    version: str
    composing: tuple[ModelTree, ...] = ()


async def model_tree(
    fetch_config: Callable[[str, str], Awaitable[Mapping[str, Any]]], name: str, version: str = ""
) -> ModelTree:
    """Find an ensemble's composing models from its config, recursing into nested ensembles."""
    config = await fetch_config(name, version)
    if config.get("platform") != "ensemble":
        return ModelTree(name, version)
    children = []
    for step in config.get("ensemble_scheduling", {}).get("step", []):
        step_version = str(step.get("model_version", -1))
        children.append(await model_tree(fetch_config, step["model_name"], "" if step_version == "-1" else step_version))
    return ModelTree(name, version, tuple(children))


@dataclass(frozen=True)
class BatchCompute:
    """A model's executions of one batch size over an interval, and their whole compute-infer time."""

    batch_size: int
    executions: int
    compute_infer_ns: int


@dataclass(frozen=True)
class ServerFigures:
    """perf_analyzer's server-side figures for one model over an interval. Averages in µs per request."""

    name: str
    version: str
    inference_count: int
    execution_count: int
    success_count: int
    fail_count: int
    avg_request_latency_us: float
    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float
    composing: tuple[ServerFigures, ...] = field(default=())
    # Its executions per batch size (Triton's batch_stats), by batch size; None: not reported (or not
    # recorded: summary.json before version 14).
    batches: tuple[BatchCompute, ...] | None = None

    def walk(self):
        """Every composing model's figures below this one, depth first, nested ensembles included."""
        for child in self.composing:
            yield child
            yield from child.walk()

    @property
    def compute_us(self) -> float:
        return self.compute_input_us + self.compute_infer_us + self.compute_output_us

    @property
    def overhead_us(self) -> float:
        return max(0.0, self.avg_request_latency_us - self.queue_us - self.compute_us)


def server_figures(tree: ModelTree, before: Snapshot, after: Snapshot) -> ServerFigures:
    """Figures for `tree` between two snapshots.

    A plain model's queue and compute come from its own counters. An ensemble's come from
    its composing models (its own compute counters repeat theirs, and its own queue is only
    its scheduling time), summed per request along the pipeline, as perf_analyzer does.
    """
    version = resolve_version(after, tree.name, tree.version)
    key = (tree.name, version)
    if key not in before:
        raise ServerError(f"model {tree.name!r} version {version} appeared during the measurement: was it reloaded?")
    delta = after[key] - before[key]
    composing = tuple(server_figures(child, before, after) for child in tree.composing)
    success = delta["success"]
    if composing:
        queue_us = sum(c.queue_us for c in composing)
        compute = [sum(getattr(c, part) for c in composing) for part in ("compute_input_us", "compute_infer_us", "compute_output_us")]
    else:
        queue_us = delta["queue"].avg_us
        compute = [delta[part].avg_us for part in ("compute_input", "compute_infer", "compute_output")]
    return ServerFigures(
        name=tree.name,
        version=version,
        inference_count=delta.inference_count,
        execution_count=delta.execution_count,
        success_count=success.count,
        fail_count=delta["fail"].count,
        avg_request_latency_us=success.avg_us,
        queue_us=queue_us,
        compute_input_us=compute[0],
        compute_infer_us=compute[1],
        compute_output_us=compute[2],
        composing=composing,
        batches=None if delta.batch_compute_infer is None else tuple(
            BatchCompute(size, d.count, d.ns) for size, d in sorted(delta.batch_compute_infer.items()) if d.count
        ),
    )  # fmt: skip
