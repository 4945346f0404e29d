"""A sweep: the model under test, its prepared requests, and one measured level after another."""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from time import monotonic_ns
from typing import Any

from loadgen.capacity import CapacityPlan, midpoint, plan_capacity
from loadgen.config import LoadShape, RunConfig
from loadgen.decoupled import check_streamable, decoupled_model, token_output
from loadgen.errors import UsageError, WorkerLost
from loadgen.inputs import build_stream_inputs, model_inputs
from loadgen.listener import RunListener
from loadgen.load import Load, LocalLoad
from loadgen.measurement import LevelPart, LevelResult, measure_levels
from loadgen.result import COMPLETE, RUNNING, RunResult
from loadgen.samples import StreamGoodput
from loadgen.schedule import (
    ConcurrencySchedule,
    IntervalSchedule,
    OpenLoopSchedule,
    RateSchedule,
    Schedule,
)
from loadgen.replay import check_inputs
from loadgen.schedule.replay import ReplaySchedule
from loadgen.schedule.sequences import OpenLoopSequenceSchedule, SequenceSchedule
from loadgen.scraper import MetricsScraper
from loadgen.sequences import check_sequence_load, check_worker_split
from loadgen.server_stats import ModelTree, model_tree, parse_statistics
from loadgen.shared_memory import shared_memory_outputs
from loadgen.sla import evaluate
from loadgen.tail import MIN_TRACES
from loadgen.tracing import Tracer
from loadgen.transport.base import Transport, expected_outputs


def _values(load: LoadShape) -> Iterator[float]:
    values = load.load_range.values()
    if values is not None:
        return iter(values)
    return itertools.count(load.load_range.start, load.load_range.step)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Where the load came from, for the report."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    }


