"""summary.json: every figure of every level, the run's configuration and its metrics (docs/summary.md)."""

from __future__ import annotations

import json
from pathlib import Path

from loadgen.measurement import LevelResult
from loadgen.report.base import ReportWriter, write_atomic
from loadgen.result import RunResult


class JsonReport(ReportWriter):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def level(self, level: LevelResult, so_far: RunResult) -> None:
        self.finish(so_far)

    def finish(self, result: RunResult) -> None:
        write_atomic(self.path, json.dumps(result.to_dict(), indent=2) + "\n")
