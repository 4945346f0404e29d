"""The driver's side of --workers: Ray actors behind the Load interface.

The driver splits each level among the workers (loadgen.workers.split), says when every window
ends so that all of them measure the same windows, and merges what they hand back
(loadgen.merge). Server statistics and metrics stay with the driver: it reads them once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import warnings
from collections.abc import Sequence
from time import monotonic_ns
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from loadgen.config import LoadShape, Target
from loadgen.engine import drain_bound_s
from loadgen.errors import LoadgenError, ServerError, UsageError, WorkerLost
from loadgen.histogram import LatencyHistogram
from loadgen.load import Load
from loadgen.merge import (
    PooledWindow,
    WorkerFigures,
    pooled_client_stats,
    pooled_latency_histogram,
    pooled_open_loop_stats,
    pooled_sequence_tally,
    pooled_stream_stats,
    worker_figures,
)
from loadgen.profile_export import epoch_offset_ns
from loadgen.redact import redact_url
from loadgen.samples import StreamGoodput, WindowRequests
from loadgen.schedule.base import Schedule
from loadgen.schedule.sequences import SequenceCounts, SequenceTally
from loadgen.stats import ClientStats, OpenLoopStats
from loadgen.stream_stats import StreamStats
from loadgen.transport import InputTensor
from loadgen.workers.actor import LoadWorker
from loadgen.workers.split import split_count, split_schedule

# Workers that have not connected by then will not: the cluster lacks room for them.
WORKER_START_S = 120.0
# A worker that does not answer a stop or a close by then is killed all the same.
WORKER_CALL_S = 10.0
PROGRESS_POLL_S = 1.0
# Ray's object store holds only the prepared inputs and the windows' digests.
OBJECT_STORE_BYTES = 200 * 1024 * 1024


def _ray_call(ref: Any) -> asyncio.Future:
    return asyncio.wrap_future(ref.future())


def _connect(load: LoadShape) -> bool:
    """Join the cluster at --ray-address, or start Ray here; False if this process already had Ray."""
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    # ray.init makes SIGTERM exit the process on the spot; the run's own handler writes the report first.
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with warnings.catch_warnings():  # Ray Client warns before it raises: the error says it all
            warnings.simplefilter("ignore")
            _init(load, quiet)
    except Exception as exc:  # Ray raises a bare Exception when its node does not start in time
        where = redact_url(load.ray_address) if load.ray_address else "this machine"
        # With Ray's token authentication (on by default in local clusters), a client without the token times out.
        token = " (a cluster with token authentication also needs RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN here)" if load.ray_address else ""
        raise ServerError(
            f"cannot reach a Ray cluster at {where} ({exc}): start one (ray start --head) or fix --ray-address{token}"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, on_sigterm)
    return True


def _init(load: LoadShape, quiet: dict[str, Any]) -> None:
    if load.ray_address is not None:
        ray.init(address=load.ray_address, **quiet)
        return
    ray.init(
        address="local",  # a Ray of the run's own, whatever RAY_ADDRESS or a `ray start` on this machine say
        num_cpus=max(os.cpu_count() or 1, load.workers),  # each worker asks for one CPU
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        **quiet,
    )


class WorkerPool(Load):
    """N workers driven as one load; figures merged exactly, with each worker's part kept apart."""

    def __init__(
        self, actors: list, places: list[tuple[str, int]], started_ray: bool, drain_s: float, goodput_latency_ms: float | None,
        export_requests: bool = False, streaming: bool = False, counts_tokens: bool = False, stream_goodput: bool = False,
    ) -> None:
        self._actors = actors
        self._goodput_latency_ms = goodput_latency_ms  # the workers count their successes within it
        # Streamed requests: whether the workers stream, count their responses' tokens, count goodput within the stream bounds.
        self._streaming, self._counts_tokens, self._stream_goodput = streaming, counts_tokens, stream_goodput
        # --profile-export-file: the workers send each window's requests; its bounds are the driver's, on the wall clock by this offset.
        self._export_requests = export_requests
        self._epoch_offset_ns = epoch_offset_ns()
        self._drain_s = drain_s  # each worker's own bound on draining its requests at a level's end
        self._places = places  # (host, pid) of each worker
        self._started_ray = started_ray
        self._schedules: list[Schedule | None] = [None] * len(actors)
        self._active: list[int] = []  # the workers with a share of the current level, still alive
        self._lost: dict[int, str] = {}
        self._window_start_ns = 0
        self._peak_in_flight = 0
        self._skew_ns = 0  # the longest round trip of a window boundary this level
        self._completed = 0
        self._succeeded = 0
        self._in_flight = 0
        self._driving: asyncio.Task | None = None
        self._poller: asyncio.Task | None = None

    @classmethod
    async def open(
        cls, target: Target, load: LoadShape, tensors: Sequence[list[InputTensor]], outputs: list[str],
        goodput_latency_ms: float | None, export_requests: bool = False, stream_goodput: StreamGoodput | None = None,
        cpus: float = 1.0, output_sizes: list[int] | None = None, sequences: bool = False,
    ) -> WorkerPool:
        """Start `load.workers` workers, each connected to the server with every request prepared,
        counting each window's successes within `goodput_latency_ms` (None: no goodput) and, with
        `export_requests`, sending each window's requests with its digest. With `target.streaming`,
        the requests are streamed, their goodput within `stream_goodput` (None: no goodput). Each
        worker asks Ray for `cpus` (a mix of M models: 1/M each, so M models' workers share N CPUs).
        With `output_sizes` (--shared-memory), each worker places the tensors in a region of its own.
        With `sequences`, the requests carry the sequence parameters each send sets."""
        started_ray = _connect(load)
        actors = [LoadWorker.options(num_cpus=cpus, scheduling_strategy="SPREAD").remote() for _ in range(load.workers)]
        drain_s = drain_bound_s(target.request_timeout_ms)
        pool = cls(actors, [("?", 0)] * len(actors), started_ray, drain_s, goodput_latency_ms, export_requests,
                   target.streaming, target.token_output is not None, stream_goodput is not None)  # fmt: skip
        try:
            inputs = ray.put(list(tensors))  # once, not once per worker
            opening = pool._gather(
                {i: actor.open.remote(target, load, inputs, outputs, goodput_latency_ms, export_requests, stream_goodput, output_sizes,
                                      sequences)
                 for i, actor in enumerate(actors)},
                timeout_s=None,
            )
            pool._places = list((await asyncio.wait_for(opening, WORKER_START_S)).values())
        except TimeoutError:
            await pool.close()
            raise UsageError(
                f"{load.workers} workers did not all start in {WORKER_START_S:.0f} s: the Ray cluster has fewer "
                f"free CPUs than --workers (each worker takes one): lower --workers or add nodes"
            ) from None
        except BaseException:
            await pool.close()
            raise
        return pool

    def _name(self, index: int) -> str:
        host, pid = self._places[index]
        return f"worker {index} ({host}, pid {pid})"

    def _failure(self, index: int, exc: BaseException) -> LoadgenError:
        """What a failed call to a worker means for the run."""
        if isinstance(exc, RayTaskError) and isinstance(exc.cause, LoadgenError):
            return exc.cause  # the load itself failed there, as it would have here
        if isinstance(exc, RayActorError):
            why = str(exc).splitlines()[0].strip().rstrip(".")
            self._lost[index] = f"{self._name(index)} was lost ({why[:1].lower()}{why[1:]})"
            if index in self._active:
                self._active.remove(index)
            return WorkerLost(self._lost[index])
        return LoadgenError(f"a load worker failed: {str(exc).splitlines()[0]}")

    def _unresponsive(self, index: int, timeout_s: float) -> WorkerLost:
        """A worker that did not answer within `timeout_s` is as good as lost: it is killed."""
        self._lost[index] = f"{self._name(index)} was lost (it did not answer within {timeout_s:g} s)"
        if index in self._active:
            self._active.remove(index)
        ray.kill(self._actors[index])
        return WorkerLost(self._lost[index])

    async def _gather(self, calls: dict[int, Any], lost_ok: bool = False, timeout_s: float | None = WORKER_CALL_S) -> dict[int, Any]:
        """Await calls made to several workers at once, by worker index, each for at most
        `timeout_s`; a failed or unanswered call raises, but with `lost_ok` a lost worker only
        drops out of the answers."""

        async def call(ref: Any) -> Any:
            return await asyncio.wait_for(_ray_call(ref), timeout_s)

        results = await asyncio.gather(*(call(ref) for ref in calls.values()), return_exceptions=True)
        answers = {}
        for index, result in zip(calls, results):
            if not isinstance(result, BaseException):
                answers[index] = result
                continue
            failure = self._unresponsive(index, timeout_s) if isinstance(result, TimeoutError) else self._failure(index, result)
            if not (lost_ok and isinstance(failure, WorkerLost)):
                raise failure
        return answers

    async def _each(
        self, method: str, indices: Sequence[int] | None = None, timeout_s: float | None = WORKER_CALL_S
    ) -> dict[int, Any]:
        """Call `method` on the given workers (default: the active ones) at once."""
        indices = self._active if indices is None else indices
        return await self._gather({i: getattr(self._actors[i], method).remote() for i in indices}, timeout_s=timeout_s)

    @property
    def completed(self) -> int:
        return self._completed

    @property
    def succeeded(self) -> int:
        return self._succeeded

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        return self._peak_in_flight

    @property
    def drain_s(self) -> float:
        return self._drain_s

    async def start(self, schedule: Schedule, count_target: int | None) -> asyncio.Future:
        self._schedules = split_schedule(schedule, len(self._actors))
        self._active = [i for i, share in enumerate(self._schedules) if share is not None and i not in self._lost]
        # A count window fills when every worker has its part, so each worker's part is in proportion to its load.
        weights = [self._schedules[i].value for i in self._active]
        counts = split_count(count_target, weights) if count_target is not None else [None] * len(self._active)
        await self._gather(
            {i: self._actors[i].start.remote(self._schedules[i], None if c is None else max(1, c)) for i, c in zip(self._active, counts)}
        )
        self._peak_in_flight = self._skew_ns = 0
        runs = {i: _ray_call(self._actors[i].run.remote()) for i in self._active}
        for run in runs.values():  # an abandoned level's runs fail unread: that is expected
            run.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._driving = asyncio.ensure_future(self._watch(runs))
        self._poller = asyncio.ensure_future(self._poll())
        return self._driving

    async def _watch(self, runs: dict[int, asyncio.Future]) -> None:
        """Settles when every worker's load has stopped; the first worker to fail or die fails it."""
        pending = set(runs.values())
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for index, run in runs.items():
                if run in done and run.exception() is not None:
                    raise self._failure(index, run.exception())

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(LoadgenError):
                status = await self._each("status")
                self._completed = sum(done for done, _, _ in status.values())
                self._succeeded = sum(good for _, good, _ in status.values())
                self._in_flight = sum(out for _, _, out in status.values())
            await asyncio.sleep(PROGRESS_POLL_S)

    async def window_full(self) -> None:
        await self._each("window_full", timeout_s=None)  # measure_level bounds the wait

    @property
    def boundary_skew_s(self) -> float:
        return self._skew_ns / 1e9

    async def close_window(self, boundary_ns: int) -> PooledWindow:
        # A lost worker's window is gone with it; the level then ends through `_watch`.
        answers = await self._gather({i: self._actors[i].close_window.remote() for i in self._active}, lost_ok=True)
        # Each worker closed its window somewhere in this round trip.
        self._skew_ns = max(self._skew_ns, monotonic_ns() - boundary_ns)
        digests = tuple(answers.get(index) for index in range(len(self._actors)))
        window = PooledWindow(self._window_start_ns, boundary_ns, digests)
        self._window_start_ns = boundary_ns
        self._peak_in_flight = max(self._peak_in_flight, sum(d.peak_in_flight for d in digests if d is not None))
        return window

    def _end_level(self) -> None:
        for task in (self._poller, self._driving):
            if task is not None:
                task.cancel()
        self._poller = self._driving = None

    async def stop(self) -> PooledWindow:
        try:
            answers = await self._gather(
                {i: self._actors[i].stop.remote() for i in self._active}, lost_ok=True, timeout_s=self._drain_s + WORKER_CALL_S
            )
            if self._driving is not None:
                await self._driving
        finally:
            self._end_level()
        end_ns = monotonic_ns()
        return PooledWindow(self._window_start_ns, end_ns, tuple(answers.get(index) for index in range(len(self._actors))))

    async def abandon(self) -> None:
        self._end_level()
        with contextlib.suppress(LoadgenError, TimeoutError):
            await asyncio.wait_for(self._each("abandon"), WORKER_CALL_S)

    def client_stats(
        self, windows: Sequence[PooledWindow], batch_size: int, percentiles: Sequence[int] = (), drain: PooledWindow | None = None
    ) -> ClientStats:
        return pooled_client_stats(windows, batch_size, percentiles, drain, self._goodput_latency_ms)

    def open_loop_stats(self, windows: Sequence[PooledWindow], target_rate_per_s: float) -> OpenLoopStats:
        return pooled_open_loop_stats(windows, target_rate_per_s)

    def latency_histogram(self, windows: Sequence[PooledWindow]) -> LatencyHistogram:
        return pooled_latency_histogram(windows)

    def stream_stats(
        self, windows: Sequence[PooledWindow], batch_size: int, latency_us: dict[int, float], percentiles: Sequence[int] = ()
    ) -> StreamStats | None:
        if not self._streaming:
            return None
        return pooled_stream_stats(windows, batch_size, latency_us, percentiles, self._counts_tokens, self._stream_goodput)

    def window_requests(self, window: PooledWindow) -> WindowRequests | None:
        """The workers' requests one after the other, each worker's in the order they completed."""
        if not self._export_requests:
            return None
        parts = [d.requests for d in window.digests if d is not None and d.requests is not None and d.requests.count]
        offset_ns = self._epoch_offset_ns
        return WindowRequests(
            window.start_ns + offset_ns, window.end_ns + offset_ns, sum(p.count for p in parts), ",\n".join(p.take() for p in parts)
        )

    def sequence_tally(self, schedule: Schedule, windows: Sequence[PooledWindow], drain: PooledWindow | None = None) -> SequenceTally | None:
        if not isinstance(schedule, SequenceCounts):
            return None
        return pooled_sequence_tally(windows, drain)

    def worker_figures(self, windows: Sequence[PooledWindow], batch_size: int) -> tuple[WorkerFigures, ...]:
        return tuple(
            worker_figures(
                windows,
                index,
                host,
                pid,
                schedule.value if schedule is not None else 0.0,
                batch_size,
                self._lost.get(index),
            )
            for index, ((host, pid), schedule) in enumerate(zip(self._places, self._schedules))
        )

    async def close(self) -> None:
        """Close the workers' connections, end their processes, and stop Ray if this run started it."""
        self._end_level()
        alive = [i for i in range(len(self._actors)) if i not in self._lost]
        with contextlib.suppress(LoadgenError, TimeoutError):
            await asyncio.wait_for(self._each("close", indices=alive), WORKER_CALL_S)
        for actor in self._actors:
            ray.kill(actor)
        if self._started_ray:
            ray.shutdown()
