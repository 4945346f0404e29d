"""Closed loop over a sequence model: N sequences always open, each sending its requests one at a
time (the next once the previous is answered), as perf_analyzer drives a sequence-batched model."""

from __future__ import annotations

import asyncio
import random
from time import monotonic_ns

from loadgen.errors import UsageError
from loadgen.schedule.base import Fire, Schedule
from loadgen.sequences import IdPool, SequencePlan, flags, sequence_length


class SequenceSchedule(Schedule):
    """`concurrency` sequences at once. Counts what the level's reports need: when each sequence
    completed (every request of it answered without error), the sequences with a failed request,
    and the sequences cut short when the load stopped."""

    label = "Concurrency"

    def __init__(self, concurrency: int, plan: SequencePlan, seed: int | None) -> None:
        if concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}: fix --concurrency-range")
        plan.check_concurrency(concurrency)
        self.concurrency = concurrency
        self.plan = plan
        self._rng = random.Random(seed)
        self._ids = IdPool(plan)
        self.completed_ns: list[int] = []  # each completed sequence's end (monotonic ns)
        self.cut_short = 0  # sequences whose END was never sent: the load stopped before it
        self.failed = 0  # sequences sent to their END with a request failed

    @property
    def value(self) -> int:
        return self.concurrency

    def completed_between(self, start_ns: int, end_ns: int) -> int:
        """How many sequences completed within [start_ns, end_ns)."""
        return sum(start_ns <= ns < end_ns for ns in self.completed_ns)

    async def drive(self, fire: Fire, stop: asyncio.Event) -> None:
        plan = self.plan

        async def one_sequence() -> None:
            length = sequence_length(plan.length, plan.variation_pct, self._rng)
            sequence_id = self._ids.take()
            succeeded = True
            try:
                for step in range(length):
                    if stop.is_set():
                        self.cut_short += 1
                        return
                    start, end = flags(step, length)
                    succeeded &= await fire(None, None, (sequence_id, start, end))
                if succeeded:
                    self.completed_ns.append(monotonic_ns())
                else:
                    self.failed += 1
            except asyncio.CancelledError:  # abandoned with a request of it in flight
                self.cut_short += 1
                raise
            finally:
                self._ids.release(sequence_id)

        async def worker() -> None:
            while not stop.is_set():
                await one_sequence()

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
