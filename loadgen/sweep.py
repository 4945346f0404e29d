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


class Sweep:
    """The model under test, its prepared requests, and the levels measured so far.

    `result()` can be taken at any time: after a failure or an interruption it holds the
    levels that finished, so nothing measured is lost.
    """

    def __init__(self, config: RunConfig, server_metadata, model_config, tree: ModelTree, engine: LoadEngine, snapshot) -> None:
        self.config = config
        self.server_metadata = server_metadata
        self.model_config = model_config
        self.tree = tree
        self.levels: list[LevelResult] = []
        self.stop_reason: str | None = None
        self.started_at = _now()
        self._engine = engine
        self._snapshot = snapshot

    @classmethod
    async def open(cls, config: RunConfig, transport: Transport) -> Sweep:
        """Read the server and the model, and build every request the sweep will send."""
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

        async def snapshot():
            return parse_statistics(await transport.model_statistics())

        return cls(config, server_metadata, model_config, tree, LoadEngine(transport, requests), snapshot)

    async def run(
        self,
        on_level_start: Callable[[ConcurrencySchedule, LoadEngine], None] | None = None,
        on_window: OnWindow | None = None,
        on_level: Callable[[LevelResult], None] | None = None,
    ) -> None:
        """Measure level after level, until the range ends or a level exceeds the latency threshold."""
        config = self.config
        threshold_us = config.latency_threshold_ms * 1e3 if config.latency_threshold_ms is not None else None
        for concurrency in _levels(config):
            schedule = ConcurrencySchedule(concurrency)
            if on_level_start is not None:
                on_level_start(schedule, self._engine)
            level = await measure_level(
                self._engine, schedule, config.windows, self._snapshot, self.tree, config.batch_size, on_window
            )
            self.levels.append(level)
            if on_level is not None:
                on_level(level)
            latency_us = level.client.latency_us(config.windows.percentile)
            if threshold_us is not None and latency_us > threshold_us:
                self.stop_reason = (
                    f"latency {latency_us / 1e3:.2f} ms exceeded the {config.latency_threshold_ms:g} ms threshold "
                    f"at concurrency {concurrency}"
                )
                return

    def result(self) -> RunResult:
        return RunResult(
            config=self.config,
            model=self.tree,
            server_metadata=self.server_metadata,
            model_config=self.model_config,
            levels=tuple(self.levels),
            started_at=self.started_at,
            finished_at=_now(),
            stop_reason=self.stop_reason,
        )
