"""The report writer interface."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from loadgen.config import RunConfig
from loadgen.measurement import LevelResult
from loadgen.result import RunResult


class ReportWriter(ABC):
    """Receives a run as it happens (start, each finished level) and writes it at the end.

    Files that are cheap to write are written again after every level, from `so_far`, so a
    crash, a kill or a dead server never loses the levels that finished.
    """

    def start(self, config: RunConfig) -> None:
        """The run is about to measure its first level."""

    def level(self, level: LevelResult, so_far: RunResult) -> None:
        """A level has been measured; `so_far` is the run up to it (status "running")."""

    @abstractmethod
    def finish(self, result: RunResult) -> None:
        """The run is over: write the whole result."""


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
