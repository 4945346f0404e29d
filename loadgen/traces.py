"""Triton's trace files (level TIMESTAMPS) read into one tree per request, joined by request id.

Triton writes a JSON list of records, each keyed by a trace `id`: one names the model
(`model_name`, `model_version`, `request_id`, and `parent_id` for a composing model of an
ensemble), the others hold timestamps (`{"name": ..., "ns": ...}`, the server's steady clock).
With `log_frequency` N > 0 it writes every N traces to a new file PATH.0, PATH.1, ... (each
written once); the traces held when the setting changes, and all of them with `log_frequency` 0,
are appended to PATH, whose closing `]` comes only at a clean shutdown. A server that exits on
its exit timeout leaves PATH cut anywhere, even mid-record (tests/data/traces/exit-timeout).

Reading rule: every file is read as append-only from the end of its last complete record. A
trailing fragment that does not parse yet is left for the next read; a fragment followed by a
complete record, or still there at `finish()`, is skipped and counted as malformed. A reader
is for one server's files (a file rewritten by a new server is not noticed). Records that are
JSON but not a trace record (wrong types, no integer id) are skipped and counted too; a record
with an id but neither a model nor timestamps (level TENSORS' tensor records) is ignored.

A request's tree is handed out once it is complete: its top-level trace has REQUEST_END (and,
when it went through the HTTP or gRPC frontend, the frontend's send end), and so has every
composing-model trace seen for it (Triton writes a whole tree in one piece, the composing models
first). Times of a model (`ModelTrace`), each None when a timestamp is missing or the end
precedes the start:
- queue: QUEUE_START -> COMPUTE_START; compute_input: COMPUTE_START -> COMPUTE_INPUT_END;
  compute_infer: COMPUTE_INPUT_END -> COMPUTE_OUTPUT_START; compute_output: COMPUTE_OUTPUT_START
  -> COMPUTE_END; total: REQUEST_START -> REQUEST_END (the last step's total runs past the
  response: Python-backend models end their compute after the response is sent).
- scheduling, for an ensemble (a model with composing-model traces and no compute of its own):
  its total minus the time covered by the union of its steps' totals (clipped to its own span),
  i.e. its time before the first step, between steps, and after the last. Steps that overlap
  (parallel branches, or the next step starting before the previous one's REQUEST_END) count
  once. A nested ensemble is one step of its parent, and has its own scheduling.
The server time of a request (`RequestTrace.server_ns`) is what the client waited for inside
the server: the frontend's receive (HTTP_RECV_START, or GRPC_WAITREAD_END: the gRPC wait starts
before the request arrives) to its send end (HTTP_SEND_END, GRPC_SEND_END); without frontend
timestamps, the top-level model's total. For a timestamp name seen twice in one trace the first
is kept.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from loadgen.errors import ServerError

# A model's own stages: part name -> (start timestamp, end timestamp).
STAGES: dict[str, tuple[str, str]] = {
    "queue": ("QUEUE_START", "COMPUTE_START"),
    "compute_input": ("COMPUTE_START", "COMPUTE_INPUT_END"),
    "compute_infer": ("COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"),
    "compute_output": ("COMPUTE_OUTPUT_START", "COMPUTE_END"),
}
# The frontend's receive and send end, HTTP then gRPC.
RECEIVE_STAMPS = ("HTTP_RECV_START", "GRPC_WAITREAD_END")
SEND_END_STAMPS = ("HTTP_SEND_END", "GRPC_SEND_END")


def _span_ns(timestamps_ns: Mapping[str, int], start: str, end: str) -> int | None:
    if start not in timestamps_ns or end not in timestamps_ns:
        return None
    span = timestamps_ns[end] - timestamps_ns[start]
    return span if span >= 0 else None


def _first_present(timestamps_ns: Mapping[str, int], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in timestamps_ns), None)


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    covered, reach = 0, None
    for start, end in sorted(intervals):
        if reach is not None and start < reach:
            start = reach
        if end > start:
            covered += end - start
            reach = end
    return covered


@dataclass(frozen=True)
class ModelTrace:
    """One model's part of one request: a node of the request's trace tree."""

    trace_id: int
    model: str
    version: str
    timestamps_ns: Mapping[str, int]  # timestamp name -> ns on the server's steady clock
    children: tuple[ModelTrace, ...] = ()  # composing models' traces, by REQUEST_START

    def stage_ns(self, part: str) -> int | None:
        """One of STAGES' parts, or None when its timestamps are missing."""
        return _span_ns(self.timestamps_ns, *STAGES[part])

    @property
    def total_ns(self) -> int | None:
        return _span_ns(self.timestamps_ns, "REQUEST_START", "REQUEST_END")

    @property
    def is_ensemble(self) -> bool:
        # A BLS model has children too, but computes: its children run inside its compute_infer.
        return bool(self.children) and "COMPUTE_START" not in self.timestamps_ns

    @property
    def scheduling_ns(self) -> int | None:
        """An ensemble's time outside its steps (module docstring); None for other models."""
        if not self.is_ensemble or self.total_ns is None:
            return None
        start, end = self.timestamps_ns["REQUEST_START"], self.timestamps_ns["REQUEST_END"]
        steps = [(max(start, child.timestamps_ns["REQUEST_START"]), min(end, child.timestamps_ns["REQUEST_END"]))
                 for child in self.children if child.total_ns is not None]
        return self.total_ns - _union_ns(steps)

    def walk(self) -> Iterator[ModelTrace]:
        """This trace and its descendants, depth first, steps in order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass(frozen=True)
class RequestTrace:
    """The trace tree of one request, named by the id the client gave it ("" without one)."""

    request_id: str
    root: ModelTrace

    @property
    def server_ns(self) -> int | None:
        stamps = self.root.timestamps_ns
        receive, send = _first_present(stamps, RECEIVE_STAMPS), _first_present(stamps, SEND_END_STAMPS)
        if receive and send:
            return _span_ns(stamps, receive, send)
        return self.root.total_ns


@dataclass
class TraceCounts:
    """What reading found besides complete trees."""

    records: int = 0  # JSON records read
    malformed: int = 0  # records and unparsable fragments skipped
    incomplete: int = 0  # request trees still incomplete at finish(), dropped
    orphans: int = 0  # traces never joined to a top-level trace (composing models, lone timestamps), dropped
    # The client's request id of each incomplete tree ("" when none of its records named one):
    # whether a level counted that request (loadgen.tracing) says whether a level lost its trace.
    incomplete_request_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    """What `split_records` made of some text."""

    records: list[object]
    consumed: int  # characters taken: complete records, separators and skipped fragments
    malformed: int  # fragments skipped
    closed: bool  # the list's closing bracket was seen: nothing more can follow


_DECODER = json.JSONDecoder()
_SEPARATORS = frozenset(" \t\r\n,[")


def _is_record(value: object) -> bool:
    return isinstance(value, dict) and "id" in value


def _resync(text: str, start: int) -> tuple[object, int] | None:
    """The next record after a broken fragment: the first `{` from which a whole object with an
    `id` parses (an inner timestamp object has none, so a cut record is not mistaken for one)."""
    position = text.find("{", start + 1)
    while position != -1:
        try:
            value, end = _DECODER.raw_decode(text, position)
        except ValueError:
            value = None
        if _is_record(value):
            return value, end
        position = text.find("{", position + 1)
    return None


def split_records(text: str, final: bool = False) -> Chunk:
    """The records of the part of a trace file that `text` holds, from a record boundary on.

    A trailing fragment that does not parse is left unconsumed for the caller to retry with more
    text, unless `final` (the file is finished), when it is skipped and counted as malformed.
    """
    records: list[object] = []
    malformed, position, closed = 0, 0, False
    length = len(text)
    while position < length:
        char = text[position]
        if char in _SEPARATORS:
            position += 1
            continue
        if char == "]":
            closed = True
            position += 1
            continue
        try:
            value, end = _DECODER.raw_decode(text, position)
        except ValueError:
            found = _resync(text, position)
            if found is None:
                if final:
                    malformed += 1
                    position = length
                break
            malformed += 1
            value, end = found
        records.append(value)
        position = end
    return Chunk(records, position, malformed, closed)


class _Malformed(ValueError):
    pass


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Malformed(f"not a non-negative integer: {value!r}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Malformed(f"not a string: {value!r}")
    return value


@dataclass(frozen=True)
class _Header:
    model: str
    version: str
    request_id: str
    parent_id: int | None


def _parse_record(record: object) -> tuple[int, _Header | None, list[tuple[str, int]]]:
    """(trace id, header or None, timestamps) of one record; _Malformed when it is not one."""
    if not isinstance(record, dict) or "id" not in record:
        raise _Malformed("not an object with an id")
    trace_id = _integer(record["id"])
    header = None
    if "model_name" in record:
        version = record.get("model_version", "")
        if isinstance(version, bool) or not isinstance(version, (int, str)):
            raise _Malformed(f"model_version {version!r}")
        parent = record.get("parent_id")
        header = _Header(_string(record["model_name"]), str(version), _string(record.get("request_id", "")),
                         None if parent is None else _integer(parent))
    stamps = []
    if "timestamps" in record:
        if not isinstance(record["timestamps"], list):
            raise _Malformed("timestamps is not a list")
        for stamp in record["timestamps"]:
            if not isinstance(stamp, dict):
                raise _Malformed("a timestamp is not an object")
            stamps.append((_string(stamp.get("name")), _integer(stamp.get("ns"))))
    return trace_id, header, stamps


class TraceCollector:
    """Trace records in, complete request trees out. Pure: no files (TraceReader reads them)."""

    def __init__(self) -> None:
        self.counts = TraceCounts()
        self._headers: dict[int, _Header] = {}
        self._stamps: dict[int, dict[str, int]] = {}
        self._children: dict[int, list[int]] = {}
        self._roots: dict[int, None] = {}  # top-level trace ids not handed out yet, in arrival order

    def add(self, records: Iterable[object]) -> None:
        for record in records:
            self.counts.records += 1
            try:
                trace_id, header, stamps = _parse_record(record)
            except _Malformed:
                self.counts.malformed += 1
                continue
            if header is not None:
                if trace_id in self._headers:
                    if self._headers[trace_id] != header:
                        self.counts.malformed += 1  # a second, different header for one trace
                else:
                    self._headers[trace_id] = header
                    if header.parent_id is None:
                        self._roots[trace_id] = None
                    else:
                        self._children.setdefault(header.parent_id, []).append(trace_id)
            if stamps:
                held = self._stamps.setdefault(trace_id, {})
                for name, ns in stamps:
                    held.setdefault(name, ns)

    def _descendants(self, root_id: int) -> list[int]:
        found, stack = [], [root_id]
        while stack:
            trace_id = stack.pop()
            found.append(trace_id)
            stack.extend(self._children.get(trace_id, ()))
        return found

    def _is_complete(self, root_id: int) -> bool:
        root = self._stamps.get(root_id, {})
        if _first_present(root, RECEIVE_STAMPS) and not _first_present(root, SEND_END_STAMPS):
            return False
        return all("REQUEST_END" in self._stamps.get(trace_id, {}) for trace_id in self._descendants(root_id))

    def _take(self, root_id: int) -> RequestTrace:
        request_id = self._headers[root_id].request_id
        built: dict[int, ModelTrace] = {}
        for trace_id in reversed(self._descendants(root_id)):  # children before their parent
            header = self._headers.pop(trace_id)
            stamps = self._stamps.pop(trace_id, {})
            children = [built.pop(child) for child in self._children.pop(trace_id, ())]
            children.sort(key=lambda child: (child.timestamps_ns.get("REQUEST_START", float("inf")), child.trace_id))
            built[trace_id] = ModelTrace(trace_id, header.model, header.version, stamps, tuple(children))
        del self._roots[root_id]
        return RequestTrace(request_id, built[root_id])

    def take_complete(self) -> list[RequestTrace]:
        """The request trees completed since the last call, in the order their top-level traces came."""
        return [self._take(root_id) for root_id in list(self._roots) if self._is_complete(root_id)]

    def take_all(self) -> list[RequestTrace]:
        """At the end: the complete trees; the rest is counted (incomplete, orphans) and dropped."""
        complete = self.take_complete()
        held = set(self._headers) | set(self._stamps)
        for root_id in self._roots:
            held.difference_update(self._descendants(root_id))
        self.counts.incomplete += len(self._roots)
        self.counts.incomplete_request_ids += (self._headers[root_id].request_id for root_id in self._roots)
        self.counts.orphans += len(held)
        self._headers.clear()
        self._stamps.clear()
        self._children.clear()
        self._roots.clear()
        return complete


class TraceReader:
    """Reads Triton's trace files PATH and PATH.N as they are written (module docstring's rule).

    `poll()` during a run, `finish()` once the server has stopped. Files that are not there yet
    are not an error; one that cannot be read is a ServerError.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.collector = TraceCollector()
        self._offsets: dict[Path, int] = {}  # bytes taken of each file
        self._closed: set[Path] = set()  # files whose closing bracket was read: written for good

    @property
    def counts(self) -> TraceCounts:
        return self.collector.counts

    def files(self) -> list[Path]:
        """PATH and PATH.N as they are now, in the order Triton wrote them."""
        pattern = re.compile(re.escape(self.path.name) + r"(\.\d+)?")
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ServerError(f"cannot read the trace directory {self.path.parent}: {exc}") from exc
        indexed = sorted((name for name in names if pattern.fullmatch(name)), key=lambda name: (len(name), name))
        return [self.path.parent / name for name in indexed]

    def _read(self, path: Path, final: bool) -> None:
        offset = self._offsets.get(path, 0)
        try:
            with open(path, "rb") as file:
                file.seek(offset)
                data = file.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ServerError(f"cannot read the trace file {path}: {exc}") from exc
        # surrogateescape: a character cut at the end, or bytes that are not UTF-8, round-trip to
        # the same bytes, so the offset of what was taken stays exact.
        text = data.decode("utf-8", "surrogateescape")
        chunk = split_records(text, final)
        self.collector.add(chunk.records)
        self.collector.counts.malformed += chunk.malformed
        self._offsets[path] = offset + len(text[: chunk.consumed].encode("utf-8", "surrogateescape"))
        if chunk.closed:
            self._closed.add(path)

    def poll(self) -> list[RequestTrace]:
        """The request trees completed in the files since the last call."""
        for path in self.files():
            if path not in self._closed:
                self._read(path, final=False)
        return self.collector.take_complete()

    def finish(self) -> list[RequestTrace]:
        """After the server stopped: the rest of the files, and every complete tree not handed out yet."""
        for path in self.files():
            if path not in self._closed:
                self._read(path, final=True)
        return self.collector.take_all()
