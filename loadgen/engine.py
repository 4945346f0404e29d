"""The load engine: sends prepared requests when a schedule says so and records every outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from time import monotonic_ns
from typing import Any

from loadgen.samples import SampleRecorder
from loadgen.schedule.base import Schedule
from loadgen.transport.base import InferOutcome, Transport


class LoadEngine:
    """Runs one schedule at a time over a fixed set of prepared requests, taken round robin."""

    def __init__(
        self,
        transport: Transport,
        requests: Sequence[Any],
        max_inflight: int | None = None,
        request_timeout_ms: float | None = None,
    ) -> None:
        if not requests:
            raise ValueError("the engine needs at least one prepared request")
        self._transport = transport
        self._requests = list(requests)
        self._next = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests in flight at once since the schedule started
        self.completed = 0
        self.recorder: SampleRecorder | None = None
        # Also told of every completed request: (latency_ns, error or None). For live metrics.
        self.observer: Callable[[int, str | None], None] | None = None
        self._stop = asyncio.Event()
        self._driving: asyncio.Task | None = None
        # --max-inflight: open-loop requests due while this many are out wait for a slot (and are counted).
        self._slots = asyncio.Semaphore(max_inflight) if max_inflight is not None else None
        # --request-timeout: the request is cancelled (the transport drops its connection or stream).
        self._timeout_s: float | None = None
        if request_timeout_ms is not None:
            self._timeout_s = request_timeout_ms / 1e3
            self._timed_out = InferOutcome(0, 0, f"timeout: no response within {request_timeout_ms:g} ms")

    async def _fire(self, intended_ns: int | None) -> None:
        if self._slots is not None and intended_ns is not None:
            if self._slots.locked():
                self.recorder.held_back += 1
            async with self._slots:
                await self._send(intended_ns)
        else:
            await self._send(intended_ns)

    async def _send(self, intended_ns: int | None) -> None:
        prepared = self._requests[self._next]
        self._next = (self._next + 1) % len(self._requests)
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        sent_ns = monotonic_ns()
        if intended_ns is not None:
            self.recorder.record_send(intended_ns, sent_ns)
        if self._timeout_s is None:
            outcome = await self._transport.infer(prepared)
        else:
            try:
                async with asyncio.timeout(self._timeout_s):
                    outcome = await self._transport.infer(prepared)
            except TimeoutError:
                outcome = self._timed_out
        end_ns = monotonic_ns()
        self.in_flight -= 1
        self.completed += 1
        self.recorder.record(intended_ns, sent_ns, end_ns, outcome)
        if self.observer is not None:
            self.observer(end_ns - (sent_ns if intended_ns is None else intended_ns), outcome.error)

    def start(self, schedule: Schedule, recorder: SampleRecorder) -> asyncio.Task:
        """Start driving `schedule`; the returned task ends when the load has stopped (or failed)."""
        if self._driving is not None:
            raise RuntimeError("the engine is already running a schedule")
        self.recorder = recorder
        self.peak_in_flight = 0
        self._stop = asyncio.Event()
        self._driving = asyncio.create_task(schedule.drive(self._fire, self._stop))
        return self._driving

    async def stop(self) -> None:
        """Stop sending and wait for the requests in flight, as perf_analyzer does between levels."""
        driving, self._driving = self._driving, None
        if driving is None:
            return
        self._stop.set()
        await driving

    async def abandon(self) -> None:
        """Stop at once: the requests in flight are cancelled, their outcomes never recorded."""
        driving, self._driving = self._driving, None
        if driving is None:
            return
        self._stop.set()
        driving.cancel()
        await asyncio.wait({driving})  # not `await driving`: that would re-raise its cancellation here
        self.in_flight = 0
