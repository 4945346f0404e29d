"""The report writer interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

from loadgen.config import RunConfig
from loadgen.measurement import LevelResult
from loadgen.sweep import RunResult


class ReportWriter(ABC):
    """Receives a run as it happens (start, each finished level) and writes it at the end."""

    def start(self, config: RunConfig) -> None:
        """The run is about to measure its first level."""

    def level(self, level: LevelResult) -> None:
        """A level has been measured."""

    @abstractmethod
    def finish(self, result: RunResult) -> None:
        """The run is over: write the whole result."""
