"""summary.json: every figure of every level, and the run's configuration."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from loadgen import __version__
from loadgen.measurement import LevelResult
from loadgen.report.base import ReportWriter
from loadgen.server_stats import ServerFigures
from loadgen.sweep import RunResult

SCHEMA_VERSION = 1


def server_dict(figures: ServerFigures) -> dict[str, Any]:
    data = {f.name: getattr(figures, f.name) for f in dataclasses.fields(figures) if f.name != "composing"}
    data["compute_us"] = figures.compute_us
    data["overhead_us"] = figures.overhead_us
    data["composing"] = [server_dict(child) for child in figures.composing]
    return data


def level_dict(level: LevelResult) -> dict[str, Any]:
    client = dataclasses.asdict(level.client)
    client["percentile_latency_us"] = {f"p{p}": v for p, v in level.client.percentile_latency_us.items()}
    client["error_rate"] = level.client.error_rate
    return {
        "label": level.label,
        "value": level.value,
        "stable": level.stable,
        "windows": [dataclasses.asdict(w) for w in level.windows],
        "client": client,
        "server": server_dict(level.server),
        "count_check": {**dataclasses.asdict(level.count_check), "mismatch": level.count_check.mismatch},
    }


def summary(result: RunResult) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "loadgen_version": __version__,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "stop_reason": result.stop_reason,
        "config": result.config.to_dict(),
        "server": result.server_metadata,
        "model_config": result.model_config,
        "levels": [level_dict(level) for level in result.levels],
    }


def write_json_atomic(path: Path, data: Any) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


class JsonReport(ReportWriter):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def finish(self, result: RunResult) -> None:
        write_json_atomic(self.path, summary(result))
