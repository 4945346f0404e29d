"""Where a level's requests come from: the load interface, and this process's engine behind it.

measure_level drives a `Load` without knowing whether the requests leave from this process
(`LocalLoad`) or from worker processes whose windows it merges (loadgen.workers.pool).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import partial
from time import monotonic_ns
from typing import Any

import numpy as np

from loadgen.config import LoadShape, Target
from loadgen.engine import LoadEngine
from loadgen.histogram import LatencyHistogram
from loadgen.merge import WorkerFigures
from loadgen.profile_export import epoch_offset_ns, request_formatter
from loadgen.request_log import RequestLog, RequestRecords
from loadgen.samples import SampleRecorder, StreamGoodput, WindowRequests, WindowSamples
from loadgen.schedule.base import Schedule
from loadgen.schedule.sequences import SequenceCounts, SequenceTally
from loadgen.shared_memory import SharedMemory
from loadgen.stats import ClientStats, OpenLoopStats, client_stats, open_loop_stats
from loadgen.stream_stats import StreamStats, stream_stats
from loadgen.transport import InputTensor, Transport


class Load(ABC):
    """Runs one schedule at a time and hands over what completed, window by window.

    A window is whatever `close_window` returns: it has `start_ns`, `end_ns` and `duration_s`
    on this process's monotonic clock, `outstanding` (requests in flight at its end) and
    `oldest_outstanding_ns` (how long the oldest of them had been out), and only this load's
    `client_stats` reads the rest.
    """

    @property
    @abstractmethod
    def completed(self) -> int:
        """Requests completed since the load started (for progress)."""

    @property
    @abstractmethod
    def succeeded(self) -> int:
        """Of those, the ones that succeeded."""

    @property
    @abstractmethod
    def in_flight(self) -> int: ...

    @property
    @abstractmethod
    def peak_in_flight(self) -> int:
        """The most requests in flight at once since the schedule started."""

    @property
    @abstractmethod
    def drain_s(self) -> float:
        """The most `stop` waits for the requests in flight (loadgen.engine.drain_bound_s)."""

    @property
    def boundary_skew_s(self) -> float:
        """How far apart the load's window boundaries and the driver's may fall (0 in one process)."""
        return 0.0

    @abstractmethod
    async def start(self, schedule: Schedule, count_target: int | None) -> asyncio.Future:
        """Start driving `schedule`; the future settles when the load stops, or fails.

        With `count_target`, `window_full` returns once that many requests completed in the window.
        """

    @abstractmethod
    async def window_full(self) -> None: ...

    @abstractmethod
    async def close_window(self, boundary_ns: int) -> Any:
        """End the current window at `boundary_ns` and start the next one."""

    @abstractmethod
    async def stop(self) -> Any:
        """Stop sending and wait for the requests in flight, at most the engine's drain bound.

        Returns the drain: a window of what completed since the last `close_window`, the
        requests abandoned at the bound recorded as `unanswered` errors and counted, with their
        age, as the window's `outstanding`.
        """

    @abstractmethod
    async def abandon(self) -> None:
        """Stop at once; what is in flight is never recorded."""

    @abstractmethod
    def client_stats(
        self, windows: Sequence[Any], batch_size: int, percentiles: Sequence[int] = (), drain: Any = None
    ) -> ClientStats:
        """The figures of `windows`, goodput within the bound the load was opened with (None without
        one); the failures of a `drain` (from `stop`) join their errors."""

    @abstractmethod
    def open_loop_stats(self, windows: Sequence[Any], target_rate_per_s: float) -> OpenLoopStats: ...

    @abstractmethod
    def latency_histogram(self, windows: Sequence[Any]) -> LatencyHistogram:
        """The successes' latencies over `windows`, as one histogram (for summary.json and compare)."""

    @abstractmethod
    def stream_stats(
        self, windows: Sequence[Any], batch_size: int, latency_us: dict[int, float], percentiles: Sequence[int] = ()
    ) -> StreamStats | None:
        """The streaming figures of `windows` (loadgen.stream_stats), examples picked by the level's
        `latency_us` percentiles; None when the requests are not streamed."""

    def worker_figures(self, windows: Sequence[Any], batch_size: int) -> tuple[WorkerFigures, ...]:
        """Each worker's part of `windows`; none when the load comes from one process."""
        return ()

    def sequence_tally(self, schedule: Schedule, windows: Sequence[Any], drain: Any = None) -> SequenceTally | None:
        """A sequence load's sequences: completed within `windows`, failed and cut short over the level
        (its `drain` from `stop`, None if cut short); None when `schedule` is not one."""
        if not isinstance(schedule, SequenceCounts):
            return None
        return schedule.tally(windows[0].start_ns, windows[-1].end_ns)

    @abstractmethod
    def window_requests(self, window: Any) -> WindowRequests | None:
        """The requests that completed in `window`, handed over once; None unless the load was
        opened to keep them (--profile-export-file)."""

    def use_epoch_offset(self, offset_ns: int) -> None:
        """Export this process's times on the wall clock by `offset_ns` (epoch_offset_ns) instead of
        the one the load took: a mix's models share one, so a window's bounds export the same for each."""
        self._epoch_offset_ns = offset_ns

    def request_records(self) -> RequestRecords | None:
        """The current level's requests by id number so far; None unless the load was prepared with
        request ids (tracing)."""
        return None

    async def close(self) -> None:
        """Release what the load holds (connections, worker processes)."""


