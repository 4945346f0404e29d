"""What the report modules share: a rendered plot, writing a file atomically, which streaming
figures a run reports, whether it drove sequences, and finding a mix's models (each model's file names, a level's model)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loadgen.config import Gates

if TYPE_CHECKING:
    from loadgen.measurement import LevelResult
    from loadgen.result import RunResult

# What a file name may hold of a model's name; anything else becomes "_".
NOT_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")

# The percentiles a streamed level's TTFT and ITL have (loadgen.stream_stats.distribution_us), before --percentile's.
STREAM_PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Plot:
    """A rendered chart: its file, and the title the HTML report shows above it."""

    name: str
    title: str
    path: Path


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def stream_percentile_keys(percentile: int | None) -> list[str]:
    """The keys of a streamed level's TTFT and ITL percentiles, in order: p50, p90, p99 and --percentile's."""
    return [f"p{p}" for p in sorted({*STREAM_PERCENTILES, *([percentile] if percentile is not None else [])})]


def stream_goodput_bounds(gates: Gates) -> list[tuple[str, float]]:
    """(figure, ms) of each bound a streamed run's goodput meets, when it has one of its own (--goodput-ttft-ms,
    --goodput-itl-ms); empty without, when its goodput is the latency's alone (or there is none)."""
    if gates.goodput_ttft_ms is None and gates.goodput_itl_ms is None:
        return []
    bounds = (("latency", gates.goodput_latency_ms), ("TTFT", gates.goodput_ttft_ms), ("ITL", gates.goodput_itl_ms))
    return [(figure, ms) for figure, ms in bounds if ms is not None]


def drove_sequences(part: RunResult) -> bool:
    """Whether the run (or a mix's part) drove a sequence model: its levels have sequence figures."""
    return any(level.sequences is not None for level in part.levels)


def model_name(part: RunResult) -> str:
    """The model a run (or a mix's part) measured."""
    return part.model.name or part.config.target.model_name


def file_safe(name: str) -> str:
    """`name` as a file name's part: a model's name with a path separator or space cannot escape the folder."""
    return NOT_IN_FILE_NAME.sub("_", name) or "_"


def part_path(path: Path, part: RunResult) -> Path:
    """A mix's model's file beside `path`: results.csv -> results.MODEL.csv."""
    return path.with_name(f"{path.stem}.{file_safe(model_name(part))}{path.suffix}")


def part_of(level: LevelResult, so_far: RunResult) -> tuple[int, RunResult]:
    """Which of `so_far.parts` measured `level` (the same object), and its index."""
    for index, part in enumerate(so_far.parts):
        if any(measured is level for measured in part.levels):
            return index, part
    raise ValueError(f"level {level.label} {level.value:g} is not one of the run's")
