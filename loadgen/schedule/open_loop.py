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

# Wake a little early and yield until the time has come: waking an idle vCPU takes a few hundred
# microseconds on the VMs we run on (a tenth of the gap at most, so high rates do not spin).
_WAKE_EARLY_NS = 300_000
# Requests fired in one turn of the loop at most: a backlog (after a stall) goes out in bursts of
# this many, with the loop's I/O in between, so the replies meanwhile are read (and timed) promptly.
_BURST = 32
_POISSON_CHUNK = 4096


class _Pacer:
    """Fires `fire(intended_ns)` as a task at each intended time, from the timer's callback: every
    request already due goes out in the same wake-up (the loop was busy past their times), and
    the timer is armed only for one still ahead. `finished` is done when the gaps run out (or
    their iterator failed)."""

    def __init__(self, fire: Fire, gaps: Iterator[int], stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._fire = fire
        self._gaps = gaps
        self._stop = stop
        self.finished = self._loop.create_future()
        self.tasks: list[asyncio.Task] = []  # the requests fired; done ones pruned now and then
        self._prune_at = 64
        self._timer = MonotonicTimer(self._tick)
        self._intended_ns = monotonic_ns()
        self._advance()
        if not self.finished.done():
            self._timer.arm(self._wake_ns)

    def _advance(self) -> bool:
        """The next intended time and when to wake for it; False once the gaps ran out."""
        try:
            gap_ns = next(self._gaps)
        except StopIteration:
            self.finished.set_result(None)
            return False
        except Exception as exc:  # noqa: BLE001 - the driver raises it
            self.finished.set_exception(exc)
            return False
        self._intended_ns += gap_ns
        self._wake_ns = self._intended_ns - min(_WAKE_EARLY_NS, gap_ns // 10)
        return True

    def _tick(self) -> None:
        # Called by the loop while the timer is expired: at the early wake-up, then on every turn
        # until the intended time (a yield with the I/O polled meanwhile), or after a burst.
        if self._stop.is_set() or self.finished.done():
            self._timer.disarm()
            return
        now = monotonic_ns()
        intended_ns = self._intended_ns
        if intended_ns > now:
            return
        create_task, fire, tasks = self._loop.create_task, self._fire, self.tasks
        for _ in range(_BURST):
            tasks.append(create_task(fire(intended_ns)))
            if not self._advance():
                self._timer.disarm()
                return
            intended_ns = self._intended_ns
            if intended_ns > now:
                now = monotonic_ns()  # time went on while firing
                if intended_ns > now:
                    break
        if len(tasks) >= self._prune_at:
            tasks[:] = [task for task in tasks if not task.done()]
            self._prune_at = max(64, 2 * len(tasks))
        if self._wake_ns > now:
            self._timer.arm(self._wake_ns)
        # else: due now or within the early margin: left expired, so the loop calls again next turn

    def close(self) -> None:
        self._timer.close()


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
        pacer = _Pacer(fire, iter(self.gaps_ns()), stop)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((pacer.finished, stopped), return_when=asyncio.FIRST_COMPLETED)
            pacer.close()
            if pacer.finished.done():
                pacer.finished.result()  # the gaps' own error, if any
            await asyncio.gather(*[task for task in pacer.tasks if not task.done()])
        except asyncio.CancelledError:  # abandoned: the requests in flight go with it
            pending = [task for task in pacer.tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:  # each records its end (an abandoned drain counts them) before the load is over
                await asyncio.wait(pending)
            raise
        finally:
            stopped.cancel()
            pacer.close()


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
