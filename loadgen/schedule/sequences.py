"""Sequence models' schedules, as perf_analyzer drives a sequence-batched model. Closed loop: N
sequences always open, each sending its requests one at a time (the next once the previous is
answered). Open loop: requests at a pacer's times, each given to one of --num-of-sequences open
sequences; a sequence that sent its END starts the next one on its slot."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from time import monotonic_ns

from loadgen.errors import UsageError
from loadgen.schedule.base import Fire, Schedule
from loadgen.schedule.open_loop import OpenLoopSchedule
from loadgen.sequences import IdPool, SequencePlan, flags, sequence_length


@dataclass(frozen=True)
class SequenceTally:
    """Sequences counted: those completed within some windows; over the level so far, those with a
    failed request and those cut short. What a --workers worker sends with each window's digest."""

    completed: int
    failed: int
    cut_short: int


class SequenceCounts:
    """What a level's reports need of its sequences: when each completed (every request of it
    answered without error), the ones with a failed request, and the ones cut short when the load
    stopped."""

    def __init__(self) -> None:
        self.completed_ns: list[int] = []  # each completed sequence's end (monotonic ns)
        self.cut_short = 0  # sequences whose END was never sent (or answered): the load stopped before it
        self.failed = 0  # sequences sent to their END with a request failed

    def tally(self, start_ns: int, end_ns: int) -> SequenceTally:
        """The sequences completed within [start_ns, end_ns), and the failed and cut short so far."""
        return SequenceTally(sum(start_ns <= ns < end_ns for ns in self.completed_ns), self.failed, self.cut_short)


class StreamCycle:
    """perf_analyzer's sequence input data: each new sequence replays the next stream in turn, its
    length the stream's steps. `steps` is each stream's step count; a stream's steps are the
    prepared requests from its first index on, the streams one after the other. `start`: the stream
    the first sequence replays (a worker's, so that workers do not all replay the same streams)."""

    def __init__(self, steps: Sequence[int], start: int = 0) -> None:
        self._firsts = [sum(steps[:k]) for k in range(len(steps))]
        self._steps = list(steps)
        self._next = start % len(self._steps)

    def take(self) -> tuple[int, int]:
        """(The first prepared request, the steps) of the next sequence's stream."""
        k = self._next
        self._next = (k + 1) % len(self._steps)
        return self._firsts[k], self._steps[k]


def _new_sequence(plan: SequencePlan, rng: random.Random, streams: StreamCycle | None) -> tuple[int | None, int]:
    """A new sequence's (first prepared request, None: round robin; length)."""
    if streams is not None:
        return streams.take()
    return None, sequence_length(plan.length, plan.variation_pct, rng)


class SequenceSchedule(Schedule, SequenceCounts):
    """`concurrency` sequences at once, closed loop."""

    label = "Concurrency"

    def __init__(self, concurrency: int, plan: SequencePlan, seed: int | None, streams: Sequence[int] | None = None,
                 first_stream: int = 0) -> None:  # fmt: skip
        if concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}: fix --concurrency-range")
        plan.check_concurrency(concurrency)
        SequenceCounts.__init__(self)
        self.concurrency = concurrency
        self.plan = plan
        self.seed = seed
        self.streams, self.first_stream = streams, first_stream
        self._rng = random.Random(seed)
        self._ids = IdPool(plan)
        self._cycle = StreamCycle(streams, first_stream) if streams else None

    @property
    def value(self) -> int:
        return self.concurrency

    async def drive(self, fire: Fire, stop: asyncio.Event) -> None:
        async def one_sequence() -> None:
            first, length = _new_sequence(self.plan, self._rng, self._cycle)
            sequence_id = self._ids.take()
            succeeded = True
            try:
                for step in range(length):
                    if stop.is_set():
                        self.cut_short += 1
                        return
                    start, end = flags(step, length)
                    succeeded &= await fire(None, None if first is None else first + step, (sequence_id, start, end))
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


