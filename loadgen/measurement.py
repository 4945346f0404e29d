"""Measuring one load level: windows until stable, server snapshots at every boundary."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import monotonic_ns

from loadgen.errors import ServerError, WorkerLost
from loadgen.histogram import LatencyHistogram
from loadgen.load import Load
from loadgen.merge import WorkerFigures
from loadgen.metrics import MetricsFigures, level_metrics
from loadgen.samples import WindowRequests
from loadgen.schedule.base import Schedule
from loadgen.schedule.open_loop import OpenLoopSchedule
from loadgen.schedule.sequences import SequenceTally
from loadgen.scraper import MetricsScraper
from loadgen.server_stats import ModelTree, ServerFigures, Snapshot, server_figures
from loadgen.sla import Verdict
from loadgen.stats import ClientStats, OpenLoopStats
from loadgen.stream_stats import StreamStats
from loadgen.tail import LevelTracing
from loadgen.windows import COUNT_WINDOWS, STABLE_WINDOW_COUNT, WindowPolicy, is_stable

@dataclass(frozen=True)
class CountCheck:
    """Client successes vs the server's success delta over the same windows.

    The two sides are read at slightly different moments, so up to the requests in flight at
    each of the two outer boundaries may fall on either side: `tolerance` allows for that. A
    request that failed at the client may still be a success to the server (the Python backend
    counts a response carrying an error as one), so the server's count may exceed the client's
    by up to its errors. A larger gap means other traffic reached the model during the measurement.
    """

    client_success: int
    server_success: int
    tolerance: int
    client_errors: int = 0

    @property
    def mismatch(self) -> bool:
        low, high = self.client_success - self.tolerance, self.client_success + self.client_errors + self.tolerance
        return not low <= self.server_success <= high


@dataclass(frozen=True)
class WindowFigures:
    """One window's figures, kept for the stability trace. Times on the monotonic clock.

    None is "not recorded": a window without a success has no latencies, and a summary.json before
    version 5 (upgraded) recorded neither those nor the errors and requests outstanding (version 1: nor times).
    """

    start_ns: int | None
    end_ns: int | None
    duration_s: float
    request_count: int
    throughput_infer_per_s: float
    latency_us: float  # the one stability is judged on: the average, or --percentile's (0 without successes)
    avg_latency_us: float | None
    percentile_latency_us: dict[int, float | None] | None  # the reported percentiles (and --percentile's)
    error_count: int | None = 0
    outstanding: int | None = 0  # requests in flight at the window's end
    oldest_outstanding_s: float | None = 0.0  # how long the oldest of them had been out then
    goodput_infer_per_s: float | None = None  # None without --goodput-latency-ms (or before summary.json version 7)

    @property
    def stalled(self) -> bool | None:
        """Nothing completed in the window while requests were out: its 0 infer/s is a server not answering.
        None when a window without a success did not record its errors or requests outstanding."""
        if self.request_count:
            return False
        if self.error_count is None or self.outstanding is None:
            return None
        return self.error_count == 0 and self.outstanding > 0


def outstanding_text(outstanding: int, age_s: float) -> str:
    """What a stalled window saw: "2 requests outstanding for 12.0 s, none completed"."""
    return f"{outstanding} request{'s' if outstanding != 1 else ''} outstanding for {age_s:.1f} s, none completed"


def drain_text(in_flight: int, duration_s: float, answered: int, errors: int, unanswered: int, unanswered_age_s: float) -> str:
    """What became of the requests still out after a level's last window."""
    text = (
        f"{in_flight} request{'s' if in_flight != 1 else ''} in flight after the last window: in the next "
        f"{duration_s:.1f} s {answered} answered (not counted), {errors} failed (counted in the errors)"
    )
    if unanswered:
        text += f", of which {unanswered} never answered (outstanding for up to {unanswered_age_s:.1f} s)"
    return text


