"""Open loop: requests sent at intended times whatever the server does (vegeta's pacers).

Each request carries its intended send time, so latency can be measured from it: a server
that stalls shows in the tail instead of slowing the load (coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from time import monotonic_ns

import numpy as np

from loadgen.errors import UsageError
from loadgen.schedule.base import Fire, Schedule
from loadgen.schedule.timer import MonotonicTimer

# Gaps longer than this also watch the stop event, so a slow schedule stops promptly.
_WATCH_STOP_S = 0.05
_WAKE_EARLY_NS = 300_000
_POISSON_CHUNK = 4096


class OpenLoopSchedule(Schedule):
    label = "Request Rate"

    @property
    @abstractmethod
    def target_rate_per_s(self) -> float: ...

    @abstractmethod
    def gaps_ns(self) -> Iterator[int]:
        """The time from each request's intended send to the next one's."""

    @property
    def value(self) -> float:
        return self.target_rate_per_s

    async def drive(self, fire: Fire, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task] = set()
        timer = MonotonicTimer()
        try:
            intended_ns = monotonic_ns()
            for gap_ns in self.gaps_ns():
                intended_ns += gap_ns
                if (intended_ns - monotonic_ns()) / 1e9 > _WATCH_STOP_S:  # a long gap: stop may come first
                    try:
                        await asyncio.wait_for(stop.wait(), (intended_ns - monotonic_ns()) / 1e9 - _WATCH_STOP_S)
                    except TimeoutError:
                        pass
                if stop.is_set():
                    break
                # Wake a little early and yield until the time has come: waking an idle vCPU takes
                # a few hundred microseconds on the VMs we run on.
                await timer.sleep_until(intended_ns - min(_WAKE_EARLY_NS, gap_ns // 10))
                while monotonic_ns() < intended_ns:
                    await asyncio.sleep(0)
                task = loop.create_task(fire(intended_ns))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
        except asyncio.CancelledError:  # abandoned: the requests in flight go with it
            for task in pending:
                task.cancel()
            if pending:  # each records its end (an abandoned drain counts them) before the load is over
                await asyncio.wait(list(pending))
            raise
        finally:
            timer.close()


class RateSchedule(OpenLoopSchedule):
    """A fixed rate: constant gaps, or exponential ones (Poisson arrivals) from a seeded generator."""

    def __init__(self, rate_per_s: float, distribution: str = "constant", seed: int | None = None) -> None:
        if rate_per_s <= 0:
            raise UsageError(f"request rate must be above 0, got {rate_per_s:g}: fix --request-rate-range")
        self.rate_per_s = rate_per_s
        self.distribution = distribution
        self.seed = seed

    @property
    def target_rate_per_s(self) -> float:
        return self.rate_per_s

    def gaps_ns(self) -> Iterator[int]:
        mean_ns = 1e9 / self.rate_per_s
        if self.distribution == "constant":
            return itertools.repeat(round(mean_ns))
        return self._poisson(mean_ns)

    def _poisson(self, mean_ns: float) -> Iterator[int]:
        generator = np.random.default_rng(self.seed)
        while True:
            yield from generator.exponential(mean_ns, _POISSON_CHUNK).astype(np.int64).tolist()


class IntervalSchedule(OpenLoopSchedule):
    """perf_analyzer's --request-intervals: the given gaps, in a loop.

    `first_us`, when given, is the gap before the first send instead (a worker's place in the
    round robin of loadgen.workers.split).
    """

    def __init__(self, intervals_us: list[int], first_us: int | None = None) -> None:
        self.intervals_us = intervals_us
        self.first_us = first_us

    @property
    def target_rate_per_s(self) -> float:
        return 1e6 * len(self.intervals_us) / sum(self.intervals_us)

    def gaps_ns(self) -> Iterator[int]:
        gaps = itertools.cycle([us * 1000 for us in self.intervals_us])
        return gaps if self.first_us is None else itertools.chain([self.first_us * 1000], gaps)


def read_intervals(path: Path) -> list[int]:
    """A --request-intervals file: one gap in microseconds per line (blank lines ignored)."""
    try:
        lines = Path(path).read_text().split()
    except OSError as exc:
        raise UsageError(f"cannot read --request-intervals {path}: {exc.strerror}") from None
    except ValueError:  # not UTF-8, or a NUL in a path from a config file
        raise UsageError(f"cannot read --request-intervals {path}: give a text file of whole microseconds, one per line") from None
    try:
        intervals = [int(line) for line in lines]
    except ValueError:
        raise UsageError(f"--request-intervals {path} must hold one whole number of microseconds per line") from None
    if not intervals or any(us < 0 for us in intervals) or sum(intervals) == 0:
        raise UsageError(f"--request-intervals {path} needs at least one gap and gaps of 0 µs or more, not all 0")
    return intervals
