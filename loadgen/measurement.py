"""Measuring one load level: windows until stable, server snapshots at every boundary."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import monotonic_ns

from loadgen.errors import ServerError, WorkerLost
from loadgen.load import Load
from loadgen.merge import WorkerFigures
from loadgen.metrics import MetricsFigures, level_metrics
from loadgen.schedule.base import Schedule
from loadgen.schedule.open_loop import OpenLoopSchedule
from loadgen.scraper import MetricsScraper
from loadgen.server_stats import ModelTree, ServerFigures, Snapshot, server_figures
from loadgen.stats import ClientStats, OpenLoopStats
from loadgen.windows import COUNT_WINDOWS, STABLE_WINDOW_COUNT, WindowPolicy, is_stable

# A count window that sees no completion for this long means the server has stopped answering.
COUNT_WINDOW_STALL_S = 60.0


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
    """One window's figures, kept for the stability trace. Times on the monotonic clock."""

    start_ns: int
    end_ns: int
    duration_s: float
    request_count: int
    throughput_infer_per_s: float
    latency_us: float


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
    sla: tuple = ()  # the level's SLA verdicts (loadgen.sla.Verdict), once evaluated
    workers: tuple[WorkerFigures, ...] = ()  # with --workers: each worker's part; empty in one process
    incomplete: str | None = None  # why the level ended before it could finish (a worker was lost)

    @property
    def reported_windows(self) -> tuple[WindowFigures, ...]:
        """The windows whose samples the level's figures merge."""
        return self.windows[-STABLE_WINDOW_COUNT:]

    @property
    def breakdown_us(self) -> dict[str, float]:
        """perf_analyzer's CSV split of the average latency; "network" is what client and server leave unaccounted."""
        client, server = self.client, self.server
        network_us = client.avg_latency_us - client.avg_send_us - client.avg_recv_us - server.queue_us - server.compute_us
        return {
            "client_send": client.avg_send_us,
            "network": max(0.0, network_us),
            "server_queue": server.queue_us,
            "server_compute_input": server.compute_input_us,
            "server_compute_infer": server.compute_infer_us,
            "server_compute_output": server.compute_output_us,
            "client_recv": client.avg_recv_us,
        }


# Progress callback: (schedule, windows measured so far, the latest window's figures).
OnWindow = Callable[[Schedule, int, WindowFigures], None]


async def _window_end(policy: WindowPolicy, load: Load, window_start_ns: int, driving: asyncio.Future) -> None:
    """Wait until the current window should close; raise if the load itself has failed."""
    if policy.mode == COUNT_WINDOWS:
        waiter = asyncio.ensure_future(load.window_full())
        timeout = COUNT_WINDOW_STALL_S
    else:
        remaining_s = policy.interval_ms / 1e3 - (monotonic_ns() - window_start_ns) / 1e9
        waiter = asyncio.ensure_future(asyncio.sleep(max(0.0, remaining_s)))
        timeout = None
    done, _ = await asyncio.wait({waiter, driving}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
    else:
        waiter.result()  # a worker lost while the window filled
    if driving in done:
        driving.result()  # re-raises the load's failure
        raise ServerError("the load stopped before the measurement ended")
    if not done:
        raise ServerError(
            f"no {policy.request_count} requests completed in {COUNT_WINDOW_STALL_S:.0f} s: the server has stopped answering"
        )


async def measure_level(
    load: Load,
    schedule: Schedule,
    policy: WindowPolicy,
    snapshot: Callable[[int], Awaitable[Snapshot]],
    tree: ModelTree,
    batch_size: int,
    on_window: OnWindow | None = None,
    scraper: MetricsScraper | None = None,
) -> LevelResult:
    """Run `schedule` window after window until the last three agree, or `max_trials` is reached.

    `snapshot(boundary_ns)` reads the server at each window boundary; with a `scraper`, the
    level's metrics come from its scrapes over the reported windows. A worker lost part way
    ends the level at once: it is returned marked incomplete, with what the others measured.
    """
    count_target = policy.request_count if policy.mode == COUNT_WINDOWS else None
    driving = await load.start(schedule, count_target)
    percentiles = [policy.percentile] if policy.percentile is not None else []
    # Only the windows (and boundary snapshots) a level can merge are kept: a long level stays small.
    windows: deque = deque(maxlen=STABLE_WINDOW_COUNT)
    figures: list[WindowFigures] = []
    snapshots: deque[Snapshot] = deque(maxlen=STABLE_WINDOW_COUNT + 1)
    stable, incomplete = False, None

    async def close_window() -> None:
        nonlocal boundary_ns
        boundary_ns = monotonic_ns()
        # Both at once: with workers, closing their windows takes a round trip, and the snapshot should fall within it.
        window, boundary_snapshot = await asyncio.gather(load.close_window(boundary_ns), snapshot(boundary_ns))
        windows.append(window)
        snapshots.append(boundary_snapshot)
        stats = load.client_stats([windows[-1]], batch_size, percentiles)
        figures.append(
            WindowFigures(
                start_ns=windows[-1].start_ns,
                end_ns=windows[-1].end_ns,
                duration_s=stats.duration_s,
                request_count=stats.request_count,
                throughput_infer_per_s=stats.throughput_infer_per_s,
                latency_us=stats.latency_us(policy.percentile),
            )
        )

    try:
        boundary_ns = monotonic_ns()
        await load.close_window(boundary_ns)  # what completed before the first snapshot belongs to no window
        snapshots.append(await snapshot(boundary_ns))
        while len(figures) < policy.max_trials and not stable:
            await _window_end(policy, load, boundary_ns, driving)
            await close_window()
            stable = is_stable(
                [f.throughput_infer_per_s for f in figures], [f.latency_us for f in figures], policy.stability_pct
            )
            if on_window is not None:
                on_window(schedule, len(figures), figures[-1])
    except WorkerLost as lost:  # the others' window so far is kept; the level ends here, unstable
        incomplete = str(lost)
        stable = False
        await close_window()
        await load.abandon()
    except BaseException:  # a dead server, an interruption: what is in flight is abandoned
        await load.abandon()
        raise
    else:
        await load.stop()
    merged = list(windows)
    client = load.client_stats(merged, batch_size, percentiles)
    server = server_figures(tree, snapshots[-len(merged) - 1], snapshots[-1])
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
        windows=tuple(figures),
        client=client,
        server=server,
        count_check=CountCheck(client.request_count, server.success_count, tolerance, client.error_count),
        metrics=metrics,
        open_loop=load.open_loop_stats(merged, schedule.target_rate_per_s) if isinstance(schedule, OpenLoopSchedule) else None,
        workers=load.worker_figures(merged, batch_size),
        incomplete=incomplete,
    )
