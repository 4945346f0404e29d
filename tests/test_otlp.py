"""loadgen.otlp on OTLP/HTTP bodies recorded from the bundled Triton in OpenTelemetry mode
(tests/data/otlp) and on synthetic spans: the same trees as from trace files, both encodings,
spans split and reordered across bodies, malformed and hostile input."""

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from loadgen.otlp import JSON, PROTOBUF, OtlpDecodeError, OtlpReader, SpanRecords, decode, empty_response, media_type
from loadgen.traces import STAGES, ModelTrace, RequestTrace, TraceCollector, TraceCounts, TraceReader

DATA = Path(__file__).parent / "data"
CAPTURES = ("stalling", "nested-grpc", "error")


def bodies_of(capture: str) -> list[tuple[bytes, str]]:
    return [(entry["body"].encode(), media_type(entry["content_type"]))
            for entry in json.loads((DATA / "otlp" / capture / "bodies.json").read_text())]  # fmt: skip


def raw_spans(capture: str) -> list[dict]:
    """Every span of a capture, read with json alone (an independent reading)."""
    return [span for body, _ in bodies_of(capture) for resource in json.loads(body)["resourceSpans"]
            for scope in resource["scopeSpans"] for span in scope["spans"]]  # fmt: skip


def read(bodies, max_held_spans: int | None = None) -> tuple[list[RequestTrace], TraceCounts]:
    reader = OtlpReader() if max_held_spans is None else OtlpReader(max_held_spans)
    reader.add(bodies)
    traces = reader.take_complete() + reader.finish()
    return traces, reader.counts


def by_id(traces: list[RequestTrace]) -> dict[str, RequestTrace]:
    return {trace.request_id: trace for trace in traces}


def shape(node: ModelTrace) -> tuple:
    return (node.model, tuple(shape(child) for child in node.children))


def content(trace: RequestTrace) -> tuple:
    """A tree without the reader's own trace ids."""

    def node(model: ModelTrace) -> tuple:
        return (model.model, model.version, tuple(sorted(model.timestamps_ns.items())), tuple(map(node, model.children)))

    return (trace.request_id, node(trace.root))


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_request_of_a_capture_has_one_complete_tree(capture):
    traces, counts = read(bodies_of(capture))
    client_ids = set(json.loads((DATA / "otlp" / capture / "client.json").read_text()))
    # Every request the client sent, plus the capture's first request, which had no id.
    assert sorted(trace.request_id for trace in traces) == sorted([*client_ids, ""])
    assert (counts.malformed, counts.incomplete, counts.orphans) == (0, 0, 0)
    models = [span for span in raw_spans(capture) if any(a["key"] == "triton.model_name" for a in span.get("attributes", ()))]
    assert sum(1 for trace in traces for _ in trace.root.walk()) == len(models)


@pytest.mark.parametrize("capture", CAPTURES)
def test_each_model_holds_its_spans_events_and_the_top_model_the_frontends(capture):
    spans = raw_spans(capture)
    by_span = {span["spanId"]: span for span in spans}

    def attribute(span, key):
        return next((a["value"] for a in span.get("attributes", ()) if a["key"] == key), None)

    def events(span):
        return {event["name"]: int(event["timeUnixNano"]) for event in span.get("events", ())}

    expected: dict[tuple[str, str], dict[str, int]] = {}  # (request id, model) -> timestamps
    for span in spans:
        if attribute(span, "triton.model_name") is None:
            continue
        request_id = attribute(span, "triton.request_id")["stringValue"] if attribute(span, "triton.request_id") else ""
        stamps = events(span)
        for child in spans:
            if child.get("parentSpanId") == span["spanId"] and child["name"] == "compute":
                stamps |= events(child)
        parent = by_span.get(span.get("parentSpanId"))
        if parent is not None and parent["name"] == "InferRequest":
            stamps |= events(parent)
        expected[(request_id, span["name"])] = stamps
    traces, _ = read(bodies_of(capture))
    found = {(trace.request_id, node.model): dict(node.timestamps_ns) for trace in traces for node in trace.root.walk()}
    assert found == expected


@pytest.mark.parametrize("capture,files", [("stalling", "stalling"), ("nested-grpc", "nested-grpc"), ("error", "error")])
def test_trees_are_those_the_trace_files_of_the_same_models_give(capture, files):
    # Another capture of the same requests in file mode: the same tree shapes, and every model the same timestamp names.
    traces, _ = read(bodies_of(capture))
    reader = TraceReader(DATA / "traces" / files / "trace.json")
    from_files = reader.poll() + reader.finish()

    def names(trees):
        return {(node.model, frozenset(node.timestamps_ns)) for trace in trees for node in trace.root.walk()}

    assert {shape(trace.root) for trace in traces} == {shape(trace.root) for trace in from_files}
    assert names(traces) == names(from_files)
    for trace in traces:
        assert trace.server_ns is not None and trace.server_ns > 0
        for node in trace.root.walk():
            assert node.total_ns is not None and all(node.stage_ns(part) is not None for part in STAGES) != node.is_ensemble


