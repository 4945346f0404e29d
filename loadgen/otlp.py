"""Triton's OpenTelemetry traces, as OTLP/HTTP export bodies, turned into the records of its trace
files, so that loadgen.traces.TraceCollector builds the same request trees from either. Pure: bytes
in, records and trees out (loadgen.otlp_collector receives the bodies).

What Triton in OpenTelemetry mode exports for one request, at level TIMESTAMPS (checked on the
bundled tritonserver 2.51.0; tests/data/otlp), every span under the request's OTLP trace id:
- the frontend's span (`InferRequest`, no parent): HTTP_RECV_START ... HTTP_SEND_END or the GRPC_*
  events, and INFER_RESPONSE_COMPLETE;
- one span per model, named by it, with the attributes `triton.model_name`,
  `triton.model_version`, `triton.request_id` (the client's id) and events REQUEST_START,
  QUEUE_START, REQUEST_END; its parent is the frontend's span for the top-level model, the
  ensemble's span for a composing model;
- a `compute` span, child of its model's span, for each model that computes: COMPUTE_START,
  COMPUTE_INPUT_END, COMPUTE_OUTPUT_START, COMPUTE_END.
Spans leave in batches as they end, so one request's spans come in one or several bodies, the
frontend's usually last. Times are Unix-epoch ns, the files' the steady clock: only differences
are used.

Records: each model span is one trace of the file format, a header record (`id`, `model_name`,
`model_version`, `request_id`, and `parent_id`, the trace of its nearest model ancestor) and a
timestamps record of its events; another span's events go to the trace of its nearest model
ancestor (a compute span's to its model's) or, without one (the frontend's span), to the
top-level model's, where the trace file has the frontend's timestamps. The trace ids are this
reader's own numbers: the span tree alone says who is whose parent.

Holding rule: spans are held by OTLP trace id, in whatever order and bodies they come, until
`take`: a request is whole then if its root span (no parent) has come, a model span has, and every
span's parent is held. Its records are handed out and its spans forgotten; a span of it that comes
later is counted as an orphan. Nothing says how many steps an ensemble has, so a request whose
spans were cut by a `take` (its root before it, a step after) would be handed out without that
step: loadgen takes at a level's end, once the server's exports have gone quiet, when Triton has
sent every span of a finished request (it sends a request's frontend span last). What is held
after a `take` is bounded by MAX_HELD_SPANS: beyond, the requests held longest are dropped and
counted incomplete, as are those still held at `finish()` (one whose root's parent lies outside
it, as with a client's `traceparent` header, never completes). A body that does not decode, a span without valid ids or
with a non-text `triton.model_name`, and a whole request whose tree is not one (two roots, two
top-level models, a cycle) are counted malformed and skipped; nothing raises.

Encodings: `application/x-protobuf` is parsed by opentelemetry-proto. `application/json` (what
the bundled Triton sends) is OTLP's JSON encoding, which writes trace and span ids in hex where
proto3's JSON mapping has base64: the ids are turned into base64 and protobuf's json_format
parses the rest into the same message, so both encodings go through one span reader and one set
of type checks (int64 as strings or numbers, enums as numbers). It costs about 60 µs a span
(protobuf: 3 µs), paid at a level's end.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from loadgen.traces import RequestTrace, TraceCollector, TraceCounts

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_HELD_SPANS = 100_000  # spans of requests not whole yet
MAX_DONE_REQUESTS = 65_536  # OTLP trace ids of requests handed out, remembered to tell a late span from a new request

MODEL_NAME, MODEL_VERSION, REQUEST_ID = "triton.model_name", "triton.model_version", "triton.request_id"
_HEX_IDS = {"traceId": re.compile(r"[0-9a-fA-F]{32}"), "spanId": re.compile(r"[0-9a-fA-F]{16}"),
            "parentSpanId": re.compile(r"[0-9a-fA-F]{16}")}  # fmt: skip


def media_type(content_type: str | None) -> str | None:
    """PROTOBUF or JSON for a Content-Type header naming one (parameters ignored), else None."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media if media in (PROTOBUF, JSON) else None


def empty_response(media: str) -> bytes:
    """An ExportTraceServiceResponse with nothing to say (all spans taken), in `media`."""
    return b"" if media == PROTOBUF else b"{}"


class OtlpDecodeError(ValueError):
    """A body that is not an ExportTraceServiceRequest in its content type."""