@dataclass(frozen=True)
class DrainFigures:
    """What became of the requests in flight when a level's last window closed (and of those sent
    until its load stopped): the drain waits for them at most `bound_s`, then abandons the rest."""

    in_flight: int  # requests in flight when the last window closed
    duration_s: float  # from the last window's end until the load had stopped
    bound_s: float  # the request deadline (with a little grace), or 10 s without one
    answered: int  # successes after the last window: not in the level's figures, as in perf_analyzer
    errors: int  # failures after the last window, unanswered included: in the level's errors
    unanswered: int  # still in flight when the drain ran out, and abandoned
    unanswered_age_s: float  # how long the oldest of those had been out


@dataclass(frozen=True)
class SequenceFigures:
    """A sequence model's level: the sequences completed (every request answered without error)
    within the merged windows; over the whole level, those sent to their END with a request failed
    and those the level's end cut short (their END never sent; Triton frees them once idle)."""

    completed: int
    completed_per_s: float
    failed: int
    cut_short: int


@dataclass(frozen=True)
class LevelResult:
    """One level of a sweep: the merged last windows and how they were obtained."""

    label: str
    value: float
    stable: bool
    windows: tuple[WindowFigures, ...]
    client: ClientStats
    server: ServerFigures
    count_check: CountCheck
    metrics: MetricsFigures | None = None
    open_loop: OpenLoopStats | None = None
    latency_histogram: LatencyHistogram | None = None  # the successes' latencies over the merged windows
    sla: tuple[Verdict, ...] = ()  # the level's SLA verdicts, once evaluated
    workers: tuple[WorkerFigures, ...] = ()  # with --workers: each worker's part; empty in one process
    drain: DrainFigures | None = None  # None when the level was cut short (a worker lost)
    incomplete: str | None = None  # why the level ended before it could finish (a worker was lost)
    tracing: LevelTracing | None = None  # the figures from Triton's traces (--trace-rate); None without them
    streaming: StreamStats | None = None  # the streamed requests' figures (--streaming); None without it
    sequences: SequenceFigures | None = None  # a sequence model's sequences; None for any other model
    merged_windows: int = STABLE_WINDOW_COUNT  # how many of the last windows the figures merge (a replay played once: all)

    @property
    def reported_windows(self) -> tuple[WindowFigures, ...]:
        """The windows whose samples the level's figures merge."""
        return self.windows[-self.merged_windows:]

    @property
    def breakdown_us(self) -> dict[str, float]:
        client, server = self.client, self.server
        return latency_breakdown_us(
            avg_latency_us=client.avg_latency_us, avg_send_us=client.avg_send_us, avg_recv_us=client.avg_recv_us,
            queue_us=server.queue_us, compute_input_us=server.compute_input_us,
            compute_infer_us=server.compute_infer_us, compute_output_us=server.compute_output_us,
        )


def latency_breakdown_us(
    *, avg_latency_us: float, avg_send_us: float, avg_recv_us: float, queue_us: float,
    compute_input_us: float, compute_infer_us: float, compute_output_us: float,
) -> dict[str, float]:
    """perf_analyzer's CSV split of the average latency; "network" is what client and server leave unaccounted.

    Plain figures in, so summaries older than the breakdown (version 1) get it from what they recorded.
    """
    compute_us = compute_input_us + compute_infer_us + compute_output_us
    network_us = avg_latency_us - avg_send_us - avg_recv_us - queue_us - compute_us
    return {
        "client_send": avg_send_us,
        "network": max(0.0, network_us),
        "server_queue": queue_us,
        "server_compute_input": compute_input_us,
        "server_compute_infer": compute_infer_us,
        "server_compute_output": compute_output_us,
        "client_recv": avg_recv_us,
    }


# Progress callback: (schedule, windows measured so far, the latest window's figures).
OnWindow = Callable[[Schedule, int, WindowFigures], None]
# The requests of each window as it closes, when the load keeps them (--profile-export-file).
OnRequests = Callable[[Schedule, WindowRequests], None]


