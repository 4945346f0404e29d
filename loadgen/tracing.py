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
the end. Without --trace-collector-port its traces go to its own file, which loadgen does not read,
so its levels get no figures. With it, loadgen runs an OTLP/HTTP collector (loadgen.otlp_collector)
for a server in OpenTelemetry mode: the server exports its spans in batches every
`bsp_schedule_delay` ms (from its settings), so a level's end waits at least that long after the
load stopped, then until no body came for QUIET_S, within the delay plus READ_BOUND_S, and parses
the bodies (loadgen.otlp) into the same trees as the files give.

Traces no level got (late, or incomplete at the end) are a warning only when a level counted
their request: those of requests drained after a level's last window (their spans may still be
on their way when the run ends) are no level's. The levels' counted id numbers are kept for
that, 8 bytes a request.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from loadgen.errors import ServerError
from loadgen.measurement import LevelResult
from loadgen.otlp import OtlpReader
from loadgen.otlp_collector import PATH, OtlpCollector
from loadgen.request_log import RequestRecords
from loadgen.tail import LevelTracing, TracedRequest, join, level_tracing
from loadgen.traces import RequestTrace, TraceCounts, TraceReader
from loadgen.transport.base import Transport
from loadgen.transport.request_id import id_number, run_prefix

TRACE_FILE = "trace.json"
LOG_FREQUENCY = 100  # traces per file Triton writes as it goes; the rest at each level's end
POLL_S = 0.05  # between reads at a level's end, until one brings nothing
READ_BOUND_S = 2.0  # the most a level's end waits for its traces (beyond the export delay, with a collector)
QUIET_S = 0.3  # with a collector: no body for this long, once an export delay has passed, and the level's traces are in
DEFAULT_SCHEDULE_DELAY_MS = 5000  # OpenTelemetry's batch span processor's, when the server does not say
OTEL_FLAGS = "--trace-config mode=opentelemetry --trace-config opentelemetry,url=http://LOADGEN_HOST:{port}/v1/traces"


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


def _first(settings: dict[str, object], key: str) -> str:
    value = settings.get(key) or [""]
    return str(value[0]) if isinstance(value, list) else str(value)


def _schedule_delay_s(settings: dict[str, object]) -> float:
    text = _first(settings, "bsp_schedule_delay")
    return (int(text) if text.isascii() and text.isdigit() else DEFAULT_SCHEDULE_DELAY_MS) / 1e3


def _exports_to(url: str, port: int) -> bool:
    """Whether a server's OpenTelemetry url can be the collector's (its host may be any name of this machine)."""
    try:
        parts = urlsplit(url)
        return parts.port == port and parts.path.rstrip("/") == PATH
    except ValueError:
        return False


def counted_numbers(records: RequestRecords, start_ns: int, end_ns: int) -> np.ndarray:
    """The id numbers of the requests a level counts: those that succeeded within [start_ns, end_ns]."""
    return records.number[~np.isnan(records.latency_us(records.number, start_ns, end_ns))]


def levels_lost(prefix: str, request_ids: list[str], counted: np.ndarray) -> int:
    """How many of `request_ids` (traces no level got: late or incomplete) are of requests a level
    counted (`counted`: their numbers, sorted). The others are no level's loss: a request drained
    after a level's last window, or sent before its first, or another client's. An id that never
    came ("") is counted: nothing says whose request it was."""
    numbers = [id_number(prefix, request_id) for request_id in request_ids]
    known = np.array([number for number in numbers if number is not None], dtype=np.int64)
    at = np.minimum(np.searchsorted(counted, known), max(counted.size - 1, 0))
    ours = int(np.count_nonzero(counted[at] == known)) if counted.size else 0
    return ours + sum(1 for request_id in request_ids if not request_id)


def _lost_line(counts: TraceCounts, late: int, incomplete: int, where: str) -> str | None:
    if not (late or counts.malformed or incomplete):
        return None
    return (f"tracing: {late} traces came after their level's end, {incomplete} were incomplete and "
            f"{counts.malformed} records malformed in {where}: no level counts them")


