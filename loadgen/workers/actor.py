"""A load worker: one Ray actor running the same engine as a single-process run, with its own
connections, and handing each window to the driver as a mergeable digest (loadgen.merge)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from collections.abc import Sequence
from time import monotonic_ns

import ray

from loadgen.config import LoadShape, Target
from loadgen.load import LocalLoad
from loadgen.merge import WindowDigest, digest
from loadgen.samples import StreamGoodput, WindowSamples
from loadgen.schedule.base import Schedule
from loadgen.schedule.sequences import SequenceCounts
from loadgen.transport import InputTensor, Transport, open_transport


@ray.remote
class LoadWorker:
    """Runs its share of each level when the driver says, and closes windows when the driver says.

    Ray runs an actor with async methods on one event loop, so these calls interleave with the load
    the way a timer would in a single-process run.
    """

    def __init__(self) -> None:
        self._transport: Transport | None = None
        self._load: LocalLoad | None = None
        self._driving: asyncio.Future | None = None
        self._schedule: Schedule | None = None  # the level's share
        self._cpu_s = time.process_time()

    async def open(
        self, target: Target, load: LoadShape, tensors: Sequence[list[InputTensor]], outputs: list[str],
        goodput_latency_ms: float | None, export_requests: bool, stream_goodput: StreamGoodput | None = None,
        output_sizes: list[int] | None = None, sequences: bool = False,
    ) -> tuple[str, int]:
        """Connect to the server and prepare the requests; returns (host, pid) for the report. With
        `goodput_latency_ms`, each window's digest counts its successes within it; with
        `export_requests`, it carries its requests (--profile-export-file) on this node's wall clock;
        streamed requests (`target.streaming`) count their goodput within `stream_goodput`. With
        `output_sizes` (--shared-memory), the worker places the tensors in a region of its own. With
        `sequences`, the requests carry the sequence parameters each send sets."""
        self._transport = open_transport(
            target.protocol, target.url, target.headers, target.tls, target.request_timeout_ms, target.connect_timeout_s
        )
        self._load = await LocalLoad.open(self._transport, target, load, tensors, outputs, goodput_latency_ms, export_requests,
                                          stream_goodput=stream_goodput, sequences=sequences, output_sizes=output_sizes)  # fmt: skip
        gc.freeze()  # as in the driver: what lives all run stays out of the collector's full passes
        return socket.gethostname(), os.getpid()

    async def start(self, schedule: Schedule, count_target: int | None) -> None:
        self._schedule = schedule
        self._driving = await self._load.start(schedule, count_target)

    async def run(self) -> None:
        """Returns when the level's load has stopped; raises what made it fail. The driver waits on
        this call for the whole level, so a worker that dies fails it at once."""
        driving = self._driving
        if driving is not None:
            await asyncio.shield(driving)  # shielded: only stop or abandon ends the load

    async def window_full(self) -> None:
        await self._load.window_full()

    def _digest(self, window: WindowSamples) -> WindowDigest:
        now_cpu_s = time.process_time()
        cpu_s, self._cpu_s = now_cpu_s - self._cpu_s, now_cpu_s
        schedule = self._schedule
        sequences = schedule.tally(window.start_ns, window.end_ns) if isinstance(schedule, SequenceCounts) else None
        return digest(window, self._load.peak_in_flight, cpu_s, self._load.goodput_latency_ms, sequences)

    async def close_window(self) -> WindowDigest:
        return self._digest(await self._load.close_window(monotonic_ns()))

    async def status(self) -> tuple[int, int, int]:
        """(requests completed so far, of them succeeded, requests in flight), for the driver's progress line."""
        return self._load.completed, self._load.succeeded, self._load.in_flight

    async def stop(self) -> WindowDigest:
        """Stop, drain (bounded) and hand over the drain: what completed after the last window."""
        drain = await self._load.stop()
        self._driving = None
        return self._digest(drain)

    async def abandon(self) -> None:
        await self._load.abandon()
        self._driving = None

    async def close(self) -> None:
        if self._load is not None:
            await self._load.close()  # its region, unregistered while the connection is still open
        if self._transport is not None:
            await self._transport.close()