async def _window_end(
    policy: WindowPolicy, loads: Sequence[Load], window_start_ns: int, driving: Sequence[asyncio.Future],
    finishing: Sequence[asyncio.Future] = (),
) -> bool:
    """Wait until the current window should close; raise if a load itself has failed. True when
    it is the level's last: the `finishing` loads (finite schedules, driven by those futures) have
    sent and completed all their requests.

    Several loads (a mix of models) close their windows together: a count window closes once each
    has its count. A count window also closes when no request has succeeded for a whole stall
    bound while requests were out: a server that stopped answering must not hold it open for ever,
    nor a trickle of timeouts for the count's worth of deadlines.
    """
    if finishing and all(done.done() for done in finishing):
        return True
    if policy.mode == COUNT_WINDOWS:
        waiter = asyncio.ensure_future(asyncio.gather(*(load.window_full() for load in loads)))
        stall_s = count_window_stall_s(policy)
    else:
        remaining_s = policy.interval_ms / 1e3 - (monotonic_ns() - window_start_ns) / 1e9
        waiter = asyncio.ensure_future(asyncio.sleep(max(0.0, remaining_s)))
        stall_s = None
    ending = [done for done in finishing if not done.done()]
    try:
        while True:
            succeeded = sum(load.succeeded for load in loads)
            done, _ = await asyncio.wait({waiter, *driving, *ending}, timeout=stall_s, return_when=asyncio.FIRST_COMPLETED)
            if done or (sum(load.succeeded for load in loads) == succeeded and any(load.in_flight > 0 for load in loads)):
                break
    finally:
        if not waiter.done():
            waiter.cancel()
    if waiter in done:
        waiter.result()  # a worker lost while the window filled
    for ended in driving:
        if ended in done:
            ended.result()  # re-raises the load's failure
            raise ServerError("the load stopped before the measurement ended")
    for ended in finishing:
        if ended.done():
            ended.result()  # a finite schedule's failure
    return bool(finishing) and all(ended.done() for ended in finishing)


def count_window_stall_s(policy: WindowPolicy) -> float:
    """How long a count window waits with requests out and none succeeding: -p, at least 1 s
    (with --workers, the driver learns of completions once a second)."""
    return max(policy.interval_ms / 1e3, 1.0)


@dataclass(frozen=True)
class LevelPart:
    """One model's load at a level of a run: alone, or in a mix measured on one clock with others."""

    load: Load
    schedule: Schedule
    tree: ModelTree
    batch_size: int
    on_window: OnWindow | None = None
    on_requests: OnRequests | None = None


class _PartWindows:
    """A part's windows as they close: only those a level can merge are kept, so a long level stays
    small; a finite schedule's level merges every window."""

    def __init__(self, part: LevelPart, policy: WindowPolicy, keep_all: bool) -> None:
        self.part = part
        self.policy = policy
        self.percentiles = [policy.percentile] if policy.percentile is not None else []
        self.windows: deque = deque(maxlen=None if keep_all else STABLE_WINDOW_COUNT)
        self.figures: list[WindowFigures] = []

    def add(self, window) -> None:
        part, policy = self.part, self.policy
        if part.on_requests is not None and (requests := part.load.window_requests(window)) is not None:
            part.on_requests(part.schedule, requests)
        self.windows.append(window)
        stats = part.load.client_stats([window], part.batch_size, self.percentiles)
        self.figures.append(
            WindowFigures(
                start_ns=window.start_ns,
                end_ns=window.end_ns,
                duration_s=stats.duration_s,
                request_count=stats.request_count,
                throughput_infer_per_s=stats.throughput_infer_per_s,
                latency_us=stats.latency_us(policy.percentile),
                avg_latency_us=stats.avg_latency_us if stats.request_count else None,
                percentile_latency_us=stats.percentile_latency_us if stats.request_count else None,
                error_count=stats.error_count,
                outstanding=window.outstanding,
                oldest_outstanding_s=window.oldest_outstanding_ns / 1e9,
                goodput_infer_per_s=stats.goodput_infer_per_s,
            )
        )

    @property
    def stable(self) -> bool:
        """The last windows agree: in latency, and in throughput unless the schedule's need not hold steady."""
        figures = self.figures
        latencies_us = [f.latency_us for f in figures]
        throughputs = [f.throughput_infer_per_s for f in figures] if self.part.schedule.steady else latencies_us
        return is_stable(throughputs, latencies_us, self.policy.stability_pct)


