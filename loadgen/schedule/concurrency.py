"""Closed loop: N requests always in flight."""

from __future__ import annotations

import asyncio

from loadgen.errors import UsageError
from loadgen.schedule.base import Fire, Schedule


class ConcurrencySchedule(Schedule):
    label = "Concurrency"

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}: fix --concurrency-range")
        self.concurrency = concurrency

    @property
    def value(self) -> int:
        return self.concurrency

    async def drive(self, fire: Fire, stop: asyncio.Event) -> None:
        async def worker() -> None:
            while not stop.is_set():
                await fire(None)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
