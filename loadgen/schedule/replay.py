"""A recorded trace replayed (--schedule-file): each request at its recorded time, with its recorded input."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence

from loadgen.replay import ReplayEntry
from loadgen.schedule.base import Fire
from loadgen.schedule.open_loop import OpenLoopSchedule


class ReplaySchedule(OpenLoopSchedule):
    """`entries` (sorted by offset) sent at the level's start + offset / `speed`.

    Finite, `drive` returns once every request was sent and has completed. With `loop`, the
    recording repeats every `period_ns` (ReplayPlan.period_ns, the whole recording's: with several
    models or workers each replaying a share, the passes stay together), so pass k sends each entry
    at (offset + k · period) / speed.
    """

    label = "Replay Speed"

    def __init__(self, entries: Sequence[ReplayEntry], period_ns: int, speed: float = 1.0, loop: bool = False) -> None:
        self.entries = tuple(entries)
        self.period_ns = period_ns
        self.speed = speed
        self.loop = loop
        self.finite = not loop
        self.duration_ns = round(self.entries[-1].offset_ns / speed) if self.entries else 0
        self.steady = False

    @property
    def value(self) -> float:
        return self.speed

    @property
    def target_rate_per_s(self) -> float:
        """The recording's requests per second, at this speed: its requests over its period."""
        return len(self.entries) * self.speed * 1e9 / self.period_ns

    def gaps_ns(self) -> Iterator[int]:
        # From the level's start, each send's time rounded once: rounding the gaps would drift.
        speed, previous_ns = self.speed, 0
        offsets_ns = [entry.offset_ns for entry in self.entries]
        for pass_start_ns in itertools.count(0, self.period_ns) if self.loop else (0,):
            for offset_ns in offsets_ns:
                at_ns = round((pass_start_ns + offset_ns) / speed)
                yield at_ns - previous_ns
                previous_ns = at_ns

    async def drive(self, fire: Fire, stop: asyncio.Event) -> None:
        recorded = [entry.input for entry in self.entries]
        if all(index is None for index in recorded):
            await super().drive(fire, stop)  # round robin: the engine's own order, nothing added per request
            return
        # The pacer fires in time order, so the inputs are taken in the same order as the gaps.
        inputs = itertools.cycle(recorded) if self.loop else iter(recorded)
        await super().drive(lambda intended_ns: fire(intended_ns, next(inputs)), stop)