class Tracer:
    """Tracing for one run: `start` once the server is up, `level_tracing` at each level's end,
    `stop` before the connections close, `finish` once an embedded server has stopped.

    The traces come from the embedded server's `trace_file`, or with `collector_socket` (listening:
    loadgen.otlp_collector.listen) from a -u server in OpenTelemetry mode; with neither, a -u
    server traces to its own file and the levels get no figures."""

    def __init__(self, rate: int, trace_file: Path | None, collector_socket: socket.socket | None = None) -> None:
        self.rate = rate
        self.prefix = run_prefix()  # every request's id starts with it
        self._reader = TraceReader(trace_file) if trace_file is not None else None
        self._socket = collector_socket
        self._collector: OtlpCollector | None = None  # serving from `start` to `stop`
        self._spans = OtlpReader()
        self._schedule_delay_s = DEFAULT_SCHEDULE_DELAY_MS / 1e3
        self._restore: dict[str, object] | None = None  # a -u server's own settings, put back by `stop`
        self._counted = np.empty(0, dtype=np.int64)  # the id numbers of the requests the levels counted, sorted

    async def start(self, transport: Transport) -> list[str]:
        """Set the server's trace settings; warning lines when the levels will have no figures,
        or when the rate is the server's."""
        if self._socket is not None:
            return await self._start_collector(transport)
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
            return [f"tracing: {exc}; the run goes on without traces"]
        if self._reader is None:
            where = ", ".join(after.get("trace_file", [])) or "its own trace file"
            return [f"tracing: the server traces one request in {self.rate} to {where}; loadgen reads the traces of its "
                    "embedded server, or with --trace-collector-port those of a server in OpenTelemetry mode, so the "
                    "levels have no per-stage figures or tail attribution"]
        return []

    async def _start_collector(self, transport: Transport) -> list[str]:
        port = self._socket.getsockname()[1]
        try:
            before = await transport.update_trace_settings({})
        except ServerError as exc:
            return [f"tracing: {exc}; the run goes on without traces"]
        if _first(before, "trace_mode") != "opentelemetry":
            mode = _first(before, "trace_mode") or "triton"
            return [f"tracing: the server traces in mode {mode}, not to OpenTelemetry, so nothing comes to loadgen's "
                    f"collector on port {port}: start Triton with {OTEL_FLAGS.format(port=port)}; the run goes on "
                    "without traces"]
        self._collector = OtlpCollector(self._socket)
        await self._collector.start()
        self._schedule_delay_s = _schedule_delay_s(before)
        notes = []
        url = _first(before, "url")
        if not _exports_to(url, port):
            notes.append(f"tracing: the server exports its traces to {url or 'no url'}, not to loadgen's collector on "
                         f"port {port} (http://LOADGEN_HOST:{port}{PATH}): the levels may have no per-stage figures")
        settings = {"trace_level": ["TIMESTAMPS"], "trace_rate": str(self.rate)}
        try:
            after = await transport.update_trace_settings(settings)
        except ServerError as exc:
            after, refusal = before, f" ({exc})"
        else:
            refusal = ""
        if "TIMESTAMPS" in after.get("trace_level", []) and _first(after, "trace_rate") == str(self.rate):
            self._restore = {"trace_level": before["trace_level"], "trace_rate": _first(before, "trace_rate")}
        else:
            level = "+".join(after.get("trace_level", [])) or "unknown"
            notes.append(f"tracing: the server did not take loadgen's trace settings{refusal}: the rate is the server's, "
                         f"one request in {_first(after, 'trace_rate') or '?'} at level {level}")
        return notes

    async def level_tracing(self, transport: Transport, records: RequestRecords | None, level: LevelResult,
                            percentile: float) -> LevelTracing | None:  # fmt: skip
        """The level's figures from its traces, its tail starting at the client's `percentile`;
        None without traces to read."""
        if (self._reader is None and self._collector is None) or records is None or not level.reported_windows:
            return None
        windows = level.reported_windows
        counted = counted_numbers(records, windows[0].start_ns, windows[-1].end_ns)
        self._counted = np.union1d(self._counted, counted)
        if self._reader is not None:
            traces, requests = await self._read_files(transport, records, level)
        else:
            traces = await self._collect_until_quiet()
            requests = join_level(self.prefix, traces, records, windows[0].start_ns, windows[-1].end_ns)
        curve = dict(level.client.latency_curve_us or ()) if level.client.request_count else {}
        return level_tracing(requests, len(traces), curve.__getitem__ if curve else None, percentile)

    async def _read_files(self, transport: Transport, records: RequestRecords,
                          level: LevelResult) -> tuple[list[RequestTrace], list[TracedRequest]]:  # fmt: skip
        """The traces Triton holds and has written, joined to the level's requests. A trace ends a
        moment after its response (the ensemble's REQUEST_END), and one that ends after Triton was
        told to write what it holds waits for the next LOG_FREQUENCY: with every request traced
        (rate 1), Triton is told again while some of the level's requests have no trace, within
        READ_BOUND_S."""
        windows, loop = level.reported_windows, asyncio.get_running_loop()
        deadline = loop.time() + READ_BOUND_S
        traces: list[RequestTrace] = []
        while True:
            await asyncio.sleep(POLL_S)
            await transport.update_trace_settings({"log_frequency": str(LOG_FREQUENCY)})  # Triton writes what it holds
            traces += await self._read_until_quiet(deadline)
            requests = join_level(self.prefix, traces, records, windows[0].start_ns, windows[-1].end_ns)
            if self.rate != 1 or len(requests) >= level.client.request_count or loop.time() >= deadline:
                return traces, requests

    async def _read_until_quiet(self, deadline: float) -> list[RequestTrace]:
        traces = self._reader.poll()
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await asyncio.sleep(POLL_S)
            more = self._reader.poll()
            if not more:
                break
            traces += more
        return traces

    async def _collect_until_quiet(self) -> list[RequestTrace]:
        """The traces the server exported since the last level's end: it exports every schedule
        delay, so once one has passed since the load stopped and no body came for QUIET_S, the
        level's are in (module docstring)."""
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        settled, deadline = stopped + self._schedule_delay_s + QUIET_S, stopped + self._schedule_delay_s + READ_BOUND_S
        while (now := loop.time()) < deadline:
            if now >= settled and now - (self._collector.last_body_s or stopped) >= QUIET_S:
                break
            await asyncio.sleep(POLL_S)
        self._spans.add(self._collector.take())
        return self._spans.take_complete()

    async def stop(self, transport: Transport) -> list[str]:
        """Put a -u server's trace settings back and close the collector; warning lines when the
        server refused, and when traces were lost (late, incomplete or malformed)."""
        notes = []
        restore, self._restore = self._restore, None
        if restore:
            try:
                await transport.update_trace_settings(restore)
            except ServerError as exc:
                notes.append(f"tracing: could not put the server's trace settings back ({exc})")
        collector, self._collector = self._collector, None
        if collector is not None:
            await collector.close()
            self._spans.add(collector.take())
            lost = self._lost(self._spans.finish(), self._spans.counts, f"the spans received on port {collector.port}")
            notes += [lost] if lost is not None else []
            if collector.dropped or collector.refused:
                notes.append(f"tracing: the collector on port {collector.port} turned away {collector.dropped} export(s) "
                             f"too large or beyond what it holds and {collector.refused} not in OTLP's content types")
        return notes

    def finish(self) -> str | None:
        """Once the embedded server has stopped: read what is left of its files; a warning line
        when traces were lost (late, cut or malformed)."""
        if self._reader is None:
            return None
        try:
            late = self._reader.finish()
        except ServerError as exc:  # the run is over: said, not raised
            return f"tracing: {exc}"
        return self._lost(late, self._reader.counts, f"{self._reader.path}*")

    def _lost(self, late: list[RequestTrace], counts: TraceCounts, where: str) -> str | None:
        """A warning line when traces of the levels' requests were lost (late, cut or malformed)."""
        late_ours = levels_lost(self.prefix, [trace.request_id for trace in late], self._counted)
        return _lost_line(counts, late_ours, levels_lost(self.prefix, counts.incomplete_request_ids, self._counted), where)