def test_the_stalled_requests_stall_in_middle():
    traces = by_id(read(bodies_of("stalling"))[0])
    middle = {request_id: next(node for node in trace.root.walk() if node.model == "middle").stage_ns("compute_infer")
              for request_id, trace in traces.items()}  # fmt: skip
    stalled = {request_id for request_id, ns in middle.items() if ns > 40e6}
    assert len(stalled) == 2  # one request in ten sleeps 50 ms
    assert all(ns < 20e6 for request_id, ns in middle.items() if request_id not in stalled)


def as_protobuf(body: bytes) -> bytes:
    """A JSON body re-encoded as protobuf by hand, field by field (not through loadgen.otlp)."""
    message = ExportTraceServiceRequest()
    for resource in json.loads(body)["resourceSpans"]:
        scope = ScopeSpans()
        for raw in (span for scope_spans in resource["scopeSpans"] for span in scope_spans["spans"]):
            span = Span(trace_id=bytes.fromhex(raw["traceId"]), span_id=bytes.fromhex(raw["spanId"]), name=raw["name"],
                        parent_span_id=bytes.fromhex(raw.get("parentSpanId", "")))  # fmt: skip
            for attribute in raw.get("attributes", ()):
                value = attribute["value"]
                any_value = AnyValue(string_value=value["stringValue"]) if "stringValue" in value else AnyValue(int_value=int(value["intValue"]))
                span.attributes.append(KeyValue(key=attribute["key"], value=any_value))
            for event in raw.get("events", ()):
                span.events.add(name=event["name"], time_unix_nano=int(event["timeUnixNano"]))
            scope.spans.append(span)
        message.resource_spans.append(ResourceSpans(scope_spans=[scope]))
    return message.SerializeToString()


@pytest.mark.parametrize("capture", CAPTURES)
def test_protobuf_bodies_give_the_same_trees_as_json(capture):
    as_json, _ = read(bodies_of(capture))
    as_proto, counts = read((as_protobuf(body), PROTOBUF) for body, _ in bodies_of(capture))
    assert sorted(map(content, as_proto)) == sorted(map(content, as_json))
    assert (counts.malformed, counts.incomplete) == (0, 0)


def test_content_types_and_empty_responses():
    assert media_type("application/json") == media_type("Application/JSON; charset=utf-8") == JSON
    assert media_type("application/x-protobuf") == PROTOBUF
    assert media_type("text/plain") is None and media_type(None) is None and media_type("") is None
    assert decode(empty_response(PROTOBUF), PROTOBUF) == decode(empty_response(JSON), JSON) == ExportTraceServiceRequest()


def test_ids_in_base64_as_proto3_json_writes_them_are_read_too():
    body, _ = bodies_of("stalling")[0]
    message = decode(body, JSON)
    from google.protobuf import json_format

    proto3_json = json_format.MessageToJson(message).encode()  # base64 ids
    assert decode(proto3_json, JSON) == message


# Synthetic spans: one request of an ensemble with one step.
TRACE = bytes(range(1, 17))


def span(span_id: int, parent: int | None, name: str, events: dict[str, int], model: bool = False, trace: bytes = TRACE,
         request_id: str = "r1") -> Span:  # fmt: skip
    made = Span(trace_id=trace, span_id=span_id.to_bytes(8, "big"), name=name,
                parent_span_id=parent.to_bytes(8, "big") if parent is not None else b"")  # fmt: skip
    if model:
        for key, value in (("triton.model_name", AnyValue(string_value=name)), ("triton.model_version", AnyValue(int_value=1)),
                           ("triton.request_id", AnyValue(string_value=request_id))):  # fmt: skip
            made.attributes.append(KeyValue(key=key, value=value))
    for event_name, ns in events.items():
        made.events.add(name=event_name, time_unix_nano=ns)
    return made