async def measure_level(
    load: Load,
    schedule: Schedule,
    policy: WindowPolicy,
    snapshot: Callable[[int], Awaitable[Snapshot]],
    tree: ModelTree,
    batch_size: int,
    on_window: OnWindow | None = None,
    scraper: MetricsScraper | None = None,
    on_requests: OnRequests | None = None,
) -> LevelResult:
    """Run `schedule` window after window until the last three agree, or `max_trials` is reached.

    `snapshot(boundary_ns)` reads the server at each window boundary; with a `scraper`, the
    level's metrics come from its scrapes over the reported windows. A worker lost part way
    ends the level at once: it is returned marked incomplete, with what the others measured.
    `on_requests` gets each window's requests (every window's, not only the reported ones; not
    those before the first window or after the last), as perf_analyzer's profile export has them.
    """
    part = LevelPart(load, schedule, tree, batch_size, on_window, on_requests)
    (level,) = await measure_levels([part], policy, snapshot, scraper)
    return level


async def measure_levels(
    parts: Sequence[LevelPart],
    policy: WindowPolicy,
    snapshot: Callable[[int], Awaitable[Snapshot]],
    scraper: MetricsScraper | None = None,
) -> list[LevelResult]:
    """measure_level for several loads at once (a mix of models), on one clock: their windows
    open and close together, at the same boundaries, where one snapshot of the server is taken,
    so the server's figures and metrics of every part describe the same interval. The level is
    stable when every part is."""
    loads = [part.load for part in parts]
    driving = [await part.load.start(part.schedule, policy.request_count if policy.mode == COUNT_WINDOWS else None)
               for part in parts]  # fmt: skip
    # A finite schedule (a replay played once) is measured over all of it: every window, until it ends.
    finishing = [future for part, future in zip(parts, driving) if part.schedule.finite]
    # ... but not for ever: a request never answered would hold it open. It ends one drain bound after
    # its last request was due (its load's stop then drains the rest, as any level's).
    finish_by_ns = monotonic_ns() + max((round(part.schedule.duration_ns + part.load.drain_s * 1e9)
                                         for part in parts if part.schedule.finite), default=0)  # fmt: skip
    failing = [future for part, future in zip(parts, driving) if not part.schedule.finite]
    measured = [_PartWindows(part, policy, bool(finishing)) for part in parts]
    snapshots: deque[Snapshot] = deque(maxlen=None if finishing else STABLE_WINDOW_COUNT + 1)
    stable, incomplete, last = False, None, False

    async def close_windows() -> None:
        nonlocal boundary_ns
        boundary_ns = monotonic_ns()
        # Both at once: with workers, closing their windows takes a round trip, and the snapshot should fall within it.
        # Each close is awaited directly, not through gather: in process it then runs at once, before any
        # other request can end after the boundary and still be counted in the window it closes.
        snapshotting = asyncio.ensure_future(snapshot(boundary_ns))
        try:
            windows = [await load.close_window(boundary_ns) for load in loads]
        except BaseException:
            snapshotting.cancel()
            raise
        snapshots.append(await snapshotting)
        for part_windows, window in zip(measured, windows):
            part_windows.add(window)

    try:
        boundary_ns = monotonic_ns()
        for load in loads:  # what completed before the first snapshot belongs to no window
            await load.close_window(boundary_ns)
        snapshots.append(await snapshot(boundary_ns))
        while not last if finishing else len(measured[0].figures) < policy.max_trials and not stable:
            last = await _window_end(policy, loads, boundary_ns, failing, finishing) or (
                bool(finishing) and monotonic_ns() >= finish_by_ns)
            await close_windows()
            # A finite schedule's whole run is its level: there is nothing to settle.
            stable = last or (not finishing and all(part_windows.stable for part_windows in measured))
            for part_windows in measured:
                if part_windows.part.on_window is not None:
                    part_windows.part.on_window(part_windows.part.schedule, len(part_windows.figures), part_windows.figures[-1])
    except WorkerLost as lost:  # the others' window so far is kept; the level ends here, unstable
        incomplete = str(lost)
        stable = False
        await close_windows()
        for load in loads:
            await load.abandon()
    except BaseException:  # a dead server, an interruption: what is in flight is abandoned
        for load in loads:
            await load.abandon()
        raise
    else:
        drains = await asyncio.gather(*(load.stop() for load in loads))
    return [
        _level(part_windows, stable, list(snapshots), scraper, incomplete, drain)
        for part_windows, drain in zip(measured, drains if not incomplete else [None] * len(parts))
    ]