class _Open:
    """One open-loop sequence: its id, length and first prepared request (None: round robin), the
    requests sent and in flight, and whether all answered so far succeeded."""

    __slots__ = ("first", "in_flight", "length", "sent", "sequence_id", "settled", "succeeded")

    def __init__(self, sequence_id: int, length: int, first: int | None) -> None:
        self.sequence_id, self.length, self.first = sequence_id, length, first
        self.sent = self.in_flight = 0
        self.succeeded = True
        self.settled = False  # counted as completed, failed or cut short


class SlotPicker:
    """Which of `count` sequence slots each request goes to, as perf_analyzer's request-rate worker
    picks its context: without --serial-sequences, one at random (a slot whose previous request is
    still in flight sends anyway); with it, the longest-free slot, a request waiting (in order,
    its latency running from its intended time) while every slot has one in flight."""

    def __init__(self, count: int, serial: bool, rng: random.Random) -> None:
        self._count, self._rng = count, rng
        self._free: asyncio.Queue[int] | None = None
        if serial:
            self._free = asyncio.Queue()
            for slot in range(count):
                self._free.put_nowait(slot)

    async def take(self) -> int:
        if self._free is None:
            return self._rng.randrange(self._count)
        return await self._free.get()

    def give_back(self, slot: int) -> None:
        if self._free is not None:
            self._free.put_nowait(slot)


class OpenLoopSequenceSchedule(OpenLoopSchedule, SequenceCounts):
    """An open-loop schedule's requests (`pacing`: a rate or intervals) over `sequences` open
    sequences, with perf_analyzer's --num-of-sequences and --serial-sequences."""

    def __init__(self, pacing: OpenLoopSchedule, sequences: int, serial: bool, plan: SequencePlan, seed: int | None,
                 streams: Sequence[int] | None = None, first_stream: int = 0) -> None:  # fmt: skip
        if sequences < 1:
            raise UsageError(f"--num-of-sequences must be at least 1, got {sequences}")
        plan.check_concurrency(sequences)
        SequenceCounts.__init__(self)
        self.pacing, self.sequences, self.serial, self.plan, self.seed, self.streams = pacing, sequences, serial, plan, seed, streams
        self.first_stream = first_stream

    @property
    def target_rate_per_s(self) -> float:
        return self.pacing.target_rate_per_s

    def gaps_ns(self) -> Iterator[int]:
        return self.pacing.gaps_ns()

    async def drive(self, fire: Fire, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed)
        ids = IdPool(self.plan)
        cycle = StreamCycle(self.streams, self.first_stream) if self.streams else None
        picker = SlotPicker(self.sequences, self.serial, rng)
        slots: list[_Open | None] = [None] * self.sequences

        def settle(sequence: _Open) -> None:
            if sequence.settled or sequence.in_flight or sequence.sent < sequence.length:
                return
            sequence.settled = True
            if sequence.succeeded:
                self.completed_ns.append(monotonic_ns())
            else:
                self.failed += 1

        async def send(intended_ns: int | None) -> bool:  # the pacer's fire: the sequence picks the rest
            slot = await picker.take()
            try:
                sequence = slots[slot]
                if sequence is None or sequence.sent == sequence.length:
                    first, length = _new_sequence(self.plan, rng, cycle)
                    sequence = slots[slot] = _Open(ids.take(), length, first)
                step = sequence.sent
                sequence.sent += 1
                if sequence.sent == sequence.length:
                    # Its END is out: the id may open the next sequence (Triton takes a START on an ended id).
                    ids.release(sequence.sequence_id)
                sequence.in_flight += 1
                start, end = flags(step, sequence.length)
                try:
                    succeeded = await fire(intended_ns, None if sequence.first is None else sequence.first + step,
                                           (sequence.sequence_id, start, end))  # fmt: skip
                except asyncio.CancelledError:  # abandoned with this request in flight
                    if not sequence.settled:
                        sequence.settled = True
                        self.cut_short += 1
                    raise
                sequence.in_flight -= 1
                sequence.succeeded &= succeeded
                settle(sequence)
                return succeeded
            finally:
                picker.give_back(slot)

        try:
            await super().drive(send, stop)
        finally:
            self.cut_short += sum(1 for sequence in slots if sequence is not None and not sequence.settled and sequence.sent < sequence.length)