def request_spans(trace: bytes = TRACE, request_id: str = "r1") -> list[Span]:
    model = dict(REQUEST_START=10, QUEUE_START=11, REQUEST_END=40)
    return [
        span(4, 3, "compute", dict(COMPUTE_START=20, COMPUTE_INPUT_END=21, COMPUTE_OUTPUT_START=29, COMPUTE_END=30), trace=trace),
        span(3, 2, "step", dict(REQUEST_START=15, QUEUE_START=16, REQUEST_END=31), model=True, trace=trace, request_id=request_id),
        span(2, 1, "ensemble", model, model=True, trace=trace, request_id=request_id),
        span(1, None, "InferRequest", dict(HTTP_RECV_START=5, HTTP_SEND_END=45), trace=trace),
    ]


def body(*spans: Span) -> bytes:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString()


def test_a_synthetic_request_becomes_the_file_formats_tree():
    traces, counts = read([(body(*request_spans()), PROTOBUF)])
    (trace,) = traces
    assert shape(trace.root) == ("ensemble", (("step", ()),))
    assert trace.request_id == "r1" and trace.server_ns == 40 and trace.root.scheduling_ns == 30 - 16
    (step,) = trace.root.children
    assert [step.stage_ns(part) for part in STAGES] == [4, 1, 8, 1] and step.version == "1"
    assert counts == TraceCounts(records=4)  # two headers, two timestamp records


def records_to_trees(records: list[dict]) -> list[RequestTrace]:
    collector = TraceCollector()
    collector.add(records)
    return collector.take_complete()


def test_spans_of_one_request_in_several_bodies_in_any_order_make_one_tree():
    spans = request_spans()
    whole, _ = read([(body(*spans), PROTOBUF)])
    for order in ([3, 0, 1, 2], [0, 3, 2, 1], [2, 1, 0, 3]):
        records = SpanRecords(TraceCounts())
        handed = []
        for i in order:
            records.add(body(spans[i]), PROTOBUF)
            handed.append(records.take())
        assert all(not out for out in handed[:-1])  # not whole before its last span
        assert list(map(content, records_to_trees(handed[-1]))) == list(map(content, whole))


def test_a_request_cut_by_a_take_is_handed_out_without_its_later_steps():
    # The holding rule's limit (module docstring): nothing says an ensemble has more steps to come.
    compute, step, ensemble, root = request_spans()
    counts = TraceCounts()
    records = SpanRecords(counts)
    records.add(body(root, ensemble), PROTOBUF)
    (trace,) = records_to_trees(records.take())
    assert shape(trace.root) == ("ensemble", ())
    records.add(body(compute, step), PROTOBUF)
    assert records.finish() == [] and counts.orphans == 2


def test_a_request_without_its_root_or_with_a_missing_span_is_held_then_counted_incomplete():
    spans = request_spans()
    traces, counts = read([(body(*spans[:3]), PROTOBUF)])  # no root
    assert traces == [] and counts.incomplete == 1
    traces, counts = read([(body(spans[0], spans[1], spans[3]), PROTOBUF)])  # the ensemble's span missing
    assert traces == [] and counts.incomplete == 1
    # A client's traceparent: the root's parent is outside the request, so it has no root.
    outside = request_spans()
    outside[3].parent_span_id = (99).to_bytes(8, "big")
    assert read([(body(*outside), PROTOBUF)])[1].incomplete == 1


def test_a_span_after_its_request_was_handed_out_is_an_orphan():
    spans = request_spans()
    late = span(9, 3, "compute", dict(COMPUTE_END=33))
    reader = OtlpReader()
    reader.add([(body(*spans), PROTOBUF)])
    assert len(reader.take_complete()) == 1
    reader.add([(body(late), PROTOBUF)])
    assert reader.finish() == [] and (reader.counts.orphans, reader.counts.incomplete) == (1, 0)


def test_what_is_held_after_a_take_is_bounded_oldest_request_dropped_first():
    requests = [request_spans(trace=bytes([n]) * 16, request_id=f"r{n}") for n in range(1, 5)]
    counts = TraceCounts()
    records = SpanRecords(counts, max_held_spans=7)
    for spans in requests:
        records.add(body(*spans[:3]), PROTOBUF)  # no roots: nothing is whole
    assert records.take() == [] and counts.incomplete == 2  # 12 spans held: r1, then r2 dropped for room
    assert counts.incomplete_request_ids == ["r1", "r2"]  # named by their model spans
    records.add(body(*(spans[3] for spans in requests)), PROTOBUF)
    assert sorted(trace.request_id for trace in records_to_trees(records.take())) == ["r3", "r4"]
    assert records.finish() == [] and counts.incomplete == 2 + 2  # r1's and r2's roots alone
    assert counts.incomplete_request_ids == ["r1", "r2", "", ""]  # a root names no request