class Sweep:
    """The model under test, its prepared requests, and the levels measured so far.

    `result()` can be taken at any time: after a failure or an interruption it holds the
    levels that finished, so nothing measured is lost.
    """

    def __init__(
        self, config: RunConfig, server_metadata, model_configs, tree: ModelTree, load: Load, transport: Transport,
        tracer: Tracer | None = None, sequences: bool = False, streams: tuple[int, ...] | None = None,
    ) -> None:
        self.config = config
        self.sequences = sequences  # the model is sequence-batched: its load is sequences
        self.streams = streams  # with streams of steps as input data: each one's steps
        self.server_metadata = server_metadata
        self.model_configs = model_configs
        self.tree = tree
        self.load = load
        self.levels: list[LevelResult] = []
        self.stop_reason: str | None = None
        self.measuring: str | None = None  # the level in progress, e.g. "concurrency 4"
        self.warnings: list[str] = []
        self.scraper: MetricsScraper | None = None
        self.started_at = _now()
        self.started_ns = monotonic_ns()
        self._transport = transport
        self.tracer = tracer

    @classmethod
    async def open(cls, config: RunConfig, transport: Transport, tracer: Tracer | None = None, worker_cpus: float = 1.0) -> Sweep:
        """Read the server and the model, and build every request the sweep will send (each with
        an id of the `tracer`'s, with one); with --workers, each worker asks Ray for `worker_cpus`."""
        server_metadata = await transport.server_metadata()
        configs: dict[str, dict[str, Any]] = {}

        async def fetch_config(name: str, version: str) -> dict[str, Any]:
            configs[name] = await transport.model_config(name, version)
            return configs[name]

        target = config.target
        tree = await model_tree(fetch_config, target.model_name, target.model_version)
        check_streamable(target.model_name, decoupled_model(tree, configs), target.streaming)
        # A sequence-batched model is driven as sequences, as perf_analyzer drives it.
        sequences = "sequence_batching" in configs[target.model_name]
        metadata = await transport.model_metadata(target.model_name, target.model_version)
        specs = model_inputs(metadata, configs[target.model_name], config.inputs.batch_size)
        outputs = [output["name"] for output in metadata.get("outputs", [])]
        # its tokenizer counts --prompt-tokens; streams: a sequence model's input data, one stream a sequence
        tensors, streams = build_stream_inputs(specs, config.inputs, target.model_repository)
        load_shape = config.load
        check_sequence_load(target.model_name, sequences, load_shape.sequence_options, load_shape.open_loop,
                            load_shape.schedule_file is not None, streams is not None, tracer is not None, target.streaming)  # fmt: skip
        if sequences:
            concurrency = load_shape.concurrency_range
            load_shape.sequence_plan().check_concurrency(load_shape.open_sequences if load_shape.open_loop
                                                         else max(concurrency.start, concurrency.end))  # fmt: skip
            if load_shape.open_loop and load_shape.workers is not None:
                check_worker_split(load_shape.open_sequences, load_shape.workers)
        if (plan := config.load.replay) is not None:
            check_inputs(plan, plan.for_model(target.model_name, only_model=True), len(tensors))
        if target.streaming:
            if any(expected_outputs(inputs) is not None for inputs in tensors):
                raise UsageError("--input-data's validation_data checks a request's one response: it does not apply to "
                                 "--streaming; drop validation_data or --streaming")
            # The token output the run counts, settled once: the one the load prepares and the summary records.
            counted = token_output(target.model_name, metadata.get("outputs", []), target.token_output)
            config = replace(config, target=replace(target, token_output=counted))
            target = config.target
        gates = config.gates
        goodput_latency_ms = gates.goodput_latency_ms
        # A streamed request is goodput when it meets every bound given, its responses' ones included.
        stream_goodput = (StreamGoodput(goodput_latency_ms, gates.goodput_ttft_ms, gates.goodput_itl_ms)
                          if target.streaming and gates.goodput_bounded else None)  # fmt: skip
        export_requests = config.outputs.profile_export_file is not None
        output_sizes = shared_memory_outputs(target, specs.outputs, outputs, config.inputs.batch_size, tensors)
        if config.load.workers is None:
            id_prefix = tracer.prefix if tracer is not None else None
            load: Load = await LocalLoad.open(transport, target, config.load, tensors, outputs, goodput_latency_ms, export_requests,
                                              id_prefix, stream_goodput, sequences, output_sizes)  # fmt: skip
        else:
            # Ray is an optional extra: imported only when asked for.
            from loadgen.workers.pool import WorkerPool

            load = await WorkerPool.open(target, config.load, tensors, outputs, goodput_latency_ms, export_requests, stream_goodput,
                                         worker_cpus, output_sizes, sequences)  # fmt: skip
        return cls(config, server_metadata, configs, tree, load, transport, tracer, sequences, streams)

    async def start_metrics(self, url: str, listener: RunListener, model_configs: dict[str, dict[str, Any]] | None = None) -> None:
        """Scrape `url` from now on, every --metrics-interval and at each window boundary, for this
        model's `model_configs` (a mix: every model's); `listener` hears of a scrape that fails."""
        interval_ms, tls = self.config.outputs.metrics_interval_ms, self.config.target.https_tls
        configs = self.model_configs if model_configs is None else model_configs
        self.scraper = MetricsScraper(url, interval_ms, configs, partial(self._warn, listener), tls)
        await self.scraper.start()

    def _warn(self, listener: RunListener, message: str) -> None:
        """A warning: kept in the result, and told to `listener`."""
        self.warnings.append(message)
        listener.warning(message)

    async def start_tracing(self, listener: RunListener) -> None:
        """Set the server's trace settings (with a tracer); `listener` hears if the levels will have no traces."""
        for note in await self.tracer.start(self._transport) if self.tracer is not None else ():
            self._warn(listener, note)

    async def stop_tracing(self, listener: RunListener) -> None:
        """Put a -u server's trace settings back, and close the trace collector."""
        for note in await self.tracer.stop(self._transport) if self.tracer is not None else ():
            self._warn(listener, note)

    async def close(self) -> None:
        """Release the load: its connections, and with --workers the worker processes."""
        await self.load.close()

    async def stop_metrics(self) -> None:
        if self.scraper is not None:
            await self.scraper.close()
            if 0 < self.scraper.failures < self.scraper.attempts:
                self.warnings.append(
                    f"{self.scraper.failures} of {self.scraper.attempts} metrics scrapes failed: "
                    "the metrics cover the scrapes that succeeded"
                )

    async def snapshot(self, boundary_ns: int):
        """The statistics at a window boundary, and the metrics page read at the same moment."""
        if self.scraper is None:
            return parse_statistics(await self._transport.model_statistics())
        statistics, _ = await asyncio.gather(self._transport.model_statistics(), self.scraper.scrape(at_ns=boundary_ns))
        return parse_statistics(statistics)

    def schedule(self, value: float) -> Schedule:
        load = self.config.load
        if load.replay is not None:  # in a mix, every line names its model (loadgen.mix checks)
            entries = load.replay.for_model(self.config.target.model_name, only_model=True)
            return ReplaySchedule(entries, load.replay.period_ns, load.replay_speed, load.replay_loop)
        if load.intervals_us is not None:
            pacing: OpenLoopSchedule | None = IntervalSchedule(list(load.intervals_us))
        elif load.request_rate_range is not None:
            pacing = RateSchedule(value, load.request_distribution, load.seed)
        else:
            pacing = None
        if self.sequences and pacing is not None:
            return OpenLoopSequenceSchedule(pacing, load.open_sequences, load.serial_sequences, load.sequence_plan(), load.seed,
                                            self.streams)  # fmt: skip
        if self.sequences:
            return SequenceSchedule(int(value), load.sequence_plan(), load.seed, self.streams)
        return pacing if pacing is not None else ConcurrencySchedule(int(value))

    def latency_breach(self, level: LevelResult) -> str | None:
        threshold_ms = self.config.gates.latency_threshold_ms
        latency_us = level.client.latency_us(self.config.windows.percentile)
        if threshold_ms is not None and latency_us > threshold_ms * 1e3:
            return f"latency {latency_us / 1e3:.2f} ms exceeded the {threshold_ms:g} ms threshold"
        return None

    def _sla_breach(self, level: LevelResult) -> str | None:
        failed = [verdict.expression for verdict in level.sla if not verdict.passed]
        return f"SLA {', '.join(failed)} breached" if failed else None

    def _bound_breach(self, level: LevelResult) -> str | None:
        """Why `level` is out of bounds (-l, --sla, or unstable in a search), or None."""
        unstable = "no stable measurement" if self.config.gates.binary_search and not level.stable else None
        return self.latency_breach(level) or self._sla_breach(level) or unstable

    def part(self, schedule: Schedule, listener: RunListener) -> LevelPart:
        """This model's load at a level of `schedule`, telling `listener` of its windows."""
        return LevelPart(self.load, schedule, self.tree, self.config.inputs.batch_size, listener.window_closed,
                         listener.window_requests)  # fmt: skip

    def judged(self, level: LevelResult) -> LevelResult:
        """`level` with its SLA verdicts, kept as measured."""
        level = replace(level, sla=tuple(evaluate(self.config.gates.slas, level)))
        self.levels.append(level)
        return level

    async def _measure(self, value: float, listener: RunListener) -> LevelResult:
        schedule = self.schedule(value)
        self.measuring = f"{schedule.label.lower()} {schedule.value:g}"
        listener.level_started(schedule, self.load)
        (level,) = await measure_levels([self.part(schedule, listener)], self.config.windows, self.snapshot, self.scraper)
        if self.tracer is not None:
            level = await self._traced(level, listener)
        level = self.judged(level)
        self.measuring = None
        listener.level_finished(level, self.result(RUNNING))
        if level.incomplete is not None:  # the remaining levels would run on fewer workers than asked for
            raise WorkerLost(f"{level.incomplete} during {schedule.label.lower()} {schedule.value:g}: the level is kept, marked incomplete")
        return level

    async def _traced(self, level: LevelResult, listener: RunListener) -> LevelResult:
        """The level with its figures from Triton's traces; a warning when they rest on few."""
        percentile = self.config.windows.percentile or 99
        tracing = await self.tracer.level_tracing(self._transport, self.load.request_records(), level, percentile)
        if tracing is not None and tracing.few:
            self._warn(listener, f"{level.label.lower()} {level.value:g}: its per-stage figures and tail attribution rest on "
                                 f"{tracing.traces} traced requests (fewer than {MIN_TRACES}): trace more (a --trace-rate "
                                 f"below {self.tracer.rate}) or measure longer")  # fmt: skip
        return replace(level, tracing=tracing)

    async def run(self, listener: RunListener) -> None:
        """Measure level after level until the range ends, or bisect it (--binary-search), telling
        `listener` of each level, window and (if it asks) request.

        A sweep stops after the first level over -l (or, open-ended, over an --sla).
        """
        if listener.request_completed is not None:
            if not isinstance(self.load, LocalLoad):  # the config refuses live metrics with --workers already
                raise UsageError("a listener to every request needs the load in this process: not with --workers")
            self.load.engine.request_completed = listener.request_completed
        if self.config.gates.binary_search:
            await self._search(listener)
            return
        load = self.config.load
        for value in _values(load):
            level = await self._measure(value, listener)
            open_ended = load.load_range.end == 0
            breach = self.latency_breach(level) or (self._sla_breach(level) if open_ended else None)
            if breach is not None:
                self.stop_reason = f"{breach} at {level.label.lower()} {level.value:g}"
                return
            if load.single_level:
                return  # one level: the intervals or the recording are the load

    async def _search(self, listener: RunListener) -> None:
        """perf_analyzer's --binary-search: the highest level in the range that meets every bound."""
        load = self.config.load.load_range
        low, high = load.start, load.end
        first = await self._measure(low, listener)
        if (breach := self._bound_breach(first)) is not None:
            self.stop_reason = f"no level meets the bounds: {breach} already at {first.label.lower()} {first.value:g}"
            return
        if self._bound_breach(await self._measure(high, listener)) is None:
            return
        while (middle := midpoint(low, high, load.step)) is not None:
            if self._bound_breach(await self._measure(middle, listener)) is None:
                low = middle
            else:
                high = middle

    def _capacity(self) -> CapacityPlan | None:
        gates = self.config.gates
        if not (gates.binary_search or gates.target_throughput is not None):
            return None
        passing = [
            (level.label, level.value, level.client.throughput_infer_per_s)
            for level in self.levels
            if self._bound_breach(level) is None and level.stable
        ]
        return plan_capacity(passing, gates.target_throughput, gates.headroom_pct)

    def result(self, status: str = COMPLETE) -> RunResult:
        return RunResult(
            config=self.config,
            model=self.tree,
            server_metadata=self.server_metadata,
            model_configs=self.model_configs,
            # A search measures out of order; its report reads best in level order.
            levels=tuple(sorted(self.levels, key=lambda level: level.value) if self.config.gates.binary_search else self.levels),
            started_at=self.started_at,
            finished_at=_now(),
            started_ns=self.started_ns,
            stop_reason=self.stop_reason,
            status=status,
            warnings=tuple(self.warnings),
            environment=environment(),
            metrics_series=tuple(self.scraper.series) if self.scraper is not None else None,
            capacity=self._capacity(),
        )
