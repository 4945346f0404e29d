"""The load engine: sends prepared requests when a schedule says so and records every outcome."""

from __future__ import annotations

import asyncio
from asyncio import current_task
from collections.abc import Callable, Sequence
from time import monotonic_ns
from typing import Any

from loadgen.outcome import InferOutcome, RequestError, timeout, unanswered
from loadgen.request_log import RequestLog
from loadgen.samples import SampleRecorder
from loadgen.schedule.base import Schedule
from loadgen.transport.base import Transport

# Without a request deadline, how long the requests in flight at a level's end are waited for.
DRAIN_WITHOUT_DEADLINE_S = 10.0
# With one, the drain lasts the deadline and this much more, so that a request sent just before the
# end meets its own deadline (and ends as a timeout) before the drain gives up on it.
DEADLINE_GRACE_S = 0.25


def drain_bound_s(request_timeout_ms: float | None) -> float:
    """How long the requests in flight when a level's load stops may take before they are abandoned."""
    if not request_timeout_ms:
        return DRAIN_WITHOUT_DEADLINE_S
    return request_timeout_ms / 1e3 + DEADLINE_GRACE_S


class LoadEngine:
    """Runs one schedule at a time over a fixed set of prepared requests, taken round robin unless
    the schedule names one by its index (a replay's recorded input)."""

    def __init__(
        self,
        transport: Transport,
        requests: Sequence[Any],
        max_inflight: int | None = None,
        request_timeout_ms: float | None = None,
        streaming: bool = False,
    ) -> None:
        if not requests:
            raise ValueError("the engine needs at least one prepared request")
        self._transport = transport
        self.streaming = streaming  # the requests were prepared with Transport.prepare_stream
        self._requests = list(requests)
        self._next = 0
        self.peak_in_flight = 0  # the most requests in flight at once since the schedule started
        self.completed = 0
        self.succeeded = 0
        self.recorder: SampleRecorder | None = None
        # With tracing, the level's record of each request by its id number (set per level by the load).
        self.request_log: RequestLog | None = None
        # Also told of every completed request, when a listener asks: RunListener.request_completed.
        self.request_completed: Callable[[int, RequestError | None], None] | None = None
        self._stop = asyncio.Event()
        self._driving: asyncio.Task | None = None
        # Each request in flight, in the order they were sent: (its start, intended or actual send;
        # its actual send; its task). The first is the oldest, and the first to meet its deadline.
        self._outstanding: dict[int, tuple[int, int, asyncio.Task]] = {}
        self._serial = 0
        self._expired: set[int] = set()  # cancelled by their deadline, not abandoned
        self._expiring: asyncio.Task | None = None
        # Set while a drain abandons what is left: those requests are recorded as unanswered.
        self._draining_out = False
        # --max-inflight: open-loop requests due while this many are out wait for a slot (and are counted).
        self._slots = asyncio.Semaphore(max_inflight) if max_inflight is not None else None
        # --request-timeout (0: none): the request is cancelled (the transport drops its connection or stream).
        self._timeout_ns: int | None = None
        self.drain_s = drain_bound_s(request_timeout_ms)
        # A streamed request's deadline is the transport's own (open_transport gives it the timeout):
        # cancelling the request here would lose the responses read before it, which the transport keeps.
        self._call = transport.stream if streaming else transport.infer
        if request_timeout_ms and not streaming:
            self._timeout_ns = round(request_timeout_ms * 1e6)
            self._timed_out = InferOutcome(0, 0, timeout(request_timeout_ms))

    @property
    def in_flight(self) -> int:
        return len(self._outstanding)

    def oldest_outstanding_ns(self, now_ns: int) -> int:
        """How long the oldest request in flight has been out at `now_ns`; 0 with none."""
        for start_ns, _, _ in self._outstanding.values():
            return max(0, now_ns - start_ns)
        return 0

    async def _fire(self, intended_ns: int | None, index: int | None = None, sequence: tuple[int, bool, bool] | None = None) -> bool:
        if self._slots is not None and intended_ns is not None:
            if self._slots.locked():
                self.recorder.held_back += 1
            async with self._slots:
                return await self._send(intended_ns, index, sequence)
        return await self._send(intended_ns, index, sequence)

    async def _send(self, intended_ns: int | None, index: int | None, sequence: tuple[int, bool, bool] | None = None) -> bool:
        """Sends one request and records its outcome: whether it succeeded."""
        if index is None:
            prepared = self._requests[self._next]
            self._next = (self._next + 1) % len(self._requests)
        else:
            prepared = self._requests[index]
        sent_ns = monotonic_ns()
        serial = self._serial = self._serial + 1
        self._outstanding[serial] = (sent_ns if intended_ns is None else intended_ns, sent_ns, current_task(self._loop))
        if len(self._outstanding) > self.peak_in_flight:
            self.peak_in_flight = len(self._outstanding)
        if intended_ns is not None:
            self.recorder.record_send(intended_ns, sent_ns)
        log = self.request_log  # the level's, when tracing: the request carries its serial as its id
        try:
            if sequence is not None:  # a sequence model's request (tracing's ids are refused with sequences)
                outcome = await self._call(prepared, None, sequence)
            else:
                outcome = await (self._call(prepared) if log is None else self._call(prepared, serial))
        except asyncio.CancelledError:
            if serial in self._expired:  # its deadline passed: a timeout, and this task goes on
                self._expired.discard(serial)
                current_task(self._loop).uncancel()
                outcome = self._timed_out
            else:
                del self._outstanding[serial]
                if self._draining_out:
                    self.recorder.record(intended_ns, sent_ns, monotonic_ns(), InferOutcome(0, 0, unanswered(self.drain_s)))
                raise
        # The response's end (a stream's: its final response's): checking it is the client's own time.
        end_ns = monotonic_ns() - outcome.check_ns
        del self._outstanding[serial]
        self.completed += 1
        if outcome.error is None:
            self.succeeded += 1
        self._record(intended_ns, sent_ns, end_ns, outcome)
        if log is not None:
            log.add(serial, intended_ns, sent_ns, end_ns, outcome.error is None)
        if self.request_completed is not None:
            self.request_completed(end_ns - (sent_ns if intended_ns is None else intended_ns), outcome.error)
        return outcome.error is None

    async def _expire(self) -> None:
        """Cancels each request at its deadline. One timer for all of them, armed for the oldest
        one's deadline (they are in send order): a per-request timer cost 3.5 µs a request."""
        timeout_ns = self._timeout_ns
        while True:
            now_ns = monotonic_ns()
            wait_ns = timeout_ns
            for serial, (_, sent_ns, task) in self._outstanding.items():
                if serial in self._expired:
                    continue  # cancelled already, its task not yet resumed
                if sent_ns + timeout_ns > now_ns:
                    wait_ns = sent_ns + timeout_ns - now_ns
                    break
                self._expired.add(serial)
                task.cancel()
            await asyncio.sleep(wait_ns / 1e9)

    def start(self, schedule: Schedule, recorder: SampleRecorder) -> asyncio.Task:
        """Start driving `schedule`; the returned task ends when the load has stopped (or failed)."""
        if self._driving is not None:
            raise RuntimeError("the engine is already running a schedule")
        self.recorder = recorder
        self._record = recorder.record_stream if self.streaming else recorder.record
        # current_task() without its loop looks the loop up, a getpid system call per request on 3.11.
        self._loop = asyncio.get_running_loop()
        self.peak_in_flight = 0
        self._stop = asyncio.Event()
        self._driving = asyncio.create_task(schedule.drive(self._fire, self._stop))
        if self._timeout_ns is not None:
            self._expiring = asyncio.create_task(self._expire())
        return self._driving

    async def _end(self) -> None:
        expiring, self._expiring = self._expiring, None
        if expiring is not None:
            await _cancelled(expiring)
        self._expired.clear()

    async def stop(self) -> tuple[int, int]:
        """Stop sending and wait for the requests in flight, as perf_analyzer does between levels,
        but at most `drain_s`: those still out then are abandoned and recorded as unanswered.

        Returns how many were abandoned and how long the oldest of them had been out (ns).
        """
        driving, self._driving = self._driving, None
        if driving is None:
            return 0, 0
        self._stop.set()
        try:
            done, _ = await asyncio.wait({driving}, timeout=self.drain_s)
            if driving in done:
                driving.result()  # the load's own failure, if it failed
                return 0, 0
            abandoned = self.in_flight, self.oldest_outstanding_ns(monotonic_ns())
            self._draining_out = True
            try:
                await _cancelled(driving)
            finally:
                self._draining_out = False
            return abandoned
        finally:
            await self._end()

    async def abandon(self) -> None:
        """Stop at once: the requests in flight are cancelled, their outcomes never recorded."""
        driving, self._driving = self._driving, None
        if driving is None:
            return
        self._stop.set()
        try:
            await _cancelled(driving)
        finally:
            await self._end()


async def _cancelled(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.wait({task})  # not `await task`: that would re-raise its cancellation here
