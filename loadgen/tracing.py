"""Triton's tracing during a run (--trace-level, --trace-rate): the server's trace settings, its
trace files read at each level's end, and each level's figures from the traces joined to the
client's record of their requests (loadgen.tail; docs in README, "Finding the cause of a tail").

Embedded server: the trace file is on its command line (TRACE_FILE in the report folder: Triton
takes no trace file over the network); level, rate and log_frequency are set over the trace API
once it is up. Triton holds the traces it samples and writes every LOG_FREQUENCY of them to a
file of their own (PATH.0, PATH.1, ...). At a level's end, once its load has stopped, loadgen
updates the settings, on which Triton writes the traces it holds, and reads the files
(loadgen.traces) until nothing more comes. Reading happens between levels, never while one is
measured: parsing traces is client CPU, taken from the load and, on a small machine, the server.

A server given with -u: level and rate are set if it takes them, and its own settings put back at
the end; its traces go to its own file, which loadgen does not read, so its levels get no figures.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from loadgen.errors import ServerError
from loadgen.measurement import LevelResult
from loadgen.request_log import RequestRecords
from loadgen.tail import LevelTracing, TracedRequest, join, level_tracing
from loadgen.traces import RequestTrace, TraceReader
from loadgen.transport.base import Transport
from loadgen.transport.request_id import id_number, run_prefix

TRACE_FILE = "trace.json"
LOG_FREQUENCY = 100  # traces per file Triton writes as it goes; the rest at each level's end
POLL_S = 0.05  # between reads at a level's end, until one brings nothing
READ_BOUND_S = 2.0  # the most a level's end waits for its traces


def clear_trace_files(path: Path) -> None:
    """Remove an earlier run's PATH and PATH.N: Triton numbers its files from 0 again, and a file
    read before it was rewritten would not be read again."""
    for old in TraceReader(path).files():
        old.unlink(missing_ok=True)


def join_level(prefix: str, traces: list[RequestTrace], records: RequestRecords, start_ns: int, end_ns: int) -> list[TracedRequest]:
    """The traces of the level's requests that succeeded within [start_ns, end_ns], with their
    client latency; traces of other runs, clients or levels are left out."""
    numbered = [(trace, number) for trace in traces if (number := id_number(prefix, trace.request_id)) is not None]
    latency_us = records.latency_us(np.array([number for _, number in numbered], dtype=np.int64), start_ns, end_ns)
    known = {trace.request_id: float(latency) for (trace, _), latency in zip(numbered, latency_us) if not np.isnan(latency)}
    return join(known, (trace for trace, _ in numbered))


class Tracer:
    """Tracing for one run: `start` once the server is up, `level_tracing` at each level's end,
    `stop` before the connections close, `finish` once an embedded server has stopped."""

    def __init__(self, rate: int, trace_file: Path | None) -> None:
        self.rate = rate
        self.prefix = run_prefix()  # every request's id starts with it
        self._reader = TraceReader(trace_file) if trace_file is not None else None
        self._restore: dict[str, object] | None = None  # a -u server's own settings, put back by `stop`

    async def start(self, transport: Transport) -> str | None:
        """Set the server's trace settings; a warning line when the levels will have no figures."""
        settings: dict[str, object] = {"trace_level": ["TIMESTAMPS"], "trace_rate": str(self.rate)}
        try:
            if self._reader is None:
                before = await transport.update_trace_settings({})  # changes nothing: the settings as they are
                self._restore = {"trace_level": before["trace_level"], "trace_rate": before["trace_rate"][0]}
            else:
                settings["log_frequency"] = str(LOG_FREQUENCY)
            after = await transport.update_trace_settings(settings)
        except ServerError as exc:
            self._restore = self._reader = None  # nothing to put back, nothing to read
            return f"tracing: {exc}; the run goes on without traces"
        if self._reader is None:
            where = ", ".join(after.get("trace_file", [])) or "its own trace file"
            return (f"tracing: the server traces one request in {self.rate} to {where}; loadgen reads the traces of its "
                    "embedded server only, so the levels have no per-stage figures or tail attribution")
        return None

    async def level_tracing(self, transport: Transport, records: RequestRecords | None, level: LevelResult,
                            percentile: float) -> LevelTracing | None:  # fmt: skip
        """The level's figures from its traces, its tail starting at the client's `percentile`;
        None without the embedded server's traces."""
        if self._reader is None or records is None or not level.reported_windows:
            return None
        await asyncio.sleep(POLL_S)  # a trace ends a moment after its response (the ensemble's REQUEST_END)
        await transport.update_trace_settings({"log_frequency": str(LOG_FREQUENCY)})  # Triton writes what it holds
        traces = await self._read_until_quiet()
        windows = level.reported_windows
        requests = join_level(self.prefix, traces, records, windows[0].start_ns, windows[-1].end_ns)
        curve = dict(level.client.latency_curve_us or ()) if level.client.request_count else {}
        return level_tracing(requests, len(traces), curve.__getitem__ if curve else None, percentile)

    async def _read_until_quiet(self) -> list[RequestTrace]:
        traces = self._reader.poll()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_BOUND_S
        while loop.time() < deadline:
            await asyncio.sleep(POLL_S)
            more = self._reader.poll()
            if not more:
                break
            traces += more
        return traces

    async def stop(self, transport: Transport) -> str | None:
        """Put a -u server's trace settings back; a warning line when it refused."""
        restore, self._restore = self._restore, None
        if not restore:
            return None
        try:
            await transport.update_trace_settings(restore)
        except ServerError as exc:
            return f"tracing: could not put the server's trace settings back ({exc})"
        return None

    def finish(self) -> str | None:
        """Once the embedded server has stopped: read what is left of its files; a warning line
        when traces were lost (late, cut or malformed)."""
        if self._reader is None:
            return None
        try:
            late = len(self._reader.finish())
        except ServerError as exc:  # the run is over: said, not raised
            return f"tracing: {exc}"
        counts = self._reader.counts
        if not (late or counts.malformed or counts.incomplete):
            return None
        return (f"tracing: {late} traces came after their level's end, {counts.incomplete} were incomplete and "
                f"{counts.malformed} records malformed in {self._reader.path}*: no level counts them")