def _level(measured: _PartWindows, stable: bool, snapshots: list[Snapshot], scraper: MetricsScraper | None,
           incomplete: str | None, drain) -> LevelResult:  # fmt: skip
    """One part's level from its windows and the boundary snapshots (and its drain, unless cut short)."""
    part = measured.part
    load, schedule, batch_size, percentiles = part.load, part.schedule, part.batch_size, measured.percentiles
    merged = list(measured.windows)
    drain_figures = None
    if drain is not None:
        drain_stats = load.client_stats([drain], batch_size)
        drain_figures = DrainFigures(
            in_flight=merged[-1].outstanding,
            duration_s=drain.duration_s,
            bound_s=load.drain_s,
            answered=drain_stats.request_count,
            errors=drain_stats.error_count,
            unanswered=drain.outstanding,
            unanswered_age_s=drain.oldest_outstanding_ns / 1e9,
        )
    client = load.client_stats(merged, batch_size, percentiles, drain)
    server = server_figures(part.tree, snapshots[-len(merged) - 1], snapshots[-1])
    # Requests in flight at either outer boundary may fall on either side of it; with workers, so
    # may those completing while the boundary reaches them.
    requests_per_s = (client.request_count + client.error_count) / client.duration_s if client.duration_s > 0 else 0.0
    tolerance = 2 * load.peak_in_flight + math.ceil(2 * load.boundary_skew_s * requests_per_s)
    metrics = None
    if scraper is not None:
        metrics = level_metrics(scraper.between(merged[0].start_ns, merged[-1].end_ns), server, tolerance)
    return LevelResult(
        label=schedule.label,
        value=schedule.value,
        stable=stable,
        windows=tuple(measured.figures),
        client=client,
        server=server,
        count_check=CountCheck(client.request_count, server.success_count, tolerance, client.error_count),
        metrics=metrics,
        latency_histogram=load.latency_histogram(merged),
        open_loop=load.open_loop_stats(merged, schedule.target_rate_per_s) if isinstance(schedule, OpenLoopSchedule) else None,
        workers=load.worker_figures(merged, batch_size),
        incomplete=incomplete,
        drain=drain_figures,
        streaming=load.stream_stats(merged, batch_size, client.percentile_latency_us, percentiles),
        merged_windows=len(merged),
        sequences=_sequence_figures(load.sequence_tally(schedule, merged, drain), merged[0].start_ns, merged[-1].end_ns),
    )


def _sequence_figures(tally: SequenceTally | None, start_ns: int, end_ns: int) -> SequenceFigures | None:
    if tally is None:
        return None
    window_s = (end_ns - start_ns) / 1e9
    return SequenceFigures(tally.completed, tally.completed / window_s if window_s > 0 else 0.0, tally.failed, tally.cut_short)
