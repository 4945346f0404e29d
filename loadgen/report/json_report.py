"""summary.json: every figure of every level, the run's configuration and its metrics (docs/summary.md)."""

from __future__ import annotations

import json
from pathlib import Path

from loadgen.listener import RunListener
from loadgen.measurement import LevelResult
from loadgen.report.base import write_atomic
from loadgen.result import RunResult


class JsonReport(RunListener):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def level_finished(self, level: LevelResult, so_far: RunResult) -> None:
        self.run_finished(so_far)

    def run_finished(self, result: RunResult) -> None:
        write_atomic(self.path, json.dumps(result.to_dict(), indent=2) + "\n")