def _ids_to_base64(data: object) -> None:
    """OTLP JSON's hex ids, in place, as the base64 json_format reads; anything else left for it to judge."""
    resource_spans = data.get("resourceSpans") if isinstance(data, dict) else None
    for resource in resource_spans if isinstance(resource_spans, list) else ():
        scopes = resource.get("scopeSpans") if isinstance(resource, dict) else None
        for scope in scopes if isinstance(scopes, list) else ():
            spans = scope.get("spans") if isinstance(scope, dict) else None
            for span in spans if isinstance(spans, list) else ():
                if not isinstance(span, dict):
                    continue
                links = span.get("links")
                for item in [span, *(links if isinstance(links, list) else ())]:
                    if not isinstance(item, dict):
                        continue
                    for key, pattern in _HEX_IDS.items():
                        value = item.get(key)
                        if isinstance(value, str) and pattern.fullmatch(value):
                            item[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


def decode(body: bytes, media: str) -> ExportTraceServiceRequest:
    """One export body in `media` (PROTOBUF or JSON); OtlpDecodeError when it is not one."""
    try:
        if media == PROTOBUF:
            return ExportTraceServiceRequest.FromString(body)
        data = json.loads(body)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        _ids_to_base64(data)
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError, binascii.Error) as exc:
        raise OtlpDecodeError(f"not an OTLP {media} export: {type(exc).__name__}") from None


@dataclass(frozen=True)
class _Span:
    trace_id: bytes
    span_id: bytes
    parent_id: bytes  # b"" for a root
    model: tuple[str, str | int, str] | None  # (name, version, request id) of a model's span
    events: tuple[tuple[str, int], ...]  # (name, Unix ns)


class _Malformed(ValueError):
    pass


def _attribute(span: Span, key: str) -> object:
    for attribute in span.attributes:
        if attribute.key == key:
            kind = attribute.value.WhichOneof("value")
            return None if kind is None else getattr(attribute.value, kind)
    return None


def _span(span: Span) -> _Span:
    if len(span.trace_id) != 16 or not any(span.trace_id) or len(span.span_id) != 8 or not any(span.span_id):
        raise _Malformed("trace or span id")
    if span.parent_span_id and len(span.parent_span_id) != 8:
        raise _Malformed("parent span id")
    model = None
    name = _attribute(span, MODEL_NAME)
    if name is not None:
        version, request_id = _attribute(span, MODEL_VERSION), _attribute(span, REQUEST_ID)
        if not isinstance(name, str) or not isinstance(version, (int, str, type(None))) or isinstance(version, bool):
            raise _Malformed("model attributes")
        model = (name, "" if version is None else version, request_id if isinstance(request_id, str) else "")
    events = tuple((event.name, event.time_unix_nano) for event in span.events)
    return _Span(bytes(span.trace_id), bytes(span.span_id), bytes(span.parent_span_id), model, events)


def _spans(message: ExportTraceServiceRequest) -> Iterator[_Span | None]:
    """Every span of a body; None for one that is malformed."""
    for resource in message.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                try:
                    yield _span(span)
                except _Malformed:
                    yield None


def _model_of(spans: dict[bytes, _Span], span: _Span | None) -> _Span | None:
    """The nearest model span at or above `span`; _Malformed on a cycle."""
    for _ in range(len(spans) + 1):
        if span is None or span.model is not None:
            return span
        span = spans.get(span.parent_id)
    raise _Malformed("a cycle of parents")


def _is_whole(spans: dict[bytes, _Span]) -> bool:
    roots = sum(1 for span in spans.values() if not span.parent_id)
    if roots > 1:
        raise _Malformed("two root spans")
    return (roots == 1 and any(span.model is not None for span in spans.values())
            and all(not span.parent_id or span.parent_id in spans for span in spans.values()))  # fmt: skip