class LocalLoad(Load):
    """The load from this process's event loop: exact figures from every sample. A --workers
    worker runs one of these too, and sends the driver digests of its windows."""

    def __init__(
        self, engine: LoadEngine, goodput_latency_ms: float | None = None, export_requests: bool = False, log_requests: bool = False,
        stream_goodput: StreamGoodput | None = None, counts_tokens: bool = False,
    ) -> None:
        self.engine = engine
        self._log_requests = log_requests  # each level keeps a RequestLog (the requests carry ids: tracing)
        self.goodput_latency_ms = goodput_latency_ms  # goodput counts the successes within it; None: no goodput
        # Streamed requests (engine.streaming): the bounds their goodput counts within (None: no goodput),
        # and whether their responses' tokens are counted (a token output).
        self.stream_goodput = stream_goodput
        self.counts_tokens = counts_tokens
        self._recorder: SampleRecorder | None = None
        # With export_requests, every request is kept as its export line, on the wall clock by this offset.
        self._epoch_offset_ns = epoch_offset_ns()
        self._request_format = request_formatter(self._epoch_offset_ns) if export_requests else None
        self.shared_memory: SharedMemory | None = None  # the region the requests' tensors are in, released by close

    @classmethod
    def prepare(
        cls, transport: Transport, target: Target, load: LoadShape, tensors: Sequence[list[InputTensor]], outputs: list[str],
        goodput_latency_ms: float | None = None, export_requests: bool = False, id_prefix: str | None = None,
        stream_goodput: StreamGoodput | None = None, sequences: bool = False, shared_memory: SharedMemory | None = None,
    ) -> LocalLoad:
        """Every request of the run prepared on `transport`, behind an engine with the run's limits;
        with `id_prefix` (tracing), each request carries an id and each level keeps its RequestLog.
        With `target.streaming`, streamed requests that count `target.token_output`'s elements, their
        goodput within `stream_goodput`'s bounds (None: no goodput). With `sequences`, each request
        carries the sequence parameters its send sets. With `shared_memory` (holding `tensors`, in
        their order), the requests name their slots in it, and the load releases it when it closes."""
        if target.streaming:
            prepare = partial(transport.prepare_stream, token_output=target.token_output, id_prefix=id_prefix)
        else:
            prepare = transport.prepare if id_prefix is None else partial(transport.prepare, id_prefix=id_prefix)
            if sequences:  # never with an id prefix: tracing is refused with sequences
                prepare = partial(transport.prepare, sequences=True)
        if shared_memory is not None:
            requests = [prepare(target.model_name, target.model_version, t, outputs, shared_memory=placement)
                        for t, placement in zip(tensors, shared_memory.placements)]  # fmt: skip
        else:
            requests = [prepare(target.model_name, target.model_version, t, outputs) for t in tensors]
        engine = LoadEngine(transport, requests, load.max_inflight, target.request_timeout_ms, streaming=target.streaming)
        made = cls(engine, goodput_latency_ms, export_requests, id_prefix is not None, stream_goodput, target.token_output is not None)
        made.shared_memory = shared_memory
        return made

    @classmethod
    async def open(
        cls, transport: Transport, target: Target, load: LoadShape, tensors: Sequence[list[InputTensor]], outputs: list[str],
        goodput_latency_ms: float | None = None, export_requests: bool = False, id_prefix: str | None = None,
        stream_goodput: StreamGoodput | None = None, sequences: bool = False, output_sizes: Sequence[int] | None = None,
    ) -> LocalLoad:
        """`prepare`, with `output_sizes` (--shared-memory) first placing `tensors` in a region of this
        process's own, released at once if preparing fails (else when the load closes)."""
        if output_sizes is None:
            return cls.prepare(transport, target, load, tensors, outputs, goodput_latency_ms, export_requests, id_prefix,
                               stream_goodput, sequences)  # fmt: skip
        shared = await SharedMemory.open(transport, tensors, output_sizes)
        try:
            return cls.prepare(transport, target, load, tensors, outputs, goodput_latency_ms, export_requests, id_prefix,
                               stream_goodput, sequences, shared)  # fmt: skip
        except BaseException:
            await shared.close()
            raise

    @property
    def completed(self) -> int:
        return self.engine.completed

    @property
    def succeeded(self) -> int:
        return self.engine.succeeded

    @property
    def in_flight(self) -> int:
        return self.engine.in_flight

    @property
    def peak_in_flight(self) -> int:
        return self.engine.peak_in_flight

    @property
    def drain_s(self) -> float:
        return self.engine.drain_s

    async def start(self, schedule: Schedule, count_target: int | None) -> asyncio.Future:
        self._recorder = SampleRecorder(monotonic_ns(), count_target, self._request_format, self.stream_goodput)
        self.engine.request_log = RequestLog() if self._log_requests else None
        return self.engine.start(schedule, self._recorder)

    async def window_full(self) -> None:
        await self._recorder.window_full.wait()

    async def close_window(self, boundary_ns: int) -> WindowSamples:
        engine = self.engine
        return self._recorder.close_window(boundary_ns, engine.in_flight, engine.oldest_outstanding_ns(boundary_ns))

    async def stop(self) -> WindowSamples:
        abandoned, oldest_ns = await self.engine.stop()
        return self._recorder.close_window(monotonic_ns(), abandoned, oldest_ns)

    async def abandon(self) -> None:
        await self.engine.abandon()

    async def close(self) -> None:
        if self.shared_memory is not None:
            await self.shared_memory.close()

    def client_stats(
        self, windows: Sequence[WindowSamples], batch_size: int, percentiles: Sequence[int] = (), drain: WindowSamples | None = None
    ) -> ClientStats:
        return client_stats(windows, batch_size, percentiles, drain, self.goodput_latency_ms)

    def open_loop_stats(self, windows: Sequence[WindowSamples], target_rate_per_s: float) -> OpenLoopStats:
        return open_loop_stats(windows, target_rate_per_s)

    def latency_histogram(self, windows: Sequence[WindowSamples]) -> LatencyHistogram:
        return LatencyHistogram.of(np.concatenate([w.latency_ns for w in windows]) if windows else np.empty(0, np.int64))

    def stream_stats(
        self, windows: Sequence[WindowSamples], batch_size: int, latency_us: dict[int, float], percentiles: Sequence[int] = ()
    ) -> StreamStats | None:
        if not self.engine.streaming:
            return None
        return stream_stats(windows, batch_size, latency_us, percentiles, self.counts_tokens, self.stream_goodput is not None)

    def request_records(self) -> RequestRecords | None:
        log = self.engine.request_log
        return log.records() if log is not None else None

    def use_epoch_offset(self, offset_ns: int) -> None:
        super().use_epoch_offset(offset_ns)
        if self._request_format is not None:
            self._request_format = request_formatter(offset_ns)

    def window_requests(self, window: WindowSamples) -> WindowRequests | None:
        if window.requests is None:
            return None
        offset_ns = self._epoch_offset_ns
        return WindowRequests(window.start_ns + offset_ns, window.end_ns + offset_ns, window.requests.count, window.requests.take())