@pytest.mark.parametrize("damage", ["short trace id", "zero span id", "bad parent", "version float", "name int"])
def test_a_malformed_span_is_counted_and_skipped(damage):
    spans = request_spans()
    extra = span(7, 3, "compute", {})
    if damage == "short trace id":
        extra.trace_id = b"\x01" * 8
    elif damage == "zero span id":
        extra.span_id = bytes(8)
    elif damage == "bad parent":
        extra.parent_span_id = b"\x01" * 3
    elif damage == "version float":
        extra.attributes.extend([KeyValue(key="triton.model_name", value=AnyValue(string_value="m")),
                                 KeyValue(key="triton.model_version", value=AnyValue(double_value=1.5))])
    else:
        extra.attributes.append(KeyValue(key="triton.model_name", value=AnyValue(int_value=3)))
    traces, counts = read([(body(extra, *spans), PROTOBUF)])
    assert len(traces) == 1 and counts.malformed == 1


@pytest.mark.parametrize("damage", ["two roots", "two top-level models", "cycle", "same span twice"])
def test_a_request_whose_spans_are_no_tree_is_counted(damage):
    spans = request_spans()
    if damage == "two roots":
        spans.append(span(8, None, "InferRequest", {}))
    elif damage == "two top-level models":
        spans.append(span(8, 1, "other", dict(REQUEST_START=1, REQUEST_END=2), model=True))
    elif damage == "cycle":
        spans += [span(8, 9, "a", {}), span(9, 8, "b", {})]
    else:
        spans.append(span(3, 2, "step", {}, model=True))
    traces, counts = read([(body(*spans), PROTOBUF)])
    if damage == "same span twice":  # the second is skipped, the request stands
        assert len(traces) == 1 and counts.malformed == 1
    else:
        assert traces == [] and counts.malformed == 1 and counts.incomplete == 0


@pytest.mark.parametrize("bad,media", [(b"", JSON), (b"{", JSON), (b"\xff\xfe", JSON), (b'{"resourceSpans": 5}', JSON),
                                       (b"[]", JSON), (b"\x0a\x05abc", PROTOBUF), (b"{}", PROTOBUF)])  # fmt: skip
def test_a_body_that_does_not_decode_is_one_malformed(bad, media):
    with pytest.raises(OtlpDecodeError):
        decode(bad, media)
    traces, counts = read([(bad, media), *bodies_of("error")])
    assert len(traces) == 2 and counts.malformed == 1


REAL = bodies_of("stalling")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([JSON, PROTOBUF]))
def test_any_bytes_are_read_or_counted_never_raised(data, media):
    traces, counts = read([(data, media)])
    if media == JSON:  # arbitrary bytes are no JSON object, or one without spans
        assert traces == [] and counts.malformed <= 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(REAL) - 1), st.lists(st.tuples(st.integers(0, 200_000), st.integers(0, 40), st.binary(max_size=6)), max_size=5),
       st.booleans())  # fmt: skip
def test_a_damaged_real_body_is_read_without_raising(index, edits, as_proto):
    data = bytearray(as_protobuf(REAL[index][0]) if as_proto else REAL[index][0])
    for position, deleted, inserted in edits:
        position %= len(data) + 1
        data[position : position + deleted] = inserted
    traces, counts = read([(bytes(data), PROTOBUF if as_proto else JSON)])
    for trace in traces:
        for node in trace.root.walk():
            assert all(value is None or value >= 0 for value in (node.total_ns, node.scheduling_ns, *map(node.stage_ns, STAGES)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**65) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "parentSpanId", "attributes", "key",
                         "value", "stringValue", "intValue", "events", "name", "timeUnixNano", "links"]),
        children, max_size=5),
    max_leaves=16,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_shape_is_read_or_counted_never_raised(value):
    read([(json.dumps(value).encode(), JSON)])


ALL_SPANS = [span for body_, _ in REAL for span in decode(body_, JSON).resource_spans[0].scope_spans[0].spans]
IN_ORDER = sorted(map(content, read(REAL)[0]))


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 40))
def test_real_spans_split_and_reordered_across_bodies_give_the_same_trees(rng: random.Random, pieces):
    spans = list(ALL_SPANS)
    rng.shuffle(spans)
    cuts = sorted(rng.sample(range(1, len(spans)), min(pieces, len(spans) - 1)))
    bodies = [body(*spans[start:end]) for start, end in zip([0, *cuts], [*cuts, len(spans)])]
    reordered, counts = read((data, PROTOBUF) for data in bodies)
    assert sorted(map(content, reordered)) == IN_ORDER
    assert (counts.malformed, counts.incomplete, counts.orphans) == (0, 0, 0)
