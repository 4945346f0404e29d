"""A tune's result, and tune.json as its dict form (docs/tune.md).

Every candidate measured is one `CandidateResult`, in the order measured; the default
configuration is the first. `TuneResult.to_dict()` is tune.json, rewritten after every candidate
so that a killed search keeps what it measured; `from_dict()` reads it back (for --resume and the
reports).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from loadgen import __version__
from loadgen.knobs import Candidate, StageSettings, candidate_key

TUNE_SCHEMA_VERSION = 1

# CandidateResult.outcome
MEASURED = "measured"  # some level met every bound: it has a throughput within them
NO_LEVEL = "no level within the bounds"
LOAD_FAILED = "failed to load"  # Triton refused the configuration: `message` is its answer
RUN_FAILED = "run failed"  # the measurement itself failed (the server died, ...): `message` says how

# TuneResult.status
RUNNING, COMPLETE, INTERRUPTED, FAILED = "running", "complete", "interrupted", "failed"


@dataclass(frozen=True)
class CandidateResult:
    """One configuration of the ensemble's composing models and what it measured."""

    index: int  # order measured, from 0 (the default configuration)
    settings: Candidate
    configs: dict[str, dict[str, Any]]  # model -> the Triton configuration loaded (JSON, proto field names)
    outcome: str
    message: str | None = None
    throughput_infer_per_s: float | None = None  # the highest within every bound (the binary search's answer)
    level_value: float | None = None  # the concurrency or request rate that reached it
    p99_ms: float | None = None  # client p99 at that level
    spread: float | None = None  # that level's window-to-window throughput spread, relative (max - min) / mean
    stage_time_us: dict[str, float] = field(default_factory=dict)  # model -> queue + compute per request at that level
    cpu_utilization: float | None = None  # the server's, 0..1, at that level (with metrics)
    gpu_utilization: float | None = None
    servers_needed: int | None = None  # for --target-throughput with --headroom
    remeasured_infer_per_s: tuple[float, ...] = ()  # further measurements of a leading candidate at the same level
    run_dir: str | None = None  # its run's report folder, relative to the tune's
    reason: str | None = None  # why the search tried it
    duration_s: float = 0.0  # loading and measuring it

    @property
    def key(self) -> str:
        return candidate_key(self.settings)

    @property
    def mean_throughput_infer_per_s(self) -> float | None:
        """The first measurement and any re-measurements, averaged: what the best is named on."""
        if self.throughput_infer_per_s is None:
            return None
        values = (self.throughput_infer_per_s, *self.remeasured_infer_per_s)
        return sum(values) / len(values)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["settings"] = {model: dataclasses.asdict(settings) for model, settings in self.settings}
        data["remeasured_infer_per_s"] = list(self.remeasured_infer_per_s)
        return data | {"key": self.key, "mean_throughput_infer_per_s": self.mean_throughput_infer_per_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateResult:
        settings = tuple(
            (model, StageSettings(**{**values, "preferred_batch_size": tuple(values["preferred_batch_size"])}))
            for model, values in data["settings"].items()
        )
        given = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        return cls(**{**given, "settings": settings, "remeasured_infer_per_s": tuple(data["remeasured_infer_per_s"])})


@dataclass(frozen=True)
class TuneResult:
    ensemble: str
    search: str  # guided or grid
    options: dict[str, Any]  # the tune's own options and the bounds, as given
    candidates: tuple[CandidateResult, ...]
    best: int | None  # index of the best candidate; None when none met the bounds
    status: str = RUNNING
    stop_reason: str | None = None
    started_at: str = ""
    finished_at: str | None = None
    loadgen_version: str = __version__

    @property
    def default(self) -> CandidateResult | None:
        return self.candidates[0] if self.candidates else None

    def _headline(self, candidate: CandidateResult | None) -> dict[str, Any] | None:
        if candidate is None:
            return None
        return {"index": candidate.index, "throughput": candidate.mean_throughput_infer_per_s, "p99_ms": candidate.p99_ms,
                "configs": candidate.configs}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        best = self.candidates[self.best] if self.best is not None else None
        return {
            "schema_version": TUNE_SCHEMA_VERSION,
            "loadgen_version": self.loadgen_version,
            "ensemble": self.ensemble,
            "search": self.search,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "options": self.options,
            "default": self._headline(self.default),
            "best": self._headline(best),
            "candidates": [candidate.to_dict() for candidate in self.candidates],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneResult:
        best = data["best"]
        return cls(
            ensemble=data["ensemble"],
            search=data["search"],
            options=data["options"],
            candidates=tuple(CandidateResult.from_dict(candidate) for candidate in data["candidates"]),
            best=best["index"] if best is not None else None,
            status=data["status"],
            stop_reason=data["stop_reason"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            loadgen_version=data["loadgen_version"],
        )
