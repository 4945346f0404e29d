"""A sweep: the model under test, its prepared requests, and one measured level after another."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from loadgen.config import RunConfig
from loadgen.engine import LoadEngine
from loadgen.inputs import build_request_inputs, model_inputs
from loadgen.measurement import LevelResult, OnWindow, measure_level
from loadgen.schedule import ConcurrencySchedule
from loadgen.server_stats import ModelTree, model_tree, parse_statistics
from loadgen.transport.base import Transport


@dataclass(frozen=True)
class RunResult:
    config: RunConfig
    model: ModelTree
    server_metadata: dict[str, Any]
    model_config: dict[str, Any]
    levels: tuple[LevelResult, ...]
    started_at: str
    finished_at: str
    stop_reason: str | None = None


def _levels(config: RunConfig) -> Iterator[int]:
    values = config.concurrency_range.values()
    if values is not None:
        return iter(values)
    return itertools.count(config.concurrency_range.start, config.concurrency_range.step)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def run_sweep(
    config: RunConfig,
    transport: Transport,
    on_level_start: Callable[[ConcurrencySchedule, LoadEngine], None] | None = None,
    on_window: OnWindow | None = None,
    on_level: Callable[[LevelResult], None] | None = None,
) -> RunResult:
    started_at = _now()
    server_metadata = await transport.server_metadata()
    model_config = await transport.model_config(config.model_name, config.model_version)
    metadata = await transport.model_metadata(config.model_name, config.model_version)
    tree = await model_tree(transport.model_config, config.model_name, config.model_version)
    specs = model_inputs(metadata, model_config, config.batch_size)
    outputs = [output["name"] for output in metadata.get("outputs", [])]
    requests = [
        transport.prepare(config.model_name, config.model_version, tensors, outputs)
        for tensors in build_request_inputs(specs, config)
    ]
    engine = LoadEngine(transport, requests)

    async def snapshot():
        return parse_statistics(await transport.model_statistics())

    levels: list[LevelResult] = []
    stop_reason = None
    threshold_us = config.latency_threshold_ms * 1e3 if config.latency_threshold_ms is not None else None
    for concurrency in _levels(config):
        schedule = ConcurrencySchedule(concurrency)
        if on_level_start is not None:
            on_level_start(schedule, engine)
        level = await measure_level(engine, schedule, config.windows, snapshot, tree, config.batch_size, on_window)
        levels.append(level)
        if on_level is not None:
            on_level(level)
        latency_us = level.client.latency_us(config.windows.percentile)
        if threshold_us is not None and latency_us > threshold_us:
            stop_reason = (
                f"latency {latency_us / 1e3:.2f} ms exceeded the {config.latency_threshold_ms:g} ms threshold "
                f"at concurrency {concurrency}"
            )
            break
    return RunResult(
        config=config,
        model=tree,
        server_metadata=server_metadata,
        model_config=model_config,
        levels=tuple(levels),
        started_at=started_at,
        finished_at=_now(),
        stop_reason=stop_reason,
    )