class SpanRecords:
    """OTLP export bodies in, Triton trace-file records out (module docstring), counting into `counts`."""

    def __init__(self, counts: TraceCounts, max_held_spans: int = MAX_HELD_SPANS) -> None:
        self.counts = counts
        self.max_held_spans = max_held_spans
        self._held: dict[bytes, dict[bytes, _Span]] = {}  # OTLP trace id -> span id -> span, held longest first
        self._held_spans = 0
        self._done: dict[bytes, None] = {}  # OTLP trace ids handed out, oldest first
        self._next_id = 1

    def add(self, body: bytes, media: str) -> None:
        try:
            message = decode(body, media)
        except OtlpDecodeError:
            self.counts.malformed += 1
            return
        for span in _spans(message):
            if span is None:
                self.counts.malformed += 1
            elif span.trace_id in self._done:
                self.counts.orphans += 1  # came after its request was handed out
            elif span.span_id in self._held.setdefault(span.trace_id, {}):
                self.counts.malformed += 1  # a span id seen twice
            else:
                self._held[span.trace_id][span.span_id] = span
                self._held_spans += 1

    def take(self) -> list[dict]:
        """The records of every request whole now; then the rest bounded."""
        records: list[dict] = []
        for trace_id in list(self._held):
            records += self._take_if_whole(trace_id)
        while self._held_spans > self.max_held_spans:
            self._drop_incomplete(next(iter(self._held)))
        return records

    def finish(self) -> list[dict]:
        """At the end: the records of the requests whole now; the rest will not complete, and is
        counted incomplete and dropped."""
        records = self.take()
        for trace_id in list(self._held):
            self._drop_incomplete(trace_id)
        return records

    def _drop(self, trace_id: bytes) -> None:
        self._held_spans -= len(self._held.pop(trace_id))

    def _drop_incomplete(self, trace_id: bytes) -> None:
        request_ids = [span.model[2] for span in self._held[trace_id].values() if span.model is not None]
        self.counts.incomplete += 1
        self.counts.incomplete_request_ids.append(request_ids[0] if request_ids else "")
        self._drop(trace_id)

    def _take_if_whole(self, trace_id: bytes) -> list[dict]:
        spans = self._held[trace_id]
        try:
            if not _is_whole(spans):
                return []
            records = self._records(spans)
        except _Malformed:
            self.counts.malformed += 1
            records = []
        self._drop(trace_id)
        self._done[trace_id] = None
        if len(self._done) > MAX_DONE_REQUESTS:
            del self._done[next(iter(self._done))]
        return records

    def _records(self, spans: dict[bytes, _Span]) -> list[dict]:
        owner = {span.span_id: _model_of(spans, span) for span in spans.values()}
        models = [span for span in spans.values() if span.model is not None]
        top = [span for span in models if _model_of(spans, spans.get(span.parent_id)) is None]
        if len(top) != 1:
            raise _Malformed("not one top-level model")
        ids: dict[bytes, int] = {}
        for span in models:
            ids[span.span_id] = self._next_id
            self._next_id += 1
        records: list[dict] = []
        stamps: dict[int, list[dict]] = {trace_id: [] for trace_id in ids.values()}
        for span in models:
            name, version, request_id = span.model
            header = {"id": ids[span.span_id], "model_name": name, "model_version": version, "request_id": request_id}
            parent = _model_of(spans, spans.get(span.parent_id))
            if parent is not None:
                header["parent_id"] = ids[parent.span_id]
            records.append(header)
        for span in spans.values():
            target = owner[span.span_id] or top[0]
            stamps[ids[target.span_id]] += ({"name": name, "ns": ns} for name, ns in span.events)
        records += ({"id": trace_id, "timestamps": events} for trace_id, events in stamps.items() if events)
        return records


class OtlpReader:
    """Export bodies in, complete request trees out: TraceReader's counterpart for spans received
    by a collector. `add` each body, `take_complete` at a level's end, `finish` at the run's end."""

    def __init__(self, max_held_spans: int = MAX_HELD_SPANS) -> None:
        self.collector = TraceCollector()
        self._spans = SpanRecords(self.collector.counts, max_held_spans)

    @property
    def counts(self) -> TraceCounts:
        return self.collector.counts

    def add(self, bodies: Iterable[tuple[bytes, str]]) -> None:
        """(body, media type) pairs, as received."""
        for body, media in bodies:
            self._spans.add(body, media)

    def take_complete(self) -> list[RequestTrace]:
        """The trees of the requests whole now (SpanRecords' holding rule)."""
        self.collector.add(self._spans.take())
        return self.collector.take_complete()

    def finish(self) -> list[RequestTrace]:
        """Every complete tree not handed out yet; what is held is counted and dropped."""
        self.collector.add(self._spans.finish())
        return self.collector.take_all()
